"""How fast pretrained vectors are read, and how much memory it takes (issue 9).

    .venv/bin/python bench/vectors_speed.py [--size-mb 1024] [--repeats 3] [--folder /tmp/vectors-bench]

Writes GloVe-like files of about --size-mb (300-d text without header, its gzip, word2vec binary and its gzip;
in /tmp, never in git; reused when present), then reads each in a fresh process with a 20,000-word vocabulary,
as `seqtag train` does (first_n 0, then the default pretrained_max_words 100,000), and prints the median
wall seconds, MB/s of the file on disk (and of the uncompressed data), the median CPU seconds of the reading
process (what a busy shared machine does not inflate) and its peak RSS.

The vocabulary: 16,000 words listed in the file as they are, 2,000 found only through a case variant
("Word…" for "word…") and 2,000 absent. The numbers repeat from a pool of 1,000 formatted vectors so that the
file is written in seconds; every line still has its own word and the full 300 numbers.
"""
from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import common

DIM = 300
VOCABULARY = 20_000
POOL = 1_000


def word(i: int) -> str:
    """The file's i-th word; every 10th is capitalised, so a lowercase vocabulary finds it through a variant."""
    return f"Word{i}" if i % 10 == 5 else f"word{i}"


def write_files(folder: Path, size_mb: int) -> tuple[dict[str, Path], int]:
    """The four files and the number of words in them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pool = rng.normal(0, 0.4, size=(POOL, DIM)).astype(np.float32)
    text_pool = [" ".join(f"{v:.6f}" for v in row) for row in pool]
    binary_pool = [row.astype("<f4").tobytes() for row in pool]
    line_bytes = len(text_pool[0]) + 12
    count = size_mb * 2**20 // line_bytes
    files = {"text": folder / "glove-like.300d.txt", "binary": folder / "word2vec-like.300d.bin"}
    if not files["text"].exists():
        with open(files["text"], "w", encoding="utf-8", buffering=16 << 20) as out:
            for i in range(count):
                out.write(f"{word(i)} {text_pool[i % POOL]}\n")
    if not files["binary"].exists():
        with open(files["binary"], "wb", buffering=16 << 20) as out:
            out.write(f"{count} {DIM}\n".encode())
            for i in range(count):
                out.write(f"{word(i)} ".encode() + binary_pool[i % POOL] + b"\n")
    for kind in ("text", "binary"):
        packed = files[kind].with_name(files[kind].name + ".gz")
        if not packed.exists():
            # gzip -1: writing a gigabyte at level 6 takes minutes; reading costs the same either way
            subprocess.run(f"gzip -1 -c {files[kind]} > {packed}", shell=True, check=True)
        files[f"{kind}.gz"] = packed
    return files, count


def vocabulary(count: int) -> list[str]:
    """20,000 lowercase words spread over the file: 16,000 exact, 2,000 through a case variant, 2,000 absent."""
    step = max(1, count // 20_000)
    exact = [word(i) for i in range(0, count, step) if i % 10 != 5][:16_000]
    variants = [word(i).lower() for i in range(5, count, 10)][::max(1, count // 10 // 2_000)][:2_000]
    absent = [f"absent{i}" for i in range(VOCABULARY - len(exact) - len(variants))]
    return exact + variants + absent


def read_once(path: str, count: int, first_n: int) -> None:
    """Child process: one read, printed as JSON."""
    from seqtag.data.vectors import coverage, load_vectors, match_words

    words = vocabulary(count)
    start, cpu = time.perf_counter(), time.process_time()
    vectors = load_vectors(path, DIM, words, first_n)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    found = coverage(match_words(vectors, words, lowercase=True), dict.fromkeys(words, 1))
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_mb": common.peak_rss_mb(), "kept": len(vectors),
                      "found": found["types_found"], "variants": found["lowercase_fallback_types"]}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default="/tmp/vectors-bench")
    parser.add_argument("--read", nargs=3, metavar=("PATH", "COUNT", "FIRST_N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        read_once(args.read[0], int(args.read[1]), int(args.read[2]))
        return
    start = time.perf_counter()
    files, count = write_files(Path(args.folder), args.size_mb)
    print(f"{count:,} words of {DIM} dimensions; files ready in {time.perf_counter() - start:.0f} s", flush=True)
    raw_size = {kind: files[kind.removesuffix(".gz")].stat().st_size for kind in files}
    print("| file | first_n | on disk | median s (of 3) | MB/s on disk | MB/s uncompressed | CPU s | MB/s per CPU s "
          "(uncompressed) | peak RSS | kept | found (through a variant) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, path in files.items():
        for first_n in (0, 100_000):
            runs = []
            for _ in range(args.repeats):
                out = subprocess.run([sys.executable, __file__, "--read", str(path), str(count), str(first_n)],
                                     check=True, capture_output=True, text=True).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
            seconds = common.median([r["seconds"] for r in runs])
            cpu = common.median([r["cpu"] for r in runs])
            size = path.stat().st_size
            last = runs[-1]
            print(f"| {path.name} | {first_n:,} | {size / 2**20:,.0f} MB | {seconds:.2f} | {size / 2**20 / seconds:,.0f} "
                  f"| {raw_size[kind] / 2**20 / seconds:,.0f} | {cpu:.2f} | {raw_size[kind] / 2**20 / cpu:,.0f} | {max(r['rss_mb'] for r in runs):,.0f} MB | "
                  f"{last['kept']:,} | {last['found']:,} ({last['variants']:,}) |", flush=True)


if __name__ == "__main__":
    main()
