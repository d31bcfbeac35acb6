"""Token embedders: each turns a batch's features into one vector per token, (B, T, D).

Every embedder has `feature` (the batch feature it reads: "word_ids" or "char_ids"), `output_size`, and
`forward(features, mask) → (B, T, D)`; it is built as `Embedder(model, sizes, word_dropout)` from the recipe's
model settings and the vocabulary sizes. It registers itself in `EMBEDDERS` under the name `model.embedders`
uses; `default_for` names the task families whose networks have it unless the recipe lists others.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .registry import Registry

EMBEDDERS = Registry("model.embedders", "token embedder")
PAD_ID, UNK_ID = 0, 1  # the same ids in every vocabulary (seqtag.data.vocab builds them that way)
WORD_EMBEDDER = "word"  # the embedder every network starts with (its rows grow when fine-tuning adds words)


@EMBEDDERS.register(WORD_EMBEDDER)
class WordEmbedder(nn.Module):
    """A vector per word id. During training a few words become <unk> (word dropout), so the unknown
    vector learns something useful, and with `model.embedding_dropout` whole word types lose their vector for
    the batch. Pretrained rows can be frozen while the others learn."""

    default_for = ("tagging", "classification", "lm")

    feature = "word_ids"

    def __init__(self, model, sizes: Mapping[str, int], word_dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(sizes["words"], model.word_dim, padding_idx=PAD_ID)
        self.word_dropout = word_dropout
        self.embedding_dropout = model.embedding_dropout
        self.output_size = model.word_dim
        self._frozen_rows: torch.Tensor | None = None

    def forward(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        ids = features["word_ids"]                                            # (B, T)
        if self.training and self.word_dropout > 0:
            drop = torch.rand(ids.shape, device=ids.device) < self.word_dropout
            ids = ids.masked_fill(drop & mask, UNK_ID)
        vectors = self.embedding(ids)                                         # (B, T, Dw)
        if self.training and self.embedding_dropout > 0:
            # One draw per word type (a row of the matrix), so every occurrence of a dropped word is zero.
            keep = torch.rand(self.embedding.num_embeddings, device=ids.device) >= self.embedding_dropout
            scale = keep.to(vectors.dtype) / (1 - self.embedding_dropout)    # (V,)
            vectors = vectors * scale[ids][..., None]                         # (B, T, Dw)
        return vectors

    def set_rows(self, vectors: Mapping[int, torch.Tensor], freeze: bool) -> int:
        """Copy pretrained vectors into the rows of their ids; with `freeze` exactly those rows stay fixed
        (unknown and randomly started rows still learn). Returns how many rows were set."""
        with torch.no_grad():
            for index, vector in vectors.items():
                self.embedding.weight[index] = vector
        if freeze and vectors:
            rows = torch.zeros(self.embedding.num_embeddings, 1, dtype=torch.bool)
            rows[list(vectors)] = True
            self._frozen_rows = rows
            self.embedding.weight.register_hook(self._zero_frozen_rows)
        return len(vectors)

    def _zero_frozen_rows(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.masked_fill(self._frozen_rows.to(grad.device), 0.0)


@EMBEDDERS.register("char_cnn")
class CharCNN(nn.Module):
    """A vector per word: a convolution over its characters, max-pooled over real characters."""

    default_for = ("tagging", "classification")

    feature = "char_ids"

    def __init__(self, model, sizes: Mapping[str, int], word_dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(sizes["chars"], model.char_dim, padding_idx=PAD_ID)
        self.conv = nn.Conv1d(model.char_dim, model.char_hidden, model.char_kernel, padding=model.char_kernel // 2)
        self.output_size = model.char_hidden

    def encode_words(self, chars: torch.Tensor) -> torch.Tensor:
        # chars: (N, C) for N real words
        words = chars.size(0)
        if not self.training:
            chars = _rounded_up(chars)                             # (N', C'): see _rounded_up
        x = self.embed(chars).transpose(1, 2)                      # (N, D, C)
        h = self.conv(x)[:, :, : chars.size(1)]                    # (N, F, C); even kernels pad one extra
        h = h.masked_fill((chars == PAD_ID)[:, None, :], float("-inf"))
        return h.max(dim=2).values[:words]                         # (N, F)

    def forward(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        return _per_real_word(self.encode_words, features["char_ids"], mask)


@EMBEDDERS.register("char_lstm")
class CharLSTM(nn.Module):
    """A vector per word: the final states of a BiLSTM reading its characters both ways."""

    default_for = ()

    feature = "char_ids"

    def __init__(self, model, sizes: Mapping[str, int], word_dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(sizes["chars"], model.char_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(model.char_dim, model.char_hidden, batch_first=True, bidirectional=True)
        self.output_size = 2 * model.char_hidden

    def encode_words(self, chars: torch.Tensor) -> torch.Tensor:
        lengths = (chars != PAD_ID).sum(1).clamp(min=1).cpu()     # (N,)
        packed = pack_padded_sequence(self.embed(chars), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)                              # h: (2, N, H)
        return torch.cat([h[0], h[1]], dim=-1)                     # (N, 2H)

    def forward(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        return _per_real_word(self.encode_words, features["char_ids"], mask)


def _rounded_up(chars: torch.Tensor) -> torch.Tensor:
    """`chars` padded to a word count that is a power of two and a word length that is a multiple of 8, so that
    prediction meets few distinct convolution shapes. oneDNN keeps a compiled kernel (with its buffers) per shape
    it has run, up to 1,024 of them: with a shape per batch, a long prediction run grew by hundreds of MB. The
    padding rows and characters are ignored (PAD embeds to zeros, as the convolution's own padding, and is masked
    before the max)."""
    words, length = chars.shape
    rows, columns = 1 << max(0, words - 1).bit_length(), -(-length // 8) * 8
    if (rows, columns) == (words, length):
        return chars
    return torch.nn.functional.pad(chars, (0, columns - length, 0, rows - words), value=PAD_ID)


def _per_real_word(encode, char_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Run a character encoder on the real words only; padding positions stay zero."""
    vectors = encode(char_ids[mask])                               # (N, D)
    full = vectors.new_zeros(*mask.shape, vectors.size(-1))        # (B, T, D)
    full[mask] = vectors
    return full
