"""Prediction throughput: `predict()` on raw text against the bare network's forward pass.

Both sides tag the same sentences (the raw `# text` lines of the EWT test set) in the
same batches (sorted by length, same batch size). The toolkit side does everything
from raw strings to labelled tokens: splitting, encoding, collating, the forward pass,
softmax, labels and result objects. The bare side is only the forward pass over tensors
prepared beforehand. Runs alternate; medians and their ratio are printed.

    .venv/bin/python bench/predict_speed.py runs/ud-pos/model [--repeats 5] [--batch-size 256]
"""
from __future__ import annotations

import argparse
import time

import common
import torch

import seqtag
from seqtag.data.batching import collate
from seqtag.predict import _batches
from seqtag.text import split_words


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    tagger = seqtag.load(args.model)
    texts = common.raw_sentences(common.EWT / "en_ewt-ud-test.conllu")
    words = [[w for w, _, _ in split_words(text)] for text in texts]
    tokens = sum(map(len, words))

    # The bare side's input, built outside the timed region.
    batches = []
    for indices in _batches([len(w) for w in words], args.batch_size):
        encoded = tagger.preprocessor.encoder.encode([words[i] for i in indices])
        batches.append(collate([{"word_ids": w, "char_ids": c}
                                for w, c in zip(encoded["word_ids"], encoded["char_ids"])]))
    net = tagger.net.eval()

    def bare() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                net(batch.word_ids, batch.char_ids, batch.lengths, batch.mask)
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
    print(f"sentences {len(texts):,}, tokens {tokens:,}, batch size {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"median predict() {common.median(toolkit_rates):,.0f} tok/s | median bare forward "
          f"{common.median(bare_rates):,.0f} tok/s | ratio {ratio:.3f}")
    print(f"peak RSS (load + predict) {common.peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
