"""The Lightning "system" around a network: loss, dev metric and optimisers."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data.batching import IGNORE_INDEX, Batch
from .metrics import confusion_scores, perplexity, span_scores
from .nn import ClassifierNet, LanguageModelNet, LMState, TaggerNet

# Accuracy for plain tags, span F1 for span schemes, accuracy or macro-F1 for classification;
# what early stopping and checkpointing watch.
DEV_SCORE = "dev_score"
DEV_PERPLEXITY = "dev_perplexity"  # what language models are selected and stopped on (lower is better)


def score_from_counts(counts: torch.Tensor, is_span: bool) -> float:
    """Accuracy from (correct, total) or span F1 from (correct, gold, predicted), in percent."""
    if not is_span:
        correct, total = counts.tolist()
        return 100.0 * correct / total if total else 0.0
    correct, gold, predicted = counts.tolist()
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    return 100.0 * 2 * precision * recall / (precision + recall) if precision + recall else 0.0


class _Task(pl.LightningModule):
    """What every task shares: the forward pass over a Batch, dev counts summed over ranks, optimisers.

    A subclass gives `_step` (loss and logits), `_counts` (a tensor of counts for one dev
    batch, summable) and `_score` (the dev score from the summed counts).
    """

    def __init__(self, net: torch.nn.Module, train: TrainConfig, labels: list[str]):
        super().__init__()
        self.net = net
        self.train_config = train
        self.labels = labels
        self._dev_counts: list[torch.Tensor] = []

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.net(batch.word_ids, batch.char_ids, batch.lengths, batch.mask)  # (B, T, L) or (B, L)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        _, logits = self._step(batch, "dev")
        self._dev_counts.append(self._counts(logits.argmax(-1), batch))

    def on_validation_epoch_end(self) -> None:
        if not self._dev_counts:
            return
        counts = torch.stack(self._dev_counts).sum(0).to(self.device)
        self._dev_counts.clear()
        if self.trainer.world_size > 1:
            counts = self.all_gather(counts).sum(0)  # every rank scored its share of the dev batches
        self.log(DEV_SCORE, self._score(counts), prog_bar=True, sync_dist=False)

    def configure_optimizers(self):
        return configure_optimizers([p for p in self.parameters() if p.requires_grad], self.train_config)


class TaggingTask(_Task):
    """Trains a TaggerNet with token-level cross-entropy; padding is ignored by the loss and the metric."""

    def __init__(self, net: TaggerNet, train: TrainConfig, labels: list[str], train_scheme: str):
        super().__init__(net, train, labels)
        self.is_span = train_scheme != "none"

    def _step(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE_INDEX)
        self.log(f"{stage}_loss", loss, prog_bar=stage == "train", batch_size=int(batch.mask.sum()),
                 sync_dist=stage != "train")
        return loss, logits

    def _score(self, counts: torch.Tensor) -> float:
        return score_from_counts(counts, self.is_span)

    def _counts(self, predicted: torch.Tensor, batch: Batch) -> torch.Tensor:
        if not self.is_span:
            correct = ((predicted == batch.labels) & batch.mask).sum()
            return torch.stack([correct, batch.mask.sum()]).cpu()
        gold_seqs, predicted_seqs = [], []
        for gold_row, pred_row, n in zip(batch.labels.tolist(), predicted.tolist(), batch.lengths.tolist()):
            gold_seqs.append([self.labels[i] for i in gold_row[:n]])
            predicted_seqs.append([self.labels[i] for i in pred_row[:n]])
        scores = span_scores(gold_seqs, predicted_seqs)
        return torch.tensor([scores["correct_spans"], scores["gold_spans"], scores["predicted_spans"]])


class ClassificationTask(_Task):
    """Trains a ClassifierNet with cross-entropy per text (optionally class-weighted); dev score from a confusion matrix."""

    def __init__(self, net: ClassifierNet, train: TrainConfig, labels: list[str],
                 class_weights: torch.Tensor | None = None):
        super().__init__(net, train, labels)
        self.register_buffer("class_weights", class_weights, persistent=False)

    def _step(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)                                        # (B, L)
        loss = F.cross_entropy(logits, batch.labels, weight=self.class_weights)
        self.log(f"{stage}_loss", loss, prog_bar=stage == "train", batch_size=len(batch.labels),
                 sync_dist=stage != "train")
        return loss, logits

    def _counts(self, predicted: torch.Tensor, batch: Batch) -> torch.Tensor:
        size = len(self.labels)
        cells = batch.labels * size + predicted                     # (B,) gold row, predicted column
        return torch.bincount(cells, minlength=size * size).view(size, size).cpu()

    def _score(self, counts: torch.Tensor) -> float:
        scores = confusion_scores(counts.tolist(), self.labels)
        return scores["macro_f1" if self.train_config.dev_metric == "macro_f1" else "accuracy"]


def balanced_class_weights(label_ids: list[int], num_labels: int) -> torch.Tensor:
    """n / (k * count) per class, so every class weighs as much in the loss as the others."""
    counts = torch.bincount(torch.as_tensor(label_ids, dtype=torch.long), minlength=num_labels).float()
    return len(label_ids) / (num_labels * counts.clamp(min=1))


def configure_optimizers(params: list[torch.nn.Parameter], cfg: TrainConfig, monitor: str = DEV_SCORE,
                         mode: str = "max"):
    """The recipe's optimiser and learning-rate schedule over `params` (Lightning's return format);
    the plateau schedule watches `monitor` (`mode` "max": higher is better, "min": lower)."""
    if cfg.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.lr_schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=cfg.lr_factor, patience=cfg.lr_patience)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": monitor, "interval": "epoch"}}
    if cfg.lr_schedule == "linear":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: max(0.0, 1.0 - epoch / cfg.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
    return optimizer


def window_nats(net: LanguageModelNet, batch: dict[str, torch.Tensor], state: LMState | None,
                backward: bool = False) -> tuple[torch.Tensor, torch.Tensor, LMState]:
    """Summed negative log-likelihood (nats) and count of the targets of one BPTT window, and the
    state to carry into the next window, detached so gradients stop at the window's start."""
    prefix = "backward_" if backward else ""
    targets = batch[prefix + "targets"]
    logits, state = net(batch[prefix + "inputs"], state, backward=backward)
    nats = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                           reduction="sum")
    return nats, (targets != IGNORE_INDEX).sum(), (state[0].detach(), state[1].detach())


class LanguageModelTask(pl.LightningModule):
    """Trains a LanguageModelNet on BPTT windows served in stream order, carrying the hidden state.

    The state is reset at the start of every training epoch and every dev pass (the columns
    start again), carried from each window to the next, and detached in between (truncated
    backpropagation). The dev figure is the perplexity of the forward model over all dev tokens.
    """

    def __init__(self, net: LanguageModelNet, train: TrainConfig):
        super().__init__()
        self.net = net
        self.train_config = train
        self.directions = [False, True] if net.backward_lstm is not None else [False]
        self._states: dict[tuple[str, bool], LMState | None] = {}
        self._dev_sums: list[torch.Tensor] = []

    def _window(self, batch: dict, stage: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sums = []
        for backward in self.directions:
            nats, count, self._states[stage, backward] = window_nats(
                self.net, batch, self._states.get((stage, backward)), backward)
            sums.append((nats, count))
        return sums

    def on_train_epoch_start(self) -> None:
        self._states = {key: value for key, value in self._states.items() if key[0] != "train"}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        sums = self._window(batch, "train")
        loss = torch.stack([nats / count.clamp(min=1) for nats, count in sums]).mean()
        self.log("train_loss", loss, prog_bar=True, batch_size=int(sums[0][1]))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._states = {key: value for key, value in self._states.items() if key[0] != "dev"}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._dev_sums.append(torch.stack([torch.stack([nats.detach(), count.to(nats.dtype)])
                                           for nats, count in self._window(batch, "dev")]))

    def on_validation_epoch_end(self) -> None:
        if not self._dev_sums:
            return
        sums = torch.stack(self._dev_sums).sum(0)          # (directions, 2): nats, tokens
        self._dev_sums.clear()
        if self.trainer.world_size > 1:
            sums = self.all_gather(sums).sum(0)            # every rank scored its own columns
        losses = (sums[:, 0] / sums[:, 1].clamp(min=1)).tolist()
        self.log("dev_loss", losses[0], prog_bar=True)
        self.log(DEV_PERPLEXITY, perplexity(losses[0]), prog_bar=True)
        if len(losses) > 1:
            self.log("dev_backward_perplexity", perplexity(losses[1]))

    def configure_optimizers(self):
        return configure_optimizers([p for p in self.parameters() if p.requires_grad], self.train_config,
                                    monitor=DEV_PERPLEXITY, mode="min")
