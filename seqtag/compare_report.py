"""`seqtag compare`'s report: the comparison table (Markdown), compare.md and compare.png, drawn from the runs'
figures (`RunFigures`, what compare.json keeps of each run). Nothing here trains.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Recipe
from .curves import DEV_FIGURES, METRICS_CSV, dev_check_epochs, read_metrics, save_figure, spans_decades
from .families import FAMILIES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LONG_SHARE = 0.1   # the longest tenth of the test items; the last (and first) tenth of a language model's window
LM_WINDOW = 1000   # tokens a language model reads from a fresh state for its long-context figure


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
        return FAMILIES[self.recipe.task]

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
        """compare.png: `figure()` written durably."""
        save_figure(self.figure(), path)

    def figure(self) -> Figure:
        """Three panels: the compared figures per configuration (bars, with the seeds' spread when there are
        several seeds), every run's dev curve over the epochs (from its logs/metrics.csv), and the speeds."""
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
        several_seeds = any(len(self.runs_of(cell, head)) > 1 for cell, head in self.configurations)
        figure = Figure(figsize=(max(6.0, 1.6 * len(names) + 3) + 2.5, 11.0), layout="constrained")
        FigureCanvasAgg(figure)
        scores, curves, speeds = figure.subplots(3, 1, height_ratios=[1.2, 1.2, 0.8])
        width = 0.8 / len(series)
        extremes = []  # the bars' tops and their spread lines' ends, for the axis limits
        for number, (label, get) in enumerate(series):
            means, spreads = [], []
            for cell, head in self.configurations:
                values = [v for v in (get(run) for run in self.runs_of(cell, head)) if v is not None]
                means.append(statistics.mean(values) if values else math.nan)
                # One seed has no spread: NaN draws no line, where 0 would draw a cap that looks like one.
                spreads.append(statistics.stdev(values) if len(values) > 1 else math.nan)
                reach = spreads[-1] if len(values) > 1 else 0.0
                extremes += [means[-1] - reach, means[-1] + reach]
            places = [i + (number - (len(series) - 1) / 2) * width for i in range(len(names))]
            scores.bar(places, means, width, yerr=spreads if several_seeds else None, capsize=3, label=label)
        limits = score_limits(extremes)
        if limits is not None:
            scores.set_ylim(*limits)
        scores.set_xticks(range(len(names)), names)
        scores.set_ylabel(name + (" (lower is better)" if self.family.causal else ""))
        scores.set_title(f"{self.recipe.name}: {self.budget_minutes:g} {self.clock} min per run, "
                         f"{len(self.seeds)} seed(s), bars: mean" + (", lines: sample std" if several_seeds else ""))
        # Outside the axes, so that it never covers a bar; constrained layout makes room for it.
        scores.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        self._dev_curves(curves)
        speed = [statistics.mean(v) if (v := [r.tokens_per_cpu_second for r in self.runs_of(c, h)
                                               if r.tokens_per_cpu_second is not None]) else math.nan
                 for c, h in self.configurations]
        speeds.bar(range(len(names)), speed, color="tab:gray")
        speeds.set_xticks(range(len(names)), names)
        speeds.set_ylabel("training tokens per CPU second")
        return figure

    def _dev_curves(self, axes) -> None:
        """One colour per configuration: each seed's dev figure at every dev check (thin lines when there are
        several seeds, with their mean at the checks all of them reached drawn thick)."""
        column = "dev_perplexity" if self.family.causal else "dev_score"  # the objective's monitor
        drawn = []
        for colour, (cell, head) in enumerate(self.configurations):
            runs = [points for run in self.runs_of(cell, head)
                    if (Path(run.run_dir) / METRICS_CSV).is_file()
                    and (points := dev_check_epochs(read_metrics(Path(run.run_dir) / METRICS_CSV), column))]
            label, style = f"{cell} {head}", {"color": f"C{colour}"}
            several = len(runs) > 1
            for points in runs:
                axes.plot(*zip(*points), **style, linewidth=0.8 if several else 1.6, alpha=0.5 if several else 1.0,
                          label=None if several else label)
            if several:
                shared = min(len(points) for points in runs)
                axes.plot([x for x, _ in runs[0][:shared]],
                          [statistics.mean(points[i][1] for points in runs) for i in range(shared)],
                          **style, linewidth=2.2, label=f"{label} (mean of {len(runs)} seeds)")
            drawn += [y for points in runs for _, y in points]
        if not drawn:
            axes.text(0.5, 0.5, "no run's logs/metrics.csv found", transform=axes.transAxes, ha="center",
                      va="center", color="gray")
            return
        if self.family.causal and spans_decades(drawn):
            axes.set_yscale("log")
        axes.set_xlabel("epochs trained")
        axes.set_ylabel(DEV_FIGURES[column].label + (" (lower is better)" if self.family.causal else ""))
        axes.set_title("dev figure at each dev check")
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def score_limits(values: list[float], margin: float = 0.25) -> tuple[float, float] | None:
    """The score axis's limits: the values' range widened by `margin` of it on each side (a tenth of the value
    when they are all equal), never below 0 for figures that cannot be negative, so that the axis starts near
    the data rather than at 0 and differences of a point or two show. None: no value to draw."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    low, high = min(values), max(values)
    pad = margin * (high - low) or 0.1 * abs(high) or 1.0
    return (max(0.0, low - pad) if low >= 0 else low - pad), high + pad
