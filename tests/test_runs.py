"""Run folders (issue 11): --out never destroys anything silently, one run at a time per folder, --resume from the
true last step (Ctrl+C, kill -9), and a loss that is not a number stops training clearly."""
from __future__ import annotations

import csv
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from typer.testing import CliRunner

import seqtag.training
from cli import app
from seqtag.config import load_recipe
from seqtag.errors import SeqtagError
from seqtag.runs import LOCK_NAME, RunLock, claim_run_folder
from seqtag.tasks import Task
from seqtag.training import train

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
SMALL = ["train.progress_bar=false", "model.hidden_size=16", "model.word_dim=16", "model.char_hidden=8",
         "model.char_dim=8"]
SMALL_CLI = [part for setting in SMALL for part in ("--set", setting)]


def _sets(*settings: str) -> list[str]:
    return [part for setting in settings for part in ("--set", setting)]


def _ner(ner_files, *settings: str):
    return load_recipe("conll-ner", [*SMALL, *settings], train=ner_files["train"], dev=ner_files["dev"],
                       test=ner_files["test"])


def _write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _old_run(out: Path, smoke: bool = False) -> Path:
    """The files a finished run leaves (their content does not matter to the checks)."""
    for name in ("config.json", "model.safetensors", "labels.json"):
        _write(out / "model" / name)
    _write(out / "model" / "metrics.json", json.dumps({"epochs": 3, "smoke": smoke}))
    for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "logs/metrics.csv"):
        _write(out / name)
    return out


def _rows(out: Path) -> list[dict]:
    with (out / "logs" / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _checkpoint_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


# ---------------------------------------------------------------------------
# 1. --out never destroys anything silently


def test_a_folder_holding_a_run_needs_overwrite_which_removes_only_what_seqtag_wrote(tmp_path):
    out = _old_run(tmp_path / "run")
    mine = [_write(out / "notes.txt"), _write(out / "logs" / "my-plot.png"), _write(out / "checkpoints" / "mine.ckpt")]
    with pytest.raises(SeqtagError, match=r"run already holds a run \(model/, checkpoints/best.ckpt, "
                                          r"checkpoints/last.ckpt, logs/metrics.csv\)\. Add --overwrite .*seqtag "
                                          r"removes only the files it wrote.*--resume to continue it"):
        claim_run_folder(out)
    assert not (out / LOCK_NAME).exists(), "a refused run leaves no lock"
    with claim_run_folder(out, overwrite=True):
        assert (out / LOCK_NAME).is_file()
    assert not (out / LOCK_NAME).exists()
    for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert not (out / name).exists(), name
    assert all(path.is_file() for path in mine), "files seqtag did not write stay"
    assert (out / "model" / "model.safetensors").is_file(), "the old model stays until the new one replaces it"


def test_smoke_never_replaces_a_trained_model_even_with_overwrite(tmp_path):
    trained = _old_run(tmp_path / "trained")
    with pytest.raises(SeqtagError, match=r"trained/model holds a trained model, and a --smoke run \(one training "
                                          r"step\) never replaces one, not even with --overwrite\. Give the smoke "
                                          r"run its own --out"):
        claim_run_folder(trained, smoke=True, overwrite=True)
    assert (trained / "checkpoints" / "last.ckpt").is_file(), "nothing was removed"
    smoked = _old_run(tmp_path / "smoked", smoke=True)
    with pytest.raises(SeqtagError, match="already holds a run"):
        claim_run_folder(smoked, smoke=True)
    claim_run_folder(smoked, smoke=True, overwrite=True).release()  # a smoke run's model may be replaced


def test_a_model_directory_given_as_the_run_folder_is_refused_with_a_hint(tmp_path):
    out = _old_run(tmp_path / "run")
    with pytest.raises(SeqtagError, match=r"--out .*run/model is a model directory \(it holds config\.json and "
                                          r"model\.safetensors\), not a run folder.*give --out .*run\.$"):
        claim_run_folder(out / "model", overwrite=True)
    assert sorted(p.name for p in (out / "model").iterdir()) == ["config.json", "labels.json", "metrics.json",
                                                                "model.safetensors"]


def test_files_of_the_user_inside_the_model_folder_are_never_deleted(tmp_path):
    out = _old_run(tmp_path / "run")
    _write(out / "model" / "README.md")
    for settings in ({"overwrite": True}, {"resume": True}):
        with pytest.raises(SeqtagError, match=r"run/model holds files seqtag did not write \(README\.md\); saving a "
                                              r"model there replaces the whole folder and would delete them"):
            claim_run_folder(out, **settings)
    assert (out / "model" / "README.md").is_file() and (out / "checkpoints" / "last.ckpt").is_file()


def test_contradictory_or_impossible_folder_requests_are_clear_errors(tmp_path):
    with pytest.raises(SeqtagError, match="--resume continues the run in --out and --overwrite replaces it"):
        claim_run_folder(tmp_path, resume=True, overwrite=True)
    with pytest.raises(SeqtagError, match=r"--out .*afile is a file; give a folder"):
        claim_run_folder(_write(tmp_path / "afile"))
    with pytest.raises(SeqtagError, match=r"--resume: no checkpoint at .*last\.ckpt"):
        claim_run_folder(tmp_path / "nothing", resume=True)
    assert not (tmp_path / "nothing").exists()


def test_a_run_that_fails_early_leaves_no_folder_and_no_lock(tmp_path, ner_files):
    bad = _write(tmp_path / "bad.conll", "Ada\n")  # one column: no labels
    recipe = load_recipe("conll-ner", SMALL, train=bad, dev=ner_files["dev"])
    with pytest.raises(SeqtagError):
        train(recipe, tmp_path / "new" / "run")
    assert not (tmp_path / "new" / "run").exists(), "the folder made for the run is removed again"
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(SeqtagError):
        train(recipe, existing)
    assert existing.is_dir() and not list(existing.iterdir())


def test_cli_train_refuses_a_second_run_a_smoke_over_it_and_a_model_folder_then_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    first = runner.invoke(app, ["train", "demo", "--out", str(out), *SMALL_CLI, *_sets("train.max_epochs=1")])
    assert first.exit_code == 0, first.output
    weights = (out / "model" / "model.safetensors").read_bytes()
    for extra, needle in ((["--smoke"], "never replaces one"), ([], "already holds a run"),
                          (["--smoke", "--overwrite"], "never replaces one")):
        again = runner.invoke(app, ["train", "demo", "--out", str(out), *extra, *SMALL_CLI])
        assert again.exit_code == 2 and needle in again.stderr, again.output
        assert "read 400 sentences" not in again.stderr, "refused before any data is read"
    model_dir = runner.invoke(app, ["train", "demo", "--out", str(out / "model"), *SMALL_CLI])
    assert model_dir.exit_code == 2 and f"give --out {out}" in model_dir.stderr
    assert (out / "model" / "model.safetensors").read_bytes() == weights, "the trained model is untouched"

    notes = _write(out / "logs" / "notes.txt")
    replaced = runner.invoke(app, ["train", "demo", "--out", str(out), "--overwrite", *SMALL_CLI,
                                   *_sets("train.max_epochs=1", "train.seed=2")])
    assert replaced.exit_code == 0, replaced.output
    assert (out / "model" / "model.safetensors").read_bytes() != weights and notes.is_file()

    smoke = runner.invoke(app, ["train", "demo", "--smoke", *SMALL_CLI])  # no --out: its own folder
    assert smoke.exit_code == 0, smoke.output
    assert smoke.stdout.startswith(f"model: {(tmp_path / 'runs' / 'demo-smoke' / 'model').resolve()}")
    assert json.loads((tmp_path / "runs" / "demo-smoke" / "model" / "metrics.json").read_text())["smoke"] is True


# ---------------------------------------------------------------------------
# 2. One run at a time per folder

HOLD_LOCK = ("import sys, time\nfrom seqtag.runs import RunLock\nRunLock(sys.argv[1]).acquire()\n"
             "print('held', flush=True)\ntime.sleep(600)\n")


@pytest.fixture
def lock_holder(tmp_path):
    """Another process holding the lock of tmp_path/busy, as a running `seqtag train` does."""
    folder = tmp_path / "busy"
    folder.mkdir()
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        yield folder, child
    finally:
        child.kill()
        child.wait()


def test_a_folder_in_use_is_refused_at_once_and_a_killed_runs_lock_is_replaced(lock_holder):
    folder, child = lock_holder
    in_use = (rf"busy is in use by another run: process {child.pid} on host {socket.gethostname()}, started "
              rf".*\. Wait for it to end, or give another --out")
    with pytest.raises(SeqtagError, match=in_use):
        claim_run_folder(folder)
    result = runner.invoke(app, ["train", "demo", "--out", str(folder), *SMALL_CLI])
    assert result.exit_code == 2 and f"process {child.pid}" in result.stderr, result.output
    assert "read 400 sentences" not in result.stderr, "refused before any data is read"

    child.send_signal(signal.SIGKILL)  # a run killed with kill -9 leaves its lock behind
    child.wait()
    assert (folder / LOCK_NAME).is_file()
    with claim_run_folder(folder) as lock:
        assert lock.holder()["pid"] == os.getpid()
    assert not (folder / LOCK_NAME).exists()


def test_locks_of_a_restarted_machine_or_half_written_are_stale_and_another_hosts_is_not(tmp_path):
    lock = tmp_path / LOCK_NAME
    for left in (json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "boot": "an-earlier-boot"}), ""):
        lock.write_text(left)
        with RunLock(tmp_path) as taken:
            assert taken.holder()["token"] == taken.token
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "2024-01-02T03:04:05+00:00"}))
    with pytest.raises(SeqtagError, match=rf"process 1 on host elsewhere.*If that process is gone .*delete "
                                          rf".*{LOCK_NAME}\.$"):
        RunLock(tmp_path).acquire()


def test_relaunched_ranks_of_a_multi_process_run_leave_the_lock_to_rank_0(lock_holder, monkeypatch):
    folder, child = lock_holder
    monkeypatch.setattr(seqtag.training, "_train_in", lambda *args: "trained")
    recipe = load_recipe("demo", SMALL)
    with pytest.raises(SeqtagError, match="in use by another run"):
        train(recipe, folder)
    monkeypatch.setenv("LOCAL_RANK", "1")  # what Lightning sets in the processes it starts for ranks above 0
    assert train(recipe, folder) == "trained"
    assert RunLock(folder).holder()["pid"] == child.pid


# ---------------------------------------------------------------------------
# 3. --resume continues from the true last step


def test_the_last_checkpoint_follows_every_dev_check_not_only_better_ones(ner_files, tmp_path):
    # Adam at a rate of 1e-12 leaves the dev score where the first epoch put it: no later epoch is better.
    train(_ner(ner_files, "train.max_epochs=3", "train.lr=1e-12", "train.patience=0"), tmp_path / "run")
    checkpoints = tmp_path / "run" / "checkpoints"
    assert _checkpoint_step(checkpoints / "best.ckpt") == 1, "one step per epoch; the first dev check was the best"
    assert _checkpoint_step(checkpoints / "last.ckpt") == 3


def _interrupt_at(monkeypatch, step: int, signals: int = 1) -> None:
    """Press Ctrl+C (a real SIGINT) `signals` times during training step `step` (counted from 0)."""
    original = Task.training_step

    def training_step(task, batch, batch_idx):
        if task.global_step == step:
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGINT)
        return original(task, batch, batch_idx)

    monkeypatch.setattr(Task, "training_step", training_step)


def test_ctrl_c_saves_exits_130_and_the_resumed_run_logs_each_epoch_once(ner_files, tmp_path, monkeypatch):
    out = tmp_path / "run"
    files = ["--train", str(ner_files["train"]), "--dev", str(ner_files["dev"]), "--test", str(ner_files["test"])]
    settings = [*SMALL_CLI, *_sets("data.batch_size=2", "train.max_epochs=4", "train.patience=0")]
    _interrupt_at(monkeypatch, step=4)  # epoch 2, its second batch of three
    stopped = runner.invoke(app, ["train", "conll-ner", "--out", str(out), *files, *settings])
    assert stopped.exit_code == 130, stopped.output
    assert "Training was interrupted; the best weights so far were saved" in stopped.stderr
    assert stopped.stdout.startswith(f"model: {out / 'model'}")
    assert json.loads((out / "model" / "metrics.json").read_text())["interrupted"] is True
    assert _checkpoint_step(out / "checkpoints" / "last.ckpt") == 5, "saved after the step under way, not before"

    monkeypatch.undo()
    resumed = runner.invoke(app, ["train", "conll-ner", "--out", str(out), "--resume", *files, *settings])
    assert resumed.exit_code == 0, resumed.output
    rows = _rows(out)
    assert [int(row["epoch"]) for row in rows if row["dev_score"]] == [0, 1, 2, 3], "each epoch's dev check once"
    steps = [int(row["step"]) for row in rows if row["train_loss"]]
    assert steps == sorted(set(steps)), "no training step logged twice"


@pytest.mark.parametrize("average", [[], ["train.ema_decay=0.5"]], ids=["weights", "moving-average"])
def test_ctrl_c_then_resume_ends_with_the_figures_of_an_uninterrupted_run(ner_files, tmp_path, monkeypatch, average):
    # One batch per epoch, so the run stops between epochs: the bucketing sampler cannot restart within one.
    # Dropout draws random numbers at every step; early stopping (6 of 12 epochs here) counts across the cut.
    # With a moving average of the weights, both the average and the weights as trained carry across the cut.
    recipe = _ner(ner_files, "train.max_epochs=12", "train.patience=2", "model.dropout=0.5", *average)
    whole = train(recipe, tmp_path / "whole")
    assert whole.metrics["epochs"] < 12, "early stopping ended the run"
    _interrupt_at(monkeypatch, step=2, signals=1)
    stopped = train(recipe, tmp_path / "cut")
    assert stopped.interrupted and stopped.metrics["epochs"] == 3
    monkeypatch.undo()
    resumed = train(recipe, tmp_path / "cut", resume=True)
    for key in ("dev", "test", "epochs"):
        assert resumed.metrics[key] == whole.metrics[key], key
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "whole")
    weights = [(tmp_path / run / "model" / "model.safetensors").read_bytes() for run in ("whole", "cut")]
    assert weights[0] == weights[1]
    # A run killed after early stopping's last dev check has the last.ckpt of the finished run: it trains no more.
    again = train(recipe, tmp_path / "whole", resume=True)
    assert again.metrics == whole.metrics and _rows(tmp_path / "whole") == _rows(tmp_path / "cut")


class TrainedWeights(pl.Callback):
    """The network's weights after every optimiser step, as trained."""

    def __init__(self):
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append({name: value.detach().clone() for name, value in pl_module.net.state_dict().items()})


def test_a_moving_average_of_the_weights_is_what_dev_checks_and_the_saved_model_use(ner_files, tmp_path):
    from safetensors.torch import load_file

    decay, seen = 0.6, TrainedWeights()
    # Two batches an epoch, one epoch: one dev check, after the last step, so that it is the best.
    result = train(_ner(ner_files, "data.batch_size=3", "train.max_epochs=1", f"train.ema_decay={decay}"),
                   tmp_path / "run", callbacks=[seen])
    assert len(seen.steps) >= 2
    average = dict(seen.steps[0])  # the first step's weights start the average
    for weights in seen.steps[1:]:
        average = {name: decay * average[name] + (1 - decay) * weights[name] for name in average}
    saved = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert set(saved) == set(average)
    for name, value in saved.items():
        torch.testing.assert_close(value, average[name].to(value.dtype), msg=name)
    trained = seen.steps[-1]
    assert any(not torch.equal(saved[name], trained[name]) for name in saved), "the average, not the last step"
    plain = train(_ner(ner_files, "data.batch_size=3", "train.max_epochs=1"), tmp_path / "plain")
    assert (tmp_path / "plain" / "model" / "model.safetensors").read_bytes() != \
        (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    with pytest.raises(SeqtagError, match="train.ema_decay is 1.0"):
        _ner(ner_files, "train.ema_decay=1")


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_dev_check(ner_files, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, step=4, signals=2)
    result = train(_ner(ner_files, "data.batch_size=2", "train.max_epochs=4", "train.patience=0"), out)
    assert result.interrupted and (out / "model" / "model.safetensors").is_file()
    assert _checkpoint_step(out / "checkpoints" / "last.ckpt") == 3, "the end of epoch 1, not the step cut short"


def test_the_time_limit_writes_the_last_checkpoint(ner_files, tmp_path, trainers):
    out = tmp_path / "run"
    train(_ner(ner_files, "data.batch_size=2", "train.max_epochs=50", "train.max_time_minutes=0.0001"), out)
    assert 0 < trainers[0].global_step < 150, "stopped by the time limit"
    assert _checkpoint_step(out / "checkpoints" / "last.ckpt") == trainers[0].global_step


def _seqtag(*args: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seqtag", "-q", "train", "demo", "--out", str(out), *args,
                             *SMALL_CLI, *_sets("train.max_epochs=10", "train.patience=3")],
                            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finished(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


@pytest.mark.slow
def test_kill_9_then_resume_ends_with_the_figures_of_an_uninterrupted_run(tmp_path):
    whole = _finished(_seqtag(out=tmp_path / "whole"))
    killed = _seqtag(out=tmp_path / "killed")
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    while not last.exists():
        assert killed.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.02)
    delay = random.uniform(0.0, 0.5)
    time.sleep(delay)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL, f"the run ended within {delay:.2f} s of its first checkpoint"
    resumed = _finished(_seqtag("--resume", out=tmp_path / "killed"))
    assert resumed.splitlines()[1:] == whole.splitlines()[1:], f"killed {delay:.2f} s after the first checkpoint"
    assert _rows(tmp_path / "killed") == _rows(tmp_path / "whole")


# ---------------------------------------------------------------------------
# 9. Training that goes wrong stops clearly


def test_a_nan_loss_stops_training_naming_the_step_and_the_checkpoint(ner_files, tmp_path):
    out = tmp_path / "run"
    train(_ner(ner_files, "train.max_epochs=1"), out)
    weights = (out / "model" / "model.safetensors").read_bytes()
    diverging = _ner(ner_files, "train.optimizer=sgd", "train.lr=1e30", "train.gradient_clip=0", "train.max_epochs=5")
    # One batch per epoch: step 1 throws the weights far out, its dev check writes last.ckpt, step 2's loss is nan.
    with pytest.raises(SeqtagError, match=r"^Training stopped at step 2 \(epoch 2\): the training loss is nan\. The "
                                          r"model was not saved \(.*run/model is as it was\)\. The last checkpoint "
                                          r"before it is .*run/checkpoints/last\.ckpt \(step 1\): --resume continues "
                                          r"from there.*train\.lr is 1e\+30.*train\.gradient_clip is 0"):
        train(diverging, out, overwrite=True)
    assert (out / "model" / "model.safetensors").read_bytes() == weights, "no weights that are not numbers saved"
    assert _checkpoint_step(out / "checkpoints" / "last.ckpt") == 1
    assert not (out / LOCK_NAME).exists()

    with pytest.raises(SeqtagError, match=r"step 2 \(epoch 1\): the training loss is nan\. .*No checkpoint had "
                                          r"been written yet\."):
        train(_ner(ner_files, "train.optimizer=sgd", "train.lr=1e30", "train.gradient_clip=0",
                   "data.batch_size=2"), tmp_path / "fresh")
    result = runner.invoke(app, ["train", "conll-ner", "--out", str(tmp_path / "cli"), "--train",
                                 str(ner_files["train"]), "--dev", str(ner_files["dev"]), *SMALL_CLI,
                                 *_sets("train.optimizer=sgd", "train.lr=1e30", "train.gradient_clip=0")])
    assert result.exit_code == 2 and "error: Training stopped at step 2" in result.stderr
    assert "Traceback" not in result.output
