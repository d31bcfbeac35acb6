"""What the CLI prints where: results on stdout; logs, progress and errors on stderr; no library chatter.

The typer runner used here keeps stdout and stderr apart, and its stderr is not a terminal, so training
reports one plain line per epoch. pytest records Python warnings instead of letting them reach stderr;
`invoke` hands them back, so that the stderr checked here is the one a person would see.
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.trainer.states import TrainerStatus
from torch.utils.data import DataLoader
from typer.testing import CliRunner

import seqtag.training
from cli import app, recipe_descriptions
from seqtag import __version__
from seqtag.config import RECIPES_DIR
from seqtag.progress import EpochLine, count_tokens, end_reason, has_progress_bar, progress_callbacks

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
SMALL = ["--set", "model.hidden_size=16", "--set", "model.word_dim=16"]
EPOCH_LINE = re.compile(r"^epoch (\d+)/2  train loss \d+\.\d{4}  dev score \d+\.\d\d  lr 0\.005  [\d,]+ tokens/s  "
                        r"\d+:\d\d:\d\d$")
CHATTER = ("GPU available", "TPU available", "💡", "litlogger", "LitLogger", "deprecated", "Deprecation",
           "FutureWarning", "`Trainer", "LeafSpec", "log_every_n_steps")
BAR = ("it/s", "━", "\r")
# seqtag/train.py builds the Trainer; these tests of its progress output wait until it passes the callbacks in.
WIRED = "progress_callbacks" in Path(seqtag.training.__file__).read_text(encoding="utf-8")
needs_wiring = pytest.mark.skipif(not WIRED, reason="seqtag/train.py does not use seqtag.progress yet")


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str   # with the warnings Python would have printed there


def invoke(*args: str) -> Run:
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")  # filters the CLI adds go in front of this one and still apply
        result = runner.invoke(app, list(args))
    printed = "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n" for w in shown)
    return Run(result.exit_code, result.stdout, result.stderr + printed)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs of the demo recipe, with the progress bar left on (stderr is not a terminal here)."""
    out = tmp_path_factory.mktemp("demo")
    result = invoke("train", "demo", "--out", str(out), *SMALL, "--set", "train.max_epochs=2")
    assert result.exit_code == 0, result.stderr
    return out, result


def test_train_stdout_holds_only_the_results(trained):
    out, result = trained
    lines = result.stdout.splitlines()
    assert lines[0] == f"model: {out / 'model'}"
    assert [line.split(":")[0] for line in lines] == ["model", "dev", "test"]
    assert lines[1].startswith("dev: F1 ") and lines[2].startswith("test: F1 ")


def test_train_stderr_has_the_logs_and_no_library_chatter(trained):
    _, result = trained
    assert "train: read 400 sentences" in result.stderr
    for needle in CHATTER:
        assert needle not in result.stderr, f"{needle!r} in stderr:\n{result.stderr}"


def test_resume_does_not_warn_about_its_own_folders(trained, tmp_path):
    out, _ = trained
    shutil.copytree(out, tmp_path / "run")
    result = invoke("train", "demo", "--out", str(tmp_path / "run"), "--resume", *SMALL, "--set", "train.max_epochs=3")
    assert result.exit_code == 0, result.stderr
    for needle in (*CHATTER, "exists and is not empty"):
        assert needle not in result.stderr, f"{needle!r} in stderr:\n{result.stderr}"


@needs_wiring
def test_train_stderr_has_one_line_per_epoch_and_why_it_ended(trained):
    _, result = trained
    for needle in BAR:
        assert needle not in result.stderr, f"{needle!r} in stderr:\n{result.stderr}"
    epochs = [EPOCH_LINE.match(line) for line in result.stderr.splitlines() if line.startswith("epoch")]
    assert [m and m.group(1) for m in epochs] == ["1", "2"], result.stderr
    assert "training ended: max_epochs (2) reached" in result.stderr


def test_quiet_prints_only_results(tmp_path):
    result = invoke("--quiet", "train", "demo", "--smoke", "--out", str(tmp_path), *SMALL,
                    "--set", "train.progress_bar=false")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("model: ") and "dev: " in result.stdout


@needs_wiring
def test_quiet_hides_the_progress_too(tmp_path):
    result = invoke("-q", "train", "demo", "--smoke", "--out", str(tmp_path), *SMALL)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""


def test_verbose_adds_debug_format_and_library_messages_and_warnings(tmp_path):
    result = invoke("--verbose", "train", "demo", "--smoke", "--out", str(tmp_path), *SMALL,
                    "--set", "train.progress_bar=false")
    assert result.exit_code == 0, result.stderr
    assert "INFO seqtag: train: read 400 sentences" in result.stderr
    assert "GPU available" in result.stderr
    assert "log_every_n_steps" in result.stderr  # a warning the default output leaves out
    assert result.stdout.startswith("model: ")


def test_quiet_and_verbose_together_are_refused():
    result = runner.invoke(app, ["--quiet", "--verbose", "train", "demo"])
    assert result.exit_code == 2
    assert "--quiet and --verbose" in result.stderr


def test_errors_go_to_stderr_after_the_logs(tmp_path):
    bad = tmp_path / "bad.conll"
    bad.write_text("Ada B-PER\nLovelace I-PER\n\nin O\nParis I-LOC\n", encoding="utf-8")
    result = runner.invoke(app, ["train", "wnut-ner", "--train", str(bad), "--smoke", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith("error: ")


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter, reporting which heavy libraries it imported."""
    code = ("import sys\nfrom cli import app\ntry:\n    app(sys.argv[1:], prog_name='seqtag')\nexcept SystemExit:\n"
            "    pass\nprint('imported:', *[m for m in ('torch', 'datasets', 'pytorch_lightning', 'pyarrow') "
            "if m in sys.modules], file=sys.stderr)")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_version_prints_the_version_without_importing_torch():
    done = _run_cli("--version")
    assert done.stdout == f"seqtag {__version__}\n"
    assert done.stderr.strip() == "imported:"


def test_help_imports_nothing_heavy():
    done = _run_cli("--help")
    assert "train" in done.stdout and "--quiet" in done.stdout and "--version" in done.stdout
    assert done.stderr.strip() == "imported:"


def test_train_help_lists_every_recipe_with_its_description():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    described = recipe_descriptions()
    assert set(described) == {path.stem for path in RECIPES_DIR.glob("*.yaml")}
    for name, text in described.items():
        assert re.search(rf"^\s*{re.escape(name)}\s+{re.escape(text[:40])}", result.stdout, re.M), name
    assert "--no-" not in result.stdout  # boolean options are plain flags


def test_recipe_descriptions_are_sentences_not_usage_examples():
    for name, text in recipe_descriptions().items():
        assert text and "seqtag train" not in text and not text.endswith(":"), (name, text)


# The progress module on its own, with a toy model (no seqtag training code involved).

@dataclass
class ToyBatch:
    x: torch.Tensor      # (B, T, 2)
    mask: torch.Tensor   # (B, T) bool


class ToyTask(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = (self.layer(batch.x).squeeze(-1) ** 2)[batch.mask].mean()
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("dev_score", 50.0)   # never improves: early stopping has something to stop

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _batches(count: int) -> DataLoader:
    mask = torch.tensor([[True, True, True], [True, False, False]])  # 4 real tokens a batch
    return DataLoader([ToyBatch(torch.randn(2, 3, 2), mask) for _ in range(count)], batch_size=None,
                      collate_fn=lambda batch: batch)


def _fit(callbacks=(), **trainer_args) -> pl.Trainer:
    trainer_args = {"max_epochs": 2, **trainer_args}
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
                         callbacks=list(callbacks), **trainer_args)
    trainer.fit(ToyTask(), train_dataloaders=_batches(4), val_dataloaders=_batches(1))
    return trainer


def test_epoch_line_reports_loss_dev_score_lr_speed_and_time():
    stream = io.StringIO()
    _fit([EpochLine(stream)])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    pattern = r"^epoch {}/2  train loss \d+\.\d{{4}}  dev score 50\.00  lr 0\.1  [\d,]+ tokens/s  0:00:\d\d$"
    for epoch, line in enumerate(lines, 1):
        assert re.match(pattern.format(epoch), line), line


def test_tokens_are_counted_from_the_mask_or_the_targets():
    assert int(count_tokens(next(iter(_batches(1))))) == 4
    targets = torch.tensor([[5, 6, -100], [7, -100, -100]])
    assert int(count_tokens({"inputs": targets.clamp(min=0), "targets": targets})) == 3
    assert count_tokens((torch.zeros(2), torch.zeros(2))) is None


def test_end_reason_names_what_stopped_training():
    assert end_reason(_fit()) == "max_epochs (2) reached"
    assert end_reason(_fit(max_epochs=5, max_steps=3)) == "max_steps (3) reached"
    stopper = EarlyStopping(monitor="dev_score", mode="max", patience=1)
    assert (end_reason(_fit([stopper], max_epochs=10))
            == "early stopping after 2 epochs: 1 epoch without a better dev score (best 50.00)")
    timed = _fit(max_epochs=10, max_time={"seconds": 0.001})
    assert end_reason(timed).startswith("the time limit was reached")
    timed.state.status = TrainerStatus.INTERRUPTED
    assert end_reason(timed).startswith("interrupted")


def test_progress_callbacks_follow_quiet_and_the_terminal():
    @dataclass
    class Settings:
        progress_bar: bool = True

    assert progress_callbacks(Settings(), quiet=True) == []
    plain = progress_callbacks(Settings(), quiet=False, verbose=False)  # pytest's stderr is not a terminal
    assert [type(c) for c in plain] == [EpochLine] and not has_progress_bar(plain)
