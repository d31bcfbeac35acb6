"""The Lightning "system" around a network: loss, dev metric and optimisers."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from .config import TrainConfig
from .data.batching import IGNORE_INDEX, Batch
from .metrics import span_scores
from .nn import TaggerNet

DEV_SCORE = "dev_score"  # accuracy for plain tags, span F1 for span schemes; what early stopping watches


def score_from_counts(counts: torch.Tensor, is_span: bool) -> float:
    """Accuracy from (correct, total) or span F1 from (correct, gold, predicted), in percent."""
    if not is_span:
        correct, total = counts.tolist()
        return 100.0 * correct / total if total else 0.0
    correct, gold, predicted = counts.tolist()
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    return 100.0 * 2 * precision * recall / (precision + recall) if precision + recall else 0.0


class TaggingTask(pl.LightningModule):
    """Trains a TaggerNet with token-level cross-entropy; padding is ignored by the loss and the metric."""

    def __init__(self, net: TaggerNet, train: TrainConfig, labels: list[str], train_scheme: str):
        super().__init__()
        self.net = net
        self.train_config = train
        self.labels = labels
        self.is_span = train_scheme != "none"
        self._dev_counts: list[torch.Tensor] = []

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.net(batch.word_ids, batch.char_ids, batch.lengths, batch.mask)  # (B, T, L)

    def _step(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE_INDEX)
        self.log(f"{stage}_loss", loss, prog_bar=stage == "train", batch_size=int(batch.mask.sum()),
                 sync_dist=stage != "train")
        return loss, logits

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        _, logits = self._step(batch, "dev")
        self._dev_counts.append(self._counts(logits.argmax(-1), batch))

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

    def on_validation_epoch_end(self) -> None:
        if not self._dev_counts:
            return
        counts = torch.stack(self._dev_counts).sum(0).to(self.device)
        self._dev_counts.clear()
        if self.trainer.world_size > 1:
            counts = self.all_gather(counts).sum(0)  # every rank scored its share of the dev batches
        self.log(DEV_SCORE, score_from_counts(counts, self.is_span), prog_bar=True, sync_dist=False)

    def configure_optimizers(self):
        cfg = self.train_config
        params = [p for p in self.parameters() if p.requires_grad]
        if cfg.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.lr_schedule == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=cfg.lr_factor, patience=cfg.lr_patience)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "monitor": DEV_SCORE, "interval": "epoch"}}
        if cfg.lr_schedule == "linear":
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda epoch: max(0.0, 1.0 - epoch / cfg.max_epochs))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        return optimizer
