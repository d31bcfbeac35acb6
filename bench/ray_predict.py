"""Ray Data prediction (issue 18): `seqtag.distributed.predict_with_ray` against one process, on the same files.

The input is the raw `# text` lines of the EWT training file (12,544 sentences; `--copies` repeats them), cut into
`--files` text files in a temporary folder. One process predicts them as `seqtag predict` does (each file in
sorted order, 4,096 lines at a time through `outputs.prediction_lines`), with each `--single-threads` torch
thread count. The Ray path runs with each `--actors` count twice: "cold", a plain call that starts a local Ray
instance and stops it (what a user waits for), and "warm", on an instance started once beforehand (the job
alone: the driver's model check, the actors' start and model load, prediction, the durable writes). Each
output is compared byte for byte with the 1-thread single process's. Wall times: the median of `--repeats`
rounds, each round running every way once, in turn.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ray_predict.py [--model DIR] [--files 4] [--copies 1] [--actors 1,2] \
        [--single-threads 1,2] [--repeats 1]

Without `--model`, the demo recipe is trained into /tmp/seqtag-ray-bench/demo (a few seconds) and used.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path

import common
import torch

import seqtag
from seqtag.data.text_readers import raw_lines
from seqtag.distributed import predict_with_ray
from seqtag.outputs import OUTPUTS

DEMO_RUN = Path("/tmp/seqtag-ray-bench/demo")


def single_process(model_dir: str, files: list[Path], threads: int) -> tuple[float, str]:
    """Seconds and output of one process predicting the files in sorted order, as `seqtag predict` does."""
    torch.set_num_threads(threads)
    model = seqtag.load(model_dir)
    outputs = OUTPUTS[model.task]
    start = time.perf_counter()
    written = []
    for path in sorted(files):
        lines = raw_lines(path)
        while chunk := list(islice(lines, 4096)):
            written.extend(f"{line}\n" for line in outputs.prediction_lines(model, chunk, False, "jsonl", None, 256))
    return time.perf_counter() - start, "".join(written)


def ray_job(model_dir: str, pattern: str, actors: int, scratch: Path) -> tuple[float, str, dict]:
    out = Path(tempfile.mkdtemp(dir=scratch, prefix=f"out-{actors}-"))
    start = time.perf_counter()
    summary = predict_with_ray(model_dir, pattern, out, num_actors=actors)
    seconds = time.perf_counter() - start
    joined = "".join(path.read_text(encoding="utf-8") for path in sorted(out.iterdir()))
    shutil.rmtree(out)
    return seconds, joined, summary


def differing_lines(output: str, reference: str) -> int:
    ours, theirs = output.split("\n"), reference.split("\n")
    return sum(a != b for a, b in zip(ours, theirs)) + abs(len(ours) - len(theirs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="A saved tagger (default: the demo recipe, trained into /tmp).")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--copies", type=int, default=1, help="How many times the EWT sentences are repeated.")
    parser.add_argument("--actors", default="1,2")
    parser.add_argument("--single-threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=1, help="Rounds of every way, in turn.")
    args = parser.parse_args()

    model_dir = args.model
    if model_dir is None:
        if not (DEMO_RUN / "model" / "config.json").exists():
            seqtag.train("demo", out=str(DEMO_RUN), **{"train.progress_bar": False})
        model_dir = str(DEMO_RUN / "model")
    sentences = common.raw_sentences(common.EWT / "en_ewt-ud-train.conllu") * args.copies
    scratch = Path(tempfile.mkdtemp(prefix="seqtag-ray-bench-"))
    share = -(-len(sentences) // args.files)
    files = []
    for index in range(args.files):
        path = scratch / "input" / f"ewt-{index:02d}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(f"{s}\n" for s in sentences[index * share:(index + 1) * share]), encoding="utf-8")
        files.append(path)
    pattern = str(scratch / "input" / "*.txt")
    print(f"{len(sentences):,} sentences in {args.files} files; model {model_dir}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}")

    import ray

    times: dict[str, list[float]] = {}
    differing: dict[str, int] = {}
    reference = None

    def record(name: str, seconds: float, output: str | None) -> None:
        times.setdefault(name, []).append(seconds)
        if output is not None:
            differing[name] = max(differing.get(name, 0), differing_lines(output, reference))

    for _ in range(args.repeats):  # every way once per round, so a busy spell of the machine hits them all
        for threads in map(int, args.single_threads.split(",")):
            seconds, output = single_process(model_dir, files, threads)
            reference = output if reference is None else reference
            record(f"one process, {threads} torch thread(s)", seconds, output)
        for actors in map(int, args.actors.split(",")):
            seconds, output, summary = ray_job(model_dir, pattern, actors, scratch)
            record(f"Ray cold (start + job + stop), {summary['actors']} actor(s), {summary['parts']} parts",
                   seconds, output)
        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        record("Ray instance start (ray.init)", time.perf_counter() - start, None)
        for actors in map(int, args.actors.split(",")):
            seconds, output, summary = ray_job(model_dir, pattern, actors, scratch)
            record(f"Ray warm (job only), {summary['actors']} actor(s)", seconds, output)
        ray.shutdown()
    shutil.rmtree(scratch)

    print(f"\nload average at the end {os.getloadavg()[0]:.1f}; {args.repeats} round(s)")
    print("\n| way | wall s, median (min-max) | sentences/s at the median | lines differing from 1-thread one process |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in times.items():
        middle = statistics.median(values)
        rate = f"{len(sentences) / middle:,.0f}" if name in differing else ""
        print(f"| {name} | {middle:.1f} ({min(values):.1f}-{max(values):.1f}) | {rate} | {differing.get(name, '')} |")


if __name__ == "__main__":
    main()
