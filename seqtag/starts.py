"""How a training run starts: its data and its weights.

`train(recipe, out, init=...)` takes one of these:

    Scratch()                       the recipe's data read afresh, vocabularies and labels from the training
                                    split, random weights (and pretrained vectors where the recipe names them)
    FromParent(dir, parts, growth)  fine-tuning: the parent model's vocabularies and labels grown by the new data
                                    (appended, `data/growth.py`), its weights copied in row by row, the output
                                    layer at its own learning rate, an optional freeze schedule, the frozen parent
                                    as the teacher of finetune.keep_old=distill, and the parent's lineage in
                                    config.json

Every start answers the same six questions (`Start`), so the training loop never asks which one it has.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import Counter, defaultdict
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback
from torch import nn

from .config import FinetuneConfig, Recipe
from .data.growth import Growth
from .data.splits import Prepared
from .embedders import LM_EMBEDDER, UNK_ID, WORD_EMBEDDER
from .errors import SeqtagError
from .networks import Network
from .objectives import Anchor, Distillation, Objective, WordSwaps, leading_part

log = logging.getLogger("seqtag")


class Start:
    """What a run starts from. The base class is a run from scratch."""

    def prepare(self, objective: Objective, recipe: Recipe, cache_dir: str | None) -> Prepared:
        """The recipe's data, read, checked and featurized."""
        return objective.prepare(recipe, cache_dir)

    def start_network(self, objective: Objective, net: Network, recipe: Recipe, prepared: Prepared) -> None:
        """Set the weights the network starts from (it was built with random ones)."""
        objective.start_network(net, recipe, prepared)

    def head_lr(self, recipe: Recipe) -> float | None:
        """The output layer's own learning rate, or None: train.lr for the whole network."""
        return None

    def callbacks(self) -> list[Callback]:
        """Callbacks this start needs during training (a freeze schedule)."""
        return []

    def distillation(self, objective: Objective, recipe: Recipe, prepared: Prepared) -> Distillation | None:
        """What holds the old labels while training (fine-tuning's keep_old=distill), or None."""
        return None

    def anchor(self) -> Anchor | None:
        """The pull toward a parent's weights (fine-tuning's finetune.anchor), or None."""
        return None

    def config_entries(self, prepared: Prepared) -> dict:
        """Entries for the saved config.json (a fine-tuned model's lineage)."""
        return {}

    def first_new_label(self) -> int | None:
        """The id of the first label a fine-tuning run appended to its parent's, or None."""
        return None


class Scratch(Start):
    """A new model: nothing but the recipe and its data. `prepared`: the data already prepared for this recipe
    (`seqtag compare` prepares it once for all its runs)."""

    def __init__(self, prepared: Prepared | None = None):
        self.prepared = prepared

    def prepare(self, objective: Objective, recipe: Recipe, cache_dir: str | None) -> Prepared:
        return self.prepared if self.prepared is not None else objective.prepare(recipe, cache_dir)


class FreezeSchedule(Callback):
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


def grow_network(net: Network, parent: dict[str, torch.Tensor], added: str | None = None) -> dict[str, int]:
    """Copy the parent's weights into `net`, whose embedding and output rows may be more (appended words,
    characters, labels); each tensor's parent part goes to the same place. New embedding rows start as the
    parent's unknown-token vector: a new word first reads as the parent read it. `added` names an embedder the
    parent lacks (its weights are set elsewhere); the encoder's input columns for its vectors start at zero, so
    the grown network first scores as the parent did. Returns the parent's row count per embedding table."""
    state = net.state_dict()
    own = (f"embedders.{added}.",) if added is not None else ()  # the added embedder's weights: none in the parent
    with torch.no_grad():
        for name, tensor in state.items():
            if name.startswith(own):
                continue
            old = parent[name]
            if old.dim() != tensor.dim() or any(o > n for o, n in zip(old.shape, tensor.shape)):
                raise SeqtagError(f"the fine-tuned network's {name} {tuple(tensor.shape)} cannot hold the parent's "
                                  f"{tuple(old.shape)}")
            leading_part(tensor, old.shape)[...] = old
            if added is not None and name.startswith(("encoder.", "backward_encoder.")) and tensor.dim() == 2:
                tensor[:, old.shape[1]:] = 0  # the first layer's input weights: the added embedder comes last
        net.load_state_dict(state)
        rows = {}
        for name, module in net.named_modules():
            if isinstance(module, nn.Embedding) and not f"{name}.".startswith(own):
                rows[name] = parent[f"{name}.weight"].shape[0]
                module.weight[rows[name]:] = module.weight[UNK_ID]
    return rows


def _kind(label: str, span: bool) -> str | None:
    """A label's type: a span label's entity type (B-person → person, O → None), else the label itself."""
    if not span:
        return label
    return label.split("-", 1)[1] if "-" in label else None


def related_old_labels(net: Network, prepared: Prepared, old_count: int, batch_size: int = 64) -> dict[int, int]:
    """For each appended label, the parent label whose output row (and CRF scores) it starts from: the parent's
    labels are what the grown network — the parent's weights — predicts among its old labels alone on the
    training tokens (texts) of each new type. A new type starts from the old type given to a third or more of
    them (researcher → person, band → group); the rest start from nothing. Label ids: {new: old}."""
    from .data.batching import EncodedBatches  # the same padded batches training cuts

    codec = prepared.featurizer.labels
    span = codec.is_span
    encoded = prepared.encoded["train"]
    batches = EncodedBatches.from_arrow(encoded)
    seen: dict[str, Counter] = defaultdict(Counter)  # new type → old types predicted for its tokens
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for first in range(0, len(encoded), batch_size):
            batch = batches[list(range(first, min(len(encoded), first + batch_size)))]
            scores, _ = net(batch.features, batch.lengths, batch.mask)
            predicted = scores[..., :old_count].argmax(-1)
            gold = batch.labels if scores.dim() == 2 else batch.labels[batch.mask]
            predicted = predicted if scores.dim() == 2 else predicted[batch.mask]
            for gold_id, predicted_id in zip(gold.tolist(), predicted.tolist()):
                if old_count <= gold_id < len(codec):
                    seen[_kind(codec.labels[gold_id], span)][_kind(codec.labels[predicted_id], span)] += 1
    net.train(was_training)
    sources = {}
    for kind, counts in seen.items():
        tokens = sum(counts.values())
        counts.pop(None, None)  # "O": no old type
        if not counts:
            continue
        old_kind, count = counts.most_common(1)[0]
        if 3 * count < tokens or count < 2:
            continue
        for label_id in range(old_count, len(codec)):
            label = codec.labels[label_id]
            if _kind(label, span) == kind:
                source = label[: -len(kind)] + old_kind if span else old_kind
                if codec.index.get(source, old_count) < old_count:
                    sources[label_id] = codec.index[source]
    return sources


def start_rows_from(net: Network, sources: dict[int, int]) -> None:
    """Copy each source label's output row (weights and bias) to its new label, and with a CRF head its start,
    end and step scores, so that researcher → B-person reads as person → B-person did."""
    head = net.head
    with torch.no_grad():
        for new, old in sources.items():
            head.linear.weight[new] = head.linear.weight[old]
            head.linear.bias[new] = head.linear.bias[old]
        if hasattr(head, "transition_scores"):
            source = torch.arange(head.num_labels)
            for new, old in sources.items():
                source[new] = old
                head.start_scores[new] = head.start_scores[old]
                head.end_scores[new] = head.end_scores[old]
            started = torch.zeros(head.num_labels, dtype=torch.bool)
            started[list(sources)] = True
            old_steps = head.transition_scores.clone()
            # Every step into or out of a started label takes its sources' score; steps between labels that start
            # from nothing keep their zeros.
            rows, columns = torch.meshgrid(source, source, indexing="ij")
            touched = started[:, None] | started[None, :]
            head.transition_scores[touched] = old_steps[rows, columns][touched]


class FromParent(Start):
    """A fine-tuning run: the parent's featurizer or tokenizer (grown by the data) and its weights (copied in),
    the output layer's own learning rate, the freeze schedule, and the record of the parent saved in config.json."""

    def __init__(self, parent_dir: Path, parts: dict, growth: Growth, changed: list[str]):
        self.parent_dir = parent_dir
        self.parts = parts
        self.growth = growth
        self.changed = changed
        self.rows: dict[str, int] = {}
        self.started_from: dict[str, str] = {}  # new label → the old label its rows started from

    @property
    def settings(self) -> FinetuneConfig:
        return self.growth.settings

    def prepare(self, objective: Objective, recipe: Recipe, cache_dir: str | None) -> Prepared:
        prepared = objective.prepare(recipe, cache_dir, growth=self.growth)
        if "replay" in prepared.encoded:
            new, pool = len(prepared.encoded["train"]), len(prepared.encoded["replay"])
            fraction = self.settings.replay_fraction
            prepared.record.replay_per_epoch = min(pool, round(new * fraction / (1 - fraction)))
            log.info("replay: %d of the %d sentences of %s join each epoch's %d", prepared.record.replay_per_epoch,
                     pool, self.growth.replay, new)
        return prepared

    def head_lr(self, recipe: Recipe) -> float:
        """The output layer's learning rate: new labels' rows start there from nothing."""
        return recipe.train.lr * self.settings.head_lr_factor

    def start_network(self, objective: Objective, net: Network, recipe: Recipe, prepared: Prepared) -> None:
        self.rows = grow_network(net, self.parts["state_dict"],
                                 added=LM_EMBEDDER if self.growth.adds_language_models else None)
        # Pretrained vectors (--set model.pretrained_vectors) start the new words only; the parent's rows are trained.
        old = self.rows.get(f"embedders.{WORD_EMBEDDER}.embedding", 0)
        prepared.pretrained = {index: vector for index, vector in prepared.pretrained.items() if index >= old}
        objective.start_network(net, recipe, prepared)
        first_new = self.first_new_label()
        if first_new is not None and self.settings.start_new_labels == "related" and prepared.featurizer is not None:
            sources = related_old_labels(net, prepared, first_new)
            start_rows_from(net, sources)
            labels = prepared.featurizer.labels.labels
            self.started_from = {labels[new]: labels[old] for new, old in sorted(sources.items())}
            if self.started_from:
                log.info("new labels started from old ones (finetune.start_new_labels=related): %s",
                         ", ".join(f"{new} from {old}" for new, old in self.started_from.items()))

    def first_new_label(self) -> int | None:
        if not self.growth.added.get("labels"):
            return None
        return self.parts["config"]["sizes"]["labels"]

    def distillation(self, objective: Objective, recipe: Recipe, prepared: Prepared) -> Distillation | None:
        """The parent network, frozen, as the teacher of keep_old=distill. It reads the child's features: it is
        built with the grown vocabularies, whose new rows are its unknown word's (character's) vector — new words
        read to it as the parent read them — and with the parent's own labels and head. Rebuilt from the parent
        directory for every run, a resumed one too; the child's checkpoints and model never hold it."""
        if self.settings.keep_old != "distill" or self.settings.distill_weight == 0:
            return None
        old_labels = self.parts["config"]["sizes"]["labels"]
        # The parent's own embedders: an "lm" embedder the child adds would only feed the zero columns it starts with.
        model = dataclasses.replace(recipe.model, embedders=list(self.parts["config"]["recipe"]["model"]["embedders"]))
        parent = objective.family.build_network(model, {**prepared.sizes, "labels": old_labels})
        grow_network(parent, self.parts["state_dict"])
        codec = prepared.featurizer.labels if prepared.featurizer is not None else None
        constrain = getattr(parent.head, "constrain", None)
        if constrain is not None and codec is not None:  # the CRF's forbidden steps, from the old label names
            constrain(codec.labels[:old_labels], codec.train_scheme)
        swaps = None
        featurizer = prepared.featurizer
        if (self.settings.distill_swaps and objective.family.name == "tagging" and featurizer is not None
                and LM_EMBEDDER not in recipe.model.embedders):
            swaps = WordSwaps(featurizer.words, featurizer.char_ids, self.rows[f"embedders.{WORD_EMBEDDER}.embedding"],
                              featurizer.max_word_length, self.settings.distill_swaps)
        return Distillation(parent, old_labels, self.settings.distill_temperature, self.settings.distill_weight,
                            swaps)

    def anchor(self) -> Anchor | None:
        if self.settings.anchor == 0:
            return None
        return Anchor(self.parts["state_dict"], self.settings.anchor)

    def callbacks(self) -> list[Callback]:
        if self.settings.freeze == "none":
            return []
        return [FreezeSchedule(self.settings.freeze, self.settings.unfreeze_after)]

    def config_entries(self, prepared: Prepared) -> dict:
        config = self.parts["config"]
        data = {"sources": dict(prepared.sources)}
        train = prepared.encoded["train"]
        if hasattr(train, "column_names"):  # encoded rows: sentences or texts
            data["sentences"] = len(train)
            data["tokens"] = int(sum(len(ids) for ids in train["word_ids"]))
        else:  # a language model's token stream
            data["tokens"] = len(train)
        if prepared.record.replay_per_epoch:
            data["replay_per_epoch"] = prepared.record.replay_per_epoch
        # What grew: each list in full when short (labels, characters), else its length (a new domain's words).
        added = {kind: (values if len(values) <= 200 else len(values)) for kind, values in self.growth.added.items()}
        record = {
            "parent": {"path": str(self.parent_dir.resolve()), "weights_sha256": weights_digest(self.parent_dir),
                       "seqtag_version": config.get("seqtag_version"), "sizes": config["sizes"]},
            "data": data, "settings": dataclasses.asdict(self.settings), "set": self.changed, "added": added}
        if self.started_from:
            record["started_from"] = self.started_from
        if self.growth.label_map is not None:
            # The map itself, not its spec (which may name a file that is gone): `evaluate` maps a file in the
            # fine-tuning data's labels as training did.
            record["label_map"] = dict(self.growth.label_map.mapping)
        return {"finetune": record}
