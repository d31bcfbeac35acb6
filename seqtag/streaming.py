"""Prediction over inputs of any size: read lazily, batched within a bounded window, in one or several
processes, results in input order, with a progress meter on stderr.

    for sentence in tagger.predict_stream(open("corpus.txt"), workers=2):   # a generator: memory stays flat
        ...
    tagger.predict_file("corpus.conll", "tagged.jsonl")                    # file to file, as `seqtag predict`

The predictors (`predict.py`, `language_model.py`) call `stream_results`; `seqtag predict` reads its input with
`input_format` and `read_items`; `check_items`, `check_path` and `evaluation` guard the predictors' entry points.
This module is part of the prediction layer: no Lightning, and `datasets` only inside an `evaluate` that reads a
file.
"""
from __future__ import annotations

import codecs
import json
import contextlib
import functools
import logging
import math
import multiprocessing
import os
import pickle
import sys
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import timedelta
from itertools import islice
from pathlib import Path

from .data.readers import FORMATS, formats_of
from .data.text_readers import TEXT
from .errors import SeqtagError
from .process_state import kept_process_state

log = logging.getLogger("seqtag")

WINDOW = 4096   # items read, sorted by length and batched together: the bound on what is held in memory


# ---------------------------------------------------------------------------
# Reading the input


def input_format(path: str, given: str | None, task: str) -> str:
    """The format to read `path` in for a model of `task`: `given`, else the file's extension (raw lines for
    standard input, "-"), among the formats the family reads whose items can be streamed (raw lines always)."""
    streamed = {name for name, fmt in FORMATS.items() if fmt.prediction_items is not None}
    by_extension = {extension: name for name in streamed for extension in FORMATS[name].extensions}
    readable = [TEXT, *(name for name in formats_of(task) if name in streamed and name != TEXT)]
    choices = "|".join(readable)
    if given is not None:
        if given not in readable:
            raise SeqtagError(f"--format is {given!r}; this model ({task}) reads {choices}.")
        if path == "-" and given != TEXT:
            raise SeqtagError(f"--format {given} reads a file; standard input is read as {TEXT}, one item per line.")
        return given
    if path == "-":
        return TEXT
    suffix = Path(path).suffix.lower()
    if suffix not in by_extension:
        raise SeqtagError(f"{path}: the extension {suffix or '(none)'!r} does not say how to read the file; give "
                          f"--format {choices} ({TEXT}: each line is one input).")
    fmt = by_extension[suffix]
    if fmt not in readable:
        raise SeqtagError(f"{path}: a {suffix} file holds {fmt} data, which this model ({task}) does not "
                          f"read; give --format {TEXT} to read each line as one input (or use {choices}).")
    return fmt


def read_items(path: str, fmt: str, data_config, pretokenized: bool = False, encoding: str = "utf-8") -> Iterator:
    """The items to predict, in file order, streamed: raw lines ("-": standard input; `pretokenized`: split at
    spaces into tokens); the text column of a table or JSON lines file, read with the model's reader settings;
    or a CoNLL file's token lists. Raw lines and CoNLL files are decoded from `encoding`; tables only from UTF-8."""
    from .data.lines import check_line_encoding, decode_lines

    utf8 = codecs.lookup(check_line_encoding(encoding)).name == "utf-8"
    if path == "-":
        items = (text for _, text in decode_lines(sys.stdin.buffer, "<stdin>", encoding=encoding))
    else:
        if not Path(path).is_file():
            raise SeqtagError(f"{path}: file not found; give a text file with one sentence per line, or - for stdin.")
        if utf8:
            items = FORMATS[fmt].prediction_items(path, data_config)
        elif FORMATS[fmt].any_encoding:
            items = FORMATS[fmt].prediction_items(path, data_config, encoding=encoding)
        else:  # the table readers decode whole files as UTF-8: an --encoding they ignored would garble the text
            raise SeqtagError(f"--encoding is {encoding!r}, but {path} is read as {fmt}, which is read as UTF-8 only; "
                              f"convert the file (iconv -f {encoding} -t utf-8 {path}) and drop --encoding.")
    if pretokenized and fmt == TEXT:
        return (line.split() for line in items)
    return items


def count_lines(path: str) -> int | None:
    """The lines of a file, counted fast (for the progress meter's ETA); None for standard input."""
    if path == "-":
        return None
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


# ---------------------------------------------------------------------------
# Progress


class Progress:
    """Items done, items per second and (with a `total`) the ETA, on stderr. On a terminal one line redrawn at
    most ten times a second, left standing at the end; elsewhere (a log file, CI) a line every `interval`
    seconds, and a last one when there was any (a short run prints nothing)."""

    def __init__(self, total: int | None = None, unit: str = "inputs", interval: float = 10.0, stream=None):
        self.total, self.unit, self.interval = total, unit, interval
        self.stream = stream or sys.stderr
        self.terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0
        self.lines = 0  # lines written
        self.started = self._shown = time.monotonic()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._shown >= (0.1 if self.terminal else self.interval):
            self._shown = now
            self._show(final=False)

    def close(self) -> None:
        if self.terminal or self.lines:
            self._show(final=True)

    def line(self) -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / seconds
        done = f"{self.done:,}" + (f"/{self.total:,}" if self.total is not None else "")
        text = f"predicted {done} {self.unit}  {rate:,.0f}/s  {timedelta(seconds=round(seconds))}"
        if self.total is not None and rate > 0 and self.done < self.total:
            text += f"  ETA {timedelta(seconds=math.ceil((self.total - self.done) / rate))}"
        return text

    def _show(self, final: bool) -> None:
        if self.terminal:
            self.stream.write("\r" + self.line() + ("\n" if final else "\x1b[K"))
        else:
            self.stream.write(self.line() + "\n")
        self.lines += 1
        self.stream.flush()


# ---------------------------------------------------------------------------
# Streaming, in this process or in workers


def check_items(items, method: str, accepts: str) -> None:
    """A SeqtagError naming what `method` takes unless `items` is an iterable of inputs. Checked when the method
    is called, not when its generator is first read, so that the error points at the call. A string is refused
    too: iterated, it would be one input per character."""
    if items is None or isinstance(items, (str, bytes, bytearray)) or not isinstance(items, Iterable):
        hint = " (for one text, pass [text])" if isinstance(items, str) else ""
        raise SeqtagError(f"{method}() takes an iterable of {accepts} (a list, a generator or a file opened as "
                          f"text), got {type(items).__name__}{hint}.")


def check_path(value, method: str, what: str) -> None:
    """A SeqtagError unless `value` is a file path (str or os.PathLike)."""
    if not isinstance(value, (str, os.PathLike)):
        raise SeqtagError(f"{method}() takes {what} as a path (str or pathlib.Path), got {type(value).__name__}.")


class StreamedPredictions:
    """`predict_stream`, `predict_file` and `result_line` of every predictor (PyTorch or onnxruntime), built on
    its own `predict`, `task`, `data_config`, `outputs` (what `result_line` writes) and `inputs` (what `predict`
    takes, for the errors that name it)."""

    outputs: tuple[str, ...] = ("jsonl",)
    inputs = "strings"

    def result_line(self, result, output: str = "jsonl") -> str:
        """A result as `seqtag predict` writes it: one JSON line."""
        return json.dumps(result.to_dict(), ensure_ascii=False)

    def predict_stream(self, items: Iterable, batch_size: int | None = None, batch_tokens: int | None = None,
                       window: int | None = None, max_tokens: int | None = None, workers: int = 1,
                       progress: bool | Progress | None = None, **options) -> Iterator:
        """`predict` over an iterable of any length, as a generator: items are read lazily, `window` at a time
        (default 4,096), sorted by length within the window and batched (at most `batch_size` items and
        `batch_tokens` padded tokens per batch), and the results come out in input order, so memory stays flat.
        `workers` > 1 predicts in that many processes, each with its own copy of the network (output identical
        to one worker). `progress` (True or a `streaming.Progress`) reports items/s on stderr. An item over
        `max_tokens` tokens is read in windows (see `predict`). Other keyword options go to `predict`."""
        check_items(items, "predict_stream", self.inputs)
        return stream_results(self, "predict", items, window, workers, progress,
                              dict(batch_size=batch_size, batch_tokens=batch_tokens, max_tokens=max_tokens, **options))

    def predict_file(self, source: str | Path, target: str | Path, format: str | None = None, output: str = "jsonl",
                     pretokenized: bool = False, workers: int = 1, progress: bool | Progress | None = None,
                     **options) -> int:
        """Predict every item of the file `source` and write the results to `target` as `seqtag predict` does
        (JSON lines, or CoNLL for taggers), streamed; `target` appears complete or not at all. `format` is how to
        read `source` (default: its extension; see `seqtag predict --format`). Returns the count written."""
        check_path(source, "predict_file", "the input file")
        check_path(target, "predict_file", "the output file")
        if output not in self.outputs:
            raise SeqtagError(f"output is {output!r}; this model ({self.task}) writes {' or '.join(self.outputs)}.")
        fmt = input_format(str(source), format, self.task)
        items = read_items(str(source), fmt, self.data_config, pretokenized)
        results = self.predict_stream(items, workers=workers, progress=progress, **options)
        return write_lines(target, (self.result_line(result, output) for result in results))


@contextlib.contextmanager
def _no_datasets_bars() -> Iterator[None]:
    """`datasets`' progress bars off for the block, then as they were (a switch of that library's own)."""
    from datasets.utils import logging as datasets_logging  # only for a file, which `datasets` reads anyway

    was = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            datasets_logging.enable_progress_bar()


def evaluation(accepts: str):
    """Decorates a predictor's `evaluate(source, ...)`, which then also takes `verbose`.

    A source that is no input at all (None, bytes, a number) is a SeqtagError naming what it takes (`accepts`).
    The call leaves the caller's process as it found it (`kept_process_state`), and unless `verbose` keeps the
    libraries' chatter out of the caller's output: `datasets`' progress bars while a file is read, deprecation and
    future warnings. `verbose` defaults to the CLI's --verbose (the "seqtag" logger at DEBUG)."""
    def decorate(method):
        @functools.wraps(method)
        def evaluate(self, source, *args, verbose: bool | None = None, **kwargs):
            if source is None or isinstance(source, (bytes, bytearray, int, float)):
                raise SeqtagError(f"evaluate() takes {accepts}, got {type(source).__name__}.")
            if verbose is None:
                verbose = logging.NOTSET < logging.getLogger("seqtag").level <= logging.DEBUG
            with kept_process_state():
                if not verbose:
                    for category in (DeprecationWarning, FutureWarning):
                        warnings.filterwarnings("ignore", category=category)
                reads_file = isinstance(source, (str, os.PathLike))
                with _no_datasets_bars() if reads_file and not verbose else contextlib.nullcontext():
                    result = method(self, source, *args, **kwargs)
            if getattr(self, "label_map", None):  # the gold labels were renamed (`gold_as_trained`): say so
                result["label_map"] = dict(self.label_map)
            return result
        return evaluate
    return decorate


def chunks(items: Iterable, size: int) -> Iterator[tuple[int, list]]:
    """(offset of the first item, up to `size` items) over `items`, read lazily."""
    iterator, offset = iter(items), 0
    while chunk := list(islice(iterator, size)):
        yield offset, chunk
        offset += len(chunk)


def stream_results(predictor, method: str, items: Iterable, window: int | None = None, workers: int = 1,
                   progress: bool | Progress | None = None, options: dict | None = None) -> Iterator:
    """The results of `predictor.<method>(chunk, index_offset=..., **options)` over `items`, one per item, in
    input order. Items are read `window` at a time (each chunk is sorted by length and batched by the
    predictor), so memory is bounded by the window, not the input. With `workers` > 1, chunks go to that many
    processes, each holding its own copy of the predictor and `torch.set_num_threads` set so that together they
    use the threads this process would; at most two chunks per worker are in flight."""
    if not isinstance(workers, int) or workers < 1:
        raise SeqtagError(f"workers is {workers!r}; give the number of processes to predict with, 1 or more.")
    window = window or WINDOW
    if not isinstance(window, int) or window < 1:
        raise SeqtagError(f"window is {window!r}; give how many inputs to batch together, 1 or more.")
    meter = Progress() if progress is True else progress or None
    options = options or {}
    pieces = chunks(items, window)
    if workers == 1:
        call = getattr(predictor, method)
        results = (call(chunk, index_offset=offset, **options) for offset, chunk in pieces)
    else:
        results = _in_workers(predictor, method, pieces, workers, options)
    try:
        for chunk_results in results:
            yield from chunk_results
            if meter is not None:
                meter.advance(len(chunk_results))
    finally:
        if meter is not None:
            meter.close()


_WORKER: dict = {}  # the predictor a worker process holds


def _start_worker(predictor_bytes: bytes, threads: int, own_threads: bool = False) -> None:
    if not own_threads:
        import torch  # here, not at the top: the onnxruntime predictors stream without torch

        torch.set_num_threads(threads)
    _WORKER["predictor"] = pickle.loads(predictor_bytes)  # bytes this process's parent made, not a file
    if own_threads:  # a predictor that is not torch's (onnxruntime) sets its own thread count
        _WORKER["predictor"].set_threads(threads)


def _run_in_worker(method: str, chunk: list, offset: int, options: dict) -> list:
    return getattr(_WORKER["predictor"], method)(chunk, index_offset=offset, **options)


def _in_workers(predictor, method: str, pieces: Iterator[tuple[int, list]], workers: int, options: dict
                ) -> Iterator[list]:
    own_threads = hasattr(predictor, "set_threads")
    if own_threads:
        available = predictor.threads()
    else:
        import torch

        available = torch.get_num_threads()
    threads = max(1, available // workers)
    # spawn: a fresh interpreter per worker (forking a process that holds torch's thread pools can hang).
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start_worker,
                      initargs=(pickle.dumps(predictor), threads, own_threads)) as pool:
        pending: deque = deque()
        for offset, chunk in pieces:
            pending.append(pool.apply_async(_run_in_worker, (method, chunk, offset, options)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def write_lines(path: str | Path, lines: Iterable[str]) -> int:
    """Write `lines` (each followed by a newline) to `path` durably: into a temporary file beside it, renamed
    into place once complete, so a reader never sees half an output. Returns how many were written."""
    from .durable import replace_durably

    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
                count += 1
        replace_durably(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count
