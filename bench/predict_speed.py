"""Prediction throughput: `predict()` on raw text against the bare network's forward pass.

Both sides handle the same texts in the same batches (sorted by length, same batch size):
for a tagger the raw `# text` lines of the EWT test set, for a classifier the MR
sentences. The toolkit side does everything from raw strings to results: splitting,
encoding, collating, the forward pass, softmax, labels and result objects. The bare side
is only the forward pass over tensors prepared beforehand. Runs alternate; medians and
their ratio are printed.

    .venv/bin/python bench/predict_speed.py runs/bench-ud-pos/model [--repeats 5] [--batch-size 256]
    .venv/bin/python bench/predict_speed.py runs/bench-mr/model
"""
from __future__ import annotations

import argparse
import time

import common
import torch

import seqtag
from seqtag.data.batching import collate, length_batches
from seqtag.predict import SequenceTagger
from seqtag.text import split_words


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    tagger = seqtag.load(args.model)
    if isinstance(tagger, SequenceTagger):
        texts = common.raw_sentences(common.EWT / "en_ewt-ud-test.conllu")
        encoded = tagger.featurizer.encode([[w for w, _, _ in split_words(text)] for text in texts])
    else:
        texts = [line.rstrip("\n") for name in ("rt-polarity.pos", "rt-polarity.neg")
                 for line in open(common.MR / name, encoding="utf-8")]
        encoded = tagger.featurizer.encode(texts)
    # The bare side's input, built outside the timed region.
    keys = [key for key in ("word_ids", "char_ids") if key in encoded]
    lengths = [len(ids) for ids in encoded["word_ids"]]
    tokens = sum(lengths)
    batches = [collate([{key: encoded[key][i] for key in keys} for i in indices])
               for indices in length_batches(lengths, args.batch_size)]
    net = tagger.net.eval()

    def bare() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                net(batch.features, batch.lengths, batch.mask)
        return time.perf_counter() - start

    def toolkit() -> float:
        start = time.perf_counter()
        tagger.predict(texts, batch_size=args.batch_size)
        return time.perf_counter() - start

    toolkit(), bare()  # warm-up: first calls allocate
    toolkit_rates, bare_rates = [], []
    for repeat in range(args.repeats):
        toolkit_rates.append(tokens / toolkit())
        bare_rates.append(tokens / bare())
        print(f"repeat {repeat + 1}: predict() {toolkit_rates[-1]:,.0f} tok/s, bare forward {bare_rates[-1]:,.0f} tok/s",
              flush=True)
    ratio = common.median(toolkit_rates) / common.median(bare_rates)
    paired = common.median([t / b for t, b in zip(toolkit_rates, bare_rates)])  # each repeat's pair shares the machine's state
    print(f"texts {len(texts):,}, tokens {tokens:,}, batch size {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"median predict() {common.median(toolkit_rates):,.0f} tok/s | median bare forward "
          f"{common.median(bare_rates):,.0f} tok/s | ratio {ratio:.3f} | median paired ratio {paired:.3f}")
    print(f"peak RSS (load + predict) {common.peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
