"""A language model's token stream and token-level helpers, in numpy: the stream of a corpus's ids end to end,
the rows of one truncated-BPTT window, what level a tokenizer works at, and ids back to text. No torch here:
`streams.py` serves these windows to PyTorch, the onnxruntime language model reads them as they are."""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer
from tokenizers.models import BPE

from .vocab import BPE_PIECES, CHAR, PAD_ID, UNK_ID, WORD

if TYPE_CHECKING:
    from datasets import Dataset

IGNORE_INDEX = -100  # positions the loss and the metrics skip (padding); batching.py re-exports it

EOS = "<eos>"
EOS_ID = 2  # word level: after <pad> and <unk>


def token_level(tokenizer: Tokenizer) -> str:
    """The data.tokenizer a language model's tokenizer was trained as (word, char or bpe), read from the
    tokenizer itself."""
    if isinstance(tokenizer.model, BPE):
        return BPE_PIECES
    return WORD if tokenizer.token_to_id(EOS) == EOS_ID else CHAR


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




def window_rows(stream: TokenStream, columns: Sequence[int], column_length: int, index: int, bptt: int,
                reverse: bool = False) -> np.ndarray:
    """Window `index` of each of `columns` (column j holds positions [j·L, (j+1)·L) of the stream, L =
    `column_length`): (columns, ≤ bptt + 1) ids, IGNORE_INDEX past the stream's end. Inputs are a row's first
    `bptt` ids, targets its last."""
    n, length = len(stream), column_length
    offset = index * bptt
    width = min(bptt + 1, length - offset)
    rows = np.full((len(columns), width), IGNORE_INDEX, dtype=np.int64)
    for row, column in enumerate(columns):
        start = column * length + offset
        stop = min(start + width, (column + 1) * length, n)
        if reverse:  # position p of the reversed stream is n-1-p of the stream
            ids = stream.slice(n - stop, n - start)[::-1]
        else:
            ids = stream.slice(start, stop)
        rows[row, :len(ids)] = ids
    return rows


def encode_text(tokenizer: Tokenizer, level: str, text: str) -> list[int]:
    """Token ids of `text` as training saw them; for words, each "\\n" is <eos>."""
    if level != WORD:
        return tokenizer.encode(text, add_special_tokens=False).ids
    ids: list[int] = []
    for number, line in enumerate(text.split("\n")):
        if number:
            ids.append(EOS_ID)
        ids.extend(tokenizer.encode(line, add_special_tokens=False).ids)
    return ids


def start_ids(tokenizer: Tokenizer, level: str) -> list[int]:
    """The context a text begins in: a line break (word <eos>, or the newline token when known)."""
    if level == WORD:
        return [EOS_ID]
    newline = tokenizer.encode("\n", add_special_tokens=False).ids
    return newline if len(newline) == 1 and newline[0] != UNK_ID else []
