"""Text classification: readers and their errors, tokenizers, pooling, metrics, train → load → predict, recipes."""
from __future__ import annotations

import json
import logging

import pytest
import torch

import seqtag
from seqtag.config import DataConfig, load_recipe
from seqtag.data import text_readers
from seqtag.data.batching import collate
from seqtag.data.classification import read_texts
from seqtag.data.featurizer import Featurizer
from seqtag.data.vocab import PAD_ID, UNK_ID, build_text_tokenizer
from seqtag.errors import InputError, SeqtagError
from seqtag.metrics import classification_scores
from seqtag.training import train

POSITIVE = ["a good and fun film", "great acting , good story", "fun , great and moving", "a good great film"]
NEGATIVE = ["a bad and boring film", "awful acting , bad story", "boring , awful and dull", "a bad awful film"]
# Dev and test texts are new: the training words in combinations (not reorderings) training never showed, so a
# score on them measures what the model learned, not what it memorised.
DEV = [("a fun and moving film", "pos"), ("good story , fun acting", "pos"), ("moving and great", "pos"),
       ("a dull and boring film", "neg"), ("dull , awful story", "neg"), ("awful acting , dull film", "neg")]
TEST = [("good and moving", "pos"), ("a great and fun story", "pos"), ("fun acting , great film", "pos"),
        ("a dull and awful film", "neg"), ("bad acting , boring story", "neg"), ("awful , bad and boring", "neg")]
FAST = ["train.progress_bar=false", "model.hidden_size=8", "model.word_dim=8", "model.char_hidden=4",
        "model.char_dim=4", "model.num_layers=1"]


def _csv(path, rows, header="text,label"):
    path.write_text("\n".join([header] + [f'"{t}",{l}' for t, l in rows]) + "\n", encoding="utf-8")
    return path


def _labelled():
    return [(t, "pos") for t in POSITIVE] + [(t, "neg") for t in NEGATIVE]


def _class_files(tmp_path):
    (tmp_path / "reviews.pos").write_text("\n".join(POSITIVE) + "\n", encoding="utf-8")
    (tmp_path / "reviews.neg").write_text("\n".join(NEGATIVE) + "\n", encoding="utf-8")
    return f"{tmp_path / 'reviews.pos'},{tmp_path / 'reviews.neg'}"


def _class_folders(root, rows=None):
    """One folder per label, one file per text (`rows`: (text, label) pairs, the training texts by default)."""
    for i, (text, label) in enumerate(rows or _labelled()):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i}.txt").write_text(text + "\n", encoding="utf-8")
    return root


def _read(path, **settings):
    return read_texts(DataConfig(**{"format": "auto", "text_column": "text", "label_column": "label", **settings}),
                      str(path))


# ---------------------------------------------------------------------------
# Readers


def test_csv_with_header_keeps_quoted_commas_and_rows_lines(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('text,label\n"good, really",pos\n"two\nlines",neg\n', encoding="utf-8")
    ds = _read(path)
    assert ds["text"] == ["good, really", "two\nlines"] and ds["label"] == ["pos", "neg"] and ds["line"] == [2, 3]


def test_tsv_without_header_by_index_and_sst2_style(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text('it \'s "fine"\t1\nbad\t0\n', encoding="utf-8")
    ds = _read(path, header=False, text_column=0, label_column=1, quoting=False)
    assert ds["text"] == ['it \'s "fine"', "bad"] and ds["label"] == ["1", "0"]
    sst = tmp_path / "train.tsv"
    sst.write_text("sentence\tlabel\nhide new secretions \t0\n", encoding="utf-8")
    assert _read(sst, text_column="sentence", quoting=False)["label"] == ["0"]


def test_jsonl_with_chosen_fields(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"review": "nice", "stars": 5}\n{"review": "meh", "stars": 2}\n', encoding="utf-8")
    ds = _read(path, text_column="review", label_column="stars")
    assert ds["text"] == ["nice", "meh"] and ds["label"] == ["5", "2"]


def test_class_files_and_class_folders(tmp_path):
    assert text_readers.class_file_label("data/rt-polarity.pos") == "pos"
    ds = read_texts(DataConfig(format="class_files"), _class_files(tmp_path))
    assert ds["label"] == ["pos"] * 4 + ["neg"] * 4 and ds["line"][4] == 1
    ds = read_texts(DataConfig(format="class_folders"), str(_class_folders(tmp_path / "imdb")))
    assert sorted(set(ds["label"])) == ["neg", "pos"] and len(ds) == 8


def test_hub_reader_on_a_local_folder(tmp_path):
    folder = tmp_path / "hubdata"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"sentence": "fine", "label": 1}\n{"sentence": "bad", "label": 0}\n')
    ds = read_texts(DataConfig(format="hub", hub_name=str(folder), text_column="sentence", label_column="label"),
                    "train")
    assert ds["text"] == ["fine", "bad"] and ds["label"] == ["1", "0"] and ds["line"] == [1, 2]
    with pytest.raises(SeqtagError, match="no field 'text'.*available fields: sentence, label"):
        read_texts(DataConfig(format="hub", hub_name=str(folder), text_column="text", label_column="label"), "train")


# ---------------------------------------------------------------------------
# Bad input: one error (or counted skip) per case


def test_missing_label_column_is_named_with_the_header(tmp_path):
    path = _csv(tmp_path / "a.csv", _labelled(), header="text,sentiment")
    with pytest.raises(InputError, match=r"a.csv, line 1: no column 'label' \(data.label_column\).*'sentiment'"):
        _read(path)


def test_label_column_index_out_of_range(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("good\tpos\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a.tsv, line 1: data.label_column=5 is out of range"):
        _read(path, header=False, text_column=0, label_column=5)


BAD_ROWS = {
    "empty text": ("a.csv", 'text,label\n"good",pos\n"  ",neg\n"bad",neg\n', r"a.csv, line 3: the text is empty",
                   ["good", "bad"]),
    "wrong field count": ("a.csv", "text,label\ngood,pos\nbad, really,neg\n",
                          r"a.csv, line 3: expected 2 fields, found 3", ["good"]),
    "bad json": ("a.jsonl", '{"text": "nice", "label": 1}\n{"text": "meh", \n',
                 r"a.jsonl, line 2: is not valid JSON", ["nice"]),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_a_bad_row_is_an_error_or_a_counted_skip(case, tmp_path, caplog):
    name, content, message, kept = BAD_ROWS[case]
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        _read(path)
    with caplog.at_level(logging.WARNING, logger="seqtag"):
        assert _read(path, skip_bad_rows=True)["text"] == kept
    assert "skipped 1 bad row" in caplog.text and message.split(": ")[0].replace("\\", "") in caplog.text


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "a.neg"
    path.write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    (tmp_path / "a.pos").write_text("good\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a.neg, line 2: is not valid UTF-8"):
        read_texts(DataConfig(format="class_files"), f"{tmp_path / 'a.pos'},{path}")


def test_empty_class_folder_is_named(tmp_path):
    root = _class_folders(tmp_path / "imdb")
    (root / "unsup").mkdir()
    with pytest.raises(InputError, match=r"unsup: this class folder is empty"):
        read_texts(DataConfig(format="class_folders"), str(root))


def test_a_class_seen_only_in_dev_is_reported_and_scored_as_an_error(tmp_path, caplog):
    train_file = _csv(tmp_path / "train.csv", _labelled())
    dev = _csv(tmp_path / "dev.csv", [("good", "pos"), ("so so", "neutral")])
    recipe = load_recipe("sentiment", FAST, train=train_file, dev=dev)
    with caplog.at_level(logging.WARNING, logger="seqtag"):
        result = train(recipe, tmp_path / "run", smoke=True)
    assert "labels never seen in training, scored as errors: neutral ×1" in caplog.text
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["unseen_labels"] == {"dev": {"neutral": 1}}
    assert json.loads((result.model_dir / "labels.json").read_text()) == ["neg", "pos"], "labels from train only"
    dev_figures = result.metrics["dev"]
    assert dev_figures["unseen_labels"] == {"neutral": 1} and dev_figures["texts"] == 2
    good_is_right = seqtag.load(result.model_dir).predict("good").label == "pos"
    assert dev_figures["accuracy"] == (50.0 if good_is_right else 0.0), "the neutral text counts, as an error"
    assert dev_figures["per_label"]["neutral"]["recall"] == 0.0


def test_class_files_need_two_labels_and_task_needs_a_text_format(tmp_path):
    with pytest.raises(SeqtagError, match="two or more files with different extensions"):
        read_texts(DataConfig(format="class_files"), str(tmp_path / "only.pos"))
    with pytest.raises(SeqtagError, match="data.format is 'conll', which task 'classification' cannot read"):
        load_recipe("mr", ["data.format=conll"])
    with pytest.raises(SeqtagError, match="model.pooling is 'min'"):
        load_recipe("mr", ["model.pooling=min"])


# ---------------------------------------------------------------------------
# Tokenizers, pooling, metrics


@pytest.mark.parametrize("kind", ["word", "bpe", "wordpiece"])
def test_text_tokenizers_lowercase_normalize_and_truncate(kind):
    texts = ["Ｇｏｏｄ film, good FILM!", "bad film"] * 5
    tokenizer = build_text_tokenizer(texts, kind, vocab_size=200, lowercase=True, normalization="nfkc")
    assert tokenizer.token_to_id("<pad>") == PAD_ID and tokenizer.token_to_id("<unk>") == UNK_ID
    encoder = Featurizer(tokenizer, None, None, 30, raw_text=True, max_length=3)
    out = encoder.encode(["GOOD film , good film", "bad", ""])
    whole = [tokenizer.encode(text).ids for text in ("GOOD film , good film", "bad")]
    assert len(whole[0]) > 3 and out["word_ids"][:2] == [whole[0][:3], whole[1]], "the first max_length tokens"
    assert out["truncated"] == [True, False, False]
    assert out["word_ids"][2] == [UNK_ID], "an empty text is one unknown token"
    assert encoder.tokens(["Ｇｏｏｄ"])[0][0].startswith("g")


def test_classification_scores():
    scores = classification_scores(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c"])
    assert scores["accuracy"] == 50.0 and scores["texts"] == 4
    assert scores["confusion"]["a"] == {"a": 1, "b": 1, "c": 0}
    assert scores["per_label"]["b"]["precision"] == 50.0 and scores["per_label"]["b"]["recall"] == 100.0
    assert scores["macro_f1"] == pytest.approx((50.0 + 200 / 3 + 0.0) / 3)


# ---------------------------------------------------------------------------
# Train → save → load → predict → evaluate


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cls")
    files = {split: _csv(tmp / f"{split}.csv", rows) for split, rows in
             (("train", _labelled()), ("dev", DEV), ("test", TEST))}
    # Small batches and a constant rate: the epoch first at 100 on dev (the one kept) is then a well-trained one.
    recipe = load_recipe("sentiment", [*FAST, "model.hidden_size=16", "model.word_dim=16", "data.batch_size=2",
                                       "train.max_epochs=30", "train.lr=0.05", "train.lr_schedule=none",
                                       "model.dropout=0.0", "model.word_dropout=0.0", "train.patience=0",
                                       "model.embedders=[word]", "train.class_weights=balanced",
                                       "train.dev_metric=macro_f1"], **files)
    return train(recipe, tmp / "run"), files


@pytest.mark.slow
def test_classifier_learns_and_saves_without_char_vocabulary(trained_classifier):
    result, files = trained_classifier
    assert sorted(p.name for p in result.model_dir.iterdir()) == [
        "config.json", "labels.json", "metrics.json", "model.safetensors", "word_tokenizer.json"]
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["task"] == "classification" and config["split"] is None
    # Unseen texts; with seeds 1 to 10 every run classified all of dev and test correctly.
    assert result.metrics["dev"]["accuracy"] == 100.0 and result.metrics["test"]["macro_f1"] == 100.0
    assert result.metrics["test"]["texts"] == len(TEST)
    fitted = seqtag.load(result.model_dir).evaluate(files["train"])
    assert fitted["accuracy"] == 100.0 and fitted["texts"] == len(_labelled()), "the training texts are fitted"


@pytest.mark.slow
def test_loaded_classifier_predicts_raw_text_in_batches(trained_classifier):
    result, files = trained_classifier
    model = seqtag.load(result.model_dir)
    assert isinstance(model, seqtag.predict.TextClassifier) and model.labels == ["neg", "pos"]
    one = model.predict("a good , fun film")
    assert one.label == "pos" and set(one.probabilities) == {"neg", "pos"}
    assert sum(one.probabilities.values()) == pytest.approx(1.0) and one.top_k[0] == ("pos", one.probability)
    many = model.predict(["awful and boring", "", "great great great film", "bad"], top_k=1, batch_size=2)
    assert [r.label for r in many][::2] == ["neg", "pos"] and all(len(r.top_k) == 1 for r in many)
    assert model.predict([]) == []
    assert model.evaluate(files["test"]) == result.metrics["test"]


def test_missing_char_vocabulary_is_required_when_the_model_reads_characters(tmp_path):
    recipe = load_recipe("sentiment", FAST, train=_csv(tmp_path / "t.csv", _labelled()))
    result = train(recipe, tmp_path / "run", smoke=True)
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["split"] == {"seed": 1, "dev_fraction": 0.1, "train": 7, "dev": 1}
    assert config["truncated"] == {"train": 0, "dev": 0}
    (result.model_dir / "char_tokenizer.json").unlink()
    with pytest.raises(SeqtagError, match="missing char_tokenizer.json"):
        seqtag.load(result.model_dir)


def test_seeded_dev_and_test_splits_are_recorded_and_repeatable(tmp_path):
    from seqtag.data.classification import prepare_classification

    recipe = load_recipe("mr", ["data.dev_fraction=0.25", "data.test_fraction=0.25"], train=_class_files(tmp_path))
    first, again = (prepare_classification(recipe) for _ in range(2))
    assert first.record.split == {"seed": 1, "test_fraction": 0.25, "dev_fraction": 0.25, "train": 4, "dev": 2,
                                     "test": 2}
    assert first.rows["test"]["text"] == again.rows["test"]["text"]
    assert not set(first.rows["test"]["text"]) & set(first.rows["train"]["text"])
    with pytest.raises(SeqtagError, match="data.test_fraction is 0.9"):
        load_recipe("mr", ["data.test_fraction=0.9"])


def _sst2(path, rows):
    path.write_text("sentence\tlabel\n" + "".join(f"{t} \t{int(l == 'pos')}\n" for t, l in rows))
    return path


def _recipe_files(name, tmp_path):
    if name == "sentiment":
        return {"train": _csv(tmp_path / "train.csv", _labelled()), "test": _csv(tmp_path / "test.csv", TEST)}
    if name == "sst2":
        return {"train": _sst2(tmp_path / "train.tsv", _labelled()), "dev": _sst2(tmp_path / "dev.tsv", DEV)}
    if name == "mr":
        return {"train": _class_files(tmp_path)}
    return {"train": _class_folders(tmp_path / "train"), "test": _class_folders(tmp_path / "test", TEST)}


# The texts each smoke run must score: a given dev or test file whole, else the held-out tenth of training.
SMOKE_TEXTS = {"sentiment": {"dev": 1, "test": len(TEST)}, "sst2": {"dev": len(DEV)}, "mr": {"dev": 1},
               "imdb": {"dev": 1, "test": len(TEST)}}


@pytest.mark.parametrize("name", ["sentiment", "sst2", "mr", "imdb"])
def test_every_classification_recipe_has_a_working_smoke_run(name, tmp_path, caplog):
    files = _recipe_files(name, tmp_path)
    recipe = load_recipe(name, ["train.progress_bar=false", "data.max_length=4"], **files)
    with caplog.at_level(logging.INFO, logger="seqtag"):
        result = train(recipe, tmp_path / "run", smoke=True)
    assert "texts cut to data.max_length=4 tokens" in caplog.text
    assert json.loads((result.model_dir / "config.json").read_text())["truncated"]["train"] > 0
    model = seqtag.load(result.model_dir)
    scored = {split: result.metrics[split]["texts"] for split in ("dev", "test") if split in result.metrics}
    assert scored == SMOKE_TEXTS[name]
    if "test" in files:
        assert model.evaluate(files["test"]) == result.metrics["test"], "the loaded model scores as the trained one"
    one, empty = model.predict(["a good film", ""])
    assert one.label == max(one.probabilities, key=one.probabilities.get)
    assert set(empty.probabilities) == set(model.labels), "an empty text still gets a distribution"


def test_a_classifier_names_what_it_cannot_do(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    recipe = load_recipe("sentiment", [*FAST, "model.embedders=[word]"], train=_csv(tmp_path / "t.csv", _labelled()))
    model_dir = train(recipe, tmp_path / "run", smoke=True).model_dir
    with pytest.raises(SeqtagError, match="top_k is 0"):
        seqtag.load(model_dir).predict("good", top_k=0)
    bad = CliRunner().invoke(app, ["predict", str(model_dir), "-", "--output", "conll"], input="x\n")
    assert bad.exit_code == 2 and "is a text classifier" in bad.output


@pytest.mark.slow
def test_cli_evaluate_json_and_predict_jsonl_for_a_classifier(trained_classifier, tmp_path):
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    result, files = trained_classifier
    shown = runner.invoke(app, ["evaluate", str(result.model_dir), str(files["test"]), "--json"])
    assert shown.exit_code == 0, shown.output
    figures = json.loads(shown.stdout)
    assert {"accuracy", "macro_f1", "per_label", "confusion", "texts"} <= set(figures)
    assert figures["texts"] == len(TEST) and figures == result.metrics["test"]
    text = runner.invoke(app, ["evaluate", str(result.model_dir), str(files["test"])])
    assert f"macro-F1 {figures['macro_f1']:.2f}  ({len(TEST)} texts)" in text.stdout
    out = runner.invoke(app, ["predict", str(result.model_dir), "-", "--top-k", "1"],
                        input="a good fun film\n\nboring and awful\n")
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [row["label"] for row in rows[::2]] == ["pos", "neg"] and len(rows) == 3
    assert set(rows[0]["probabilities"]) == {"neg", "pos"} and len(rows[0]["top_k"]) == 1
