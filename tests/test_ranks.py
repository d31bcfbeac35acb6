"""Multi-process runs on the CPU (two processes, DDP): `train`, `finetune` and `compare` finish, and only the
first process writes and reports. One rule decides which process writes: `runs.this_process_writes`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqtag.runs import this_process_writes

ROOT = Path(__file__).resolve().parent.parent
DDP = ["--set", "train.devices=2", "--set", "train.strategy=ddp", "--set", "train.accelerator=cpu",
       "--set", "train.progress_bar=false"]


def test_the_first_process_writes_and_relaunched_ones_do_not(monkeypatch):
    for name in ("LOCAL_RANK", "NODE_RANK", "RANK"):
        monkeypatch.delenv(name, raising=False)
    assert this_process_writes()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "0")
    assert this_process_writes()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not this_process_writes()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")
    assert not this_process_writes()
    monkeypatch.setenv("NODE_RANK", "0")
    monkeypatch.setenv("RANK", "3")
    assert not this_process_writes()

    class Trainer:
        is_global_zero = False

    assert not this_process_writes(Trainer())


def test_a_process_another_node_started_leaves_the_run_folder_to_rank_0(monkeypatch, tmp_path):
    """torchrun and SLURM start every rank themselves (LOCAL_RANK 0 on each node): only global rank 0 may claim
    the folder, or the second node would find it locked by the first on a shared filesystem."""
    import seqtag.training as training

    def claimed(*args, **kwargs):
        raise AssertionError("a rank above 0 claimed the run folder")

    monkeypatch.setattr(training, "claim_run_folder", claimed)
    monkeypatch.setattr(training, "_train_in", lambda *args: "trained")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("NODE_RANK", raising=False)
    recipe = training.load_recipe("demo")
    assert training.train(recipe, tmp_path / "run") == "trained"
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(AssertionError, match="claimed"):
        training.train(recipe, tmp_path / "run")


def _seqtag(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "seqtag"), *args]
    if not Path(command[0]).is_file():
        pytest.skip("the seqtag console script is not installed beside this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("LOCAL_RANK", "NODE_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_finetune_on_two_processes_saves_one_model_with_its_lineage(tmp_path):
    parent = tmp_path / "parent"
    _seqtag("-q", "train", "demo", "--out", str(parent), "--smoke", cwd=tmp_path)
    out = tmp_path / "tuned"
    done = _seqtag("finetune", str(parent / "model"), "--train", str(ROOT / "recipes/data/demo.dev.conll"),
                   "--dev", str(ROOT / "recipes/data/demo.dev.conll"), "--out", str(out),
                   "--set", "train.max_epochs=1", *DDP, cwd=tmp_path)
    assert done.stdout.count("model: ") == 1, "only the first process reports"
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["finetune"]["parent"]["path"] == str((parent / "model").resolve())
    rows = (out / "logs" / "metrics.csv").read_text().splitlines()
    assert "dev_score" in rows[0] and len(rows) >= 2, "the first process logged the run"
    assert not list(out.rglob("*.partial")), "every durable write finished"


@pytest.mark.slow
def test_compare_on_two_processes_finishes_and_writes_its_report_once(tmp_path):
    out = tmp_path / "compare"
    done = _seqtag("compare", "demo", "--cells", "lstm,gru", "--budget-minutes", "0.025", "--out", str(out), *DDP,
                   cwd=tmp_path)
    assert done.stdout.count("| cell | head |") == 1, "only the first process prints the table"
    assert done.stderr.count("compare 2/2") == 1, "the other process follows the plan silently"
    record = json.loads((out / "compare.json").read_text())
    assert [step["run"] for step in record["plan"]] == ["lstm-softmax-seed1", "gru-softmax-seed1"]
    assert set(record["runs"]) == {"lstm-softmax-seed1", "gru-softmax-seed1"}
    assert (out / "compare.md").is_file() and (out / "compare.png").stat().st_size > 0
    for run in record["runs"].values():
        assert (Path(run["run_dir"]) / "model" / "model.safetensors").is_file()
        assert run["seconds_to_best"] is None or run["seconds_to_best"] > 0
    assert not list(out.rglob("*.partial")), "every durable write finished"
