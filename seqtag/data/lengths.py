"""Batches of similar length for evaluation and prediction: plain Python, so the onnxruntime predictors
(which never import torch) cut their batches exactly as the PyTorch ones do."""
from __future__ import annotations

from collections.abc import Sequence

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
