"""Prediction speed, accuracy, cold start and installed size: PyTorch fp32, PyTorch int8, onnxruntime fp32 and
onnxruntime int8, side by side in one run, on one tagger or classifier and its test file.

For each path: tokens per second of `predict()` from raw text (splitting, encoding, batching, the network,
decoding, result objects; the median of --repeats runs over the same texts), and the figure `evaluate` gives
on the test file (accuracy, or span F1 for span schemes). The ONNX folders are exported first (into --work,
default a temporary folder; an existing export there is reused with --reuse). Then the cold start of each
backend, a new process from its start to its first prediction (median of --cold runs), and the installed size
of the distributions each path actually imports (read from the cold-start process's sys.modules).

    OMP_NUM_THREADS=1 .venv/bin/python bench/export_speed.py runs/ud-pos/model \\
        /work/shared/data/ud_english_ewt/en_ewt-ud-test.conllu
    OMP_NUM_THREADS=1 .venv/bin/python bench/export_speed.py runs/wnut-ner/model \\
        /work/shared/data/wnut17/emerging.test.annotated
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import common  # noqa: F401 - puts the project root on sys.path

import seqtag
from seqtag.export import export_onnx

COLD = """
import json, sys, time
start = float(sys.argv[1])
import seqtag
model = seqtag.load(sys.argv[2])
model.predict(["Ada Lovelace visited Paris on Monday ."])
first = time.time() - start
print(json.dumps({"seconds": first, "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def raw_texts(path: Path, limit: int | None) -> list[str]:
    """The test file's sentences as raw text: CoNLL-U `# text =` lines, else each block's first column joined
    by spaces (CoNLL files keep no raw text); for a classifier's class files (a.pos,a.neg) every line."""
    if "," in str(path):
        texts = [line for name in str(path).split(",") for line in Path(name).read_text(encoding="utf-8").splitlines()]
        return texts[:limit] if limit else texts
    lines = path.read_text(encoding="utf-8").splitlines()
    texts = [line[len("# text = "):] for line in lines if line.startswith("# text = ")]
    if not texts:
        block: list[str] = []
        for line in lines + [""]:
            if not line.strip():
                if block:
                    texts.append(" ".join(block))
                block = []
            elif not line.startswith(("#", "-DOCSTART-")):
                block.append(line.split()[0])
    return texts[:limit] if limit else texts


def headline(metrics: dict) -> tuple[str, float]:
    for key in ("f1", "accuracy"):
        if key in metrics:
            return key, metrics[key]
    raise SystemExit(f"no accuracy or f1 in {sorted(metrics)}")


def speed(model, texts: list[str], repeats: int, batch_size: int) -> tuple[float, int]:
    """(median tokens/s, tokens) of predict() over the texts."""
    results = model.predict(texts, batch_size=batch_size)  # also the warm-up run
    tokens = sum(len(r.words) for r in results) if hasattr(results[0], "words") else sum(
        len(model.featurizer.tokens([text])[0]) for text in texts)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(texts, batch_size=batch_size)
        times.append(time.perf_counter() - start)
    return tokens / statistics.median(times), tokens


def installed_mb(modules: list[str]) -> tuple[float, list[str]]:
    """MiB on disk of the distributions that provide these top-level modules (seqtag itself left out)."""
    providers = metadata.packages_distributions()
    names = sorted({dist for module in modules for dist in providers.get(module, []) if dist != "seqtag"})
    total = 0
    for name in names:
        for file in metadata.distribution(name).files or []:
            try:
                total += file.locate().stat().st_size
            except OSError:
                pass
    return total / 2**20, names


def cold_start(path: Path, runs: int) -> tuple[float, float, list[str]]:
    """(median seconds from process start to first prediction, MiB installed, distributions) for a path."""
    seconds, modules = [], []
    for _ in range(runs):
        start = time.time()
        done = subprocess.run([sys.executable, "-c", COLD, str(start), str(path)], capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONPATH": str(common.ROOT)})
        result = json.loads(done.stdout.strip().splitlines()[-1])
        seconds.append(result["seconds"])
        modules = result["modules"]
    size, dists = installed_mb(modules)
    return statistics.median(seconds), size, dists


def equality(torch_model, onnx_model, texts: list[str], batch_size: int) -> str:
    """How the onnxruntime fp32 predictions compare with PyTorch's on every text: labels (or classes) and the
    largest difference of a probability."""
    ours, theirs = torch_model.predict(texts, batch_size=batch_size), onnx_model.predict(texts, batch_size=batch_size)
    if hasattr(ours[0], "labels"):
        pairs = [(a, b) for x, y in zip(ours, theirs) for a, b in zip(x.labels, y.labels)]
        gap = max((abs(a - b) for x, y in zip(ours, theirs) for a, b in zip(x.probabilities, y.probabilities)),
                  default=0.0)
        unit = "tokens"
    else:
        pairs = [(x.label, y.label) for x, y in zip(ours, theirs)]
        gap = max(abs(x.probabilities[k] - y.probabilities[k]) for x, y in zip(ours, theirs) for k in x.probabilities)
        unit = "texts"
    differing = sum(a != b for a, b in pairs)
    return (f"onnxruntime fp32 against PyTorch fp32: {len(pairs):,} {unit}, {differing} with another label, "
            f"largest probability difference {gap:.1e}")


def language_model_equality(model_dir: Path, folder: Path, test: Path, prompt: str, tokens: int) -> str:
    """Perplexity on the test text and greedy generation, PyTorch against onnxruntime."""
    torch_model, onnx_model = seqtag.load(model_dir), seqtag.load(folder)
    ours, theirs = torch_model.evaluate(test), onnx_model.evaluate(test)
    generated = [m.generate(prompt, max_tokens=tokens, greedy=True) for m in (torch_model, onnx_model)]
    return (f"perplexity PyTorch {ours['perplexity']:.6f}, onnxruntime {theirs['perplexity']:.6f} "
            f"(difference {abs(ours['perplexity'] - theirs['perplexity']):.1e}); greedy generation of {tokens} "
            f"tokens from {prompt!r}: {'identical' if generated[0] == generated[1] else 'DIFFERENT'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a PyTorch model directory (tagger, classifier or language model)")
    parser.add_argument("test", type=Path, help="its labelled test file (read as evaluate reads it)")
    parser.add_argument("--work", type=Path, help="where the ONNX folders go (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="reuse the exports already in --work")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--texts", type=int, default=0, help="predict only the first N texts (0: all)")
    parser.add_argument("--cold", type=int, default=3, help="cold-start runs per backend")
    parser.add_argument("--prompt", default="ROMEO:", help="language models: the greedy generation's prompt")
    parser.add_argument("--generate", type=int, default=200, help="language models: tokens to generate")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="seqtag-export-bench-"))
    folders = {}
    for int8 in (False, True):
        folder = work / ("onnx-int8" if int8 else "onnx")
        if not (args.reuse and (folder / "export.json").is_file()):
            export_onnx(args.model, folder, int8=int8)
        folders[int8] = folder
    if seqtag.load(folders[False]).task == "lm":  # a language model: equality only (its speed is not predict's)
        print(language_model_equality(args.model, folders[False], args.test, args.prompt, args.generate))
        return
    texts = raw_texts(args.test, args.texts)
    paths = {
        "pytorch fp32": lambda: seqtag.load(args.model),
        "pytorch int8": lambda: seqtag.load(args.model, quantize="int8"),
        "onnxruntime fp32": lambda: seqtag.load(folders[False]),
        "onnxruntime int8": lambda: seqtag.load(folders[True]),
    }
    print(f"{args.model} on {args.test}: {len(texts)} texts, batch size {args.batch_size}, "
          f"threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"{'path':<18} {'tokens/s':>10} {'speed-up':>9} {'figure':>16} {'change':>8}")
    base_speed = base_figure = None
    for name, load in paths.items():
        model = load()
        tokens_per_second, _ = speed(model, texts, args.repeats, args.batch_size)
        key, figure = headline(model.evaluate(args.test))
        base_speed, base_figure = base_speed or tokens_per_second, base_figure if base_figure is not None else figure
        print(f"{name:<18} {tokens_per_second:>10,.0f} {tokens_per_second / base_speed:>8.2f}x "
              f"{key:>8} {figure:>7.2f} {figure - base_figure:>+8.2f}")
    print(equality(seqtag.load(args.model), seqtag.load(folders[False]), texts, args.batch_size))
    print(f"\n{'cold start':<18} {'seconds':>8} {'installed MiB':>14}  distributions imported")
    for name, path in (("pytorch", args.model), ("onnxruntime", folders[False])):
        seconds, size, dists = cold_start(path, args.cold)
        print(f"{name:<18} {seconds:>8.2f} {size:>14.0f}  {', '.join(dists)}")


if __name__ == "__main__":
    main()
