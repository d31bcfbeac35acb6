"""Fine-tuning with and without the kept distillation targets (`train.cache_mb`): the same `seqtag finetune` run
twice, each in its own process, one torch thread: once with train.cache_mb=0 (the parent runs on every batch of
every epoch, as it did before), once as shipped (the parent runs on a sentence once, in the first epoch). Prints the
seconds of epoch 1 and the median of the later epochs (dev checks included) of both, their ratio, the test F1 of
both (equal up to float rounding: the kept targets are the ones computed) and each run's peak RSS.

    OMP_NUM_THREADS=1 .venv/bin/python bench/finetune_speed.py PARENT_MODEL TRAIN DEV TEST [--epochs 6]
    # e.g. the WNUT-17 parents of bench/finetune_payoff.py on CrossNER music (with and without the LM pair):
    OMP_NUM_THREADS=1 .venv/bin/python bench/finetune_speed.py /tmp/payoff/wnut-base/model \\
        ../shared/data/crossner/music/{train,dev,test}.txt

With --compare KEY=VALUE (repeatable) the two runs are instead the defaults and the defaults with those settings
(e.g. --compare finetune.distill_swaps=0: what the swapped words' passes cost).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import common


def child(parent: str, files: list[str], out: str, epochs: int, settings: list[str]) -> None:
    from seqtag.finetuning import finetune

    clock = common.epoch_clock()
    result = finetune(parent, files[0], dev=files[1], test=files[2], out=out, overwrite=True, callbacks=[clock],
                      overrides=["train.progress_bar=false", f"train.max_epochs={epochs}", "train.patience=0",
                                 *settings])
    print("RESULT " + json.dumps({"epoch_seconds": clock.seconds, "test_f1": result.metrics["test"]["f1"],
                                  "peak_rss_mib": common.peak_rss_mb()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parent")
    parser.add_argument("files", nargs=3, metavar="TRAIN DEV TEST")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--compare", action="append", default=[], metavar="KEY=VALUE",
                        help="compare the defaults with the defaults and these settings (repeatable)")
    parser.add_argument("--child", nargs=2, metavar=("OUT", "SETTINGS_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.parent, args.files, args.child[0], args.epochs, json.loads(args.child[1]))
        return
    runs = ([("as shipped", []), (f"with {' '.join(args.compare)}", args.compare)] if args.compare else
            [("parent on every batch (train.cache_mb=0)", ["train.cache_mb=0"]), ("targets kept (as shipped)", [])])
    later = {}
    with tempfile.TemporaryDirectory(prefix="seqtag-finetune-speed-") as work:
        for number, (name, settings) in enumerate(runs):
            done = subprocess.run([sys.executable, __file__, args.parent, *args.files, "--epochs", str(args.epochs),
                                   "--child", os.path.join(work, str(number)), json.dumps(settings)],
                                  stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
            if done.returncode:
                raise SystemExit(f"the run {name} failed (status {done.returncode})")
            report = json.loads(done.stdout.rsplit("RESULT ", 1)[1])
            first, *rest = report["epoch_seconds"]
            later[name] = statistics.median(rest)
            print(f"{name}: epoch 1 {first:.2f} s, later epochs {later[name]:.2f} s (median of {len(rest)}) | test F1 "
                  f"{report['test_f1']:.2f} | peak RSS {report['peak_rss_mib']:.0f} MiB", flush=True)
    first_run, second_run = later.values()
    if args.compare:
        print(f"later epochs: {second_run / first_run:.2f}x the time of the defaults with {' '.join(args.compare)}")
    else:
        print(f"later epochs: {first_run / second_run:.2f}x faster with the targets kept")


if __name__ == "__main__":
    main()
