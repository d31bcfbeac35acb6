"""How long a person waits for the command line: `seqtag --help`, and `seqtag predict` of one sentence.

Each command runs as its own process, the way a person starts it (the `seqtag` script beside this
Python, else `python -m seqtag`); one run warms the file cache, then the medians of --repeats runs'
wall time and CPU time (user + system, steadier when other work shares the machine) are printed. Without --model, a demo tagger is trained first (--smoke, a few seconds).
With --imports, the slowest top-level imports of the predict run are listed (python -X importtime).

    .venv/bin/python bench/cli_latency.py [--model runs/demo/model] [--repeats 5] [--imports]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

SENTENCE = "Ada Lovelace visited Paris on Monday.\n"
TARGETS = {"seqtag --help": 1.0, "seqtag predict (one sentence)": 2.0}


def seqtag_command() -> list[str]:
    script = Path(sys.executable).parent / "seqtag"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "seqtag"]


def timed(command: list[str], stdin: str = "") -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run; CPU time (user + system) is steadier on a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, input=stdin, text=True, check=True, capture_output=True, cwd=common.ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def slowest_imports(command: list[str], stdin: str, count: int = 8) -> list[tuple[float, str]]:
    """(seconds, module) of the slowest imports made at the top of the command's import tree."""
    code = "import sys, runpy; sys.argv = sys.argv[1:]; runpy.run_module('seqtag', run_name='__main__')"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code, "seqtag", *command], input=stdin,
                          text=True, capture_output=True, cwd=common.ROOT)
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            if len(name) - len(name.lstrip()) <= 3:  # a top-level import, or one level below
                rows.append((int(cumulative) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a saved tagger (default: train the demo recipe with --smoke)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--imports", action="store_true", help="list the slowest imports of the predict run")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    seqtag = seqtag_command()
    with tempfile.TemporaryDirectory(prefix="seqtag-cli-latency-") as scratch:
        model = args.model
        if model is None:
            subprocess.run([*seqtag, "--quiet", "train", "demo", "--smoke", "--out", scratch], check=True,
                           capture_output=True, cwd=common.ROOT)
            model = str(Path(scratch) / "model")
        runs = {"seqtag --help": ([*seqtag, "--help"], ""),
                "seqtag predict (one sentence)": ([*seqtag, "predict", model], SENTENCE)}
        print(f"command: {' '.join(seqtag)}   median of {args.repeats} runs after one warm-up")
        for name, (command, stdin) in runs.items():
            timed(command, stdin)
            walls, cpus = zip(*(timed(command, stdin) for _ in range(args.repeats)))
            seconds = common.median(list(walls))
            verdict = "ok" if seconds <= TARGETS[name] else "over"
            print(f"{name:<32} {seconds:6.2f} s wall  {common.median(list(cpus)):6.2f} s CPU   "
                  f"(target {TARGETS[name]:.0f} s wall: {verdict})")
        if args.imports:
            print("slowest imports of the predict run (cumulative seconds):")
            for seconds, module in slowest_imports(["predict", model], SENTENCE):
                print(f"  {seconds:6.2f}  {module}")


if __name__ == "__main__":
    main()
