"""Fine-tuning figures on real corpora (issue 9), each route run as a user would run it (`seqtag train`,
`seqtag finetune`), at one torch thread. Run folders go to /tmp/ft (or --root); derived EWT files come from
bench/finetune_data.py.

    .venv/bin/python bench/finetune_data.py                        # the derived EWT files, once
    .venv/bin/python bench/finetune_quality.py crossner [--set KEY=VALUE ...] [--base-set KEY=VALUE] [--tag=T]
                                                         # WNUT-17 base → each CrossNER domain
    .venv/bin/python bench/finetune_quality.py propn                # EWT without PROPN → fine-tuned on 1,000 sentences
    .venv/bin/python bench/finetune_quality.py domain               # EWT without reviews → fine-tuned on reviews
    .venv/bin/python bench/finetune_quality.py lm --steps 600       # char-lm (Tiny Shakespeare) → WikiText-2 text

Existing run folders are reused (delete them to measure again); each line printed says which run it read.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import common

SEQTAG = str(common.ROOT / ".venv" / "bin" / "seqtag")
CROSSNER = common.DATA / "crossner"
DOMAINS = ("ai", "literature", "music", "science")
ENV = {**os.environ, "PYTHONPATH": str(common.ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run(command: list[str], out: Path) -> float:
    """Run a seqtag command into `out` unless its model exists; minutes it took (or the recorded ones)."""
    timing = out / "minutes.txt"
    if (out / "model" / "metrics.json").is_file() and timing.is_file():
        return float(timing.read_text())
    print(" ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run([*command, "--out", str(out), "--overwrite", "--set", "train.progress_bar=false"], check=True,
                   env=ENV, stdout=subprocess.DEVNULL, stderr=open(out.with_suffix(".log"), "w"))
    minutes = (time.perf_counter() - start) / 60
    timing.write_text(f"{minutes:.2f}")
    return minutes


def metrics(out: Path) -> dict:
    return json.loads((out / "model" / "metrics.json").read_text())


def type_f1(model_dir: Path, test: Path, types: set[str]) -> float:
    """Span F1 over the given entity types only (gold and predicted spans of other types left out)."""
    import seqtag
    from seqtag.data.corpus import read_corpus
    from seqtag.metrics import span_scores

    model = seqtag.load(model_dir)
    rows = read_corpus(model.data_config, str(test))
    predicted = [s.labels for s in model.predict(rows["tokens"])]
    keep = lambda labels: [l if l != "O" and l.split("-", 1)[1] in types else "O" for l in labels]  # noqa: E731
    return span_scores([keep(l) for l in rows["labels"]], [keep(l) for l in predicted])["f1"]


def crossner(args) -> None:
    root = Path(args.root)
    wnut = {"train": common.WNUT / "wnut17train.conll", "dev": common.WNUT / "emerging.dev.conll",
            "test": common.WNUT / "emerging.test.annotated"}
    base = root / f"wnut-base{args.tag}"
    base_minutes = run([SEQTAG, "train", "wnut-ner", *(x for s, p in wnut.items() for x in (f"--{s}", str(p))),
                        "--set", "train.max_time_minutes=12", *args.base_set], base)
    base_types = {label.split("-", 1)[1] for label in json.loads((base / "model" / "labels.json").read_text())
                  if "-" in label}
    print(f"base: WNUT-17 test F1 {metrics(base)['test']['f1']:.2f}, {base_minutes:.1f} min; types "
          f"{', '.join(sorted(base_types))}")
    print("| domain | train sentences | from scratch F1 | fine-tuned F1 | base F1 on shared types | fine-tuned F1 on "
          "shared types | scratch / fine-tune minutes |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    scratch_f1, tuned_f1 = [], []
    for domain in args.domains.split(","):
        files = {split: CROSSNER / domain / f"{split}.txt" for split in ("train", "dev", "test")}
        given = [x for s, p in files.items() for x in (f"--{s}", str(p))]
        suffix = args.tag or ""
        scratch = root / f"crossner-{domain}-scratch{suffix}"
        tuned = root / f"crossner-{domain}-finetuned{suffix}"
        scratch_minutes = run([SEQTAG, "train", "wnut-ner", *given, *args.set], scratch)
        tuned_minutes = run([SEQTAG, "finetune", str(base / "model"), *given, *args.set], tuned)
        domain_types = {l.split("\t")[-1].strip().split("-", 1)[1] for l in files["train"].read_text().splitlines()
                        if "-" in l.split("\t")[-1]}
        shared = base_types & domain_types
        base_shared = type_f1(base / "model", files["test"], shared)
        tuned_shared = type_f1(tuned / "model", files["test"], shared)
        scratch_f1.append(metrics(scratch)["test"]["f1"])
        tuned_f1.append(metrics(tuned)["test"]["f1"])
        sentences = sum(1 for block in files["train"].read_text().split("\n\n") if block.strip())
        print(f"| {domain} | {sentences} | {scratch_f1[-1]:.2f} | {tuned_f1[-1]:.2f} | {base_shared:.2f} "
              f"({', '.join(sorted(shared))}) | {tuned_shared:.2f} | {scratch_minutes:.1f} / {tuned_minutes:.1f} |",
              flush=True)
    print(f"| mean | | {sum(scratch_f1) / len(scratch_f1):.2f} | {sum(tuned_f1) / len(tuned_f1):.2f} | | | |")


def label_counts(gold_rows, predicted_rows, label: str) -> dict:
    """`label`'s precision, recall and F1, its false predictions, and the accuracy over the tokens whose gold tag is
    another one (with and without counting the tokens wrongly given `label`), over tagged sentences."""
    counts = Counter()
    for gold_row, predicted_row in zip(gold_rows, predicted_rows):
        for gold, guess in zip(gold_row, predicted_row):
            counts["gold"] += gold == label
            counts["predicted"] += guess == label
            counts["correct"] += gold == guess == label
            if gold != label:
                counts["other"] += 1
                counts["other_correct"] += gold == guess
                counts["other_called_label"] += guess == label  # an error that only the new label can make
            counts["tokens"] += 1
            counts["all_correct"] += gold == guess
    precision = counts["correct"] / counts["predicted"] if counts["predicted"] else 0.0
    recall = counts["correct"] / counts["gold"] if counts["gold"] else 0.0
    return {"precision": 100 * precision, "recall": 100 * recall,
            "f1": 200 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "false": counts["other_called_label"],
            "other_accuracy": 100 * counts["other_correct"] / counts["other"],
            "other_accuracy_but_label": 100 * (counts["other_correct"] + counts["other_called_label"]) / counts["other"],
            "accuracy": 100 * counts["all_correct"] / counts["tokens"]}


def tag_report(model_dir: Path, test: Path, label: str) -> dict:
    """`label_counts` of the model's tags on the test file."""
    import seqtag
    from seqtag.data.corpus import read_corpus

    model = seqtag.load(model_dir)
    rows = read_corpus(model.data_config, str(test))
    predicted, _ = model.tag(rows["tokens"])
    return label_counts(rows["labels"], predicted, label)


def propn(args) -> None:
    root, data = Path(args.root), Path(args.data)
    test = common.EWT / "en_ewt-ud-test.conllu"
    merged = root / "ewt-merged"
    merged_minutes = run([SEQTAG, "train", "ud-pos", "--train", str(data / "merged-train.conllu"), "--dev",
                          str(data / "merged-dev.conllu"), "--set", "train.max_epochs=8", *args.base_set], merged)
    tuned = root / f"ewt-propn-finetuned{args.tag}"
    tuned_minutes = run([SEQTAG, "finetune", str(merged / "model"), "--train", str(data / args.propn_train),
                         "--dev", str(common.EWT / "en_ewt-ud-dev.conllu"), "--set", "train.max_epochs=8",
                         *args.set], tuned)
    full = Path(args.full)
    print("| model | PROPN F1 | accuracy on the other tags | … leaving out tokens predicted PROPN | accuracy (all tags) "
          "| minutes |", flush=True)
    print("| --- | --- | --- | --- | --- | --- |")
    for name, folder, minutes in (("trained on all of EWT (UPOS)", full, args.full_minutes),
                                  ("EWT with PROPN merged into NOUN", merged / "model", merged_minutes),
                                  (f"… fine-tuned on 1,000 sentences with PROPN {' '.join(args.set)}", tuned / "model",
                                   f"{tuned_minutes:.1f}")):
        report = tag_report(folder, test, "PROPN")
        print(f"| {name} | {report['f1']:.2f} | {report['other_accuracy']:.2f} | "
              f"{report['other_accuracy_but_label']:.2f} | {report['accuracy']:.2f} | {minutes} |", flush=True)
    if args.sweep:
        print("\nPROPN's log-probability shifted by a constant before the best tag is taken (a stricter or looser "
              "threshold for the new label):")
        print("| model | shift | PROPN precision | recall | F1 | non-PROPN tokens called PROPN | accuracy on the other tags |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, folder in (("all of EWT", full), ("fine-tuned", tuned / "model")):
            for shift, row in threshold_sweep(folder, test, "PROPN", (-3, -2, -1, 0, 1)).items():
                print(f"| {name} | {shift:+d} | {row['precision']:.2f} | {row['recall']:.2f} | {row['f1']:.2f} | "
                      f"{row['false']} | {row['other_accuracy']:.2f} |", flush=True)
        share = unseen_share(tuned / "model", test, data / args.propn_train, "PROPN")
        print(f"\n{share:.1f}% of the fine-tuned model's false PROPN are words absent from {args.propn_train}")


def unseen_share(model_dir: Path, test: Path, train_file: Path, label: str) -> float:
    """The share of the tokens wrongly given `label` whose word the training file does not have."""
    import seqtag
    from seqtag.data.corpus import read_corpus

    model = seqtag.load(model_dir)
    rows = read_corpus(model.data_config, str(test))
    seen = {word for sentence in read_corpus(model.data_config, str(train_file))["tokens"] for word in sentence}
    predicted, _ = model.tag(rows["tokens"])
    false = [word for words, gold_row, predicted_row in zip(rows["tokens"], rows["labels"], predicted)
             for word, gold, guess in zip(words, gold_row, predicted_row) if guess == label != gold]
    return 100 * sum(word not in seen for word in false) / len(false)


def threshold_sweep(model_dir: Path, test: Path, label: str, shifts) -> dict:
    """`label_counts` per shift of `label`'s log-probability (a stricter or looser threshold for it)."""
    import seqtag
    from seqtag.data.corpus import read_corpus

    model = seqtag.load(model_dir)
    rows = read_corpus(model.data_config, str(test))
    names = model.featurizer.labels.labels
    column = names.index(label)
    log_probabilities = [None] * len(rows["tokens"])
    for indices, _, probabilities in model._decoded(rows["tokens"], None):
        for row, i in enumerate(indices):
            log_probabilities[i] = probabilities[row, :len(rows["tokens"][i])].clamp_min(1e-12).log()
    result = {}
    for shift in shifts:
        predicted = []
        for scores in log_probabilities:
            scores = scores.clone()
            scores[:, column] += shift
            predicted.append([names[k] for k in scores.argmax(-1).tolist()])
        result[shift] = label_counts(rows["labels"], predicted, label)
    return result


def domain(args) -> None:
    root, data = Path(args.root), Path(args.data)
    base = root / "ewt-noreviews"
    base_minutes = run([SEQTAG, "train", "ud-pos", "--train", str(data / "noreviews-train.conllu"), "--dev",
                        str(data / "noreviews-dev.conllu"), "--set", "train.max_epochs=8", *args.base_set], base)
    given = ["--train", str(data / "reviews-train.conllu"), "--dev", str(data / "reviews-dev.conllu"),
             "--set", "train.max_epochs=8"]
    plain = root / f"ewt-reviews-finetuned{args.tag}"
    plain_minutes = run([SEQTAG, "finetune", str(base / "model"), *given, *args.set], plain)
    replay = root / f"ewt-reviews-finetuned-replay{args.tag}"
    replay_minutes = run([SEQTAG, "finetune", str(base / "model"), *given, "--set",
                          f"finetune.replay={data / 'noreviews-train.conllu'}", "--set", "finetune.replay_fraction=0.5",
                          *args.set], replay)
    print("| model | reviews test accuracy | other genres' test accuracy | minutes |")
    print("| --- | --- | --- | --- |")
    for name, folder, minutes in (("trained on all of EWT", Path(args.full), args.full_minutes),
                                  ("EWT without reviews", base / "model", f"{base_minutes:.1f}"),
                                  ("… fine-tuned on reviews", plain / "model", f"{plain_minutes:.1f}"),
                                  ("… fine-tuned on reviews, replay 0.5", replay / "model", f"{replay_minutes:.1f}")):
        reviews = tag_report(folder, data / "reviews-test.conllu", "")["accuracy"]
        others = tag_report(folder, data / "noreviews-test.conllu", "")["accuracy"]
        print(f"| {name} | {reviews:.2f} | {others:.2f} | {minutes} |", flush=True)


def lm(args) -> None:
    root = Path(args.root)
    text = common.WIKITEXT / "valid.txt"  # dev = its last 10% (data.dev_fraction), the text scored
    # The same number of optimiser steps for both routes (equal compute on a machine whose load varies), with
    # the dev text scored four times an epoch; the minutes each took are printed beside.
    budget = ["--set", f"train.max_steps={args.steps}", "--set", "train.val_check_interval=0.25"]
    tuned = root / f"lm-wikitext-finetuned{args.tag}"
    tuned_minutes = run([SEQTAG, "finetune", args.parent, "--train", str(text), *budget, *args.set], tuned)
    scratch = root / f"lm-wikitext-scratch{args.tag}"
    scratch_minutes = run([SEQTAG, "train", "char-lm", "--train", str(text), *budget, *args.set], scratch)
    print("| char-lm on WikiText-2 valid.txt (dev = its last 10%) | dev loss (nats/char) | bits/char | minutes |")
    print("| --- | --- | --- | --- |")
    for name, folder, minutes in (("fine-tuned from Tiny Shakespeare", tuned, tuned_minutes),
                                  ("from scratch", scratch, scratch_minutes)):
        dev = metrics(folder)["dev"]
        print(f"| {name} | {dev['loss']:.4f} | {dev.get('bits_per_char', float('nan')):.4f} | {minutes:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["crossner", "propn", "domain", "lm"])
    parser.add_argument("--set", dest="set", action="append", default=[], type=lambda s: f"--set={s}")
    parser.add_argument("--base-set", dest="base_set", action="append", default=[], type=lambda s: f"--set={s}",
                        help="a setting of the base model only (--set applies to the fine-tuning runs and, for crossner, "
                             "the from-scratch domain runs)")
    parser.add_argument("--domains", default=",".join(DOMAINS), help="crossner: the domains to run (a comma list; "
                        "two processes can share the work once the base model exists)")
    parser.add_argument("--sweep", action="store_true", help="propn: also the table of stricter and looser "
                        "thresholds for PROPN")
    parser.add_argument("--propn-train", default="first1000-train.conllu", help="propn: the fine-tuning file")
    parser.add_argument("--root", default="/tmp/ft")
    parser.add_argument("--data", default="/tmp/ft/data")
    parser.add_argument("--tag", default="", help="suffix of the run folders of a variant (e.g. -vectors)")
    parser.add_argument("--full", default="/tmp/bench/ud-pos/model", help="a ud-pos model trained on all of EWT")
    parser.add_argument("--full-minutes", default="44.7", help="its training time, as recorded in RESULTS.md")
    parser.add_argument("--parent", default="/tmp/bench/char-lm/model", help="the Tiny Shakespeare char-lm model")
    parser.add_argument("--steps", type=int, default=600, help="language models: optimiser steps per route")
    args = parser.parse_args()
    {"crossner": crossner, "propn": propn, "domain": domain, "lm": lm}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
