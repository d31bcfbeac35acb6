"""The network alone, without a Trainer: padding must never change a real token's output."""
from __future__ import annotations

import pytest
import torch

from seqtag.data.batching import IGNORE_INDEX, BucketBatchSampler, collate
from seqtag.nn import NetConfig, TaggerNet


def _rows():
    short = {"word_ids": [5, 6], "char_ids": [[3, 4], [5]], "label_ids": [1, 2]}
    long = {"word_ids": [7, 8, 9, 5, 6], "char_ids": [[3], [4, 5, 6, 7], [2], [3, 3], [4]], "label_ids": [0, 1, 2, 0, 1]}
    return short, long


@pytest.mark.parametrize("char_encoder", ["cnn", "lstm", "none"])
def test_padding_does_not_leak_into_real_positions(char_encoder):
    torch.manual_seed(0)
    net = TaggerNet(NetConfig(num_words=10, num_chars=8, num_labels=3, word_dim=6, char_dim=4, char_hidden=5,
                              hidden_size=7, num_layers=2, char_encoder=char_encoder)).eval()
    short, long = _rows()
    alone = collate([short])
    padded = collate([short, long])
    assert padded.word_ids.shape == (2, 5) and padded.char_ids.shape == (2, 5, 4)
    with torch.no_grad():
        out_alone = net(alone.word_ids, alone.char_ids, alone.lengths, alone.mask)       # (1, 2, 3)
        out_padded = net(padded.word_ids, padded.char_ids, padded.lengths, padded.mask)  # (2, 5, 3)
    # The backward LSTM reads the short sentence from its own last token, not from padding.
    torch.testing.assert_close(out_padded[0, :2], out_alone[0])
    assert out_padded.shape == (2, 5, 3)


def test_collate_pads_labels_with_the_ignore_index():
    short, long = _rows()
    batch = collate([long, short])
    assert batch.lengths.tolist() == [5, 2]
    assert batch.mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    assert batch.labels[1].tolist() == [1, 2, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    assert batch.char_ids[0, 1].tolist() == [4, 5, 6, 7] and batch.char_ids[1, 1].tolist() == [5, 0, 0, 0]


def test_bucket_sampler_covers_every_sentence_once_and_groups_by_length():
    lengths = [1, 50, 2, 49, 3, 48, 4, 47] * 10
    sampler = BucketBatchSampler(lengths, batch_size=4, shuffle=True, seed=3, pool_batches=100)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert len(batches) == len(sampler)
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 3 for b in batches)
    sampler.set_epoch(1)
    assert list(sampler) != batches, "a new epoch brings a new order"
    ranks = [list(BucketBatchSampler(lengths, 4, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) and not set(map(tuple, ranks[0])) & set(map(tuple, ranks[1]))


def test_word_dropout_only_in_training():
    torch.manual_seed(0)
    config = NetConfig(num_words=10, num_chars=8, num_labels=3, word_dim=4, hidden_size=4, num_layers=1,
                       char_encoder="none", dropout=0.0, word_dropout=0.99)
    net = TaggerNet(config)
    batch = collate(list(_rows()))
    net.eval()
    with torch.no_grad():
        first = net(batch.word_ids, batch.char_ids, batch.lengths, batch.mask)
        second = net(batch.word_ids, batch.char_ids, batch.lengths, batch.mask)
    torch.testing.assert_close(first, second)
    net.train()
    with torch.no_grad():
        dropped = net(batch.word_ids, batch.char_ids, batch.lengths, batch.mask)
    assert not torch.allclose(first, dropped)
