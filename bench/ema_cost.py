"""What `train.ema_decay` (a moving average of the weights) costs in training time, side by side.

Two runs of `wnut-ner` on WNUT-17 for --epochs epochs each (no early stopping), one without the average and one
with it, each in its own process (bench/contextual_lm.py's epoch child); with --vectors both read the same
pretrained vectors, whose 100,000 rows make the largest tensor the average updates. Then, in this process, the
time of one update of the average over the trained network, done tensor by tensor (`avg_fn`) against one fused
update over all tensors (`multi_avg_fn`, what seqtag uses). Medians, ratios and peak RSS.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ema_cost.py --vectors /tmp/vectors-enwiki60/word2vec-100d.txt
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import common
from contextual_lm import run_child


def update_milliseconds(model_dir: Path, decay: float, repeats: int) -> dict[str, float]:
    from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn, get_ema_multi_avg_fn

    import seqtag

    net = seqtag.load(model_dir).net
    times = {}
    for name, how in (("tensor by tensor", dict(avg_fn=get_ema_avg_fn(decay))),
                      ("fused", dict(multi_avg_fn=get_ema_multi_avg_fn(decay)))):
        average = AveragedModel(net, use_buffers=False, **how)
        average.update_parameters(net)  # the first update copies
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            average.update_parameters(net)
            seconds.append(time.perf_counter() - start)
        times[name] = statistics.median(seconds) * 1000
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", help="a word vectors file both runs read (model.pretrained_vectors)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--decay", type=float, default=0.995)
    parser.add_argument("--repeats", type=int, default=30, help="updates timed per kind")
    args = parser.parse_args()
    sets = ["--tagger-set", f"model.pretrained_vectors={args.vectors}"] if args.vectors else []
    later = {}
    with tempfile.TemporaryDirectory(prefix="seqtag-ema-") as tmp:
        for name, extra in (("without the average", []),
                            (f"train.ema_decay={args.decay}", ["--tagger-set", f"train.ema_decay={args.decay}"])):
            out = Path(tmp) / f"run{len(later)}"
            report = run_child(*sets, *extra, "--child", "epochs", str(out), str(args.epochs))
            first, *rest = report["epoch_seconds"]
            later[name] = statistics.median(rest)
            print(f"{name}: epoch 1 {first:.1f} s, later epochs {later[name]:.1f} s (median of {len(rest)}) | best dev "
                  f"F1 {report['dev_f1']:.2f} | peak RSS {report['peak_rss_mib']:.0f} MiB", flush=True)
        plain, averaged = later.values()
        print(f"later epochs with the average: {averaged / plain:.3f}x the time without it", flush=True)
        updates = update_milliseconds(out / "model", args.decay, args.repeats)
    print(f"one update of the average: tensor by tensor {updates['tensor by tensor']:.1f} ms, fused "
          f"{updates['fused']:.1f} ms ({updates['tensor by tensor'] / updates['fused']:.1f}x) | peak RSS "
          f"{common.peak_rss_mb():.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
