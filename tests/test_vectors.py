"""Pretrained word vectors: they join the vocabulary and initialise the embedding rows, for taggers and
classifiers alike."""
from __future__ import annotations

import pytest
import torch

from seqtag.config import load_recipe
from seqtag.errors import InputError, SeqtagError
from seqtag.families import FAMILIES


def _network(recipe):
    family = FAMILIES[recipe.task]
    recipe = family.resolve(recipe)
    prepared = family.prepare(recipe)
    net = family.build_network(recipe.model, prepared.sizes)
    family.start_network(net, recipe, prepared)
    return prepared, net


def _tagger(ner_files, vectors, *overrides):
    recipe = load_recipe("conll-ner", ["model.word_dim=3", f"model.pretrained_vectors={vectors}", *overrides],
                         train=ner_files["train"], dev=ner_files["dev"])
    return _network(recipe)


def test_vectors_initialise_embeddings_and_extend_the_vocabulary(ner_files, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 3\nparis 0.5 -1 2\nzurich 1 1 1\n", encoding="utf-8")
    prepared, net = _tagger(ner_files, vectors)
    vocab = prepared.featurizer.words.get_vocab()
    assert "zurich" in vocab, "a pretrained word unseen in training still gets its own id"
    weights = net.word_embedder().embedding.weight
    torch.testing.assert_close(weights[vocab["paris"]], torch.tensor([0.5, -1.0, 2.0]))
    torch.testing.assert_close(weights[vocab["zurich"]], torch.tensor([1.0, 1.0, 1.0]))


def test_with_lowercasing_the_first_case_variant_in_the_file_wins(ner_files, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("Paris 1 2 3\nparis 9 9 9\nPARIS 7 7 7\n", encoding="utf-8")
    prepared, net = _tagger(ner_files, vectors)
    row = prepared.featurizer.words.get_vocab()["paris"]
    torch.testing.assert_close(net.word_embedder().embedding.weight[row], torch.tensor([1.0, 2.0, 3.0]))


def test_frozen_embeddings_keep_pretrained_rows_and_train_the_others(ner_files, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("paris 0.5 -1 2\n", encoding="utf-8")
    prepared, net = _tagger(ner_files, vectors, "model.freeze_embeddings=true")
    vocab = prepared.featurizer.words.get_vocab()
    weight = net.word_embedder().embedding.weight
    (weight * torch.randn_like(weight)).sum().backward()
    assert weight.grad[vocab["paris"]].abs().sum() == 0, "the pretrained row stays fixed"
    assert weight.grad[vocab["<unk>"]].abs().sum() > 0 and weight.grad[vocab["ada"]].abs().sum() > 0


def test_vectors_of_the_wrong_size_name_the_line(ner_files, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("paris 0.5 -1 2\noslo 1 1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"vectors.txt, line 2: expected a word and 3 numbers"):
        _tagger(ner_files, vectors)


def test_classifiers_use_pretrained_vectors_too(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\ngood film,pos\nbad film,neg\ngreat fun,pos\ndull plot,neg\n", encoding="utf-8")
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("film 1 2 3 4\nzebra 0 0 0 0\n", encoding="utf-8")
    recipe = load_recipe("sentiment", ["model.word_dim=4", f"model.pretrained_vectors={vectors}"], train=train,
                         dev=train)
    prepared, net = _network(recipe)
    vocab = prepared.featurizer.words.get_vocab()
    torch.testing.assert_close(net.word_embedder().embedding.weight[vocab["film"]], torch.tensor([1.0, 2, 3, 4]))
    bpe = load_recipe("sentiment", ["model.word_dim=4", f"model.pretrained_vectors={vectors}", "data.tokenizer=bpe"],
                      train=train, dev=train)
    with pytest.raises(SeqtagError, match="pretrained_vectors needs data.tokenizer 'word'"):
        _network(bpe)
