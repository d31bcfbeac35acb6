"""Prediction at scale (issue 18): streamed memory, workers, and one very long line.

    .venv/bin/python bench/stream_predict.py MODEL memory [--counts 10000 1000000]
        `predict_stream` over EWT sentences repeated (the raw `# text` lines of the train file, cycled, generated
        lazily) to N sentences, each N in a fresh process; prints sentences/s and the peak RSS, and the ratio of
        the largest N's peak to the smallest's (the target: at most 1.2).
    .venv/bin/python bench/stream_predict.py MODEL workers [--sentences 40000]
        `seqtag predict FILE --workers 1` against `--workers 2` on the same file of EWT sentences, each in its own
        process (start-up included, as a user pays it), alternating, `--repeats` times; prints sentences/s,
        the ratio of the medians, and whether the outputs are identical.
    .venv/bin/python bench/stream_predict.py MODEL long-line [--before CHECKOUT]
        `predict` of one 1 MB line of EWT text (about 200,000 tokens) in a fresh process: wall time and peak RSS;
        with --before, the same with the code of another checkout (PYTHONPATH), e.g. a worktree of 563a4e1.

The consumer only counts the results, so what is measured is the predictor's memory, not a list of results.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

CHILD = r"""
import itertools, json, resource, sys, time
sys.path.insert(0, {root!r})
import seqtag
texts = [line.rstrip("\n") for line in open({texts!r}, encoding="utf-8")]
model = seqtag.load({model!r})
count = {count}
started = time.perf_counter()
done = 0
for result in model.predict_stream(itertools.islice(itertools.cycle(texts), count)):
    done += 1
seconds = time.perf_counter() - started
print(json.dumps({{"sentences": done, "seconds": seconds,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

LONG = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import seqtag
text = open({line!r}, encoding="utf-8").read().rstrip("\n")
model = seqtag.load({model!r})
started = time.perf_counter()
result = model.predict(text)
seconds = time.perf_counter() - started
offsets = getattr(result, "offsets", None)
ok = offsets is None or all(text[s:e] == w for w, (s, e) in zip(result.words, offsets))
print(json.dumps({{"tokens": len(result.words), "seconds": seconds, "offsets_map_onto_text": ok,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _child(code: str, root: Path, env_path: Path | None = None) -> dict:
    env = {**os.environ}
    if env_path is not None:
        env["PYTHONPATH"] = str(env_path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
    if done.returncode != 0:
        sys.exit(f"child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _texts(folder: Path) -> Path:
    path = folder / "ewt-train.txt"
    path.write_text("\n".join(common.raw_sentences(common.EWT / "en_ewt-ud-train.conllu")) + "\n", encoding="utf-8")
    return path


def memory(args, folder: Path) -> None:
    texts = _texts(folder)
    peaks = {}
    for count in args.counts:
        figures = _child(CHILD.format(root=str(common.ROOT), texts=str(texts), model=str(args.model), count=count),
                         common.ROOT)
        peaks[count] = figures["peak_mib"]
        print(f"{count:>10,} sentences: {figures['sentences'] / figures['seconds']:,.0f} sentences/s, "
              f"{figures['seconds']:.1f} s, peak RSS {figures['peak_mib']:,.0f} MiB", flush=True)
    smallest, largest = min(peaks), max(peaks)
    print(f"peak RSS {largest:,} / {smallest:,} sentences: {peaks[largest] / peaks[smallest]:.3f}")


def workers(args, folder: Path) -> None:
    sentences = common.raw_sentences(common.EWT / "en_ewt-ud-train.conllu")
    source = folder / "input.txt"
    source.write_text("\n".join(itertools.islice(itertools.cycle(sentences), args.sentences)) + "\n",
                      encoding="utf-8")
    seconds: dict[int, list[float]] = {1: [], 2: []}
    digests: dict[int, set] = {1: set(), 2: set()}
    for _ in range(args.repeats):
        for count in (1, 2):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "seqtag", "-q", "predict", str(args.model), str(source),
                                   "--workers", str(count)], capture_output=True, cwd=common.ROOT)
            seconds[count].append(time.perf_counter() - started)
            if done.returncode != 0:
                sys.exit(done.stderr.decode()[-3000:])
            digests[count].add(hashlib.sha256(done.stdout).hexdigest())
    rates = {count: args.sentences / statistics.median(values) for count, values in seconds.items()}
    for count in (1, 2):
        print(f"--workers {count}: {rates[count]:,.0f} sentences/s (median of {args.repeats}, "
              f"runs {', '.join(f'{s:.1f}' for s in seconds[count])} s)")
    print(f"ratio 2 workers / 1 worker: {rates[2] / rates[1]:.2f}; outputs identical: "
          f"{len(digests[1] | digests[2]) == 1}")


def long_line(args, folder: Path) -> None:
    words = " ".join(common.raw_sentences(common.EWT / "en_ewt-ud-train.conllu"))
    line = folder / "long.txt"
    line.write_text(words[:1_000_000].rsplit(" ", 1)[0] + "\n", encoding="utf-8")
    runs = [("this code", common.ROOT)] + ([("--before", Path(args.before))] if args.before else [])
    for name, root in runs:
        figures = _child(LONG.format(root=str(root), line=str(line), model=str(args.model)), root, root)
        print(f"{name} ({root}): {figures['tokens']:,} tokens in {figures['seconds']:.1f} s, peak RSS "
              f"{figures['peak_mib']:,.0f} MiB, offsets map onto the text: {figures['offsets_map_onto_text']}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("what", choices=("memory", "workers", "long-line"))
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--sentences", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", help="a checkout of the code to compare with (long-line)")
    args = parser.parse_args()
    args.model = args.model.resolve()  # the children run in other folders
    print(f"model {args.model}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        {"memory": memory, "workers": workers, "long-line": long_line}[args.what](args, Path(folder))


if __name__ == "__main__":
    main()
