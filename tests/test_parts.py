"""Every registered part — each recurrent cell, output head and token embedder — builds, trains for one step,
saves and loads back as the same part with the same weights. The parts come from the registries, so a part
added with one class and one registration line is tested here without touching this file."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import seqtag
from seqtag.cells import CELLS
from seqtag.config import load_recipe
from seqtag.embedders import EMBEDDERS, WORD_EMBEDDER
from seqtag.heads import HEADS
from seqtag.training import train

from test_pipeline import SHAPE, SMALL, _recipe_files

# A bundled recipe of each task family, and the settings that make its smoke run small.
RECIPE_OF = {"tagging": "demo", "classification": "sentiment", "lm": "char-lm"}
SETTINGS_OF = {"demo": SMALL, "sentiment": SMALL, "char-lm": [*SHAPE, "data.bptt=8", "data.batch_size=4"]}


def _trained(name: str, settings: list[str], tmp_path):
    recipe = load_recipe(name, [*SETTINGS_OF[name], *settings], **_recipe_files(name, tmp_path))
    result = train(recipe, tmp_path / "run", smoke=True)
    model = seqtag.load(result.model_dir)
    saved = load_file(str(result.model_dir / "model.safetensors"))
    loaded = model.net.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    if name == "char-lm":
        assert model.generate("To", max_tokens=3, seed=0)
    else:
        assert model.predict(["Ada visited Paris ."])
    return model


@pytest.mark.parametrize("cell", list(CELLS))
def test_every_cell(cell, tmp_path):
    model = _trained("demo", [f"model.cell={cell}"], tmp_path)
    assert type(model.net.encoder.rnn) is CELLS[cell]


@pytest.mark.parametrize("head", list(HEADS))
def test_every_head(head, tmp_path):
    name = RECIPE_OF[HEADS[head].tasks[0]]
    model = _trained(name, [f"model.head={head}"], tmp_path)
    assert type(model.net.head) is HEADS[head]


# "lm" reads a trained character LM pair (model.lm): test_contextual_lm.py trains, saves and loads it.
@pytest.mark.parametrize("embedder", [name for name in EMBEDDERS if name not in (WORD_EMBEDDER, "lm")])
def test_every_embedder(embedder, tmp_path):
    model = _trained("demo", [f"model.embedders=[{WORD_EMBEDDER},{embedder}]"], tmp_path)
    assert [type(part) for part in model.net.embedders.values()] == [EMBEDDERS[WORD_EMBEDDER], EMBEDDERS[embedder]]


def test_a_part_added_with_one_registration_line_is_checked_trained_saved_and_loaded(tmp_path, monkeypatch):
    """What adding a cell or a head takes: a class and a registration line, nothing else anywhere."""
    class WideGRU(torch.nn.GRU):
        """A new cell (here a GRU under another name)."""

    class PlainHead(HEADS["softmax"]):
        """A new tagging head (here the softmax head under another name)."""

    monkeypatch.setitem(CELLS, "wide_gru", WideGRU)        # CELLS.register("wide_gru", WideGRU) in a module
    monkeypatch.setitem(HEADS, "plain", PlainHead)         # HEADS.register("plain", PlainHead)
    model = _trained("demo", ["model.cell=wide_gru", "model.head=plain"], tmp_path)
    assert type(model.net.encoder.rnn) is WideGRU and type(model.net.head) is PlainHead
    with pytest.raises(seqtag.SeqtagError, match=r"model.cell is 'wider_gru'; expected one of .*'wide_gru'"):
        load_recipe("demo", ["model.cell=wider_gru"])
