"""Fuzz every reader far longer than the test suite does (issue 11): 100,000 examples per reader by default.

The inputs and the checks are those of tests/test_fuzz.py (real corpus slices from ../shared/data and generated
documents, mutated byte by byte; rows must fit the reader's Arrow features, and every error must be an
InputError naming the file and, for a problem on one line, that line). Here a failing example does not stop
the run: it is counted as a crash and the first few are printed with the input, so one run gives the count.

    OMP_NUM_THREADS=1 .venv/bin/python bench/fuzz_readers.py                    # 100,000 per reader
    OMP_NUM_THREADS=1 .venv/bin/python bench/fuzz_readers.py --examples 5000 --readers csv,jsonl

`--public N` also runs N examples per reader through the public reader (Dataset.from_generator, the Arrow
cache, a fresh file name each), about ten times slower an example.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="seqtag-fuzz-hf-"))
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from hypothesis import given  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402

import test_fuzz  # noqa: E402  (tests/test_fuzz.py: the inputs and checks)


def fuzz(name: str, examples: int, public: bool, seed: int, root: Path, shown: int = 3) -> dict:
    """Run `examples` inputs through one reader; count outcomes and crashes (anything but a clear error)."""
    workspace = test_fuzz.Workspace(Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root)))
    cache_dir = str(root / f"cache-{name}") if public else None
    counts = {"ok": 0, "clear errors": 0, "crashes": 0}
    crashes: list[str] = []

    @hypothesis_seed(seed)
    @test_fuzz.fuzz_settings(examples, derandomize=False)
    @given(test_fuzz.SEEDS)
    def check(example_seed):
        try:
            outcome = test_fuzz.run_example(name, workspace, random.Random(example_seed), public, cache_dir)
        except Exception:  # noqa: BLE001 - every crash is counted, the first few shown
            counts["crashes"] += 1
            if len(crashes) < shown:
                crashes.append(f"random.Random({example_seed}):\n{traceback.format_exc(limit=-4)}")
            return
        counts["ok" if outcome == "ok" else "clear errors"] += 1

    started = time.perf_counter()
    check()
    counts["seconds"] = time.perf_counter() - started
    counts["crash examples"] = crashes
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000, help="examples per reader (parsing path)")
    parser.add_argument("--public", type=int, default=0, help="examples per reader through the public reader")
    parser.add_argument("--readers", default=",".join(test_fuzz.READERS), help="comma-separated reader names")
    parser.add_argument("--seed", type=int, default=11, help="hypothesis seed (the run is repeatable)")
    args = parser.parse_args()
    logging.getLogger("seqtag").setLevel(logging.ERROR)  # skipped rows are logged as warnings: not news here
    root = Path(tempfile.mkdtemp(prefix="seqtag-fuzz-bench-"))
    print(f"real corpora: {test_fuzz.DATA} ({'present' if test_fuzz.DATA.is_dir() else 'absent'}); files in {root}")
    print("| reader | path | examples | read | clear errors | crashes | seconds | ms/example |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    total_crashes = 0
    for name in args.readers.split(","):
        for public, examples in ((False, args.examples), (True, args.public)):
            if not examples:
                continue
            result = fuzz(name, examples, public, args.seed, root)
            done = result["ok"] + result["clear errors"] + result["crashes"]
            total_crashes += result["crashes"]
            print(f"| {name} | {'public' if public else 'parsing'} | {done:,} | {result['ok']:,} | "
                  f"{result['clear errors']:,} | {result['crashes']} | {result['seconds']:.0f} | "
                  f"{1000 * result['seconds'] / max(done, 1):.2f} |", flush=True)
            for crash in result["crash examples"]:
                print(crash, file=sys.stderr)
    print(f"crashes: {total_crashes}")


if __name__ == "__main__":
    main()
