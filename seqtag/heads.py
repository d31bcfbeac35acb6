"""Output heads: each turns the encoder's states into scores, and owns its loss and its decoding.

Every head is built as `Head(input_size, model, sizes, tied)` and has
    scores(states, mask, lengths)   → (B, T, L) per token, or (B, L) per text
    loss(scores, gold, mask)        → a scalar, computed in float32 (also under autocast)
    decode(scores, mask)            → (label ids, probabilities)
and, optionally, log_distribution(scores, mask, labels, temperature) → the float32 log-probabilities over the first
`labels` labels alone (what fine-tuning with finetune.keep_old=distill matches to the parent's),
and `tasks`, the task families that may use it (the first head registered for a family is its default). It
registers itself in `HEADS` under the name `model.head` uses. The CRF head lives in `crf.py`.

Mixed precision: `scores` may run under autocast (Lightning's `bf16-mixed`, fp16/bf16 on CUDA) and give
bfloat16 or float16 scores. Every `loss` and `decode` casts them to float32 and runs inside `float32_region`,
where autocast is off, so the cross-entropy, the softmax (and the CRF's algorithms) are done in float32. On
float32 scores with no autocast active nothing changes: `.float()` of a float32 tensor is that tensor.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn

from .registry import Registry

HEADS = Registry("model.head", "output head")


def float32_region(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """A region where autocast is off on `tensor`'s device, so ops on float32 inputs stay float32 (a no-op
    context on a device autocast does not know)."""
    device = tensor.device.type
    if torch.amp.is_autocast_available(device):
        return torch.autocast(device_type=device, enabled=False)
    return contextlib.nullcontext()


@HEADS.register("softmax")
class SoftmaxHead(nn.Module):
    """Label scores per token; softmax cross-entropy over the real tokens."""

    tasks = ("tagging",)

    def __init__(self, input_size: int, model, sizes: Mapping[str, int], tied=None):
        super().__init__()
        self.dropout = nn.Dropout(model.dropout)
        self.linear = nn.Linear(input_size, sizes["labels"])
        self.num_labels = sizes["labels"]

    def scores(self, states: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(states))                   # (B, T, L)

    def loss(self, scores: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the real tokens whose gold label the head has."""
        return _known_label_loss(scores, gold, mask, self.num_labels)

    def decode(self, scores: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Best label id per token (B, T) and every label's probability (B, T, L)."""
        with float32_region(scores):
            probabilities = scores.float().softmax(-1)
        return probabilities.argmax(-1), probabilities

    def log_distribution(self, scores: torch.Tensor, mask: torch.Tensor, labels: int, temperature: float = 1.0
                         ) -> torch.Tensor:
        """Log-probabilities over the first `labels` labels only (B, T, labels), at `temperature`: what
        fine-tuning distils (see `_log_softmax_over`)."""
        return _log_softmax_over(scores, labels, temperature)


def _log_softmax_over(scores: torch.Tensor, labels: int, temperature: float) -> torch.Tensor:
    """log softmax(scores[..., :labels] / temperature) in float32 with autocast off. Restricted to a label
    prefix, the distribution does not depend on the later labels' scores at all."""
    with float32_region(scores):
        return (scores[..., :labels].float() / temperature).log_softmax(-1)


def _known_label_loss(scores: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor | None, num_labels: int,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy where gold ids outside [0, num_labels) — padding, or labels never seen in training —
    carry no gradient. A batch with no known label gives 0, not NaN. Computed in float32 with autocast off."""
    with float32_region(scores):
        scores = scores.float()
        known = (gold >= 0) & (gold < num_labels)
        if mask is not None:
            known &= mask
        gold = gold.masked_fill(~known, -100)
        flat_scores, flat_gold = scores.reshape(-1, scores.size(-1)), gold.reshape(-1)
        if weight is None:
            total = nn.functional.cross_entropy(flat_scores, flat_gold, ignore_index=-100, reduction="sum")
            return total / known.sum().clamp(min=1)
        if not known.any():
            return scores.sum() * 0.0
        return nn.functional.cross_entropy(flat_scores, flat_gold, weight=weight.float(), ignore_index=-100)


class Pooling(nn.Module):
    """One vector per text from its token states, reading real (unpadded) positions only."""

    def __init__(self, kind: str, size: int):
        super().__init__()
        self.kind = kind
        self.attention = nn.Linear(size, 1) if kind == "attention" else None

    def forward(self, states: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # states: (B, T, 2H); mask: (B, T)
        if self.kind == "max":
            return states.masked_fill(~mask[..., None], float("-inf")).max(dim=1).values        # (B, 2H)
        if self.kind == "mean":
            total = (states * mask[..., None]).sum(dim=1)                                     # (B, 2H)
            return total / mask.sum(dim=1, keepdim=True).clamp(min=1).to(states.dtype)        # (B, 2H)
        if self.kind == "last":
            # The forward direction ends at the last real token, the backward one at the first.
            half = states.size(-1) // 2
            last = (lengths.to(states.device) - 1).clamp(min=0)                               # (B,)
            rows = torch.arange(states.size(0), device=states.device)
            return torch.cat([states[rows, last, :half], states[:, 0, half:]], dim=-1)       # (B, 2H)
        scores = self.attention(states).squeeze(-1)                                           # (B, T)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=1)                     # (B, T)
        return torch.einsum("bt,btd->bd", weights, states)                                    # (B, 2H)


@HEADS.register("pooled")
class PooledHead(nn.Module):
    """One label per text: token states pooled over the real tokens, then a linear layer and softmax.
    Optional class weights (balanced training) weigh the loss."""

    tasks = ("classification",)

    def __init__(self, input_size: int, model, sizes: Mapping[str, int], tied=None):
        super().__init__()
        self.dropout = nn.Dropout(model.dropout)
        self.linear = nn.Linear(input_size, sizes["labels"])
        self.pool = Pooling(model.pooling, input_size)
        self.num_labels = sizes["labels"]
        self.register_buffer("class_weights", None, persistent=False)

    def scores(self, states: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(self.pool(states, mask, lengths)))       # (B, L)

    def loss(self, scores: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the texts whose gold class the head has (class-weighted when set)."""
        return _known_label_loss(scores, gold, None, self.num_labels, self.class_weights)

    def decode(self, scores: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Best class per text (B,) and every class's probability (B, L)."""
        with float32_region(scores):
            probabilities = scores.float().softmax(-1)
        return probabilities.argmax(-1), probabilities

    def log_distribution(self, scores: torch.Tensor, mask: torch.Tensor, labels: int, temperature: float = 1.0
                         ) -> torch.Tensor:
        """Log-probabilities over the first `labels` classes only (B, labels), at `temperature`."""
        return _log_softmax_over(scores, labels, temperature)


@HEADS.register("next_token")
class NextTokenHead(nn.Module):
    """Next-token scores over the vocabulary. Tied: the word embedding matrix is the output layer too
    (one tensor, stored once), with the states projected to its size when the sizes differ."""

    tasks = ("lm",)

    def __init__(self, input_size: int, model, sizes: Mapping[str, int],
                 tied: nn.Embedding | None = None):
        super().__init__()
        self.dropout = nn.Dropout(model.dropout)
        self.projection = None
        self.tied = [tied] if tied is not None else None  # a list, so the embedding is not registered twice
        if tied is not None:
            if input_size != tied.embedding_dim:
                self.projection = nn.Linear(input_size, tied.embedding_dim)
            self.linear = None
            self.bias = nn.Parameter(torch.zeros(sizes["words"]))
        else:
            self.linear = nn.Linear(input_size, sizes["words"])

    def scores(self, states: torch.Tensor, mask: torch.Tensor | None, lengths: torch.Tensor | None) -> torch.Tensor:
        states = self.dropout(states)                                                # (B, T, H)
        if self.projection is not None:
            states = self.projection(states)                                         # (B, T, Dw)
        if self.linear is None:
            return nn.functional.linear(states, self.tied[0].weight, self.bias)      # (B, T, V)
        return self.linear(states)                                                   # (B, T, V)

    def loss(self, scores: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Summed negative log-likelihood in nats; targets < 0 (padding) are skipped. In float32, autocast off."""
        with float32_region(scores):
            return nn.functional.cross_entropy(scores.flatten(0, 1).float(), gold.flatten(), ignore_index=-100,
                                               reduction="sum")

    def decode(self, scores: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        with float32_region(scores):
            probabilities = scores.float().softmax(-1)
        return probabilities.argmax(-1), probabilities
