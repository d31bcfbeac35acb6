"""The CRF head against the softmax head on real entity data, trained as `seqtag train` trains.

    OMP_NUM_THREADS=1 .venv/bin/python bench/crf_vs_softmax.py [--corpora wnut17,ai,literature,music,science]
        [--wnut-epochs 20] [--seed 1] [--speed-corpora wnut17,science] [--batches 60] [--repeats 3] [--set K=V]

Every corpus is trained with the wnut-ner recipe's settings (BIOES inside, word 100 + char CNN, one BiLSTM of
200 per direction, Adam 0.002, batch 16), once per head, with one seed, for a fixed number of epochs: WNUT-17
`--wnut-epochs`, each CrossNER domain (100–200 training sentences, from scratch) the recipe's 40. Early stopping
is off (train.patience=0), so both heads get the same budget; the best dev epoch's weights are kept, as
`seqtag train` keeps them. (With the recipe's patience a softmax tagger on a CrossNER domain can stop while its
dev F1 is still 0: it predicts no entity at all for the first epochs.) Entity F1 on dev and test comes from each
run's saved metrics.json.

Speed, on the corpora of `--speed-corpora`, heads alternating in each repeat (medians printed):
* training tokens/s: `--batches` steps (forward, the head's loss, backward, Adam step with the recipe's
  gradient clipping) over the toolkit's own training batches, from the same initial encoder weights;
* prediction tokens/s: `predict()` of the trained model on the test split's pre-tokenized sentences (labels,
  probabilities and spans, as a user gets them), at the recipe's evaluation batch size.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import common
import torch

DATA = common.DATA
CROSSNER = ("ai", "literature", "music", "science")
HEADS = ("softmax", "crf")


def corpus_files(corpus: str) -> dict[str, str]:
    if corpus == "wnut17":
        return {"train": str(common.WNUT / "wnut17train.conll"), "dev": str(common.WNUT / "emerging.dev.conll"),
                "test": str(common.WNUT / "emerging.test.annotated")}
    return {split: str(DATA / "crossner" / corpus / f"{split}.txt") for split in ("train", "dev", "test")}


def overrides(corpus: str, head: str, args) -> list[str]:
    epochs = args.wnut_epochs if corpus == "wnut17" else 40
    return ["train.progress_bar=false", f"model.head={head}", f"train.seed={args.seed}", f"train.max_epochs={epochs}",
            "train.patience=0", *args.overrides]


def train_run(corpus: str, head: str, args) -> dict:
    """`seqtag train wnut-ner` on the corpus with this head; its saved figures and the command's wall time."""
    out = common.ROOT / args.out / f"{corpus}-{head}"
    command = [str(common.ROOT / ".venv" / "bin" / "seqtag"), "train", "wnut-ner", "--out", str(out), "--overwrite"]
    for split, path in corpus_files(corpus).items():
        command += [f"--{split}", path]
    for override in overrides(corpus, head, args):
        command += ["--set", override]
    print(" ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    minutes = (time.perf_counter() - start) / 60
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    return {"dev_f1": metrics["dev"]["f1"], "test_f1": metrics["test"]["f1"], "epochs": metrics["epochs"],
            "minutes": minutes, "model": str(out / "model")}


def training_seconds(data, initial: dict, batches: int) -> tuple[float, int]:
    """Seconds and real tokens for `batches` training steps of a fresh copy of the network."""
    from seqtag.training import new_task

    task = new_task(data)
    task.net.load_state_dict(initial, strict=False)  # the shared encoder; each head keeps its own new weights
    net, recipe = task.net.train(), data.recipe
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.train.lr, weight_decay=recipe.train.weight_decay)
    loader = data.train_dataloader()
    loader.sampler.set_epoch(0)
    tokens, start = 0, time.perf_counter()
    for step, batch in enumerate(loader):
        if step == batches:
            break
        loss, _, size = data.objective.train_loss(net, batch, None)
        common.plain_step(net, optimizer, loss, recipe.train.gradient_clip)
        tokens += size
    return time.perf_counter() - start, tokens


def speeds(corpus: str, models: dict[str, str], args) -> dict[str, dict[str, float]]:
    """Training and prediction tokens/s per head on one corpus, heads alternating in every repeat."""
    import seqtag
    from seqtag.config import load_recipe
    from seqtag.data.corpus import read_corpus
    from seqtag.training import new_task, prepare_data

    datas = {head: prepare_data(load_recipe("wnut-ner", overrides(corpus, head, args), **corpus_files(corpus)))
             for head in HEADS}
    torch.manual_seed(args.seed)
    initial = {key: value for key, value in new_task(datas["softmax"]).net.state_dict().items()
               if not key.startswith("head.")}
    taggers = {head: seqtag.load(models[head]) for head in HEADS}
    sentences = list(read_corpus(taggers["softmax"].data_config, corpus_files(corpus)["test"])["tokens"])
    test_tokens = sum(len(sentence) for sentence in sentences)
    figures = {head: {"train": [], "predict": []} for head in HEADS}
    for _ in range(args.repeats):
        for head in HEADS:
            seconds, tokens = training_seconds(datas[head], initial, args.batches)
            figures[head]["train"].append(tokens / seconds)
            start = time.perf_counter()
            taggers[head].predict(sentences)
            figures[head]["predict"].append(test_tokens / (time.perf_counter() - start))
    return {head: {kind: common.median(values) for kind, values in kinds.items()} for head, kinds in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpora", default="wnut17," + ",".join(CROSSNER))
    parser.add_argument("--speed-corpora", default="wnut17,science")
    parser.add_argument("--wnut-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="runs/bench-crf")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a recipe override for every run, e.g. train.max_epochs=1 for a quick check")
    args = parser.parse_args()

    corpora = args.corpora.split(",")
    results = {corpus: {head: train_run(corpus, head, args) for head in HEADS} for corpus in corpora}
    for corpus in (c for c in args.speed_corpora.split(",") if c in results):
        for head, figures in speeds(corpus, {head: results[corpus][head]["model"] for head in HEADS}, args).items():
            results[corpus][head].update(figures)
    (common.ROOT / args.out).mkdir(parents=True, exist_ok=True)
    (common.ROOT / args.out / "results.json").write_text(json.dumps(results, indent=2))

    print("| corpus | head | test F1 | dev F1 | epochs | wall time | training tok/s | prediction tok/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for corpus, heads in results.items():
        for head, row in heads.items():
            speed = (f"{row['train']:,.0f} | {row['predict']:,.0f}" if "train" in row else "– | –")
            print(f"| {corpus} | {head} | {row['test_f1']:.2f} | {row['dev_f1']:.2f} | {row['epochs']} | "
                  f"{row['minutes']:.1f} min | {speed} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
