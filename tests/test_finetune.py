"""Fine-tuning: a saved model continues on new data with new labels, words and characters; the parent is never
changed; the new model records where it came from."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import seqtag
from seqtag.config import load_recipe
from seqtag.data.batching import BucketBatchSampler
from seqtag.errors import InputError, ModelFileError, SeqtagError
from seqtag.finetuning import finetune
from seqtag.training import train

from conftest import CONLLU, write_conll

ROOT = Path(__file__).resolve().parent.parent
DEMO = {split: ROOT / "recipes" / "data" / f"demo.{split}.conll" for split in ("train", "dev", "test")}
SMALL = ["train.progress_bar=false", "model.hidden_size=8", "model.word_dim=8", "model.char_hidden=4",
         "model.char_dim=4", "train.max_epochs=1"]
FAST = ["train.progress_bar=false", "train.max_epochs=1"]

# New data with an entity type the demo model never saw (DRUG), new words and a new character (é).
NEW_SENTENCES = [
    [("Patients", "O"), ("took", "O"), ("aspirin", "B-DRUG"), ("in", "O"), ("Paris", "B-LOC"), (".", "O")],
    [("Ibuprofen", "B-DRUG"), ("helped", "O"), ("Ada", "B-PER"), ("Lovelace", "I-PER"), (".", "O")],
    [("José", "B-PER"), ("prescribed", "O"), ("vitamin", "B-DRUG"), ("C", "I-DRUG"), (".", "O")],
]


def _files(folder: Path, sentences=NEW_SENTENCES) -> Path:
    return write_conll(folder / "new.conll", [[(word, "_", label) for word, label in s] for s in sentences])


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A demo tagger (IOB2 files, BIOES training), trained for one epoch."""
    folder = tmp_path_factory.mktemp("parent")
    return train(load_recipe("demo", SMALL), folder / "run").model_dir


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_new_entity_type_is_appended_and_old_rows_are_kept_and_the_parent_is_untouched(parent, tmp_path):
    before = _digest(parent)
    new = _files(tmp_path)
    result = finetune(parent, new, dev=new, out=tmp_path / "ft", overrides=["train.max_epochs=1"])
    assert _digest(parent) == before
    old_labels = json.loads((parent / "labels.json").read_text())
    labels = json.loads((result.model_dir / "labels.json").read_text())
    assert labels[:len(old_labels)] == old_labels
    assert labels[len(old_labels):] == ["B-DRUG", "I-DRUG", "E-DRUG", "S-DRUG"]
    config = json.loads((result.model_dir / "config.json").read_text())
    record = config["finetune"]
    assert record["parent"]["path"] == str(parent.resolve())
    assert record["parent"]["weights_sha256"] == hashlib.sha256((parent / "model.safetensors").read_bytes()).hexdigest()
    assert record["data"]["sentences"] == 3 and record["data"]["tokens"] == 16
    assert record["added"]["labels"] == ["B-DRUG", "I-DRUG", "E-DRUG", "S-DRUG"] and "é" in record["added"]["chars"]
    assert record["settings"]["new_labels"] == "append"
    parent_config = json.loads((parent / "config.json").read_text())
    assert config["recipe"]["train"]["lr"] == pytest.approx(parent_config["recipe"]["train"]["lr"])
    model = seqtag.load(result.model_dir)
    assert "B-DRUG" in model.labels
    assert model.predict([["Patients", "took", "aspirin", "."]])[0].labels


def test_the_grown_network_starts_with_the_parent_rows_and_unknown_vectors_for_new_words(parent, tmp_path):
    from seqtag.config import FinetuneConfig
    from seqtag.data.growth import Growth
    from seqtag.families import FAMILIES
    from seqtag.starts import grow_network

    parent_model = seqtag.load(parent)
    old = {k: v.clone() for k, v in parent_model.net.state_dict().items()}
    sizes = dict(parent_model.net.sizes, words=parent_model.net.sizes["words"] + 3, labels=parent_model.net.sizes["labels"] + 4)
    recipe = load_recipe("demo", SMALL)
    net = FAMILIES["tagging"].build_network(FAMILIES["tagging"].resolve(recipe).model, sizes)
    rows = grow_network(net, old)
    state = net.state_dict()
    words = old["embedders.word.embedding.weight"]
    assert rows["embedders.word.embedding"] == words.shape[0]
    assert torch.equal(state["embedders.word.embedding.weight"][:words.shape[0]], words)
    for row in state["embedders.word.embedding.weight"][words.shape[0]:]:
        assert torch.equal(row, words[1])  # the unknown word's vector
    head = old["head.linear.weight"]
    assert torch.equal(state["head.linear.weight"][:head.shape[0]], head)
    assert Growth(FinetuneConfig(), featurizer=parent_model.featurizer).featurizer is parent_model.featurizer


def test_new_words_grow_the_vocabulary_unless_extend_vocab_is_off(parent, tmp_path):
    new = _files(tmp_path)
    grown = finetune(parent, new, out=tmp_path / "grown", overrides=["train.max_epochs=1"])
    kept = finetune(parent, new, out=tmp_path / "kept", overrides=["train.max_epochs=1", "finetune.extend_vocab=false"])
    parent_size = json.loads((parent / "config.json").read_text())["sizes"]["words"]
    grown_size = json.loads((grown.model_dir / "config.json").read_text())["sizes"]["words"]
    assert json.loads((kept.model_dir / "config.json").read_text())["sizes"]["words"] == parent_size
    vocab = seqtag.load(grown.model_dir).featurizer.words.get_vocab()
    assert grown_size > parent_size and "aspirin" in vocab and vocab["aspirin"] >= parent_size


def test_new_labels_error_names_the_file_line_and_label(parent, tmp_path):
    new = _files(tmp_path)
    with pytest.raises(InputError, match=r"new\.conll, line 3: entity type 'DRUG' is not one of the model's"):
        finetune(parent, new, out=tmp_path / "ft", overrides=["finetune.new_labels=error"])


def test_a_label_map_renames_before_anything_else_and_must_name_labels_the_data_has(parent, tmp_path):
    new = _files(tmp_path)
    result = finetune(parent, new, out=tmp_path / "ft",
                      overrides=["train.max_epochs=1", "finetune.label_map=DRUG=ORG", "finetune.new_labels=error"])
    assert json.loads((result.model_dir / "labels.json").read_text()) == json.loads((parent / "labels.json").read_text())
    mapping = tmp_path / "map.txt"
    mapping.write_text("DRUG\tORG\nDISEASE\tMISC\n", encoding="utf-8")
    with pytest.raises(SeqtagError, match="names 'DISEASE', which the data .* does not have"):
        finetune(parent, new, out=tmp_path / "ft2", overrides=[f"finetune.label_map={mapping}"])
    mapping.write_text("DRUG ORG\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"map\.txt, line 1: expected 'their_label=model_label'"):
        finetune(parent, new, out=tmp_path / "ft3", overrides=[f"finetune.label_map={mapping}"])


def test_out_equal_to_or_holding_the_parent_is_refused(parent, tmp_path):
    new = _files(tmp_path)
    for out in (parent, parent.parent):
        with pytest.raises(SeqtagError, match="the model being fine-tuned"):
            finetune(parent, new, out=out, overrides=["finetune.freeze=none"])


def test_data_in_another_format_than_the_parent_reader_is_a_clear_error(parent, tmp_path):
    conllu = tmp_path / "new.conllu"
    conllu.write_text(CONLLU, encoding="utf-8")
    with pytest.raises(InputError, match=r"new\.conllu: the file looks like CoNLL-U .* reads data.format='conll'"):
        finetune(parent, conllu, out=tmp_path / "ft")


def test_a_parent_of_another_format_version_is_refused(parent, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(parent, old)
    config = json.loads((old / "config.json").read_text())
    config["format_version"] = 1
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="format"):
        finetune(old, _files(tmp_path), out=tmp_path / "ft")


def test_settings_that_shaped_the_parent_cannot_change(parent, tmp_path):
    with pytest.raises(SeqtagError, match="model.hidden_size shaped the parent model"):
        finetune(parent, _files(tmp_path), out=tmp_path / "ft", overrides=["model.hidden_size=16"])
    # The parent's own value changes nothing, so a script may pass the same --set to train and finetune.
    from seqtag.config import finetune_recipe

    saved = json.loads((parent / "config.json").read_text())["recipe"]
    same = [f"model.hidden_size={saved['model']['hidden_size']}", f"model.head={saved['model']['head']}"]
    recipe, _, changed = finetune_recipe(saved, same)
    assert recipe.model.hidden_size == saved["model"]["hidden_size"] and "model.head" in changed
    with pytest.raises(SeqtagError, match="Unknown recipe key 'finetune.freez'"):
        finetune(parent, _files(tmp_path), out=tmp_path / "ft", overrides=["finetune.freez=encoder"])
    with pytest.raises(SeqtagError, match="finetune.freeze is 'all'"):
        finetune(parent, _files(tmp_path), out=tmp_path / "ft", overrides=["finetune.freeze=all"])


def test_frozen_embeddings_stay_as_the_parent_had_them(parent, tmp_path):
    new = _files(tmp_path)
    options = ["train.max_epochs=2", "finetune.extend_vocab=false", "train.lr=0.05"]
    frozen = finetune(parent, new, out=tmp_path / "frozen", overrides=[*options, "finetune.freeze=embeddings"])
    thawed = finetune(parent, new, out=tmp_path / "thawed",
                      overrides=[*options, "finetune.freeze=embeddings", "finetune.unfreeze_after=1"])
    encoder = finetune(parent, new, out=tmp_path / "encoder", overrides=[*options, "finetune.freeze=encoder"])
    old = load_file(parent / "model.safetensors")
    key, encoder_key = "embedders.word.embedding.weight", "encoder.rnn.weight_hh_l0"
    assert torch.equal(load_file(frozen.model_dir / "model.safetensors")[key], old[key])
    assert not torch.equal(load_file(frozen.model_dir / "model.safetensors")[encoder_key], old[encoder_key])
    # The saved model is the best dev epoch, which may be the frozen first one: the last state has trained on.
    last = torch.load(tmp_path / "thawed" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not torch.equal(last[f"net.{key}"], old[key])
    weights = load_file(encoder.model_dir / "model.safetensors")
    assert torch.equal(weights[encoder_key], old[encoder_key]) and torch.equal(weights[key], old[key])
    assert not torch.equal(weights["head.linear.weight"], old["head.linear.weight"])


def test_replay_mixes_a_fresh_sample_of_the_original_data_into_every_epoch(parent, tmp_path):
    sampler = BucketBatchSampler([3] * 10 + [4] * 100, batch_size=4, seed=1, sample=(10, 6))
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        items = [i for batch in sampler for i in batch]
        assert len(items) == 16 and set(range(10)) <= set(items) and len(sampler) == 4
        epochs.append(set(items) - set(range(10)))
    assert epochs[0] != epochs[1]
    result = finetune(parent, _files(tmp_path), out=tmp_path / "ft",
                      overrides=["train.max_epochs=1", f"finetune.replay={DEMO['train']}", "finetune.replay_fraction=0.5"])
    record = json.loads((result.model_dir / "config.json").read_text())["finetune"]
    assert record["data"]["replay_per_epoch"] == 3


def test_resume_continues_a_finetuning_run(parent, tmp_path):
    new = _files(tmp_path)
    finetune(parent, new, dev=new, out=tmp_path / "ft", overrides=["train.max_epochs=1"])
    result = finetune(parent, new, dev=new, out=tmp_path / "ft", overrides=["train.max_epochs=2"], resume=True)
    assert result.metrics["epochs"] == 2


def test_python_api_and_cli(parent, tmp_path):
    new = _files(tmp_path)
    result = seqtag.finetune(parent, train=new, out=tmp_path / "api", **{"train.max_epochs": 1},
                             finetune__freeze="encoder")
    model = seqtag.load(result.model_dir)
    assert "S-DRUG" in model.featurizer.labels.labels
    assert json.loads((tmp_path / "api" / "model" / "config.json").read_text())["finetune"]["settings"]["freeze"] == "encoder"
    import cli

    outcome = CliRunner().invoke(cli.app, ["finetune", str(parent), "--train", str(new), "--out", str(tmp_path / "cli"),
                                           "--set", "train.max_epochs=1"])
    assert outcome.exit_code == 0, outcome.output
    assert f"model: {tmp_path / 'cli' / 'model'}" in outcome.stdout
    outcome = CliRunner().invoke(cli.app, ["finetune", str(parent), "--train", str(new), "--out", str(parent)])
    assert outcome.exit_code == 2 and "the model being fine-tuned" in outcome.output


def test_a_classifier_learns_a_new_class(tmp_path):
    base, new = _sentiment_parent_and_new_data(tmp_path)
    result = finetune(base, new, dev=new, out=tmp_path / "ft", overrides=FAST)
    assert json.loads((result.model_dir / "labels.json").read_text()) == ["neg", "pos", "neutral"]
    assert seqtag.load(result.model_dir).predict(["okay film"])[0].label in ("neg", "pos", "neutral")
    with pytest.raises(InputError, match=r"new\.csv, line 2: label 'neutral' is not one of the model's"):
        finetune(base, new, dev=new, out=tmp_path / "ft2", overrides=["finetune.new_labels=error"])


def test_a_character_language_model_learns_new_characters_and_refuses_replay(tmp_path):
    verse = tmp_path / "verse.txt"
    verse.write_text("To be, or not to be, that is the question:\n" * 12, encoding="utf-8")
    lm_shape = ["train.progress_bar=false", "model.hidden_size=8", "model.word_dim=8", "model.num_layers=1",
                "data.bptt=8", "data.batch_size=4", "train.max_epochs=1"]
    base = train(load_recipe("char-lm", lm_shape, train=str(verse)), tmp_path / "base").model_dir
    prose = tmp_path / "prose.txt"
    prose.write_text("Zürich quizzes jovial kings; 42 vexed wizards!\n" * 12, encoding="utf-8")
    result = finetune(base, prose, out=tmp_path / "ft", overrides=["train.max_epochs=1"])
    old_vocab = seqtag.load(base).tokenizer.get_vocab()
    model = seqtag.load(result.model_dir)
    vocab = model.tokenizer.get_vocab()
    assert all(vocab[token] == index for token, index in old_vocab.items())
    assert {"Z", "ü", "4", "!"} <= set(vocab) - set(old_vocab)
    added = json.loads((result.model_dir / "config.json").read_text())["finetune"]["added"]["tokens"]
    assert set(added) == set(vocab) - set(old_vocab)
    assert len(model.generate("Zü", max_tokens=5, seed=1)) == 7
    # data.min_freq holds for the characters a fine-tuning run adds, as for a new model's (the "Z" of "Zürich" is
    # seen 12 times, the "Q" of "Quick" once)
    prose.write_text(prose.read_text(encoding="utf-8") + "Quick!\n", encoding="utf-8")
    rare = finetune(base, prose, out=tmp_path / "rare", overrides=["train.max_epochs=1", "data.min_freq=2"])
    rare_vocab = seqtag.load(rare.model_dir).tokenizer.get_vocab()
    assert "Z" in rare_vocab and "Q" not in rare_vocab
    with pytest.raises(SeqtagError, match="a language model reads one stream"):
        finetune(base, prose, out=tmp_path / "ft2", overrides=[f"finetune.replay={verse}"])
    assert json.loads((result.model_dir / "config.json").read_text())["finetune"]["settings"]["keep_old"] == "none"
    with pytest.raises(SeqtagError, match="a language model has none"):
        finetune(base, prose, out=tmp_path / "ft3", overrides=["finetune.keep_old=distill"])


def test_fine_tuning_adds_at_most_data_vocab_size_new_words_the_most_frequent_first(tmp_path):
    # A word LM fine-tuned on a large new text would otherwise add every word it reads, each an output row that
    # costs every step; a classifier's input rows grow the same way. New word i is on lines i..25, so seen 26 - i times.
    new_words = [f"new{chr(97 + i)}" for i in range(26)]
    lines = "".join(" ".join(new_words[:k + 1]) + "\n" for k in range(26))
    verse, prose = tmp_path / "verse.txt", tmp_path / "prose.txt"
    verse.write_text("to be or not to be\n" * 12, encoding="utf-8")
    prose.write_text(lines, encoding="utf-8")
    lm_shape = ["train.progress_bar=false", "model.hidden_size=8", "model.word_dim=8", "model.num_layers=1",
                "data.bptt=8", "data.batch_size=4", "train.max_epochs=1", "data.vocab_size=10"]
    base = train(load_recipe("word-lm", lm_shape, train=str(verse), dev=str(verse)), tmp_path / "lm").model_dir
    tuned = finetune(base, prose, verse, out=tmp_path / "lm-ft", overrides=["train.max_epochs=1"]).model_dir
    added = json.loads((tuned / "config.json").read_text())["finetune"]["added"]["tokens"]
    assert added == new_words[:10]
    assert seqtag.load(tuned).tokenizer.get_vocab_size() == seqtag.load(base).tokenizer.get_vocab_size() + 10

    table, new_table = tmp_path / "train.csv", tmp_path / "new.csv"
    table.write_text("text,label\n" + "good film,pos\nbad film,neg\n" * 6, encoding="utf-8")
    new_table.write_text("text,label\n" + "".join(f"{line},{'pos' if k % 2 else 'neg'}\n"
                                                   for k, line in enumerate(lines.splitlines())), encoding="utf-8")
    classifier = train(load_recipe("sentiment", [*SMALL, "data.vocab_size=12"], train=str(table)),
                       tmp_path / "cls").model_dir
    tuned = finetune(classifier, new_table, out=tmp_path / "cls-ft", overrides=["train.max_epochs=1"]).model_dir
    added = json.loads((tuned / "config.json").read_text())["finetune"]["added"]["words"]
    assert added == new_words[:12]


def test_a_crf_tagger_grows_its_transitions_and_decodes_valid_spans_of_the_new_type(tmp_path):
    from seqtag.data import schemes

    base = train(load_recipe("demo", [*SMALL, "model.head=crf"]), tmp_path / "base").model_dir
    old = load_file(base / "model.safetensors")
    result = finetune(base, _files(tmp_path), out=tmp_path / "ft", overrides=["train.max_epochs=1"])
    new = load_file(result.model_dir / "model.safetensors")
    grown = [name for name in old if old[name].shape != new[name].shape]
    assert {"head.transition_scores", "head.start_scores", "head.end_scores"} <= set(grown)
    size = old["head.transition_scores"].shape[0]
    assert new["head.transition_scores"].shape == (size + 4, size + 4)
    model = seqtag.load(result.model_dir)
    for sentence in model.predict([["José", "took", "vitamin", "C", "in", "Paris", "."]] * 3):
        assert schemes.find_violation(sentence.labels, "iob2") is None


def test_the_parent_run_limits_are_not_carried_over_and_the_lr_is_scaled():
    from seqtag.config import finetune_recipe

    parent = load_recipe("demo", ["train.max_steps=7", "train.max_time_minutes=3"]).to_dict()
    recipe, settings, changed = finetune_recipe(parent, ["finetune.lr_factor=0.25"], train="x.conll")
    assert recipe.train.max_steps == 0 and recipe.train.max_time_minutes is None
    assert recipe.train.lr == pytest.approx(0.005 * 0.25) and recipe.data.train.endswith("x.conll")
    assert recipe.data.dev is None and recipe.data.test is None  # the parent's files are not the new data
    recipe, _, _ = finetune_recipe(parent, ["train.max_steps=5", "train.lr=0.1"], train="x.conll")
    assert recipe.train.max_steps == 5 and recipe.train.lr == 0.1


def test_a_bpe_classifier_keeps_its_tokenizer_and_says_so(tmp_path, caplog):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "good film,pos\nbad film,neg\ngreat fun,pos\ndull plot,neg\n" * 3)
    recipe = load_recipe("sentiment", [*SMALL, "data.tokenizer=bpe", "data.vocab_size=40"], train=str(path),
                         dev=str(path))
    base = train(recipe, tmp_path / "base").model_dir
    new = tmp_path / "new.csv"
    new.write_text("text,label\n" + "zesty quixotic film,pos\nvapid jumble,neg\n" * 3)
    with caplog.at_level("INFO", logger="seqtag"):
        result = finetune(base, new, dev=new, out=tmp_path / "ft", overrides=FAST)
    assert sum("fixed sub-word vocabulary" in record.message for record in caplog.records) == 1
    sizes = json.loads((result.model_dir / "config.json").read_text())["sizes"]
    assert sizes["words"] == json.loads((base / "config.json").read_text())["sizes"]["words"]


def test_the_output_layer_learns_at_its_own_rate(tmp_path, trainers):
    # New labels' rows start from nothing: the head (with a CRF, its transitions too) gets head_lr_factor × the
    # run's rate, the weights taken from the parent the run's rate.
    base = train(load_recipe("demo", [*SMALL, "model.head=crf"]), tmp_path / "base").model_dir
    trainers.clear()
    finetune(base, _files(tmp_path), out=tmp_path / "ft", overrides=["train.max_epochs=1", "train.lr=0.01",
                                                                         "finetune.head_lr_factor=3"])
    body, head = trainers[0].optimizers[0].param_groups
    task = trainers[0].lightning_module
    assert body["lr"] == pytest.approx(0.01) and head["lr"] == pytest.approx(0.03)
    assert {id(p) for p in head["params"]} == {id(p) for p in task.net.head.parameters()}
    assert any(p is task.net.head.transition_scores for p in head["params"])
    assert len(body["params"]) + len(head["params"]) == len(list(task.parameters()))


# -- keeping the old labels (finetune.keep_old) -----------------------------------------------------------------

def test_keep_old_defaults_to_distill_or_to_replay_with_a_replay_file_and_is_checked():
    from seqtag.config import FinetuneConfig, finetune_recipe

    assert FinetuneConfig().keep_old == "distill"
    assert FinetuneConfig(replay="old.conll").keep_old == "replay"
    with pytest.raises(SeqtagError, match=r"keep_old=replay .* no file names it: add --set finetune.replay=FILE"):
        FinetuneConfig(keep_old="replay")
    with pytest.raises(SeqtagError, match=r"finetune.replay=old.conll is read only with finetune.keep_old=replay"):
        FinetuneConfig(replay="old.conll", keep_old="distill")
    with pytest.raises(SeqtagError, match="finetune.keep_old is 'forget'"):
        FinetuneConfig(keep_old="forget")
    with pytest.raises(SeqtagError, match="finetune.distill_temperature is 0"):
        FinetuneConfig(distill_temperature=0)
    parent = load_recipe("demo").to_dict()
    _, settings, _ = finetune_recipe(parent, ["finetune.keep_old=none", "finetune.distill_weight=0.5"], train="x")
    assert settings.keep_old == "none" and settings.distill_weight == 0.5


def _parent_and_child(parent: Path, head: str):
    """A random demo network of the given head (the parent) and a child grown from it by a new type's four
    labels (DRUG); also the number of old labels and a function that batches sentences with gold label ids."""
    from seqtag.data.batching import collate
    from seqtag.families import FAMILIES
    from seqtag.starts import grow_network

    loaded = seqtag.load(parent)
    family, codec = FAMILIES["tagging"], loaded.featurizer.labels
    model = family.resolve(load_recipe("demo", [*SMALL, f"model.head={head}"])).model
    new_labels = [*codec.labels, "B-DRUG", "I-DRUG", "E-DRUG", "S-DRUG"]
    torch.manual_seed(3)
    teacher = family.build_network(model, loaded.net.sizes)
    child = family.build_network(model, dict(loaded.net.sizes, labels=len(new_labels)))
    grow_network(child, teacher.state_dict())
    if head == "crf":
        teacher.head.constrain(codec.labels, codec.train_scheme)
        child.head.constrain(new_labels, codec.train_scheme)

    def batch_of(sentences, gold):
        rows = loaded.featurizer.encode(sentences)
        return collate([{"word_ids": w, "char_ids": c, "label_ids": g}
                        for w, c, g in zip(rows["word_ids"], rows["char_ids"], gold)])

    return teacher, child, len(codec.labels), batch_of


@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_kept_distillation_targets_equal_computed_ones_and_the_parent_runs_once_per_sentence(parent, head):
    from seqtag.objectives import Distillation

    teacher, _, old, batch_of = _parent_and_child(parent, head)
    a, b, c = ["Ada", "took", "aspirin", "in", "Paris", "."], ["Globex", "hired", "Tim", "."], ["Oslo"]
    batches = [batch_of(s, [[0] * len(x) for x in s]) for s in ([a, b], [c, b], [b, a, c], [c])]
    keep = Distillation(teacher, old, temperature=2.0)
    cpu = torch.device("cpu")
    expected = [keep.targets(batch, cpu) for batch in batches]
    runs = []
    computed = keep._computed
    keep._computed = lambda batch: runs.append(len(batch.mask)) or computed(batch)
    keep.keep_targets(1)
    for batch, targets in zip(batches, expected):
        kept = keep.targets(batch, cpu)
        torch.testing.assert_close(kept[batch.mask], targets[batch.mask])
        assert torch.isfinite(kept).all()
    assert runs == [2, 2], "the parent ran for the batches with a sentence it had not seen, and only those"
    keep.keep_targets(0)
    keep.targets(batches[3], cpu)
    assert runs == [2, 2, 1] and keep.kept is None


def test_word_swaps_put_the_parents_words_spelled_as_known_or_capitalised_into_real_tokens_only(parent):
    from seqtag.objectives import Distillation, WordSwaps

    teacher, child, old, batch_of = _parent_and_child(parent, "crf")
    loaded = seqtag.load(parent)
    featurizer, parent_words = loaded.featurizer, loaded.net.sizes["words"]
    sentences = [["Ada", "took", "aspirin", "in", "Paris", "."] * 20, ["Globex", "hired", "Tim", "."]]
    batch = batch_of(sentences, [[0] * len(s) for s in sentences])
    swaps = WordSwaps(featurizer.words, featurizer.char_ids, parent_words, featurizer.max_word_length, 0.5)
    swapped, where = swaps(batch)
    assert torch.equal(swapped.mask, batch.mask) and torch.equal(swapped.labels, batch.labels)
    assert not (where & ~batch.mask).any(), "padding is never swapped"
    assert 0.35 < where.sum() / batch.mask.sum() < 0.65
    unchanged = ~where
    assert torch.equal(swapped.features["word_ids"][unchanged], batch.features["word_ids"][unchanged])
    by_id = {index: word for word, index in featurizer.words.get_vocab().items()}
    chars = {index: char for char, index in featurizer.char_ids.items()}
    for word_id, spelled in zip(swapped.features["word_ids"][where].tolist(), swapped.features["char_ids"][where]):
        assert 1 < word_id < parent_words, "only words the parent was trained on (not <pad>, <unk> or new words)"
        written = "".join(chars.get(int(c), "?") for c in spelled if c != 0)
        word = by_id[word_id][:featurizer.max_word_length]
        assert written in (word, word[:1].upper() + word[1:])
    second, _ = swaps(batch)
    assert not torch.equal(second.features["word_ids"], swapped.features["word_ids"]), "fresh swaps every call"
    # Swapped tokens are distilled whatever their gold label: with gold labels that correct the parent everywhere,
    # only they count.
    keep = Distillation(teacher, old)
    child.eval()
    with torch.no_grad():  # a child that differs from the parent on the old labels
        child.head.linear.weight[1] += 0.5
    scores, _ = child(swapped.features, swapped.lengths, swapped.mask)
    corrected = batch_of(sentences, [[(g + 1) % old for g in row] for row in
                                     keep._computed(swapped).argmax(-1).tolist()])
    swapped.labels = corrected.labels
    nothing = torch.zeros_like(where)
    assert float(keep.loss(child.head, scores, swapped, nothing)) == pytest.approx(0.0, abs=1e-6)
    assert float(keep.loss(child.head, scores, swapped, where)) > 1e-4


def _sentiment_parent_and_new_data(folder: Path) -> tuple[Path, Path]:
    """A sentiment classifier (pos/neg) trained one epoch, and new texts with a new class (neutral)."""
    path = folder / "train.csv"
    path.write_text("text,label\n" + "good film,pos\nbad film,neg\ngreat fun,pos\ndull plot,neg\n" * 3)
    base = train(load_recipe("sentiment", [*SMALL], train=str(path), dev=str(path)), folder / "base").model_dir
    new = folder / "new.csv"
    new.write_text("text,label\n" + "fine film,neutral\ngood film,pos\nokay plot,neutral\nbad fun,neg\n" * 3)
    return base, new


@pytest.mark.parametrize("family", ["tagging", "classification"])
def test_fine_tuning_with_kept_targets_learns_the_same_weights_with_a_third_of_the_parent_runs(parent, tmp_path,
                                                                                            monkeypatch, family):
    from seqtag.objectives import Distillation

    if family == "tagging":
        new, sentences = _files(tmp_path), len(NEW_SENTENCES)
    else:
        parent, new = _sentiment_parent_and_new_data(tmp_path)
        sentences = 12
    runs = []
    computed = Distillation._computed
    monkeypatch.setattr(Distillation, "_computed", lambda self, batch: runs.append(len(batch.mask)) or
                        computed(self, batch))
    weights, rows = {}, {}
    for budget in (0, 8):
        runs.clear()
        # No swapped words: they make new sentences every step, whose targets are computed, never kept.
        out = finetune(parent, new, dev=new, out=tmp_path / f"kept{budget}",
                       overrides=[*FAST, "train.max_epochs=3", f"train.cache_mb={budget}",
                                  "finetune.distill_swaps=0"]).model_dir
        weights[budget], rows[budget] = load_file(out / "model.safetensors"), sum(runs)
    assert (rows[0], rows[8]) == (3 * sentences, sentences)
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[8][name], tensor, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_the_distillation_loss_is_zero_when_the_child_equals_the_parent_on_the_old_labels(parent, head):
    from seqtag.objectives import Distillation

    teacher, child, old, encode = _parent_and_child(parent, head)
    sentences = [["Ada", "Lovelace", "took", "aspirin", "in", "Paris", "."], ["Globex", "hired", "Tim", "."]]

    def batch_of(gold):
        return encode(sentences, gold)

    keep = Distillation(teacher, old, temperature=2.0)
    # Gold labels the parent agrees with, but for one token of a new label (ids past the parent's).
    agreed = keep.targets(batch_of([[0] * 7, [0] * 4]), torch.device("cpu")).argmax(-1).tolist()
    gold = [agreed[0][:7], agreed[1][:4]]
    gold[0][3] = old
    batch = batch_of(gold)
    child.eval()

    def loss() -> float:
        scores, _ = child(batch.features, batch.lengths, batch.mask)
        return float(keep.loss(child.head, scores, batch).detach())

    assert loss() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():  # the new labels' scores do not enter the distribution over the old ones
        child.head.linear.weight[old:] += 3.0
        child.head.linear.bias[old:] -= 2.0
    assert loss() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        child.head.linear.weight[1] += 0.5
    assert loss() > 1e-4
    # Where the gold label is an old one the parent does not find most probable, the new data corrects it: the
    # parent is no target there.
    batch = batch_of([[(label + 1) % old for label in row] for row in gold])
    assert loss() == pytest.approx(0.0, abs=1e-6)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


def _no_org_with_drugs(count: int, seed: int) -> list[list[tuple[str, str]]]:
    """New data as a user may have it: demo sentences without any ORG, and sentences with a new type (DRUG)."""
    import random

    blocks = [b for b in DEMO["train"].read_text(encoding="utf-8").split("\n\n") if b.strip() and "ORG" not in b]
    kept = [[(line.split("\t")[0], line.split("\t")[2]) for line in b.strip().splitlines()] for b in blocks]
    rng = random.Random(seed)
    drugs, people = ["Aspirin", "Ibuprofen", "Insulin", "Penicillin", "Warfarin", "Metformin"], ["Ada", "Tim", "Rosa"]
    sentences = []
    for i in range(count):
        if i % 2:
            sentences.append(kept[(seed * count + i) % len(kept)])
        else:
            sentences.append([(rng.choice(people), "B-PER"), ("took", "O"), (rng.choice(drugs), "B-DRUG"),
                              ("in", "O"), (rng.choice(["Paris", "Oslo", "Lima"]), "B-LOC"), (".", "O")])
    return sentences


def test_distillation_keeps_the_old_types_that_the_new_data_lacks(tmp_path):
    from safetensors.torch import load_file as load_weights

    from seqtag.metrics import span_scores

    shape = ["train.progress_bar=false", "model.hidden_size=16", "model.word_dim=16", "model.char_hidden=8",
             "model.char_dim=8", "train.max_epochs=6", "train.patience=0", "train.lr=0.02"]
    base = train(load_recipe("demo", shape), tmp_path / "base").model_dir
    new = {split: write_conll(tmp_path / f"{split}.conll", [[(w, "_", l) for w, l in s] for s in
                                                            _no_org_with_drugs(count, seed)])
           for split, count, seed in (("train", 80, 1), ("dev", 20, 2))}
    settings = ["train.max_epochs=6", "train.patience=0", "train.lr=0.02"]
    figures = {}
    # "anchor": no distillation, only the pull toward the parent's weights.
    modes = {"none": ["finetune.keep_old=none"], "distill": ["finetune.keep_old=distill", "finetune.distill_swaps=0"],
             "anchor": ["finetune.keep_old=none", "finetune.anchor=0.01"],
             "swaps": ["finetune.keep_old=distill"]}  # the default: distillation with swapped words
    for mode, chosen in modes.items():
        result = finetune(base, new["train"], dev=new["dev"], out=tmp_path / mode, overrides=[*settings, *chosen])
        model = seqtag.load(result.model_dir)
        rows = [[line.split("\t") for line in b.splitlines()] for b in DEMO["test"].read_text().split("\n\n") if b.strip()]
        predicted = [s.labels for s in model.predict([[t[0] for t in r] for r in rows])]
        old_only = lambda labels: [l if l.endswith(("PER", "LOC", "ORG")) else "O" for l in labels]  # noqa: E731
        figures[mode] = span_scores([old_only([t[2] for t in r]) for r in rows], [old_only(p) for p in predicted])
        # The saved model is the child alone: the parent's weights are neither in it nor in the checkpoints.
        assert set(load_weights(result.model_dir / "model.safetensors")) == set(load_file(base / "model.safetensors"))
        checkpoint = torch.load(tmp_path / mode / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        assert all(key.startswith("net.") for key in checkpoint)
    record = json.loads((tmp_path / "distill" / "model" / "config.json").read_text())["finetune"]["settings"]
    assert record["keep_old"] == "distill" and record["distill_temperature"] == 1.0
    print({mode: (round(f["f1"], 1), round(f["per_label"]["ORG"]["f1"], 1)) for mode, f in figures.items()})
    for mode in ("distill", "anchor", "swaps"):
        assert figures[mode]["f1"] > figures["none"]["f1"] + 5
        assert figures[mode]["per_label"]["ORG"]["f1"] > figures["none"]["per_label"]["ORG"]["f1"] + 10
    # Swapping the parent's words in shows the child its organisations' names, which the new data lacks
    # (here 86.5 against 79.2 old-test F1).
    assert figures["swaps"]["f1"] > figures["distill"]["f1"] + 4


def test_the_anchor_pulls_only_the_parent_part_of_each_weight_that_learns(parent):
    from seqtag.config import FinetuneConfig
    from seqtag.families import FAMILIES
    from seqtag.objectives import Anchor
    from seqtag.starts import grow_network

    loaded = seqtag.load(parent)
    family = FAMILIES["tagging"]
    model = family.resolve(load_recipe("demo", SMALL)).model
    reference = {name: tensor.clone() for name, tensor in loaded.net.state_dict().items()}
    old_labels, old_words = loaded.net.sizes["labels"], loaded.net.sizes["words"]
    child = family.build_network(model, dict(loaded.net.sizes, labels=old_labels + 4, words=old_words + 3))
    grow_network(child, reference)
    anchor = Anchor(reference, weight=0.5)
    assert float(anchor.loss(child).detach()) == 0.0
    with torch.no_grad():  # appended labels and words are free
        child.head.linear.weight[old_labels:] += 3.0
        child.embedders["word"].embedding.weight[old_words:] -= 1.0
    assert float(anchor.loss(child).detach()) == 0.0
    with torch.no_grad():
        child.head.linear.weight[0, :2] += torch.tensor([1.0, 2.0])
    assert float(anchor.loss(child).detach()) == pytest.approx(0.5 * (1.0 + 4.0))
    loss = anchor.loss(child)
    loss.backward()  # the gradient pulls the moved entries back, and only them
    gradient = child.head.linear.weight.grad
    assert gradient[0, :2].tolist() == pytest.approx([1.0, 2.0]) and float(gradient.abs().sum()) == pytest.approx(3.0)
    child.head.linear.weight.requires_grad_(False)  # a frozen weight costs nothing
    assert float(anchor.loss(child).detach()) == 0.0
    with pytest.raises(SeqtagError, match="finetune.anchor"):
        FinetuneConfig(anchor=-1)


# -- fine-tuning that pays off on a small domain: related starts, patience for the new labels ----------------------

def _doctors(count: int, seed: int) -> list[list[tuple[str, str]]]:
    """A new type of people (DOC, names the parent tags PER) beside the old PER; O-only filler words."""
    import random

    rng = random.Random(seed)
    names = ["Ada", "Tim", "Rosa", "Maria", "John"]
    return [[("Doctor", "O"), (rng.choice(names), "B-DOC"), ("met", "O"), (rng.choice(names), "B-PER"), (".", "O")]
            for _ in range(count)]


@pytest.fixture(scope="module", params=["softmax", "crf"])
def trained_parent(request, tmp_path_factory) -> Path:
    shape = ["train.progress_bar=false", "model.hidden_size=16", "model.word_dim=16", "model.char_hidden=8",
             "model.char_dim=8", "train.max_epochs=6", "train.patience=0", "train.lr=0.02",
             f"model.head={request.param}"]
    return train(load_recipe("demo", shape), tmp_path_factory.mktemp("trained") / "run").model_dir


def test_a_new_type_that_the_parent_reads_as_an_old_one_starts_from_its_rows(trained_parent, tmp_path):
    new = write_conll(tmp_path / "doctors.conll", [[(w, "_", l) for w, l in s] for s in _doctors(30, 1)])
    still = ["train.max_epochs=1", "train.lr=1e-12"]  # the saved rows are the starting ones
    result = finetune(trained_parent, new, dev=new, out=tmp_path / "related",
                      overrides=[*still, "finetune.start_new_labels=related"])
    started = json.loads((result.model_dir / "config.json").read_text())["finetune"]["started_from"]
    assert started == {"B-DOC": "B-PER", "I-DOC": "I-PER", "E-DOC": "E-PER", "S-DOC": "S-PER"}
    labels = json.loads((result.model_dir / "labels.json").read_text())
    weights = load_file(result.model_dir / "model.safetensors")
    for new_label, old_label in started.items():
        i, j = labels.index(new_label), labels.index(old_label)
        assert torch.allclose(weights["head.linear.weight"][i], weights["head.linear.weight"][j], atol=1e-6)
    if "head.transition_scores" in weights:  # every step into and out of DOC scores as the same step for PER
        steps, index = weights["head.transition_scores"], {label: labels.index(label) for label in labels}
        for a in ("O", "B-PER", "E-LOC", "S-ORG"):
            assert steps[index[a], index["B-DOC"]] == pytest.approx(float(steps[index[a], index["B-PER"]]), abs=1e-6)
        assert steps[index["B-DOC"], index["E-DOC"]] == pytest.approx(float(steps[index["B-PER"], index["E-PER"]]),
                                                                      abs=1e-6)
        assert weights["head.start_scores"][index["S-DOC"]] == pytest.approx(
            float(weights["head.start_scores"][index["S-PER"]]), abs=1e-6)
    fresh = finetune(trained_parent, new, dev=new, out=tmp_path / "fresh", overrides=still)  # the default
    assert "started_from" not in json.loads((fresh.model_dir / "config.json").read_text())["finetune"]
    rows = load_file(fresh.model_dir / "model.safetensors")["head.linear.weight"]
    assert not torch.allclose(rows[labels.index("B-DOC")], rows[labels.index("B-PER")], atol=1e-3)


def test_a_new_type_the_parent_does_not_read_as_any_old_one_starts_from_nothing(trained_parent, tmp_path):
    sentences = [[("the", "O"), ("aspirin", "B-DRUG"), ("helps", "O"), (".", "O")]] * 20
    new = write_conll(tmp_path / "drugs.conll", [[(w, "_", l) for w, l in s] for s in sentences])
    result = finetune(trained_parent, new, dev=new, out=tmp_path / "ft",
                      overrides=["train.max_epochs=1", "finetune.start_new_labels=related"])
    assert "started_from" not in json.loads((result.model_dir / "config.json").read_text())["finetune"]


def test_patience_counts_only_once_an_appended_label_has_scored_on_dev(trained_parent, tmp_path):
    import csv

    from seqtag.training import EarlyStop

    stop = EarlyStop(monitor="dev_score", mode="max", patience=1, strict=False, check_on_train_epoch_end=False)
    stop.waiting = True
    assert stop.still_at_start(50.0) is False   # the first check sets the best score
    assert stop.still_at_start(40.0) is True    # old types fall while the new ones have not scored: not a stall
    stop.waiting = False
    assert stop.still_at_start(40.0) is False
    # A fine-tuning run with appended labels logs how many dev spans of them it got right; a run without does not.
    new = write_conll(tmp_path / "doctors.conll", [[(w, "_", l) for w, l in s] for s in _doctors(40, 2)])
    result = finetune(trained_parent, new, dev=new, out=tmp_path / "ft",
                      overrides=["train.max_epochs=4", "train.lr=0.02", "train.patience=2"])
    with open(tmp_path / "ft" / "logs" / "metrics.csv", newline="") as handle:
        checks = [row for row in csv.DictReader(handle) if row.get("dev_score")]
    assert [float(row["dev_new_labels_correct"]) for row in checks][-1] == 40  # every DOC span of the dev file
    assert result.metrics["dev"]["per_label"]["DOC"]["support"] == 40
    same = finetune(trained_parent, DEMO["dev"], dev=DEMO["dev"], out=tmp_path / "same", overrides=["train.max_epochs=1"])
    with open(tmp_path / "same" / "logs" / "metrics.csv", newline="") as handle:
        assert "dev_new_labels_correct" not in next(csv.DictReader(handle))
    assert same.model_dir.is_dir()
