"""Quality and training time on real corpora: runs `seqtag train` as a user would.

    .venv/bin/python bench/quality.py ud-pos [--set KEY=VALUE ...]     # UD English-EWT, UPOS
    .venv/bin/python bench/quality.py wnut-ner [--set KEY=VALUE ...]   # WNUT-17 entities
    .venv/bin/python bench/quality.py mr [--set KEY=VALUE ...]         # MR polarity, seeded 80/10/10 split
    .venv/bin/python bench/quality.py char-lm [--set ...]   # Tiny Shakespeare, dev = the file's last 10%
    .venv/bin/python bench/quality.py word-lm [--set ...]   # WikiText-2: train on valid.txt, test on test.txt
    .venv/bin/python bench/quality.py bpe-lm [--set ...]    # Tiny Shakespeare in byte-level BPE pieces

Prints the wall time of the whole command, the saved dev/test figures and the peak RSS
of the training process; for language models also a generated sample.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import common

CORPORA = {
    "ud-pos": common.ewt_files,
    "wnut-ner": lambda: {"train": str(common.WNUT / "wnut17train.conll"),
                         "dev": str(common.WNUT / "emerging.dev.conll"),
                         "test": str(common.WNUT / "emerging.test.annotated")},
    # MR has no official split: one seeded 80/10/10 split (data.test_fraction, data.split_seed).
    "mr": lambda: {"train": f"{common.MR / 'rt-polarity.pos'},{common.MR / 'rt-polarity.neg'}"},
    "char-lm": lambda: {"train": str(common.SHAKESPEARE)},
    "bpe-lm": lambda: {"train": str(common.SHAKESPEARE)},
    # Only WikiText-2's valid and test files are here: train on valid (its last 10% is the dev text).
    "word-lm": lambda: {"train": str(common.WIKITEXT / "valid.txt"), "test": str(common.WIKITEXT / "test.txt")},
}
FIXED = {"mr": ["data.test_fraction=0.1"]}
PROMPTS = {"char-lm": ["--prompt", "ROMEO:", "--max-tokens", "500", "--temperature", "0.8", "--seed", "1"],
           "word-lm": ["--prompt", "The", "--max-tokens", "80", "--top-p", "0.9", "--seed", "1"],
           "bpe-lm": ["--prompt", "ROMEO:", "--max-tokens", "150", "--temperature", "0.8", "--seed", "1"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe", choices=sorted(CORPORA))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    files = CORPORA[args.recipe]()
    out = args.out or str(common.ROOT / "runs" / f"bench-{args.recipe}")
    command = [str(common.ROOT / ".venv" / "bin" / "seqtag"), "train", args.recipe, "--out", out,
               "--set", "train.progress_bar=false"]
    for split, path in files.items():
        command += [f"--{split}", path]
    for override in FIXED.get(args.recipe, []) + args.overrides:
        command += ["--set", override]
    print(" ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=sys.stdout, stderr=subprocess.DEVNULL)
    minutes = (time.perf_counter() - start) / 60
    metrics = json.loads((common.Path(out) / "model" / "metrics.json").read_text())
    rss = common.peak_rss_mb(children=True)
    if args.recipe in PROMPTS:
        figures = " | ".join(f"{split} " + ", ".join(f"{k} {v:.4f}" for k, v in metrics[split].items() if k != "tokens")
                             + f" ({metrics[split]['tokens']} tokens)" for split in ("dev", "test") if split in metrics)
        print(f"{args.recipe}: {figures} | epochs {metrics['epochs']} | wall time {minutes:.1f} min | "
              f"peak RSS (training process) {rss:.0f} MiB")
        generate = [str(common.ROOT / ".venv" / "bin" / "seqtag"), "generate", f"{out}/model", *PROMPTS[args.recipe]]
        print(" ".join(generate))
        subprocess.run(generate, check=True)
        return
    key = "f1" if "f1" in metrics["test"] else "accuracy"
    print(f"{args.recipe}: dev {key} {metrics['dev'][key]:.2f} | test {key} {metrics['test'][key]:.2f} | "
          f"epochs {metrics['epochs']} | wall time {minutes:.1f} min | "
          f"peak RSS (training process) {rss:.0f} MiB")


if __name__ == "__main__":
    main()
