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
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Value

from seqtag.errors import InputError, SeqtagError

from .readers import _build, _file_key, _read_lines, _shorten, _unwrap_errors, load_hub_split

log = logging.getLogger("seqtag")

TEXT_FEATURES = Features(
    {"text": Value("string"), "label": Value("string"), "line": Value("int32"), "problem": Value("string")}
)


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
    return _build(_table_rows, gen_kwargs, cache_dir, TEXT_FEATURES)


def read_jsonl(path: str | Path, text_field: str, label_field: str, skip: bool = False,
               cache_dir: str | None = None) -> Dataset:
    """JSON lines: one object per line with the text and the label in the named fields."""
    gen_kwargs = _file_key(path)
    gen_kwargs.update(text_field=str(text_field), label_field=str(label_field), skip=skip)
    return _build(_jsonl_rows, gen_kwargs, cache_dir, TEXT_FEATURES)


def class_file_label(path: str | Path) -> str:
    """The label a class file stands for: its extension (rt-polarity.pos -> pos), else its name."""
    path = Path(path)
    return path.suffix[1:] if path.suffix else path.name


def read_class_files(paths: list[str], skip: bool = False, cache_dir: str | None = None) -> Dataset:
    """One file per class, one text per line; the label is the file's extension."""
    from datasets import concatenate_datasets

    labels = [class_file_label(p) for p in paths]
    if len(paths) < 2 or len(set(labels)) != len(labels):
        raise SeqtagError(f"format class_files needs two or more files with different extensions (the labels), "
                          f"comma-separated, e.g. --train data.pos,data.neg; got {', '.join(paths) or 'nothing'}.")
    parts = []
    for path, label in zip(paths, labels):
        gen_kwargs = _file_key(path)
        gen_kwargs.update(label=label, skip=skip)
        parts.append(_build(_class_file_rows, gen_kwargs, cache_dir, TEXT_FEATURES))
    return concatenate_datasets(parts)


def read_class_folders(root: str | Path, skip: bool = False, cache_dir: str | None = None) -> Dataset:
    """A folder with one sub-folder per class (the label), each file in it one text (aclImdb/train/pos|neg)."""
    resolved = Path(root).expanduser().resolve()
    if not resolved.is_dir():
        raise InputError(root, None, f"not a folder (looked for {resolved}); expected a folder with one "
                                     "sub-folder per class, e.g. aclImdb/train holding pos/ and neg/")
    classes = sorted(p for p in resolved.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(root, None, "has no class sub-folders; expected one sub-folder per class")
    listing = hashlib.sha256()
    for folder in classes:
        found = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if not found:
            raise InputError(folder, None, "this class folder is empty; expected one text file per example "
                                           "(remove the folder if the class is not wanted)")
        for file in found:
            stat = file.stat()
            listing.update(f"{file.relative_to(resolved)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    gen_kwargs = {"path": str(resolved), "shown_path": str(root), "listing": listing.hexdigest(), "skip": skip}
    return _build(_folder_rows, gen_kwargs, cache_dir, TEXT_FEATURES)


def read_text_hub(name: str, split: str, text_field: str, label_field: str, config_name: str | None = None,
                  skip: bool = False, cache_dir: str | None = None) -> Dataset:
    """A split loaded with `datasets.load_dataset` (a hub id or a local folder of data files)."""
    ds, source = load_hub_split(name, split, config_name, cache_dir,
                                {"data.text_column": text_field, "data.label_column": label_field})
    feature = ds.features[label_field]
    names = tuple(feature.names) if isinstance(feature, ClassLabel) else None
    convert = functools.partial(_hub_rows, source=source, text_field=text_field, label_field=label_field,
                                names=names, skip=skip)
    return _unwrap_errors(ds.map, convert, batched=True, with_indices=True, remove_columns=ds.column_names,
                          features=TEXT_FEATURES, desc="Converting")


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


def _column_index(column: int | str, names: list[str] | None, role: str, shown_path: str) -> int:
    """0-based index of a column given by header name or index (as an int or a string of digits)."""
    if isinstance(column, str) and not column.lstrip("-").isdigit():
        if names is None:
            raise InputError(shown_path, None, f"data.{role} is {column!r}, a column name, but data.header is "
                                               "false; give a 0-based column index instead")
        if column not in names:
            raise InputError(shown_path, 1, f"no column {column!r} (data.{role}) in the header; columns: "
                                            f"{', '.join(map(repr, names))}")
        return names.index(column)
    return int(column)


def _table_rows(path: str, shown_path: str, size: int, mtime_ns: int, delimiter: str, text_column, label_column,
                header: bool, quoting: bool, skip: bool) -> Iterator[dict]:
    lines = ((n, text + "\n") for n, text in _read_lines(path, shown_path))
    numbers = []  # the line number of each line handed to csv, so a row knows where it started

    def feed():
        for number, text in lines:
            numbers.append(number)
            yield text

    reader = csv.reader(feed(), delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
    names = None
    consumed = 0
    try:
        if header:
            names = next(reader, None)
            if names is None:
                raise InputError(shown_path, None, "is empty; expected a header row and then one row per text")
            consumed = len(numbers)
        width = len(names) if names else None
        text_index = label_index = None
        for fields in reader:
            line = numbers[consumed] if consumed < len(numbers) else len(numbers)
            consumed = len(numbers)
            if width is None:
                width = len(fields)
            if text_index is None:
                text_index = _column_index(text_column, names, "text_column", shown_path)
                label_index = _column_index(label_column, names, "label_column", shown_path)
                for role, index in (("text_column", text_index), ("label_column", label_index)):
                    if not -width <= index < width:
                        raise InputError(shown_path, line, f"data.{role}={index} is out of range: the rows have "
                                                           f"{width} fields, so expected 0 to {width - 1}")
            if len(fields) != width:
                shown = delimiter.join(fields)
                yield _bad(shown_path, line, f"expected {width} fields, found {len(fields)}: '{_shorten(shown)}' "
                                             "(a field holding the separator must be quoted)", skip)
                continue
            text, label = fields[text_index], fields[label_index]
            problem = _text_problem(text) or (None if label.strip() else "the label is empty")
            if problem:
                yield _bad(shown_path, line, problem, skip)
                continue
            yield _row(text, label.strip(), line)
    except csv.Error as error:
        raise InputError(shown_path, numbers[-1] if numbers else None, f"cannot be read as CSV: {error}") from None


def _jsonl_rows(path: str, shown_path: str, size: int, mtime_ns: int, text_field: str, label_field: str,
                skip: bool) -> Iterator[dict]:
    for number, line in _read_lines(path, shown_path):
        if not line.strip():
            yield _bad(shown_path, number, "the line is blank; expected one JSON object per line", skip)
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield _bad(shown_path, number, f"is not valid JSON ({error.msg} at column {error.colno})", skip)
            continue
        if not isinstance(record, dict):
            yield _bad(shown_path, number, f"expected a JSON object, found {type(record).__name__}", skip)
            continue
        for role, field in (("text_column", text_field), ("label_column", label_field)):
            if field not in record:
                raise InputError(shown_path, number, f"no field {field!r} (data.{role}); fields: "
                                                     f"{', '.join(map(repr, record))}")
        text, label = record[text_field], record[label_field]
        problem = _text_problem(text if isinstance(text, str) else None)
        if problem or label is None:
            yield _bad(shown_path, number, problem or "the label is null", skip)
            continue
        yield _row(text, str(label), number)


def _class_file_rows(path: str, shown_path: str, size: int, mtime_ns: int, label: str, skip: bool) -> Iterator[dict]:
    count = 0
    for number, line in _read_lines(path, shown_path):
        problem = _text_problem(line)
        yield _bad(shown_path, number, problem, skip) if problem else _row(line, label, number)
        count += 1
    if not count:
        raise InputError(shown_path, None, "is empty; expected one text per line")


def _folder_rows(path: str, shown_path: str, listing: str, skip: bool) -> Iterator[dict]:
    for folder in sorted(p for p in Path(path).iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
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
    return {key: [row[key] for row in rows] for key in TEXT_FEATURES}
