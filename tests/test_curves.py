"""Learning curves: curves.png after every run, `seqtag report` to redraw it, and compare.png's panels."""
from __future__ import annotations

import csv
import logging
import math

import matplotlib.image
import pytest
from matplotlib.container import BarContainer
from typer.testing import CliRunner

import seqtag
import seqtag.training
from cli import app
from seqtag.compare_report import Comparison, RunFigures, score_limits
from seqtag.config import load_recipe
from seqtag.curves import DEV_FIGURES, best_point, curves_figure, dev_check_epochs, draw_curves
from seqtag.errors import SeqtagError
from seqtag.objectives import OBJECTIVES

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = {"train.max_epochs": 3, "model.hidden_size": 16, "model.word_dim": 16, "train.progress_bar": False}


def _write_metrics(run_dir, rows: list[dict]) -> None:
    """A logs/metrics.csv as RunLog writes it: sorted columns, empty cells for figures a row did not log."""
    keys = sorted({key for row in rows for key in row})
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    with (run_dir / "logs" / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _assert_png(path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(path).shape
    assert (width, height) == (770, 880)  # curves_figure's 7 x 8 inches at 110 dpi


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("curves") / "demo"
    seqtag.train("demo", out=out, **SMALL)
    return out


def test_a_training_run_draws_its_curves_and_logs_the_learning_rate(demo_run):
    _assert_png(demo_run / "curves.png")
    assert not list(demo_run.glob(".*.partial"))
    with (demo_run / "logs" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    dev_checks = [row for row in rows if row["dev_score"]]
    assert len(dev_checks) == 3  # one per epoch
    assert [float(row["lr"]) for row in dev_checks] == pytest.approx([0.005] * 3)  # the recipe's rate (float32)
    assert all(not row["lr"] for row in rows if not row["dev_score"])  # logged with the dev checks only


def test_seqtag_report_redraws_the_curves(demo_run):
    (demo_run / "curves.png").unlink()
    result = runner.invoke(app, ["report", str(demo_run)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"curves: {demo_run / 'curves.png'}"
    _assert_png(demo_run / "curves.png")


def test_an_interrupted_run_with_a_few_rows_still_draws(tmp_path):
    run = tmp_path / "cut"
    _write_metrics(run, [{"epoch": 0, "step": 9, "train_loss": 1.7},
                         {"epoch": 0, "step": 12, "dev_loss": 1.5, "dev_score": 12.5, "lr": 0.005},
                         {"epoch": 1, "step": 19, "train_loss": 1.4}])
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    _assert_png(run / "curves.png")

    # Killed before the first dev check: only train-loss rows, or none at all.
    for rows in ([{"epoch": 0, "step": 9, "train_loss": 1.7}], []):
        _write_metrics(run, rows)
        draw_curves(run)
        _assert_png(run / "curves.png")


def test_a_folder_without_metrics_csv_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'nowhere'}: no logs/metrics.csv in this folder" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "nowhere").exists()

    _write_metrics(tmp_path / "run", [{"epoch": 0, "step": 1, "train_loss": 1.0}])
    (tmp_path / "run" / "model").mkdir()
    with pytest.raises(SeqtagError, match=r"looks like a model directory: give its run folder, .*run\."):
        draw_curves(tmp_path / "run" / "model")


@pytest.mark.parametrize("mode, best", [("max", (20.0, 70.0)), ("min", (10.0, 12.0))])
def test_best_point_is_the_highest_or_lowest_and_the_first_of_equal_ones(mode, best):
    points = [(10.0, 12.0), (20.0, 70.0), (30.0, 65.0), (40.0, 70.0), (50.0, 12.0)]
    assert best_point(points, mode) == best
    assert best_point([], mode) is None


@pytest.mark.parametrize("column, values, best", [("dev_score", [50.0, 70.0, 65.0], (25.0, 70.0)),
                                                  ("dev_perplexity", [300.0, 12.0, 15.0], (25.0, 12.0))])
def test_the_plot_marks_the_best_dev_check(column, values, best):
    rows = [{"epoch": epoch, "step": 12.0 + 13 * epoch, column: value, "lr": 0.01 / (epoch + 1)}
            for epoch, value in enumerate(values)]
    rows.insert(0, {"epoch": 0, "step": 9, "train_loss": 2.0})
    _, dev, rates = curves_figure(rows, "t").axes
    star = next(line for line in dev.lines if line.get_marker() == "*")
    assert (star.get_xdata()[0], star.get_ydata()[0]) == best
    assert f"best {best[1]:.2f} (step 25, epoch 2)" == star.get_label()
    assert dev.get_yscale() == ("log" if column == "dev_perplexity" else "linear")  # 300 → 12 spans decades
    assert list(rates.lines[0].get_ydata()) == [0.01, 0.005, 0.01 / 3]


def test_the_dev_figures_drawn_are_those_the_objectives_watch():
    assert {(objective.monitor, objective.mode) for objective in OBJECTIVES.values()} == \
           {(name, figure.mode) for name, figure in DEV_FIGURES.items()}


def test_dev_checks_within_epochs_are_spread_over_them():
    once = [{"epoch": e, "step": s, "dev_score": v} for e, s, v in [(0, 9, 1.0), (1, 19, 2.0), (2, 29, 3.0)]]
    assert dev_check_epochs(once, "dev_score") == [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
    # Two checks per epoch; the last epoch was cut after its first check.
    twice = [{"epoch": e, "step": s, "dev_score": 1.0} for e, s in [(0, 5), (0, 10), (1, 15), (1, 20), (2, 25)]]
    assert [x for x, _ in dev_check_epochs(twice, "dev_score")] == [0.5, 1.0, 1.5, 2.0, 2.5]


def _comparison(tmp_path, seeds: list[int], scores: dict[str, list[float]]) -> Comparison:
    """A Comparison of made-up runs whose dev figures are `scores` per cell (one per seed), each with a short
    metrics.csv whose dev curve climbs to that figure."""
    runs = []
    for cell, values in scores.items():
        for seed, value in zip(seeds, values):
            run_dir = tmp_path / f"{cell}-softmax-seed{seed}"
            _write_metrics(run_dir, [{"epoch": e, "step": 10 * (e + 1), "dev_score": value - 10 + 5 * e}
                                     for e in range(3)])
            runs.append(RunFigures(cell=cell, head="softmax", seed=seed, run_dir=str(run_dir), parameters=1000,
                                   tokens_per_second=900.0, seconds_to_best=5.0, epochs=3,
                                   dev={"f1": value}, test={"f1": value - 2}, long={"f1": value - 4},
                                   tokens_per_cpu_second=1000.0))
    recipe = load_recipe("demo")
    return Comparison(recipe, 1.0, "wall", seeds, [(cell, "softmax") for cell in scores], runs, "test", tmp_path)


def test_compare_with_one_seed_draws_no_spread_and_a_score_axis_near_the_data(tmp_path):
    comparison = _comparison(tmp_path, [1], {"lstm": [90.0], "gru": [86.0]})
    scores, curves, speeds = comparison.figure().axes
    bars = [c for c in scores.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3 and all(bar.errorbar is None for bar in bars)
    # The bars run from 82 (gru's longest tenth) to 90 (lstm's dev F1): a quarter of that range either side.
    assert scores.get_ylim() == pytest.approx((80.0, 92.0))

    assert [line.get_label() for line in curves.lines] == ["lstm softmax", "gru softmax"]
    assert list(curves.lines[0].get_xdata()) == [1.0, 2.0, 3.0]
    assert list(curves.lines[0].get_ydata()) == [80.0, 85.0, 90.0]
    assert [bar.get_height() for bar in speeds.patches] == [1000.0, 1000.0]

    # The legends sit beside their axes, never over the bars or the curves.
    figure = comparison.figure()
    figure.canvas.draw()
    for axes in figure.axes[:2]:
        assert axes.get_legend().get_window_extent().x0 >= axes.get_window_extent().x1

    comparison.plot(tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes()[:8] == PNG_SIGNATURE


def test_compare_with_several_seeds_draws_their_spread_and_mean_curve(tmp_path):
    comparison = _comparison(tmp_path, [1, 2], {"lstm": [90.0, 88.0], "gru": [86.0, 84.0]})
    scores, curves, _ = comparison.figure().axes
    bars = [c for c in scores.containers if isinstance(c, BarContainer)]
    assert all(bar.errorbar is not None for bar in bars)
    mean = next(line for line in curves.lines if line.get_label() == "lstm softmax (mean of 2 seeds)")
    assert list(mean.get_ydata()) == [79.0, 84.0, 89.0]
    assert sum(line.get_linewidth() < mean.get_linewidth() for line in curves.lines) == 4  # the seeds, thinner


def test_score_limits_widen_the_range_and_stay_at_or_above_zero():
    assert score_limits([80.0, 90.0]) == (77.5, 92.5)
    assert score_limits([1.0, 9.0]) == (0.0, 11.0)
    assert score_limits([50.0, 50.0]) == (45.0, 55.0)
    assert score_limits([math.nan]) is None


def test_a_picture_that_cannot_be_drawn_is_a_warning_and_the_model_is_kept(tmp_path, monkeypatch, caplog):
    def broken(run_dir):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(seqtag.training, "draw_curves", broken)
    with caplog.at_level(logging.WARNING, logger="seqtag"):
        result = seqtag.train("demo", out=tmp_path / "run", **{**SMALL, "train.max_epochs": 1})
    assert (result.model_dir / "model.safetensors").is_file()
    assert not (tmp_path / "run" / "curves.png").exists()
    assert "curves.png was not drawn (RuntimeError: no fonts)" in caplog.text
    assert f"seqtag report {tmp_path / 'run'}" in caplog.text


def test_overwrite_removes_an_earlier_runs_curves(tmp_path):
    from seqtag.runs import claim_run_folder

    run = tmp_path / "run"
    _write_metrics(run, [{"epoch": 0, "step": 1, "train_loss": 1.0}])
    draw_curves(run)
    claim_run_folder(run, overwrite=True).release()
    assert not (run / "curves.png").exists(), "a new run's folder never shows the old run's curves"
