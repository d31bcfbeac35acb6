"""Language-model training throughput: seqtag's Lightning loop against a bare PyTorch TBPTT loop.

Both loops train the same network (same initial weights) on the same BPTT windows (the same
StreamWindows over the same memory-mapped token stream), carry the hidden state from window to
window detached, and use the same optimizer and gradient clipping. Runs alternate toolkit/bare
to share the machine's noise; the ratio of medians and the median paired ratio are printed.

    .venv/bin/python bench/lm_speed.py [--recipe char-lm|word-lm] [--batches 40] [--repeats 5]
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

FILES = {"char-lm": lambda: {"train": str(common.SHAKESPEARE)},
         "word-lm": lambda: {"train": str(common.WIKITEXT / "valid.txt")}}


def bare_run(data, initial_state, batches: int) -> float:
    recipe = data.recipe
    task = new_task(data)
    task.load_state_dict(initial_state)
    net = task.net.train()
    cfg = recipe.train
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = None
    start = time.perf_counter()
    for step, batch in enumerate(data.train_dataloader()):
        if step == batches:
            break
        logits, state = net({"word_ids": batch["inputs"]}, state=state)
        state = (state[0].detach(), state[1].detach())  # the LSTM's (h, c)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE_INDEX)
        common.plain_step(net, optimizer, loss, cfg.gradient_clip)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", choices=sorted(FILES), default="char-lm")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    recipe = load_recipe(args.recipe, ["train.progress_bar=false", "train.patience=0", "train.lr_schedule=none",
                                       "train.val_check_interval=1.0", *args.overrides], **FILES[args.recipe]())
    data = prepare_data(recipe)
    pl.seed_everything(0, verbose=False)
    initial_state = copy.deepcopy(new_task(data).state_dict())
    tokens = sum(int((batch["targets"] != IGNORE_INDEX).sum())
                 for _, batch in zip(range(args.batches), data.train_dataloader()))

    out = f"runs/bench-lm-speed-{args.recipe}"
    # Warm-up, not counted: the first runs pay for allocations and lazy initialisation.
    common.toolkit_run(data, initial_state, 5, out)
    bare_run(data, initial_state, 5)
    toolkit, bare = [], []
    for repeat in range(args.repeats):
        toolkit.append(tokens / common.toolkit_run(data, initial_state, args.batches, out))
        bare.append(tokens / bare_run(data, initial_state, args.batches))
        print(f"repeat {repeat + 1}: toolkit {toolkit[-1]:,.0f} tok/s, bare {bare[-1]:,.0f} tok/s", flush=True)
    ratio = common.median(toolkit) / common.median(bare)
    paired = common.median([t / b for t, b in zip(toolkit, bare)])
    print(f"{args.recipe}: batches {args.batches}, tokens {tokens:,}, torch threads {torch.get_num_threads()}")
    print(f"median toolkit {common.median(toolkit):,.0f} tok/s | median bare {common.median(bare):,.0f} tok/s | "
          f"ratio {ratio:.3f} | median paired ratio {paired:.3f}")
    print(f"peak RSS {common.peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
