"""Token streams for language models: a corpus's token ids end to end, cut into columns and served as
truncated-BPTT windows; and the token-level helpers generation needs.

Numpy and torch only (no `datasets` import), so a loaded language model predicts without the readers.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from .batching import IGNORE_INDEX  # noqa: F401 - re-exported
# The stream and the token-level helpers are numpy only (tokens.py): generation and scoring with onnxruntime
# use them without torch. Their names stay importable from here.
from .tokens import EOS, EOS_ID, TokenStream, decode, token_level, window_rows  # noqa: F401
from .vocab import PAD_ID, WORD

if TYPE_CHECKING:
    from datasets import Dataset


def encode_lines(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each line; word level closes every line with <eos>."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    if token_level(tokenizer) == WORD:
        return [e.ids + [EOS_ID] for e in encodings]
    return [e.ids for e in encodings]


class StreamWindows(torch.utils.data.Dataset):
    """Truncated-BPTT batches over a stream cut into `columns` contiguous columns.

    Column j holds positions [j·L, (j+1)·L); batch i holds window i of every column, so the
    hidden state after batch i is the right start for batch i+1. Training drops the last
    len % columns tokens (logged); evaluation keeps them, padding the last column, so every
    token but each column's first is predicted. With `backward`, each batch also holds the
    same windows of the reversed stream, for the right-to-left model of a bidirectional pair.
    """

    def __init__(self, stream: TokenStream, columns: int, bptt: int, pad: bool = False, backward: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.stream, self.bptt, self.backward = stream, bptt, backward
        n = len(stream)
        self.column_length = math.ceil(n / columns) if pad else n // columns
        self.dropped = n - self.column_length * columns if not pad else 0
        self.columns = list(range(rank, columns, world_size))  # a rank reads its share of the columns

    def __len__(self) -> int:
        return max(0, math.ceil((self.column_length - 1) / self.bptt))

    def _window(self, index: int, reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.from_numpy(window_rows(self.stream, self.columns, self.column_length, index, self.bptt, reverse))
        inputs = rows[:, :-1].clamp(min=PAD_ID)  # padding reads as <pad>; its targets are ignored
        return inputs, rows[:, 1:]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        inputs, targets = self._window(index, reverse=False)
        batch = {"inputs": inputs, "targets": targets}
        if self.backward:
            batch["backward_inputs"], batch["backward_targets"] = self._window(index, reverse=True)
        return batch


class WindowOrder(torch.utils.data.Sampler):
    """Window indices in stream order, starting where `first_window()` says (0 unless a run resumes mid-epoch)."""

    def __init__(self, count: int, first_window=lambda: 0):
        self.count = count
        self.first_window = first_window

    def __iter__(self):
        first = self.first_window()
        return iter(range(first if 0 < first < self.count else 0, self.count))

    def __len__(self) -> int:
        return self.count  # the whole epoch, so the resumed batch numbers line up with the windows


def window_loader(stream: TokenStream, columns: int, bptt: int, pad: bool, backward: bool = False,
                  rank: int = 0, world_size: int = 1, first_window=lambda: 0) -> DataLoader:
    """Windows in order (the carried hidden state needs it); each item is already a batch."""
    windows = StreamWindows(stream, columns, bptt, pad, backward, rank, world_size)
    return DataLoader(windows, batch_size=None, sampler=WindowOrder(len(windows), first_window))
