"""Readers that turn labelled texts (for classification) into `datasets.Dataset`s.

Every reader returns a Dataset with the columns, one row per text in file order:

* ``text``:    str
* ``label``:   str
* ``line``:    int, the 1-based line (CSV: the line the row starts on; hub: the row number)
* ``problem``: str, empty for a good row; otherwise why the row cannot be used

A bad row (empty text, wrong field count, blank line) raises `InputError` naming file
and line, unless the reader was asked to `skip` such rows: then it is kept with its
`problem`, and `drop_problems` removes it, counts it and logs it, so nothing is
silently dropped. Mistakes that no skipping can fix (a missing label column, bytes
that are not UTF-8, an empty class folder) always raise.

File readers share the tagging readers' Arrow cache keyed by path, size and mtime.

`read_prediction_texts` reads a CSV, TSV or JSON lines file for prediction: the text column only,
streamed, every row kept (an empty text too, so outputs stay in step with rows), without `datasets`.

`read_text` reads plain text for language models: one row {"text"} per line of the files (or hub split).

The formats registered here (see `readers.Format`): csv, tsv, jsonl, auto, class_files, class_folders and hub
for classification; text, wikitext and hub for language models.
"""
from __future__ import annotations

import csv
import functools
import glob
import hashlib
import itertools
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from seqtag.errors import InputError, SeqtagError

from .lines import decode_lines
from .readers import (FORMATS, HUB, Format, _build, _file_key, _read_lines, _shorten, _unwrap_errors, load_hub_split,
                      need_hub_name)
from .vocab import WORD

if TYPE_CHECKING:
    from datasets import Dataset, Features

log = logging.getLogger("seqtag")

TEXT_COLUMNS = ("text", "label", "line", "problem")
CSV, TSV, JSONL, AUTO, CLASS_FILES, CLASS_FOLDERS = "csv", "tsv", "jsonl", "auto", "class_files", "class_folders"
TEXT, WIKITEXT = "text", "wikitext"
SEPARATORS = {CSV: ",", TSV: "\t"}
_NO_TEXT = "holds no text (it is empty or only whitespace); expected the text to model"


@functools.cache
def text_features() -> Features:
    """The columns every text reader returns (built on first use: importing datasets takes a second)."""
    from datasets import Features, Value

    return Features({"text": Value("string"), "label": Value("string"), "line": Value("int32"),
                     "problem": Value("string")})


@functools.cache
def lines_features() -> Features:
    """The one column of a language model's text rows."""
    from datasets import Features, Value

    return Features({"text": Value("string")})


def __getattr__(name: str):
    if name == "TEXT_FEATURES":  # the old module constant, built on demand
        return text_features()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _row(text: str, label: str, line: int) -> dict:
    return {"text": text, "label": label, "line": line, "problem": ""}


def _bad(shown_path: str, line: int | None, message: str, skip: bool) -> dict:
    """A row for a problem the user may skip; raises unless `skip`."""
    error = InputError(shown_path, line, message)
    if not skip:
        raise error
    return {"text": "", "label": "", "line": line or 0, "problem": str(error)}


def _text_problem(text: str | None) -> str | None:
    if text is None or not text.strip():
        return "the text is empty; expected at least one non-space character (or set data.skip_bad_rows=true)"
    return None


# ---------------------------------------------------------------------------
# Public readers


def read_table(path: str | Path, delimiter: str, text_column: int | str, label_column: int | str,
               header: bool = True, quoting: bool = True, skip: bool = False,
               cache_dir: str | None = None) -> Dataset:
    """CSV or TSV: columns chosen by header name or 0-based index; quoting follows the csv module."""
    gen_kwargs = _file_key(path)
    gen_kwargs.update(delimiter=delimiter, text_column=text_column, label_column=label_column, header=header,
                      quoting=quoting, skip=skip)
    return _build(_table_rows, gen_kwargs, cache_dir, text_features())


def read_jsonl(path: str | Path, text_field: str, label_field: str, skip: bool = False,
               cache_dir: str | None = None) -> Dataset:
    """JSON lines: one object per line with the text and the label in the named fields."""
    gen_kwargs = _file_key(path)
    gen_kwargs.update(text_field=str(text_field), label_field=str(label_field), skip=skip)
    return _build(_jsonl_rows, gen_kwargs, cache_dir, text_features())


def read_prediction_texts(path: str | Path, format: str, text_column: int | str, header: bool = True,
                          quoting: bool = True) -> Iterator[str]:
    """The texts of a CSV, TSV or JSON lines file, one per row in file order, for prediction: the label column
    is not needed, and an empty text is kept (its prediction is still one output line). A JSON lines file
    names its fields, so an index given as `text_column` reads the field "text". Streams the file; needs no
    `datasets`."""
    key = _file_key(path)
    if format == JSONL:
        field = text_column if isinstance(text_column, str) and not text_column.lstrip("-").isdigit() else "text"
        rows = _jsonl_rows(**key, text_field=field, label_field=None, skip=False)
    elif format in SEPARATORS:
        rows = _table_rows(**key, delimiter=SEPARATORS[format], text_column=text_column, label_column=None,
                           header=header, quoting=quoting, skip=False)
    else:
        raise ValueError(f"read_prediction_texts reads {CSV}, {TSV} or {JSONL}, not {format!r}")
    for row in rows:
        yield row["text"]


def raw_lines(path: str | Path, encoding: str = "utf-8") -> Iterator[str]:
    """Each line of a text file as one item to predict, streamed (an empty line too: its output keeps the place),
    decoded from `encoding` (see `lines.decode_lines`)."""
    with open(path, "rb") as stream:
        yield from (text for _, text in decode_lines(stream, str(path), encoding=encoding))


def class_file_label(path: str | Path) -> str:
    """The label a class file stands for: its extension (rt-polarity.pos -> pos), else its name."""
    path = Path(path)
    return path.suffix[1:] if path.suffix else path.name


def read_class_files(paths: list[str], skip: bool = False, cache_dir: str | None = None) -> Dataset:
    """One file per class, one text per line; the label is the file's extension."""
    from datasets import concatenate_datasets

    labels = [class_file_label(p) for p in paths]
    if len(paths) < 2 or len(set(labels)) != len(labels):
        raise SeqtagError(f"format {CLASS_FILES} needs two or more files with different extensions (the labels), "
                          f"comma-separated, e.g. --train data.pos,data.neg; got {', '.join(paths) or 'nothing'}.")
    parts = []
    for path, label in zip(paths, labels):
        gen_kwargs = _file_key(path)
        gen_kwargs.update(label=label, skip=skip)
        parts.append(_build(_class_file_rows, gen_kwargs, cache_dir, text_features()))
    return concatenate_datasets(parts)


def read_class_folders(root: str | Path, skip: bool = False, cache_dir: str | None = None) -> Dataset:
    """A folder with one sub-folder per class (the label), each file in it one text (aclImdb/train/pos|neg)."""
    return _build(_folder_rows, _folder_key(root, skip), cache_dir, text_features())


def read_text_hub(name: str, split: str, text_field: str, label_field: str, config_name: str | None = None,
                  skip: bool = False, cache_dir: str | None = None) -> Dataset:
    """A split loaded with `datasets.load_dataset` (a hub id or a local folder of data files)."""
    from datasets import ClassLabel

    ds, source = load_hub_split(name, split, config_name, cache_dir,
                                {"data.text_column": text_field, "data.label_column": label_field})
    feature = ds.features[label_field]
    names = tuple(feature.names) if isinstance(feature, ClassLabel) else None
    convert = functools.partial(_hub_rows, source=source, text_field=text_field, label_field=label_field,
                                names=names, skip=skip)
    return _unwrap_errors(ds.map, convert, batched=True, with_indices=True, remove_columns=ds.column_names,
                          features=text_features(), desc="Converting")


def drop_problems(dataset: Dataset, source: str) -> Dataset:
    """Remove the rows a reader kept with a problem, logging how many and the first few reasons."""
    problems = [p for p in dataset["problem"] if p]
    if problems:
        log.warning("%s: skipped %d bad row%s, e.g. %s", source, len(problems), "" if len(problems) == 1 else "s",
                    " | ".join(problems[:3]))
        dataset = dataset.filter(lambda batch: [not p for p in batch], input_columns="problem", batched=True)
    if not len(dataset):
        raise InputError(source, None, "contains no usable texts")
    return dataset.remove_columns("problem")


# ---------------------------------------------------------------------------
# Generators (size and mtime_ns, or listing, only serve as cache key)


def _separator_hint(fields: list[str], delimiter: str) -> str:
    """When a row is one field holding the other usual separator, the likely fix (a TSV read as CSV or back)."""
    if len(fields) != 1:
        return ""
    if delimiter == "," and "\t" in fields[0]:
        return ("; the row holds tabs, so the file looks tab-separated: set --set data.format=tsv (or name the "
                "file .tsv)")
    if delimiter == "\t" and "," in fields[0]:
        return (f"; the row holds commas, so the file looks comma-separated: set --set data.format={CSV} (or name "
                "the file .csv)")
    return ""


def _column_index(column: int | str, names: list[str] | None, role: str, shown_path: str, hint: str) -> int:
    """0-based index of a column given by header name or index (as an int or a string of digits); `hint` ends
    the message of a name missing from the header."""
    if isinstance(column, str) and not column.lstrip("-").isdigit():
        if names is None:
            raise InputError(shown_path, None, f"data.{role} is {column!r}, a column name, but data.header is "
                                               "false; give a 0-based column index instead")
        if column not in names:
            raise InputError(shown_path, 1, f"no column {column!r} (data.{role}) in the header; columns: "
                                            f"{', '.join(map(repr, names))}{hint}")
        return names.index(column)
    return int(column)


def _table_rows(path: str, shown_path: str, size: int, mtime_ns: int, delimiter: str, text_column, label_column,
                header: bool, quoting: bool, skip: bool) -> Iterator[dict]:
    """Rows of a CSV or TSV file; without a `label_column` (prediction) texts only, an empty text included."""
    lines = ((n, text + "\n") for n, text in _read_lines(path, shown_path))
    numbers = []  # the line number of each line handed to csv, so a row knows where it started

    def feed():
        for number, text in lines:
            numbers.append(number)
            yield text

    reader = csv.reader(feed(), delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
    roles = {"text_column": text_column} if label_column is None else {"text_column": text_column,
                                                                        "label_column": label_column}
    names = None
    consumed = rows = 0
    try:
        if header:
            names = next(reader, None)
            if names is None:
                raise InputError(shown_path, None, "is empty; expected a header row and then one row per text")
            consumed = len(numbers)
        width = len(names) if names else None
        indices = None
        for fields in reader:
            line = numbers[consumed] if consumed < len(numbers) else len(numbers)
            consumed = len(numbers)
            rows += 1
            if width is None:
                width = len(fields)
            hint = _separator_hint(names or fields, delimiter)
            if indices is None:
                indices = {role: _column_index(column, names, role, shown_path, hint)
                           for role, column in roles.items()}
                for role, index in indices.items():
                    if not -width <= index < width:
                        raise InputError(shown_path, line, f"data.{role}={index} is out of range: the rows have "
                                                           f"{width} field{'' if width == 1 else 's'}, so expected "
                                                           f"0 to {width - 1}{hint}")
            if len(fields) != width:
                shown = delimiter.join(fields)
                yield _bad(shown_path, line, f"expected {width} fields, found {len(fields)}: '{_shorten(shown)}' "
                                             f"(a field holding the separator must be quoted){hint}", skip)
                continue
            text = fields[indices["text_column"]]
            if label_column is None:
                yield _row(text, "", line)
                continue
            label = fields[indices["label_column"]]
            problem = _text_problem(text) or (None if label.strip() else "the label is empty")
            if problem:
                yield _bad(shown_path, line, problem, skip)
                continue
            yield _row(text, label.strip(), line)
    except csv.Error as error:
        raise InputError(shown_path, numbers[-1] if numbers else None, f"cannot be read as CSV: {error}") from None
    if not rows:
        what = "has a header but no rows" if header else "is empty"
        raise InputError(shown_path, None, f"{what}; expected one row per text"
                                           f"{' after the header' if header else ''}")


def _unpaired_surrogate(text: str) -> str | None:
    """A description of the first lone UTF-16 surrogate in `text` (JSON's "\\ud800" escapes make them), or
    None: such text cannot be stored or printed as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"an unpaired surrogate \\u{ord(text[error.start]):04x} at character {error.start + 1}"
    return None


def _json_value_problem(name: str, value, kind: str) -> str | None:
    """Why a JSON value cannot be a text (`kind` "text") or a label ("label"), or None if it can."""
    if value is None:
        return f"the {name} is null"
    if kind == "label" and not isinstance(value, (str, int, float, bool)):
        return f"the {name} is a JSON {type(value).__name__}; expected a string or a number"
    if kind == "text" and not isinstance(value, str):
        return f"the {name} is a JSON {type(value).__name__}; expected a string"
    surrogate = _unpaired_surrogate(str(value))
    return f"the {name} holds {surrogate}" if surrogate else None


def _jsonl_rows(path: str, shown_path: str, size: int, mtime_ns: int, text_field: str, label_field: str | None,
                skip: bool) -> Iterator[dict]:
    """Rows of a JSON lines file; without a `label_field` (prediction) texts only, an empty text included."""
    fields = {"text_column": text_field} if label_field is None else {"text_column": text_field,
                                                                       "label_column": label_field}
    rows = 0
    for number, line in _read_lines(path, shown_path):
        rows += 1
        if not line.strip():
            yield _bad(shown_path, number, "the line is blank; expected one JSON object per line", skip)
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield _bad(shown_path, number, f"is not valid JSON ({error.msg} at column {error.colno})", skip)
            continue
        except (ValueError, RecursionError) as error:  # an integer of thousands of digits, nesting too deep
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error).split(";")[0]
            yield _bad(shown_path, number, f"cannot be read as JSON ({reason})", skip)
            continue
        if not isinstance(record, dict):
            yield _bad(shown_path, number, f"expected a JSON object, found {type(record).__name__}", skip)
            continue
        for role, field in fields.items():
            if field not in record:
                shown = ", ".join(repr(name) if not _unpaired_surrogate(name) else ascii(name) for name in record)
                raise InputError(shown_path, number, f"no field {field!r} (data.{role}); fields: {shown}")
        text = record[text_field]
        problem = _json_value_problem("text", text, "text")
        if label_field is None:
            if problem:
                raise InputError(shown_path, number, problem)
            yield _row(text, "", number)
            continue
        label = record[label_field]
        problem = problem or _text_problem(text) or _json_value_problem("label", label, "label")
        if problem is None and not str(label).strip():
            problem = "the label is empty"
        if problem:
            yield _bad(shown_path, number, problem, skip)
            continue
        yield _row(text, str(label).strip(), number)
    if not rows:
        raise InputError(shown_path, None, "is empty; expected one JSON object per line")


def _class_file_rows(path: str, shown_path: str, size: int, mtime_ns: int, label: str, skip: bool) -> Iterator[dict]:
    count = 0
    for number, line in _read_lines(path, shown_path):
        problem = _text_problem(line)
        yield _bad(shown_path, number, problem, skip) if problem else _row(line, label, number)
        count += 1
    if not count:
        raise InputError(shown_path, None, "is empty; expected one text per line")


def _entries(folder: Path, want_folders: bool) -> list[Path]:
    """The visible sub-folders (or files) of `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and
                  (p.is_dir() if want_folders else p.is_file()))


def _check_name(path: Path) -> None:
    """A class folder's name is a label and a file's is shown in messages: both must be UTF-8."""
    if _unpaired_surrogate(path.name):  # how Python shows the bytes of a name that is not UTF-8
        shown = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise InputError(shown, None, "the name is not valid UTF-8 (a class folder's name is its label, and "
                                      "file names are shown in messages); rename it")


def _folder_key(root: str | Path, skip: bool) -> dict:
    """gen_kwargs for `_folder_rows`: the folder, and a digest of every file's name, size and mtime (the cache
    key). Checks the layout: class sub-folders, none empty, every name UTF-8 (a class name is a label)."""
    resolved = Path(root).expanduser().resolve()
    if not resolved.is_dir():
        raise InputError(root, None, f"not a folder (looked for {resolved}); expected a folder with one "
                                     "sub-folder per class, e.g. aclImdb/train holding pos/ and neg/")
    try:
        classes = _entries(resolved, want_folders=True)
        if not classes:
            raise InputError(root, None, "has no class sub-folders; expected one sub-folder per class")
        listing = hashlib.sha256()
        for folder in classes:
            _check_name(folder)
            if not folder.name.strip():
                raise InputError(folder, None, "this class folder's name is blank, and its name is the label; "
                                               "rename it")
            found = _entries(folder, want_folders=False)
            if not found:
                raise InputError(folder, None, "this class folder is empty; expected one text file per example "
                                               "(remove the folder if the class is not wanted)")
            for file in found:
                _check_name(file)
                stat = file.stat()
                listing.update(os.fsencode(file.relative_to(resolved)) +
                               f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    except OSError as error:  # a sub-folder that may not be entered, a file removed meanwhile
        raise InputError(error.filename or root, None, f"cannot be read: {error.strerror or error}") from None
    return {"path": str(resolved), "shown_path": str(root), "listing": listing.hexdigest(), "skip": skip}


def _folder_rows(path: str, shown_path: str, listing: str, skip: bool) -> Iterator[dict]:
    for folder in _entries(Path(path), want_folders=True):
        for file in _entries(folder, want_folders=False):
            shown = str(Path(shown_path) / folder.name / file.name)
            text = "\n".join(line for _, line in _read_lines(str(file), shown))
            problem = _text_problem(text)
            yield _bad(shown, None, problem, skip) if problem else _row(text, folder.name, 1)


def _hub_rows(batch: dict, indices: list[int], source: str, text_field: str, label_field: str,
              names: tuple[str, ...] | None, skip: bool) -> dict:
    rows = []
    for index, text, label in zip(indices, batch[text_field], batch[label_field]):
        problem = _text_problem(text if isinstance(text, str) else None)
        if problem is None and label is None:
            problem = "the label is null"
        if problem is None and names is not None and not 0 <= label < len(names):
            problem = f"label id {label} is not a class; expected 0 to {len(names) - 1}"
        if problem:
            error = InputError(source, index + 1, problem, unit="row")
            if not skip:
                raise error
            rows.append({"text": "", "label": "", "line": index + 1, "problem": str(error)})
        else:
            rows.append(_row(text, names[label] if names is not None else str(label), index + 1))
    return {key: [row[key] for row in rows] for key in TEXT_COLUMNS}


# ---------------------------------------------------------------------------
# Plain text (language models)


def text_files(spec: str) -> list[str]:
    """The files named by `spec`: comma-separated paths, each of which may be a glob pattern (a file that
    exists under the name given is taken as it is, even with [, * or ? in its name) or a folder, which stands for
    every *.txt file in it and its sub-folders, in path order."""
    files: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if Path(part).is_dir():
            found = sorted(str(p) for p in Path(part).rglob("*.txt") if p.is_file())
            if not found:
                raise SeqtagError(f"{part}: the folder holds no .txt file; a folder given as text stands for the "
                                  ".txt files in it.")
            files.extend(found)
        elif glob.has_magic(part) and not Path(part).is_file():
            matches = sorted(p for p in glob.glob(part) if Path(p).is_file())
            if not matches:
                raise SeqtagError(f"{part}: no file matches this pattern.")
            files.extend(matches)
        else:
            files.append(part)
    if not files:
        raise SeqtagError(f"{spec!r} names no file; give one or more text files, comma-separated or as a glob.")
    return files


def _line_rows(files: list[dict], keep_line_end: bool, source: str) -> Iterator[dict]:
    """One row per line of the files; raises if no line holds anything but whitespace."""
    has_text = False
    for key in files:
        for _, text in _read_lines(key["path"], key["shown_path"], keep_line_end):
            has_text = has_text or (text != "" and not text.isspace())
            yield {"text": text}
    if not has_text:
        raise InputError(source, None, _NO_TEXT)


def read_text(config, source: str, cache_dir: str | None = None) -> Dataset:
    """One row per line of the files (or hub split) in `source`, in order, with a "text" column; text that
    is empty or only whitespace is an error.

    Character and BPE models keep each line's "\\n" (a line break is a token to predict); word
    models drop it and close the line with <eos> when encoding.
    """
    raw = config.tokenizer != WORD
    if config.format == HUB:
        import pyarrow.compute as pc

        field = config.text_column if isinstance(config.text_column, str) else "text"
        ds, source = load_hub_split(config.hub_name, source, config.hub_config, cache_dir, {"text_column": field})
        ds = ds.select_columns([field])
        if field != "text":
            ds = ds.rename_column(field, "text")
        # Hub text datasets differ on whether rows end with "\n"; make every row one line that does.
        end = "\n" if raw else ""
        ds = _unwrap_errors(ds.map, lambda b: {"text": [t.rstrip("\r\n") + end for t in b["text"]]},
                            batched=True, features=lines_features(), desc="Reading lines")
        if not any(pc.any(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(chunk)), 0)).as_py()
                   for chunk in ds.data.column("text").chunks):  # chunk by chunk: stops at the first real text
            raise InputError(source, None, _NO_TEXT)
        return ds
    paths = text_files(source)
    for path in paths:
        _warn_if_columns(path)
    files = [_file_key(path) for path in paths]
    return _build(_line_rows, {"files": files, "keep_line_end": raw, "source": source}, cache_dir, lines_features())


# The last field of a labelled column line: O, an entity tag (B-PER, I-LOC, S-MISC), a POS tag (NN, PRP$, NOUN,
# PUNCT), punctuation tags, or CoNLL-U's empty "_".
_TAG = re.compile(r"O|[BIESLU]-\S+|[A-Z]{2,5}\$?|[.,:;$#]|_")


def _warn_if_columns(path: str, sample: int = 50) -> None:
    """Warn when a text file a language model reads looks like CoNLL columns (token ... tag per line): the model
    would learn, and score, the tags and separators as text. Most of the first `sample` non-blank lines must have
    2 to 10 fields ending in something tag-like (CoNLL-U's # comments are not counted); a peek, so a file too odd to
    decode is left to the reader."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:  # only the first lines, however big the file
            numbered = list(itertools.islice(((number, line.split()) for number, line in enumerate(handle, start=1)
                                              if line.strip() and not line.startswith("#")), sample))
    except OSError:
        return  # the reader names a missing file
    columns = [(number, fields) for number, fields in numbered if 2 <= len(fields) <= 10 and _TAG.fullmatch(fields[-1])]
    if numbered and len(columns) > len(numbered) / 2:
        (number, fields), *_ = columns
        log.warning("%s looks like CoNLL columns (line %d: %r; %d of its first %d non-blank lines end in a tag), "
                    "but a language model reads it as plain text and would model the tags too. Give a plain-text "
                    "file (one sentence per line), or evaluate a tagger on it.", path, number, " ".join(fields),
                    len(columns), len(numbered))


# ---------------------------------------------------------------------------
# Formats


def _table_mismatch(delimiter: str):
    def mismatch(rows: list[str]) -> str | None:
        if rows[0].lstrip().startswith("{"):
            return "the file looks like JSON lines"
        if delimiter == "\t" and "\t" not in rows[0] and "," in rows[0]:
            return "the file looks comma-separated (csv), not tab-separated"
        return None

    return mismatch


def _table_texts(format: str):
    return lambda path, config: read_prediction_texts(path, format, config.text_column, config.header,
                                                      config.quoting)


def _check_wikitext(config) -> None:
    if config.tokenizer != WORD:
        raise SeqtagError(f"data.format {WIKITEXT!r} holds whitespace-separated words; it needs data.tokenizer "
                          f"{WORD!r} (use format {TEXT!r} for characters or BPE).")


for _name, _extensions in ((CSV, (".csv",)), (TSV, (".tsv",))):
    FORMATS.register(_name, Format(_name, extensions=_extensions, prediction_items=_table_texts(_name),
                                   mismatch=_table_mismatch(SEPARATORS[_name])))
FORMATS.register(JSONL, Format(
    JSONL, extensions=(".jsonl", ".json"),
    prediction_items=lambda path, config: read_prediction_texts(path, JSONL, config.text_column),
    mismatch=lambda rows: None if rows[0].lstrip().startswith("{") else "the file is not JSON lines (each line a {...} object)"))
FORMATS.register(AUTO, Format(AUTO))
FORMATS.register(CLASS_FILES, Format(CLASS_FILES, sources="files"))
FORMATS.register(CLASS_FOLDERS, Format(CLASS_FOLDERS))
FORMATS.register(TEXT, Format(TEXT, sources="files", extensions=(".txt",), any_encoding=True, prediction_items=lambda path, config, encoding="utf-8": raw_lines(path, encoding)))
FORMATS.register(WIKITEXT, Format(WIKITEXT, check=_check_wikitext))


def auto_format(source: str) -> str:
    """The table format a file's extension names (data.format auto)."""
    by_extension = {extension: name for name in (CSV, TSV, JSONL) for extension in FORMATS[name].extensions}
    suffix = Path(source).suffix.lower()
    if suffix not in by_extension:
        raise SeqtagError(f"{source}: data.format is {AUTO!r} but the extension {suffix or '(none)'!r} names no "
                          f"format; use {', '.join(by_extension)} or set data.format={CSV}|{TSV}|{JSONL}.")
    return by_extension[suffix]


@FORMATS[CSV].reader("classification")
@FORMATS[TSV].reader("classification")
def _read_table_rows(config, source: str, cache_dir: str | None = None) -> Dataset:
    return read_table(source, SEPARATORS[config.format], config.text_column, config.label_column, config.header,
                      config.quoting, config.skip_bad_rows, cache_dir)


@FORMATS[JSONL].reader("classification")
def _read_jsonl_rows(config, source: str, cache_dir: str | None = None) -> Dataset:
    return read_jsonl(source, config.text_column, config.label_column, config.skip_bad_rows, cache_dir)


@FORMATS[AUTO].reader("classification")
def _read_by_extension(config, source: str, cache_dir: str | None = None) -> Dataset:
    from dataclasses import replace

    fmt = auto_format(source)
    return FORMATS[fmt].readers["classification"](replace(config, format=fmt), source, cache_dir)


@FORMATS[CLASS_FILES].reader("classification")
def _read_class_file_rows(config, source: str, cache_dir: str | None = None) -> Dataset:
    return read_class_files([p.strip() for p in source.split(",") if p.strip()], config.skip_bad_rows, cache_dir)


@FORMATS[CLASS_FOLDERS].reader("classification")
def _read_class_folder_rows(config, source: str, cache_dir: str | None = None) -> Dataset:
    return read_class_folders(source, config.skip_bad_rows, cache_dir)


@FORMATS[HUB].reader("classification")
def _read_hub_text_rows(config, source: str, cache_dir: str | None = None) -> Dataset:
    return read_text_hub(need_hub_name(config, "imdb"), source, str(config.text_column), str(config.label_column),
                         config.hub_config, config.skip_bad_rows, cache_dir)


FORMATS[TEXT].reader("lm")(read_text)
FORMATS[WIKITEXT].reader("lm")(read_text)
FORMATS[HUB].reader("lm")(read_text)
