"""Token streams for language models: a corpus's token ids end to end, cut into columns and served as
truncated-BPTT windows; and the token-level helpers generation needs.

Numpy and torch only (no `datasets` import), so a loaded language model predicts without the readers.
"""
from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from tokenizers import Tokenizer
from tokenizers.models import BPE
from torch.utils.data import DataLoader

from .batching import IGNORE_INDEX
from .vocab import BPE_PIECES, CHAR, PAD_ID, WORD

if TYPE_CHECKING:
    from datasets import Dataset

EOS = "<eos>"
EOS_ID = 2  # word level: after <pad> and <unk>


def token_level(tokenizer: Tokenizer) -> str:
    """The data.tokenizer a language model's tokenizer was trained as (word, char or bpe), read from the
    tokenizer itself."""
    if isinstance(tokenizer.model, BPE):
        return BPE_PIECES
    return WORD if tokenizer.token_to_id(EOS) == EOS_ID else CHAR


def encode_lines(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each line; word level closes every line with <eos>."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    if token_level(tokenizer) == WORD:
        return [e.ids + [EOS_ID] for e in encodings]
    return [e.ids for e in encodings]


def decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Text from token ids: characters joined, words spaced with <eos> as a line break, BPE bytes decoded."""
    level = token_level(tokenizer)
    if level == BPE_PIECES:
        return tokenizer.decode(ids, skip_special_tokens=True)
    tokens = [tokenizer.id_to_token(i) for i in ids if i != PAD_ID]
    if level == CHAR:
        return "".join(tokens)
    return " ".join(tokens).replace(f" {EOS} ", "\n").replace(f" {EOS}", "\n").replace(f"{EOS} ", "\n")


class TokenStream:
    """The token ids of a range of encoded rows, end to end.

    The ids stay in the Arrow file that `datasets` memory-maps; the stream holds zero-copy
    numpy views of its record batches, so a corpus ten times larger costs address space,
    not ten times the memory.
    """

    def __init__(self, pieces: list[np.ndarray], chars: int):
        self.pieces = [p for p in pieces if len(p)]
        self.starts = [0]
        for piece in self.pieces:
            self.starts.append(self.starts[-1] + len(piece))
        self.chars = chars

    @classmethod
    def from_dataset(cls, encoded: Dataset, first_row: int = 0, stop_row: int | None = None) -> "TokenStream":
        import pyarrow.compute as pc  # comes with `datasets`, which made `encoded`

        if encoded._indices is not None:
            encoded = encoded.flatten_indices()
        stop_row = len(encoded) if stop_row is None else stop_row
        pieces, row = [], 0
        for chunk in encoded.data.column("ids").chunks:
            lo, hi = max(first_row, row), min(stop_row, row + len(chunk))
            if lo < hi:
                pieces.append(chunk.slice(lo - row, hi - lo).flatten().to_numpy(zero_copy_only=True))
            row += len(chunk)
        chars = pc.sum(encoded.data.column("chars").slice(first_row, stop_row - first_row)).as_py() or 0
        return cls(pieces, chars)

    def __len__(self) -> int:
        return self.starts[-1]

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Ids at positions [start, stop), copied out of the memory map (only this slice)."""
        start, stop = max(0, start), min(len(self), stop)
        if start >= stop:
            return np.zeros(0, dtype=np.int32)
        first = bisect.bisect_right(self.starts, start) - 1
        parts = []
        while start < stop:
            piece, base = self.pieces[first], self.starts[first]
            end = min(stop, base + len(piece))
            parts.append(piece[start - base:end - base])
            start, first = end, first + 1
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)


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
        n, length = len(self.stream), self.column_length
        offset = index * self.bptt
        width = min(self.bptt + 1, length - offset)
        rows = np.full((len(self.columns), width), IGNORE_INDEX, dtype=np.int64)
        for row, column in enumerate(self.columns):
            start = column * length + offset
            stop = min(start + width, (column + 1) * length, n)
            if reverse:  # position p of the reversed stream is n-1-p of the stream
                ids = self.stream.slice(n - stop, n - start)[::-1]
            else:
                ids = self.stream.slice(start, stop)
            rows[row, :len(ids)] = ids
        rows = torch.from_numpy(rows)
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
