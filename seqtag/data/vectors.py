"""Pretrained word vectors in the word2vec/GloVe text format ("word v1 v2 ... vD" per line)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError


def read_vectors(path: str | Path, dim: int, limit: int) -> dict[str, torch.Tensor]:
    """The first `limit` vectors of a text file, checked to have `dim` values each.

    A word2vec header line ("count dim") is recognised and skipped. The first vector
    seen for a word wins, as files list frequent forms first.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "pretrained vector file not found; check model.pretrained_vectors.")
    vectors: dict[str, torch.Tensor] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if len(vectors) >= limit:
                break
            try:
                parts = raw.decode("utf-8").rstrip().split(" ")
            except UnicodeDecodeError:
                raise InputError(path, number, "is not valid UTF-8; save the vectors as UTF-8.") from None
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue
            if len(parts) != dim + 1:
                raise InputError(path, number, f"expected a word and {dim} numbers (model.word_dim), "
                                 f"found {len(parts) - 1} values.")
            try:
                values = torch.tensor([float(v) for v in parts[1:]])
            except ValueError:
                raise InputError(path, number, "expected numbers after the word.") from None
            vectors.setdefault(parts[0], values)
    return vectors


def match_vectors(vectors: dict[str, torch.Tensor], vocab: dict[str, int], lowercase: bool
                  ) -> dict[int, torch.Tensor]:
    """Pretrained vectors (in file order) for the ids of a vocabulary. With `lowercase`, a vocabulary word
    takes the first case variant the file lists ("Paris" before "paris" when the file has it first): files
    list frequent forms first, so the first is the best estimate."""
    fold = str.lower if lowercase else str
    by_id: dict[int, torch.Tensor] = {}
    for word, vector in vectors.items():
        index = vocab.get(fold(word))
        if index is not None:
            by_id.setdefault(index, vector)
    return by_id
