"""Train → save → load → predict → evaluate, on tiny corpora; plus resume and every recipe's smoke run."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from dataclasses import replace

import seqtag
from seqtag.config import load_recipe
from seqtag.training import train

from conftest import CONLLU_COUNTS, NER_SENTENCES, NER_TEST, sentences_and_tokens, write_ner_splits

FAST = ["train.progress_bar=false", "model.hidden_size=16", "model.word_dim=16", "model.char_hidden=8",
        "model.char_dim=8", "model.num_layers=1"]


def _train_ner(ner_files, out, epochs=25, extra=()):
    # A constant rate: on unseen dev sentences the score stalls at times, and a plateau schedule would halve
    # the rate before the training sentences are fitted. The softmax head, whose probabilities these tests read
    # (the recipe's own head is the CRF; tests/test_crf.py covers it).
    recipe = load_recipe("conll-ner", [*FAST, f"train.max_epochs={epochs}", "train.lr=0.01", "train.lr_schedule=none",
                                       "model.dropout=0.0", "model.word_dropout=0.0", "model.head=softmax", *extra],
                         train=ner_files["train"], dev=ner_files["dev"], test=ner_files["test"])
    return train(recipe, out)


@pytest.fixture(scope="module")
def trained_ner(tmp_path_factory):
    """An IOB1 NER model trained on six sentences, kept at its best epoch on five others (dev).

    The tests using it are marked slow; the smoke runs below keep a quick train → load → predict round trip."""
    tmp = tmp_path_factory.mktemp("ner")
    files = write_ner_splits(tmp)
    result = _train_ner(files, tmp / "run", epochs=25, extra=["train.patience=0", "data.batch_size=1"])
    return result, files


@pytest.mark.slow
def test_training_learns_and_saves_a_model_directory(trained_ner):
    result, _ = trained_ner
    names = sorted(p.name for p in result.model_dir.iterdir())
    assert names == ["char_tokenizer.json", "config.json", "labels.json", "metrics.json", "model.safetensors",
                     "word_tokenizer.json"]
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["format_version"] == 2 and config["sizes"]["labels"] == len(config_labels(result.model_dir))
    assert config["recipe"]["model"]["embedders"] == ["word", "char_cnn"] and config["recipe"]["model"]["head"] == "softmax"
    assert config["file_scheme"] == "iob1" and config["train_scheme"] == "bioes"
    # Dev and test hold sentences training never showed, made of its words. With seeds 1 to 10 every run
    # reached dev F1 100 (the checkpoint is chosen on dev) and test F1 of at least 96.
    assert result.metrics["dev"]["f1"] == 100.0
    assert result.metrics["test"]["f1"] >= 90.0
    assert json.loads((result.model_dir / "metrics.json").read_text())["test"] == result.metrics["test"]
    assert not list(result.model_dir.parent.glob(".model.*")), "no staging folder left behind"


@pytest.mark.slow
def test_the_chosen_epoch_fits_the_training_sentences(trained_ner):
    result, files = trained_ner
    fitted = seqtag.load(result.model_dir).evaluate(files["train"])
    assert fitted["f1"] == 100.0 and fitted["sentences"] == len(NER_SENTENCES)


def config_labels(model_dir):
    return json.loads((model_dir / "labels.json").read_text())


@pytest.mark.slow
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


@pytest.mark.slow
def test_loaded_model_predicts_in_the_files_scheme_with_offsets(trained_ner):
    """Training sentences, which the model fits (see above), so the exact labels are known."""
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


@pytest.mark.slow
def test_predict_batches_keep_input_order_and_handle_empty_input(trained_ner):
    result, _ = trained_ner
    tagger = seqtag.load(result.model_dir)
    texts = ["It rained in Oslo.", "", "Ada Lovelace visited Paris.", "   "]
    out = tagger.predict(texts, batch_size=1)
    assert [len(s.tokens) for s in out] == [5, 0, 5, 0]
    assert out[1].spans == [] and out[1].to_dict()["tokens"] == []
    assert out[2].spans[0].text == "Ada Lovelace"
    assert tagger.predict([]) == []


@pytest.mark.slow
def test_evaluate_matches_training_figures(trained_ner):
    result, files = trained_ner
    metrics = seqtag.load(result.model_dir).evaluate(files["test"])
    assert metrics == result.metrics["test"]
    assert {key: metrics[key] for key in ("sentences", "tokens")} == sentences_and_tokens(NER_TEST)
    assert set(metrics["per_label"]) == {"PER", "LOC", "ORG"}


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(ner_files, tmp_path):
    out = tmp_path / "run"
    _train_ner(ner_files, out, epochs=2, extra=["train.patience=0"])
    first = list(csv.DictReader(open(out / "logs" / "metrics.csv")))
    recipe = load_recipe("conll-ner", [*FAST, "train.max_epochs=4", "train.patience=0", "model.head=softmax"],
                         train=ner_files["train"], dev=ner_files["dev"], test=ner_files["test"])
    with pytest.raises(seqtag.errors.SeqtagError, match=r"--resume: .*last.ckpt was trained with other network "
                                                        r"settings than these: it holds nothing for head.end_scores"):
        train(replace(recipe, model=replace(recipe.model, head="crf")), out, resume=True)
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
    return write_ner_splits(tmp_path, ".txt", columns=slice(0, 3), docstart=False)


# WNUT-17 style: token<TAB>IOB2 tag, with a tab-only line as one of the separators.
WNUT = {"train": "Ada\tB-person\nLovelace\tI-person\nrocks\tO\n\t\nsee\tO\nParis\tB-location\n",
        "dev": "Alan\tB-person\nsaw\tO\nParis\tB-location\n",
        "test": "see\tO\nAda\tB-person\n\t\nParis\tB-location\nrocks\tO\n\nsee\tO\n"}


def _wnut_files(tmp_path):
    paths = {split: tmp_path / f"{split}.wnut" for split in WNUT}
    for split, path in paths.items():
        path.write_text(WNUT[split], encoding="utf-8")
    return paths


def _conll_counts(path) -> dict[str, int]:
    """Sentences and tokens of a CoNLL file, counted here without the library's reader."""
    blocks = [block for block in re.split(r"\n[ \t]*\n", Path(path).read_text(encoding="utf-8"))
              if block.strip() and not block.startswith("-DOCSTART-")]
    return {"sentences": len(blocks), "tokens": sum(len(block.strip().splitlines()) for block in blocks)}


@pytest.mark.parametrize("name", ["demo", "ud-pos", "conll-ner", "wnut-ner", "conll-chunk"])
def test_every_recipe_has_a_working_smoke_run(name, tmp_path, ner_files, conllu_files):
    files = {"demo": {}, "ud-pos": conllu_files, "conll-ner": ner_files, "wnut-ner": _wnut_files(tmp_path),
             "conll-chunk": _chunk_files(tmp_path)}[name]
    recipe = load_recipe(name, ["train.progress_bar=false"], **files)
    result = train(recipe, tmp_path / "run", smoke=True)
    tagger = seqtag.load(result.model_dir)
    for split, path in (("dev", recipe.data.dev), ("test", recipe.data.test)):
        # A smoke run trains on one batch, but scores the whole of each file.
        expected = CONLLU_COUNTS[split] if name == "ud-pos" else _conll_counts(path)
        assert {key: result.metrics[split][key] for key in ("sentences", "tokens")} == expected, split
    assert tagger.evaluate(recipe.data.test) == result.metrics["test"], "the loaded model scores as the trained one"
    sentence, empty = tagger.predict(["Ada Lovelace visited Paris .", ""])
    assert len(sentence.labels) == 5 and set(sentence.labels) <= set(tagger.labels)
    assert empty.tokens == [] and empty.spans == []


@pytest.mark.slow
def test_an_empty_pretokenized_word_gets_a_finite_probability(trained_ner):
    result, _ = trained_ner
    sentence = seqtag.load(result.model_dir).predict([["", "Paris"]])[0]
    assert len(sentence.labels) == 2
    assert all(0.0 < p <= 1.0 for p in sentence.probabilities)


def test_patience_starts_once_the_dev_score_has_moved():
    # A small tagger's span F1 sits at 0 for its first epochs: neither the plateau schedule nor early stopping
    # may count those checks, or the rate is halved (and the run stopped) before anything is learnt.
    import torch
    from seqtag.tasks import PlateauSchedule
    from seqtag.training import EarlyStop

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = PlateauSchedule(optimizer, mode="max", factor=0.5, patience=1)
    stopper = EarlyStop(monitor="dev_score", mode="max", patience=2)
    decisions = []
    for score in (0.0, 0.0, 0.0, 0.0, 3.0, 3.0):
        schedule.step(score)
        decisions.append(stopper._evaluate_stopping_criteria(torch.tensor(score))[0])
    assert optimizer.param_groups[0]["lr"] == 1.0 and decisions == [False] * 6
    schedule.step(3.0)  # the second check without a gain once the score moved
    assert optimizer.param_groups[0]["lr"] == 0.5
    restored = EarlyStop(monitor="dev_score", mode="max", patience=2)
    restored.load_state_dict(stopper.state_dict())  # as a resumed run gets it from its checkpoint
    assert restored._evaluate_stopping_criteria(torch.tensor(3.0))[0], "two checks without a gain after 3.0"
    later = PlateauSchedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), mode="max", patience=1)
    later.load_state_dict(schedule.state_dict())
    assert later.score_moved and later.first_score == 0.0
    # A score that moves at once (a loss, an accuracy) keeps the usual patience.
    stopper = EarlyStop(monitor="dev_score", mode="min", patience=1)
    assert [stopper._evaluate_stopping_criteria(torch.tensor(v))[0] for v in (5.0, 4.0, 4.5)] == [False, False, True]
