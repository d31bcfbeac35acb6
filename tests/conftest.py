"""Shared fixtures: tiny corpora written into tmp_path, and a private HF datasets cache."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Before datasets is imported anywhere: keep its cache out of the home folder, and stay offline.
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="seqtag-test-hf-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# One torch thread per test process (and the processes tests start), unless the caller chose: the suite runs
# one worker per core, and two workers at two threads each on two cores would slow each other several-fold.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402

# Sentences in CoNLL-2003 style: token, POS, chunk, NER in IOB1 (an entity starts with I-; B- only marks an
# entity that directly follows another one of the same type, as "Curie" after "Marie").
NER_SENTENCES = [
    [("Ada", "NNP", "I-NP", "I-PER"), ("Lovelace", "NNP", "I-NP", "I-PER"), ("visited", "VBD", "I-VP", "O"),
     ("Paris", "NNP", "I-NP", "I-LOC"), (".", ".", "O", "O")],
    [("Alan", "NNP", "I-NP", "I-PER"), ("met", "VBD", "I-VP", "O"), ("Grace", "NNP", "I-NP", "I-PER"),
     ("Hopper", "NNP", "I-NP", "I-PER"), ("in", "IN", "I-PP", "O"), ("Boston", "NNP", "I-NP", "I-LOC"),
     (".", ".", "O", "O")],
    [("Globex", "NNP", "I-NP", "I-ORG"), ("hired", "VBD", "I-VP", "O"), ("Marie", "NNP", "I-NP", "I-PER"),
     ("Curie", "NNP", "I-NP", "B-PER"), (".", ".", "O", "O")],
    [("It", "PRP", "I-NP", "O"), ("rained", "VBD", "I-VP", "O"), ("in", "IN", "I-PP", "O"),
     ("Oslo", "NNP", "I-NP", "I-LOC"), (".", ".", "O", "O")],
    [("Marie", "NNP", "I-NP", "I-PER"), ("met", "VBD", "I-VP", "O"), ("Alan", "NNP", "I-NP", "I-PER"),
     ("in", "IN", "I-PP", "O"), ("Paris", "NNP", "I-NP", "I-LOC"), (".", ".", "O", "O")],
    [("Globex", "NNP", "I-NP", "I-ORG"), ("visited", "VBD", "I-VP", "O"), ("Oslo", "NNP", "I-NP", "I-LOC"),
     (".", ".", "O", "O")],
]

# Dev and test sentences are new: the training words in combinations training never showed (names are PER,
# cities LOC, "Globex" ORG), so a score on them measures what the model learned, not what it memorised.
NER_DEV = [
    [("Grace", "NNP", "I-NP", "I-PER"), ("Hopper", "NNP", "I-NP", "I-PER"), ("visited", "VBD", "I-VP", "O"),
     ("Oslo", "NNP", "I-NP", "I-LOC"), (".", ".", "O", "O")],
    [("Ada", "NNP", "I-NP", "I-PER"), ("hired", "VBD", "I-VP", "O"), ("Marie", "NNP", "I-NP", "I-PER"),
     ("Curie", "NNP", "I-NP", "B-PER"), (".", ".", "O", "O")],
    [("Globex", "NNP", "I-NP", "I-ORG"), ("hired", "VBD", "I-VP", "O"), ("Alan", "NNP", "I-NP", "I-PER"),
     ("in", "IN", "I-PP", "O"), ("Paris", "NNP", "I-NP", "I-LOC"), (".", ".", "O", "O")],
    [("It", "PRP", "I-NP", "O"), ("rained", "VBD", "I-VP", "O"), ("in", "IN", "I-PP", "O"),
     ("Boston", "NNP", "I-NP", "I-LOC"), (".", ".", "O", "O")],
    [("Alan", "NNP", "I-NP", "I-PER"), ("met", "VBD", "I-VP", "O"), ("Ada", "NNP", "I-NP", "I-PER"),
     ("Lovelace", "NNP", "I-NP", "I-PER"), (".", ".", "O", "O")],
]
NER_TEST = [
    [("Marie", "NNP", "I-NP", "I-PER"), ("Curie", "NNP", "I-NP", "B-PER"), ("visited", "VBD", "I-VP", "O"),
     ("Boston", "NNP", "I-NP", "I-LOC"), (".", ".", "O", "O")],
    [("Ada", "NNP", "I-NP", "I-PER"), ("Lovelace", "NNP", "I-NP", "I-PER"), ("met", "VBD", "I-VP", "O"),
     ("Alan", "NNP", "I-NP", "I-PER"), ("in", "IN", "I-PP", "O"), ("Oslo", "NNP", "I-NP", "I-LOC"),
     (".", ".", "O", "O")],
    [("Grace", "NNP", "I-NP", "I-PER"), ("Hopper", "NNP", "I-NP", "I-PER"), ("hired", "VBD", "I-VP", "O"),
     ("Alan", "NNP", "I-NP", "I-PER"), ("in", "IN", "I-PP", "O"), ("Paris", "NNP", "I-NP", "I-LOC"),
     (".", ".", "O", "O")],
    [("Globex", "NNP", "I-NP", "I-ORG"), ("met", "VBD", "I-VP", "O"), ("Ada", "NNP", "I-NP", "I-PER"),
     ("in", "IN", "I-PP", "O"), ("Boston", "NNP", "I-NP", "I-LOC"), (".", ".", "O", "O")],
    [("It", "PRP", "I-NP", "O"), ("rained", "VBD", "I-VP", "O"), ("in", "IN", "I-PP", "O"),
     ("Paris", "NNP", "I-NP", "I-LOC"), (".", ".", "O", "O")],
]
NER_SPLITS = {"train": NER_SENTENCES, "dev": NER_DEV, "test": NER_TEST}


def write_conll(path: Path, sentences, docstart: bool = False, separator: str = "\n") -> Path:
    blocks = ["\n".join(" ".join(token) for token in sentence) for sentence in sentences]
    head = "-DOCSTART- -X- -X- O\n\n" if docstart else ""
    path.write_text(head + separator.join(block + "\n" for block in blocks), encoding="utf-8")
    return path


def write_ner_splits(folder: Path, suffix: str = ".conll", columns: slice = slice(None),
                     docstart: bool = True) -> dict[str, Path]:
    """NER_SPLITS as files in `folder`; `columns` keeps some of each token's columns (e.g. up to the chunk tag)."""
    return {split: write_conll(folder / f"{split}{suffix}", [[token[columns] for token in s] for s in sentences],
                               docstart=docstart)
            for split, sentences in NER_SPLITS.items()}


def sentences_and_tokens(sentences) -> dict[str, int]:
    """What an evaluation of these sentences must count."""
    return {"sentences": len(sentences), "tokens": sum(len(s) for s in sentences)}


@pytest.fixture
def ner_files(tmp_path) -> dict[str, Path]:
    """CoNLL-2003-like train/dev/test files (IOB1, four columns, with -DOCSTART-), each split its own sentences."""
    return write_ner_splits(tmp_path)


CONLLU = """# sent_id = 1
# text = I don't know.
1	I	I	PRON	PRP	_	3	nsubj	_	_
2-3	don't	_	_	_	_	_	_	_	_
2	do	do	AUX	VBP	_	4	aux	_	_
3	n't	not	PART	RB	_	4	advmod	_	_
4	know	know	VERB	VB	_	0	root	_	SpaceAfter=No
5	.	.	PUNCT	.	_	4	punct	_	_

# sent_id = 2
# text = Dogs bark.
1	Dogs	dog	NOUN	NNS	_	2	nsubj	_	_
1.1	bark	bark	VERB	VBP	_	_	_	0:root	_
2	bark	bark	VERB	VBP	_	0	root	_	SpaceAfter=No
3	.	.	PUNCT	.	_	2	punct	_	_
"""

# Dev and test: other sentences (a range token again, which is not a word of its own).
CONLLU_DEV = """# sent_id = d1
# text = Dogs don't know.
1	Dogs	dog	NOUN	NNS	_	4	nsubj	_	_
2-3	don't	_	_	_	_	_	_	_	_
2	do	do	AUX	VBP	_	4	aux	_	_
3	n't	not	PART	RB	_	4	advmod	_	_
4	know	know	VERB	VB	_	0	root	_	SpaceAfter=No
5	.	.	PUNCT	.	_	4	punct	_	_
"""
CONLLU_TEST = """# sent_id = t1
# text = I bark.
1	I	I	PRON	PRP	_	2	nsubj	_	_
2	bark	bark	VERB	VBP	_	0	root	_	SpaceAfter=No
3	.	.	PUNCT	.	_	2	punct	_	_

# sent_id = t2
# text = Dogs know.
1	Dogs	dog	NOUN	NNS	_	2	nsubj	_	_
2	know	know	VERB	VBP	_	0	root	_	SpaceAfter=No
3	.	.	PUNCT	.	_	2	punct	_	_
"""
# What an evaluation must count in each: range tokens and empty nodes are not words.
CONLLU_COUNTS = {"dev": {"sentences": 1, "tokens": 5}, "test": {"sentences": 2, "tokens": 6}}


@pytest.fixture
def conllu_files(tmp_path) -> dict[str, Path]:
    paths = {}
    for split, text in (("train", CONLLU), ("dev", CONLLU_DEV), ("test", CONLLU_TEST)):
        paths[split] = tmp_path / f"{split}.conllu"
        paths[split].write_text(text, encoding="utf-8")
    return paths


@pytest.fixture
def trainers(monkeypatch) -> list:
    """The Lightning trainers that `train()` makes while a test runs, kept for the test to inspect."""
    import seqtag.training

    made = []
    make_trainer = seqtag.training.make_trainer

    def keep(*args, **kwargs):
        made.append(make_trainer(*args, **kwargs)[0])
        return made[-1], made[-1].checkpoint_callback

    monkeypatch.setattr(seqtag.training, "make_trainer", keep)
    return made
