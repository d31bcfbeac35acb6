"""`seqtag compare`: one recipe trained with several recurrent cells (and heads) under the same time budget, and
a table of what each bought: its size, its training speed, the time to its best dev score, its dev and test
figures over seeds, and its figure on the long end of the data.

    OUT/compare.md              the table, the settings, the budget, the machine and the date
    OUT/compare.png             the figures and the speeds as bars
    OUT/compare.json            the settings, the plan and every finished run's figures (what --resume reads)
    OUT/CELL-HEAD-seedN/        one run folder per configuration and seed, as `seqtag train` writes it

Each run is a plain `training.train()` with callbacks that measure it (`TrainingSpeed`, `BestDevClock`,
`CpuBudget`); the comparison only sets what makes the runs comparable (see `FAIR_SETTINGS`) and prepares the
data once for all of them. The table and the picture are drawn by `compare_report.py`.

In a multi-process run (train.strategy=ddp) every process goes through the same plan: the first decides it and
writes it to compare.json before any training starts, the others read it; only the first writes and measures.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from .artifact import write_durably
from .compare_report import LM_WINDOW, LONG_SHARE, Comparison, RunFigures
from .config import Recipe, load_recipe
from .data.batching import IGNORE_INDEX
from .errors import SeqtagError
from .families import FAMILIES
from .loading import load
from .metrics import perplexity
from .networks import CELLS
from .objectives import objective_of
from .progress import count_tokens
from .runs import RunLock, run_files, this_process_writes, trained_model
from .starts import Scratch
from .training import train
from .version import __version__

log = logging.getLogger("seqtag")

COMPARE_FILES = ("compare.md", "compare.png", "compare.json")
# Put before the user's --set, which may change them: the time budget alone ends every run (no early stopping,
# no epoch limit a fast cell would reach first), so each configuration gets the same minutes.
FAIR_SETTINGS = ("train.patience=0", "train.max_epochs=100000", "train.progress_bar=false")
LM_BATCH = 16      # windows scored side by side


# ---------------------------------------------------------------------------
# What is measured while a run trains


class TrainingSpeed(Callback):
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


class CpuBudget(Callback):
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


class BestDevClock(Callback):
    """The budget's clock (dev checks included) at the best dev check: wall seconds of training, or the
    `CpuBudget`'s CPU seconds. Its state goes into the run's checkpoints, so a resumed run goes on counting."""

    def __init__(self, monitor: str, mode: str, cpu_budget: CpuBudget | None = None):
        self.monitor, self.mode, self.cpu_budget = monitor, mode, cpu_budget
        self.best: float | None = None
        self.seconds: float | None = None  # the clock at the best dev check
        self.offset = 0.0                  # wall seconds trained before a resume
        self._started: float | None = None

    def clock(self) -> float:
        if self.cpu_budget is not None:
            return self.cpu_budget.used()
        return self.offset + (time.perf_counter() - self._started if self._started is not None else 0.0)

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best, self.seconds = value, self.clock()

    def state_dict(self) -> dict:
        return {"best": self.best, "seconds": self.seconds, "wall_seconds": self.clock() if self.cpu_budget is None
                else self.offset}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best, self.seconds = state_dict.get("best"), state_dict.get("seconds")
        self.offset = float(state_dict.get("wall_seconds", 0.0))


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
# Running a comparison


def compare_recipe(name_or_path: str, overrides: Sequence[str] = (), **paths: str | None) -> Recipe:
    """The recipe a comparison trains: `load_recipe` with `FAIR_SETTINGS` first, so the user's --set wins."""
    return load_recipe(name_or_path, [*FAIR_SETTINGS, *overrides], **paths)


def configurations(recipe: Recipe, cells: Sequence[str] | None, heads: Sequence[str] | None
                   ) -> list[tuple[str, str]]:
    """Every (cell, head) pair to train, checked before anything trains: cells from the network's registry,
    heads from those the recipe's task can use. No cells: every registered one; no heads: the recipe's."""
    family = FAMILIES[recipe.task]
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
    write_durably(path, json.dumps(content, indent=1))


def _measure(run_dir: Path, recipe: Recipe, family, prepared, rows, speed: TrainingSpeed | None,
             seconds_to_best: float | None) -> RunFigures:
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
        seconds_to_best=seconds_to_best, epochs=metrics.get("epochs", 0), dev=metrics["dev"],
        test=metrics.get("test"), long=long_figures(model, family, rows), load=_load_average())


def _plan(out_dir: Path, names: list[str], resume: bool, finished: dict) -> list[dict]:
    """What to do with each run: "keep" (trained before, --resume), "resume" (continue from its checkpoint) or
    "train". Decided once, by the first process, before anything trains."""
    plan = []
    for name in names:
        run_dir = out_dir / name
        if resume and trained_model(run_dir) and not _interrupted(run_dir):
            action = "keep"
        elif resume and (run_dir / "checkpoints" / "last.ckpt").is_file():
            action = "resume"
        else:
            action = "train"
        plan.append({"run": name, "action": action})
    return plan


def _read_plan(out_dir: Path) -> list[dict]:
    """The plan the first process wrote (a relaunched process of a multi-process run follows it)."""
    try:
        return json.loads((out_dir / "compare.json").read_text(encoding="utf-8"))["plan"]
    except (OSError, ValueError, KeyError) as err:
        raise SeqtagError(f"{out_dir / 'compare.json'}: no plan from the first process ({err}).") from None


def compare(recipe: Recipe, cells: Sequence[str] | None = None, heads: Sequence[str] | None = None,
            budget_minutes: float = 5.0, seeds: int = 1, out_dir: str | Path = "runs/compare",
            overwrite: bool = False, resume: bool = False, clock: str = "wall") -> Comparison | None:
    """Train `recipe` once per cell × head × seed, each for `budget_minutes` of training in its own run folder
    under `out_dir`, then write compare.md, compare.png and compare.json there and return the comparison
    (None in the other processes of a multi-process run: the first one writes and reports).

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
    objective = objective_of(recipe.task)
    family = objective.family
    recipe = family.resolve(recipe)
    pairs = configurations(recipe, cells, heads)
    seed_list = [recipe.train.seed + i for i in range(seeds)]
    # A CPU budget is counted by `CpuBudget`; the wall clock then sets no limit.
    base = replace(recipe, train=replace(recipe.train, max_time_minutes=budget_minutes if clock == "wall" else None))
    out_dir = Path(out_dir)
    settings = _settings(base, budget_minutes, clock)
    writer = this_process_writes()
    names = [f"{cell}-{head}-seed{seed}" for cell, head in pairs for seed in seed_list]
    lock, finished = _claim_compare_folder(out_dir, overwrite, resume, settings) if writer else (None, {})
    try:
        # The data once, before any training: a missing file stops here, every run trains on these very rows, and
        # the long-end figures of every run read them.
        prepared = objective.prepare(base)
        splits = objective.evaluation_splits(prepared)
        long_split = "test" if "test" in splits else "dev"
        if writer:
            plan = _plan(out_dir, names, resume, finished)
            record = {"seqtag_version": __version__, "settings": settings, "plan": plan, "runs": finished}
            notes = machine_notes()
            _write_json(out_dir / "compare.json", record)
        else:
            plan = _read_plan(out_dir)
        runs: list[RunFigures] = []
        configs = [(cell, head, seed) for cell, head in pairs for seed in seed_list]
        for number, ((cell, head, seed), step) in enumerate(zip(configs, plan), 1):
            name, action = step["run"], step["action"]
            run_dir = out_dir / name
            run_recipe = replace(base, model=replace(base.model, cell=cell, head=head),
                                 train=replace(base.train, seed=seed))
            if not writer and action == "keep":
                continue
            if action == "keep":
                log.info("compare %d/%d: %s was trained before; kept (--resume)", number, len(plan), name)
                if name in finished:
                    runs.append(RunFigures(**finished[name]))
                    continue
                figures = _measure(run_dir, run_recipe, family, prepared, splits[long_split], None, None)
            else:
                if writer:  # the other processes of a multi-process run follow the same plan silently
                    log.info("compare %d/%d: %s for %g %s min into %s", number, len(plan), name, budget_minutes,
                             clock, run_dir)
                speed, budget = TrainingSpeed(), CpuBudget(budget_minutes) if clock == "cpu" else None
                best_clock = BestDevClock(objective.monitor, objective.mode, budget)
                measures = [speed, best_clock] + ([budget] if budget is not None else [])
                continues = action == "resume"
                result = train(run_recipe, run_dir, resume=continues, overwrite=not continues,
                               init=Scratch(prepared), callbacks=measures)
                if result.interrupted:  # Ctrl+C: the run saved its best weights; --resume goes on from there
                    raise KeyboardInterrupt
                if not writer:
                    continue
                figures = _measure(run_dir, run_recipe, family, prepared, splits[long_split], speed,
                                   best_clock.seconds)
            runs.append(figures)
            record["runs"][name] = dataclasses.asdict(figures)
            _write_json(out_dir / "compare.json", record)
        if not writer:
            return None
        comparison = Comparison(base, budget_minutes, clock, seed_list, pairs, runs, long_split, out_dir, notes)
        write_durably(out_dir / "compare.md", comparison.markdown())
        comparison.plot(out_dir / "compare.png")
        return comparison
    finally:
        if lock is not None:
            lock.release()


def _interrupted(run_dir: Path) -> bool:
    """Whether the model in `run_dir` was saved after Ctrl+C (its run has more to train)."""
    try:
        return json.loads((run_dir / "model" / "metrics.json").read_text(encoding="utf-8")).get("interrupted") is True
    except (OSError, ValueError, AttributeError):
        return False
