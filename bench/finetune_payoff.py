"""Does fine-tuning pay off against training from scratch on a small new domain? (issue 21, point 5)

A WNUT-17 parent (`wnut-ner` as shipped, time-limited to --base-minutes) is fine-tuned on each CrossNER domain
(100-200 training sentences, most of their types new to it), once with every domain label appended as new and
once with `finetune.label_map` putting the domain's organisation onto the parent's corporation (person and
location already share their names). From scratch is `seqtag train wnut-ner` on the same files. Every run is
the command a user types, with the recipe's own budget (40 epochs, early stopping after 8 checks without gain)
and seeds 1..--seeds as `train.seed`. Figures: test span F1 per domain (mean over seeds), the mean over the
four domains, and fine-tuned minus scratch.

    OMP_NUM_THREADS=1 .venv/bin/python bench/finetune_payoff.py [--jobs 2] [--seeds 3]
    OMP_NUM_THREADS=1 .venv/bin/python bench/finetune_payoff.py --tag=-fresh --set finetune.start_new_labels=fresh
    OMP_NUM_THREADS=1 .venv/bin/python bench/finetune_payoff.py --tag=-lm --lm /tmp/ctx/lm256/model   # LM features
    OMP_NUM_THREADS=1 .venv/bin/python bench/finetune_payoff.py --vectors /tmp/vectors-enwiki60/word2vec-100d.txt

Run folders go to --root (default /tmp/payoff); a finished run is reused (delete it to measure again). --set
applies to the fine-tuning runs only, --both to the fine-tuning and the from-scratch runs (a training setting such
as train.ema_decay), --lm and --vectors to the parent and the from-scratch runs (a fine-tuned model keeps its
parent's embedders and vectors).
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
import finetune_quality
from finetune_quality import CROSSNER, DOMAINS, SEQTAG

WNUT = {"train": common.WNUT / "wnut17train.conll", "dev": common.WNUT / "emerging.dev.conll",
        "test": common.WNUT / "emerging.test.annotated"}
LABEL_MAP = "organisation=corporation"


def run(command: list[str], out: Path) -> dict:
    """`finetune_quality.run` (the command into `out` unless its model exists), then its metrics.json with the
    minutes it took and the dev checks it made (rows of logs/metrics.csv with a dev score)."""
    minutes = finetune_quality.run(command, out)
    figures = json.loads((out / "model" / "metrics.json").read_text())
    with open(out / "logs" / "metrics.csv", newline="") as rows:
        figures["epochs"] = sum(1 for row in csv.DictReader(rows) if row.get("dev_score"))
    return {**figures, "minutes": minutes}


def given(files: dict) -> list[str]:
    return [x for split, path in files.items() for x in (f"--{split}", str(path))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="/tmp/payoff")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--base-minutes", type=float, default=12)
    parser.add_argument("--lm", help="a contextual-lm model: the parent and the scratch runs add the lm embedder")
    parser.add_argument("--vectors", help="a word vectors file: the parent and the scratch runs read it too")
    parser.add_argument("--set", dest="set", action="append", default=[], help="a fine-tuning --set (repeatable)")
    parser.add_argument("--both", action="append", default=[],
                        help="a --set for the from-scratch and the fine-tuning runs alike (repeatable; not the parent)")
    parser.add_argument("--tag", default="", help="suffix of this variant's folders (the scratch ones too with --both)")
    parser.add_argument("--only", choices=["scratch"], help="run only the from-scratch routes (no table)")
    args = parser.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    features = (["--set", "model.embedders=[word,char_cnn,lm]", "--set", f"model.lm={args.lm}"] if args.lm else [])
    features += ["--set", f"model.pretrained_vectors={args.vectors}"] if args.vectors else []
    kind = ("-lm" if args.lm else "") + ("-vec" if args.vectors else "")
    base = root / f"wnut-base{kind}"
    base_figures = run([SEQTAG, "train", "wnut-ner", *given(WNUT), "--set",
                        f"train.max_time_minutes={args.base_minutes}", *features], base)
    print(f"parent: WNUT-17 test F1 {base_figures['test']['f1']:.2f} ({base_figures['minutes']:.1f} min, "
          f"{base_figures['epochs']} epochs)", flush=True)
    both = [x for s in args.both for x in ("--set", s)]
    tuned_set = [x for s in args.set for x in ("--set", s)] + both
    scratch_tag = args.tag if args.both else ""
    jobs = []
    for domain in args.domains.split(","):
        files = {split: CROSSNER / domain / f"{split}.txt" for split in ("train", "dev", "test")}
        for seed in range(1, args.seeds + 1):
            seed_set = ["--set", f"train.seed={seed}"]
            jobs.append((domain, seed, "scratch", [SEQTAG, "train", "wnut-ner", *given(files), *seed_set, *features,
                                                        *both], root / f"{domain}-scratch{kind}{scratch_tag}-s{seed}"))
            jobs.append((domain, seed, "fine-tuned", [SEQTAG, "finetune", str(base / "model"), *given(files),
                                                      *seed_set, *tuned_set],
                         root / f"{domain}-tuned{kind}{args.tag}-s{seed}"))
            jobs.append((domain, seed, "fine-tuned, label map",
                         [SEQTAG, "finetune", str(base / "model"), *given(files), *seed_set, *tuned_set,
                          "--set", f"finetune.label_map={LABEL_MAP}"],
                         root / f"{domain}-mapped{kind}{args.tag}-s{seed}"))
    if args.only:
        jobs = [job for job in jobs if job[2] == args.only]
    # From-scratch runs last: they are the same for every variant, so usually done already (or by another process).
    order = sorted(range(len(jobs)), key=lambda i: jobs[i][2] == "scratch")
    with ThreadPoolExecutor(args.jobs) as pool:
        done = dict(zip(order, pool.map(lambda i: run(jobs[i][3], jobs[i][4]), order)))
    results = [done[i] for i in range(len(jobs))]
    if args.only:
        return
    table: dict[tuple[str, str], list[float]] = {}
    epochs: dict[str, list[int]] = {}
    for (domain, seed, route, _, _), figures in zip(jobs, results):
        table.setdefault((domain, route), []).append(figures["test"]["f1"])
        epochs.setdefault(route, []).append(figures["epochs"])
    routes = ("scratch", "fine-tuned", "fine-tuned, label map")
    print(f"\n| domain | {' | '.join(routes)} |  (test F1, mean of {args.seeds} seeds)")
    print("| --- |" + " ---: |" * len(routes))
    means = {route: [] for route in routes}
    for domain in args.domains.split(","):
        cells = []
        for route in routes:
            value = statistics.mean(table[(domain, route)])
            means[route].append(value)
            cells.append(f"{value:.2f}")
        print(f"| {domain} | {' | '.join(cells)} |")
    overall = {route: statistics.mean(values) for route, values in means.items()}
    print(f"| **mean** | {' | '.join(f'{overall[r]:.2f}' for r in routes)} |")
    for route in routes[1:]:
        print(f"{route}: {overall[route] - overall['scratch']:+.2f} against scratch")
    per_seed = {route: [statistics.mean(table[(d, route)][s] for d in args.domains.split(","))
                        for s in range(args.seeds)] for route in routes}
    print("mean per seed: " + "; ".join(f"{r}: {' / '.join(f'{v:.2f}' for v in per_seed[r])}" for r in routes))
    print("dev checks per run (median): " + "; ".join(f"{r}: {statistics.median(epochs[r])}" for r in routes))


if __name__ == "__main__":
    main()
