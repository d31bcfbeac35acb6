"""Recipes: every bundled recipe loads; values are typed; unknown keys, keys the task does not use and bad values
are named, with the fix; data paths are resolved after the overrides."""
from __future__ import annotations

import pytest

from seqtag.config import RECIPES_DIR, load_recipe
from seqtag.errors import SeqtagError


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
def test_bundled_recipes_load(name):
    recipe = load_recipe(name)
    assert recipe.name == name


def test_overrides_are_typed_and_paths_resolved(tmp_path):
    recipe = load_recipe("demo", ["model.hidden_size=12", "train.lr=0.5", "data.lowercase=false",
                                  "train.max_time_minutes=null"], test=tmp_path / "t.conll")
    assert recipe.model.hidden_size == 12 and recipe.train.lr == 0.5 and recipe.data.lowercase is False
    assert recipe.data.test == str(tmp_path / "t.conll")
    assert recipe.data.train == str(RECIPES_DIR / "data" / "demo.train.conll")


def test_unknown_keys_in_set_and_in_yaml(tmp_path):
    with pytest.raises(SeqtagError, match=r"Unknown recipe key 'train.learning_rate'"):
        load_recipe("demo", ["train.learning_rate=1"])
    with pytest.raises(SeqtagError, match=r"Unknown recipe key 'hidden_size'"):
        load_recipe("demo", ["hidden_size=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  formt: conll\n", encoding="utf-8")
    with pytest.raises(SeqtagError, match=r"'data.formt'.*Did you mean 'data.format'"):
        load_recipe(str(bad))


def test_bad_values_name_the_key_and_the_choices():
    with pytest.raises(SeqtagError, match=r"model.cell is 'mlstm'; expected one of 'lstm', 'gru', 'rnn', "
                                          r"'peephole', 'coupled'"):
        load_recipe("demo", ["model.cell=mlstm"])
    with pytest.raises(SeqtagError, match=r"model.embedders is 'char_gru'; expected one of 'word', 'char_cnn'"):
        load_recipe("demo", ["model.embedders=word,char_gru"])
    with pytest.raises(SeqtagError, match=r"model.dropout is 1.5"):
        load_recipe("demo", ["model.dropout=1.5"])
    with pytest.raises(SeqtagError, match=r"--set expects KEY=VALUE"):
        load_recipe("demo", ["model.dropout"])


def _recipe_file(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_numbers_are_numbers_however_written_in_yaml(tmp_path):
    path = _recipe_file(tmp_path, "task: tagging\ndata:\n  label_column: '2'\nmodel:\n  hidden_size: '12'\n"
                                  "  num_layers: 2.0\n  dropout: 0\n  embedders: [word, char_lstm]\n"
                                  "train:\n  lr: 1e-3\n  max_time_minutes: null\n  progress_bar: 'false'\n"
                                  "  devices: 2\n")
    recipe = load_recipe(path)
    assert recipe.train.lr == 0.001 and isinstance(recipe.train.lr, float)
    assert recipe.model.hidden_size == 12 and isinstance(recipe.model.hidden_size, int)
    assert recipe.model.num_layers == 2 and isinstance(recipe.model.num_layers, int)
    assert recipe.model.dropout == 0.0 and isinstance(recipe.model.dropout, float)
    assert recipe.model.embedders == ["word", "char_lstm"]
    assert recipe.train.max_time_minutes is None and recipe.train.progress_bar is False
    assert recipe.data.label_column == "2" and recipe.train.devices == 2  # int | str keeps what was written
    empty = load_recipe(_recipe_file(tmp_path / "empty", "task: tagging\nmodel:\n"))
    assert empty.model.hidden_size == 200


def test_numbers_are_numbers_however_written_with_set():
    recipe = load_recipe("demo", ["train.lr=1e-3", 'model.hidden_size="12"', "model.embedders=word,char_lstm",
                                  "train.devices=0,1", "train.max_time_minutes=20", "data.hub_config=null",
                                  "name=2024", "data.label_column=-1"])
    assert recipe.train.lr == 0.001 and recipe.model.hidden_size == 12 and recipe.train.max_time_minutes == 20.0
    assert recipe.model.embedders == ["word", "char_lstm"] and recipe.train.devices == "0,1"
    assert recipe.data.hub_config is None and recipe.name == "2024" and recipe.data.label_column == -1
    assert load_recipe("demo", ["model.embedders=[word]"]).model.embedders == ["word"]
    assert load_recipe("ud-pos", ["data.label_column=xpos"]).data.label_column == "xpos"
    assert load_recipe("mr", ["data.vocab_size=3e4"]).data.vocab_size == 30_000


@pytest.mark.parametrize("setting, message", [
    ("model.hidden_size=abc", r"model.hidden_size is 'abc'; expected a whole number, e.g. model.hidden_size=200\."),
    ("model.hidden_size=12.5", r"model.hidden_size is 12.5; expected a whole number, e.g. model.hidden_size=200\."),
    ("model.hidden_size=true", r"model.hidden_size is True; expected a whole number"),
    ("train.lr=abc", r"train.lr is 'abc'; expected a number, e.g. train.lr=0.002\."),
    ("train.lr=.nan", r"train.lr is nan; expected a number"),
    ("train.max_time_minutes=soon", r"train.max_time_minutes is 'soon'; expected a number or null\."),
    ("data.lowercase=1", r"data.lowercase is 1; expected true or false, e.g. data.lowercase=true\."),
    ("train.precision=no", r"train.precision is False; expected text, e.g. train.precision=32-true \(YAML reads "
                           r"unquoted yes, no, on and off as true and false; quote the text\)"),
    ("train.devices=[0, 1]", r"train.devices is \[0, 1\]; expected a whole number or text, e.g. train.devices=auto"),
    ("data.train=[a, b]", r"data.train is \['a', 'b'\]; expected text or null\."),
    ("model.embedders=[1.5]", r"model.embedders is \[1.5\]; expected a list \(\[word, char_cnn\] in YAML, "
                              r"word,char_cnn with --set\)\."),
    ("data.label_column=ner", r"data.label_column is 'ner', but format 'conll' picks columns by 0-based index "
                              r"\(-1 is the last\); give a number such as data.label_column=3"),
])
def test_a_value_of_the_wrong_type_names_the_key_the_value_and_what_is_expected(setting, message):
    with pytest.raises(SeqtagError, match=message):
        load_recipe("demo", [setting])


def test_wrong_types_in_a_yaml_file_are_named_too(tmp_path):
    with pytest.raises(SeqtagError, match=r"data.batch_size is '32 sentences'; expected a whole number"):
        load_recipe(_recipe_file(tmp_path, "data:\n  batch_size: 32 sentences\n"))
    with pytest.raises(SeqtagError, match=r"section 'model' must be a mapping of settings, got 3"):
        load_recipe(_recipe_file(tmp_path, "model: 3\n"))
    with pytest.raises(SeqtagError, match=r"section 'data' must be a mapping of settings, got 'x'"):
        load_recipe(_recipe_file(tmp_path, "data: x\n"), train="t.conll")


@pytest.mark.parametrize("recipe, setting, message", [
    ("demo", "model.pooling=max", r"model.pooling is set to 'max' in .*demo.yaml with --set, but task 'tagging' "
                                  r"does not use it \(only classification recipes do\); remove the setting\."),
    ("demo", "data.bptt=35", r"data.bptt is set to 35 .* task 'tagging' does not use it \(only lm recipes do\)"),
    ("mr", "data.scheme=iob2", r"data.scheme is set .* task 'classification' does not use it \(only tagging"),
    ("mr", "model.tie_embeddings=true", r"model.tie_embeddings .* task 'classification' does not use it"),
    ("char-lm", "train.class_weights=balanced", r"train.class_weights .* task 'lm' does not use it"),
    ("char-lm", "model.char_dim=20", r"model.char_dim .* task 'lm' does not use it \(only tagging and "
                                     r"classification recipes do\)"),
    ("demo", "task=lm", r"data.token_column is set to 0 .* task 'lm' does not use it \(only tagging recipes do\)"),
])
def test_a_key_the_task_does_not_use_is_refused(recipe, setting, message):
    with pytest.raises(SeqtagError, match=message):
        load_recipe(recipe, [setting])


def test_only_keys_written_are_checked_against_the_task(tmp_path):
    recipe = load_recipe(_recipe_file(tmp_path, "task: lm\ndata:\n  format: text\n  tokenizer: char\n"))
    assert recipe.model.pooling == "max" and recipe.data.token_column == 0  # defaults of other tasks are fine
    with pytest.raises(SeqtagError, match=r"model.word_dropout is set to 0.1 in .*r.yaml, but task 'lm'"):
        load_recipe(_recipe_file(tmp_path, "task: lm\ndata:\n  format: text\nmodel:\n  word_dropout: 0.1\n"))
    with pytest.raises(SeqtagError, match=r"recipe.task is 'parsing'; expected one of 'tagging'"):
        load_recipe("demo", ["task=parsing"])


def test_paths_are_resolved_after_the_overrides(tmp_path, monkeypatch):
    folder = tmp_path / "recipes"
    path = _recipe_file(folder, "task: classification\ndata:\n  format: csv\n  train: a.pos, b.neg\n"
                                "  dev: dev.csv\n")
    recipe = load_recipe(path, ["data.format=class_files"])
    assert recipe.data.train == f"{folder / 'a.pos'},{folder / 'b.neg'}"  # each file, from the recipe's folder
    assert recipe.data.dev == str(folder / "dev.csv")
    hub = load_recipe(path, ["data.format=hub", "data.hub_name=imdb", "data.train=train", "data.dev=test"])
    assert (hub.data.train, hub.data.dev) == ("train", "test")  # split names, not paths
    assert load_recipe("demo", ["data.format=hub", "data.hub_name=x"]).data.train == "data/demo.train.conll"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    recipe = load_recipe(path, ["data.train=t.csv"], test="test.csv")
    assert recipe.data.train == str(work / "t.csv") and recipe.data.test == str(work / "test.csv")
    assert recipe.data.dev == str(folder / "dev.csv")
