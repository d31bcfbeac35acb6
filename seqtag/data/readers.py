"""Readers that turn labelled corpora into `datasets.Dataset`s.

Every reader returns a Dataset with exactly three columns, one row per sentence in
file order:

* ``tokens``: list[str]
* ``labels``: list[str], one per token
* ``lines``:  list[int], the 1-based line of each token in the file (for a dataset
  from the hub, the 1-based row number, repeated for every token)

File readers parse with `Dataset.from_generator`, so the result is Arrow-cached on
disk; the cache key includes the file's resolved path, size and mtime, so an edited
file is read again.  Problems in the input raise `InputError` naming file and line.

`read_tokens` reads the same files for prediction: the tokens (with the file's own labels, when it has them),
streamed, without `datasets` (which this module imports only where a Dataset is built, so `seqtag predict` stays
quick).

Every `data.format` value is a `Format` registered in `FORMATS` beside its reader: this module registers
conll, conllu and hub; `text_readers.py` the text formats. A format says which task families read it (and
with which function), what `--train` names (a file, a list of files, a hub split), which file extensions
mean it, how `seqtag predict` reads its items, and how to tell a file that is not in it.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from seqtag.errors import InputError, SeqtagError

from ..registry import Registry
from .lines import decode_lines

if TYPE_CHECKING:
    from datasets import Dataset, Features


@functools.cache
def tagging_features() -> Features:
    """The columns every tagging reader returns (built on first use: importing datasets takes a second)."""
    from datasets import Features, Sequence, Value

    return Features(
        {
            "tokens": Sequence(Value("string")),
            "labels": Sequence(Value("string")),
            "lines": Sequence(Value("int32")),
        }
    )


def __getattr__(name: str):
    if name == "FEATURES":  # the old module constant, built on demand
        return tagging_features()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# ---------------------------------------------------------------------------
# Formats


@dataclass
class Format:
    """A data.format value."""

    name: str
    sources: str = "file"
    """What --train/--dev/--test name: "file" (a path), "files" (comma-separated paths, or globs) or "split"
    (a split of the dataset data.hub_name names)."""
    extensions: tuple[str, ...] = ()
    """File extensions that mean this format (`seqtag predict`, data.format auto)."""
    readers: dict[str, Callable] = field(default_factory=dict)
    """Task family → read(data config, source, cache_dir) → Dataset rows of that family."""
    prediction_items: Callable | None = None
    """(path, data config) → the items `seqtag predict` reads from such a file, streamed, without `datasets`."""
    any_encoding: bool = False
    """Whether prediction_items also takes `encoding=` (`seqtag predict --encoding`); if not, it reads UTF-8 only."""
    mismatch: Callable[[list[str]], str | None] | None = None
    """(a file's first non-blank lines) → why they are not in this format, or None."""
    check: Callable | None = None
    """(data config) → raises a SeqtagError for reader settings this format cannot honour."""

    def reader(self, family: str) -> Callable[[Callable], Callable]:
        """Register the function that reads this format for `family`."""
        def add(read: Callable) -> Callable:
            self.readers[family] = read
            return read

        return add


FORMATS = Registry("data.format", "data format")


def formats_of(family: str) -> list[str]:
    """The data.format values a task family reads, a dataset named on the hub last."""
    return sorted((name for name, fmt in FORMATS.items() if family in fmt.readers),
                  key=lambda name: FORMATS[name].sources == "split")


def read_rows(family: str, config, source: str, cache_dir: str | None = None) -> Dataset:
    """The rows of `source` (a file, files or hub split) read by `config.format`'s reader for `family`."""
    return FORMATS[config.format].readers[family](config, source, cache_dir)


def _looks_like_conllu(rows: list[str]) -> bool:
    fields = [row.split("\t") for row in rows[:50]]
    return all(len(f) == 10 and f[0].replace("-", "").replace(".", "").isdigit() for f in fields)


def _check_conll(config) -> None:
    if not str(config.label_column).lstrip("-").isdigit():
        raise SeqtagError(f"data.label_column is {config.label_column!r}, but format {CONLL!r} picks columns by "
                          "0-based index (-1 is the last); give a number such as data.label_column=3. (Names "
                          f"are for format {CONLLU}, a field such as upos, and for csv/tsv headers.)")


def need_hub_name(config, example: str) -> str:
    """data.hub_name, which format hub needs (`example`: a dataset name to show)."""
    if not config.hub_name:
        raise SeqtagError(f"data.format is {HUB!r} but data.hub_name is not set; name the dataset, e.g. "
                          f"--set data.hub_name={example}.")
    return config.hub_name


CONLL, CONLLU, HUB = "conll", "conllu", "hub"
FORMATS.register(CONLL, Format(
    CONLL, extensions=(".conll",), check=_check_conll, any_encoding=True,
    prediction_items=lambda path, config, encoding="utf-8": read_tokens(path, CONLL, config.token_column, encoding,
                                                                        label_column=config.label_column),
    mismatch=lambda rows: ("the file looks like CoNLL-U (10 tab-separated fields, numbered tokens)"
                           if _looks_like_conllu(rows) else None)))
FORMATS.register(CONLLU, Format(
    CONLLU, extensions=(".conllu",), any_encoding=True,
    prediction_items=lambda path, config, encoding="utf-8": read_tokens(path, CONLLU, encoding=encoding,
                                                                        label_column=config.label_column),
    mismatch=lambda rows: (None if _looks_like_conllu(rows) else
                           "the file is not CoNLL-U (10 tab-separated fields per token)")))
FORMATS.register(HUB, Format(HUB, sources="split"))


@FORMATS[CONLL].reader("tagging")
def _read_conll_rows(config, source: str, cache_dir: str | None = None) -> Dataset:
    return read_conll(source, config.token_column, int(config.label_column), cache_dir=cache_dir)


@FORMATS[CONLLU].reader("tagging")
def _read_conllu_rows(config, source: str, cache_dir: str | None = None) -> Dataset:
    return read_conllu(source, config.label_column, cache_dir=cache_dir)


@FORMATS[HUB].reader("tagging")
def _read_hub_rows(config, source: str, cache_dir: str | None = None) -> Dataset:
    return read_hub(need_hub_name(config, "conll2003"), source, config.tokens_field, config.labels_field, config.hub_config,
                    cache_dir=cache_dir)


CONLLU_FIELDS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")

_COLUMN_SEPARATOR = re.compile(r"[ \t]+")


# ---------------------------------------------------------------------------
# Public readers


def read_conll(
    path: str | Path,
    token_column: int = 0,
    label_column: int = -1,
    cache_dir: str | None = None,
) -> Dataset:
    """Read a CoNLL column file (CoNLL-2003, CoNLL-2000, WNUT-17 ...).

    Columns are separated by tabs or runs of spaces; blank or whitespace-only lines
    end a sentence; ``-DOCSTART-`` lines are skipped.
    """
    gen_kwargs = _file_key(path)
    gen_kwargs.update(token_column=int(token_column), label_column=int(label_column))
    return _build(_conll_sentences, gen_kwargs, cache_dir)


def read_conllu(
    path: str | Path,
    label_column: str | int = "upos",
    cache_dir: str | None = None,
) -> Dataset:
    """Read a CoNLL-U file, tagging FORM with the field `label_column` (name or index).

    Multiword-token range lines (``3-4``) and empty nodes (``5.1``) are skipped, as
    the basic word sequence is made of the syntactic words only.
    """
    gen_kwargs = _file_key(path)
    gen_kwargs.update(label_index=_conllu_field_index(label_column))
    return _build(_conllu_sentences, gen_kwargs, cache_dir)


class LabelledTokens(list):
    """A sentence's tokens as `read_tokens` yields them (a plain list of strings to whatever reads them), with the
    file's own labels in `gold` (None when the file has none), which `seqtag predict --output conll` writes beside
    the predicted ones."""

    gold: list[str] | None = None


def read_tokens(path: str | Path, format: str, token_column: int = 0, encoding: str = "utf-8",
                label_column: int | str | None = None) -> Iterator[LabelledTokens]:
    """The token lists of a CoNLL (CONLL, the tokens in `token_column`) or CoNLL-U (CONLLU, FORM) file,
    one per sentence in file order, for prediction: other columns are not needed, and a file of tokens alone
    (one per line, a blank line after each sentence) is read too. With `label_column` (the model's
    data.label_column), each list's `gold` holds that column's labels when the file has it (a CoNLL file wide
    enough, a CoNLL-U field that is not all "_"). Streams the file (in `encoding`, see `lines.decode_lines`);
    needs no `datasets`."""
    key = _file_key(path)
    if format == CONLL:
        try:
            gold = None if label_column is None else int(label_column)
        except ValueError:
            gold = None
        rows = _conll_sentences(**key, token_column=int(token_column), label_column=None, encoding=encoding,
                                gold_column=gold)
    elif format == CONLLU:
        gold = None if label_column is None else _conllu_field_index(label_column)
        rows = _conllu_sentences(**key, label_index=None, encoding=encoding, gold_index=gold)
    else:
        raise ValueError(f"read_tokens reads {CONLL} or {CONLLU}, not {format!r}")
    for row in rows:
        tokens = LabelledTokens(row["tokens"])
        # Gold labels are optional here: a CoNLL-U file with the field unfilled ("_") has none.
        if len(row["labels"]) == len(tokens) and any(label != "_" for label in row["labels"]):
            tokens.gold = row["labels"]
        yield tokens


def read_hub(
    name: str,
    split: str,
    tokens_field: str = "tokens",
    labels_field: str = "ner_tags",
    config_name: str | None = None,
    cache_dir: str | None = None,
) -> Dataset:
    """Load a split with `datasets.load_dataset` and bring it to tokens/labels/lines.

    `name` may be a hub id or a local folder of JSON lines / parquet / CSV files.
    Labels stored as a sequence of ClassLabel ids are mapped to their names.
    """
    ds, source = load_hub_split(name, split, config_name, cache_dir,
                                {"tokens_field": tokens_field, "labels_field": labels_field})

    label_names = _class_label_names(ds.features[labels_field])
    convert = functools.partial(
        _hub_batch,
        source=source,
        tokens_field=tokens_field,
        labels_field=labels_field,
        label_names=label_names,
    )
    return _unwrap_errors(
        ds.map,
        convert,
        batched=True,
        with_indices=True,
        remove_columns=ds.column_names,
        features=tagging_features(),
        desc="Converting",
    )


def load_hub_split(name: str, split: str, config_name: str | None, cache_dir: str | None,
                   fields: dict[str, str]) -> tuple[Dataset, str]:
    """A split from `datasets.load_dataset` and its name for messages; every field in `fields`
    (setting name -> field) must exist."""
    from datasets import load_dataset

    source = f"{name} ({split} split)"
    try:
        ds = load_dataset(name, config_name, split=split, cache_dir=cache_dir)
    except (FileNotFoundError, ValueError) as error:
        # Unknown dataset, config or split: the user's to fix, with datasets' own words.
        raise SeqtagError(f"could not load {source}: {error}") from error
    available = ", ".join(ds.column_names)
    for role, field in fields.items():
        if field not in ds.column_names:
            raise SeqtagError(
                f"{source} has no field {field!r} (given as {role}); available fields: {available}"
            )
    return ds, source


def count_tokens(ds: Dataset) -> int:
    """Number of tokens in `ds`, from Arrow list lengths (no Python loop over rows)."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(ds.data.column("tokens"))
    indices = getattr(ds, "_indices", None)
    if indices is not None:
        # After select/filter/shuffle, ds.data is the whole table; keep only our rows.
        lengths = pc.take(lengths, indices.column(0))
    total = pc.sum(lengths).as_py()
    return int(total or 0)


def describe(ds: Dataset) -> str:
    """One line for the user, e.g. "read 12,544 sentences, 204,577 tokens"."""
    sentences = len(ds)
    tokens = count_tokens(ds)
    return (
        f"read {sentences:,} sentence{'' if sentences == 1 else 's'}, "
        f"{tokens:,} token{'' if tokens == 1 else 's'}"
    )


# ---------------------------------------------------------------------------
# Building and caching


def _file_key(path: str | Path) -> dict:
    """gen_kwargs that name the file and change whenever its content may have changed."""
    resolved = Path(path).expanduser().resolve()
    try:
        stat = resolved.stat()
    except FileNotFoundError:
        raise InputError(path, None, f"file not found (looked for {resolved})") from None
    except OSError as error:  # a name too long, a folder on the way that may not be entered, ...
        raise InputError(path, None, f"cannot be read: {error.strerror or error}") from None
    if resolved.is_dir():
        raise InputError(path, None, "is a directory; expected a file")
    return {
        "path": str(resolved),
        "shown_path": str(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def _build(generator, gen_kwargs: dict, cache_dir: str | None, features: Features | None = None) -> Dataset:
    """Run `generator` through datasets' Arrow cache (the tagging columns unless `features` says otherwise),
    re-raising our own errors."""
    from datasets import Dataset

    return _unwrap_errors(
        Dataset.from_generator,
        generator,
        features=features or tagging_features(),
        gen_kwargs=gen_kwargs,
        cache_dir=cache_dir,
    )


def _unwrap_errors(call, *args, **kwargs):
    """Call `call`; if datasets wrapped one of our SeqtagErrors, raise that instead."""
    try:
        return call(*args, **kwargs)
    except SeqtagError:
        raise
    except Exception as error:
        ours = _find_seqtag_error(error)
        if ours is None:
            raise
        raise ours from None


def _find_seqtag_error(error: BaseException) -> SeqtagError | None:
    """Walk the __cause__/__context__ chain looking for a SeqtagError."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, SeqtagError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# ---------------------------------------------------------------------------
# Line reading shared by the file readers


def _read_lines(path: str, shown_path: str, keep_line_end: bool = False, encoding: str = "utf-8"
                ) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text without line ending) of a file, decoding each line (UTF-8 unless the
    prediction command's --encoding says otherwise)."""
    try:
        file = open(path, "rb")
    except OSError as error:  # removed or made unreadable since it was found
        raise InputError(shown_path, None, f"cannot be read: {error.strerror or error}") from None
    with file:
        yield from decode_lines(file, shown_path, keep_line_end, encoding)


def _shorten(line: str, limit: int = 60) -> str:
    """The line for an error message: tabs made visible, cut to `limit` characters."""
    shown = line.replace("\t", "\\t")
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _sentence(tokens: list[str], labels: list[str], lines: list[int]) -> dict:
    return {"tokens": tokens, "labels": labels, "lines": lines}


# ---------------------------------------------------------------------------
# CoNLL columns


def _conll_sentences(
    path: str,
    shown_path: str,
    size: int,
    mtime_ns: int,
    token_column: int,
    label_column: int | None,
    encoding: str = "utf-8",
    gold_column: int | None = None,
) -> Iterator[dict]:
    """Generator for `read_conll` (and, with no `label_column`, `read_tokens`); size and mtime_ns only serve
    as cache key. `gold_column` (read_tokens): the labels' column, read only when the file has it and it is not
    the tokens' own."""
    roles = {"token_column": token_column} if label_column is None else {"token_column": token_column,
                                                                          "label_column": label_column}
    tokens: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    width = None  # number of columns, set by the first token line
    width_line = 0
    sentences = 0
    for number, line in _read_lines(path, shown_path, encoding=encoding):
        if line.startswith("-DOCSTART-") or not line.strip():
            if tokens:
                yield _sentence(tokens, labels, lines)
                sentences += 1
                tokens, labels, lines = [], [], []
            continue
        columns = _COLUMN_SEPARATOR.split(line.strip(" \t"))
        if width is None:
            width, width_line = len(columns), number
            if (gold_column is not None and -width <= gold_column < width
                    and gold_column % width != token_column % width):
                label_column = gold_column
            for role, index in roles.items():
                if not -width <= index < width:
                    raise InputError(
                        shown_path,
                        number,
                        f"{role}={index} is out of range: the file has {width} column"
                        f"{'' if width == 1 else 's'}, so expected an index from 0 to "
                        f"{width - 1} (or -{width} to -1)",
                    )
        elif len(columns) != width:
            raise InputError(
                shown_path,
                number,
                f"expected {width} columns (as on line {width_line}), found {len(columns)}: "
                f"'{_shorten(line)}'",
            )
        tokens.append(columns[token_column])
        if label_column is not None:
            labels.append(columns[label_column])
        lines.append(number)
    if tokens:
        yield _sentence(tokens, labels, lines)
        sentences += 1
    if not sentences:
        raise InputError(
            shown_path,
            None,
            "contains no sentences; expected lines of whitespace-separated columns "
            "(token ... label), with a blank line after each sentence",
        )


# ---------------------------------------------------------------------------
# CoNLL-U


def _conllu_field_index(label_column: str | int) -> int:
    """The 0-based index of a CoNLL-U field given by name (any case) or index."""
    valid = ", ".join(name.upper() for name in CONLLU_FIELDS)
    if isinstance(label_column, str) and not label_column.lstrip("-").isdigit():
        try:
            return CONLLU_FIELDS.index(label_column.lower())
        except ValueError:
            raise SeqtagError(
                f"unknown CoNLL-U field {label_column!r} for the labels; "
                f"expected one of {valid} or an index from 0 to 9"
            ) from None
    index = int(label_column)
    if not -len(CONLLU_FIELDS) <= index < len(CONLLU_FIELDS):
        raise SeqtagError(
            f"CoNLL-U label column {index} is out of range: a CoNLL-U line has 10 fields "
            f"({valid}), so expected an index from 0 to 9"
        )
    return index % len(CONLLU_FIELDS)


def _conllu_sentences(
    path: str,
    shown_path: str,
    size: int,
    mtime_ns: int,
    label_index: int | None,
    encoding: str = "utf-8",
    gold_index: int | None = None,
) -> Iterator[dict]:
    """Generator for `read_conllu` (and, with no `label_index`, `read_tokens`); size and mtime_ns only serve
    as cache key. `gold_index` (read_tokens): the labels' field, read as it is, "_" included."""
    used = (1,) if label_index is None else (1, label_index)  # FORM and the labels' field
    tokens: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    sentences = 0
    for number, line in _read_lines(path, shown_path, encoding=encoding):
        if not line.strip():
            if tokens:
                yield _sentence(tokens, labels, lines)
                sentences += 1
                tokens, labels, lines = [], [], []
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise InputError(
                shown_path,
                number,
                f"expected 10 tab-separated fields (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL "
                f"DEPS MISC), found {len(fields)}: '{_shorten(line)}'",
            )
        word_id = fields[0]
        if "-" in word_id or "." in word_id:
            # Multiword-token range or empty node: not part of the basic word sequence.
            continue
        if not (word_id.isascii() and word_id.isdigit()):
            raise InputError(
                shown_path,
                number,
                f"expected a word ID (an integer, a range like 3-4 or an empty node like 5.1) "
                f"in the first field, found '{_shorten(word_id)}'",
            )
        for index in used:
            if not fields[index]:
                raise InputError(shown_path, number, f"the {CONLLU_FIELDS[index].upper()} field is empty; "
                                 "CoNLL-U writes _ for a field that has no value")
        tokens.append(fields[1])
        if label_index is not None:
            labels.append(fields[label_index])
        elif gold_index is not None:
            labels.append(fields[gold_index] or "_")
        lines.append(number)
    if tokens:
        yield _sentence(tokens, labels, lines)
        sentences += 1
    if not sentences:
        raise InputError(
            shown_path,
            None,
            "contains no sentences; expected CoNLL-U word lines (10 tab-separated fields) "
            "with a blank line after each sentence",
        )


# ---------------------------------------------------------------------------
# Hub datasets


def _class_label_names(feature) -> tuple[str, ...] | None:
    """Label names if `feature` is a sequence of ClassLabel, else None."""
    from datasets import ClassLabel

    inner = feature[0] if isinstance(feature, list) else getattr(feature, "feature", None)
    if isinstance(inner, ClassLabel):
        return tuple(inner.names)
    return None


def _hub_batch(
    batch: dict,
    indices: list[int],
    source: str,
    tokens_field: str,
    labels_field: str,
    label_names: tuple[str, ...] | None,
) -> dict:
    """Batched map function: one hub batch to tokens/labels/lines, checking every row."""
    out_tokens, out_labels, out_lines = [], [], []
    for index, tokens, labels in zip(indices, batch[tokens_field], batch[labels_field]):
        row = index + 1
        if not isinstance(tokens, list) or not isinstance(labels, list):
            raise InputError(
                source,
                row,
                f"expected lists in {tokens_field!r} and {labels_field!r}, found "
                f"{type(tokens).__name__} and {type(labels).__name__}",
                unit="row",
            )
        if len(tokens) != len(labels):
            raise InputError(
                source,
                row,
                f"has {len(tokens)} tokens but {len(labels)} labels; expected one label per token",
                unit="row",
            )
        if any(token is None for token in tokens) or any(label is None for label in labels):
            raise InputError(source, row, "has a missing (null) token or label", unit="row")
        if label_names is None:
            labels = [str(label) for label in labels]
        else:
            labels = [_label_name(label, label_names, source, row) for label in labels]
        out_tokens.append([str(token) for token in tokens])
        out_labels.append(labels)
        out_lines.append([row] * len(tokens))
    return {"tokens": out_tokens, "labels": out_labels, "lines": out_lines}


def _label_name(label_id: int, names: tuple[str, ...], source: str, row: int) -> str:
    if not 0 <= label_id < len(names):
        raise InputError(
            source,
            row,
            f"label id {label_id} is not a class; expected 0 to {len(names) - 1}",
            unit="row",
        )
    return names[label_id]


__all__ = [
    "count_tokens",
    "describe",
    "read_conll",
    "read_conllu",
    "read_hub",
    "read_tokens",
    "LabelledTokens",
    "tagging_features",
]
