"""The character language-model pair that the "lm" embedder of a tagger or classifier runs (contextual string
embeddings): a `seqtag train contextual-lm` model folder, checked and read.

Training reads it twice: its config.json when the recipe is resolved (the pair's shape goes into the recipe, so
the saved model rebuilds the embedder without the folder), and its weights and tokenizer when the data is
prepared (they are copied into the new model). No `datasets`, Lightning or reader import here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from ..artifact import read_model
from ..errors import SeqtagError

HOW = "train one with: seqtag train contextual-lm --train TEXT_FOLDER_OR_GLOB --out lm, then --set model.lm=lm/model"


@dataclass
class CharLanguageModels:
    """What the "lm" embedder is built from: the pair's shape, and (when read whole) its tokenizer and weights."""

    path: Path
    cell: str
    dim: int
    hidden_size: int
    layers: int
    tokenizer: Tokenizer | None = None
    state_dict: dict | None = None


def lm_folder(path: str | Path | None) -> Path:
    """The model folder model.lm names: a model folder, or the run folder holding it in model/."""
    if not path:
        raise SeqtagError(f"model.embedders names 'lm', but model.lm does not say which character language models "
                          f"it runs; {HOW}.")
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file() and (folder / "model" / "config.json").is_file():
        folder = folder / "model"
    if not (folder / "config.json").is_file():
        raise SeqtagError(f"model.lm is {str(path)!r}, which holds no saved model (no config.json there or in "
                          f"model/); {HOW}.")
    return folder


def read_language_models(path: str | Path | None, whole: bool = True) -> CharLanguageModels:
    """The pair model.lm names; only its shape unless `whole`. Anything but a character LM with both directions is
    a SeqtagError saying what the folder holds instead."""
    folder = lm_folder(path)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        recipe = config["recipe"]
        task, tokenizer, model = config["task"], recipe["data"]["tokenizer"], recipe["model"]
        directions = model.get("lm_directions", "forward")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SeqtagError(f"model.lm: {folder / 'config.json'} cannot be read as a seqtag model ({err}); {HOW}.") \
            from None
    if task != "lm" or tokenizer != "char" or directions != "both":
        found = (f"a {task!r} model" if task != "lm" else
                 f"a language model over {tokenizer!r} tokens" if tokenizer != "char" else
                 "a character language model that reads forward only (model.lm_directions forward)")
        raise SeqtagError(f"model.lm is {str(path)!r}, which holds {found}; the 'lm' embedder needs a character "
                          f"language model with both directions (recipe contextual-lm); {HOW}.")
    pair = CharLanguageModels(folder, model["cell"], model["word_dim"], model["hidden_size"], model["num_layers"])
    if whole:
        parts = read_model(folder, {"lm": lambda _config: ("tokenizer.json",)})
        pair.tokenizer, pair.state_dict = parts["tokenizer"], parts["state_dict"]
    return pair


def pair_inputs(model, growth=None) -> tuple[Tokenizer | None, dict | None]:
    """The "lm" embedder's character tokenizer, and the pair's weights when the run copies them in: none without
    the embedder; a fine-tuning run keeps its parent's tokenizer (the pair's weights are in the parent's) unless the
    run adds the embedder (`Growth.adds_language_models`)."""
    if "lm" not in model.embedders:
        return None, None
    if growth is not None and not growth.adds_language_models:
        return growth.featurizer.lm_chars, None
    pair = read_language_models(model.lm)
    return pair.tokenizer, pair.state_dict
