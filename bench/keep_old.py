"""Forgetting under fine-tuning: finetune.keep_old = none / replay / distill, each fine-tuned from the same base
with the same settings, at one torch thread. Figures: the old test set (forgetting) and the new data's test set.

    OMP_NUM_THREADS=1 .venv/bin/python bench/keep_old.py demo [--set KEY=VALUE ...] [--base-set KEY=VALUE] [--tag=T]
        # (a) the demo tagger (PER, LOC, ORG) fine-tuned on sentences with a new type (DRUG) and no ORG at all
    OMP_NUM_THREADS=1 .venv/bin/python bench/keep_old.py crossner [--domains ai,music] [--set ...]
        # (b) the WNUT-17 base (bench/finetune_quality.py's) fine-tuned on each CrossNER domain
    OMP_NUM_THREADS=1 .venv/bin/python bench/keep_old.py domain [--set ...]
        # (c) EWT without reviews fine-tuned on reviews (files from bench/finetune_data.py)

Every run goes through the Python API (`seqtag.train`, `seqtag.finetune`) in this process; folders go to --root
(default /tmp/keep_old). (b) and (c) train their base there first, unless --base names one (e.g. the base run
folders of bench/finetune_quality.py, /tmp/ft/wnut-base or /tmp/ft/ewt-noreviews).
A finished run folder is reused (delete it to measure again). `--modes` picks the routes; "distill-all" is
keep_old=distill with the tokens of new labels distilled too (`Distillation.skip_new = False`).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import common
from finetune_quality import CROSSNER, DOMAINS, tag_report, type_f1

sys.path.insert(0, str(common.ROOT / "recipes" / "data"))
import make_demo  # noqa: E402 - the demo corpus's templates and name lists

DEMO = {split: common.ROOT / "recipes" / "data" / f"demo.{split}.conll" for split in ("train", "dev", "test")}
DRUGS = [["Aspirin"], ["Ibuprofen"], ["Paracetamol"], ["Insulin"], ["Penicillin"], ["Metformin"], ["Vitamin", "C"],
         ["Folic", "Acid"], ["Lisinopril"], ["Amoxicillin"], ["Warfarin"], ["Omeprazole"]]
DRUG_TEMPLATES = [
    "PER/x took/VERB DRUG/x for/ADP NUM/x days/NOUN ./PUNCT",
    "The/DET doctor/NOUN in/ADP LOC/x prescribed/VERB DRUG/x ./PUNCT",
    "PER/x stopped/VERB taking/VERB DRUG/x on/ADP DAY/x ./PUNCT",
    "DRUG/x helped/VERB PER/x sleep/VERB ./PUNCT",
    "A/DET pharmacy/NOUN in/ADP LOC/x ran/VERB out/ADP of/ADP DRUG/x ./PUNCT",
    "PER/x asked/VERB whether/SCONJ DRUG/x is/AUX safe/ADJ ./PUNCT",
]
MODES = ("none", "replay", "distill")


def drug_sentence(rng: random.Random) -> list[tuple[str, str, str]]:
    """A sentence of the new data: half the demo's templates without an ORG slot, half about a drug."""
    if rng.random() < 0.5:
        template = rng.choice([t for t in make_demo.TEMPLATES if "ORG/x" not in t])
    else:
        template = rng.choice(DRUG_TEMPLATES)
    tokens = []
    for item in template.split():
        text, pos = item.rsplit("/", 1)
        if text == "DRUG":
            tokens += [(w, "PROPN", ("B-" if i == 0 else "I-") + "DRUG") for i, w in enumerate(rng.choice(DRUGS))]
        else:
            tokens += make_demo.fill(text, rng) if pos == "x" else [(text, pos, "O")]
    return tokens


def write_new_data(folder: Path) -> dict[str, Path]:
    """new.{train,dev,test}.conll: 300 / 60 / 60 sentences with DRUG, PER and LOC and no ORG (seeded)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(17)
    files = {}
    for split, count in (("train", 300), ("dev", 60), ("test", 60)):
        blocks = ["\n".join(f"{t}\t{p}\t{n}" for t, p, n in drug_sentence(rng)) for _ in range(count)]
        files[split] = folder / f"new.{split}.conll"
        files[split].write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return files


def timed(out: Path, work) -> float:
    """Run `work()` unless `out` holds a finished model; minutes it took (or the recorded ones)."""
    timing = out / "minutes.txt"
    if (out / "model" / "metrics.json").is_file() and timing.is_file():
        return float(timing.read_text())
    print(f"training {out}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    work()
    minutes = (time.perf_counter() - start) / 60
    timing.write_text(f"{minutes:.2f}")
    return minutes


def finetune_modes(args, base: Path, files: dict[str, Path], replay: Path, name: str) -> dict[str, tuple[Path, float]]:
    """The fine-tuned model folder and minutes of each mode in --modes."""
    import seqtag
    from seqtag.objectives import Distillation

    done = {}
    for mode in args.modes.split(","):
        keep = {"none": ["finetune.keep_old=none"], "replay": [f"finetune.replay={replay}"],
                "distill": ["finetune.keep_old=distill"], "distill-all": ["finetune.keep_old=distill"]}[mode]
        out = Path(args.root) / f"{name}-{mode}{args.tag}"
        settings = dict(s.split("=", 1) for s in [*keep, "train.progress_bar=false", *args.set])
        Distillation.skip_new = mode != "distill-all"
        minutes = timed(out, lambda: seqtag.finetune(base / "model", train=files["train"], dev=files["dev"],
                                                     test=files["test"], out=out, overwrite=True, **settings))
        Distillation.skip_new = True
        done[mode] = (out / "model", minutes)
    return done


def types_of(model_dir: Path) -> set[str]:
    return {label.split("-", 1)[1] for label in json.loads((model_dir / "labels.json").read_text()) if "-" in label}


def demo(args) -> None:
    import seqtag

    root = Path(args.root)
    files = write_new_data(root / "data")
    base = root / f"demo-base{args.tag if args.base_set else ''}"
    base_settings = dict(s.split("=", 1) for s in ["train.progress_bar=false", *args.base_set])
    base_minutes = timed(base, lambda: seqtag.train("demo", train=DEMO["train"], dev=DEMO["dev"], test=DEMO["test"],
                                                    out=base, overwrite=True, **base_settings))
    old = types_of(base / "model")
    print(f"new data: {root / 'data'} (300 training sentences: DRUG, PER, LOC, no ORG); old test: {DEMO['test']}")
    print("| model | old test F1 (PER, LOC, ORG) | ORG F1 | new test F1 (all types) | DRUG F1 | minutes |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = [("base (demo recipe)", base / "model", base_minutes)]
    rows += [(f"fine-tuned, keep_old={mode}", folder, minutes)
             for mode, (folder, minutes) in finetune_modes(args, base, files, DEMO["train"], "demo").items()]
    for name, folder, minutes in rows:
        print(f"| {name} | {type_f1(folder, DEMO['test'], old):.2f} | {type_f1(folder, DEMO['test'], {'ORG'}):.2f} | "
              f"{type_f1(folder, files['test'], old | {'DRUG'}):.2f} | {type_f1(folder, files['test'], {'DRUG'}):.2f} "
              f"| {minutes:.1f} |", flush=True)


def crossner(args) -> None:
    import seqtag

    wnut = {"train": common.WNUT / "wnut17train.conll", "dev": common.WNUT / "emerging.dev.conll",
            "test": common.WNUT / "emerging.test.annotated"}
    base = Path(args.base or Path(args.root) / "wnut-base")
    timed(base, lambda: seqtag.train("wnut-ner", **wnut, out=base, overwrite=True,
                                     **{"train.max_time_minutes": "12", "train.progress_bar": "false"}))
    old = types_of(base / "model")
    print(f"base {base}: WNUT-17 test F1 {type_f1(base / 'model', wnut['test'], old):.2f}")
    print("| domain | keep_old | WNUT-17 test F1 (base types) | domain test F1 | minutes |")
    print("| --- | --- | --- | --- | --- |")
    for domain in args.domains.split(","):
        files = {split: CROSSNER / domain / f"{split}.txt" for split in ("train", "dev", "test")}
        for mode, (folder, minutes) in finetune_modes(args, base, files, wnut["train"], f"crossner-{domain}").items():
            domain_f1 = json.loads((folder / "metrics.json").read_text())["test"]["f1"]
            print(f"| {domain} | {mode} | {type_f1(folder, wnut['test'], old):.2f} | {domain_f1:.2f} | {minutes:.1f} |",
                  flush=True)


def domain(args) -> None:
    import seqtag

    data = Path(args.data)
    base = Path(args.base or Path(args.root) / "ewt-noreviews")
    timed(base, lambda: seqtag.train("ud-pos", train=data / "noreviews-train.conllu", dev=data / "noreviews-dev.conllu",
                                     out=base, overwrite=True,
                                     **{"train.max_epochs": "8", "train.progress_bar": "false"}))
    files = {split: data / f"reviews-{split}.conllu" for split in ("train", "dev", "test")}
    if not any(s.startswith("train.max_epochs=") for s in args.set):
        args.set.append("train.max_epochs=8")  # as bench/finetune_quality.py domain
    print("| model | other genres' test accuracy (old) | reviews test accuracy (new) | minutes |")
    print("| --- | --- | --- | --- |")
    rows = [("EWT without reviews", base / "model", float("nan"))]
    rows += [(f"fine-tuned on reviews, keep_old={mode}", folder, minutes) for mode, (folder, minutes)
             in finetune_modes(args, base, files, data / "noreviews-train.conllu", "ewt-reviews").items()]
    for name, folder, minutes in rows:
        others = tag_report(folder, data / "noreviews-test.conllu", "")["accuracy"]
        reviews = tag_report(folder, files["test"], "")["accuracy"]
        print(f"| {name} | {others:.2f} | {reviews:.2f} | {minutes:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["demo", "crossner", "domain"])
    parser.add_argument("--set", dest="set", action="append", default=[], help="KEY=VALUE for every fine-tuning run")
    parser.add_argument("--base-set", dest="base_set", action="append", default=[],
                        help="demo: KEY=VALUE for the base model (e.g. model.head=crf, with --tag=-crf)")
    parser.add_argument("--modes", default=",".join(MODES), help="a comma list of none, replay, distill, distill-all")
    parser.add_argument("--domains", default=",".join(DOMAINS), help="crossner: the domains to run")
    parser.add_argument("--root", default="/tmp/keep_old")
    parser.add_argument("--base", default=None, help="crossner/domain: an existing base run folder (e.g. "
                        "/tmp/ft/wnut-base or /tmp/ft/ewt-noreviews)")
    parser.add_argument("--data", default="/tmp/ft/data", help="domain: bench/finetune_data.py's output")
    parser.add_argument("--tag", default="", help="suffix of the run folders of a variant")
    args = parser.parse_args()
    Path(args.root).mkdir(parents=True, exist_ok=True)
    {"demo": demo, "crossner": crossner, "domain": domain}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
