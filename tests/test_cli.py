"""The typer CLI: thin commands over the library, with user errors as one paragraph and exit code 2."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()
FAST = ["--set", "train.progress_bar=false", "--set", "model.hidden_size=16", "--set", "model.word_dim=16"]


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = runner.invoke(app, ["train", "demo", "--out", str(out), *FAST, "--set", "train.max_epochs=2"])
    assert result.exit_code == 0, result.output
    assert f"model: {out / 'model'}" in result.output
    assert "dev: F1" in result.output and "test: F1" in result.output
    return out / "model"


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "evaluate", "predict"):
        assert command in result.output


def test_evaluate_json_has_the_span_figures(demo_model):
    result = runner.invoke(app, ["evaluate", str(demo_model), "recipes/data/demo.test.conll", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert {"precision", "recall", "f1", "per_label", "sentences", "tokens"} <= set(figures)
    assert figures["sentences"] == 60 and figures["tokens"] == 524


def test_predict_raw_text_to_jsonl_and_pretokenized_to_conll(demo_model, tmp_path):
    result = runner.invoke(app, ["predict", str(demo_model), "-"], input="Ada Lovelace visited Paris.\n\nHi\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3, "one output line per input line, the empty one included"
    assert rows[0]["tokens"] == ["Ada", "Lovelace", "visited", "Paris", "."]
    assert len(rows[0]["labels"]) == len(rows[0]["probabilities"]) == 5
    assert rows[0]["offsets"][1] == [4, 12] and rows[1]["tokens"] == []

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("Ada Lovelace visited Paris .\n", encoding="utf-8")
    result = runner.invoke(app, ["predict", str(demo_model), str(tokens), "--pretokenized", "--output", "conll"])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines() if line]
    assert [token for token, _ in lines] == ["Ada", "Lovelace", "visited", "Paris", "."]


def _error(result, *needles):
    """One paragraph on stderr starting "error: " (after any log lines), nothing on stdout, exit code 2."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    stderr = "\n" + result.stderr
    assert "\nerror: " in stderr, result.stderr
    message = stderr[stderr.index("\nerror: ") + 1:]
    for needle in needles:
        assert needle in message


def test_unknown_set_key_is_named_with_a_suggestion():
    result = runner.invoke(app, ["train", "demo", "--set", "model.hiden_size=3"])
    _error(result, "model.hiden_size", "model.hidden_size")


def test_unknown_recipe_lists_the_recipes():
    _error(runner.invoke(app, ["train", "nope"]), "No recipe named 'nope'", "ud-pos")


def test_wrong_column_count_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.conll"
    bad.write_text("Ada B-PER\nLovelace I-PER\nvisited\n", encoding="utf-8")
    _error(runner.invoke(app, ["train", "wnut-ner", "--train", str(bad), "--smoke", "--out", str(tmp_path / "run")]), "bad.conll, line 3",
           "expected 2 columns")


def test_scheme_violation_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.conll"
    bad.write_text("Ada B-PER\nLovelace I-PER\n\nin O\nParis I-LOC\n", encoding="utf-8")
    _error(runner.invoke(app, ["train", "wnut-ner", "--train", str(bad), "--smoke", "--out", str(tmp_path / "run")]), "bad.conll, line 5",
           "I-LOC", "IOB2")


def test_empty_missing_and_non_utf8_files(tmp_path):
    empty = tmp_path / "empty.conll"
    empty.write_text("\n\n", encoding="utf-8")
    _error(runner.invoke(app, ["train", "wnut-ner", "--train", str(empty), "--smoke", "--out", str(tmp_path / "run")]), "empty.conll", "no sentences")
    _error(runner.invoke(app, ["train", "wnut-ner", "--train", str(tmp_path / "gone.conll"), "--smoke", "--out", str(tmp_path / "run")]),
           "gone.conll", "not found")
    latin = tmp_path / "latin.conll"
    latin.write_bytes("Ada B-PER\nCaf\xe9 O\n".encode("latin-1"))
    _error(runner.invoke(app, ["train", "wnut-ner", "--train", str(latin), "--smoke", "--out", str(tmp_path / "run")]), "latin.conll, line 2",
           "UTF-8")


def test_broken_model_directories(demo_model, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(demo_model, copy)
    (copy / "labels.json").unlink()
    _error(runner.invoke(app, ["evaluate", str(copy), "recipes/data/demo.test.conll"]), "missing labels.json")

    shutil.copytree(demo_model, tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config["format_version"] = 99
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    _error(runner.invoke(app, ["predict", str(tmp_path / "old"), "-"], input="hi\n"), "format version 99")

    _error(runner.invoke(app, ["evaluate", str(tmp_path / "none"), "x.conll"]), "no model directory")


def test_predict_reports_undecodable_input_line(demo_model, tmp_path):
    bad = tmp_path / "in.txt"
    bad.write_bytes(b"fine line\n\xff\xfe broken\n")
    _error(runner.invoke(app, ["predict", str(demo_model), str(bad)]), "in.txt, line 2", "UTF-8")


def test_finetune_help_names_every_setting_and_the_default_learning_rate_factor():
    """The help is written out by hand (the CLI does not import the config to start fast), so it must follow the
    config when a setting is added or a default changes."""
    import dataclasses
    import re

    from seqtag.config import FinetuneConfig

    result = runner.invoke(app, ["finetune", "--help"], terminal_width=400)
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    listed = re.search(r"finetune\.KEY=VALUE \(([^)]*)\)", text).group(1)
    assert [name.strip() for name in listed.split(",")] == [f.name for f in dataclasses.fields(FinetuneConfig)]
    default = f"{FinetuneConfig.lr_factor:g}"
    assert f"finetune.lr_factor ({default})" in text
