"""Pretrained word vectors: read once, keeping only the rows a model can use.

Formats: text with one "word v1 ... vD" per line (GloVe has no header; word2vec and fastText .vec start
with a "count dim" line) and word2vec binary (a "count dim" line, then per word: the word, a space, D
little-endian float32 numbers and, from the original C tool, a newline). Either may be gzip-compressed.
The format is sniffed from the first bytes unless `model.pretrained_format` names it.

A file can hold millions of vectors, so reading keeps only (1) the vectors of the words asked for, matched
exactly or through their lowercase form, and (2) the file's first `first_n` distinct words (files list
frequent words first; those may join a vocabulary). The numbers of any other line are never parsed.

The API for code that grows a vocabulary later (fine-tuning):

    vectors = load_vectors(path, dim, new_words, first_n=0)      # word in the file -> float32 array
    rows = match_vectors(vectors, {word: id for the new words}, lowercase)   # id -> tensor
    report = coverage(match_words(vectors, words, lowercase), counts)
"""
from __future__ import annotations

import gzip
import io
import logging
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ..errors import InputError

log = logging.getLogger("seqtag")

FORMATS = ("auto", "text", "word2vec_binary")
BLOCK = 16 << 20                   # bytes per read: few reads, Python steps and parser calls per gigabyte
GZIP_MAGIC = b"\x1f\x8b"
_HEADER = re.compile(rb"\s*(\d+)\s+(\d+)\s*")
_NUMERIC_BYTES = frozenset(b"0123456789.-+eE \t\r")
_CONTROL = re.compile(rb"[\x00-\x1f]")     # a word of a binary record never holds these: a misaligned read does


# -- public API -----------------------------------------------------------------------------------------------

def load_vectors(path: str | Path, dim: int, wanted: Iterable[str] = (), first_n: int = 0,
                 format: str = "auto") -> dict[str, np.ndarray]:
    """The vectors of `path` worth keeping, word (as the file spells it) -> float32 array of `dim` numbers,
    in file order.

    Kept: the first `first_n` distinct words of the file (they are the dict's first `first_n` keys; see
    `first_words`), every word of `wanted` the file lists exactly, and for each lowercase form of a wanted
    word the first word of the file with that lowercase form ("Paris" for "paris" when it comes first).
    The first vector of a word listed twice wins. `format` is "auto", "text" or "word2vec_binary".
    Any problem with the file is an InputError naming it, and the line (text) or record (binary)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "pretrained vector file not found; check model.pretrained_vectors.")
    keep = _Keeper(wanted, first_n)
    with path.open("rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        reader = _Reader(stream, path)
        try:
            header, first_block = reader.header()
            binary = _is_binary(header, first_block, format, path)
            if binary:
                _read_binary(reader, header, first_block, dim, keep)
            else:
                _read_text(reader, header, first_block, dim, keep)
        except (OSError, EOFError, zlib.error) as err:
            if not compressed:
                raise
            raise InputError(path, None, f"is a damaged gzip file ({err}; it broke {reader.where()}); "
                             "download or compress it again.") from None
    if not keep.seen:
        raise InputError(path, None, "holds no word vectors; expected lines 'word v1 v2 ...' or word2vec binary.")
    return keep.vectors


def first_words(vectors: Mapping[str, np.ndarray], first_n: int) -> list[str]:
    """The file's first `first_n` distinct words, of vectors read by `load_vectors` with that `first_n`."""
    return list(islice(vectors, first_n))


def match_words(vectors: Mapping[str, np.ndarray], words: Iterable[str], lowercase: bool) -> dict[str, str]:
    """For each of `words` that has a vector, the word of the file whose vector it takes.

    With `lowercase` (the vocabulary is lowercased) a word takes the first case variant the file lists:
    files list frequent forms first, so the first is the best estimate. Without it a word takes its exact
    form, and failing that the first variant with the same lowercase form (the lowercase fallback)."""
    words = set(words)
    chosen = {} if lowercase else {word: word for word in words if word in vectors}
    by_fold: dict[str, list[str]] = defaultdict(list)
    for word in words - chosen.keys():
        by_fold[word.lower()].append(word)
    for file_word in vectors:  # file order
        for word in by_fold.get(file_word.lower(), ()):
            chosen.setdefault(word, file_word)
    return chosen


def match_vectors(vectors: Mapping[str, np.ndarray], vocab: Mapping[str, int], lowercase: bool
                  ) -> dict[int, torch.Tensor]:
    """Pretrained rows by vocabulary id (see `match_words` for which vector a word takes)."""
    return {vocab[word]: torch.from_numpy(vectors[file_word])
            for word, file_word in match_words(vectors, vocab, lowercase).items()}


def coverage(matched: Mapping[str, str], counts: Mapping[str, int], unknown_tokens: int = 0) -> dict:
    """How much of a vocabulary found a vector: of its types (the words of `counts`) and of the training tokens
    (`counts` are each word's training count, `unknown_tokens` those read as <unk>, which have none), and how
    many of each came through a case variant (`matched` from `match_words`: word -> the file word taken)."""
    found = [word for word in counts if word in matched]
    fallback = [word for word in found if matched[word] != word]
    tokens = sum(counts.values()) + unknown_tokens
    found_tokens = sum(counts[word] for word in found)

    def percent(part: int, whole: int) -> float:
        return round(100.0 * part / whole, 2) if whole else 0.0

    return {"types": len(counts), "types_found": len(found), "types_percent": percent(len(found), len(counts)),
            "tokens": tokens, "tokens_found": found_tokens, "tokens_percent": percent(found_tokens, tokens),
            "lowercase_fallback_types": len(fallback),
            "lowercase_fallback_tokens": sum(counts[word] for word in fallback)}


def describe(report: dict) -> str:
    """One log line for a `coverage` report."""
    return (f"pretrained vectors found for {report['types_percent']:.1f}% of {report['types']:,} vocabulary words "
            f"and {report['tokens_percent']:.1f}% of {report['tokens']:,} training tokens; "
            f"{report['lowercase_fallback_types']:,} words ({report['lowercase_fallback_tokens']:,} tokens) "
            "through a case variant")


def counts_from_ids(ids: Iterable[np.ndarray], vocab: Mapping[str, int], skip: Iterable[str],
                    unknown: str) -> tuple[dict[str, int], int]:
    """Training counts per vocabulary word from encoded id arrays, and the count of `unknown` ids; the `skip`
    tokens (padding, end of line) are not words."""
    size = max(vocab.values()) + 1
    total = np.zeros(size, dtype=np.int64)
    for chunk in ids:
        total += np.bincount(np.asarray(chunk, dtype=np.int64), minlength=size)[:size]
    skipped = {vocab[token] for token in skip if token in vocab} | {vocab.get(unknown, -1)}
    counts = {word: int(total[index]) for word, index in vocab.items() if total[index] and index not in skipped}
    return counts, int(total[vocab[unknown]]) if unknown in vocab else 0


# -- reading ----------------------------------------------------------------------------------------------------

class _Keeper:
    """Decides, word by word in file order, which vectors to keep, and holds them."""

    def __init__(self, wanted: Iterable[str], first_n: int):
        self.wanted = set(wanted)
        self.wanted_folds = {word.lower() for word in self.wanted}
        self.first_n = first_n
        self.vectors: dict[str, np.ndarray] = {}   # filled in file order, a block of text lines at a time
        self.kept: set[str] = set()
        self.folds_taken: set[str] = set()
        self.seen = 0

    def wants(self, word: str) -> bool:
        self.seen += 1
        if word in self.kept:
            return False
        fold = word.lower()
        if len(self.kept) < self.first_n or word in self.wanted or (
                fold in self.wanted_folds and fold not in self.folds_taken):
            self.kept.add(word)
            self.folds_taken.add(fold)
            return True
        return False


class _Reader:
    """Big blocks of a (decompressed) stream, with where the reading is for error messages."""

    def __init__(self, stream: BinaryIO, path: Path):
        self.stream, self.path = stream, path
        self.line = 0           # text: lines handed out so far
        self.record = 0         # binary: records read so far
        self.offset = 0         # bytes consumed (of the decompressed data)

    def read(self) -> bytes:
        return self.stream.read(BLOCK)

    def header(self) -> tuple[tuple[int, int] | None, bytes]:
        """The "count dim" header if the first line is one, and the first block (header included)."""
        block = self.read()
        end = block.find(b"\n")
        match = _HEADER.fullmatch(block[:end if end >= 0 else len(block)])
        return ((int(match[1]), int(match[2])) if match else None), block

    def where(self) -> str:
        if self.record:
            return f"after record {self.record:,} (byte {self.offset:,} of the uncompressed data)"
        return f"after line {self.line:,}"


def _is_binary(header: tuple[int, int] | None, block: bytes, format: str, path: Path) -> bool:
    """Binary when the format says so, or (auto) when the bytes after the header and the first word are not
    the digits of a text line."""
    if format == "word2vec_binary":
        if header is None:
            raise InputError(path, 1, "model.pretrained_format is 'word2vec_binary' but the first line is not "
                             "a 'count dim' header; for a text file use pretrained_format=text or auto.")
        return True
    if format == "text" or header is None:
        return False
    rest = block[block.find(b"\n") + 1:]
    space = rest.find(b" ")
    sample = rest[space + 1:space + 1 + 4 * header[1]]
    newline = sample.find(b"\n")
    sample = sample[:newline] if newline >= 0 else sample
    return not (sample and any(byte in b"0123456789" for byte in sample) and set(sample) <= _NUMERIC_BYTES)


def _dim_mismatch(found: int, dim: int, where: str) -> str:
    return (f"the vectors have {found} numbers ({where}) but model.word_dim is {dim}; set "
            f"--set model.word_dim={found} to use this file, or use vectors of size {dim}.")


def _parse_rows(kept: list[tuple[str, bytes, int]], dim: int, path: Path, keep: _Keeper) -> None:
    """The numbers of the kept lines of a block ((word, numbers, line number) in file order), parsed in one call
    of pandas' C parser: a few times faster than numpy or float() per line, which matters when 100,000
    words are kept."""
    import pandas as pd  # a dependency of `datasets`; imported only when vectors are read

    if not kept:
        return
    try:
        rows = pd.read_csv(io.BytesIO(b"\n".join(numbers for _, numbers, _ in kept)), sep=" ", header=None,
                           dtype=np.float32, na_filter=False, engine="c").to_numpy()
    except (ValueError, pd.errors.ParserError):
        rows = None
    if rows is None or rows.shape != (len(kept), dim):
        for _, numbers, number in kept:  # find the line at fault
            bad = next((field for field in numbers.split() if not _is_number(field)), None)
            if bad is not None:
                raise InputError(path, number, "expected numbers after the word, found "
                                 f"{bad[:40].decode(errors='replace')!r}.")
        raise AssertionError("pandas refused lines that float() reads")  # not the user's to fix
    for (word, _, _), row in zip(kept, rows):
        keep.vectors[word] = row


def _is_number(field: bytes) -> bool:
    try:
        float(field)
        return True
    except ValueError:
        return False


def _read_text(reader: _Reader, header: tuple[int, int] | None, block: bytes, dim: int, keep: _Keeper) -> None:
    """Text vectors, line by line: only the word is split off a line, and only kept lines have their numbers
    parsed; the field count of every line is checked (bytes.count is a C loop)."""
    path = reader.path
    if header is not None:
        if header[1] != dim:
            raise InputError(path, 1, _dim_mismatch(header[1], dim, "the header 'count dim'"))
        block, reader.line = block[block.find(b"\n") + 1:], 1
    seen_vector = header is not None   # the header fixed the size; otherwise the first vector line does
    carry, number = b"", reader.line
    while block or carry:
        data = carry + block if carry else block
        # Whole lines only; the unfinished last one waits for the next block (at the end of the data, it is whole).
        end = data.rfind(b"\n") + 1 if block else len(data)
        carry = data[end:]
        kept: list[tuple[str, bytes, int]] = []
        position = 0
        while position < end:
            # Lines are found and measured inside the block, never copied out: only the word and kept numbers are.
            stop = data.find(b"\n", position, end)
            stop = end if stop < 0 else stop
            number += 1
            space = data.find(b" ", position, stop)
            if space <= position or data.count(b" ", position, stop) != dim:
                fields = _irregular_line(data[position:stop], dim, path, number, seen_vector)
                if fields is None:
                    position = stop + 1
                    continue
                word_bytes, numbers = fields
            else:
                word_bytes, numbers = data[position:space], None
            seen_vector = True
            try:
                word = word_bytes.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(path, number, "is not valid UTF-8; save the vectors as UTF-8.") from None
            if keep.wants(word):
                kept.append((word, b" ".join(numbers) if numbers is not None else data[space + 1:stop].rstrip(),
                             number))
            position = stop + 1
        _parse_rows(kept, dim, path, keep)
        reader.line = number
        more = bool(block)
        data = block = None  # let this block go before the next one is read: one block in memory, not two
        block = reader.read() if more else b""
        if not block and not carry:
            break


def _irregular_line(line: bytes, dim: int, path: Path, number: int, seen_vector: bool
                    ) -> tuple[bytes, list[bytes]] | None:
    """(word, number fields) of a line that is not "word" + `dim` single-spaced numbers: None for a blank line;
    trailing spaces, tabs and words holding spaces (GloVe 840B has a few) are accepted; a different count of
    numbers is an InputError."""
    fields = line.split()
    if not fields:
        return None
    if len(fields) - 1 == dim:
        return fields[0], fields[1:]
    if len(fields) - 1 > dim and not any(_is_number(f) for f in fields[1:len(fields) - dim]):
        return b" ".join(fields[:len(fields) - dim]), fields[len(fields) - dim:]
    found = len(fields) - 1
    if not seen_vector:
        raise InputError(path, number, _dim_mismatch(found, dim, f"line {number}"))
    raise InputError(path, number, f"expected a word and {dim} numbers like the lines before, found {found}: the "
                     "vector size changes within the file (or the line was cut); fix or remove that line.")


def _read_binary(reader: _Reader, header: tuple[int, int], buffer: bytes, dim: int, keep: _Keeper) -> None:
    """word2vec binary records: "word " + `dim` float32 (little-endian) + an optional newline. Only kept
    records are copied out; the others are skipped by offset."""
    path, (count, file_dim) = reader.path, header
    if file_dim != dim:
        raise InputError(path, 1, _dim_mismatch(file_dim, dim, "the header 'count dim'"))
    size = 4 * dim
    start = buffer.find(b"\n") + 1
    base, position = 0, start            # buffer[0] is byte `base` of the (uncompressed) data
    newlines: bool | None = None         # whether records end with a newline, learnt from the first
    finished = False

    def fail(record: int, at: int, message: str):
        raise InputError(path, record, f"(byte {base + at:,}) {message}", unit="record")

    for record in range(1, count + 1):
        reader.record, reader.offset = record - 1, base + position
        # Enough bytes for a word, its vector and a newline, unless the data ends first.
        while not finished and (buffer.find(b" ", position) < 0 or
                                len(buffer) - buffer.find(b" ", position) < size + 2):
            more = reader.read()
            finished = not more
            buffer, base, position = buffer[position:] + more, base + position, 0
        if newlines and buffer[position:position + 1] != b"\n":
            if position >= len(buffer):
                break
            fail(record, position, f"expected the newline that ends every record before it; the records "
                 f"before are not {dim} float32 numbers long (the vector size changes within the file) or the "
                 "file is damaged.")
        if buffer[position:position + 1] == b"\n":
            position += 1
        space = buffer.find(b" ", position)
        if space < 0 or len(buffer) - space - 1 < size:
            if position >= len(buffer) and finished:
                break
            fail(record, position, f"is cut short: it needs a word, a space and {size} bytes of numbers, but the "
                 f"file ends {len(buffer) - position} bytes later. The file is incomplete; download it again.")
        word_bytes = buffer[position:space]
        try:
            word = word_bytes.decode("utf-8")
        except UnicodeDecodeError:
            word = None
        if word is None or not word_bytes or _CONTROL.search(word_bytes):
            fail(record, position, f"expected a word (UTF-8 text) before the vector, found bytes "
                 f"{word_bytes[:20]!r}: the records before are not {dim} float32 numbers long (the vector size "
                 "changes within the file), the file is damaged, or it is not word2vec binary (set "
                 "model.pretrained_format=text).")
        end = space + 1 + size
        if newlines is None:
            newlines = buffer[end:end + 1] == b"\n"
        if keep.wants(word):
            keep.vectors[word] = np.frombuffer(buffer, dtype="<f4", count=dim, offset=space + 1).copy()
        position = end
    else:
        return
    reader.offset = base + position
    fail(reader.record + 1, position, f"is missing: the header promises {count:,} vectors but the file ends after "
         f"{reader.record:,}. The file was cut short; download it again.")


# -- for the data preparation of each family ---------------------------------------------------------------------

def read_pretrained(model, words: Iterable[str], first_n: int) -> dict[str, np.ndarray]:
    """The vectors of `model.pretrained_vectors` (a ModelConfig) for a vocabulary's `words`, plus the file's first
    `first_n` distinct words."""
    return load_vectors(model.pretrained_vectors, model.word_dim, words, first_n, model.pretrained_format)


def added_words(grown, parent) -> set[str]:
    """The words of a grown tokenizer (fine-tuning) its parent lacks: the only ones that want a pretrained row."""
    return set(grown.get_vocab()) - set(parent.get_vocab())


def record_coverage(vectors: Mapping[str, np.ndarray], counts: Mapping[str, int], lowercase: bool,
                    unknown_tokens: int) -> dict:
    """Log the coverage of the training vocabulary (`counts`: its words and training counts) and return it
    (config.json's "pretrained_coverage")."""
    report = coverage(match_words(vectors, counts, lowercase), counts, unknown_tokens)
    log.info(describe(report))
    return report
