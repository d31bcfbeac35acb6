"""The networks alone, without a Trainer: padding must never change a real token's output, for every
embedder, cell and head; batching and sampling."""
from __future__ import annotations

import pytest
import torch

from seqtag.config import ModelConfig
from seqtag.data.batching import IGNORE_INDEX, BucketBatchSampler, collate, length_batches
from seqtag.networks import CELLS, EMBEDDERS, Network, detach_state

SIZES = {"words": 10, "chars": 8, "labels": 3, "lm_chars": 9}


def _rows(label_key="label_ids"):
    short = {"word_ids": [5, 6], "char_ids": [[3, 4], [5]], label_key: [1, 2] if label_key == "label_ids" else 1}
    long = {"word_ids": [7, 8, 9, 5, 6], "char_ids": [[3], [4, 5, 6, 7], [2], [3, 3], [4]],
            label_key: [0, 1, 2, 0, 1] if label_key == "label_ids" else 0}
    return short, long


def _net(head="softmax", cell="lstm", embedders=("word", "char_cnn"), causal=False, **changes) -> Network:
    torch.manual_seed(0)
    model = ModelConfig(word_dim=6, char_dim=4, char_hidden=5, hidden_size=7, num_layers=2, cell=cell, **changes)
    return Network(model, SIZES, list(embedders), head, causal=causal).eval()


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("embedders", [("word",), ("word", "char_cnn"), ("word", "char_lstm")])
def test_padding_does_not_leak_into_a_tagger_s_real_positions(cell, embedders):
    net = _net(cell=cell, embedders=embedders)
    short, long = _rows()
    alone, padded = collate([short]), collate([short, long])
    assert padded.features["word_ids"].shape == (2, 5) and padded.features["char_ids"].shape == (2, 5, 4)
    with torch.no_grad():
        out_alone, _ = net(alone.features, alone.lengths, alone.mask)       # (1, 2, 3)
        out_padded, _ = net(padded.features, padded.lengths, padded.mask)   # (2, 5, 3)
    # The backward direction reads the short sentence from its own last token, not from padding.
    torch.testing.assert_close(out_padded[0, :2], out_alone[0])
    assert out_padded.shape == (2, 5, 3)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("pooling", ["max", "mean", "last", "attention"])
def test_padding_does_not_leak_into_a_classifier_s_pooled_text(cell, pooling):
    net = _net(head="pooled", cell=cell, pooling=pooling)
    short, long = _rows("label_id")
    alone, padded = collate([short]), collate([short, long])
    assert padded.labels.tolist() == [1, 0]
    with torch.no_grad():
        out_alone, _ = net(alone.features, alone.lengths, alone.mask)       # (1, 3)
        out_padded, _ = net(padded.features, padded.lengths, padded.mask)   # (2, 3)
    torch.testing.assert_close(out_padded[0], out_alone[0])


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_language_model_never_sees_the_token_it_predicts_and_padding_comes_last(cell):
    net = _net(head="next_token", cell=cell, embedders=("word",), causal=True, lm_directions="both")
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    changed = ids.clone()
    changed[0, 3] = 9
    with torch.no_grad():
        out, state = net({"word_ids": ids})
        out_changed, _ = net({"word_ids": changed})
        padded, _ = net({"word_ids": torch.tensor([[3, 4, 5, 0, 0]])})
    torch.testing.assert_close(out[0, :3], out_changed[0, :3])   # positions before 3 do not see token 3
    assert not torch.allclose(out[0, 3], out_changed[0, 3])
    torch.testing.assert_close(padded[0, :3], out[0, :3])        # trailing padding changes no real position
    assert out.shape == (1, 5, SIZES["words"])
    detached = detach_state(state)
    parts = detached if isinstance(detached, tuple) else (detached,)
    assert all(not part.requires_grad for part in parts)


def test_carried_state_equals_one_long_pass():
    net = _net(head="next_token", cell="gru", embedders=("word",), causal=True)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        whole, _ = net({"word_ids": ids})
        first, state = net({"word_ids": ids[:, :4]})
        second, _ = net({"word_ids": ids[:, 4:]}, state=state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


def test_heads_own_their_loss_and_decoding():
    net = _net()
    short, long = _rows()
    batch = collate([short, long])
    scores, _ = net(batch.features, batch.lengths, batch.mask)
    loss = net.head.loss(scores, batch.labels, batch.mask)
    expected = torch.nn.functional.cross_entropy(scores[batch.mask], batch.labels[batch.mask])
    torch.testing.assert_close(loss, expected)
    # A gold id past the head's labels (a label never seen in training) carries no gradient.
    unseen = batch.labels.clone()
    unseen[1, 0] = SIZES["labels"] + 1
    keep = batch.mask.clone()
    keep[1, 0] = False
    torch.testing.assert_close(net.head.loss(scores, unseen, batch.mask),
                               torch.nn.functional.cross_entropy(scores[keep], batch.labels[keep]))
    ids, probabilities = net.head.decode(scores, batch.mask)
    assert ids.shape == (2, 5) and probabilities.shape == (2, 5, 3)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(2, 5))
    assert torch.equal(ids, scores.argmax(-1))


def test_registries_build_every_part():
    # The "lm" embedder's shape comes from its language models (model.lm) when training starts.
    lm_shape = {"lm_cell": "lstm", "lm_dim": 4, "lm_hidden_size": 3, "lm_layers": 1}
    for name in EMBEDDERS:
        net = _net(embedders=("word",) if name == "word" else ("word", name), **(lm_shape if name == "lm" else {}))
        assert name in net.embedders
    for cell, kind in CELLS.items():
        assert isinstance(_net(cell=cell).encoder.rnn, kind)


def test_freezing_pretrained_rows_keeps_only_those_rows_fixed():
    net = _net(embedders=("word",), freeze_embeddings=True, pretrained_vectors="vectors.txt")
    embedding = net.word_embedder().embedding
    assert net.word_embedder().set_rows({5: torch.ones(6)}, freeze=True) == 1
    before = embedding.weight.detach().clone()
    net.train()
    short, long = _rows()
    batch = collate([short, long])
    scores, _ = net(batch.features, batch.lengths, batch.mask)
    net.head.loss(scores, batch.labels, batch.mask).backward()
    torch.optim.SGD(net.parameters(), lr=1.0).step()
    after = embedding.weight.detach()
    torch.testing.assert_close(after[5], before[5])          # the pretrained row stayed
    assert not torch.allclose(after[6], before[6])           # a random row learned


def test_collate_pads_labels_with_the_ignore_index():
    short, long = _rows()
    batch = collate([long, short])
    assert batch.lengths.tolist() == [5, 2]
    assert batch.mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    assert batch.labels[1].tolist() == [1, 2, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    chars = batch.features["char_ids"]
    assert chars[0, 1].tolist() == [4, 5, 6, 7] and chars[1, 1].tolist() == [5, 0, 0, 0]


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


def test_evaluation_batches_are_split_over_ranks_without_repeats():
    lengths = list(range(1, 12))  # 11 sentences → 3 batches of 4: an odd count over 2 ranks
    ranks = [BucketBatchSampler(lengths, 4, shuffle=False, rank=r, world_size=2) for r in (0, 1)]
    seen = [i for sampler in ranks for batch in sampler for i in batch]
    assert sorted(seen) == list(range(11)), "each sentence is scored once over all ranks"
    assert [len(sampler) for sampler in ranks] == [len(list(sampler)) for sampler in ranks] == [2, 1]


def test_length_batches_cap_the_padded_tokens():
    batches = length_batches([5, 1000, 6, 7], batch_size=8, max_tokens=1000)
    assert [1] in batches and sorted(i for b in batches for i in b) == [0, 1, 2, 3]


def test_word_dropout_only_in_training():
    net = _net(embedders=("word",), dropout=0.0, word_dropout=0.99)
    batch = collate(list(_rows()))
    with torch.no_grad():
        first, _ = net(batch.features, batch.lengths, batch.mask)
        second, _ = net(batch.features, batch.lengths, batch.mask)
    torch.testing.assert_close(first, second)
    net.train()
    with torch.no_grad():
        dropped, _ = net(batch.features, batch.lengths, batch.mask)
    assert not torch.allclose(first, dropped)


def test_batches_cut_from_arrow_equal_the_collated_rows():
    from datasets import Dataset

    from seqtag.data.batching import EncodedBatches

    short, long = _rows()
    empty_word = {"word_ids": [4], "char_ids": [[]], "label_ids": [2]}
    rows = [long, short, empty_word, short]
    encoded = Dataset.from_list(rows)
    for indices in ([0, 1, 2, 3], [3, 1], [2]):
        cut, collated = EncodedBatches.from_arrow(encoded)[indices], collate([rows[i] for i in indices])
        for name in ("word_ids", "char_ids"):
            assert torch.equal(cut.features[name], collated.features[name])
        assert torch.equal(cut.labels, collated.labels) and torch.equal(cut.mask, collated.mask)
    per_text = Dataset.from_list([{"word_ids": [5, 6], "label_id": 1}, {"word_ids": [7], "label_id": 0}])
    assert EncodedBatches.from_arrow(per_text)[[1, 0]].labels.tolist() == [0, 1]
    one_token_each = Dataset.from_list([{"word_ids": [5], "label_ids": [1]}, {"word_ids": [7], "label_ids": [0]}])
    assert EncodedBatches.from_arrow(one_token_each)[[0, 1]].labels.tolist() == [[1], [0]], "labels per token stay (B, T)"
