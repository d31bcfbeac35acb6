"""Train 100-d word vectors on the unlabelled text of the local corpora, for the issue 9 measurements.

gensim is not a seqtag dependency: this script runs in a venv of its own.

    python3 -m venv /tmp/vec-venv && /tmp/vec-venv/bin/pip install gensim
    /tmp/vec-venv/bin/python bench/train_vectors.py [--model word2vec|fasttext] [--out /tmp/vectors]

Text (read in place from /work/shared/data, or $SEQTAG_DATA; nothing is copied into the repository):
WikiText-2 valid + test, Tiny Shakespeare, the training text of UD English-EWT, of WNUT-17 and of the four
CrossNER domains, and the MR sentences; with --enwiki-files N also the first N files of unlabelled/enwiki. Dev and test files of the tagging corpora are left out, so their words
are never seen while the vectors are learnt. Tokens are lowercased, as the wnut-ner recipe reads them.

Writes <out>/<model>-100d.txt (word2vec text with a "count dim" header, frequent words first) and
<out>/<model>-100d.bin (word2vec binary), and prints the corpus and vocabulary sizes.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

DATA = Path(os.environ.get("SEQTAG_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")   # for raw text: words (with inner apostrophes) and punctuation


def conll_tokens(path: Path, column: int = 0) -> Iterator[list[str]]:
    """Sentences of a CoNLL-like file (blank lines between sentences; CoNLL-U comments and ranges skipped)."""
    sentence: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if not line.strip():
                if sentence:
                    yield sentence
                sentence = []
            elif not line.startswith("#") and not ("-" in fields[0] and column == 1 and fields[0][0].isdigit()):
                sentence.append(fields[column])
    if sentence:
        yield sentence


def text_lines(path: Path, pretokenized: bool) -> Iterator[list[str]]:
    """One token list per non-blank line; WikiText and MR are tokenized already (split at whitespace)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            tokens = line.split() if pretokenized else WORD.findall(line)
            if tokens:
                yield tokens


def sentences(enwiki_files: int = 0) -> Iterator[list[str]]:
    enwiki = sorted((DATA / "unlabelled" / "enwiki").glob("enwiki_*.txt"))[:enwiki_files]
    sources = [
        *(text_lines(DATA / "wikitext2" / name, pretokenized=True) for name in ("valid.txt", "test.txt")),
        text_lines(DATA / "tinyshakespeare" / "input.txt", pretokenized=False),
        conll_tokens(DATA / "ud_english_ewt" / "en_ewt-ud-train.conllu", column=1),
        conll_tokens(DATA / "wnut17" / "wnut17train.conll"),
        *(conll_tokens(DATA / "crossner" / domain / "train.txt") for domain in ("ai", "literature", "music", "science")),
        *(text_lines(DATA / "mr" / name, pretokenized=True) for name in ("rt-polarity.pos", "rt-polarity.neg")),
        *(text_lines(path, pretokenized=False) for path in enwiki),   # one paragraph a line
    ]
    for source in sources:
        for tokens in source:
            yield [token.lower() for token in tokens]


def main() -> None:
    from gensim.models import FastText, Word2Vec

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("word2vec", "fasttext"), default="word2vec")
    parser.add_argument("--out", default="/tmp/vectors")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--min-count", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="one: the machine's cores are shared")
    parser.add_argument("--enwiki-files", type=int, default=0,
                        help="also the first N files (about 1 MB each) of unlabelled/enwiki, one paragraph a line")
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.WARNING)

    corpus = list(sentences(args.enwiki_files))
    tokens = sum(map(len, corpus))
    print(f"{len(corpus):,} sentences, {tokens:,} tokens, {len({t for s in corpus for t in s}):,} distinct", flush=True)
    # Skip-gram learns rare words better than CBOW, and a corpus of a million tokens is mostly rare words.
    kind = Word2Vec if args.model == "word2vec" else FastText
    start = time.perf_counter()
    model = kind(sentences=corpus, vector_size=100, window=5, min_count=args.min_count, sg=1, negative=10,
                 epochs=args.epochs, workers=args.workers, seed=1)
    print(f"{args.model}: {len(model.wv):,} words in {time.perf_counter() - start:.0f} s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for binary, suffix in ((False, "txt"), (True, "bin")):
        path = out / f"{args.model}-100d.{suffix}"
        model.wv.save_word2vec_format(str(path), binary=binary)   # sorted by frequency, most frequent first
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")


if __name__ == "__main__":
    main()
