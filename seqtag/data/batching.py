"""Length-bucketed batches and the collate function shared by training and prediction."""
from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from itertools import chain
from dataclasses import dataclass

import numpy as np
import torch

from .vocab import PAD_ID

IGNORE_INDEX = -100  # positions the loss and the metrics skip (padding)


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
    """Pad a list of encoded rows into a Batch: the one batching path of training and prediction.

    A row has "word_ids", optionally "char_ids" (absent when the model reads no characters),
    and "label_ids" (one per token) or "label_id" (one per text), or no label when predicting.
    """
    lengths = torch.as_tensor([len(row["word_ids"]) for row in rows], dtype=torch.long)
    size, longest = len(rows), int(lengths.max())
    mask = torch.arange(longest)[None, :] < lengths[:, None]
    # Fill through the mask: it visits (sentence, position) in the order the rows are flattened,
    # which is one tensor copy per field instead of a Python loop over words.
    word_ids = torch.full((size, longest), PAD_ID, dtype=torch.long)
    word_ids[mask] = torch.as_tensor([i for row in rows for i in row["word_ids"]], dtype=torch.long)
    features = {"word_ids": word_ids}
    if "char_ids" in rows[0]:
        widest = max((len(chars) for row in rows for chars in row["char_ids"]), default=1)
        char_ids = torch.full((size, longest, widest), PAD_ID, dtype=torch.long)
        char_ids[mask] = _pad_ragged([chars for row in rows for chars in row["char_ids"]], widest)
        features["char_ids"] = char_ids
    labels = None
    if "label_ids" in rows[0]:
        labels = torch.full((size, longest), IGNORE_INDEX, dtype=torch.long)
        labels[mask] = torch.as_tensor([i for row in rows for i in row["label_ids"]], dtype=torch.long)
    elif "label_id" in rows[0]:
        labels = torch.as_tensor([row["label_id"] for row in rows], dtype=torch.long)
    return Batch(features, lengths, mask, labels)


def _pad_ragged(lists: list[list[int]], width: int) -> torch.Tensor:
    """(N, width) tensor of the lists padded with PAD_ID, built with one flat copy instead of N small ones."""
    word_lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(word_lengths.sum()))
    rows = np.repeat(np.arange(len(lists)), word_lengths)
    starts = np.repeat(np.cumsum(word_lengths) - word_lengths, word_lengths)
    padded = np.full((len(lists), width), PAD_ID, dtype=np.int64)
    padded[rows, np.arange(len(flat)) - starts] = flat
    return torch.from_numpy(padded)


MAX_BATCH_TOKENS = 16_384  # caps evaluation and prediction memory on very long inputs, whatever the batch size


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int = MAX_BATCH_TOKENS) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most `batch_size` rows and `max_tokens` padded tokens,
    so little is padding and a very long input gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current, longest = [], [], 0
    for index in order:
        longest = max(longest, lengths[index])
        if current and (len(current) >= batch_size or longest * (len(current) + 1) > max_tokens):
            batches.append(current)
            current, longest = [], lengths[index]
        current.append(index)
    if current:
        batches.append(current)
    return batches


class BucketBatchSampler:
    """Yields batches of indices of similar length, in a seeded random order each epoch.

    Sentences are shuffled first and then sorted by length within large pools, so
    batch contents change between epochs while padding stays low. Under DDP each rank
    takes every `world_size`-th batch (padded to an equal count) of the same order.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, pool_batches: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pool_size = batch_size * pool_batches
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
        return iter(batches)

    def __len__(self) -> int:
        count = math.ceil(len(self.lengths) / self.batch_size) if not self.shuffle else sum(
            math.ceil(min(self.pool_size, len(self.lengths) - s) / self.batch_size)
            for s in range(0, len(self.lengths), self.pool_size))
        if not self.shuffle:
            return len(range(self.rank, len(self._evaluation_batches()), self.world_size))
        return math.ceil(count / self.world_size)
