"""`seqtag compare`: one recipe trained with several recurrent cells (and heads) under the same time budget, and
a table of what each bought: its size, its training speed, the time to its best dev score, its dev and test
figures over seeds, and its figure on the long end of the data.

    OUT/compare.md              the table, the settings, the budget, the machine and the date
    OUT/compare.png             the figures and the speeds as bars
    OUT/compare.json            the settings and every finished run's figures (what --resume reads)
    OUT/CELL-HEAD-seedN/        one run folder per configuration and seed, as `seqtag train` writes it

Each run is a plain `train()`; the comparison only sets what makes the runs comparable (see `FAIR_SETTINGS`).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from . import __version__
from .config import Recipe, load_recipe
from .data.batching import IGNORE_INDEX
from .errors import SeqtagError
from .families import family_of
from .metrics import perplexity
from .networks import CELLS
from .predict import load
from .progress import count_tokens
from .runs import RunLock, run_files, trained_model
from .train import train

log = logging.getLogger("seqtag")

COMPARE_FILES = ("compare.md", "compare.png", "compare.json")
# Put before the user's --set, which may change them: the time budget alone ends every run (no early stopping,
# no epoch limit a fast cell would reach first), so each configuration gets the same minutes.
FAIR_SETTINGS = ("train.patience=0", "train.max_epochs=100000", "train.progress_bar=false")
LONG_SHARE = 0.1   # the longest tenth of the test items; the last (and first) tenth of a language model's window
LM_WINDOW = 1000   # tokens a language model reads from a fresh state for its long-context figure
LM_BATCH = 16      # windows scored side by side


# ---------------------------------------------------------------------------
# What one run measured


@dataclass
class RunFigures:
    """One trained configuration and seed: what `compare.json` keeps of it."""

    cell: str
    head: str
    seed: int
    run_dir: str
    parameters: int
    tokens_per_second: float | None   # per wall second of training, dev checks left out; None: nothing timed
    seconds_to_best: float | None     # the budget's clock (dev checks included) when the best dev check was saved
    epochs: int
    dev: dict
    test: dict | None
    long: dict                        # the long-end figures (see `longest_tenth`, `long_context_figures`)
    load: float | None = None         # the machine's 1-minute load average when the run ended (other work on it)
    tokens_per_cpu_second: float | None = None  # per second of this process's CPU time, dev checks left out


class TrainingSpeed(pl.Callback):
    """Tokens trained per second of wall time and per second of this process's CPU time, the dev checks left out
    (the wall figure is what the epoch lines print), over the whole run (a resumed run: over its resumed part)."""

    def __init__(self):
        self.tokens = 0
        self.seconds = {"wall": 0.0, "cpu": 0.0}
        self._marks: dict[str, float] = {}

    @staticmethod
    def _now() -> dict[str, float]:
        return {"wall": time.perf_counter(), "cpu": time.process_time()}

    def _add_since(self, mark: str, sign: float) -> None:
        if mark in self._marks:
            now = self._now()
            for clock in self.seconds:
                self.seconds[clock] += sign * (now[clock] - self._marks[mark][clock])

    def on_train_start(self, trainer, pl_module) -> None:
        self._marks["train"] = self._now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tokens = count_tokens(batch)
        self.tokens += int(tokens) if tokens is not None else 0

    def on_validation_start(self, trainer, pl_module) -> None:
        self._marks["dev"] = self._now()

    def on_validation_end(self, trainer, pl_module) -> None:
        self._add_since("dev", -1)

    def on_train_end(self, trainer, pl_module) -> None:
        self._add_since("train", +1)

    def tokens_per_second(self, clock: str) -> float | None:
        return self.tokens / self.seconds[clock] if self.tokens and self.seconds[clock] > 0 else None


class CpuBudget(pl.Callback):
    """Stops training once this process has spent `minutes` of CPU time on it (dev checks included). On a machine
    that other work shares, every run then gets the same compute, where a wall-clock limit gives each run what
    the others leave it. The CPU seconds used are saved in every checkpoint: a resumed run goes on counting, and
    best.ckpt holds the CPU time of the best dev check."""

    def __init__(self, minutes: float):
        self.limit = minutes * 60
        self.offset = 0.0              # used before a resume
        self._started: float | None = None

    def used(self) -> float:
        return self.offset + (time.process_time() - self._started if self._started is not None else 0.0)

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.used() >= self.limit:
            trainer.should_stop = True

    def state_dict(self) -> dict:
        return {"cpu_seconds": self.used()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.offset = float(state_dict.get("cpu_seconds", 0.0))


class MeasuredStart:
    """`train()`'s `start` hook (what a fine-tuning run starts from) filled in as a plain run: the family's own
    data preparation and network start, no config.json record, plus the `TrainingSpeed` meter as a callback."""

    def __init__(self, family, cpu_budget: CpuBudget | None = None):
        self.family = family
        self.speed = TrainingSpeed()
        self.cpu_budget = cpu_budget

    def prepare(self, recipe: Recipe, cache_dir: str | None):
        return self.family.prepare(recipe, cache_dir)

    def start_network(self, net, recipe: Recipe, prepared) -> None:
        self.family.start_network(net, recipe, prepared)

    def callbacks(self) -> list[pl.Callback]:
        return [self.speed] + ([self.cpu_budget] if self.cpu_budget is not None else [])

    def head_lr(self, recipe: Recipe) -> None:
        return None  # one rate for the whole network, as in a plain run

    def config_entries(self, prepared) -> dict:
        return {}


def seconds_to_best(run_dir: Path, clock: str = "wall") -> float | None:
    """The budget's clock when checkpoints/best.ckpt was written (dev checks included, a resumed run's earlier part
    too): Lightning's training timer (`train.max_time_minutes`), or the `CpuBudget`'s CPU seconds; None without a
    dev check."""
    best = run_dir / "checkpoints" / "best.ckpt"
    if not best.is_file():
        return None
    states = torch.load(best, map_location="cpu", weights_only=True, mmap=True).get("callbacks", {})
    if clock == "cpu":
        return states.get(CpuBudget.__qualname__, {}).get("cpu_seconds")
    return states.get("Timer", {}).get("time_elapsed", {}).get("train")


# ---------------------------------------------------------------------------
# The long end of the data


def longest_tenth(lengths: Sequence[int]) -> list[int]:
    """Indices of the tenth of the items (at least one) with the most tokens, in their original order; of items
    as long as each other, the earlier ones are taken."""
    count = max(1, math.ceil(len(lengths) * LONG_SHARE)) if len(lengths) else 0
    longest = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))[:count]
    return sorted(longest)


def longest_tenth_figures(model, rows) -> dict:
    """The model's `evaluate` figures on the longest tenth of `rows` (sentences, or texts counted in the model's
    own tokens), with the shortest length that made it in."""
    featurizer = model.featurizer
    items = list(rows[featurizer.item_column])
    lengths = [len(tokens) for tokens in (featurizer.tokens(items) if featurizer.raw_text else items)]
    chosen = longest_tenth(lengths)
    figures = model.evaluate(rows.select(chosen))
    figures["min_length"] = min(lengths[i] for i in chosen)
    return figures


def long_context_figures(lm, stream, window: int = LM_WINDOW) -> dict:
    """Perplexity of a language model on the tokens that sit furthest from where it started reading.

    The stream is cut into stretches of `window` tokens, each read from a fresh state; the tokens in the last
    tenth of a stretch follow at least nine tenths of a window of context (`long_context_perplexity`), those in
    its first tenth at most one tenth (`near_start_perplexity`). Scored with the network's own loss, as
    `LanguageModel.evaluate` scores a stream."""
    width = min(window, len(stream) - 1)
    count = (len(stream) - 1) // width
    ids = torch.from_numpy(stream.slice(0, count * width + 1).astype(np.int64))
    inputs, targets = ids[:-1].view(count, width), ids[1:].view(count, width)
    tail = max(1, round(width * LONG_SHARE))
    far, near = targets.clone(), targets.clone()
    far[:, :width - tail] = IGNORE_INDEX
    near[:, tail:] = IGNORE_INDEX
    step = min(lm.data_config.bptt, 256)  # positions per forward pass: the scores are (windows, step, vocabulary)
    nats = {"far": 0.0, "near": 0.0}
    with torch.inference_mode():
        for first in range(0, count, LM_BATCH):
            rows, state = slice(first, first + LM_BATCH), None
            for start in range(0, width, step):
                columns = slice(start, start + step)
                scores, state = lm.net({"word_ids": inputs[rows, columns].to(lm.device)}, state=state)
                # Only the passes that hold counted tokens score them; the others carry the state along.
                counted = {"far": start + step > width - tail, "near": start < tail}
                for name, gold in (("far", far), ("near", near)):
                    if counted[name]:
                        nats[name] += float(lm.net.head.loss(scores, gold[rows, columns].to(lm.device), None))
    scored = count * tail
    return {"long_context_perplexity": perplexity(nats["far"] / scored),
            "near_start_perplexity": perplexity(nats["near"] / scored),
            "window": width, "windows": count, "tokens": scored}


def long_figures(model, family, rows) -> dict:
    if family.causal:
        return long_context_figures(model, rows)
    return longest_tenth_figures(model, rows)


# ---------------------------------------------------------------------------
# The table


@dataclass
class Column:
    title: str
    values: Callable[[RunFigures], float | None]
    digits: int = 2
    spread: bool = True     # False: the same for every seed by construction (the parameter count)


def _mean_spread(values: list[float], digits: int, spread: bool = True) -> str:
    """`mean ± sample standard deviation` over seeds; one seed (or no `spread`): the mean; no value: a dash."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    number = f"{{:,.{digits}f}}"
    if len(values) == 1 or not spread:
        return number.format(values[0])
    return f"{number.format(statistics.mean(values))} ± {number.format(statistics.stdev(values))}"


@dataclass
class Comparison:
    recipe: Recipe                  # the recipe every run started from (its cell, head and seed vary)
    budget_minutes: float
    clock: str                      # what the budget counts: "wall" (elapsed) or "cpu" (this process's CPU time)
    seeds: list[int]
    configurations: list[tuple[str, str]]
    runs: list[RunFigures]
    long_split: str                 # "test", or "dev" when there is no test data
    out_dir: Path
    notes: dict = field(default_factory=dict)   # machine, threads, date, command

    @property
    def family(self):
        return family_of(self.recipe.task)

    def runs_of(self, cell: str, head: str) -> list[RunFigures]:
        return [run for run in self.runs if (run.cell, run.head) == (cell, head)]

    def score_keys(self) -> list[tuple[str, str]]:
        """(metrics key, shown name) of the figures compared: span F1 or accuracy; perplexity and bits/char."""
        if self.family.causal:
            keys = [("perplexity", "perplexity")]
            if any("bits_per_char" in run.dev for run in self.runs):
                keys.append(("bits_per_char", "bits/char"))
            return keys
        if any("f1" in run.dev for run in self.runs):
            return [("f1", "F1")]
        return [("accuracy", "accuracy")]

    def columns(self) -> list[Column]:
        columns = [Column("parameters", lambda r: r.parameters, 0, spread=False),
                   Column("train tokens/s", lambda r: r.tokens_per_second, 0),
                   Column("train tokens/CPU-s", lambda r: r.tokens_per_cpu_second, 0),
                   Column(("CPU " if self.clock == "cpu" else "") + "time to best dev (s)",
                          lambda r: r.seconds_to_best, 1),
                   Column("epochs", lambda r: r.epochs, 0)]
        for split in ("dev", "test"):
            for key, name in self.score_keys():
                columns.append(Column(f"{split} {name}", lambda r, s=split, k=key: (getattr(r, s) or {}).get(k),
                                      4 if key == "bits_per_char" else 2))
        if self.family.causal:
            columns += [Column(f"{self.long_split} long-context perplexity", lambda r: r.long["long_context_perplexity"]),
                        Column(f"{self.long_split} near-start perplexity", lambda r: r.long["near_start_perplexity"])]
        else:
            key, name = self.score_keys()[0]
            columns.append(Column(f"{self.long_split} longest 10% {name}", lambda r, k=key: r.long.get(k)))
        # A column no run has a value for (no test data) is left out.
        return [c for c in columns if any(c.values(run) is not None for run in self.runs)]

    def table(self) -> str:
        """The comparison as a Markdown table: one row per cell and head, mean ± spread over the seeds."""
        columns = self.columns()
        lines = ["| cell | head | " + " | ".join(c.title for c in columns) + " |",
                 "| --- | --- |" + " ---: |" * len(columns)]
        for cell, head in self.configurations:
            runs = self.runs_of(cell, head)
            values = [_mean_spread([c.values(run) for run in runs], c.digits, c.spread) for c in columns]
            lines.append(f"| {cell} | {head} | " + " | ".join(values) + " |")
        return "\n".join(lines)

    def long_definition(self) -> str:
        if self.family.causal:
            run = self.runs[0].long if self.runs else {"window": LM_WINDOW, "windows": 0, "tokens": 0}
            tail = run["tokens"] // max(1, run["windows"])
            return (f"Long-context perplexity: the {self.long_split} token stream is cut into {run['windows']} "
                    f"stretches of {run['window']:,} tokens, each read from a fresh state (no carried context); it "
                    f"is the perplexity of the tokens in the last tenth of each stretch (at least "
                    f"{run['window'] - tail:,} tokens of context before them), near-start perplexity that of the "
                    f"tokens in the first tenth (at most {tail:,} before them); {run['tokens']:,} tokens each. The "
                    f"gap between the two is what the model gains from long context.")
        unit = "texts" if self.recipe.task == "classification" else "sentences"
        shortest = [run.long.get("min_length") for run in self.runs if run.long.get("min_length") is not None]
        count = self.runs[0].long.get("texts", self.runs[0].long.get("sentences")) if self.runs else 0
        return (f"Longest 10%: the tenth of the {self.long_split} {unit} with the most tokens ({count} {unit}, "
                f"{min(shortest) if shortest else '?'} tokens or more), scored by the saved model's `evaluate`.")

    def markdown(self) -> str:
        recipe, train_config = self.recipe, self.recipe.train
        data = {split: getattr(recipe.data, split) for split in ("train", "dev", "test") if getattr(recipe.data, split)}
        model = recipe.model
        stopping = (f"`train.max_epochs={train_config.max_epochs}` and " +
                    (f"early stopping off (`train.patience=0`)" if not train_config.patience else
                     f"early stopping after `train.patience={train_config.patience}` dev checks without a better "
                     f"score") + ": the budget ends each run unless these end it first")
        lines = [f"# seqtag compare: {recipe.name} ({recipe.task})", "", self.table(), "",
                 f"One row per cell and head, {len(self.seeds)} seed(s) each ({', '.join(map(str, self.seeds))}): "
                 "figures are the mean ± sample standard deviation over the seeds (one seed: its value). "
                 "Train tokens/s and tokens/CPU-s: tokens trained ÷ the training's wall time and ÷ its CPU time, "
                 "with the dev checks taken out. Time to best dev: the budget's clock (dev checks included) when "
                 "the best dev check was saved. Epochs: epochs begun, the last one possibly cut short by the budget. "
                 f"{self.long_definition()}", "",
                 "## Settings", "",
                 f"- budget: {self.budget_minutes:g} minutes of training per run, " + (
                     "of the training process's CPU time (`--budget-clock cpu`: the same compute for every run on a "
                     "machine other work shares; no wall-clock limit)" if self.clock == "cpu" else
                     "wall clock (`train.max_time_minutes`)"),
                 f"- the same for every run: {stopping}; the same data, "
                 f"vocabularies and labels (from the training file), the same seeds, and the recipe's other settings; "
                 f"the model keeps the weights of its best dev check. Parameter counts differ by cell and are shown.",
                 f"- model: word_dim {model.word_dim}, hidden_size {model.hidden_size}, num_layers {model.num_layers}, "
                 f"embedders {', '.join(model.embedders)}, dropout {model.dropout:g}",
                 f"- training: {train_config.optimizer}, lr {train_config.lr:g}, lr_schedule {train_config.lr_schedule}, "
                 f"batch_size {recipe.data.batch_size}" + (f", bptt {recipe.data.bptt}" if self.family.causal else ""),
                 *(f"- {split}: {source}" for split, source in data.items()),
                 f"- run folders: {self.out_dir}/CELL-HEAD-seedN", "",
                 "## Machine", "",
                 *(f"- {name}: {value}" for name, value in self.notes.items()),
                 f"- load average (1 min) as each run ended: {self._loads()}", ""]
        return "\n".join(lines)

    def _loads(self) -> str:
        """The runs' end-of-run loads: timed figures from a busy machine are slower than it can do."""
        loads = [f"{run.cell}-{run.head}-seed{run.seed} {run.load:.2f}" for run in self.runs if run.load is not None]
        return ", ".join(loads) or "unknown"

    def plot(self, path: Path) -> None:
        """compare.png: the compared figures per configuration (bars with the seeds' spread) and the speeds."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: no display needed, no pyplot state
        from matplotlib.figure import Figure

        names = [f"{cell}\n{head}" for cell, head in self.configurations]
        key, name = self.score_keys()[0]
        series = [(f"dev {name}", lambda r: r.dev.get(key)), (f"test {name}", lambda r: (r.test or {}).get(key))]
        if self.family.causal:
            series.append((f"{self.long_split} long-context {name}", lambda r: r.long["long_context_perplexity"]))
        else:
            series.append((f"{self.long_split} longest 10% {name}", lambda r: r.long.get(key)))
        series = [(label, get) for label, get in series if any(get(run) is not None for run in self.runs)]
        figure = Figure(figsize=(max(6.0, 1.6 * len(names) + 3), 7.5), layout="constrained")
        FigureCanvasAgg(figure)
        scores, speeds = figure.subplots(2, 1)
        width = 0.8 / len(series)
        for number, (label, get) in enumerate(series):
            means, spreads = [], []
            for cell, head in self.configurations:
                values = [v for v in (get(run) for run in self.runs_of(cell, head)) if v is not None]
                means.append(statistics.mean(values) if values else math.nan)
                spreads.append(statistics.stdev(values) if len(values) > 1 else 0.0)
            places = [i + (number - (len(series) - 1) / 2) * width for i in range(len(names))]
            scores.bar(places, means, width, yerr=spreads, capsize=3, label=label)
        scores.set_xticks(range(len(names)), names)
        scores.set_ylabel(name + (" (lower is better)" if self.family.causal else ""))
        scores.set_title(f"{self.recipe.name}: {self.budget_minutes:g} {self.clock} min per run, "
                         f"{len(self.seeds)} seed(s), bars: mean, lines: sample std")
        scores.legend(fontsize="small")
        speed = [statistics.mean(v) if (v := [r.tokens_per_cpu_second for r in self.runs_of(c, h)
                                               if r.tokens_per_cpu_second is not None]) else math.nan
                 for c, h in self.configurations]
        speeds.bar(range(len(names)), speed, color="tab:gray")
        speeds.set_xticks(range(len(names)), names)
        speeds.set_ylabel("training tokens per CPU second")
        figure.savefig(path, dpi=110)


# ---------------------------------------------------------------------------
# Running a comparison


def compare_recipe(name_or_path: str, overrides: Sequence[str] = (), **paths: str | None) -> Recipe:
    """The recipe a comparison trains: `load_recipe` with `FAIR_SETTINGS` first, so the user's --set wins."""
    return load_recipe(name_or_path, [*FAIR_SETTINGS, *overrides], **paths)


def configurations(recipe: Recipe, cells: Sequence[str] | None, heads: Sequence[str] | None
                   ) -> list[tuple[str, str]]:
    """Every (cell, head) pair to train, checked before anything trains: cells from the network's registry,
    heads from those the recipe's task can use. No cells: every registered one; no heads: the recipe's."""
    family = family_of(recipe.task)
    cells = list(dict.fromkeys(cells)) if cells else list(CELLS)
    for cell in cells:
        if cell not in CELLS:
            raise SeqtagError(f"--cells: {cell!r} is not a recurrent cell; expected some of {', '.join(CELLS)} "
                              f"(comma-separated, e.g. --cells {','.join(list(CELLS)[:2])}).")
    heads = list(dict.fromkeys(heads)) if heads else [family.resolve(recipe).model.head]
    for head in heads:
        if head not in family.heads:
            raise SeqtagError(f"--heads: {head!r} is not a head a {recipe.task!r} recipe ({recipe.name}) can use; "
                              f"expected some of {', '.join(family.heads)}.")
    pairs = [(cell, head) for cell in cells for head in heads]
    for cell, head in pairs:  # the recipe's own checks too (a cell or head the config does not know yet)
        family.resolve(replace(recipe, model=replace(recipe.model, cell=cell, head=head)))
    return pairs


def machine_notes() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor() or platform.machine())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(sys.argv),
            "cpu": f"{model}, {os.cpu_count()} logical cores",
            "threads": f"torch {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
            "load average at the start (1, 5, 15 min)": load,
            "versions": f"seqtag {__version__}, torch {torch.__version__}, pytorch-lightning {pl.__version__}, "
                        f"Python {platform.python_version()}"}


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _settings(recipe: Recipe, budget_minutes: float, clock: str) -> dict:
    """What makes finished runs part of the same comparison (a resumed one must match): the recipe but for
    the cell, head and seed, and the budget."""
    settings = recipe.to_dict()
    for section, key in (("model", "cell"), ("model", "head"), ("train", "seed")):
        settings[section].pop(key)
    return {"recipe": settings, "budget_minutes": budget_minutes, "budget_clock": clock}


def _first_difference(old, new, where: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if old == new else f"{where.removeprefix('recipe.')} was {old!r}, now {new!r}"


def _claim_compare_folder(out: Path, overwrite: bool, resume: bool, settings: dict) -> tuple[RunLock, dict]:
    """Lock `out` for this comparison and return the runs a resumed one keeps. A folder holding an earlier
    comparison is refused without --overwrite or --resume; a run folder of `seqtag train` is refused."""
    if overwrite and resume:
        raise SeqtagError("--resume continues the comparison in --out and --overwrite replaces it; give one of them.")
    if out.exists() and not out.is_dir():
        raise SeqtagError(f"--out {out} is a file; give a folder (it is created if missing).")
    if out.is_dir() and (run_files(out) or (out / "config.json").is_file()):
        raise SeqtagError(f"--out {out} holds a training run or a model, not a comparison; give another --out "
                          f"(a comparison writes one run folder per configuration inside it).")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out, "compare", remove_empty_folder=created)
    lock.acquire()
    try:
        record = out / "compare.json"
        earlier = [name for name in COMPARE_FILES if (out / name).is_file()]
        earlier += sorted(f"{p.name}/" for p in out.iterdir() if p.is_dir() and run_files(p))
        if resume:
            if not record.is_file():
                raise SeqtagError(f"--resume: {out} holds no compare.json, so no comparison to continue. Start "
                                  f"without --resume.")
            saved = json.loads(record.read_text(encoding="utf-8"))
            difference = _first_difference(saved.get("settings"), settings)
            if difference:
                raise SeqtagError(f"--resume: the comparison in {out} was started with other settings ({difference}). "
                                  f"Give the same recipe, files, --set and --budget-minutes, or --overwrite to start "
                                  f"again.")
            return lock, saved.get("runs", {})
        if earlier and not overwrite:
            raise SeqtagError(f"{out} already holds a comparison ({', '.join(earlier[:4])}"
                              f"{', ...' if len(earlier) > 4 else ''}). Add --overwrite to run a new one in its place "
                              f"(only the files seqtag wrote are replaced), --resume to continue it, or give another "
                              f"--out.")
        for name in COMPARE_FILES:
            (out / name).unlink(missing_ok=True)
        return lock, {}
    except BaseException:
        lock.release()
        raise


def _write_json(path: Path, content: dict) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(content, indent=1), encoding="utf-8")
    os.replace(partial, path)


def _measure(run_dir: Path, recipe: Recipe, family, prepared, rows, speed: TrainingSpeed | None,
             clock: str) -> RunFigures:
    """The figures of the model a run saved: its own dev/test figures, its size, its speed (`speed`, None for a
    model trained before), the time to its best dev check and the long-end figures on `rows`."""
    model = load(run_dir / "model")
    if family.causal and model.tokenizer.get_vocab() != prepared.tokenizer.get_vocab():
        # The long-context figure reads the comparison's own token stream: it must be the model's tokenization.
        raise SeqtagError(f"{run_dir / 'model'}: the model's tokenizer differs from the one trained again on the same "
                          "text, so its long-context figure cannot be computed on the comparison's token stream.")
    metrics = model.metrics
    return RunFigures(
        cell=recipe.model.cell, head=recipe.model.head, seed=recipe.train.seed, run_dir=str(run_dir),
        parameters=sum(p.numel() for p in model.net.parameters()),
        tokens_per_second=speed.tokens_per_second("wall") if speed is not None else None,
        tokens_per_cpu_second=speed.tokens_per_second("cpu") if speed is not None else None,
        seconds_to_best=seconds_to_best(run_dir, clock), epochs=metrics.get("epochs", 0), dev=metrics["dev"],
        test=metrics.get("test"), long=long_figures(model, family, rows), load=_load_average())


def compare(recipe: Recipe, cells: Sequence[str] | None = None, heads: Sequence[str] | None = None,
            budget_minutes: float = 5.0, seeds: int = 1, out_dir: str | Path = "runs/compare",
            overwrite: bool = False, resume: bool = False, clock: str = "wall") -> Comparison:
    """Train `recipe` once per cell × head × seed, each for `budget_minutes` of training in its own run folder
    under `out_dir`, then write compare.md, compare.png and compare.json there and return the comparison.

    Every name is checked before anything trains. Seeds are the recipe's train.seed and the next `seeds - 1`.
    A folder holding an earlier comparison is refused unless `overwrite` (train every run again) or `resume`
    (keep the runs that finished, continue an interrupted one from its checkpoint, train the rest). Ctrl+C stops
    after the run under way has saved its best weights (KeyboardInterrupt); `resume` continues from there.
    """
    if not (isinstance(budget_minutes, (int, float)) and math.isfinite(budget_minutes) and budget_minutes > 0):
        raise SeqtagError(f"--budget-minutes is {budget_minutes!r}; give the minutes of training each run gets, "
                          "more than 0 (e.g. --budget-minutes 5).")
    if clock not in ("wall", "cpu"):
        raise SeqtagError(f"--budget-clock is {clock!r}; give wall (elapsed minutes, train.max_time_minutes) or cpu "
                          "(minutes of the training process's CPU time, fair on a machine other work shares).")
    if not isinstance(seeds, int) or seeds < 1:
        raise SeqtagError(f"--seeds is {seeds!r}; give how many seeds to train each configuration with, 1 or more.")
    family = family_of(recipe.task)
    recipe = family.resolve(recipe)
    pairs = configurations(recipe, cells, heads)
    seed_list = [recipe.train.seed + i for i in range(seeds)]
    # A CPU budget is counted by `CpuBudget`; the wall clock then sets no limit.
    base = replace(recipe, train=replace(recipe.train, max_time_minutes=budget_minutes if clock == "wall" else None))
    out_dir = Path(out_dir)
    settings = _settings(base, budget_minutes, clock)
    lock, finished = _claim_compare_folder(out_dir, overwrite, resume, settings)
    try:
        # The data once, before any training: a missing file stops here, and the long-end figures of every run
        # read the same rows.
        prepared = family.prepare(base)
        splits = family.evaluation_splits(prepared)
        long_split = "test" if "test" in splits else "dev"
        record = {"seqtag_version": __version__, "settings": settings, "runs": finished}
        notes = machine_notes()
        _write_json(out_dir / "compare.json", record)
        runs: list[RunFigures] = []
        plan = [(cell, head, seed) for cell, head in pairs for seed in seed_list]
        for number, (cell, head, seed) in enumerate(plan, 1):
            name = f"{cell}-{head}-seed{seed}"
            run_dir = out_dir / name
            run_recipe = replace(base, model=replace(base.model, cell=cell, head=head),
                                 train=replace(base.train, seed=seed))
            if resume and trained_model(run_dir) and not _interrupted(run_dir):
                log.info("compare %d/%d: %s was trained before; kept (--resume)", number, len(plan), name)
                if name in finished:
                    runs.append(RunFigures(**finished[name]))
                    continue
                figures = _measure(run_dir, run_recipe, family, prepared, splits[long_split], None, clock)
            else:
                log.info("compare %d/%d: %s for %g %s min into %s", number, len(plan), name, budget_minutes, clock,
                         run_dir)
                start = MeasuredStart(family, CpuBudget(budget_minutes) if clock == "cpu" else None)
                continues = resume and (run_dir / "checkpoints" / "last.ckpt").is_file()
                result = train(run_recipe, run_dir, resume=continues, overwrite=not continues, start=start)
                if result.interrupted:  # Ctrl+C: the run saved its best weights; --resume goes on from there
                    raise KeyboardInterrupt
                figures = _measure(run_dir, run_recipe, family, prepared, splits[long_split], start.speed, clock)
            runs.append(figures)
            record["runs"][name] = dataclasses.asdict(figures)
            _write_json(out_dir / "compare.json", record)
        comparison = Comparison(base, budget_minutes, clock, seed_list, pairs, runs, long_split, out_dir, notes)
        (out_dir / "compare.md").write_text(comparison.markdown(), encoding="utf-8")
        comparison.plot(out_dir / "compare.png")
        return comparison
    finally:
        lock.release()


def _interrupted(run_dir: Path) -> bool:
    """Whether the model in `run_dir` was saved after Ctrl+C (its run has more to train)."""
    try:
        return json.loads((run_dir / "model" / "metrics.json").read_text(encoding="utf-8")).get("interrupted") is True
    except (OSError, ValueError, AttributeError):
        return False
