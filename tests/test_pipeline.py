"""The one pipeline shared by every task family: cells from one factory in every family, labels from the
training data only, prediction without the training stack, damaged model files, multi-process training."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import seqtag
from seqtag.config import load_recipe
from seqtag.errors import SeqtagError
from seqtag.families import FAMILIES
from seqtag.outputs import OUTPUTS, outputs_of
from seqtag.training import train

from conftest import NER_SENTENCES, write_conll

ROOT = Path(__file__).resolve().parent.parent
DEMO = {split: ROOT / "recipes" / "data" / f"demo.{split}.conll" for split in ("train", "dev", "test")}
SHAPE = ["train.progress_bar=false", "model.hidden_size=8", "model.word_dim=8", "model.num_layers=2"]
SMALL = [*SHAPE, "model.char_hidden=4", "model.char_dim=4"]


def _recipe_files(name: str, tmp_path: Path) -> dict:
    if name == "demo":
        return {}
    if name == "sentiment":
        path = tmp_path / "train.csv"
        path.write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in [("good film", "pos"), ("bad film", "neg"),
                        ("great fun", "pos"), ("dull plot", "neg")] * 3), encoding="utf-8")
        return {"train": path, "dev": path}
    path = tmp_path / "verse.txt"
    path.write_text("To be, or not to be, that is the question:\n" * 12, encoding="utf-8")
    return {"train": path}


@pytest.mark.parametrize("cell", ["gru", "rnn"])
@pytest.mark.parametrize("name", ["demo", "sentiment", "char-lm"])
def test_every_cell_trains_saves_and_predicts_in_every_family(name, cell, tmp_path):
    shape = [*SHAPE, "data.bptt=8", "data.batch_size=4"] if name == "char-lm" else SMALL
    recipe = load_recipe(name, [*shape, f"model.cell={cell}"], **_recipe_files(name, tmp_path))
    result = train(recipe, tmp_path / "run", smoke=True)
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["recipe"]["model"]["cell"] == cell
    model = seqtag.load(result.model_dir)
    assert type(model.net.encoder.rnn).__name__ == cell.upper()
    if name == "char-lm":
        text = model.generate("To", max_tokens=3, seed=0)
        assert len(text) == len("To") + 3 and text == model.generate("To", max_tokens=3, seed=0)
    else:
        predicted = model.predict(["Ada visited Paris ."])[0]
        labels = predicted.labels if hasattr(predicted, "labels") else [predicted.label]
        assert labels and set(labels) <= set(model.labels)


def test_a_test_file_does_not_change_the_trained_weights(tmp_path):
    """Vocabularies and labels come from the training data only, so --test changes nothing learned."""
    train_file = write_conll(tmp_path / "train.conll", NER_SENTENCES[:3])
    test_file = write_conll(tmp_path / "test.conll", [[("Zanzibar", "NNP", "I-NP", "I-MISC"), (".", ".", "O", "O")]])
    overrides = [*SMALL, "train.max_epochs=2", "model.embedders=[word,char_cnn]"]
    without = train(load_recipe("conll-ner", overrides, train=train_file, dev=train_file), tmp_path / "a")
    with_test = train(load_recipe("conll-ner", overrides, train=train_file, dev=train_file, test=test_file),
                      tmp_path / "b")
    first, second = (load_file(str(r.model_dir / "model.safetensors")) for r in (without, with_test))
    assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)
    labels = json.loads((with_test.model_dir / "labels.json").read_text())
    assert not any(label.endswith("MISC") for label in labels), "a test-only type never becomes a label"
    config = json.loads((with_test.model_dir / "config.json").read_text())
    assert config["unseen_labels"] == {"test": {"S-MISC": 1}}
    assert with_test.metrics["test"]["unseen_labels"] == {"I-MISC": 1}
    assert with_test.metrics["test"]["recall"] == 0.0, "the unseen entity is a missed span"


def test_label_ids_are_append_only():
    from seqtag.data.featurizer import LabelCodec

    codec = LabelCodec(["O", "B-PER", "I-PER"])
    assert codec.add("B-LOC") == 3 and codec.add("B-PER") == 1
    assert codec.labels == ["O", "B-PER", "I-PER", "B-LOC"]
    assert codec.id("X") == 4 and codec.name(4) == "X" and codec.id("Y") == 5 and codec.id("X") == 4


def test_prediction_imports_neither_lightning_nor_training(tmp_path):
    recipe = load_recipe("demo", SMALL)
    model_dir = train(recipe, tmp_path / "run", smoke=True).model_dir
    script = (
        "import sys, seqtag\n"
        f"tagger = seqtag.load({str(model_dir)!r}, device='cpu')\n"
        "tagger.predict('Ada Lovelace visited Paris.')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning', "
        "'lightning_fabric', 'datasets', 'pandas') or m in ('seqtag.training', 'seqtag.tasks', 'seqtag.objectives', "
        "'seqtag.starts', 'seqtag.finetuning', 'seqtag.compare', 'seqtag.progress'))\n"
        "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_model_directory_of_another_version_or_with_a_missing_key_is_a_clear_error(tmp_path):
    model_dir = train(load_recipe("demo", SMALL), tmp_path / "run", smoke=True).model_dir
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "format_version": 1}))
    with pytest.raises(SeqtagError, match=r"config.json: model format version 1, but this seqtag reads version 2"):
        seqtag.load(model_dir)
    del config["sizes"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(SeqtagError, match=r"config.json: the key 'sizes' is missing"):
        seqtag.load(model_dir)


def test_family_defaults_are_recorded_and_wrong_parts_refused():
    recipe = FAMILIES["lm"].resolve(load_recipe("char-lm"))
    assert recipe.model.embedders == ["word"] and recipe.model.head == "next_token"
    with pytest.raises(SeqtagError, match="model.head is 'pooled', which task 'tagging' cannot use"):
        FAMILIES["tagging"].resolve(load_recipe("demo", ["model.head=pooled"]))
    with pytest.raises(SeqtagError, match="a language model reads token ids only"):
        FAMILIES["lm"].resolve(load_recipe("char-lm", ["model.embedders=[word,char_cnn]"]))


def test_every_family_has_its_command_line_outputs_and_no_other_task_has():
    assert sorted(OUTPUTS) == sorted(FAMILIES)
    with pytest.raises(SeqtagError, match=r"m/config.json: task is 'parsing'; expected one of"):
        outputs_of("parsing", Path("m"))


@pytest.mark.slow
def test_two_process_training_on_cpu_saves_a_model_whose_dev_figure_matches_one_process_evaluation(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [str(Path(sys.executable).parent / "seqtag"), "train", "demo", "--out", str(out),
               "--set", "train.devices=2", "--set", "train.strategy=ddp", "--set", "train.accelerator=cpu",
               "--set", "train.max_epochs=6", "--set", "train.patience=0", "--set", "train.progress_bar=false"]
    if not Path(command[0]).is_file():
        pytest.skip("the seqtag console script is not installed beside this Python")
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("model: ") == 1, "only rank 0 reports"
    model = seqtag.load(out / "model")
    evaluated = model.evaluate(DEMO["dev"])
    saved = json.loads((out / "model" / "metrics.json").read_text())
    assert saved["dev"]["f1"] == pytest.approx(evaluated["f1"])
    # The dev score logged during training was summed over both ranks' shards: each sentence once.
    rows = [row for row in csv.DictReader((out / "logs" / "metrics.csv").open()) if row.get("dev_score")]
    best = max(float(row["dev_score"]) for row in rows)
    assert best == pytest.approx(evaluated["f1"], abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["demo", "char-lm"])
def test_a_run_interrupted_mid_epoch_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(name, tmp_path,
                                                                                             monkeypatch):
    """Batches resume at the first one not trained on, and a language model's carried state is restored too."""
    from seqtag.tasks import Task

    shape = [*SHAPE, "data.bptt=8", "data.batch_size=4"] if name == "char-lm" else [*SMALL, "data.batch_size=8"]
    recipe = load_recipe(name, [*shape, "train.max_epochs=2", "train.val_check_interval=0.5", "train.patience=0",
                                "model.dropout=0.1"], **_recipe_files(name, tmp_path))
    seen: list[list] = []
    original = Task.training_step

    def spy(task, batch, batch_idx):
        if stop_at is not None and task.global_step == stop_at:
            raise KeyboardInterrupt  # what Ctrl+C raises
        inputs = batch["inputs"] if isinstance(batch, dict) else batch.features["word_ids"]
        seen.append(inputs.tolist())
        return original(task, batch, batch_idx)

    monkeypatch.setattr(Task, "training_step", spy)
    stop_at = None
    whole = train(recipe, tmp_path / "whole")
    order = list(seen)
    seen.clear()
    stop_at = len(order) // 4 + 1                      # in the first epoch, after its first dev check
    assert train(recipe, tmp_path / "cut").interrupted
    before = len(seen)
    seen.clear()
    stop_at = None
    resumed = train(recipe, tmp_path / "cut", resume=True)
    skipped = len(order) - len(seen)                   # the batches the resumed checkpoint had trained on
    assert 0 < skipped <= before < len(order) // 2
    assert seen == order[skipped:], "the rest of the interrupted epoch in its own order, then the next epoch"
    first, second = (load_file(str(r.model_dir / "model.safetensors")) for r in (whole, resumed))
    assert all(torch.equal(first[key], second[key]) for key in first), "the same final weights"
