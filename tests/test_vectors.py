"""Pretrained word vectors: they join the vocabulary and initialise the embedding rows."""
from __future__ import annotations

import pytest
import torch

from seqtag.config import load_recipe
from seqtag.data.module import TaggingData
from seqtag.errors import InputError
from seqtag.train import build_task


def _data(ner_files, vectors):
    recipe = load_recipe("conll-ner", ["model.word_dim=3", f"model.pretrained_vectors={vectors}"],
                         train=ner_files["train"], dev=ner_files["dev"])
    data = TaggingData(recipe.data, recipe.model)
    data.setup("fit")
    return recipe, data


def test_vectors_initialise_embeddings_and_extend_the_vocabulary(ner_files, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 3\nparis 0.5 -1 2\nzurich 1 1 1\n", encoding="utf-8")
    recipe, data = _data(ner_files, vectors)
    vocab = data.preprocessor.encoder.words.get_vocab()
    assert "zurich" in vocab, "a pretrained word unseen in training still gets its own id"
    weights = build_task(recipe, data).net.encoder.words.weight
    torch.testing.assert_close(weights[vocab["paris"]], torch.tensor([0.5, -1.0, 2.0]))
    torch.testing.assert_close(weights[vocab["zurich"]], torch.tensor([1.0, 1.0, 1.0]))


def test_vectors_of_the_wrong_size_name_the_line(ner_files, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("paris 0.5 -1 2\noslo 1 1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"vectors.txt, line 2: expected a word and 3 numbers"):
        _data(ner_files, vectors)
