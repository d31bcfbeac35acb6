"""Training throughput: seqtag's Lightning loop against a bare PyTorch loop, side by side.

Both loops train the same network (same initial weights) on the same batches (the
same DataLoader: bucketed sampler, same seed and epoch, same collate) with the same
optimizer and gradient clipping. Runs alternate toolkit/bare to share the machine's
noise; the ratio of medians is printed.

    .venv/bin/python bench/train_speed.py [--recipe ud-pos|mr] [--batches 60] [--repeats 5] [--set model.cell=gru]
"""
from __future__ import annotations

import argparse
import copy
import time

import common
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from seqtag.config import load_recipe
from seqtag.data.batching import IGNORE_INDEX
from seqtag.training import new_task, prepare_data


def bare_run(data, initial_state, batches: int) -> float:
    recipe = data.recipe
    task = new_task(data)
    task.load_state_dict(initial_state)
    net = task.net.train()
    weight = net.head.class_weights if hasattr(net.head, "class_weights") else None
    cfg = recipe.train
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = data.train_dataloader()
    loader.sampler.set_epoch(0)  # the epoch Lightning's first epoch uses
    start = time.perf_counter()
    for step, batch in enumerate(loader):
        if step == batches:
            break
        logits, _ = net(batch.features, batch.lengths, batch.mask)
        # (B, T, L) tags or (B, L) classes: one row of scores per label
        loss = F.cross_entropy(logits.flatten(0, -2), batch.labels.flatten(), weight=weight, ignore_index=IGNORE_INDEX)
        common.plain_step(net, optimizer, loss, cfg.gradient_clip)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", choices=["ud-pos", "mr"], default="ud-pos")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a recipe override, e.g. model.cell=gru")
    args = parser.parse_args()

    if args.recipe == "ud-pos":
        files = {"train": common.ewt_files()["train"], "dev": common.ewt_files()["dev"]}
    else:
        files = {"train": f"{common.MR / 'rt-polarity.pos'},{common.MR / 'rt-polarity.neg'}"}
    recipe = load_recipe(args.recipe, ["train.progress_bar=false", "train.patience=0", "train.lr_schedule=none",
                                       *args.overrides], **files)
    data = prepare_data(recipe)
    pl.seed_everything(0, verbose=False)
    initial_state = copy.deepcopy(new_task(data).state_dict())

    # Tokens in the measured batches: the same for both loops.
    loader = data.train_dataloader()
    loader.sampler.set_epoch(0)
    tokens = 0
    for step, batch in enumerate(loader):
        if step == args.batches:
            break
        tokens += int(batch.lengths.sum())

    # Warm-up, not counted: the first runs pay for allocations and lazy initialisation.
    common.toolkit_run(data, initial_state, 10, f"runs/bench-train-speed-{args.recipe}")
    bare_run(data, initial_state, 10)
    toolkit, bare = [], []
    for repeat in range(args.repeats):
        toolkit.append(tokens / common.toolkit_run(data, initial_state, args.batches, f"runs/bench-train-speed-{args.recipe}"))
        bare.append(tokens / bare_run(data, initial_state, args.batches))
        print(f"repeat {repeat + 1}: toolkit {toolkit[-1]:,.0f} tok/s, bare {bare[-1]:,.0f} tok/s", flush=True)
    ratio = common.median(toolkit) / common.median(bare)
    paired = common.median([t / b for t, b in zip(toolkit, bare)])  # each repeat's pair shares the machine's state
    parameters = sum(p.numel() for p in new_task(data).net.parameters())
    print(f"batches {args.batches}, tokens {tokens:,}, torch threads {torch.get_num_threads()}, "
          f"cell {data.recipe.model.cell}, parameters {parameters:,}")
    print(f"median toolkit {common.median(toolkit):,.0f} tok/s | median bare {common.median(bare):,.0f} tok/s | "
          f"ratio {ratio:.3f} | median paired ratio {paired:.3f}")
    print(f"peak RSS {common.peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
