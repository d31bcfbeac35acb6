"""kill -9 in the middle of training, then --resume: does it end where an uninterrupted run ends? (issue 11)

Trains the demo recipe as shipped (`seqtag train demo`, CPU, one thread per process) twice, each run a process
of its own, the way a person starts it:

1. uninterrupted, into OUT/whole;
2. into OUT/killed, killed with SIGKILL at a random moment between its first checkpoint (last.ckpt) and the
   time the uninterrupted run took to end after its own; then `seqtag train demo --resume` into the same folder.

Prints both runs' final dev/test figures (the model's metrics.json), where the kill struck (seconds after the
first checkpoint, and the epoch and step last.ckpt held), and whether figures, logs/metrics.csv and the saved
weights are the same. Exits 1 when they differ. A kill that comes after the run has ended is drawn again.

    .venv/bin/python bench/kill_resume.py [--seed N] [--out DIR] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def seqtag_train(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seqtag", "-q", "train", "demo", "--out", str(out),
                             "--set", "train.progress_bar=false", *extra],
                            cwd=common.ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen) -> float:
    """Wait until `path` exists; returns the time it appeared (time.monotonic)."""
    while not path.exists():
        if process.poll() is not None:
            raise SystemExit(f"the run ended before writing {path}:\n{process.stderr.read()[-2000:]}")
        time.sleep(0.01)
    return time.monotonic()


def finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"seqtag exited with {process.returncode}:\n{stderr[-3000:]}")


def checkpoint_position(path: Path) -> str:
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True)
    return f"epoch {saved['epoch'] + 1}, step {saved['global_step']}"


def figures(out: Path) -> dict:
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    return {key: metrics[key] for key in ("dev", "test", "epochs")}


def rows(out: Path) -> list[dict]:
    with (out / "logs" / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def line(name: str, result: dict) -> str:
    dev, test = result["dev"], result["test"]
    return (f"| {name} | {result['epochs']} | {dev['f1']:.4f} | {dev['precision']:.4f} | {dev['recall']:.4f} | "
            f"{test['f1']:.4f} | {test['precision']:.4f} | {test['recall']:.4f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="Seed of the kill moment (default: drawn, printed).")
    parser.add_argument("--out", type=Path, default=None, help="Folder for both runs (default: a temporary one).")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="Recipe override for both runs.")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    draw = random.Random(seed)
    root = args.out or Path(tempfile.mkdtemp(prefix="seqtag-kill-resume-"))
    extra = [part for setting in args.sets for part in ("--set", setting)]

    whole = root / "whole"
    shutil.rmtree(whole, ignore_errors=True)
    started = time.monotonic()
    process = seqtag_train(whole, *extra)
    first = wait_for(whole / "checkpoints" / "last.ckpt", process)
    finish(process)
    after_first = time.monotonic() - first
    print(f"uninterrupted run: {time.monotonic() - started:.1f} s, of which {after_first:.1f} s after its first "
          f"checkpoint")

    killed = root / "killed"
    for attempt in range(1, 6):
        shutil.rmtree(killed, ignore_errors=True)
        process = seqtag_train(killed, *extra)
        first = wait_for(killed / "checkpoints" / "last.ckpt", process)
        delay = draw.uniform(0.0, after_first)
        time.sleep(max(0.0, first + delay - time.monotonic()))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            break
        process.communicate()
        print(f"attempt {attempt}: the run had ended before the kill ({delay:.2f} s); drawing again")
    else:
        raise SystemExit("every drawn kill moment came after the run had ended")
    held = checkpoint_position(killed / "checkpoints" / "last.ckpt")
    print(f"killed (SIGKILL) {delay:.2f} s after the first checkpoint (kill seed {seed}); last.ckpt held {held}")
    finish(seqtag_train(killed, "--resume", *extra))

    reference, resumed = figures(whole), figures(killed)
    same_figures = reference == resumed
    same_log = rows(whole) == rows(killed)
    same_weights = ((whole / "model" / "model.safetensors").read_bytes()
                    == (killed / "model" / "model.safetensors").read_bytes())
    print()
    print("| run | epochs | dev F1 | dev P | dev R | test F1 | test P | test R |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(line("uninterrupted", reference))
    print(line("kill -9, then --resume", resumed))
    print()
    print(f"figures identical (metrics.json dev/test, every key): {'yes' if same_figures else 'NO'}")
    print(f"logs/metrics.csv identical: {'yes' if same_log else 'NO'}")
    print(f"model.safetensors identical: {'yes' if same_weights else 'NO'}")
    print(f"runs kept in {root}")
    return 0 if same_figures and same_log and same_weights else 1


if __name__ == "__main__":
    sys.exit(main())
