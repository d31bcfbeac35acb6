"""What durable saves cost (issue 17): `artifact.save_model` as it is (each file fsync'ed, then the staging folder,
then the parent folder after the rename) against the same save with `os.fsync` replaced by a no-op, side by side
in one run.

Two models, neither trained: the demo tagger's network (`recipes/demo.yaml`, at the demo data's vocabulary: 179
words, 54 characters, 13 labels; about 0.36 MB of weights) and the same network with a 100,000-word vocabulary
of 128-dimensional vectors (about 52 MB of float32 weights). Each save writes what a run writes: config.json,
model.safetensors, both tokenizers, labels.json and metrics.json, replacing the model saved before it (the two
renames of a run saving over its previous best). The two ways take turns (ABBA order), and `os.sync()` runs,
untimed, before every save: otherwise a durable save would also pay to write the dirty pages the no-op save
before it left (ext4's journal commit writes them), and the no-op save would look cheaper than it is.

    OMP_NUM_THREADS=1 .venv/bin/python bench/save_cost.py --saves 15
    OMP_NUM_THREADS=1 .venv/bin/python bench/save_cost.py --saves 15 --dir /some/other/disk
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import common  # puts the repository on sys.path

DEMO_SIZES = {"words": 179, "chars": 54, "labels": 13}  # what the demo recipe's data gives
LARGE_WORDS, LARGE_DIM = 100_000, 128


def model_parts(words: int, word_dim: int) -> tuple:
    """save_model's arguments for the demo recipe's network at `words` words of `word_dim` dimensions."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    from seqtag.config import load_recipe
    from seqtag.networks import Network

    recipe = load_recipe("demo")
    model = replace(recipe.model, word_dim=word_dim)
    sizes = {**DEMO_SIZES, "words": words}
    net = Network(model, sizes, list(model.embedders), "softmax")

    def tokenizer(count: int, prefix: str) -> Tokenizer:
        vocab = {"[PAD]": 0, "[UNK]": 1, **{f"{prefix}{i}": i + 2 for i in range(count - 2)}}
        return Tokenizer(WordLevel(vocab, unk_token="[UNK]"))

    config = {"task": "tagging", "sizes": sizes, "recipe": {"task": "tagging", "model": {"word_dim": word_dim}}}
    tokenizers = {"word_tokenizer.json": tokenizer(words, "w"),
                  "char_tokenizer.json": tokenizer(DEMO_SIZES["chars"], "c")}
    labels = ["O", *[f"{p}-{t}" for t in ("PER", "LOC", "ORG") for p in "BIES"]]
    return config, net.state_dict(), tokenizers, labels, {"dev_f1": 0.0}


@contextlib.contextmanager
def fsync_as(function):
    """`os.fsync` replaced by `function` (artifact calls it as os.fsync)."""
    real = os.fsync
    os.fsync = function
    try:
        yield
    finally:
        os.fsync = real


def timed_saves(parts: tuple, folder: Path, saves: int) -> tuple[dict[str, list[float]], int]:
    """Milliseconds per save of each way, the two ways taking turns after one untimed save of each, and of the
    durable saves' time inside fsync; and how many times a save calls fsync."""
    from seqtag.artifact import save_model

    calls, real_fsync = [], os.fsync

    def timed_fsync(fd: int) -> None:
        start = time.perf_counter()
        real_fsync(fd)
        calls.append(time.perf_counter() - start)

    ways = {"fsync": timed_fsync, "no fsync": lambda fd: calls.append(0.0)}
    times = {way: [] for way in [*ways, "inside fsync"]}
    fsyncs = {way: 0 for way in ways}
    for round_ in range(saves + 1):
        for way in (list(ways) if round_ % 2 == 0 else list(ways)[::-1]):
            os.sync()
            calls.clear()
            with fsync_as(ways[way]):
                start = time.perf_counter()
                save_model(folder / way.replace(" ", "-") / "model", *parts)
                elapsed = time.perf_counter() - start
            fsyncs[way] = len(calls)
            if round_:  # the first round creates the models; the rest replace them, as a run saving again does
                times[way].append(elapsed * 1000)
                if way == "fsync":
                    times["inside fsync"].append(sum(calls) * 1000)
    return times, fsyncs["fsync"]


def disk_note(folder: Path) -> str:
    """The file system and device the saves go to (df)."""
    try:
        out = subprocess.run(["df", "-T", str(folder)], capture_output=True, text=True, check=True).stdout
        device, kind = out.splitlines()[1].split()[:2]
        return f"{kind} on {device}"
    except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=15, help="timed saves of each way, per model")
    parser.add_argument("--dir", type=Path, default=None, help="where to save (default: the system's temp folder)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="seqtag-save-cost-", dir=args.dir))
    try:
        print(f"saving into {folder} ({disk_note(folder)}); {os.cpu_count()} CPUs, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.saves} saves of each way, medians")
        print(f"{'model':<34} {'weights MB':>10} {'files MB':>9} {'fsyncs':>6} {'fsync ms':>9} {'no-op ms':>9} "
              f"{'ratio':>6} {'extra ms':>9} {'in fsync ms':>11}  min-max ms")
        for name, words, dim in (("demo tagger", DEMO_SIZES["words"], 50),
                                 (f"large ({LARGE_WORDS:,} words x {LARGE_DIM})", LARGE_WORDS, LARGE_DIM)):
            parts = model_parts(words, dim)
            weights = sum(t.numel() * t.element_size() for t in parts[1].values()) / 1e6
            times, fsyncs = timed_saves(parts, folder / name.split()[0], args.saves)
            files = sum(p.stat().st_size for p in (folder / name.split()[0] / "fsync" / "model").iterdir()) / 1e6
            durable, plain = common.median(times["fsync"]), common.median(times["no fsync"])
            print(f"{name:<34} {weights:>10.2f} {files:>9.2f} {fsyncs:>6} {durable:>9.1f} {plain:>9.1f} "
                  f"{durable / plain:>6.2f} {durable - plain:>9.1f} {common.median(times['inside fsync']):>11.1f}  "
                  f"fsync {min(times['fsync']):.1f}-{max(times['fsync']):.1f}, no-op {min(times['no fsync']):.1f}-"
                  f"{max(times['no fsync']):.1f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
