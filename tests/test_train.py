"""Train → save → load → predict → evaluate, on tiny corpora; plus resume and every recipe's smoke run."""
from __future__ import annotations

import csv
import json

import pytest

import seqtag
from seqtag.config import load_recipe
from seqtag.train import train

from conftest import NER_SENTENCES, write_conll

FAST = ["train.progress_bar=false", "model.hidden_size=16", "model.word_dim=16", "model.char_hidden=8",
        "model.char_dim=8", "model.num_layers=1"]


def _train_ner(ner_files, out, epochs=25, extra=()):
    recipe = load_recipe("conll-ner", [*FAST, f"train.max_epochs={epochs}", "train.lr=0.02", "model.dropout=0.0",
                                       "model.word_dropout=0.0", *extra],
                         train=ner_files["train"], dev=ner_files["dev"], test=ner_files["test"])
    return train(recipe, out)


@pytest.fixture(scope="module")
def trained_ner(tmp_path_factory):
    """An IOB1 NER model trained until it fits its four sentences."""
    tmp = tmp_path_factory.mktemp("ner")
    files = {s: write_conll(tmp / f"{s}.conll", NER_SENTENCES, docstart=True) for s in ("train", "dev", "test")}
    result = _train_ner(files, tmp / "run", epochs=40, extra=["train.patience=0"])
    return result, files


def test_training_learns_and_saves_a_model_directory(trained_ner):
    result, _ = trained_ner
    names = sorted(p.name for p in result.model_dir.iterdir())
    assert names == ["char_tokenizer.json", "config.json", "labels.json", "metrics.json", "model.safetensors",
                     "word_tokenizer.json"]
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["format_version"] == 2 and config["sizes"]["labels"] == len(config_labels(result.model_dir))
    assert config["recipe"]["model"]["embedders"] == ["word", "char_cnn"] and config["recipe"]["model"]["head"] == "softmax"
    assert config["file_scheme"] == "iob1" and config["train_scheme"] == "bioes"
    assert result.metrics["dev"]["f1"] == 100.0
    assert json.loads((result.model_dir / "metrics.json").read_text())["test"]["f1"] == 100.0
    assert not list(result.model_dir.parent.glob(".model.*")), "no staging folder left behind"


def config_labels(model_dir):
    return json.loads((model_dir / "labels.json").read_text())


def test_a_token_s_probability_is_its_file_scheme_label_s(trained_ner):
    """Trained in BIOES, shown in IOB1: I-PER's probability sums B-, I-, E- and S-PER."""
    import torch

    result, _ = trained_ner
    tagger = seqtag.load(result.model_dir)
    words = ["Alan", "met", "Grace", "Hopper", "in", "Boston", "."]
    labels, probabilities = tagger.tag([words])
    encoded = tagger.featurizer.encode([words])
    from seqtag.data.batching import collate

    batch = collate([{key: encoded[key][0] for key in ("word_ids", "char_ids")}])
    with torch.no_grad():
        scores, _ = tagger.net(batch.features, batch.lengths, batch.mask)
    distribution = scores[0].softmax(-1)
    names = config_labels(result.model_dir)
    for position, label in enumerate(labels[0]):
        kind = label.split("-", 1)[-1]
        wanted = [i for i, name in enumerate(names) if (name == "O" if label == "O" else name.endswith("-" + kind))]
        assert probabilities[0][position] == pytest.approx(float(distribution[position, wanted].sum()), abs=1e-5)


def test_loaded_model_predicts_in_the_files_scheme_with_offsets(trained_ner):
    result, files = trained_ner
    tagger = seqtag.load(result.model_dir)
    text = "Alan met Grace Hopper in Boston."
    sentence = tagger.predict(text)
    assert [t.text for t in sentence.tokens] == ["Alan", "met", "Grace", "Hopper", "in", "Boston", "."]
    assert sentence.labels == ["I-PER", "O", "I-PER", "I-PER", "O", "I-LOC", "O"]
    assert all(0.0 < t.probability <= 1.0 for t in sentence.tokens)
    assert [(s.label, s.text, s.start, s.end) for s in sentence.spans] == [
        ("PER", "Alan", 0, 4), ("PER", "Grace Hopper", 9, 21), ("LOC", "Boston", 25, 31)]
    for span in sentence.spans:
        assert text[span.start:span.end] == span.text
    # IOB1 needs B- only between two adjacent entities of one type.
    marie = tagger.predict([["Globex", "hired", "Marie", "Curie", "."]])[0]
    assert marie.labels == ["I-ORG", "O", "I-PER", "B-PER", "O"]
    assert [s.text for s in marie.spans] == ["Globex", "Marie", "Curie"]
    assert marie.tokens[0].start is None


def test_predict_batches_keep_input_order_and_handle_empty_input(trained_ner):
    result, _ = trained_ner
    tagger = seqtag.load(result.model_dir)
    texts = ["It rained in Oslo.", "", "Ada Lovelace visited Paris.", "   "]
    out = tagger.predict(texts, batch_size=1)
    assert [len(s.tokens) for s in out] == [5, 0, 5, 0]
    assert out[1].spans == [] and out[1].to_dict()["tokens"] == []
    assert out[2].spans[0].text == "Ada Lovelace"
    assert tagger.predict([]) == []


def test_evaluate_matches_training_figures(trained_ner):
    result, files = trained_ner
    metrics = seqtag.load(result.model_dir).evaluate(files["test"])
    assert metrics == result.metrics["test"]
    assert metrics["sentences"] == 4 and metrics["tokens"] == 22
    assert set(metrics["per_label"]) == {"PER", "LOC", "ORG"}


def test_resume_continues_from_the_last_checkpoint(ner_files, tmp_path):
    out = tmp_path / "run"
    _train_ner(ner_files, out, epochs=2, extra=["train.patience=0"])
    first = list(csv.DictReader(open(out / "logs" / "metrics.csv")))
    recipe = load_recipe("conll-ner", [*FAST, "train.max_epochs=4", "train.patience=0"],
                         train=ner_files["train"], dev=ner_files["dev"], test=ner_files["test"])
    resumed = train(recipe, out, resume=True)
    epochs = sorted({int(row["epoch"]) for row in csv.DictReader(open(out / "logs" / "metrics.csv"))})
    assert {int(row["epoch"]) for row in first} == {0, 1}
    assert epochs == [0, 1, 2, 3], "the resumed run trains epochs 2 and 3 only, after the first two"
    assert resumed.metrics["epochs"] == 4


def test_resume_without_checkpoint_is_a_clear_error(ner_files, tmp_path):
    recipe = load_recipe("conll-ner", FAST, train=ner_files["train"], dev=ner_files["dev"])
    with pytest.raises(seqtag.errors.SeqtagError, match="no checkpoint at .*last.ckpt"):
        train(recipe, tmp_path / "nothing", resume=True)


def _chunk_files(tmp_path):
    sentences = [[(t, p, c) for t, p, c, _ in s] for s in NER_SENTENCES]
    return {s: write_conll(tmp_path / f"{s}.txt", sentences) for s in ("train", "dev", "test")}


def _wnut_files(tmp_path):
    # WNUT-17 style: token<TAB>IOB2 tag, with a tab-only line as one of the separators.
    text = "Ada\tB-person\nLovelace\tI-person\nrocks\tO\n\t\nsee\tO\nParis\tB-location\n"
    paths = {}
    for split in ("train", "dev", "test"):
        paths[split] = tmp_path / f"{split}.wnut"
        paths[split].write_text(text, encoding="utf-8")
    return paths


@pytest.mark.parametrize("name", ["demo", "ud-pos", "conll-ner", "wnut-ner", "conll-chunk"])
def test_every_recipe_has_a_working_smoke_run(name, tmp_path, ner_files, conllu_files):
    files = {"demo": {}, "ud-pos": conllu_files, "conll-ner": ner_files, "wnut-ner": _wnut_files(tmp_path),
             "conll-chunk": _chunk_files(tmp_path)}[name]
    recipe = load_recipe(name, ["train.progress_bar=false"], **files)
    result = train(recipe, tmp_path / "run", smoke=True)
    tagger = seqtag.load(result.model_dir)
    assert "dev" in result.metrics and "test" in result.metrics
    sentence = tagger.predict("Ada Lovelace visited Paris .")
    assert len(sentence.labels) == 5 and set(sentence.labels) <= set(tagger.labels)


def test_an_empty_pretokenized_word_gets_a_finite_probability(trained_ner):
    result, _ = trained_ner
    sentence = seqtag.load(result.model_dir).predict([["", "Paris"]])[0]
    assert len(sentence.labels) == 2
    assert all(0.0 < p <= 1.0 for p in sentence.probabilities)
