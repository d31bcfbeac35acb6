"""Task families, each declared once: what its models are (defaults, heads, the network it builds, the files
a model directory holds) and how a saved one is loaded. What the command line prints for each task, and the
`seqtag predict` options it accepts, are in `outputs.py` (torch-free, as an ONNX folder uses them too).

`seqtag.load`, `seqtag predict`/`evaluate` and the training side (`objectives.py`, which adds each family's data
preparation, loss and dev figures) read these declarations; none of them branches on the task name. Adding a
family is one class here plus one registration line, its training side in `objectives.py` and its outputs in
`outputs.py`.

Nothing here imports Lightning, the training modules or `datasets`: this is the prediction layer.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

from .artifact import COMMON_KEYS, DAMAGED, check_weights
from .config import ADDED_KEYS, SECTIONS, ModelConfig, Recipe, recipe_from_dict
from .data.contextual import read_language_models
from .data.featurizer import LM_TOKENIZER, Featurizer, LabelCodec, reads_characters
from .data.schemes import SCHEMES
from .embedders import EMBEDDERS, LM_EMBEDDER, WORD_EMBEDDER
from .errors import ModelFileError, SeqtagError
from .heads import HEADS
from .language_model import LanguageModel
from .networks import Network
from .predict import SequenceTagger, TextClassifier
from .registry import Registry

FAMILIES = Registry("task", "task family")  # name → the family's declaration (an instance; see the end)


class Family:
    """The declaration every family fills in. Class attributes say what the family is; the methods are the
    prediction-side steps that differ between families."""

    name: str
    causal = False                     # a left-to-right network that carries its state (language models)
    files: tuple[str, ...]             # what its model directory holds besides config/weights/metrics
    entries: dict[str, tuple | None] = {}  # config.json keys its models add, with the values each may take

    # -- the recipe and the network --------------------------------------------------------------------

    @property
    def embedders(self) -> tuple[str, ...]:
        """The token embedders its networks have unless the recipe names others (each embedder says)."""
        return tuple(name for name, embedder in EMBEDDERS.items() if self.name in embedder.default_for)

    @property
    def heads(self) -> tuple[str, ...]:
        """The heads it can use, the default first (each head says which families may use it)."""
        return tuple(name for name, head in HEADS.items() if self.name in head.tasks)

    def resolve(self, recipe: Recipe) -> Recipe:
        """The recipe with this family's defaults filled in (so config.json records what was built) and its
        choices checked."""
        model = recipe.model  # data.format and data.tokenizer were checked by the Recipe itself
        head = model.head or self.heads[0]
        if head not in self.heads:
            raise SeqtagError(f"model.head is {head!r}, which task {self.name!r} cannot use; expected one of "
                              f"{', '.join(map(repr, self.heads))}.")
        embedders = list(model.embedders) or list(self.embedders)
        model = replace(model, head=head, embedders=embedders)
        if LM_EMBEDDER in embedders and not model.lm_hidden_size:
            # A run that starts: the language models' shape goes into the recipe, so that config.json rebuilds
            # the embedder without their folder (a saved recipe has it already).
            pair = read_language_models(model.lm, whole=False)
            model = replace(model, lm=str(pair.path.resolve()), lm_cell=pair.cell, lm_dim=pair.dim,
                            lm_hidden_size=pair.hidden_size, lm_layers=pair.layers)
        elif model.lm and LM_EMBEDDER not in embedders:
            raise SeqtagError(f"model.lm is set, but model.embedders ({', '.join(embedders)}) does not name "
                              f"{LM_EMBEDDER!r}, the embedder that reads it: add it, e.g. --set "
                              f"model.embedders=[{', '.join(embedders)}, {LM_EMBEDDER}].")
        return replace(recipe, model=model)

    def build_network(self, model: ModelConfig, sizes: dict[str, int]) -> Network:
        return Network(model, sizes, model.embedders, model.head, causal=self.causal)

    # -- loading --------------------------------------------------------------------------------------

    def required_files(self, config: dict) -> tuple[str, ...]:
        model = config.get("recipe", {}).get("model", {})
        embedders = [name for name in model.get("embedders", ()) if isinstance(name, str)]
        try:
            reads_chars = reads_characters(embedders)
        except KeyError:  # an unknown embedder: the recipe check names it
            reads_chars = True
        return tuple(name for name in (*self.files, LM_TOKENIZER) if (name != "char_tokenizer.json" or reads_chars)
                     and (name != LM_TOKENIZER or LM_EMBEDDER in embedders))

    def load(self, parts: dict, path: Path, device="cpu"):
        """A predictor from a model directory's parts (see `artifact.read_model`)."""
        raise NotImplementedError

    def network(self, parts: dict, path: Path) -> tuple[Network, Recipe]:
        return _network(parts, path, self, self.entries)


def _network(parts: dict, path: Path, family: Family, entries: dict[str, tuple] | None = None
             ) -> tuple[Network, Recipe]:
    """Rebuild the network a model directory's config.json describes and load its weights. `entries` are the
    config.json keys this family's models hold besides those of every model, each with the values it may take
    (None: any). Whatever does not fit (a key missing or of another family, a recipe setting missing, unknown
    or out of range, a part the family cannot use, weights of another shape) is a ModelFileError naming the
    file; `artifact.read_model` has checked the rest."""
    config, where, entries = parts["config"], path / "config.json", entries or {}
    foreign = sorted(set(config) - COMMON_KEYS - set(entries))
    if foreign:
        raise ModelFileError(where, f"{foreign[0]!r} is not a key of a {family.name!r} model (task), but of another "
                                    f"family's; the task was edited. A model cannot change its task. {DAMAGED}")
    for key, allowed in entries.items():
        if key not in config:
            raise ModelFileError(where, f"the key {key!r} is missing. {DAMAGED}")
        if allowed is not None and config[key] not in allowed:
            raise ModelFileError(where, f"{key} is {config[key]!r}; expected one of {', '.join(map(repr, allowed))}. "
                                        f"{DAMAGED}")
    # A saved recipe holds every setting; the data and model ones rebuild the network and its preprocessing, so
    # a default standing in for a missing one could give other results than the model was trained to give.
    for section in ("data", "model"):
        settings = config["recipe"].get(section)
        if isinstance(settings, dict):  # keys newer than the model: the value it was trained with
            for key, value in ADDED_KEYS.items():
                if key.startswith(f"{section}.") and key.split(".", 1)[1] not in settings:
                    settings[key.split(".", 1)[1]] = value
        missing = [f.name for f in fields(SECTIONS[section]) if not isinstance(settings, dict) or f.name not in settings]
        if missing:
            raise ModelFileError(where, f"the saved recipe lacks {', '.join(f'{section}.{key}' for key in missing)}, "
                                        f"so the model cannot be rebuilt as it was trained. {DAMAGED}")
    try:
        recipe = family.resolve(recipe_from_dict(config["recipe"], where="the saved recipe", saved=True))
    except SeqtagError as err:
        raise ModelFileError(where, f"{err} {DAMAGED}") from None
    net = family.build_network(recipe.model, config["sizes"])
    check_weights(path / "model.safetensors", net.state_dict(), parts["state_dict"], f"a {family.name!r} network")
    net.load_state_dict(parts["state_dict"])
    return net, recipe


def _with_label_map(predictor, parts: dict, path: Path):
    """The predictor with the label map it was fine-tuned with (config.json's finetune.label_map), which its
    `evaluate` applies to gold labels. A model saved without one (trained from scratch, or fine-tuned before maps
    were saved) has none."""
    mapping = (parts["config"].get("finetune") or {}).get("label_map")
    if mapping is not None:
        if not (isinstance(mapping, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in mapping.items())):
            raise ModelFileError(path / "config.json", f"finetune.label_map is {mapping!r}; expected an object of "
                                                       f"label names. {DAMAGED}")
        predictor.label_map = dict(mapping)
    return predictor


class Tagging(Family):
    """A label per token: POS tags, entities, chunks. Dev figure: accuracy, or span F1 for span schemes."""

    name = "tagging"
    files = ("word_tokenizer.json", "char_tokenizer.json", "labels.json")
    entries = {"file_scheme": SCHEMES, "train_scheme": SCHEMES}

    @staticmethod
    def constrain(net: Network, codec: LabelCodec) -> None:
        """Tell a head that rules out transitions (the CRF) which ones the training scheme forbids. They come
        from the label names, not the weights, so this runs when training starts and when a model is loaded."""
        constrain = getattr(net.head, "constrain", None)
        if constrain is not None:
            constrain(codec.labels, codec.train_scheme)

    def load(self, parts, path, device="cpu"):
        net, recipe = self.network(parts, path)
        config = parts["config"]
        codec = LabelCodec(parts["labels"], config["file_scheme"], config["train_scheme"])
        featurizer = Featurizer(parts["words"], parts["chars"], codec, recipe.data.max_word_length,
                                lm_chars=parts["lm_tokenizer"])
        self.constrain(net, codec)
        tagger = SequenceTagger(net, featurizer, recipe.data, parts["metrics"], path, device)
        return _with_label_map(tagger, parts, path)


class Classification(Family):
    """A label per text: sentiment, topics. Dev figure: accuracy or macro-F1 (train.dev_metric)."""

    name = "classification"
    files = ("word_tokenizer.json", "char_tokenizer.json", "labels.json")
    entries = {"split": None, "truncated": None}

    def load(self, parts, path, device="cpu"):
        net, recipe = self.network(parts, path)
        data = recipe.data
        featurizer = Featurizer(parts["words"], parts["chars"], LabelCodec(parts["labels"]), data.max_word_length,
                                raw_text=True, max_length=data.max_length, lm_chars=parts["lm_tokenizer"])
        return _with_label_map(TextClassifier(net, featurizer, data, parts["metrics"], path, device), parts, path)


class LanguageModelling(Family):
    """The next token of a text stream, left to right (optionally with a right-to-left twin). Dev figure:
    perplexity of the forward model over every dev token."""

    name = "lm"
    causal = True
    files = ("tokenizer.json",)
    entries = {"split": None}

    def resolve(self, recipe: Recipe) -> Recipe:
        recipe = super().resolve(recipe)
        if recipe.model.embedders != [WORD_EMBEDDER]:
            raise SeqtagError(f"model.embedders is {recipe.model.embedders!r}; a language model reads token ids "
                              f"only: use [{WORD_EMBEDDER}].")
        return recipe

    def required_files(self, config):
        return self.files

    def load(self, parts, path, device="cpu"):
        net, recipe = self.network(parts, path)
        return LanguageModel(net, parts["tokenizer"], recipe.data, parts["metrics"], path, device)


for _family in (Tagging(), Classification(), LanguageModelling()):
    FAMILIES.register(_family.name, _family)


def family_of(config: dict | str, path: Path | None = None) -> Family:
    """The family a recipe's task or a saved config.json names."""
    task = config.get("task") if isinstance(config, dict) else config
    if task not in FAMILIES:
        where = f"{path / 'config.json'}: " if path is not None else ""
        raise SeqtagError(f"{where}task is {task!r}; expected one of {', '.join(map(repr, FAMILIES))}.")
    return FAMILIES[task]
