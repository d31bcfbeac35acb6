"""seqtag compare: cells (and heads) trained under one budget, the table, the plot, resume, and the long-end figures."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
from typer.testing import CliRunner

import seqtag
from cli import app
from seqtag.compare import compare_recipe, long_context_figures, longest_tenth
from seqtag.families import FAMILIES
from seqtag.objectives import OBJECTIVES
from seqtag.networks import CELLS

runner = CliRunner()
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?( ± [\d,]+(\.\d+)?)?$")
DEMO_TEST = "recipes/data/demo.test.conll"
# Small and short: two epochs of the demo corpus per run, well inside the budget.
DEMO_FAST = ["--set", "train.max_epochs=2", "--set", "model.hidden_size=16", "--set", "model.word_dim=16"]


def _rows(table: str) -> list[list[str]]:
    """The body rows of a Markdown table, as lists of cells."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def _header(table: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith("|"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _compare(out, *args):
    return runner.invoke(app, ["compare", *args, "--out", str(out)])


@pytest.fixture(scope="module")
def demo_compare(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "demo"
    result = _compare(out, "demo", "--cells", "rnn,gru", "--seeds", "1", "--budget-minutes", "1", *DEMO_FAST)
    assert result.exit_code == 0, result.output
    return out, result.stdout


def test_demo_compare_writes_the_table_the_plot_and_one_run_per_configuration(demo_compare):
    out, stdout = demo_compare
    markdown = (out / "compare.md").read_text()
    assert stdout.split("\n\n")[0].strip() in markdown  # the printed table is the one written
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "compare.png").stat().st_size > 10_000  # a drawn figure, not an empty canvas
    header = _header(markdown)
    assert header == ["cell", "head", "parameters", "train tokens/s", "train tokens/CPU-s", "time to best dev (s)",
                      "epochs", "dev F1", "test F1", "test longest 10% F1"]
    rows = _rows(markdown)
    assert [row[:2] for row in rows] == [["rnn", "softmax"], ["gru", "softmax"]]
    for row in rows:
        assert all(NUMBER.match(value) for value in row[2:]), row
    assert "budget: 1 minutes" in markdown and "OMP_NUM_THREADS" in markdown and "UTC" in markdown
    assert re.search(r"as each run ended: rnn-softmax-seed1 [\d.]+, gru-softmax-seed1 [\d.]+", markdown)

    record = json.loads((out / "compare.json").read_text())
    assert set(record["runs"]) == {"rnn-softmax-seed1", "gru-softmax-seed1"}
    for row in rows:
        run = record["runs"][f"{row[0]}-softmax-seed1"]
        model = seqtag.load(out / f"{row[0]}-softmax-seed1" / "model")
        # Each figure is the saved model's own: its size, its dev/test figures, two epochs trained.
        assert int(row[2].replace(",", "")) == sum(p.numel() for p in model.net.parameters()) == run["parameters"]
        assert model.net.encoder.rnn.__class__ is CELLS[row[0]]
        assert row[6] == "2"
        assert row[7] == f"{model.metrics['dev']['f1']:.2f}" and row[8] == f"{model.metrics['test']['f1']:.2f}"
        assert run["tokens_per_second"] > 0 and 0 < run["seconds_to_best"] < 60
        # CPU time is never more than wall time for one thread; tokens per CPU second at least per wall second.
        assert run["tokens_per_cpu_second"] >= run["tokens_per_second"] * 0.95
    # A GRU has three gate blocks to the plain RNN's one.
    assert int(rows[1][2].replace(",", "")) > int(rows[0][2].replace(",", ""))


def test_the_longest_tenth_is_scored_by_the_saved_model(demo_compare):
    out, _ = demo_compare
    model = seqtag.load(out / "rnn-softmax-seed1" / "model")
    long = json.loads((out / "compare.json").read_text())["runs"]["rnn-softmax-seed1"]["long"]
    sentences = [block.split("\n") for block in open(DEMO_TEST).read().strip().split("\n\n")]
    lengths = [len(sentence) for sentence in sentences]
    assert long["sentences"] == math.ceil(len(sentences) / 10) == 6
    assert long["min_length"] == sorted(lengths, reverse=True)[5]
    assert long["tokens"] == sum(sorted(lengths, reverse=True)[:6])
    # The same figure from the model on the chosen sentences written out as a file.
    chosen = longest_tenth(lengths)
    subset = out / "longest.conll"
    subset.write_text("".join("\n".join(sentences[i]) + "\n\n" for i in chosen))
    assert model.evaluate(subset)["f1"] == pytest.approx(long["f1"])


def test_longest_tenth_on_a_hand_made_example():
    #          0  1  2  3  4  5  6  7  8  9  10 11
    lengths = [3, 9, 1, 9, 5, 2, 7, 8, 4, 6, 10, 1]
    assert longest_tenth(lengths) == [1, 10]          # ceil(12 / 10) = 2: the 10, and the first of the two 9s
    assert longest_tenth(lengths[:10]) == [1]         # a tenth of 10: the first 9
    assert longest_tenth([4, 4, 4]) == [0]            # at least one item
    assert longest_tenth([]) == []
    assert longest_tenth(list(range(1, 101))) == list(range(90, 100))


def test_an_existing_comparison_is_refused_and_resume_trains_only_what_is_missing(demo_compare, tmp_path):
    out, _ = demo_compare
    again = _compare(out, "demo", "--cells", "rnn,gru", "--budget-minutes", "1", *DEMO_FAST)
    assert again.exit_code == 2
    assert "already holds a comparison" in again.output and "--overwrite" in again.output

    # Interrupted before the GRU run finished: its record and model are gone.
    record = json.loads((out / "compare.json").read_text())
    del record["runs"]["gru-softmax-seed1"]
    (out / "compare.json").write_text(json.dumps(record))
    for name in ("model/metrics.json", "model/config.json", "model/model.safetensors"):
        (out / "gru-softmax-seed1" / name).unlink()
    kept = out / "rnn-softmax-seed1" / "model" / "model.safetensors"
    before = kept.stat().st_mtime_ns
    resumed = _compare(out, "demo", "--cells", "rnn,gru", "--budget-minutes", "1", "--resume", *DEMO_FAST)
    assert resumed.exit_code == 0, resumed.output
    assert kept.stat().st_mtime_ns == before, "a finished run is not trained again"
    assert "rnn-softmax-seed1 was trained before" in resumed.output
    assert (out / "gru-softmax-seed1" / "model" / "model.safetensors").is_file()
    assert len(_rows(resumed.stdout)) == 2

    other = _compare(out, "demo", "--cells", "rnn,gru", "--budget-minutes", "2", "--resume", *DEMO_FAST)
    assert other.exit_code == 2 and "budget_minutes was 1" in other.output


def test_a_cpu_budget_stops_each_run_after_that_much_cpu_time(tmp_path):
    out = tmp_path / "cpu"
    result = _compare(out, "demo", "--cells", "rnn", "--budget-minutes", "0.02", "--budget-clock", "cpu",
                      "--set", "model.hidden_size=16", "--set", "model.word_dim=16")
    assert result.exit_code == 0, result.output
    run = out / "rnn-softmax-seed1"
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    used = last["callbacks"]["CpuBudget"]["cpu_seconds"]
    assert 1.2 <= used < 1.2 + 3, "stopped by the 1.2 CPU seconds, after the step that crossed them"
    # The CPU budget, not a wall-clock limit or the epoch count, ended it.
    assert json.loads((run / "model" / "config.json").read_text())["recipe"]["train"]["max_time_minutes"] is None
    assert last["epoch"] < 100_000
    header = _header(result.stdout)
    assert "CPU time to best dev (s)" in header
    best = float(_rows(result.stdout)[0][header.index("CPU time to best dev (s)")])
    assert 0 < best <= round(used, 1)
    assert "of the training process's CPU time" in (out / "compare.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["demo", "--cells", "lstm,lsmt"], "--cells: 'lsmt' is not a recurrent cell"),
    (["demo", "--heads", "pooled"], "--heads: 'pooled' is not a head a 'tagging' recipe"),
    (["char-lm", "--train", DEMO_TEST, "--heads", "crf"], "--heads: 'crf' is not a head a 'lm' recipe"),
    (["demo", "--budget-minutes", "0"], "--budget-minutes is 0"),
    (["demo", "--seeds", "0"], "--seeds is 0"),
    (["demo", "--budget-clock", "gpu"], "--budget-clock is 'gpu'"),
])
def test_bad_names_and_settings_are_clear_errors_before_anything_trains(tmp_path, args, message):
    result = _compare(tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists(), "nothing was trained or written"


def test_the_errors_name_every_registered_cell_and_the_heads_the_task_can_use(tmp_path):
    result = _compare(tmp_path / "out", "demo", "--cells", "nope")
    assert all(name in result.output for name in CELLS)
    heads = _compare(tmp_path / "out", "demo", "--heads", "next_token")
    assert all(name in heads.output for name in FAMILIES["tagging"].heads)


LM_FAST = ["--set", "model.hidden_size=24", "--set", "model.word_dim=16", "--set", "data.bptt=16",
           "--set", "data.batch_size=4", "--set", "data.eval_batch_size=2", "--set", "train.max_epochs=2"]
VERSE = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
         "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n")


@pytest.fixture(scope="module")
def lm_compare(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm-compare")
    text = folder / "verse.txt"
    text.write_text(VERSE * 30)
    out = folder / "lm"
    result = _compare(out, "char-lm", "--train", str(text), "--cells", "rnn,lstm", "--budget-minutes", "1", *LM_FAST)
    assert result.exit_code == 0, result.output
    return text, out, result


def test_language_model_compare_on_a_tiny_text(lm_compare):
    _, out, result = lm_compare
    header = _header(result.stdout)
    assert header[7:] == ["dev perplexity", "dev bits/char", "dev long-context perplexity",
                          "dev near-start perplexity"]  # no test file: no test columns
    rows = _rows(result.stdout)
    assert [row[:2] for row in rows] == [["rnn", "next_token"], ["lstm", "next_token"]]
    for row in rows:
        assert all(NUMBER.match(value) for value in row[2:]), row
        model = seqtag.load(out / f"{row[0]}-next_token-seed1" / "model")
        assert row[7] == f"{model.metrics['dev']['perplexity']:.2f}"
        assert float(row[8]) == pytest.approx(math.log2(float(row[7])), abs=1e-3)
    assert "last tenth of each stretch" in (out / "compare.md").read_text()


def test_long_context_figures_score_each_window_from_a_fresh_state(lm_compare):
    text, out, _ = lm_compare
    lm = seqtag.load(out / "lstm-next_token-seed1" / "model")
    recipe = compare_recipe("char-lm", LM_FAST[1::2], train=str(text))
    stream = OBJECTIVES["lm"].prepare(recipe).rows["dev"]
    figures = long_context_figures(lm, stream, window=50)   # several windows, each longer than one pass (bptt 16)

    # The same figures one window at a time, from the network's log-probabilities.
    ids = torch.from_numpy(stream.slice(0, len(stream)).astype("int64"))
    windows = (len(ids) - 1) // 50
    far, near = [], []
    with torch.inference_mode():
        for w in range(windows):
            inputs, targets = ids[w * 50:(w + 1) * 50], ids[w * 50 + 1:(w + 1) * 50 + 1]
            scores, _ = lm.net({"word_ids": inputs[None]})
            nats = -scores[0].log_softmax(-1).gather(-1, targets[:, None])[:, 0]
            far += nats[45:].tolist()
            near += nats[:5].tolist()
    assert figures["windows"] == windows >= 2 and figures["tokens"] == 5 * windows
    assert figures["long_context_perplexity"] == pytest.approx(math.exp(sum(far) / len(far)), rel=1e-4)
    assert figures["near_start_perplexity"] == pytest.approx(math.exp(sum(near) / len(near)), rel=1e-4)
