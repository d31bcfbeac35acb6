"""Batches of similar length for evaluation and prediction, and ragged ids padded into rows: numpy only, so the
onnxruntime predictors (which never import torch) cut and pad their batches exactly as the PyTorch ones do."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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


def pad_ragged(flat: np.ndarray, lengths: np.ndarray, width: int, pad: int) -> np.ndarray:
    """(N, width) int64 array of the N runs of `flat` (their lengths given), padded with `pad`, in one copy."""
    rows = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded = np.full((len(lengths), width), pad, dtype=np.int64)
    padded[rows, np.arange(len(flat)) - starts] = flat
    return padded
