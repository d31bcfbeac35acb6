"""Derived EWT files for the fine-tuning figures, written outside the repository (default /tmp/ft/data).

    .venv/bin/python bench/finetune_data.py [--out DIR]

- merged-{train,dev}.conllu: EWT with every PROPN relabelled NOUN (a base model that lacks a label);
- first1000-train.conllu and random{1000,2000,4000}-train.conllu: the first 1,000 training sentences, and 1,000,
  2,000 and 4,000 drawn with seed 1, with their true labels (the new label's data); cand1000-train.conllu: 1,000
  drawn among the sentences with a capitalised noun after their first word;
- noreviews-{train,dev,test}.conllu and reviews-{train,dev,test}.conllu: EWT split by genre, read from the
  prefix of each sentence's `# sent_id` (answers, email, newsgroup, reviews, weblog).
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import common


def sentences(path: Path) -> list[str]:
    """The blocks of a CoNLL-U file, each with its comment lines and the blank line after it."""
    text = path.read_text(encoding="utf-8")
    return [block.strip("\n") + "\n\n" for block in text.split("\n\n") if block.strip()]


def genre(block: str) -> str:
    for line in block.splitlines():
        if line.startswith("# sent_id = "):
            return line.split("= ", 1)[1].split("-", 1)[0]
    raise ValueError(f"a sentence without sent_id: {block[:80]!r}")


def merge_propn(block: str) -> str:
    lines = []
    for line in block.splitlines():
        fields = line.split("\t")
        if len(fields) == 10 and fields[3] == "PROPN":
            fields[3] = "NOUN"
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n\n"


def capitalised_nouns(block: str) -> int:
    """Tokens tagged NOUN or PROPN that start with a capital and are not their sentence's first word."""
    words = [line.split("\t") for line in block.splitlines() if line.split("\t")[0].isdigit()]
    return sum(1 for fields in words[1:] if fields[3] in ("NOUN", "PROPN") and fields[1][:1].isupper())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/ft/data")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    files = {split: Path(path) for split, path in common.ewt_files().items()}
    blocks = {split: sentences(path) for split, path in files.items()}
    written = {}
    for split in ("train", "dev"):
        written[f"merged-{split}.conllu"] = [merge_propn(b) for b in blocks[split]]
    written["first1000-train.conllu"] = blocks["train"][:1000]
    # The first sentences are one genre's (weblogs); a seeded sample of all genres stands for "1,000 sentences".
    for size in (1000, 2000, 4000):
        written[f"random{size}-train.conllu"] = random.Random(1).sample(blocks["train"], size)
    # What a user annotating PROPN would pick first: sentences with a capitalised noun after their first word.
    candidates = [b for b in blocks["train"] if capitalised_nouns(b)]
    written["cand1000-train.conllu"] = random.Random(1).sample(candidates, 1000)
    for split, split_blocks in blocks.items():
        written[f"reviews-{split}.conllu"] = [b for b in split_blocks if genre(b) == "reviews"]
        written[f"noreviews-{split}.conllu"] = [b for b in split_blocks if genre(b) != "reviews"]
    for name, chosen in written.items():
        (out / name).write_text("".join(chosen), encoding="utf-8")
        print(f"{out / name}: {len(chosen)} sentences")


if __name__ == "__main__":
    main()
