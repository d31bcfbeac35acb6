"""Prediction as a Ray Data job: many plain-text files tagged or classified by a pool of actors, on one machine or
a Ray cluster, written as JSON-lines parts that, joined in name order, are what `seqtag predict` writes.

    from seqtag.distributed import predict_with_ray
    predict_with_ray("runs/demo/model", ["corpus/*.txt"], "tagged/")                # a local Ray instance
    predict_with_ray("runs/demo/model", ["corpus/*.txt"], "tagged/", address="ray://head:10001",
                     model_in_object_store=True)                                    # a cluster, no shared disk

Ray is an optional dependency (`pip install "seqtag[ray]"`), imported only inside the functions here.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .data.readers import FORMATS
from .data.text_readers import TEXT, raw_lines
from .durable import write_durably
from .errors import SeqtagError
from .loading import load
from .outputs import OUTPUTS
from .process_state import kept_process_state

PART_PATTERN = re.compile(r"\.?part-\d+-\d+\.(jsonl|conll)(\.partial)?$")  # a part, or a durable write's leftover


@dataclass(frozen=True)
class _Part:
    """Up to `lines_per_part` consecutive lines of one input file: the unit one actor call predicts and one
    output file holds."""
    file_index: int
    part_index: int
    text: str  # the lines joined by "\n" (a line read from a file never holds one, so the split is exact)


def predict_with_ray(model_dir: str | Path, sources: str | list[str], out_dir: str | Path, *,
                     address: str | None = None, num_actors: int | None = None, batch_size: int = 256,
                     output: str = "jsonl", pretokenized: bool = False, top_k: int | None = None,
                     lines_per_part: int = 4096, model_in_object_store: bool = False) -> dict:
    """Predict every line of the text files `sources` (paths or glob patterns such as "corpus/*.txt"; one sentence
    or text per line, read as `seqtag predict` reads a .txt file) with the tagger or classifier in `model_dir`,
    as a Ray Data job, and write the results into `out_dir` as parts `part-<file>-<part>.jsonl` (`.conll` with
    `output="conll"`).

    The files are taken in sorted path order and cut into parts of `lines_per_part` lines; each part holds, line
    for line, what `seqtag predict MODEL FILE` writes for those lines (JSON lines, or CoNLL blocks with
    `output="conll"`), so the parts joined in sorted name order are the single-process output of the files in
    sorted order. An empty file gives no part. Each part is written durably (`durable.write_durably`).

    Where things run: this process reads the inputs, sends them to the actors through Ray's object store and
    writes the parts, so only the model has to reach the workers (and the inputs' text is held in this
    process's memory and Ray's object store while the job runs). Each of `num_actors` actors (default: one per
    CPU of the Ray instance, at most one per part) reserves one CPU, loads the model once and predicts with one
    torch thread: actors never share a core, and the output does not depend on how many there are (torch's
    sums over 2 threads differ from 1 thread's in the last digits of a few probabilities). The model
    reaches them as the path `model_dir`, which must then be on a filesystem every node sees; with
    `model_in_object_store=True` its files are read here once, put in the object store (`ray.put`), and each
    actor writes them to a local temporary folder, loads from there and removes the folder, so a cluster
    without a shared filesystem works too. seqtag itself must be installed on every node.

    Without `address`, a local Ray instance is started with this machine's CPUs (no dashboard, worker logs kept
    out of this process's output) and shut down at the end; with one (`"auto"`, `"HOST:6379"`,
    `"ray://HOST:10001"`), the job joins that cluster and leaves it running. A process already connected
    (`ray.init` called before) uses that connection and leaves it open.

    Refused before anything runs, each with a SeqtagError saying which: a language model, options the model's
    task cannot honour, a source that matches no file or names a table or CoNLL file, an `out_dir` that
    already holds parts. Returns a summary: {"inputs", "rows", "parts", "actors", "seconds", "out_dir"}."""
    started = time.perf_counter()
    with kept_process_state():  # torch's and Ray's imports add warnings filters; a local Ray start, signal handlers
        if batch_size < 1:
            raise SeqtagError(f"batch_size is {batch_size}; it must be 1 or more (sentences per forward pass).")
        if lines_per_part < 1:
            raise SeqtagError(f"lines_per_part is {lines_per_part}; it must be 1 or more (input lines per part).")
        if top_k is not None and top_k < 1:
            raise SeqtagError(f"top_k is {top_k}; it must be 1 or more (or None: every label).")
        if num_actors is not None and num_actors < 1:
            raise SeqtagError(f"num_actors is {num_actors}; it must be 1 or more (or None: one per CPU).")
        model_dir, out_dir = Path(model_dir), Path(out_dir)
        files = input_files([sources] if isinstance(sources, (str, Path)) else list(sources))
        _check_no_parts(out_dir)
        task = _prediction_task(model_dir, pretokenized, output)
        parts, rows = _read_parts(files, lines_per_part)
        ray = _ray() if parts else None  # Ray missing: say so before anything is written
        out_dir.mkdir(parents=True, exist_ok=True)
        actors = 0
        if parts:
            settings = dict(task=task, pretokenized=pretokenized, output=output, top_k=top_k, batch_size=batch_size)
            actors = _run(ray, model_dir, parts, out_dir, settings, address, num_actors, model_in_object_store)
    return {"inputs": len(files), "rows": rows, "parts": len(parts), "actors": actors,
            "seconds": round(time.perf_counter() - started, 3), "out_dir": str(out_dir)}


def part_name(file_index: int, part_index: int, output: str = "jsonl", digits: tuple[int, int] = (5, 6)) -> str:
    """The name of a part, `part-<file>-<part>.<output>`, both numbers zero-padded to `digits` (as many as the
    largest needs, and at least 5 and 6), so that sorting names sorts by file, then by place in the file."""
    return f"part-{file_index:0{digits[0]}d}-{part_index:0{digits[1]}d}.{output}"


def input_files(sources: list[str | Path]) -> list[str]:
    """The files `sources` (paths or glob patterns) name, each once, in sorted path order."""
    if not sources:
        raise SeqtagError("no input given; give text files or glob patterns such as 'corpus/*.txt'.")
    other_formats = {extension: name for name, fmt in FORMATS.items() if name != TEXT and fmt.prediction_items
                     for extension in fmt.extensions}
    found = set()
    for source in map(str, sources):
        if Path(source).is_dir():
            raise SeqtagError(f"{source} is a folder; give the files in it, e.g. '{Path(source) / '*.txt'}' (quoted, "
                              "so the shell leaves the * to seqtag).")
        matches = [path for path in glob.glob(source, recursive=True) if Path(path).is_file()]
        if not matches:
            raise SeqtagError(f"{source}: no file matches; give text files (one sentence or text per line) or glob "
                              "patterns such as 'corpus/*.txt'.")
        for path in matches:
            suffix = Path(path).suffix.lower()
            if suffix in other_formats:
                raise SeqtagError(f"{path}: a {suffix} file holds {other_formats[suffix]} data, but the Ray path reads "
                                  "plain text, one input per line; give .txt files (or use `seqtag predict` for "
                                  "this file).")
            found.add(os.path.abspath(path))
    return sorted(found)


def _prediction_task(model_dir: Path, pretokenized: bool, output: str) -> str:
    """The model's task, once the model has loaded here (so a broken model directory fails before Ray starts)
    and its task's outputs have accepted the options."""
    task = load(model_dir).task
    OUTPUTS[task].check_prediction_options(model_dir, pretokenized, output)  # a language model: use generate
    return task


def _check_no_parts(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SeqtagError(f"out_dir {out_dir} is a file; give a folder for the parts.")
    found = sorted(p.name for p in out_dir.iterdir() if PART_PATTERN.match(p.name)) if out_dir.is_dir() else []
    if found:
        raise SeqtagError(f"out_dir {out_dir} already holds {len(found)} part(s) ({found[0]}, ...) from an earlier "
                          "run; give an empty folder, or remove those parts first (mixing two runs' parts would "
                          "give a wrong output).")


def _read_parts(files: list[str], lines_per_part: int) -> tuple[list[_Part], int]:
    """Every file's lines, `lines_per_part` at a time, read as `seqtag predict` reads a .txt file (UTF-8, a
    byte-order mark dropped, a bad byte reported with its file and line); returns the parts and the line count."""
    parts, rows = [], 0
    for file_index, path in enumerate(files):
        lines, part_index = [], 0
        for line in raw_lines(path):
            lines.append(line)
            if len(lines) == lines_per_part:
                parts.append(_Part(file_index, part_index, "\n".join(lines)))
                rows, lines, part_index = rows + len(lines), [], part_index + 1
        if lines:
            parts.append(_Part(file_index, part_index, "\n".join(lines)))
            rows += len(lines)
    return parts, rows


def _ray():
    """The `ray` module, with Ray Data."""
    try:
        import ray
        import ray.data  # noqa: F401 - the extra `ray[data]`, not only the core
    except ImportError as error:
        raise SeqtagError(f'The Ray path needs Ray Data, which is not installed ({error}); install it with '
                          f'pip install "seqtag[ray]".') from None
    return ray


def _run(ray, model_dir: Path, parts: list[_Part], out_dir: Path, settings: dict, address: str | None,
         num_actors: int | None, model_in_object_store: bool) -> int:
    """Run the job on a Ray instance (started here and shut down after, unless one is given or connected);
    returns the number of actors."""
    started_here = False
    with _quiet_ray(ray):
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=_local_cpus(), include_dashboard=False, log_to_driver=False,
                         logging_level="WARNING")
                started_here = True
            else:
                ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        try:
            return _predict_parts(ray, model_dir, parts, out_dir, settings, num_actors, model_in_object_store)
        finally:
            if started_here:
                ray.shutdown()


# Ray's messages that say nothing to someone who asked for predictions: that the local instance it starts (and
# stops) uses token authentication, that progress bars are off (they are turned off here: the caller reports
# progress as it likes), and Ray Data's INFO lines on starting and finishing a dataset. Ray's other warnings
# stay. (One line the C++ core prints when the actors start, "has constructor arguments in the object store and
# max_restarts > 0", cannot be turned off from Python; it is Ray Data's own, ray-project/ray#53727.)
_QUIETER_LOGGERS = {"ray._private.authentication.authentication_token_setup": logging.ERROR,
                    "ray.data._internal.progress": logging.ERROR, "ray.data": logging.WARNING}


@contextlib.contextmanager
def _quiet_ray(ray):
    """Turn Ray Data's progress bars and the loggers above down while the job runs, and back as they were."""
    from ray.data import DataContext

    context = DataContext.get_current()
    kept_context = context.enable_progress_bars, context.print_on_execution_start
    loggers = {name: logging.getLogger(name) for name in _QUIETER_LOGGERS}
    kept_levels = {name: logger.level for name, logger in loggers.items()}
    context.enable_progress_bars = context.print_on_execution_start = False
    for name, logger in loggers.items():
        logger.setLevel(max(_QUIETER_LOGGERS[name], logger.getEffectiveLevel()))
    try:
        yield
    finally:
        context.enable_progress_bars, context.print_on_execution_start = kept_context
        for name, logger in loggers.items():
            logger.setLevel(kept_levels[name])


def _local_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _predict_parts(ray, model_dir: Path, parts: list[_Part], out_dir: Path, settings: dict,
                   num_actors: int | None, model_in_object_store: bool) -> int:
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if num_actors is not None and num_actors > cpus:
        raise SeqtagError(f"num_actors is {num_actors}, but the Ray instance has {cpus} CPU(s) and each actor needs "
                          f"one; give num_actors={cpus} or fewer (or None: one per CPU).")
    actors = min(num_actors or cpus, len(parts)) or 1
    # In a list, so that Ray passes the object reference itself and each actor fetches the files when it starts.
    model = [ray.put(_model_files(model_dir))] if model_in_object_store else [str(model_dir.resolve())]
    dataset = ray.data.from_items([asdict(part) for part in parts], override_num_blocks=min(len(parts), 4 * actors))
    # One CPU and one torch thread per actor: more actors, not more threads, take more cores (see the docstring;
    # bench/RESULTS.md, "Ray Data prediction", has 2 threads on a busy 2-core machine several times slower).
    results = dataset.map_batches(
        _PartPredictor, batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1, fn_constructor_kwargs=dict(model=model, threads=1, **settings))
    digits = (max(5, len(str(parts[-1].file_index))), max(6, len(str(max(p.part_index for p in parts)))))
    for row in results.iter_rows():
        if row["error"]:
            raise SeqtagError(row["error"])
        name = part_name(int(row["file_index"]), int(row["part_index"]), settings["output"], digits)
        write_durably(out_dir / name, str(row["output"]))
    return actors


def _model_files(model_dir: Path) -> dict[str, bytes]:
    """The model directory's files as {name: bytes}, to travel through the object store (the hidden leftovers
    of an interrupted save, names starting with ".", are not part of the model)."""
    return {path.name: path.read_bytes() for path in sorted(model_dir.iterdir())
            if path.is_file() and not path.name.startswith(".")}


class _PartPredictor:
    """A Ray Data actor: loads the model once (from its path, or from its files' bytes in the object store),
    then turns each part's lines into the lines `seqtag predict` writes for them.

    A SeqtagError here (the model folder missing on this node, say) comes back as the row's `error`, not as a
    raised exception: Ray would hand the driver only an "actor died" error with the message buried in a
    traceback, and could not rebuild the error classes that take more than a message."""

    def __init__(self, model: list, task: str, pretokenized: bool, output: str, top_k: int | None,
                 batch_size: int, threads: int):
        self.outputs = OUTPUTS[task]
        self.options = (pretokenized, output, top_k, batch_size)
        self.error = ""
        try:
            self.model = self._load(model, threads)
        except SeqtagError as error:
            self.error = f"on the Ray worker at {socket.gethostname()}: {error}"

    @staticmethod
    def _load(model: list, threads: int):
        import ray
        import torch

        torch.set_num_threads(threads)
        model = ray.get(model[0]) if isinstance(model[0], ray.ObjectRef) else model[0]
        if not isinstance(model, dict):
            return load(model)
        folder = Path(tempfile.mkdtemp(prefix="seqtag-model-"))  # the model's files: write, load, remove
        try:
            for name, data in model.items():
                (folder / name).write_bytes(data)
            return load(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        pretokenized, output, top_k, batch_size = self.options
        outputs, errors = [], []
        for text in batch["text"]:
            lines, predicted, error = str(text).split("\n"), "", self.error
            if not error:
                try:
                    # Each line as `seqtag predict` echoes it: the result's line(s) and a line end.
                    predicted = "".join(f"{line}\n" for line in self.outputs.prediction_lines(
                        self.model, lines, pretokenized, output, top_k, batch_size))
                except SeqtagError as raised:
                    error = f"on the Ray worker at {socket.gethostname()}: {raised}"
            outputs.append(predicted)
            errors.append(error)
        return {"file_index": batch["file_index"], "part_index": batch["part_index"],
                "output": np.array(outputs, dtype=object), "error": np.array(errors, dtype=object)}
