"""Training throughput of the recurrent cells, side by side: the peephole and coupled LSTMs (seqtag/cells.py,
a compiled step loop) as a share of the fused nn.LSTM's, with the fused GRU and RNN for reference, and the
fused LSTM with weight drop or locked dropout on (what the regularisers cost).

Every variant trains the tagger network the pipeline builds for the ud-pos recipe (word 100 + char CNN 64, a
2-layer BiLSTM of 200 per direction, softmax head) on the same EWT training batches (the bucketed sampler's
first epoch), a step being forward, backward, gradient clipping and an Adam step. The variants take turns batch
by batch (the order rotating), so a busy moment of a shared machine falls on all of them alike; a repeat is one
pass over the batches from the same starting weights. The table gives medians over repeats and the median of
each repeat's paired ratio to the LSTM. Peak memory: each variant trains in a fresh process, whose resident-set high
water mark is reset just before training.

    OMP_NUM_THREADS=1 .venv/bin/python bench/cell_speed.py [--batches 30] [--repeats 5]
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import subprocess
import sys
import time

import common
import torch

from seqtag.config import load_recipe
from seqtag.training import prepare_data

# name → the ud-pos recipe's model settings changed
VARIANTS = {"lstm": {}, "peephole": {"cell": "peephole"}, "coupled": {"cell": "coupled"}, "gru": {"cell": "gru"},
            "rnn": {"cell": "rnn"}, "lstm+weight_drop": {"weight_drop": 0.5},
            "lstm+locked_dropout": {"locked_dropout": True}}


def tagging_data():
    files = common.ewt_files()
    recipe = load_recipe("ud-pos", ["train.progress_bar=false"], train=files["train"], dev=files["dev"])
    return prepare_data(recipe)


def first_batches(data, count: int) -> list:
    loader = data.train_dataloader()
    loader.sampler.set_epoch(0)
    batches = []
    for batch in loader:
        if len(batches) == count:
            break
        batches.append(batch)
    return batches


def network(data, variant: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = dataclasses.replace(data.recipe.model, **VARIANTS[variant])
    return data.objective.family.build_network(model, data.prepared.sizes).train()


def step_seconds(data, net: torch.nn.Module, optimizer: torch.optim.Optimizer, batch) -> float:
    start = time.perf_counter()
    scores, _ = net(batch.features, batch.lengths, batch.mask)
    common.plain_step(net, optimizer, net.head.loss(scores, batch.labels, batch.mask), data.recipe.train.gradient_clip)
    return time.perf_counter() - start


def adam(data, net: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(net.parameters(), lr=data.recipe.train.lr)


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def measure_memory(variant: str, count: int) -> None:
    """In a fresh process: RSS before training and its peak while training `count` batches (MiB), as JSON."""
    data = tagging_data()
    batches, net = first_batches(data, count), network(data, variant)
    gc.collect()
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")  # resets VmHWM, the peak RSS, to the current RSS
    before = _status_kib("VmRSS")
    optimizer = adam(data, net)
    for batch in batches:
        step_seconds(data, net, optimizer, batch)
    print(json.dumps({"before": before / 1024, "peak": _status_kib("VmHWM") / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-of", choices=VARIANTS, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.memory_of:
        measure_memory(args.memory_of, args.batches)
        return

    names = tuple(VARIANTS)
    data = tagging_data()
    batches = first_batches(data, args.batches)
    tokens = sum(int(batch.lengths.sum()) for batch in batches)
    nets = {name: network(data, name) for name in names}
    start = {name: {k: v.clone() for k, v in net.state_dict().items()} for name, net in nets.items()}
    for name in names:  # warm-up, not counted: TorchScript profiles and optimises its first calls
        optimizer = adam(data, nets[name])
        for batch in batches[:5]:
            step_seconds(data, nets[name], optimizer, batch)
    speed: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names:
            nets[name].load_state_dict(start[name])
        optimizers = {name: adam(data, nets[name]) for name in names}
        seconds = dict.fromkeys(names, 0.0)
        for index, batch in enumerate(batches):
            turn = (index + repeat) % len(names)
            for name in names[turn:] + names[:turn]:
                seconds[name] += step_seconds(data, nets[name], optimizers[name], batch)
        for name in names:
            speed[name].append(tokens / seconds[name])
        print(f"repeat {repeat + 1}: " + ", ".join(f"{name} {speed[name][-1]:,.0f}" for name in names) + " tok/s",
              flush=True)

    memory = {}
    for name in names:
        child = subprocess.run([sys.executable, __file__, "--memory-of", name, "--batches", str(args.batches)],
                               capture_output=True, text=True, check=True)
        memory[name] = json.loads(child.stdout.strip().splitlines()[-1])

    print(f"\n{len(batches)} batches, {tokens:,} tokens, torch threads {torch.get_num_threads()}, "
          f"{args.repeats} repeats\n")
    print("| network | encoder parameters | median tok/s | ratio to lstm (medians) | median paired ratio | peak RSS while "
          "training (MiB) | growth over RSS before (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    lstm = common.median(speed["lstm"])
    for name in names:
        parameters = sum(p.numel() for p in nets[name].encoder.parameters())
        paired = common.median([s / l for s, l in zip(speed[name], speed["lstm"])])
        print(f"| {name} | {parameters:,} | {common.median(speed[name]):,.0f} | "
              f"{common.median(speed[name]) / lstm:.2f} | {paired:.2f} | {memory[name]['peak']:,.0f} | "
              f"{memory[name]['peak'] - memory[name]['before']:,.0f} |")


if __name__ == "__main__":
    main()
