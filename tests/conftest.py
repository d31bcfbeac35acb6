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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402

# Sentences in CoNLL-2003 style: token, POS, chunk, NER in IOB1 (an entity starts with I-).
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
]


def write_conll(path: Path, sentences, docstart: bool = False, separator: str = "\n") -> Path:
    blocks = ["\n".join(" ".join(token) for token in sentence) for sentence in sentences]
    head = "-DOCSTART- -X- -X- O\n\n" if docstart else ""
    path.write_text(head + separator.join(block + "\n" for block in blocks), encoding="utf-8")
    return path


@pytest.fixture
def ner_files(tmp_path) -> dict[str, Path]:
    """CoNLL-2003-like train/dev/test files (IOB1, four columns, with -DOCSTART-)."""
    return {split: write_conll(tmp_path / f"{split}.conll", NER_SENTENCES, docstart=True)
            for split in ("train", "dev", "test")}


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


@pytest.fixture
def conllu_files(tmp_path) -> dict[str, Path]:
    paths = {}
    for split in ("train", "dev", "test"):
        paths[split] = tmp_path / f"{split}.conllu"
        paths[split].write_text(CONLLU, encoding="utf-8")
    return paths
