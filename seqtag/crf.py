"""A linear-chain CRF output layer for tagging (`model.head=crf`).

The head scores each token's labels with a linear layer (the emissions) and adds learned scores for every
label-to-label step, for starting a sentence with a label and for ending one with it. A sentence's labelling
scores the sum of its emissions and steps; its probability is exp(score) over the sum of exp(score) over
every labelling of that sentence (the partition function, by the forward algorithm in log space).

What each method gives (the interface of every head, see `heads.py`):

* `loss`: the negative log-likelihood of the gold labellings, summed over the sentences and divided by their
  real tokens, so it is in nats per token like the softmax head's cross-entropy (the training loop and the dev
  loss multiply it by token counts). A sentence holding a gold id outside [0, L) — a label never seen in
  training — has no gold path the head can score: it is left out of the loss (no gradient, its tokens not
  counted); a batch with no sentence left gives 0.
* `decode`: the best labelling of each sentence (Viterbi), and per token the marginal probability of every
  label given the whole sentence (forward–backward). The shown label is the best path's, which is not always
  the token's most probable label on its own.

Transitions the training scheme forbids (I-X after O or after another type, an I-/E- start and, in BIOES, a
B-/I- end, as `seqtag.data.schemes` rules them) are set with `constrain` from the label names; the weights do
not hold them, so the tagging family sets them when training starts and when a model is loaded. The loss and
the marginals give them the finite score FORBIDDEN: its exp is exactly 0 in float32 (probability 0), while
every log-sum stays finite, so no gradient turns NaN. Viterbi gives them −inf, so a decoded path never holds
one, whatever the other scores.

Mixed precision: the emissions may be computed under autocast (bfloat16/float16), but everything after them —
the forward algorithm, the gold path's score, Viterbi and forward–backward — runs in float32 with autocast off
(`float32_region`), on float32 emissions and transitions: a bfloat16 matrix product in the forward algorithm
moves the marginals by ~1e-2. With float32 inputs and no autocast the ops are exactly those of full precision.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .crf_numpy import FORBIDDEN  # noqa: F401 - the forward algorithm's score of a forbidden step
from .crf_numpy import allowed_transitions as allowed_transitions_np
from .heads import HEADS, float32_region


def allowed_transitions(labels: Sequence[str], scheme: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which labels may start a sentence (L,), follow each label (L_prev, L) and end a sentence (L,) in
    `scheme` (see `crf_numpy.allowed_transitions`, which the onnxruntime predictors read too)."""
    return tuple(torch.from_numpy(allowed) for allowed in allowed_transitions_np(labels, scheme))


def _step_weights(steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """exp(step scores − their largest) (L, L), 0 for forbidden steps, and that largest score (a constant)."""
    shift = steps.max().detach()
    return (steps - shift).exp(), shift


def _log_sum_over_steps(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """log Σ_i exp(scores[:, i]) · weights[i, j] for every j (B, L): a logsumexp over the previous label done as
    one matrix product, shifted by each row's largest score. (A logsumexp over (B, L, L) exponentiates the
    forbidden steps' scores at every position, and exp is many times slower on inputs that underflow.) A sum
    that underflows float32 — a label more than ~87 nats below the row's best — is read as the smallest
    positive float, so its log stays finite and carries no gradient."""
    top = scores.max(dim=1, keepdim=True).values.detach()                              # (B, 1)
    total = (scores - top).exp() @ weights                                             # (B, L)
    return total.clamp_min(torch.finfo(total.dtype).tiny).log() + top


@HEADS.register("crf")
class CRFHead(nn.Module):
    """Emissions per token plus learned start, step and end scores; NLL loss, Viterbi decoding and
    forward–backward marginals, all batched over sentences and masked (padding adds nothing)."""

    tasks = ("tagging",)

    def __init__(self, input_size: int, model, sizes: Mapping[str, int], tied=None):
        super().__init__()
        size = sizes["labels"]
        self.num_labels = size
        self.dropout = nn.Dropout(model.dropout)
        self.linear = nn.Linear(input_size, size)
        self.start_scores = nn.Parameter(torch.zeros(size))
        self.transition_scores = nn.Parameter(torch.zeros(size, size))   # [previous label, label]
        self.end_scores = nn.Parameter(torch.zeros(size))
        # Not saved with the weights: rebuilt from the label names by `constrain`.
        self.register_buffer("allowed_start", torch.ones(size, dtype=torch.bool), persistent=False)
        self.register_buffer("allowed_steps", torch.ones(size, size, dtype=torch.bool), persistent=False)
        self.register_buffer("allowed_end", torch.ones(size, dtype=torch.bool), persistent=False)

    def constrain(self, labels: Sequence[str], scheme: str) -> None:
        """Forbid the transitions `scheme` rules out between these labels (the head's outputs, in order)."""
        if len(labels) != self.num_labels:
            raise ValueError(f"{len(labels)} label names for a CRF head of {self.num_labels} labels")
        device = self.start_scores.device
        start, steps, end = allowed_transitions(labels, scheme)
        self.allowed_start, self.allowed_steps, self.allowed_end = start.to(device), steps.to(device), end.to(device)

    def _transitions(self, forbidden: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start (L,), step (L, L) and end (L,) float32 scores with `forbidden` in place of the forbidden ones."""
        return (self.start_scores.float().masked_fill(~self.allowed_start, forbidden),
                self.transition_scores.float().masked_fill(~self.allowed_steps, forbidden),
                self.end_scores.float().masked_fill(~self.allowed_end, forbidden))

    def scores(self, states: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(states))                   # (B, T, L) emissions

    # -- training -------------------------------------------------------------

    def loss(self, scores: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per real token of the sentences whose gold labels the head has all of.
        In float32 with autocast off, whatever the dtype of `scores`."""
        with float32_region(scores):
            emissions = scores.float()                             # (B, T, L)
            known = (gold >= 0) & (gold < self.num_labels)         # (B, T)
            kept = (known | ~mask).all(dim=1) & mask[:, 0]         # (B,): every real label known, not empty
            if not kept.any():
                return emissions.sum() * 0.0
            emissions, mask, gold = emissions[kept], mask[kept], gold[kept]
            gold = gold.masked_fill(~mask, 0)                      # padding: any valid id, masked out below
            start, steps, end = self._transitions(FORBIDDEN)
            log_partition = self._forward(emissions, mask, start, steps, end)[1]         # (B,)
            gold_score = self._path_score(emissions, mask, gold, start, steps, end)       # (B,)
            return (log_partition - gold_score).sum() / mask.sum()

    @staticmethod
    def _path_score(emissions: torch.Tensor, mask: torch.Tensor, path: torch.Tensor, start: torch.Tensor,
                    steps: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """The score of one labelling per sentence (B,); `path` (B, T) holds valid ids on padding too."""
        emitted = emissions.gather(2, path[..., None]).squeeze(-1)                        # (B, T)
        stepped = steps[path[:, :-1], path[:, 1:]]                                        # (B, T-1)
        last = path.gather(1, (mask.sum(1, keepdim=True) - 1)).squeeze(1)                 # (B,)
        return (start[path[:, 0]] + (emitted * mask).sum(1) + (stepped * mask[:, 1:]).sum(1) + end[last])

    @staticmethod
    def _forward(emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, steps: torch.Tensor,
                 end: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Forward scores per position — log of the summed exp-scores of every prefix ending in each label —
        (T × (B, L)), and the log partition function (B,). Past a sentence's end the scores stay as they were."""
        weights, shift = _step_weights(steps)                                             # (L, L), ()
        alpha = start + emissions[:, 0]                                                   # (B, L)
        alphas = [alpha]
        for t in range(1, emissions.size(1)):
            step = _log_sum_over_steps(alpha, weights) + shift + emissions[:, t]         # (B, L)
            alpha = torch.where(mask[:, t, None], step, alpha)
            alphas.append(alpha)
        return alphas, torch.logsumexp(alpha + end, dim=1)

    @staticmethod
    def _backward(emissions: torch.Tensor, mask: torch.Tensor, steps: torch.Tensor, end: torch.Tensor
                  ) -> list[torch.Tensor]:
        """Backward scores per position — log of the summed exp-scores of every suffix after each label —
        (T × (B, L)); at a sentence's last real token (and on padding) they are the end scores."""
        weights, shift = _step_weights(steps)
        beta = end.expand(emissions.size(0), -1)                                          # (B, L)
        betas = [beta]
        for t in range(emissions.size(1) - 2, -1, -1):
            step = _log_sum_over_steps(emissions[:, t + 1] + beta, weights.T) + shift     # (B, L)
            beta = torch.where(mask[:, t + 1, None], step, end)
            betas.append(beta)
        return betas[::-1]

    # -- prediction -----------------------------------------------------------

    def decode(self, scores: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Viterbi labelling (B, T) — 0 on padding — and each label's marginal probability (B, T, L),
        summing to 1 over the labels at every real token and 0 on padding."""
        emissions = scores.float()
        return self.viterbi(emissions, mask), self.marginals(emissions, mask)

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """P(label at token t | sentence) by forward–backward (B, T, L); 0 on padding. Computed in float64 (and
        returned as float32), autocast off: a long sentence's log scores reach thousands of nats, where float32
        left errors of up to 7e-4 in the marginals (bench/RESULTS.md, ONNX export). Viterbi's labels and the
        training loss are not computed here."""
        with float32_region(emissions):
            return self.log_distribution(emissions.double(), mask).exp().float() * mask[..., None]

    def log_distribution(self, scores: torch.Tensor, mask: torch.Tensor, labels: int | None = None,
                         temperature: float = 1.0) -> torch.Tensor:
        """Log marginal probabilities (B, T, labels) of the CRF restricted to its first `labels` labels (the
        labellings made of them alone), every score divided by `temperature`; padding's rows are meaningless.
        The restricted CRF does not depend on the later labels' scores, so fine-tuning distils it (keep_old):
        the marginals, not the emissions, since with a CRF the transitions shape the prediction as much.
        Float32 (float64 for float64 scores), autocast off."""
        with float32_region(scores):
            size = labels if labels is not None else self.num_labels
            dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
            emissions = scores[..., :size].to(dtype) / temperature                            # (B, T, labels)
            start, steps, end = (part.to(dtype) / temperature for part in self._transitions(FORBIDDEN))
            start, steps, end = start[:size], steps[:size, :size], end[:size]
            alphas, log_partition = self._forward(emissions, mask, start, steps, end)
            betas = self._backward(emissions, mask, steps, end)
            return torch.stack(alphas, 1) + torch.stack(betas, 1) - log_partition[:, None, None]  # (B, T, labels)

    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The best-scoring labelling with no forbidden step (B, T); 0 on padding and for empty sentences.
        Float32, autocast off."""
        with float32_region(emissions):
            return self._viterbi(emissions.float(), mask)

    def _viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        start, steps, end = self._transitions(float("-inf"))
        into = steps.T.contiguous()              # [label, previous label]: the max runs over contiguous memory
        best = start + emissions[:, 0]                                                    # (B, L)
        pointers = []                                                                     # (T-1) × (B, L)
        for t in range(1, emissions.size(1)):
            step, previous = (best[:, None, :] + into).max(dim=2)                        # (B, L) each
            best = torch.where(mask[:, t, None], step + emissions[:, t], best)
            pointers.append(previous)
        label = (best + end).argmax(dim=1)                                                # (B,) at the last real token
        path = torch.zeros(mask.shape, dtype=torch.long, device=emissions.device)         # (B, T)
        for t in range(emissions.size(1) - 1, 0, -1):
            real = mask[:, t]
            path[:, t] = torch.where(real, label, 0)
            label = torch.where(real, pointers[t - 1].gather(1, label[:, None]).squeeze(1), label)
        path[:, 0] = torch.where(mask[:, 0], label, 0)
        return path
