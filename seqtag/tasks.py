"""The Lightning side: one "system" around a network and one DataModule, for every task family.

Each hook asks the family's training objective (`objectives.py`) for the part that differs: the loss of a batch, the dev counts
and figures, the data and its loaders. A family that carries a recurrent state between batches (language
models) gets it back on the next call; the state is reset at the start of each training epoch and each
dev pass.
"""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from .config import Recipe, TrainConfig
from .data.batching import BucketBatchSampler, EncodedBatches
from .embedders import LM_EMBEDDER
from .objectives import NEW_LABELS_CORRECT, Anchor, Distillation, Objective
from .networks import Network


class Task(pl.LightningModule):
    """Trains `net` with its family's loss; logs `train_loss` and the family's dev figures."""

    def __init__(self, objective: Objective, net: Network, recipe: Recipe, labels=None, head_lr: float | None = None,
                 keep: Distillation | None = None, anchor: Anchor | None = None, first_new: int | None = None):
        super().__init__()
        self.head_lr = head_lr         # the output layer's own rate (fine-tuning), else train.lr for all
        self.keep = keep               # fine-tuning's distillation from the frozen parent (not a submodule)
        self.anchor = anchor           # fine-tuning's pull toward the parent's weights (finetune.anchor)
        # Fine-tuning that appended labels: the first appended one's id. Until the network first gets one of them
        # right on dev, the dev score is the old labels' alone, and patience does not count (`waiting`).
        self.first_new = first_new
        self.new_labels_scored = False
        self.objective = objective
        self.net = net
        self.recipe = recipe
        self.labels = labels           # the LabelCodec of taggers and classifiers
        self._states: dict[str, object] = {}
        self._dev_counts: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, self._states["train"], size = self.objective.train_loss(self.net, batch, self._states.get("train"),
                                                                       self.keep)
        if self.anchor is not None:
            loss = loss + self.anchor.loss(self.net)
        self.log("train_loss", loss, prog_bar=True, batch_size=max(1, size))
        return loss

    def on_train_epoch_start(self) -> None:
        self._states.pop("train", None)

    def on_fit_start(self) -> None:
        # What is the same for a sentence every epoch is computed once and kept (train.cache_mb): the word vectors
        # of fixed language models, and the fine-tuning parent's distillation targets (so the parent, with its
        # own pair, runs in the first epoch only).
        if LM_EMBEDDER in self.net.embedders:
            self.net.embedders[LM_EMBEDDER].keep_states(self.recipe.train.cache_mb)
        if self.keep is not None:
            self.keep.keep_targets(self.recipe.train.cache_mb)

    def on_fit_end(self) -> None:
        if LM_EMBEDDER in self.net.embedders:
            self.net.embedders[LM_EMBEDDER].keep_states(0)  # the memory back; a saved model keeps nothing
        if self.keep is not None:
            self.keep.keep_targets(0)

    @property
    def waiting(self) -> bool:
        """Whether patience is still held back because appended labels have not scored on dev yet."""
        return self.first_new is not None and not self.new_labels_scored

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["seqtag_new_labels_scored"] = self.new_labels_scored
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if self._states.get("train") is not None and 0 < done < self.trainer.num_training_batches:
            checkpoint["seqtag_train_state"] = move_state(self._states["train"], "cpu")

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Lightning resumes a mid-epoch checkpoint without calling on_train_epoch_start, so the state carried
        # into the next window (language models) is simply put back.
        self.new_labels_scored = checkpoint.get("seqtag_new_labels_scored", False)
        state = checkpoint.get("seqtag_train_state")
        if state is not None:
            self._states["train"] = move_state(state, self.device)

    def on_validation_epoch_start(self) -> None:
        self._states.pop("dev", None)
        self._dev_counts.clear()

    def validation_step(self, batch, batch_idx: int) -> None:
        counts, self._states["dev"] = self.objective.dev_counts(self.net, batch, self._states.get("dev"), self.labels,
                                                                self.first_new)
        self._dev_counts.append(counts)

    def on_validation_epoch_end(self) -> None:
        if self._dev_counts:
            counts = torch.stack(self._dev_counts).sum(0)
        else:  # a rank with no dev batch still joins the gather below
            counts = None
        self._dev_counts.clear()
        if self.trainer.world_size > 1:
            # Every rank scored its own share of the dev batches (none twice); sum the shares.
            shape = torch.tensor(counts.shape if counts is not None else [], device=self.device)
            shapes = self.all_gather(shape)
            template = next((s for s in shapes if s.numel()), None)
            if template is None:
                return
            mine = counts if counts is not None else torch.zeros(template.tolist())
            counts = self.all_gather(mine.to(self.device, torch.float64)).sum(0).cpu()
        if counts is None:
            return
        for name, value in self.objective.dev_figures(counts, self.labels, self.recipe, self.first_new).items():
            self.log(name, value, prog_bar=name == self.objective.monitor, sync_dist=False)
            if name == NEW_LABELS_CORRECT and value > 0:
                self.new_labels_scored = True
        if self.trainer.optimizers:
            # The rate the epoch trained with (schedules step after the dev check), for curves.png; a logged
            # number only, so the weights are those of a run that does not log it.
            self.log("lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]), sync_dist=False)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        own_rates = []  # (parameters, rate) of the parts that learn at a rate of their own
        if self.head_lr is not None:
            own_rates.append(({id(p) for p in self.net.head.parameters()}, self.head_lr))
        language_models = self.net.embedders[LM_EMBEDDER] if LM_EMBEDDER in self.net.embedders else None
        if language_models is not None and language_models.tune:
            # Tuned character LMs move slowly: a tenth of train.lr unless model.lm_lr says.
            model = self.recipe.model
            own_rates.append(({id(p) for p in language_models.parameters()},
                              model.lm_lr if model.lm_lr is not None else self.recipe.train.lr / 10))
        if own_rates:
            taken = set().union(*(ids for ids, _ in own_rates))
            groups = [{"params": [p for p in params if id(p) not in taken]}]
            groups += [{"params": [p for p in params if id(p) in ids], "lr": rate} for ids, rate in own_rates]
            params = groups
        return configure_optimizers(params, self.recipe.train, monitor=self.objective.monitor, mode=self.objective.mode)

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if isinstance(scheduler, PlateauSchedule):
            scheduler.waiting = self.waiting  # a plain flag: the schedule's state dictionary is pickled
        super().lr_scheduler_step(scheduler, metric)


def move_state(state, device):
    """A carried recurrent state (tensors in tuples and lists, or None) on `device`."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.to(device)
    return type(state)(move_state(part, device) for part in state)


class WaitsForFirstChange:
    """Patience that starts once the dev score has left the value of the first dev check, and, in a fine-tuning
    run that appended labels, once one of those labels has first been right on dev (`waiting` until then).

    A tagger trained from scratch on a few hundred sentences finds no entity at first: its span F1 sits at 0 for
    several epochs while the loss falls. Those checks are a start, not a stall, so neither early stopping nor the
    plateau schedule counts them (they would halve the rate, or stop the run, before it learnt anything). A score
    that moves at once, as a loss or an accuracy does, is not affected. A fine-tuned tagger scores at once with
    the types it already knew, then loses some of that while its new types' rows learn from nothing: those
    checks are a start too, or the run ends on its first epoch's score. Plain attributes, so that the state
    dictionaries checkpoints hold keep them."""

    first_score: float | None = None
    score_moved: bool = False
    waiting: bool = False

    def still_at_start(self, value: float) -> bool:
        """Whether the check that gave `value` is to be left out of the patience count."""
        if self.first_score is None:
            self.first_score = value
            return False  # the first check counts: it sets the best score
        self.score_moved = self.score_moved or value != self.first_score
        return self.waiting or not self.score_moved


class PlateauSchedule(WaitsForFirstChange, torch.optim.lr_scheduler.ReduceLROnPlateau):
    """ReduceLROnPlateau whose patience starts once the dev score has moved (see WaitsForFirstChange)."""

    def step(self, metrics, epoch=None):  # noqa: D102 - ReduceLROnPlateau's own
        if self.still_at_start(float(metrics)):
            return
        super().step(metrics)


def configure_optimizers(params: list, cfg: TrainConfig, monitor: str, mode: str):
    """The recipe's optimiser and learning-rate schedule over `params` (parameters, or torch's parameter groups
    with their own "lr"; Lightning's return format);
    the plateau schedule watches `monitor` (`mode` "max": higher is better, "min": lower)."""
    if cfg.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.lr_schedule == "plateau":
        scheduler = PlateauSchedule(
            optimizer, mode=mode, factor=cfg.lr_factor, patience=cfg.lr_patience)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": monitor, "interval": "epoch"}}
    if cfg.lr_schedule == "linear":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: max(0.0, 1.0 - epoch / cfg.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
    return optimizer


class DataModule(pl.LightningDataModule):
    """The recipe's splits, prepared once by the objective, served as length-bucketed batches (or, for a
    causal family, as BPTT windows in stream order)."""

    def __init__(self, objective: Objective, recipe: Recipe, cache_dir: str | None = None):
        super().__init__()
        self.objective = objective
        self.recipe = recipe
        self.cache_dir = cache_dir
        self.prepared = None

    def setup(self, stage: str | None = None) -> None:
        if self.prepared is None:  # train() prepares before Lightning asks
            self.prepared = self.objective.prepare(self.recipe, self.cache_dir)

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _resumed_window(self) -> int:
        """The first window a run resumed in mid-epoch has not trained on. Lightning restores the epoch's batch
        count from the checkpoint but would restart a plain loader at the stream's beginning."""
        loop = self.trainer.fit_loop if self.trainer is not None else None
        return loop.epoch_loop.batch_progress.current.completed if loop is not None and loop.restarting else 0

    def _loader(self, split: str, training: bool) -> DataLoader:
        data = self.recipe.data
        size = data.batch_size if training else data.eval_batch_size
        if self.objective.family.causal:
            from .data.streams import window_loader

            return window_loader(self.prepared.encoded[split], size, data.bptt, pad=not training,
                                 backward=self.recipe.model.lm_directions == "both", *(),
                                 rank=self._rank()[0], world_size=self._rank()[1],
                                 first_window=self._resumed_window if training else (lambda: 0))
        encoded, replay = self.prepared.encoded[split], self.prepared.record.replay_per_epoch
        if training and replay:
            # Fine-tuning with replay: the sampler draws a fresh sample of the rows after the training ones each epoch.
            from datasets import concatenate_datasets

            encoded = concatenate_datasets([encoded, self.prepared.encoded["replay"]])
        batches = EncodedBatches.from_arrow(encoded)
        rank, world_size = self._rank()
        sampler = BucketBatchSampler(np.diff(batches.word_offsets).tolist(), size, shuffle=training,
                                     seed=self.recipe.train.seed, rank=rank, world_size=world_size,
                                     first_batch=self._resumed_window,
                                     sample=(len(self.prepared.encoded[split]), replay) if training and replay else None)
        # Each item the sampler yields is a list of row indices, which EncodedBatches turns into a Batch.
        return DataLoader(batches, sampler=sampler, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", training=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev" if "dev" in self.prepared.encoded else "train", training=False)
