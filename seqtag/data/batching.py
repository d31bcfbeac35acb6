"""Length-bucketed batches, and the one padding step that training and prediction share."""
from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from itertools import chain
from dataclasses import dataclass

import numpy as np
import torch

from .featurizer import LM_CHAR_IDS
from .lengths import MAX_BATCH_TOKENS, length_batches, pad_ragged  # noqa: F401 - torch-free, re-exported
from .tokens import IGNORE_INDEX  # noqa: F401 - positions the loss and the metrics skip (padding)
from .vocab import PAD_ID


@dataclass
class Batch:
    features: dict[str, torch.Tensor]  # what the embedders read: "word_ids" (B, T), "char_ids" (B, T, C), ...
                                       # PAD_ID past each length
    lengths: torch.Tensor              # (B,) int64, on the CPU (pack_padded_sequence wants it there)
    mask: torch.Tensor                 # (B, T) bool, True on real tokens
    labels: torch.Tensor | None        # (B, T) int64, IGNORE_INDEX on padding; or (B,) for a label per text;
                                       # None when predicting

    def to(self, device: torch.device | str) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch({key: move(value) for key, value in self.features.items()}, self.lengths, move(self.mask),
                     move(self.labels))


def collate(rows: Sequence[dict]) -> Batch:
    """Pad a list of encoded rows into a Batch.

    A row has "word_ids", optionally "char_ids" (absent when the model reads no characters),
    and "label_ids" (one per token) or "label_id" (one per text), or no label when predicting.
    """
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    return EncodedBatches.from_lists(columns)[list(range(len(rows)))]


def _flat(lists) -> np.ndarray:
    return np.fromiter(chain.from_iterable(lists), dtype=np.int64)


def _offsets(lists) -> np.ndarray:
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    return np.concatenate([[0], np.cumsum(lengths)])


def pad(lengths: np.ndarray, words: np.ndarray, chars: np.ndarray | None = None,
        char_lengths: np.ndarray | None = None, labels: np.ndarray | None = None, per_token: bool = True,
        lm_chars: np.ndarray | None = None, lm_char_lengths: np.ndarray | None = None) -> Batch:
    """The one padding step of every batch: flat ids (sentence after sentence) into (B, T) tensors.

    `chars`/`char_lengths` are the characters of every token, token after token (`lm_chars`/`lm_char_lengths`
    likewise each token's piece of the sentence's text, for the "lm" embedder); `labels` holds one label
    per token (`per_token`, as many as `words`) or one per row.
    """
    lengths = torch.from_numpy(np.ascontiguousarray(lengths, dtype=np.int64))
    size, longest = len(lengths), int(lengths.max())
    mask = torch.arange(longest)[None, :] < lengths[:, None]
    # Fill through the mask: it visits (sentence, position) in the order the rows are flattened,
    # which is one tensor copy per field instead of a Python loop over words.
    word_ids = torch.full((size, longest), PAD_ID, dtype=torch.long)
    word_ids[mask] = torch.from_numpy(words.astype(np.int64, copy=False))
    features = {"word_ids": word_ids}
    if chars is not None:
        widest = max(1, int(char_lengths.max())) if len(char_lengths) else 1
        char_ids = torch.full((size, longest, widest), PAD_ID, dtype=torch.long)
        char_ids[mask] = _pad_ragged(chars, char_lengths, widest)
        features["char_ids"] = char_ids
    if lm_chars is not None:
        widest = max(1, int(lm_char_lengths.max())) if len(lm_char_lengths) else 1
        pieces = torch.full((size, longest, widest), PAD_ID, dtype=torch.long)
        pieces[mask] = _pad_ragged(lm_chars, lm_char_lengths, widest)
        features[LM_CHAR_IDS] = pieces
    tensor_labels = None
    if labels is not None and per_token:
        tensor_labels = torch.full((size, longest), IGNORE_INDEX, dtype=torch.long)
        tensor_labels[mask] = torch.from_numpy(labels.astype(np.int64, copy=False))
    elif labels is not None:
        tensor_labels = torch.from_numpy(labels.astype(np.int64, copy=False))
    return Batch(features, lengths, mask, tensor_labels)


def _pad_ragged(flat: np.ndarray, lengths: np.ndarray, width: int) -> torch.Tensor:
    """(N, width) tensor of N runs of `flat` (their lengths given), padded with PAD_ID, in one copy."""
    return torch.from_numpy(pad_ragged(flat, lengths, width, PAD_ID))


def _ranges(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in a flat array of the items of `rows` (row r holds offsets[r]:offsets[r+1]), and their
    lengths."""
    starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
    positions = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
    return positions, lengths


class EncodedBatches(torch.utils.data.Dataset):
    """Encoded rows held as flat id arrays with their offsets; indexed by a list of row indices (what a batch
    sampler yields), it returns the padded Batch. Training cuts batches straight out of an encoded split's
    Arrow columns (`from_arrow`: no row is turned into Python lists on the way); prediction flattens what the
    featurizer gave once (`from_lists`). Both go through the same `pad`."""

    def __init__(self, words: np.ndarray, word_offsets: np.ndarray, chars: np.ndarray | None = None,
                 char_offsets: np.ndarray | None = None, labels: np.ndarray | None = None,
                 label_offsets: np.ndarray | None = None, lm_chars: np.ndarray | None = None,
                 lm_char_offsets: np.ndarray | None = None):
        self.words, self.word_offsets = words, word_offsets
        self.lm_chars, self.lm_char_offsets = lm_chars, lm_char_offsets  # each token's piece of its sentence
        self.chars, self.char_offsets = chars, char_offsets           # characters of every token, token after token
        self.labels, self.label_offsets = labels, label_offsets       # per token (with offsets) or per row

    @classmethod
    def from_arrow(cls, encoded) -> "EncodedBatches":
        """From an encoded `datasets.Dataset` (columns word_ids, [char_ids], [label_ids | label_id])."""
        if getattr(encoded, "_indices", None) is not None:
            encoded = encoded.flatten_indices()
        table = encoded.data
        parts = dict(zip(("words", "word_offsets"), _list_column(table.column("word_ids"))))
        if "char_ids" in table.column_names:
            tokens = table.column("char_ids").combine_chunks()
            parts.update(zip(("chars", "char_offsets"), _list_column(tokens.flatten())))
        if LM_CHAR_IDS in table.column_names:
            pieces = table.column(LM_CHAR_IDS).combine_chunks()
            parts.update(zip(("lm_chars", "lm_char_offsets"), _list_column(pieces.flatten())))
        if "label_ids" in table.column_names:
            parts.update(zip(("labels", "label_offsets"), _list_column(table.column("label_ids"))))
        elif "label_id" in table.column_names:
            parts["labels"] = table.column("label_id").to_numpy()
        return cls(**parts)

    @classmethod
    def from_lists(cls, encoded: dict[str, list]) -> "EncodedBatches":
        """From the featurizer's lists: "word_ids" per row, optionally "char_ids" and "label_ids"/"label_id"."""
        parts = {"words": _flat(encoded["word_ids"]), "word_offsets": _offsets(encoded["word_ids"])}
        if "char_ids" in encoded:
            spelled = [chars for row in encoded["char_ids"] for chars in row]
            parts.update(chars=_flat(spelled), char_offsets=_offsets(spelled))
        if LM_CHAR_IDS in encoded:
            pieces = [piece for row in encoded[LM_CHAR_IDS] for piece in row]
            parts.update(lm_chars=_flat(pieces), lm_char_offsets=_offsets(pieces))
        if "label_ids" in encoded:
            parts.update(labels=_flat(encoded["label_ids"]), label_offsets=_offsets(encoded["label_ids"]))
        elif "label_id" in encoded:
            parts["labels"] = np.asarray(encoded["label_id"], dtype=np.int64)
        return cls(**parts)

    def __len__(self) -> int:
        return len(self.word_offsets) - 1

    def __getitem__(self, rows) -> Batch:
        rows = np.asarray(rows, dtype=np.int64)
        tokens, lengths = _ranges(self.word_offsets, rows)
        chars = char_lengths = None
        if self.chars is not None:
            positions, char_lengths = _ranges(self.char_offsets, tokens)
            chars = self.chars[positions]
        lm_chars = lm_char_lengths = None
        if self.lm_chars is not None:
            positions, lm_char_lengths = _ranges(self.lm_char_offsets, tokens)
            lm_chars = self.lm_chars[positions]
        labels = None
        if self.labels is not None:
            labels = self.labels[tokens] if self.label_offsets is not None else self.labels[rows]
        return pad(lengths, self.words[tokens], chars, char_lengths, labels, per_token=self.label_offsets is not None,
                   lm_chars=lm_chars, lm_char_lengths=lm_char_lengths)


def _list_column(column) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets) of an Arrow list column, offsets starting at 0."""
    import pyarrow as pa  # comes with `datasets`, which made the column

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = array.offsets.to_numpy().astype(np.int64)
    return array.flatten().to_numpy(zero_copy_only=False), offsets - offsets[0]


class BucketBatchSampler:
    """Yields batches of indices of similar length, in a seeded random order each epoch.

    Sentences are shuffled, then sorted by length (a stable sort, so sentences of one length
    come in a new random order each epoch), cut into batches, and the batches shuffled: batch
    contents change between epochs while padding stays as low as a full sort gives. With
    `pool_batches`, the sort runs within pools of that many batches instead of the whole split.
    Under DDP each rank takes every `world_size`-th batch (padded to an equal count) of the
    same order. With `sample=(kept, drawn)`, an epoch holds the first `kept` items and a seeded sample of
    `drawn` of the items after them, a new sample each epoch (fine-tuning's replay data).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, pool_batches: int | None = None, first_batch=lambda: 0,
                 sample: tuple[int, int] | None = None):
        self.first_batch = first_batch  # a run resumed mid-epoch starts at the first batch it had not trained on
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.sample = sample
        self.items = sum(sample) if sample else len(self.lengths)  # items per epoch
        self.pool_size = batch_size * pool_batches if pool_batches else max(1, self.items)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _evaluation_batches(self) -> list[list[int]]:
        # Small enough batches that every rank gets at least one (Lightning refuses an empty loader).
        size = min(self.batch_size, max(1, math.ceil(len(self.lengths) / self.world_size)))
        return length_batches(self.lengths, size)

    def _all_batches(self) -> list[list[int]]:
        if not self.shuffle:
            return self._evaluation_batches()
        rng = random.Random(self.seed * 100_003 + self.epoch)
        if self.sample:
            kept, drawn = self.sample
            indices = list(range(kept)) + rng.sample(range(kept, len(self.lengths)), drawn)
        else:
            indices = list(range(len(self.lengths)))
        rng.shuffle(indices)
        batches = []
        for start in range(0, len(indices), self.pool_size):
            pool = sorted(indices[start:start + self.pool_size], key=lambda i: self.lengths[i])
            batches.extend(pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size))
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if self.world_size > 1:
            if self.shuffle:
                # Training ranks must take the same number of steps: the last batches repeat to even them out.
                per_rank = math.ceil(len(batches) / self.world_size)
                batches = (batches * 2)[: per_rank * self.world_size]
            # Evaluation is never padded, so each sentence is counted once over all ranks.
            batches = batches[self.rank::self.world_size]
        if self.shuffle:
            batches = batches[self.first_batch():]  # the epoch's own order, so the rest is exactly what was left
        return iter(batches)

    def __len__(self) -> int:
        count = math.ceil(len(self.lengths) / self.batch_size) if not self.shuffle else sum(
            math.ceil(min(self.pool_size, self.items - s) / self.batch_size)
            for s in range(0, self.items, self.pool_size))
        if not self.shuffle:
            return len(range(self.rank, len(self._evaluation_batches()), self.world_size))
        return math.ceil(count / self.world_size)
