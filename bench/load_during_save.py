"""Loads of a model directory while another process keeps saving over it (issue 11): does a load ever mix
two versions?

Two tiny demo taggers that differ in every file (hidden size, so every weight's shape; the training file and
lowercasing, so both vocabularies; the training scheme, so the labels; a marker in metrics.json) are saved alternately into one
directory by a second process, as fast as it can, while this process loads that directory with
`seqtag.load` again and again. Each load is compared part by part with the two versions: it is whole when
every part comes from one of them, mixed otherwise (a "does not match" error counts as mixed too). A load
that gives up because saves kept replacing the directory is counted apart: that is the clear error, not a
mixed pair.

    OMP_NUM_THREADS=1 .venv/bin/python bench/load_during_save.py --seconds 600
    OMP_NUM_THREADS=1 .venv/bin/python bench/load_during_save.py --seconds 120 --by-path   # files one by one

`--by-path` reads the files one by one by their paths, as `seqtag.load` did before issue 11, to show that
the set-up does catch mixed pairs.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import common  # puts the repository on sys.path

SHAPES = ["train.progress_bar=false", "model.word_dim=8", "model.num_layers=1", "model.char_hidden=4",
          "model.char_dim=4"]
# B learns from the demo's dev file, so its vocabularies differ from A's; every shape, label and marker differs.
VERSIONS = {"A": (["model.hidden_size=8", "data.lowercase=true", "data.train_scheme=bioes"], {}),
            "B": (["model.hidden_size=12", "data.lowercase=false", "data.train_scheme=iob2"],
                  {"train": str(common.ROOT / "recipes" / "data" / "demo.dev.conll")})}


def train_versions(folder: Path) -> dict[str, Path]:
    from seqtag.config import load_recipe
    from seqtag.training import train

    return {name: train(load_recipe("demo", [*SHAPES, *settings], **files), folder / name, smoke=True).model_dir
            for name, (settings, files) in VERSIONS.items()}


def keep_saving(sources: dict[str, str], target: str, stop, saves) -> None:
    """The saving process: the two versions in turn into `target` until `stop` is set."""
    from seqtag.artifact import read_model, save_model
    from seqtag.families import FAMILIES

    required = {name: family.required_files for name, family in FAMILIES.items()}
    versions = []
    for name, source in sources.items():
        parts = read_model(source, required)
        config = {k: v for k, v in parts["config"].items() if k != "format_version"}
        tokenizers = {"word_tokenizer.json": parts["words"], "char_tokenizer.json": parts["chars"]}
        versions.append((config, parts["state_dict"], tokenizers, parts["labels"], {"version": name}))
    while not stop.is_set():
        save_model(target, *versions[saves.value % 2])
        saves.value += 1


def fingerprint(model) -> dict[str, object]:
    """What each part of a loaded tagger holds."""
    return {"config": (model.data_config.lowercase, model.net.sizes["words"]),
            "weights": tuple(model.net.head.linear.weight.shape),
            "metrics.json": model.metrics.get("version"),
            "labels.json": tuple(model.featurizer.labels.labels),
            "word_tokenizer.json": tuple(sorted(model.featurizer.words.get_vocab().items())),
            "char_tokenizer.json": tuple(sorted(model.featurizer.chars.get_vocab().items()))}


def load_by_path(path: Path):
    """Files opened one by one by path, as `seqtag.load` read them before issue 11 (then checked as now)."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    from seqtag.families import FAMILIES

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    parts = {"config": config,
             "labels": json.loads((path / "labels.json").read_text(encoding="utf-8")),
             "metrics": json.loads((path / "metrics.json").read_text(encoding="utf-8")),
             "state_dict": load_file(str(path / "model.safetensors")),
             "words": Tokenizer.from_file(str(path / "word_tokenizer.json")),
             "chars": Tokenizer.from_file(str(path / "char_tokenizer.json")),
             "tokenizer": None}
    return FAMILIES[config["task"]].load(parts, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600, help="how long to keep loading")
    parser.add_argument("--loads", type=int, default=0, help="stop after this many loads instead (0: by time)")
    parser.add_argument("--by-path", action="store_true", help="read the files one by one by path (before issue 11)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="seqtag-load-during-save-"))
    try:
        run(folder, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path, args) -> None:
    import seqtag

    sources = train_versions(folder)
    expected = {name: {**fingerprint(seqtag.load(path)), "metrics.json": name} for name, path in sources.items()}
    same = [part for part in expected["A"] if expected["A"][part] == expected["B"][part]]
    assert not same, f"the two versions must differ in every part: {same}"
    target = folder / "shared" / "model"
    load = load_by_path if args.by_path else seqtag.load

    context = multiprocessing.get_context("spawn")
    stop, saves = context.Event(), context.Value("q", 0)
    saver = context.Process(target=keep_saving, args=({k: str(v) for k, v in sources.items()}, str(target), stop, saves))
    saver.start()
    while saves.value < 2:
        if not saver.is_alive():
            raise SystemExit("the saving process stopped before its second save; see its error above")
        time.sleep(0.05)
    counts, first_error = Counter(), {}
    start = time.monotonic()
    try:
        while (counts["tried"] < args.loads) if args.loads else (time.monotonic() - start < args.seconds):
            counts["tried"] += 1
            try:
                found = fingerprint(load(target))
            except seqtag.ModelFileError as err:
                kind = "gave up (being written)" if "is being written" in str(err) else (
                    "mixed" if "does not match" in str(err) else "other error")
                counts[kind] += 1
                first_error.setdefault(kind, str(err))
                continue
            except Exception as err:  # --by-path: a file gone or replaced mid-read (tokenizers raises Exception)
                counts["other error"] += 1
                first_error.setdefault("other error", f"{type(err).__name__}: {err}")
                continue
            whole = [name for name, parts in expected.items() if parts == found]
            counts[f"whole {whole[0]}" if whole else "mixed"] += 1
            if not whole:
                first_error.setdefault("mixed", str({part: [n for n in expected if expected[n][part] == value]
                                                      for part, value in found.items()}))
    finally:
        elapsed = time.monotonic() - start
        stop.set()
        saver.join()
    print(f"reader: {'files by path (before issue 11)' if args.by_path else 'seqtag.load'}")
    print(f"loads tried: {counts['tried']:,} in {elapsed:.0f} s ({counts['tried'] / elapsed:.0f}/s); "
          f"saves done meanwhile: {saves.value:,}")
    print(f"whole version A: {counts['whole A']:,}; whole version B: {counts['whole B']:,}")
    print(f"mixed pairs: {counts['mixed']:,}")
    print(f"gave up, model being written: {counts['gave up (being written)']:,}; other errors: "
          f"{counts['other error']:,}")
    for kind, message in first_error.items():
        print(f"first {kind}: {message}")


if __name__ == "__main__":
    main()
