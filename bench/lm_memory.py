"""Peak memory of language-model training on a corpus and on the same corpus repeated ten times.

Each size trains in its own child process (the char-lm recipe, the same number of steps, a
fresh datasets cache), so each peak RSS is that run's alone. The token stream is read from
datasets' memory-mapped Arrow files, so ten times the text should cost far less than ten
times the memory.

    .venv/bin/python bench/lm_memory.py [--recipe char-lm] [--times 1 10] [--steps 100]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

FILES = {"char-lm": common.SHAKESPEARE, "word-lm": common.WIKITEXT / "valid.txt",
         "bpe-lm": common.SHAKESPEARE}


def child(recipe_name: str, corpus: str, steps: int, out: str) -> None:
    from seqtag.config import load_recipe
    from seqtag.training import train

    recipe = load_recipe(recipe_name, ["train.progress_bar=false", f"train.max_steps={steps}",
                                       "train.val_check_interval=1.0"], train=corpus)
    start = time.perf_counter()
    result = train(recipe, out)
    print(f"{result.metrics['train_tokens']:,} training tokens | "
          f"{time.perf_counter() - start:.0f} s | peak RSS {common.peak_rss_mb():.0f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", choices=sorted(FILES), default="char-lm")
    parser.add_argument("--times", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "OUT"))
    args = parser.parse_args()
    if args.child:
        child(args.recipe, args.child[0], args.steps, args.child[1])
        return

    text = Path(FILES[args.recipe]).read_bytes()
    with tempfile.TemporaryDirectory(prefix="seqtag-lm-memory-") as tmp:
        for times in args.times:
            corpus = Path(tmp) / f"corpus-x{times}.txt"
            corpus.write_bytes(text * times)
            env = {**os.environ, "HF_DATASETS_CACHE": str(Path(tmp) / f"cache-x{times}")}
            print(f"{args.recipe} corpus x{times} ({corpus.stat().st_size / 2**20:.1f} MiB), {args.steps} steps: ",
                  end="", flush=True)
            subprocess.run([sys.executable, __file__, "--recipe", args.recipe, "--steps", str(args.steps),
                            "--child", str(corpus), str(Path(tmp) / f"run-x{times}")],
                           check=True, env=env, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
