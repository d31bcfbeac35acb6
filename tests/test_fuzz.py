"""Fuzzed readers (issue 11): every reader, on random and mutated input, returns well-formed rows or raises the
documented clear error, an `InputError` naming the file (and the line, where the problem has one).

Inputs come from two sources: slices of the real corpora in ../shared/data (read at test time, never copied
here; a reader whose corpus is absent fuzzes generated input only) and documents generated in each format,
and either kind may then be mutated byte by byte (separators, quotes, BOMs, NULs, broken UTF-8, lone
surrogates in JSON, truncation, deleted and repeated lines).

Each reader is checked two ways:

* `test_reader_parses_fuzzed_input`: 2,000 examples through the reader's parsing (the generator that
  `Dataset.from_generator` runs, with the same arguments) and the conversion of its rows to Arrow with the
  reader's features. This is where every crash would come from, at about 1 ms an example;
* `test_public_reader_on_fuzzed_input`: fewer examples through the public reader itself, Arrow cache
  included (about 10 ms an example, most of it the datasets builder), each under a fresh file name.

bench/fuzz_readers.py runs the same properties for 100,000 examples per reader.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import os
import random
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from seqtag.config import DataConfig
from seqtag.data import lm, readers, text_readers
from seqtag.data.classification import read_texts
from seqtag.data.corpus import check_scheme, read_corpus, resolve_scheme
from seqtag.data.streams import encode_lines
from seqtag.errors import InputError, SeqtagError

DATA = Path(os.environ.get("SEQTAG_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
EXAMPLES = 2_000
PUBLIC_EXAMPLES = 60
SLICE_BYTES = 200_000  # what is read of each real corpus: enough for variety, quick to load
MAX_SLICE = 3_000  # bytes of it in one example: a few sentences, so that an example takes about a millisecond


def fuzz_settings(examples: int, derandomize: bool = True) -> settings:
    """Settings for a fuzz run: no deadline (the machine is shared), no example database in the work tree,
    fixed seeds in the test suite (a CI run repeats the last one), health checks that big inputs trip off."""
    return settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example, HealthCheck.filter_too_much])


# ---------------------------------------------------------------------------
# Inputs: real slices, generated documents, mutations
#
# Hypothesis hands each example a seed; the documents are built from random.Random(seed) in plain Python.
# Drawing every character through hypothesis costs about 10 ms an example; this costs well under one, and
# a failure still reports its seed and the document (`note`).


@functools.cache
def real_units(name: str, unit: str) -> tuple[bytes, ...]:
    """The first SLICE_BYTES of a real corpus cut into sentences (blank-line separated) or lines."""
    path = DATA / name
    if not path.is_file():
        return ()
    with open(path, "rb") as file:
        head = file.read(SLICE_BYTES)
    head = head[: head.rfind(b"\n") + 1]
    if unit == "sentence":  # a blank or whitespace-only line ends a sentence (WNUT-17 has lines of one tab)
        return tuple(block + b"\n\n" for block in re.split(rb"\n[ \t]*\n", head) if block.strip())
    return tuple(line + b"\n" for line in head.split(b"\n"))


def real_slice(rng: random.Random, name: str, unit: str, most: int = 6) -> bytes | None:
    """A few consecutive sentences or lines of a real corpus (None when it is absent)."""
    units = real_units(name, unit)
    if not units:
        return None
    start = rng.randrange(len(units))
    return b"".join(units[start:start + rng.randint(1, most)])[:MAX_SLICE]


# Byte strings that trip parsers: separators, quotes, line ends, a BOM, NUL, broken and unusual UTF-8, a lone
# surrogate (raw, and as a JSON escape), huge numbers, deep nesting, scheme prefixes, CoNLL-U ids.
NASTY = (b"\t", b" ", b"  ", b"\n", b"\n\n", b"\r\n", b"\r", b'"', b"'", b",", b";", b"\\", b"\x00", b"\xff",
         b"\xc3", b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\x0b", b"\x0c", b"\x1c", "\u0085".encode(),
         "\u2028".encode(), "\u00a0".encode(), "\u200b".encode(), "\U0001F600".encode(), "é".encode(),
         "e\u0301".encode(), b"{", b"}", b"[", b"]", b":", b'"\\ud800"', b'"\\udfff\\ud800"', b"1" * 5000,
         b"[" * 3000, b"1e999", b"NaN", b"null", b"true", b"-", b"#", b"_", b"1-2", b"1.1", b"0", b"B-", b"I-",
         b"E-X", b"S-", b"O", b"B-PER", b"I-LOC", b"DRUG", b"-DOCSTART-", b"# text = x", b"text,label",
         b"text\tlabel", b'{"text": "a", "label": 1}', b'{"text": 5, "label": [1]}', b'{"label": "x"}')


def mutate(rng: random.Random, data: bytes) -> bytes:
    """`data` with up to five edits: bytes inserted or replaced, a span deleted, a line repeated, the end cut."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        at = rng.randint(0, len(data))
        edit = rng.choice(("insert", "insert", "replace", "delete", "repeat_line", "truncate"))
        if edit in ("insert", "replace"):
            piece = rng.choice(NASTY) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 6))
            data[at:at + (len(piece) if edit == "replace" else 0)] = piece
        elif edit == "delete":
            del data[at:at + rng.randint(1, 40)]
        elif edit == "repeat_line":
            start, end = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
            data[start:start] = data[start:(end + 1 if end >= 0 else len(data))]
        else:
            del data[at:]
    return bytes(data)


def fuzzed(make: Callable[[random.Random], bytes], real: tuple[str, str] | None = None
           ) -> Callable[[random.Random], bytes]:
    """A document maker for a reader: a real slice (when `real` names a corpus that is present) or a generated
    document, as it is or mutated; now and then arbitrary bytes."""
    def document(rng: random.Random) -> bytes:
        roll = rng.random()
        if roll < 0.05:
            return rng.randbytes(rng.randint(0, 200))
        base = real_slice(rng, *real) if real and rng.random() < 0.5 else None
        base = make(rng) if base is None else base
        return base if roll < 0.35 else mutate(rng, base)
    return document


# Characters for generated text: ASCII most of the time, then anything UTF-8 can hold (no surrogates).
SPICE = "éßçøЖжΩ中文日本語한국어\u0301\u00a0\u2028\u200b\ufeff\x00\x0b\x0c\x1c\x85\U0001F600\t \"',;\\#-_"


def word(rng: random.Random, plain: bool = True, most: int = 8) -> str:
    """A token: without whitespace when `plain`."""
    chars = []
    for _ in range(rng.randint(1, most)):
        pick = rng.random()
        if pick < 0.8:
            chars.append(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'"))
        elif pick < 0.95:
            chars.append(rng.choice(SPICE))
        else:
            chars.append(chr(rng.choice((rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF)))))
    text = "".join(chars)
    return ("".join(c for c in text if not c.isspace()) or "x") if plain else text


def label(rng: random.Random) -> str:
    return rng.choice(("O", "O", "O", "B-PER", "I-PER", "E-PER", "S-LOC", "I-LOC", "B-", "DRUG", "NOUN",
                       "B-DRUG")) if rng.random() < 0.9 else word(rng)


def conll_document(rng: random.Random) -> bytes:
    lines = ["-DOCSTART- -X- -X- O", ""] if rng.random() < 0.3 else []
    width = rng.randint(1, 4)
    for _ in range(rng.randint(0, 5)):
        for _ in range(rng.randint(1, 6)):
            columns = [word(rng) for _ in range(width - 1)] + [label(rng)]
            lines.append(rng.choice((" ", "\t", "  ", " \t")).join(columns))
        lines.append(rng.choice(("", "", " ", "\t")))
    return "\n".join(lines).encode()


def conllu_document(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(0, 4)):
        lines.append(f"# text = {word(rng, plain=False)}")
        for index in range(1, rng.randint(1, 6) + 1):
            if rng.random() < 0.15:
                lines.append(f"{index}-{index + 1}\t{word(rng)}" + "\t_" * 8)
            lines.append("\t".join([str(index), word(rng), rng.choice(("_", "x")), label(rng), "_", "_",
                                    str(index - 1), "dep", "_", "_"]))
            if rng.random() < 0.1:
                lines.append(f"{index}.1\t{word(rng)}" + "\t_" * 8)
        lines.append("")
    return "\n".join(lines).encode()


def write_table(rows: list[list[str]], separator: str, line_end: str = "\n") -> bytes:
    """Rows as the csv module writes them (fields holding the separator, quotes or line breaks quoted)."""
    out = io.StringIO()
    csv.writer(out, delimiter=separator, lineterminator=line_end).writerows(rows)
    return out.getvalue().encode()


def table_document(separator: str) -> Callable[[random.Random], bytes]:
    """text,label rows (real movie-review sentences or generated text) with a header most of the time."""
    def make(rng: random.Random) -> bytes:
        reviews = real_units("mr/rt-polarity.pos", "line")
        rows = [["text", "label"]] if rng.random() < 0.7 else []
        for _ in range(rng.randint(0, 6)):
            text = (rng.choice(reviews).decode("utf-8", "replace").strip() if reviews and rng.random() < 0.5
                    else " ".join(word(rng, plain=False) for _ in range(rng.randint(0, 5))))
            rows.append([text, label(rng)])
        return write_table(rows, separator, rng.choice(("\n", "\r\n")))
    return make


def json_value(rng: random.Random, depth: int = 0):
    """Any JSON value: scalars, NaN, a big integer, and (two levels deep at most) lists and objects."""
    makers = (lambda: None, lambda: True, lambda: rng.randint(-10**20, 10**20), lambda: rng.random() * 1e6,
              lambda: float("nan"), lambda: word(rng, plain=False), lambda: label(rng),
              lambda: [json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))],
              lambda: {word(rng): json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))})
    return makers[rng.randrange(len(makers) if depth < 2 else len(makers) - 2)]()


def jsonl_document(rng: random.Random) -> bytes:
    """One object per line with a text and a label: strings mostly, any JSON value now and then."""
    reviews = real_units("mr/rt-polarity.neg", "line")
    lines = []
    for _ in range(rng.randint(0, 6)):
        text = (rng.choice(reviews).decode("utf-8", "replace").strip() if reviews and rng.random() < 0.5
                else word(rng, plain=False) if rng.random() < 0.8 else json_value(rng))
        record = {"text": text, "label": label(rng) if rng.random() < 0.8 else json_value(rng)}
        lone = rng.random() < 0.05  # a "\\ud800" escape: valid JSON, but no text UTF-8 can hold
        key = rng.choice(("text", "label"))
        if lone and isinstance(record[key], str):
            record[key] += chr(rng.randint(0xD800, 0xDFFF))
        if rng.random() < 0.1:
            del record[rng.choice(("text", "label"))]
        lines.append(json.dumps(record, ensure_ascii=lone or rng.random() < 0.5))
    return "\n".join(lines).encode()


def text_lines(rng: random.Random) -> bytes:
    return "\n".join(" ".join(word(rng, plain=False) for _ in range(rng.randint(0, 6)))
                     for _ in range(rng.randint(0, 6))).encode()


def file_name(rng: random.Random) -> bytes:
    """A file or folder name: ordinary, hidden, with spaces or glob characters, or bytes that are not UTF-8."""
    pick = rng.random()
    if pick < 0.5:
        return rng.choice((b"pos", b"neg", b"neutral", b"a.txt", b"b.txt"))
    if pick < 0.6:
        return rng.choice((b".hidden", b"a b", b"x[1]", b"q?", b"*"))
    name = word(rng).encode() if pick < 0.9 else rng.randbytes(rng.randint(1, 6))
    name = name.replace(b"/", b"_").replace(b"\0", b"_")
    return name if name not in (b".", b"..") else b"dot"


def folder_tree(rng: random.Random) -> dict:
    """Class sub-folders (name → {file name → bytes, or None for a nested folder}); some may be empty."""
    review = fuzzed(text_lines, ("mr/rt-polarity.pos", "line"))
    return {file_name(rng): {file_name(rng): (None if rng.random() < 0.1 else review(rng))
                             for _ in range(rng.choice((0, 1, 2, 2, 3, 3)))}
            for _ in range(rng.choice((0, 1, 2, 2, 3)))}


# ---------------------------------------------------------------------------
# What every reader must give: rows that fit its features, or a clear error


WHOLE_FILE = ("contains no sentences", "is empty", "has a header but no rows", "contains no usable texts",
              "holds no text", "this class folder is empty", "has no class sub-folders", "is not valid UTF-8",
              "the text is empty", "cannot be read", "name is blank")


def line_count(path: Path) -> int:
    data = path.read_bytes()
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def assert_clear(error: SeqtagError, files: list[Path]) -> None:
    """The documented error: an InputError naming one of the files read, and a line inside it (or, for a
    problem of the whole file, none)."""
    assert isinstance(error, InputError), f"not an InputError: {error!r}"
    named = [f for f in files if error.path == str(f)]
    assert named or any(error.path.startswith(str(f)) for f in files), f"names no file read: {error}"
    assert str(error).startswith(error.path)
    if error.line is None:
        assert any(phrase in error.detail for phrase in WHOLE_FILE), f"no line for a problem of one line: {error}"
    elif named and named[0].is_file():
        assert 1 <= error.line <= max(1, line_count(named[0])), f"line {error.line} is not in the file: {error}"
    str(error).encode("utf-8")  # printable: the CLI writes it to stderr as UTF-8


SCHEMAS: dict[int, pa.Schema] = {}  # by id of the reader's Features (which are unhashable): each is built once


def to_arrow(rows: list[dict], features) -> pa.Table:
    """The rows as Arrow with the reader's features, as `Dataset.from_generator` stores them."""
    schema = SCHEMAS.setdefault(id(features), features.arrow_schema)
    return pa.Table.from_pylist([features.encode_example(row) for row in rows], schema=schema)


def columns(rows: list[dict]) -> dict[str, list]:
    return {key: [row[key] for row in rows] for key in (rows[0] if rows else ())}


def check_sentences(rows: list[dict], scheme_checks: bool, source: str) -> None:
    """Tagging rows: a token, a label and an increasing line number for each position; then the scheme steps
    that training runs on them (detection on the file, every label checked against it)."""
    for row in rows:
        assert row["tokens"] and len(row["tokens"]) == len(row["labels"]) == len(row["lines"])
        assert all(token for token in row["tokens"]) and all(label for label in row["labels"])
        assert row["lines"] == sorted(set(row["lines"]))
    to_arrow(rows, readers.tagging_features())
    if scheme_checks and rows:
        data = columns(rows)
        check_scheme(data, resolve_scheme("auto", data, source), source)


def check_texts(rows: list[dict], prediction: bool = False) -> None:
    for row in rows:
        assert row["line"] >= 1 or row["problem"]
        if not row["problem"] and not prediction:
            assert row["text"].strip() and row["label"].strip(), row
    to_arrow(rows, text_readers.text_features())


# ---------------------------------------------------------------------------
# The readers, each with its input and its two paths (parsing, public)


@dataclass
class Reader:
    suffix: str
    """The input's file name ends so; an empty suffix: the input is a folder tree."""
    document: Callable[[random.Random], bytes | dict]
    parse: Callable[[Path, dict], None]
    """Run the reader's parsing on a file and check the rows (raises the reader's errors)."""
    public: Callable[[Path, dict, str], None]
    """Run the public reader on a file with a cache folder."""
    options: Callable[[random.Random], dict] = lambda rng: {}


def _parse_conll(path, options):
    key = readers._file_key(path)
    check_sentences(list(readers._conll_sentences(**key, token_column=0, label_column=-1)), True, str(path))
    assert all(list(readers.read_tokens(path, "conll")))


def _parse_conllu(path, options):
    key = readers._file_key(path)
    rows = list(readers._conllu_sentences(**key, label_index=readers._conllu_field_index("upos")))
    check_sentences(rows, False, str(path))
    assert all(list(readers.read_tokens(path, "conllu")))


def _public_tagging(format: str):
    def run(path, options, cache_dir):
        config = DataConfig(format=format, label_column="upos" if format == "conllu" else -1)
        dataset = read_corpus(config, str(path), cache_dir)
        check_scheme(dataset, resolve_scheme("auto" if format == "conll" else "none", dataset, str(path)), str(path))
    return run


def table_options(rng: random.Random) -> dict:
    columns = rng.choice(({"header": True, "text_column": "text", "label_column": "label"},
                          {"header": False, "text_column": 0, "label_column": 1},
                          {"header": True, "text_column": 0, "label_column": -1}))
    return {**columns, "skip": rng.random() < 0.5}


def skip_option(rng: random.Random) -> dict:
    return {"skip": rng.random() < 0.5}


def jsonl_options(rng: random.Random) -> dict:
    return {"text_column": "text", "label_column": "label", "skip": rng.random() < 0.5}


def _parse_table(format: str):
    def run(path, options):
        skip = options.get("skip", False)
        key = readers._file_key(path)
        rows = list(text_readers._table_rows(**key, delimiter=text_readers.SEPARATORS[format], quoting=True,
                                             skip=skip, **{k: v for k, v in options.items() if k != "skip"}))
        check_texts(rows)
        texts = list(text_readers.read_prediction_texts(path, format, options["text_column"], options["header"]))
        assert len(texts) >= len([row for row in rows if not row["problem"]])
    return run


def _parse_jsonl(path, options):
    key = readers._file_key(path)
    check_texts(list(text_readers._jsonl_rows(**key, text_field="text", label_field="label",
                                              skip=options.get("skip", False))))
    check_texts([text_readers._row(text, "", 1) for text in text_readers.read_prediction_texts(path, "jsonl", "text")],
                prediction=True)


def _public_texts(format: str):
    def run(path, options, cache_dir):
        config = DataConfig(format=format, skip_bad_rows=options.get("skip", False),
                            **{k: v for k, v in options.items() if k != "skip"})
        dataset = read_texts(config, str(path), cache_dir)
        assert len(dataset) and all(text.strip() for text in dataset["text"])
    return run


def _class_files(path: Path) -> tuple[Path, Path]:
    """The fuzzed document as the .pos file, beside a fixed .neg file."""
    other = path.with_suffix(".neg")
    if not other.exists():
        other.write_text("a fine negative text\n", encoding="utf-8")
    return path, other


def _parse_class_files(path, options):
    for file, label in zip(_class_files(path), ("pos", "neg")):
        key = readers._file_key(file)
        check_texts(list(text_readers._class_file_rows(**key, label=label, skip=options.get("skip", False))))


def _public_class_files(path, options, cache_dir):
    config = DataConfig(format="class_files", skip_bad_rows=options.get("skip", False))
    read_texts(config, ",".join(map(str, _class_files(path))), cache_dir)


def _lm_config(format: str) -> DataConfig:
    return DataConfig(format=format, tokenizer="word" if format == "wikitext" else "char")


def _tokenize(format: str, texts: list[str]) -> None:
    """What a language model does next with the lines: train its tokenizer on them and encode them."""
    tokenizer = lm.build_lm_tokenizer(_lm_config(format), iter([texts]))
    assert len(encode_lines(tokenizer, texts)) == len(texts)


def _parse_lm(format: str):
    def run(path, options):
        files = [readers._file_key(p) for p in lm.text_files(str(path))]
        rows = list(lm._line_rows(files, keep_line_end=format == "text", source=str(path)))
        to_arrow(rows, lm.LINES)
        lm.build_lm_tokenizer(_lm_config(format), iter([[row["text"] for row in rows]]))
    return run


def _public_lm(format: str):
    def run(path, options, cache_dir):
        lines = lm.read_text(_lm_config(format), str(path), cache_dir)
        _tokenize(format, lines["text"])
    return run


def write_tree(root: Path, tree: dict) -> None:
    """Create `tree` (name → {name → bytes, or None for a sub-folder}) under `root` with raw byte names."""
    os.makedirs(root, exist_ok=True)
    for folder, files in tree.items():
        folder_path = os.path.join(os.fsencode(root), folder)
        os.makedirs(folder_path, exist_ok=True)
        for name, content in files.items():
            file_path = os.path.join(folder_path, name)
            if content is None:
                os.makedirs(file_path, exist_ok=True)
            else:
                with open(file_path, "wb") as file:
                    file.write(content)


def _parse_folders(path, options):
    key = text_readers._folder_key(path, options.get("skip", False))
    check_texts(list(text_readers._folder_rows(**key)))


def _public_folders(path, options, cache_dir):
    read_texts(DataConfig(format="class_folders", skip_bad_rows=options.get("skip", False)), str(path), cache_dir)


READERS = {
    "conll": Reader(".conll", fuzzed(conll_document, ("wnut17/wnut17train.conll", "sentence")), _parse_conll,
                    _public_tagging("conll")),
    "conllu": Reader(".conllu", fuzzed(conllu_document, ("ud_english_ewt/en_ewt-ud-dev.conllu", "sentence")),
                     _parse_conllu, _public_tagging("conllu")),
    "csv": Reader(".csv", fuzzed(table_document(",")), _parse_table("csv"), _public_texts("csv"), table_options),
    "tsv": Reader(".tsv", fuzzed(table_document("\t")), _parse_table("tsv"), _public_texts("tsv"), table_options),
    "jsonl": Reader(".jsonl", fuzzed(jsonl_document), _parse_jsonl, _public_texts("jsonl"), jsonl_options),
    "class_files": Reader(".pos", fuzzed(text_lines, ("mr/rt-polarity.pos", "line")), _parse_class_files,
                          _public_class_files, skip_option),
    "class_folders": Reader("", folder_tree, _parse_folders, _public_folders, skip_option),
    "text": Reader(".txt", fuzzed(text_lines, ("tinyshakespeare/input.txt", "line")), _parse_lm("text"),
                   _public_lm("text")),
    "wikitext": Reader(".txt", fuzzed(text_lines, ("wikitext2/valid.txt", "line")), _parse_lm("wikitext"),
                       _public_lm("wikitext")),
}
# Names that glob would read as patterns, for the text readers (a file so named must still be read).
ODD_STEMS = ("in", "in", "in", "data[1]", "what?", "a*b", "x y", "é")


class Workspace:
    """Fresh file names in one temporary folder (so no reader's cache ever sees an example twice)."""

    def __init__(self, root: Path | None = None):
        self.root = root or Path(tempfile.mkdtemp(prefix="seqtag-fuzz-"))
        self.count = 0

    def place(self, name: str, reader: Reader, document, stem: str = "in") -> Path:
        self.count += 1
        path = self.root / f"{name}-{self.count}-{stem}{reader.suffix}"
        if reader.suffix:
            path.write_bytes(document)
        else:
            write_tree(path, document)
        return path


def read_files(path: Path) -> list[Path]:
    """Every file or folder the reader may name in an error."""
    return [path, *_class_files(path)] if path.suffix == ".pos" else [path]


def run_example(name: str, workspace: Workspace, rng: random.Random, public: bool,
                cache_dir: str | None = None) -> str:
    """Read one fuzzed input made from `rng`: "ok", or the error's first words; anything but a clear error
    fails (and the failure shows the input)."""
    reader = READERS[name]
    document, options = reader.document(rng), reader.options(rng)
    stem = rng.choice(ODD_STEMS) if name in ("text", "wikitext") else "in"
    note(f"{name} input {stem}{reader.suffix}: {document!r}, options {options}")
    path = workspace.place(name, reader, document, stem)
    try:
        if public:
            reader.public(path, options, cache_dir)
        else:
            reader.parse(path, options)
    except SeqtagError as error:
        assert_clear(error, read_files(path))
        return error.detail.split(";")[0][:40]
    return "ok"


SEEDS = st.integers(0, 2**64 - 1)  # each example's input is made by random.Random(seed)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("fuzz"))


@pytest.mark.slow  # 2,000 examples per reader: in the full suite (CI), not the quick subset
@pytest.mark.parametrize("name", READERS)
def test_reader_parses_fuzzed_input(name, workspace):
    outcomes: dict[str, int] = {}

    @fuzz_settings(EXAMPLES)
    @given(SEEDS)
    def check(seed):
        outcome = run_example(name, workspace, random.Random(seed), public=False)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    check()
    assert sum(outcomes.values()) >= EXAMPLES
    assert outcomes.get("ok", 0) > EXAMPLES // 20, f"too few inputs were read at all: {outcomes}"


@pytest.mark.slow
@pytest.mark.parametrize("name", READERS)
def test_public_reader_on_fuzzed_input(name, workspace, tmp_path):
    cache_dir = str(tmp_path / "cache")
    outcomes: dict[str, int] = {}

    @fuzz_settings(PUBLIC_EXAMPLES)
    @given(SEEDS)
    def check(seed):
        outcome = run_example(name, workspace, random.Random(seed), public=True, cache_dir=cache_dir)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    check()
    assert outcomes.get("ok"), f"no input was read at all (are the reader's settings right?): {outcomes}"


def test_real_corpora_are_sliced_when_present():
    if not DATA.is_dir():
        pytest.skip(f"{DATA} is absent: the readers are fuzzed on generated input only")
    assert real_units("wnut17/wnut17train.conll", "sentence") and real_units("wikitext2/valid.txt", "line")
