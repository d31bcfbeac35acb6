"""Settings that cannot work and input that used to be misread (issue 11, items 6 and 7), and the reader fixes
the fuzzing found (item 8): each is one clear error, pinned here by its message."""
from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

import seqtag
from cli import app
from seqtag import hardware
from seqtag.config import DataConfig, load_recipe
from seqtag.data import lm, readers, text_readers
from seqtag.data.classification import read_texts
from seqtag.data.corpus import prepare_tagging
from seqtag.errors import InputError, SeqtagError
from seqtag.training import train

runner = CliRunner()
FAST = ["train.progress_bar=false", "model.hidden_size=8", "model.word_dim=8", "model.char_hidden=4",
        "model.char_dim=4", "model.num_layers=1"]


def _error(result, *needles):
    """One paragraph on stderr starting "error: ", nothing on stdout, exit code 2, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    message = result.stderr[result.stderr.index("error: "):]
    for needle in needles:
        assert needle in message, message
    return message


# ---------------------------------------------------------------------------
# Item 6: settings that cannot work stop before training starts


@pytest.mark.parametrize("setting, message", [
    ("train.max_time_minutes=-1", r"train.max_time_minutes is -1.0; it must be greater than zero"),
    ("train.max_time_minutes=0", r"train.max_time_minutes is 0.0; it must be greater than zero"),
    ("train.max_steps=1.5", r"train.max_steps is 1.5; expected a whole number"),
    ("train.seed=99999999999999999999",
     r"train.seed is 99999999999999999999; it must be a whole number from 0 to 4294967295"),
    ("train.seed=-1", r"train.seed is -1; it must be a whole number from 0 to 4294967295"),
])
def test_impossible_values_are_refused_when_the_recipe_is_read(setting, message):
    with pytest.raises(SeqtagError, match=message):
        load_recipe("demo", [setting])


@pytest.mark.parametrize("setting, message", [
    ("train.precision=fp8", r"train.precision is 'fp8'; expected one of .*'32-true'.*bf16-mixed"),
    ("train.devices=5", r"train.devices is 5, but this machine has 2 CPU cores; .* at most train.devices=2"),
    ("train.devices=0", r"train.devices is 0; on a CPU it is the number of processes to train with, 1 to 2"),
    ("train.devices=0,1", r"train.devices is '0,1'; on a CPU it is the number of processes"),
    ("train.strategy=ddpp", r"train.strategy is 'ddpp'; expected one of 'auto', 'ddp'"),
    ("train.strategy=fsdp", r"train.strategy is 'fsdp', which shards the model over GPUs, and this run is on cpu"),
    ("train.accelerator=quantum", r"train.accelerator is 'quantum'; expected one of 'auto', 'cpu', 'gpu'"),
])
def test_hardware_settings_this_machine_cannot_run_stop_before_any_data_is_read(setting, message, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setattr(hardware, "cpu_cores", lambda: 2)
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    # The training file does not exist: had the data been read first, the error would name it.
    recipe = load_recipe("demo", [setting], train=str(tmp_path / "missing.conll"))
    with pytest.raises(SeqtagError, match=message):
        train(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_gpu_accelerator_without_a_gpu_is_one_paragraph_from_the_cli(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["train", "demo", "--out", str(tmp_path / "run"), "--set", "train.accelerator=gpu"])
    _error(result, "train.accelerator is 'gpu', but this machine has no GPU that torch can use",
           "--set train.accelerator=cpu")
    with pytest.raises(SeqtagError, match=r"train.accelerator is 'cuda', but this machine has no GPU"):
        hardware.check_training_hardware(load_recipe("demo", ["train.accelerator=cuda"]).train)


@pytest.mark.parametrize("setting, message", [
    ("train.precision=transformer-engine", r"train.precision is 'transformer-engine', which needs NVIDIA's "),
    ("train.strategy=deepspeed", r"train.strategy is 'deepspeed', which needs the deepspeed package \(not "),
])
def test_settings_that_need_a_package_that_is_not_installed(setting, message, monkeypatch):
    monkeypatch.setattr(hardware.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SeqtagError, match=message):
        hardware.check_training_hardware(load_recipe("demo", [setting]).train)


def test_settings_this_machine_can_run_pass(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_cores", lambda: 2)
    for settings in ([], ["train.accelerator=cpu", "train.devices=2", "train.strategy=ddp"],
                     ["train.precision=bf16-mixed"], ["train.precision=16"], ["train.seed=4294967295"]):
        hardware.check_training_hardware(load_recipe("demo", settings).train)


# ---------------------------------------------------------------------------
# Item 7: predict reads tables by their text column, CoNLL files by their tokens


POSITIVE = ["a good and fun film", "great acting , good story", "fun , great and moving", "a good great film"]
NEGATIVE = ["a bad and boring film", "awful acting , bad story", "boring , awful and dull", "a bad awful film"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    rows = [(text, "pos") for text in POSITIVE] + [(text, "neg") for text in NEGATIVE]
    data = folder / "train.csv"
    data.write_text("text,label\n" + "".join(f'"{t}",{label}\n' for t, label in rows), encoding="utf-8")
    recipe = load_recipe("sentiment", FAST + ["data.dev_fraction=0.25"], train=str(data))
    return train(recipe, folder / "run", smoke=True).model_dir


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tagger")
    return train(load_recipe("demo", FAST), folder / "run", smoke=True).model_dir


def _predictions(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_predict_reads_the_text_column_of_a_csv_tsv_or_jsonl_file(classifier, tmp_path):
    model = seqtag.load(classifier)
    texts = ["a good film, really", "boring"]
    expected = [result.to_dict() for result in model.predict(texts)]
    csv_file = tmp_path / "new.csv"
    csv_file.write_text('text,label\n"a good film, really",pos\nboring,neg\n', encoding="utf-8")
    tsv_file = tmp_path / "new.tsv"
    tsv_file.write_text("label\ttext\npos\ta good film, really\nneg\tboring\n", encoding="utf-8")
    jsonl_file = tmp_path / "new.jsonl"
    jsonl_file.write_text("".join(json.dumps({"label": "x", "text": t}) + "\n" for t in texts), encoding="utf-8")
    for file in (csv_file, tsv_file, jsonl_file):
        assert _predictions(runner.invoke(app, ["predict", str(classifier), str(file)])) == expected, file
    # --format chooses: the same CSV read as raw lines classifies the header and whole rows.
    raw = _predictions(runner.invoke(app, ["predict", str(classifier), str(csv_file), "--format", "text"]))
    assert len(raw) == 3


def test_predict_keeps_empty_texts_in_step_with_the_rows(classifier, tmp_path):
    csv_file = tmp_path / "gaps.csv"
    csv_file.write_text('text\ngood\n""\nbad\n', encoding="utf-8")
    assert len(_predictions(runner.invoke(app, ["predict", str(classifier), str(csv_file)]))) == 3


def test_predict_errors_for_tables(classifier, tmp_path):
    no_column = tmp_path / "other.csv"
    no_column.write_text("review,label\ngood,pos\n", encoding="utf-8")
    _error(runner.invoke(app, ["predict", str(classifier), str(no_column)]),
           "other.csv, line 1: no column 'text' (data.text_column) in the header; columns: 'review', 'label'")
    tabbed = tmp_path / "tabbed.csv"
    tabbed.write_text("text\tlabel\ngood\tpos\n", encoding="utf-8")
    _error(runner.invoke(app, ["predict", str(classifier), str(tabbed)]), "tabbed.csv, line 1",
           "the file looks tab-separated: set --set data.format=tsv")
    unknown = tmp_path / "texts.dat"
    unknown.write_text("good\n", encoding="utf-8")
    _error(runner.invoke(app, ["predict", str(classifier), str(unknown)]),
           "texts.dat: the extension '.dat' does not say how to read the file; give --format "
           "text|csv|tsv|jsonl")
    _error(runner.invoke(app, ["predict", str(classifier), str(unknown), "--format", "conll"]),
           "--format is 'conll'; this model (classification) reads text|csv|tsv|jsonl.")
    _error(runner.invoke(app, ["predict", str(classifier), "-", "--format", "csv"], input="text\ngood\n"),
           "--format csv reads a file; standard input is read as text")
    assert len(_predictions(runner.invoke(app, ["predict", str(classifier), str(unknown), "--format", "text"]))) == 1


def test_predict_batch_size_must_be_positive(classifier):
    _error(runner.invoke(app, ["predict", str(classifier), "-", "--batch-size", "0"], input="good\n"),
           "--batch-size is 0; it must be 1 or more")


def test_a_tagger_predicts_the_tokens_of_a_conll_or_conllu_file(tagger, tmp_path):
    conll = tmp_path / "new.conll"
    conll.write_text("Ada B-PER\nLovelace I-PER\n\nParis B-LOC\n", encoding="utf-8")
    rows = _predictions(runner.invoke(app, ["predict", str(tagger), str(conll)]))
    assert [row["tokens"] for row in rows] == [["Ada", "Lovelace"], ["Paris"]]
    tokens_only = tmp_path / "tokens.conll"
    tokens_only.write_text("Ada\nLovelace\n\n", encoding="utf-8")
    result = runner.invoke(app, ["predict", str(tagger), str(tokens_only), "--output", "conll"])
    assert [line.split("\t")[0] for line in result.stdout.splitlines() if line] == ["Ada", "Lovelace"]
    conllu = tmp_path / "new.conllu"
    conllu.write_text("1\tDogs\tdog\tNOUN\tNNS\t_\t2\tnsubj\t_\t_\n2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
                      "2\tdo\tdo\tAUX\t_\t_\t0\troot\t_\t_\n3\tn't\tnot\tPART\t_\t_\t2\tadvmod\t_\t_\n",
                      encoding="utf-8")
    assert _predictions(runner.invoke(app, ["predict", str(tagger), str(conllu)]))[0]["tokens"] == ["Dogs", "do",
                                                                                                    "n't"]
    table = tmp_path / "new.csv"
    table.write_text("text\nAda\n", encoding="utf-8")
    _error(runner.invoke(app, ["predict", str(tagger), str(table)]),
           "new.csv: a .csv file holds csv data, which this model (tagging) does not read; give --format text")


# ---------------------------------------------------------------------------
# Item 7: files that were read wrong or gave a library's error


def test_a_csv_with_a_header_and_no_rows_says_so(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty.csv: has a header but no rows; expected one row per text after "
                                         r"the header"):
        read_texts(DataConfig(format="auto", text_column="text", label_column="label"), str(path))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty.jsonl: is empty; expected one JSON object per line"):
        read_texts(DataConfig(format="auto", text_column="text", label_column="label"), str(empty))


def test_a_csv_file_holding_tabs_names_the_likely_fix(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("text\tlabel\ngood film\tpos\n", encoding="utf-8")
    config = DataConfig(format="auto", text_column="text", label_column="label")
    with pytest.raises(InputError, match=r"a.csv, line 1: no column 'text' .*; the row holds tabs, so the file "
                                         r"looks tab-separated: set --set data.format=tsv \(or name the file .tsv\)"):
        read_texts(config, str(path))
    headless = DataConfig(format="csv", header=False, text_column=0, label_column=1)
    with pytest.raises(InputError, match=r"a.csv, line 1: data.label_column=1 is out of range: the rows have 1 "
                                         r"field, so expected 0 to 0; the row holds tabs"):
        read_texts(headless, str(path))
    commas = tmp_path / "b.tsv"
    commas.write_text("text,label\ngood,pos\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"looks comma-separated: set --set data.format=csv"):
        read_texts(config, str(commas))


def _tagging_recipe(tmp_path, train_text: str, dev_text: str, scheme: str = "auto"):
    (tmp_path / "train.conll").write_text(train_text, encoding="utf-8")
    (tmp_path / "dev.conll").write_text(dev_text, encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"task: tagging\ndata:\n  format: conll\n  scheme: {scheme}\n", encoding="utf-8")
    return load_recipe(str(recipe), train=str(tmp_path / "train.conll"), dev=str(tmp_path / "dev.conll"))


SCHEME_CASES = {
    "plain training labels, prefixed dev labels": (
        "aspirin DRUG\nhelps O\n\n", "ibuprofen B-DRUG\nhurts O\n\n",
        r"dev.conll, line 1: label 'B-DRUG' has a span prefix, but the labels of the training file .*train.conll "
        r"have none .*give both files the same scheme"),
    "prefixed training labels, plain dev labels": (
        "aspirin B-DRUG\nhelps O\n\n", "ibuprofen DRUG\nhurts O\n\n",
        r"dev.conll, line 1: label 'DRUG' breaks the IOB2 scheme of the training file .*train.conll: 'DRUG' is "
        r"neither 'O' nor PREFIX-TYPE"),
    "a mixed scheme in training": (
        "Ada B-PER\n\nin O\nParis I-LOC\n\n", "x O\n\n",
        r"train.conll, line 4: the label scheme is mixed: 'I-LOC' after 'O' \(line 4\) opens an entity .* 'B-PER' "
        r"at the start \(line 1\) .*: set it with --set data.scheme=iob1\|iob2\|bioes."),
}


@pytest.mark.parametrize("case", SCHEME_CASES)
def test_schemes_that_differ_between_files_or_within_one_name_file_and_line(case, tmp_path):
    train_text, dev_text, message = SCHEME_CASES[case]
    with pytest.raises(InputError, match=message):
        prepare_tagging(_tagging_recipe(tmp_path, train_text, dev_text))


def test_prefixed_labels_in_every_file_are_plain_labels_when_declared_so(tmp_path):
    both = _tagging_recipe(tmp_path, "aspirin B-DRUG\nhelps O\n\n", "ibuprofen B-DRUG\nhurts O\n\n", "none")
    assert prepare_tagging(both).sizes["labels"] == 2


# ---------------------------------------------------------------------------
# Item 8: what fuzzing found in the readers (each was a traceback, a library error or a silent misreading)


JSONL_CASES = {
    "a huge integer": ('{"text": "a", "label": ' + "1" * 5000 + "}", r"line 1: cannot be read as JSON \(Exceeds "),
    "deep nesting": ("[" * 100_000, r"line 1: cannot be read as JSON \(nested too deeply\)"),
    "a lone surrogate": ('{"text": "bad \\ud800", "label": "x"}',
                         r"line 1: the text holds an unpaired surrogate \\ud800 at character 5"),
    "an empty label": ('{"text": "fine", "label": " "}', r"line 1: the label is empty"),
    "a text that is a number": ('{"text": 5, "label": "x"}', r"line 1: the text is a JSON int; expected a string"),
    "a label that is a list": ('{"text": "a", "label": [1]}',
                               r"line 1: the label is a JSON list; expected a string or a number"),
}


@pytest.mark.parametrize("case", JSONL_CASES)
def test_jsonl_values_that_are_no_text_or_label(case, tmp_path):
    content, message = JSONL_CASES[case]
    path = tmp_path / "a.jsonl"
    path.write_text(content + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a.jsonl, " + message):
        read_texts(DataConfig(format="jsonl", text_column="text", label_column="label"), str(path))


def test_conllu_empty_form_or_label_field(tmp_path):
    path = tmp_path / "a.conllu"
    path.write_text("1\tDogs\tdog\tNOUN\t_\t_\t0\troot\t_\t_\n2\t\tx\tX\t_\t_\t1\tdep\t_\t_\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a.conllu, line 2: the FORM field is empty; CoNLL-U writes _ for a field"):
        readers.read_conllu(path)
    path.write_text("1\tDogs\tdog\t\t_\t_\t0\troot\t_\t_\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a.conllu, line 1: the UPOS field is empty"):
        readers.read_conllu(path)


def test_class_folder_names_that_cannot_be_labels(tmp_path):
    root = tmp_path / "data"
    (root / "pos").mkdir(parents=True)
    (root / "pos" / "1.txt").write_text("good\n", encoding="utf-8")
    bad = os.path.join(os.fsencode(root), b"n\xe9g")
    os.mkdir(bad)
    with open(os.path.join(bad, b"1.txt"), "wb") as file:
        file.write(b"bad\n")
    with pytest.raises(InputError, match=r"data/n\\xe9g: the name is not valid UTF-8 \(a class folder's name is its "
                                         r"label"):
        text_readers.read_class_folders(root)
    os.rename(bad, os.path.join(os.fsencode(root), b" "))
    with pytest.raises(InputError, match=r"this class folder's name is blank, and its name is the label"):
        text_readers.read_class_folders(root)


def test_a_text_file_whose_name_looks_like_a_pattern_is_read(tmp_path):
    path = tmp_path / "corpus[1].txt"
    path.write_text("to be or not to be\n", encoding="utf-8")
    assert lm.read_text(DataConfig(format="text", tokenizer="char"), str(path))["text"] == ["to be or not to be\n"]
