"""A run's learning curves: RUN_DIR/curves.png, drawn from RUN_DIR/logs/metrics.csv (what `RunLog` writes).

Three panels over the training steps: the train loss (and dev loss), the dev figure with its best check marked,
and the learning rate at each dev check. `training.train` draws it when a run ends, `seqtag report RUN_DIR`
draws it again, for an interrupted run too, and `compare_report` reads the same rows for its dev curves.

A training-layer module that imports neither Lightning nor torch (standard library and matplotlib only), so
`seqtag report` starts quickly; matplotlib is imported when a figure is drawn.
"""
from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .durable import replace_durably
from .errors import SeqtagError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS_CSV = Path("logs") / "metrics.csv"
CURVES_PNG = "curves.png"


@dataclass(frozen=True)
class DevFigure:
    label: str
    mode: str   # "max": higher is better, "min": lower is better


# The dev figure each family logs (objectives.py's `monitor` and `mode`), in the order they are looked for.
DEV_FIGURES = {"dev_score": DevFigure("dev score", "max"), "dev_perplexity": DevFigure("dev perplexity", "min")}

Point = tuple[float, float]


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a metrics.csv as numbers; a cell left empty (a figure not logged in that row) is left out."""
    with Path(path).open(newline="", encoding="utf-8") as lines:
        rows = []
        for row in csv.DictReader(lines):
            numbers = {}
            for key, value in row.items():
                try:
                    numbers[key] = float(value)
                except (TypeError, ValueError):
                    continue  # empty cell
            rows.append(numbers)
    return rows


def run_metrics(run_dir: Path) -> list[dict[str, float]]:
    """The rows of `run_dir`'s logs/metrics.csv; a clear error when the run has none."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_CSV
    if not path.is_file():
        hint = ""
        if (run_dir.parent / METRICS_CSV).is_file():
            hint = f" It looks like a model directory: give its run folder, {run_dir.parent}."
        raise SeqtagError(f"{run_dir}: no {METRICS_CSV} in this folder, so there are no learning curves to draw. "
                          f"Give the folder a run was trained into (the --out of seqtag train or finetune).{hint}")
    return read_metrics(path)


def series(rows: list[dict[str, float]], column: str) -> list[Point]:
    """(training step, value) of every row that logged `column`, its non-finite values left out."""
    return [(row.get("step", index), row[column]) for index, row in enumerate(rows)
            if column in row and math.isfinite(row[column])]


def dev_column(rows: list[dict[str, float]]) -> str | None:
    """The dev figure these rows logged (see DEV_FIGURES), or None before the first dev check."""
    return next((name for name in DEV_FIGURES if any(name in row for row in rows)), None)


def best_point(points: list[Point], mode: str) -> Point | None:
    """The point with the highest (`mode` "max") or lowest ("min") value; the first of equal ones, as the best
    checkpoint keeps the first check that reached its score."""
    if not points:
        return None
    pick = max if mode == "max" else min
    return pick(points, key=lambda point: point[1])


def dev_check_epochs(rows: list[dict[str, float]], column: str) -> list[Point]:
    """(epochs trained, value) at each dev check of `column`: a check at the end of epoch e is at e + 1; the k
    checks within one epoch (`train.val_check_interval` < 1) are spread evenly over it, k taken from the
    epochs before the last, which a time limit may have cut short."""
    checks = [row for row in rows if column in row and math.isfinite(row[column])]
    per_epoch = Counter(int(row.get("epoch", 0)) for row in checks)
    last = max(per_epoch, default=0)
    per_full_epoch = max((count for epoch, count in per_epoch.items() if epoch != last),
                         default=per_epoch[last] or 1)
    points, seen = [], Counter()
    for row in checks:
        epoch = int(row.get("epoch", 0))
        seen[epoch] += 1
        points.append((epoch + seen[epoch] / per_full_epoch, row[column]))
    return points


def spans_decades(values: list[float]) -> bool:
    """Whether positive values spread over more than a factor of 20 (early perplexities): a log axis then."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > 20


def _note(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", color="gray")


def curves_figure(rows: list[dict[str, float]], title: str) -> Figure:
    """The learning curves of one run's metrics.csv rows as a matplotlib Figure on an Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: no display needed, no pyplot state
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 8.0), layout="constrained")
    FigureCanvasAgg(figure)
    losses, dev, rates = figure.subplots(3, 1, sharex=True)
    figure.suptitle(title)

    for column, label, style in (("train_loss", "train loss", "-"), ("dev_loss", "dev loss", "o--")):
        points = series(rows, column)
        if points:
            losses.plot(*zip(*points), style, label=label, markersize=3)
    if losses.lines:
        losses.legend(fontsize="small")
    else:
        _note(losses, "no loss logged yet")
    losses.set_ylabel("loss")

    column = dev_column(rows)
    if column is None:
        _note(dev, "no dev check yet")
    else:
        figure_of = DEV_FIGURES[column]
        points = series(rows, column)
        dev.plot(*zip(*points), "o-", color="tab:green", markersize=3)
        best_x, best_y = best_point(points, figure_of.mode)
        epoch = next((row["epoch"] for row in rows if row.get("step") == best_x and "epoch" in row), None)
        where = f"step {best_x:g}" + ("" if epoch is None else f", epoch {int(epoch) + 1}")
        dev.plot([best_x], [best_y], marker="*", markersize=14, color="tab:red", linestyle="none",
                 label=f"best {best_y:.2f} ({where})")
        dev.legend(fontsize="small")
        if figure_of.mode == "min" and spans_decades([y for _, y in points]):
            dev.set_yscale("log")
        dev.set_ylabel(figure_of.label + (" (lower is better)" if figure_of.mode == "min" else ""))

    rate = series(rows, "lr")  # logged at each dev check: the rate of the steps that led up to it, hence steps-pre
    if rate:
        rates.plot(*zip(*rate), "o-", drawstyle="steps-pre", color="tab:purple", markersize=3)
        if spans_decades([y for _, y in rate]):
            rates.set_yscale("log")
    else:
        _note(rates, "learning rate not logged (logged at each dev check)")
    rates.set_ylabel("learning rate")
    rates.set_xlabel("training step")
    return figure


def save_figure(figure: Figure, path: Path, dpi: int = 110) -> Path:
    """Write `figure` as a PNG at `path` durably: a crash leaves the previous picture or the new one whole."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        figure.savefig(partial, dpi=dpi, format="png")
        replace_durably(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def draw_curves(run_dir: Path) -> Path:
    """Draw RUN_DIR/curves.png from RUN_DIR/logs/metrics.csv, for a finished or an interrupted run."""
    run_dir = Path(run_dir)
    rows = run_metrics(run_dir)
    epochs = max((int(row["epoch"]) + 1 for row in rows if "epoch" in row), default=0)
    state = "" if (run_dir / "model" / "config.json").is_file() else ", no model saved yet"
    title = f"{run_dir.resolve().name}: {epochs} epoch{'' if epochs == 1 else 's'} logged{state}"
    return save_figure(curves_figure(rows, title), run_dir / CURVES_PNG)
