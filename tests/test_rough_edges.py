"""Rough edges a new user hit (issue 20, point 5): flags in --help, empty input, where --resume resumes, what
Ctrl+C prints and its exit status, a language model reading CoNLL columns, --encoding, --top-k on a tagger."""
from __future__ import annotations

import json
import logging
import os
import signal

import pytest
from typer.testing import CliRunner

from cli import app
from conftest import write_ner_splits
from seqtag.tasks import Task

runner = CliRunner()
SMALL = ["train.progress_bar=false", "model.hidden_size=16", "model.word_dim=16", "model.char_hidden=8",
         "model.char_dim=8"]


def _sets(*settings: str) -> list[str]:
    return [part for setting in settings for part in ("--set", setting)]


def _ner_cli(files) -> list[str]:
    return ["--train", str(files["train"]), "--dev", str(files["dev"]), "--test", str(files["test"])]


@pytest.fixture(scope="module")
def ner_splits(tmp_path_factory):
    return write_ner_splits(tmp_path_factory.mktemp("ner"))


@pytest.fixture(scope="module")
def tagger(ner_splits, tmp_path_factory):
    out = tmp_path_factory.mktemp("tagger")
    result = runner.invoke(app, ["train", "conll-ner", "--out", str(out), *_ner_cli(ner_splits),
                                 *_sets(*SMALL, "train.max_epochs=1")])
    assert result.exit_code == 0, result.output
    return out / "model"


# ---------------------------------------------------------------------------
# 1. flags show as flags


@pytest.mark.parametrize("command", [[], ["train"], ["predict"], ["finetune"], ["compare"], ["evaluate"],
                                     ["generate"], ["serve"]])
def test_help_shows_flags_without_a_value_type(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output, "a flag takes no value; its help must not show one"


def test_value_options_keep_their_type_and_flags_still_parse(tagger, ner_splits):
    assert "<int>" in runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200"}).output
    result = runner.invoke(app, ["evaluate", str(tagger), str(ner_splits["test"]), "--json"])
    assert result.exit_code == 0, result.output
    assert "f1" in json.loads(result.stdout)


# ---------------------------------------------------------------------------
# 2. empty input, 8. --top-k on a tagger


def test_predict_on_an_empty_file_or_stdin_says_so_on_stderr_and_exits_0(tagger, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for args, given in (([str(empty)], ""), (["-"], "")):
        result = runner.invoke(app, ["predict", str(tagger), *args], input=given)
        assert result.exit_code == 0, result.output
        assert result.stdout == ""
        assert "no input: " in result.stderr and "holds no lines" in result.stderr
    assert str(empty) in runner.invoke(app, ["predict", str(tagger), str(empty)]).stderr


def test_predict_with_lines_prints_no_empty_input_note(tagger):
    result = runner.invoke(app, ["predict", str(tagger), "-"], input="Ada visited Paris .\n")
    assert result.exit_code == 0 and "no input" not in result.stderr


def test_evaluate_on_an_empty_file_is_an_error_naming_it(tagger, tmp_path):
    empty = tmp_path / "empty.conll"
    empty.write_bytes(b"")
    result = runner.invoke(app, ["evaluate", str(tagger), str(empty)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{empty}: contains no sentences" in result.stderr


def test_top_k_on_a_tagger_is_an_error_saying_what_it_is_for(tagger):
    result = runner.invoke(app, ["predict", str(tagger), "-", "--top-k", "2"], input="Ada visited Paris .\n")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "--top-k lists a classifier's ranked classes; a tagger gives one label per token" in result.stderr


# ---------------------------------------------------------------------------
# 3. --resume says where, 4. one "saved" message, 5. Ctrl+C in the last epoch exits 130


def _interrupt_at(monkeypatch, step: int) -> None:
    """Press Ctrl+C (a real SIGINT) once during training step `step` (counted from 0)."""
    original = Task.training_step

    def training_step(task, batch, batch_idx):
        if task.global_step == step:
            os.kill(os.getpid(), signal.SIGINT)
        return original(task, batch, batch_idx)

    monkeypatch.setattr(Task, "training_step", training_step)


@pytest.mark.parametrize("step", [1, 2], ids=["middle-step", "last-step"])
def test_ctrl_c_in_the_only_epoch_exits_130_and_says_saved_once(ner_splits, tmp_path, monkeypatch, step):
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, step)  # three batches of two sentences: step 2 is the run's very last one
    result = runner.invoke(app, ["train", "conll-ner", "--out", str(out), *_ner_cli(ner_splits),
                                 *_sets(*SMALL, "data.batch_size=2", "train.max_epochs=1")])
    assert result.exit_code == 130, result.output
    assert json.loads((out / "model" / "metrics.json").read_text())["interrupted"] is True
    assert result.stderr.count("the best weights so far were saved") == 1
    assert "saving the best weights" not in result.stderr, "fit's own note repeated the CLI's"


def test_resume_says_at_which_epoch_and_step_with_the_best_dev_score(ner_splits, tmp_path, monkeypatch, caplog):
    out = tmp_path / "run"
    settings = _sets(*SMALL, "data.batch_size=2", "train.max_epochs=3", "train.patience=0")
    _interrupt_at(monkeypatch, step=4)  # epoch 2, its second batch of three: last.ckpt holds step 5
    stopped = runner.invoke(app, ["train", "conll-ner", "--out", str(out), *_ner_cli(ner_splits), *settings])
    assert stopped.exit_code == 130, stopped.output
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="seqtag"):
        resumed = runner.invoke(app, ["train", "conll-ner", "--out", str(out), "--resume", *_ner_cli(ner_splits),
                                      *settings])
    assert resumed.exit_code == 0, resumed.output
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("resuming at")]
    assert len(lines) == 1, caplog.text
    assert lines[0].startswith("resuming at epoch 2, step 5 (best dev score ")
    assert "resuming at epoch 2, step 5" in resumed.stderr, "the CLI shows it on stderr"


# ---------------------------------------------------------------------------
# 6. a language model reading CoNLL columns


def _char_lm_data(source: str):
    from seqtag.config import load_recipe

    return load_recipe("char-lm", [], train=source).data


def test_a_language_model_reading_conll_columns_warns_once_naming_file_and_line(tmp_path, caplog):
    from seqtag.data.text_readers import read_text

    columns = tmp_path / "ner.txt"  # CrossNER-style: CoNLL columns in a .txt file
    columns.write_text("# a comment\nAda B-PER\nLovelace I-PER\nvisited O\n\nParis B-LOC\n. O\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="seqtag"):
        rows = read_text(_char_lm_data(str(columns)), str(columns), cache_dir=str(tmp_path / "cache"))
    assert rows[1]["text"] == "Ada B-PER\n", "a warning, not a refusal: the file is still read as text"
    warnings = [record.getMessage() for record in caplog.records if "looks like CoNLL columns" in record.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert f"{columns} looks like CoNLL columns (line 2: 'Ada B-PER'" in warnings[0]


def test_plain_text_and_prose_ending_in_capitals_read_without_the_columns_warning(tmp_path, caplog):
    from seqtag.data.text_readers import read_text

    prose = tmp_path / "prose.txt"
    prose.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\nHe works at IBM\nO Romeo\n",
                     encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="seqtag"):
        read_text(_char_lm_data(str(prose)), str(prose), cache_dir=str(tmp_path / "cache"))
    assert "looks like CoNLL columns" not in caplog.text


# ---------------------------------------------------------------------------
# 7. --encoding


def test_predict_reads_text_conll_and_stdin_in_the_encoding_given(tagger, tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café au lait\n".encode("latin-1"))
    refused = runner.invoke(app, ["predict", str(tagger), str(latin)])
    assert refused.exit_code == 2
    assert f"{latin}, line 1: is not valid UTF-8 (byte 0xe9 at column 4)" in refused.stderr
    for args, given in (([str(latin)], None), (["-"], latin.read_bytes())):
        result = runner.invoke(app, ["predict", str(tagger), *args, "--encoding", "latin-1"], input=given)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["tokens"] == ["café", "au", "lait"]
    conll = tmp_path / "latin.conll"
    conll.write_bytes("café NN I-NP O\nParis NNP I-NP I-LOC\n".encode("cp1252"))
    result = runner.invoke(app, ["predict", str(tagger), str(conll), "--encoding", "cp1252", "--output", "conll"])
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.stdout.splitlines() if line] == ["café", "Paris"]


def test_a_byte_the_encoding_cannot_decode_names_file_line_and_encoding(tagger, tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"plain\ncaf\xe9\n")
    result = runner.invoke(app, ["predict", str(tagger), str(latin), "--encoding", "ascii"])
    assert result.exit_code == 2 and result.stdout == ""
    assert f"{latin}, line 2: is not valid ascii (byte 0xe9 at column 4)" in result.stderr


@pytest.mark.parametrize("encoding, needle", [("utf-16", "does not use for a line break"),
                                              ("klingon", "which Python does not know")])
def test_an_encoding_lines_cannot_be_read_in_is_an_error_naming_the_option(tagger, encoding, needle):
    result = runner.invoke(app, ["predict", str(tagger), "-", "--encoding", encoding], input="Ada\n")
    assert result.exit_code == 2, result.output
    assert f"--encoding is {encoding!r}" in result.stderr and needle in result.stderr


def test_readers_that_read_utf8_only_refuse_another_encoding_instead_of_ignoring_it(tagger, ner_splits, tmp_path):
    from seqtag.errors import SeqtagError
    from seqtag.streaming import read_items

    table = tmp_path / "texts.csv"
    table.write_text("text\nfine\n", encoding="utf-8")
    with pytest.raises(SeqtagError, match=r"--encoding is 'latin-1', but .*texts.csv is read as csv, which is read "
                                          r"as UTF-8 only; convert the file"):
        read_items(str(table), "csv", None, encoding="latin-1")
    result = runner.invoke(app, ["evaluate", str(tagger), str(ner_splits["test"]), "--encoding", "latin-1"])
    assert result.exit_code == 2
    assert "`seqtag evaluate` reads files as UTF-8 only" in result.stderr and "iconv -f latin-1" in result.stderr
    assert runner.invoke(app, ["evaluate", str(tagger), str(ner_splits["test"]), "--encoding", "UTF8"]).exit_code == 0


def test_the_ray_engine_refuses_an_encoding_it_would_ignore(tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path), "x.txt", "--engine", "ray", "--out", str(tmp_path / "o"),
                                 "--encoding", "latin-1"])
    assert result.exit_code == 2, result.output
    assert "--encoding is 'latin-1', but --engine ray reads text files as UTF-8 only" in result.stderr
