"""Fine-tuning: load a saved model, adapt it to new data, train on.

    seqtag finetune MODEL --train FILE [--dev FILE] [--test FILE] [--out DIR] [--set KEY=VALUE ...] [--resume]

The parent's saved recipe rebuilds its network, featurizer and labels; the data is read with the parent's
reader settings (unless `--set data.*` changes them); labels, words and characters the data brings are appended
(`data/growth.py`), and the head and embedding rows grow by copying the parent's rows in. Training then runs as
`seqtag train` runs (the same loop, checkpoints, early stopping and `--resume`), into a new model directory whose
config.json records the parent, the data and the settings. The parent's directory is only read.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from .artifact import read_model
from .config import FinetuneConfig, Recipe, finetune_recipe
from .data.growth import Growth
from .errors import InputError, SeqtagError
from .families import FAMILIES, Family
from .networks import UNK_ID, Network

log = logging.getLogger("seqtag")


class FreezeSchedule(pl.Callback):
    """Keeps the embedders (finetune.freeze=embeddings), or the embedders and the encoder (=encoder), fixed
    for the first `unfreeze_after` epochs, or for the whole run when it is 0. The optimiser holds every
    parameter from the start, so unfrozen parts simply get gradients again; a resumed run freezes by its epoch."""

    def __init__(self, freeze: str, unfreeze_after: int):
        self.freeze = freeze
        self.unfreeze_after = unfreeze_after
        self._trainable: dict[nn.Parameter, bool] = {}

    def parts(self, net: Network) -> list[nn.Parameter]:
        modules = [net.embedders]
        if self.freeze == "encoder":
            modules += [net.encoder] + ([net.backward_encoder] if net.backward_encoder is not None else [])
        return [p for module in modules for p in module.parameters()]

    def on_fit_start(self, trainer, pl_module) -> None:
        # What the recipe itself keeps fixed (model.freeze_embeddings) stays fixed when the schedule unfreezes.
        self._trainable = {p: p.requires_grad for p in self.parts(pl_module.net)}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        frozen = self.unfreeze_after == 0 or trainer.current_epoch < self.unfreeze_after
        for parameter, trainable in self._trainable.items():
            parameter.requires_grad_(trainable and not frozen)


def weights_digest(model_dir: Path) -> str:
    digest = hashlib.sha256()
    with open(model_dir / "model.safetensors", "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def grow_network(net: Network, parent: dict[str, torch.Tensor]) -> dict[str, int]:
    """Copy the parent's weights into `net`, whose embedding and output rows may be more (appended words,
    characters, labels); each tensor's parent part goes to the same place. New embedding rows start as the
    parent's unknown-token vector: a new word first reads as the parent read it. Returns the parent's row count
    per embedding table."""
    state = net.state_dict()
    with torch.no_grad():
        for name, tensor in state.items():
            old = parent[name]
            if old.dim() != tensor.dim() or any(o > n for o, n in zip(old.shape, tensor.shape)):
                raise SeqtagError(f"the fine-tuned network's {name} {tuple(tensor.shape)} cannot hold the parent's "
                                  f"{tuple(old.shape)}")
            tensor[tuple(slice(0, size) for size in old.shape)] = old
        net.load_state_dict(state)
        rows = {}
        for name, module in net.named_modules():
            if isinstance(module, nn.Embedding):
                rows[name] = parent[f"{name}.weight"].shape[0]
                module.weight[rows[name]:] = module.weight[UNK_ID]
    return rows


def _looks_like(path: str, data) -> str | None:
    """What is wrong when the first lines of a fine-tuning file do not fit the parent's reader, or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.rstrip("\n") for _, line in zip(range(200), handle)]
    except OSError:
        return None  # the reader reports a missing file itself
    rows = [line for line in lines if line.strip() and not line.startswith("#")]
    if not rows:
        return None
    fields = [row.split("\t") for row in rows[:50]]
    conllu = all(len(f) == 10 and f[0].replace("-", "").replace(".", "").isdigit() for f in fields)
    first = rows[0].lstrip()
    if data.format == "conll" and conllu:
        return "the file looks like CoNLL-U (10 tab-separated fields, numbered tokens)"
    if data.format == "conllu" and not conllu:
        return "the file is not CoNLL-U (10 tab-separated fields per token)"
    if data.format == "jsonl" and not first.startswith("{"):
        return "the file is not JSON lines (each line a {...} object)"
    if data.format in ("csv", "tsv") and first.startswith("{"):
        return "the file looks like JSON lines"
    if data.format == "tsv" and "\t" not in rows[0] and "," in rows[0]:
        return "the file looks comma-separated (csv), not tab-separated"
    return None


def check_reader(recipe: Recipe, parent_dir: Path, changed: list[str]) -> None:
    """A fine-tuning file in another format than the parent's reader, with no data.format given, is an error
    before anything is read."""
    if "data.format" in changed:
        return
    data = recipe.data
    for split in ("train", "dev", "test"):
        source = getattr(data, split)
        if source is None or data.format in ("hub", "text", "class_files", "class_folders", "auto"):
            continue
        problem = _looks_like(source, data)
        if problem:
            raise InputError(source, None, f"{problem}, but the model {parent_dir} reads data.format="
                             f"{data.format!r}. Give the file's format with --set data.format=... (and its columns, "
                             "e.g. data.label_column), or convert the file.")


class Start:
    """What `train()` starts from in a fine-tuning run: the parent's featurizer or tokenizer (grown by the data)
    and its weights (copied in), the freeze schedule, and the record saved in config.json."""

    def __init__(self, parent_dir: Path, parts: dict, family: Family, growth: Growth, changed: list[str]):
        self.parent_dir = parent_dir
        self.parts = parts
        self.family = family
        self.growth = growth
        self.changed = changed
        self.rows: dict[str, int] = {}

    @property
    def settings(self) -> FinetuneConfig:
        return self.growth.settings

    def prepare(self, recipe: Recipe, cache_dir: str | None):
        prepared = self.family.prepare(recipe, cache_dir, growth=self.growth)
        if "replay" in prepared.encoded:
            new, pool = len(prepared.encoded["train"]), len(prepared.encoded["replay"])
            fraction = self.settings.replay_fraction
            prepared.record["replay_per_epoch"] = min(pool, round(new * fraction / (1 - fraction)))
            log.info("replay: %d of the %d sentences of %s join each epoch's %d", prepared.record["replay_per_epoch"],
                     pool, self.growth.replay, new)
        return prepared

    def head_lr(self, recipe: Recipe) -> float:
        """The output layer's learning rate: new labels' rows start there from nothing."""
        return recipe.train.lr * self.settings.head_lr_factor

    def start_network(self, net: Network, recipe: Recipe, prepared) -> None:
        self.rows = grow_network(net, self.parts["state_dict"])
        # Pretrained vectors (--set model.pretrained_vectors) start the new words only; the parent's rows are trained.
        old = self.rows.get("embedders.word.embedding", 0)
        prepared.pretrained = {index: vector for index, vector in prepared.pretrained.items() if index >= old}
        self.family.start_network(net, recipe, prepared)

    def callbacks(self) -> list[pl.Callback]:
        if self.settings.freeze == "none":
            return []
        return [FreezeSchedule(self.settings.freeze, self.settings.unfreeze_after)]

    def config_entries(self, prepared) -> dict:
        config = self.parts["config"]
        data = {"sources": dict(prepared.sources)}
        train = prepared.encoded["train"]
        if hasattr(train, "column_names"):  # encoded rows: sentences or texts
            data["sentences"] = len(train)
            data["tokens"] = int(sum(len(ids) for ids in train["word_ids"]))
        else:  # a language model's token stream
            data["tokens"] = len(train)
        if "replay_per_epoch" in prepared.record:
            data["replay_per_epoch"] = prepared.record["replay_per_epoch"]
        # What grew: each list in full when short (labels, characters), else its length (a new domain's words).
        added = {kind: (values if len(values) <= 200 else len(values)) for kind, values in self.growth.added.items()}
        return {"finetune": {
            "parent": {"path": str(self.parent_dir.resolve()), "weights_sha256": weights_digest(self.parent_dir),
                       "seqtag_version": config.get("seqtag_version"), "sizes": config["sizes"]},
            "data": data, "settings": dataclasses.asdict(self.settings), "set": self.changed, "added": added}}


def default_out(parent_dir: Path) -> Path:
    """runs/NAME-finetuned, NAME being the parent's run folder (for RUN/model) or its directory."""
    name = parent_dir.resolve().parent.name if parent_dir.name == "model" else parent_dir.resolve().name
    return Path("runs") / f"{name}-finetuned"


def _refuse_parent_as_out(parent_dir: Path, out: Path) -> None:
    parent, target = parent_dir.resolve(), out.resolve()
    if target == parent or parent.is_relative_to(target) or target.is_relative_to(parent):
        raise SeqtagError(f"--out {out} is (or holds, or is inside) the model being fine-tuned, {parent_dir}; the "
                          "parent is never changed: give another folder, e.g. --out runs/my-finetuned.")


def finetune(parent: str | Path, train: str | Path | None, dev: str | Path | None = None,
             test: str | Path | None = None, out: str | Path | None = None, overrides: list[str] = (),
             resume: bool = False, overwrite: bool = False, smoke: bool = False, cache_dir: str | None = None):
    """Fine-tune the model in `parent` on new data and save a new model directory (a `train.TrainResult`).

    `overrides` are `--set` assignments: `finetune.*` (see `config.FinetuneConfig`), `train.*`, reader settings
    `data.*`, and the model's dropout and pretrained-vector keys. Without train.lr, the learning rate is the
    parent's times finetune.lr_factor."""
    from .train import train as run_training

    parent_dir = Path(parent)
    out = Path(out) if out is not None else default_out(parent_dir)
    _refuse_parent_as_out(parent_dir, out)
    parts = read_model(parent_dir, {name: family.required_files for name, family in FAMILIES.items()})
    family = FAMILIES[parts["config"]["task"]]
    predictor = family.load(parts, parent_dir)  # checks the saved recipe and weights fit together
    recipe, settings, changed = finetune_recipe(parts["config"]["recipe"], list(overrides), train=train, dev=dev,
                                                test=test)
    if recipe.data.train is None:
        raise SeqtagError("No fine-tuning data: give --train FILE.")
    if "model.pretrained_vectors" not in changed:
        recipe.model.pretrained_vectors = None  # the parent's rows are in its weights; its vector file may be gone
    if settings.replay and family.causal:
        raise SeqtagError("finetune.replay mixes sentences or texts into each epoch; a language model reads one "
                          "stream: append the original text to the fine-tuning text instead.")
    check_reader(recipe, parent_dir, changed)
    growth = Growth(settings, featurizer=getattr(predictor, "featurizer", None),
                    tokenizer=getattr(predictor, "tokenizer", None))
    if settings.replay:
        growth.replay = str(Path(settings.replay).resolve())
    start = Start(parent_dir, parts, family, growth, changed)
    return run_training(recipe, out, resume=resume, smoke=smoke, cache_dir=cache_dir, overwrite=overwrite,
                        start=start)


def settings_as_overrides(settings: dict) -> list[str]:
    """Python keyword settings as `--set` assignments: {"finetune.freeze": "encoder"} or finetune__freeze=..."""
    from .config import _as_setting

    return [f"{key.replace('__', '.')}={_as_setting(value)}" for key, value in settings.items()]
