"""Tests for seqtag.data.readers, on tiny files written into tmp_path."""
from __future__ import annotations

import json
import os
import re

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from seqtag.data.readers import count_tokens, describe, read_conll, read_conllu, read_hub
from seqtag.errors import InputError, SeqtagError

COLUMNS = ["tokens", "labels", "lines"]


@pytest.fixture
def cache(tmp_path) -> str:
    """A datasets cache inside tmp_path, so tests never write to the home cache."""
    return str(tmp_path / "cache")


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def where(path, line: int | None = None) -> str:
    """Regex for the "<path>, line <n>" start of an InputError message."""
    text = str(path) if line is None else f"{path}, line {line}:"
    return "^" + re.escape(text)


# ---------------------------------------------------------------------------
# CoNLL columns


def test_conll_tabs_spaces_docstart_and_separators(tmp_path, cache):
    path = write(
        tmp_path,
        "train.txt",
        "-DOCSTART- -X- -X- O\n"  # 1
        "\n"  # 2
        "EU NNP B-NP B-ORG\n"  # 3
        "rejects\tVBZ\tB-VP\tO\n"  # 4
        "German   JJ  B-NP    B-MISC\n"  # 5
        "\t\n"  # 6: WNUT-17 style separator
        "\n"  # 7
        "\n"  # 8
        "-DOCSTART- -X- -X- O\n"  # 9
        "\n"  # 10
        "Peter NNP B-NP B-PER\n"  # 11
        "   \n"  # 12
        "Blackburn NNP B-NP I-PER",  # 13: no trailing newline
    )
    ds = read_conll(path, cache_dir=cache)
    assert ds.column_names == COLUMNS
    assert ds["tokens"] == [["EU", "rejects", "German"], ["Peter"], ["Blackburn"]]
    assert ds["labels"] == [["B-ORG", "O", "B-MISC"], ["B-PER"], ["I-PER"]]
    assert ds["lines"] == [[3, 4, 5], [11], [13]]
    assert describe(ds) == "read 3 sentences, 5 tokens"


def test_conll_chooses_columns(tmp_path, cache):
    path = write(tmp_path, "chunk.txt", "He PRP B-NP\nreckons VBZ B-VP\n\n")
    pos = read_conll(path, token_column=0, label_column=1, cache_dir=cache)
    assert pos["labels"] == [["PRP", "VBZ"]]
    chunks = read_conll(path, label_column=-1, cache_dir=cache)
    assert chunks["labels"] == [["B-NP", "B-VP"]]
    reversed_ = read_conll(path, token_column=-1, label_column=0, cache_dir=cache)
    assert reversed_["tokens"] == [["B-NP", "B-VP"]]


def test_conll_bom_and_crlf(tmp_path, cache):
    path = write(tmp_path, "bom.txt", "\ufeffEU\tB-ORG\r\nrejects\tO\r\n\r\nOK\tO\r\n")
    ds = read_conll(path, cache_dir=cache)
    assert ds["tokens"] == [["EU", "rejects"], ["OK"]]
    assert ds["labels"] == [["B-ORG", "O"], ["O"]]
    assert ds["lines"] == [[1, 2], [4]]


def test_conll_column_count_mismatch(tmp_path, cache):
    path = write(tmp_path, "bad.txt", "EU\tB-ORG\nrejects\tO\n\nGerman JJ B-MISC\n")
    with pytest.raises(InputError, match=where(path, 4)) as info:
        read_conll(path, cache_dir=cache)
    assert "expected 2 columns (as on line 1), found 3: 'German JJ B-MISC'" in str(info.value)
    assert info.value.line == 4


def test_conll_long_line_is_shortened(tmp_path, cache):
    path = write(tmp_path, "bad.txt", "EU\tB-ORG\n" + "x " * 100 + "\n")
    with pytest.raises(InputError, match=where(path, 2)) as info:
        read_conll(path, cache_dir=cache)
    assert "found 100" in str(info.value)
    assert "..." in str(info.value) and len(str(info.value)) < 200


@pytest.mark.parametrize(
    "options, name",
    [({"label_column": 5}, "label_column=5"), ({"token_column": -3}, "token_column=-3")],
)
def test_conll_column_out_of_range(tmp_path, cache, options, name):
    path = write(tmp_path, "two.txt", "\nEU\tB-ORG\n")
    with pytest.raises(InputError, match=where(path, 2)) as info:
        read_conll(path, cache_dir=cache, **options)
    assert name in str(info.value) and "2 columns" in str(info.value)


# ---------------------------------------------------------------------------
# CoNLL-U

CONLLU = (
    "# sent_id = 1\n"  # 1
    "# text = Vámonos al mar.\n"  # 2
    "1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_\n"  # 3
    "1\tVamos\tir\tVERB\tVMM\t_\t0\troot\t_\t_\n"  # 4
    "2\tnos\tnosotros\tPRON\tPP\t_\t1\tobj\t_\t_\n"  # 5
    "3-4\tal\t_\t_\t_\t_\t_\t_\t_\t_\n"  # 6
    "3\ta\ta\tADP\tSPS\t_\t5\tcase\t_\t_\n"  # 7
    "4\tel\tel\tDET\tDA\t_\t5\tdet\t_\t_\n"  # 8
    "4.1\tido\tir\tVERB\tVMP\t_\t_\t_\t0:root\t_\n"  # 9: empty node
    "5\tmar\tmar\tNOUN\tNC\t_\t1\tobl\t_\tSpaceAfter=No\n"  # 10
    "6\t.\t.\tPUNCT\tFp\t_\t1\tpunct\t_\t_\n"  # 11
    "\n"  # 12
    "\n"  # 13
    "# sent_id = 2\n"  # 14
    "1\tSí\tsí\tINTJ\tI\t_\t0\troot\t_\t_\n"  # 15
)


def test_conllu_skips_ranges_and_empty_nodes(tmp_path, cache):
    path = write(tmp_path, "es.conllu", CONLLU)
    ds = read_conllu(path, cache_dir=cache)
    assert ds.column_names == COLUMNS
    assert ds["tokens"] == [["Vamos", "nos", "a", "el", "mar", "."], ["Sí"]]
    assert ds["labels"] == [["VERB", "PRON", "ADP", "DET", "NOUN", "PUNCT"], ["INTJ"]]
    assert ds["lines"] == [[4, 5, 7, 8, 10, 11], [15]]


@pytest.mark.parametrize("column", ["xpos", "XPOS", 4, "4"])
def test_conllu_xpos_label_column(tmp_path, cache, column):
    path = write(tmp_path, "es.conllu", CONLLU)
    ds = read_conllu(path, label_column=column, cache_dir=cache)
    assert ds["labels"] == [["VMM", "PP", "SPS", "DA", "NC", "Fp"], ["I"]]


def test_conllu_unknown_field(tmp_path, cache):
    path = write(tmp_path, "es.conllu", CONLLU)
    with pytest.raises(SeqtagError, match="'pos'.*UPOS.*XPOS"):
        read_conllu(path, label_column="pos", cache_dir=cache)
    with pytest.raises(SeqtagError, match="12 is out of range"):
        read_conllu(path, label_column=12, cache_dir=cache)


def test_conllu_wrong_field_count(tmp_path, cache):
    # Spaces instead of tabs: one field.
    content = "# c\n1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_\n2 there there ADV _ _ 1 advmod _ _\n"
    path = write(tmp_path, "spaces.conllu", content)
    with pytest.raises(InputError, match=where(path, 3)) as info:
        read_conllu(path, cache_dir=cache)
    assert "expected 10 tab-separated fields" in str(info.value)
    assert "found 1: '2 there there" in str(info.value)


def test_conllu_bad_word_id(tmp_path, cache):
    path = write(tmp_path, "ids.conllu", "x\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_\n")
    with pytest.raises(InputError, match=where(path, 1) + ".*word ID.*'x'"):
        read_conllu(path, cache_dir=cache)


# ---------------------------------------------------------------------------
# Errors common to the file readers


@pytest.mark.parametrize("reader", [read_conll, read_conllu])
def test_missing_file(tmp_path, cache, reader):
    path = tmp_path / "nope.txt"
    with pytest.raises(InputError, match=where(path) + ": file not found") as info:
        reader(path, cache_dir=cache)
    assert info.value.line is None


@pytest.mark.parametrize("reader", [read_conll, read_conllu])
def test_directory_instead_of_file(tmp_path, cache, reader):
    with pytest.raises(InputError, match=where(tmp_path) + ": is a directory"):
        reader(tmp_path, cache_dir=cache)


@pytest.mark.parametrize(
    "reader, content",
    [
        (read_conll, ""),
        (read_conll, "\n \n\t\n"),
        (read_conll, "-DOCSTART- -X- O O\n\n"),
        (read_conllu, ""),
        (read_conllu, "# sent_id = 1\n# text = nothing\n\n"),
    ],
)
def test_file_without_sentences(tmp_path, cache, reader, content):
    path = write(tmp_path, "empty.txt", content)
    with pytest.raises(InputError, match=where(path) + ": contains no sentences; expected") as info:
        reader(path, cache_dir=cache)
    assert info.value.line is None


@pytest.mark.parametrize(
    "reader, content",
    [
        (read_conll, b"EU\tB-ORG\n\ncaf\xe9\tO\n"),
        (read_conllu, b"# ok\n\n3\tcaf\xe9\t_\tNOUN\t_\t_\t0\troot\t_\t_\n"),
    ],
)
def test_invalid_utf8(tmp_path, cache, reader, content):
    path = write(tmp_path, "latin1.txt", content)
    column = 4 if reader is read_conll else 6
    with pytest.raises(InputError, match=where(path, 3)) as info:
        reader(path, cache_dir=cache)
    expected = f"is not valid UTF-8 (byte 0xe9 at column {column}); save the file as UTF-8"
    assert expected in str(info.value)


def test_error_is_raised_again_on_second_read(tmp_path, cache):
    path = write(tmp_path, "bad.txt", "a\tO\nb\n")
    for _ in range(2):
        with pytest.raises(InputError, match=where(path, 2)):
            read_conll(path, cache_dir=cache)


# ---------------------------------------------------------------------------
# Caching


def test_cached_read_and_edited_file(tmp_path, cache):
    path = write(tmp_path, "train.txt", "EU\tB-ORG\n")
    first = read_conll(path, cache_dir=cache)
    again = read_conll(path, cache_dir=cache)
    assert again["tokens"] == [["EU"]]
    assert again.cache_files == first.cache_files  # served from the same Arrow file

    # A longer file: the size changes.
    write(tmp_path, "train.txt", "EU\tB-ORG\nrejects\tO\n")
    assert read_conll(path, cache_dir=cache)["tokens"] == [["EU", "rejects"]]

    # Same size, new content: only the mtime tells.
    stat = path.stat()
    write(tmp_path, "train.txt", "UE\tB-ORG\nrejects\tO\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    edited = read_conll(path, cache_dir=cache)
    assert edited["tokens"] == [["UE", "rejects"]]
    assert edited.cache_files != first.cache_files


def test_fixed_file_is_read_after_error(tmp_path, cache):
    path = write(tmp_path, "train.txt", "EU\tB-ORG\nrejects\n")
    with pytest.raises(InputError):
        read_conll(path, cache_dir=cache)
    write(tmp_path, "train.txt", "EU\tB-ORG\nrejects\tO\n")
    assert read_conll(path, cache_dir=cache)["labels"] == [["B-ORG", "O"]]


# ---------------------------------------------------------------------------
# Hub datasets (local folders only: there is no network)


def write_jsonl(folder, rows: list[dict]) -> None:
    folder.mkdir()
    with open(folder / "train.jsonl", "w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row) + "\n")


def test_read_hub_json_lines_with_string_labels(tmp_path, cache):
    folder = tmp_path / "jsonl"
    write_jsonl(
        folder,
        [
            {"id": "a", "words": ["EU", "rejects"], "tags": ["B-ORG", "O"]},
            {"id": "b", "words": ["Peter"], "tags": ["B-PER"]},
        ],
    )
    ds = read_hub(str(folder), "train", tokens_field="words", labels_field="tags", cache_dir=cache)
    assert ds.column_names == COLUMNS
    assert ds["tokens"] == [["EU", "rejects"], ["Peter"]]
    assert ds["labels"] == [["B-ORG", "O"], ["B-PER"]]
    assert ds["lines"] == [[1, 1], [2]]


def test_read_hub_parquet_with_class_labels(tmp_path, cache):
    folder = tmp_path / "parquet"
    folder.mkdir()
    features = Features(
        {
            "tokens": Sequence(Value("string")),
            "ner_tags": Sequence(ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    rows = {"tokens": [["Peter", "Blackburn"], ["hi"], ["Ann"]], "ner_tags": [[1, 2], [0], [1]]}
    Dataset.from_dict(rows, features=features).to_parquet(str(folder / "train.parquet"))
    ds = read_hub(str(folder), "train", cache_dir=cache)
    assert ds.column_names == COLUMNS
    assert ds["tokens"] == rows["tokens"]
    assert ds["labels"] == [["B-PER", "I-PER"], ["O"], ["B-PER"]]
    assert ds["lines"] == [[1, 1], [2], [3]]
    assert count_tokens(ds) == 4


def test_read_hub_missing_field(tmp_path, cache):
    folder = tmp_path / "jsonl"
    write_jsonl(folder, [{"tokens": ["a"], "tags": ["O"]}])
    with pytest.raises(SeqtagError, match="no field 'ner_tags'.*available fields: tokens, tags"):
        read_hub(str(folder), "train", cache_dir=cache)


def test_read_hub_unknown_split(tmp_path, cache):
    folder = tmp_path / "jsonl"
    write_jsonl(folder, [{"tokens": ["a"], "ner_tags": ["O"]}])
    with pytest.raises(SeqtagError, match="could not load .*validation"):
        read_hub(str(folder), "validation", cache_dir=cache)


def test_read_hub_length_mismatch_names_row(tmp_path, cache):
    folder = tmp_path / "jsonl"
    write_jsonl(
        folder,
        [{"tokens": ["a"], "ner_tags": ["O"]}, {"tokens": ["b", "c"], "ner_tags": ["O"]}],
    )
    expected = f"{folder} (train split), row 2: has 2 tokens but 1 labels"
    with pytest.raises(InputError, match=re.escape(expected)):
        read_hub(str(folder), "train", cache_dir=cache)


# ---------------------------------------------------------------------------
# Counting


def test_count_tokens_respects_selection(tmp_path, cache):
    path = write(tmp_path, "train.txt", "a\tO\nb\tO\n\nc\tO\n\nd\tO\ne\tO\nf\tO\n")
    ds = read_conll(path, cache_dir=cache)
    assert count_tokens(ds) == 6
    assert count_tokens(ds.select([0, 2])) == 5
    assert count_tokens(ds.filter(lambda row: len(row["tokens"]) == 1)) == 1
    assert describe(ds.select([1])) == "read 1 sentence, 1 token"
    assert count_tokens(ds.select([])) == 0
