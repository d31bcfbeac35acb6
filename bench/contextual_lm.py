"""Contextual string embeddings end to end: a character LM pair on N MB of English Wikipedia, then WNUT-17 with
and without the pair's states as word features.

(a) `seqtag train contextual-lm` on the first --mb MB of ../shared/data/unlabelled/enwiki (whole lines, in file
    order; written to a temporary folder, never into the repository; its last 10% is the dev text), stopped after
    --minutes: seconds per MB of an epoch (training time without dev checks, per 10^6 bytes trained), dev bits per
    character, peak RSS of the training process.
(b) `wnut-ner` (as shipped: word + char_cnn, CRF) and the same with the `lm` embedder on that pair, each stopped
    after --minutes: test F1 of both, and prediction speed (tokens/s, the test sentences pre-tokenized) of both.

Each training runs in its own child process, so each peak RSS is that run's own.

    OMP_NUM_THREADS=1 .venv/bin/python bench/contextual_lm.py --mb 5 --minutes 60
    OMP_NUM_THREADS=1 .venv/bin/python bench/contextual_lm.py --mb 5 --minutes 60 --lm /tmp/ctx/lm/model --skip-lm
    OMP_NUM_THREADS=1 .venv/bin/python bench/contextual_lm.py --mb 20 --minutes 2 --skip-tagger   # RSS only
    OMP_NUM_THREADS=1 .venv/bin/python bench/contextual_lm.py --speed WORK/wnut/model WORK/wnut-lm/model
        # (c) prediction speed of the two taggers of (b), side by side in one process (--out WORK keeps them)
    OMP_NUM_THREADS=1 .venv/bin/python bench/contextual_lm.py --train-speed /tmp/ctx/lmall/model --epochs 4
        # (d) seconds per training epoch (dev check included) of wnut-ner without the pair, with it, and with it
        #     but train.cache_mb=0 (every sentence through the pair every epoch), one after another
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

ENWIKI = common.DATA / "unlabelled" / "enwiki"
WNUT = {"train": common.WNUT / "wnut17train.conll", "dev": common.WNUT / "emerging.dev.conll",
        "test": common.WNUT / "emerging.test.annotated"}


def write_corpus(megabytes: float, folder: Path) -> Path:
    """The first `megabytes` MB (10^6 bytes) of the enwiki files, whole lines, as one file in `folder`."""
    budget, lines = int(megabytes * 1e6), []
    for path in sorted(ENWIKI.glob("*.txt")):
        with path.open("rb") as handle:
            for line in handle:
                if budget <= 0:
                    break
                lines.append(line)
                budget -= len(line)
        if budget <= 0:
            break
    corpus = folder / f"enwiki-{megabytes:g}mb.txt"
    corpus.write_bytes(b"".join(lines))
    return corpus


def child_lm(corpus: str, out: str, minutes: float, overrides: list[str]) -> None:
    from seqtag.compare import TrainingSpeed
    from seqtag.config import load_recipe
    from seqtag.training import train

    recipe = load_recipe("contextual-lm", ["train.progress_bar=false", f"train.max_time_minutes={minutes}",
                                           *overrides], train=corpus)
    speed = TrainingSpeed()
    start = time.perf_counter()
    result = train(recipe, out, overwrite=True, callbacks=[speed])
    size = Path(corpus).stat().st_size
    with open(corpus, encoding="utf-8") as lines:  # a line at a time: the peak RSS is training's, not this count's
        chars = sum(len(line) for line in lines)
    trained_mb = speed.tokens * size / chars / 1e6    # characters trained (forward; the backward model reads as many)
    report = {"corpus_mb": size / 1e6, "train_tokens": result.metrics["train_tokens"],
              "trained_mb": trained_mb, "train_seconds": speed.seconds["wall"],
              "seconds_per_mb": speed.seconds["wall"] / trained_mb if trained_mb else None,
              "epoch_minutes": (speed.seconds["wall"] / trained_mb * size * 0.9 / 1e6 / 60) if trained_mb else None,
              "dev_bits_per_char": result.metrics["dev"].get("bits_per_char"),
              "wall_seconds": time.perf_counter() - start, "peak_rss_mib": common.peak_rss_mb(),
              "model": str(result.model_dir)}
    print("RESULT " + json.dumps(report), flush=True)


def child_tagger(out: str, minutes: float, lm: str | None, overrides: list[str]) -> None:
    import seqtag
    from seqtag.config import load_recipe
    from seqtag.data.corpus import read_corpus
    from seqtag.training import train

    extra = ["model.embedders=[word,char_cnn,lm]", f"model.lm={lm}"] if lm else []
    recipe = load_recipe("wnut-ner", ["train.progress_bar=false", f"train.max_time_minutes={minutes}", *extra,
                                      *overrides], **{split: str(path) for split, path in WNUT.items()})
    start = time.perf_counter()
    result = train(recipe, out, overwrite=True)
    train_seconds = time.perf_counter() - start
    tagger = seqtag.load(result.model_dir)
    sentences = [list(tokens) for tokens in read_corpus(tagger.data_config, str(WNUT["test"]))["tokens"]]
    tagger.predict(sentences[:64])  # warm-up
    start = time.perf_counter()
    tagger.predict(sentences)
    seconds = time.perf_counter() - start
    report = {"lm": bool(lm), "test_f1": result.metrics["test"]["f1"], "dev_f1": result.metrics["dev"]["f1"],
              "epochs": result.metrics["epochs"], "train_seconds": train_seconds,
              "predict_tokens_per_second": sum(map(len, sentences)) / seconds, "peak_rss_mib": common.peak_rss_mb()}
    print("RESULT " + json.dumps(report), flush=True)


def child_epochs(out: str, epochs: int, lm: str | None, overrides: list[str]) -> None:
    """(d): `epochs` epochs of wnut-ner (no early stopping); the wall time of each, dev check included."""
    from seqtag.config import load_recipe
    from seqtag.training import train

    extra = ["model.embedders=[word,char_cnn,lm]", f"model.lm={lm}"] if lm else []
    recipe = load_recipe("wnut-ner", ["train.progress_bar=false", f"train.max_epochs={epochs}", "train.patience=0",
                                      *extra, *overrides], **{split: str(path) for split, path in WNUT.items()})
    clock = common.epoch_clock()
    result = train(recipe, out, overwrite=True, callbacks=[clock])
    print("RESULT " + json.dumps({"epoch_seconds": clock.seconds, "dev_f1": result.metrics["dev"]["f1"],
                                  "peak_rss_mib": common.peak_rss_mb()}), flush=True)


def train_speed(lm: str, epochs: int, work: Path, overrides: list[str]) -> None:
    import statistics

    sets = [flag for value in overrides for flag in ("--tagger-set", value)]
    runs = [("wnut-ner", [], None),
            ("wnut-ner + lm, every sentence through the pair each epoch", ["--tagger-set", "train.cache_mb=0"], lm),
            ("wnut-ner + lm, vectors kept (train.cache_mb)", [], lm)]
    later = {}
    for i, (name, own_sets, pair) in enumerate(runs):
        report = run_child(*sets, *own_sets, "--child", "epochs", str(work / f"speed{i}"), str(epochs),
                           *([pair] if pair else []))
        first, *rest = report["epoch_seconds"]
        later[name] = statistics.median(rest)
        print(f"(d) {name}: epoch 1 {first:.1f} s, later epochs {later[name]:.1f} s (median of {len(rest)}) | best "
              f"dev F1 in {epochs} epochs {report['dev_f1']:.2f} | peak RSS {report['peak_rss_mib']:.0f} MiB", flush=True)
    plain, uncached, kept = later.values()
    print(f"(d) later epochs: kept vectors {uncached / kept:.2f}x faster than without them; with the pair "
          f"{kept / plain:.2f}x (kept) and {uncached / plain:.2f}x (not kept) the time of wnut-ner without it",
          flush=True)


def predict_speed(plain: str, with_lm: str, test: str, repeats: int) -> None:
    """Tokens/s of two taggers on the same pre-tokenized test sentences, run in turn in this process (each
    repeat tags the whole set with one, then the other), at the torch threads OMP_NUM_THREADS gives: medians and
    their ratio, and the peak RSS after both."""
    import statistics

    import seqtag
    from seqtag.data.corpus import read_corpus

    taggers = {"without": seqtag.load(plain), "with lm": seqtag.load(with_lm)}
    sentences = [list(tokens) for tokens in read_corpus(taggers["without"].data_config, test)["tokens"]]
    tokens = sum(map(len, sentences))
    for tagger in taggers.values():
        tagger.predict(sentences[:64])  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in taggers}
    for _ in range(repeats):
        for name, tagger in taggers.items():
            start = time.perf_counter()
            tagger.predict(sentences)
            rates[name].append(tokens / (time.perf_counter() - start))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f"prediction, {len(sentences):,} sentences ({tokens:,} tokens) of {test}, {repeats} repeats: "
          f"without the lm embedder {medians['without']:,.0f} tokens/s, with it {medians['with lm']:,.0f} tokens/s "
          f"= {medians['with lm'] / medians['without']:.2f}x | peak RSS {common.peak_rss_mb():.0f} MiB", flush=True)


def run_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if done.returncode:
        raise SystemExit(f"child {args[:2]} failed with status {done.returncode}")
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=5.0, help="MB of enwiki text for the LM pair")
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget of each run (wall clock)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--lm", default=None, help="a trained pair to use instead of training one")
    parser.add_argument("--skip-lm", action="store_true", help="do not train the pair (needs --lm)")
    parser.add_argument("--skip-tagger", action="store_true", help="only the pair: (a) without (b)")
    parser.add_argument("--set", dest="lm_overrides", action="append", default=[], help="contextual-lm recipe key")
    parser.add_argument("--tagger-set", dest="tagger_overrides", action="append", default=[],
                        help="wnut-ner recipe key, for both taggers")
    parser.add_argument("--speed", nargs=2, metavar=("PLAIN_MODEL", "LM_MODEL"),
                        help="only the prediction speed of two trained taggers, side by side")
    parser.add_argument("--test", default=str(WNUT["test"]), help="--speed: the sentences to tag")
    parser.add_argument("--repeats", type=int, default=7, help="--speed: passes over the test set per tagger")
    parser.add_argument("--train-speed", metavar="LM_MODEL", help="only (d): seconds per epoch with this pair")
    parser.add_argument("--epochs", type=int, default=4, help="--train-speed: epochs per run")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed:
        predict_speed(*args.speed, args.test, args.repeats)
        return
    if args.child:
        kind, *rest = args.child
        if kind == "epochs":
            child_epochs(rest[0], int(rest[1]), rest[2] if len(rest) > 2 else None, args.tagger_overrides)
        elif kind == "lm":
            child_lm(rest[0], rest[1], args.minutes, args.lm_overrides)
        else:
            child_tagger(rest[0], args.minutes, rest[1] if len(rest) > 1 else None, args.tagger_overrides)
        return

    with tempfile.TemporaryDirectory(prefix="seqtag-contextual-") as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.train_speed:
            train_speed(args.train_speed, args.epochs, work, args.tagger_overrides)
            return
        lm = args.lm
        sets = [flag for value in args.lm_overrides for flag in ("--set", value)]
        tagger_sets = [flag for value in args.tagger_overrides for flag in ("--tagger-set", value)]
        if not args.skip_lm:
            corpus = write_corpus(args.mb, work)
            report = run_child("--minutes", str(args.minutes), *sets, "--child", "lm", str(corpus), str(work / "lm"))
            lm = report["model"]
            print(f"(a) contextual-lm on {report['corpus_mb']:.2f} MB of enwiki, {args.minutes:g} min: "
                  f"{report['trained_mb']:.2f} MB trained in {report['train_seconds']:.0f} s = "
                  f"{report['seconds_per_mb']:.0f} s/MB (an epoch of the training text: "
                  f"{report['epoch_minutes']:.1f} min) | dev {report['dev_bits_per_char']:.3f} bits/char | "
                  f"peak RSS {report['peak_rss_mib']:.0f} MiB | whole run {report['wall_seconds']:.0f} s", flush=True)
        elif not lm:
            raise SystemExit("--skip-lm needs --lm PATH")
        if args.skip_tagger:
            return
        for with_lm in (False, True):
            child = ["--child", "tagger", str(work / ("wnut-lm" if with_lm else "wnut"))] + ([lm] if with_lm else [])
            report = run_child("--minutes", str(args.minutes), *tagger_sets, *child)
            name = "wnut-ner + lm" if with_lm else "wnut-ner     "
            print(f"(b) {name}: test F1 {report['test_f1']:.2f} (dev {report['dev_f1']:.2f}, {report['epochs']} "
                  f"epochs, {report['train_seconds']:.0f} s) | predict {report['predict_tokens_per_second']:,.0f} "
                  f"tokens/s | peak RSS {report['peak_rss_mib']:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
