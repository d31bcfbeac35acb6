"""Recipes: every bundled recipe loads; unknown keys and bad values are named, with the fix."""
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
    with pytest.raises(SeqtagError, match=r"model.char_encoder is 'gru'; expected one of 'cnn', 'lstm', 'none'"):
        load_recipe("demo", ["model.char_encoder=gru"])
    with pytest.raises(SeqtagError, match=r"model.dropout is 1.5"):
        load_recipe("demo", ["model.dropout=1.5"])
    with pytest.raises(SeqtagError, match=r"--set expects KEY=VALUE"):
        load_recipe("demo", ["model.dropout"])
