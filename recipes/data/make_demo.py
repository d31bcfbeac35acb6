"""Writes the bundled demo corpus (demo.{train,dev,test}.conll): token, POS and IOB2 entity columns.

The sentences come from templates written for seqtag, filled with names, places and
organisations from the lists below; a fixed seed makes the files reproducible:

    python recipes/data/make_demo.py
"""
from __future__ import annotations

import random
from pathlib import Path

FIRST = ["Ada", "Alan", "Grace", "Linus", "Marie", "Nikola", "Rosa", "Tim", "Emmy", "Katherine", "Hedy",
         "Claude", "Barbara", "Dennis", "Frances", "Edsger", "Radia", "Margaret", "Ken", "Sophie"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Curie", "Tesla", "Franklin", "Lee", "Noether", "Johnson",
        "Lamarr", "Shannon", "Liskov", "Ritchie", "Allen", "Dijkstra", "Perlman", "Hamilton", "Thompson", "Wilson"]
CITY = ["London", "Paris", "Berlin", "Madrid", "Lisbon", "Vienna", "Prague", "Oslo", "Dublin", "Warsaw",
        "Boston", "Toronto", "Nairobi", "Lagos", "Tokyo", "Seoul", "Lima", "Quito", "Sydney", "Perth"]
TWO_WORD_CITY = [["New", "York"], ["San", "Diego"], ["Buenos", "Aires"], ["Cape", "Town"], ["Hong", "Kong"]]
COUNTRY = ["France", "Kenya", "Peru", "Norway", "Japan", "Chile", "Ireland", "Poland", "Canada", "Ghana"]
ORG = [["Acme", "Corp"], ["Globex"], ["Initech"], ["Umbrella", "Labs"], ["Stark", "Industries"], ["Wayne", "Foundation"],
       ["Hooli"], ["Vandelay", "Industries"], ["Cyberdyne", "Systems"], ["Soylent", "Company"], ["Oceanic", "Airlines"],
       ["Tyrell", "Corporation"]]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
NUMBERS = ["two", "three", "five", "seven", "ten", "twelve"]

# Each template is a list of (token, POS) pairs; slots are PER, LOC, ORG, DAY and NUM.
TEMPLATES = [
    "PER/x visited/VERB LOC/x on/ADP DAY/x ./PUNCT",
    "PER/x works/VERB for/ADP ORG/x in/ADP LOC/x ./PUNCT",
    "ORG/x opened/VERB a/DET new/ADJ office/NOUN in/ADP LOC/x ./PUNCT",
    "The/DET team/NOUN from/ADP ORG/x met/VERB PER/x yesterday/ADV ./PUNCT",
    "PER/x and/CCONJ PER/x flew/VERB to/ADP LOC/x last/ADJ week/NOUN ./PUNCT",
    "Did/AUX PER/x really/ADV leave/VERB ORG/x ?/PUNCT",
    "In/ADP LOC/x ,/PUNCT ORG/x hired/VERB NUM/x engineers/NOUN ./PUNCT",
    "She/PRON said/VERB that/SCONJ PER/x lives/VERB near/ADP LOC/x ./PUNCT",
    "ORG/x bought/VERB ORG/x for/ADP NUM/x million/NUM dollars/NOUN ./PUNCT",
    "We/PRON will/AUX meet/VERB PER/x in/ADP LOC/x on/ADP DAY/x ./PUNCT",
    "It/PRON rained/VERB all/DET day/NOUN in/ADP LOC/x ./PUNCT",
    "The/DET old/ADJ bridge/NOUN was/AUX closed/VERB for/ADP NUM/x days/NOUN ./PUNCT",
    "PER/x wrote/VERB a/DET short/ADJ book/NOUN about/ADP LOC/x ./PUNCT",
    "Nobody/PRON at/ADP ORG/x answered/VERB the/DET phone/NOUN ./PUNCT",
    "They/PRON moved/VERB from/ADP LOC/x to/ADP LOC/x ./PUNCT",
    "PER/x is/AUX the/DET new/ADJ director/NOUN of/ADP ORG/x ./PUNCT",
    "The/DET report/NOUN praised/VERB PER/x and/CCONJ ORG/x ./PUNCT",
    "Prices/NOUN rose/VERB quickly/ADV in/ADP LOC/x this/DET year/NOUN ./PUNCT",
]


def fill(slot: str, rng: random.Random) -> list[tuple[str, str, str]]:
    """Tokens (text, POS, IOB2 tag) for one slot."""
    if slot == "PER":
        words = [rng.choice(FIRST), rng.choice(LAST)] if rng.random() < 0.7 else [rng.choice(LAST)]
        return [(w, "PROPN", ("B-" if i == 0 else "I-") + "PER") for i, w in enumerate(words)]
    if slot == "LOC":
        roll = rng.random()
        words = rng.choice(TWO_WORD_CITY) if roll < 0.2 else [rng.choice(CITY if roll < 0.7 else COUNTRY)]
        return [(w, "PROPN", ("B-" if i == 0 else "I-") + "LOC") for i, w in enumerate(words)]
    if slot == "ORG":
        return [(w, "PROPN", ("B-" if i == 0 else "I-") + "ORG") for i, w in enumerate(rng.choice(ORG))]
    if slot == "DAY":
        return [(rng.choice(DAYS), "PROPN", "O")]
    return [(rng.choice(NUMBERS), "NUM", "O")]


def sentence(rng: random.Random) -> list[tuple[str, str, str]]:
    tokens = []
    for item in rng.choice(TEMPLATES).split():
        text, pos = item.rsplit("/", 1)
        tokens.extend(fill(text, rng) if pos == "x" else [(text, pos, "O")])
    return tokens


def write(path: Path, count: int, rng: random.Random) -> None:
    blocks = ["\n".join(f"{t}\t{p}\t{n}" for t, p, n in sentence(rng)) for _ in range(count)]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    rng = random.Random(2026)
    for split, count in (("train", 400), ("dev", 60), ("test", 60)):
        write(here / f"demo.{split}.conll", count, rng)
