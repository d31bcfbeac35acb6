"""The CRF head's decoding in numpy: Viterbi and forward–backward marginals, for the onnxruntime predictors
(which never import torch), and the scheme's allowed transitions, which `crf.py` reads too.

The algorithms are those of `crf.CRFHead` step for step (Viterbi in float32, the marginals in float64), so
labels are identical and marginals agree to float64 rounding: forbidden steps score FORBIDDEN in the marginals (exp is exactly 0, every log-sum
stays finite) and −inf in Viterbi; a log-sum over the previous label is one matrix product, shifted by each
row's largest score.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data.schemes import _violation  # the scheme's own rule for one label after another (None: allowed)

FORBIDDEN = -10_000.0  # the forward algorithm's score of a forbidden step: probability 0, still finite


def allowed_transitions(labels: Sequence[str], scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which labels may start a sentence (L,), follow each label (L_prev, L) and end a sentence (L,) in
    `scheme`, as bool arrays. The scheme's own checker decides: a step is allowed when `label` after `prev`
    breaks no rule; a sentence reads as if it started after nothing and ended before an "O". Scheme "none"
    allows everything."""
    size = len(labels)
    if scheme == "none":
        return np.ones(size, dtype=bool), np.ones((size, size), dtype=bool), np.ones(size, dtype=bool)
    start = np.array([_violation(None, label, scheme) is None for label in labels], dtype=bool)
    steps = np.array([[_violation(prev, label, scheme) is None for label in labels] for prev in labels],
                     dtype=bool).reshape(size, size)
    end = np.array([_violation(label, "O", scheme) is None for label in labels], dtype=bool)
    return start, steps, end


class CRFDecoder:
    """The learned start (L,), step (L, L) and end (L,) scores with the scheme's forbidden transitions."""

    def __init__(self, start: np.ndarray, steps: np.ndarray, end: np.ndarray, labels: Sequence[str], scheme: str):
        allowed = allowed_transitions(labels, scheme)
        self.scores = [np.asarray(s, dtype=np.float32) for s in (start, steps, end)]
        self.allowed = allowed

    def _transitions(self, forbidden: float) -> list[np.ndarray]:
        return [np.where(ok, s, np.float32(forbidden)).astype(np.float32) for s, ok in zip(self.scores, self.allowed)]

    def decode(self, emissions: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Viterbi labelling (B, T) and the marginals (B, T, L), as `CRFHead.decode` gives them."""
        emissions = emissions.astype(np.float32, copy=False)
        return self.viterbi(emissions, mask), self.marginals(emissions, mask)

    def viterbi(self, emissions: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The best labelling with no forbidden step (B, T); 0 on padding and for empty sentences."""
        start, steps, end = self._transitions(-np.inf)
        into = np.ascontiguousarray(steps.T)                                              # [label, previous]
        best = start + emissions[:, 0]                                                    # (B, L)
        pointers = []
        for t in range(1, emissions.shape[1]):
            candidates = best[:, None, :] + into                                          # (B, L, L_prev)
            previous = candidates.argmax(axis=2)                                          # (B, L)
            step = np.take_along_axis(candidates, previous[..., None], 2)[..., 0]
            best = np.where(mask[:, t, None], step + emissions[:, t], best)
            pointers.append(previous)
        label = (best + end).argmax(axis=1)                                               # (B,)
        path = np.zeros(mask.shape, dtype=np.int64)
        rows = np.arange(mask.shape[0])
        for t in range(emissions.shape[1] - 1, 0, -1):
            real = mask[:, t]
            path[:, t] = np.where(real, label, 0)
            label = np.where(real, pointers[t - 1][rows, label], label)
        path[:, 0] = np.where(mask[:, 0], label, 0)
        return path

    def marginals(self, emissions: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """P(label at token t | sentence) by forward–backward (B, T, L); 0 on padding. In float64, as
        `crf.CRFHead.marginals` computes them (float32 left errors of up to 7e-4 on long sentences)."""
        start, steps, end = (part.astype(np.float64) for part in self._transitions(FORBIDDEN))
        emissions = emissions.astype(np.float64)
        shift = steps.max()
        weights = np.exp(steps - shift)                                                   # (L, L)
        length = emissions.shape[1]
        alpha = start + emissions[:, 0]
        alphas = [alpha]
        for t in range(1, length):
            step = _log_sum_over_steps(alpha, weights) + shift + emissions[:, t]
            alpha = np.where(mask[:, t, None], step, alpha)
            alphas.append(alpha)
        log_partition = _logsumexp(alpha + end)                                           # (B,)
        beta = np.broadcast_to(end, alpha.shape)
        betas = [beta]
        for t in range(length - 2, -1, -1):
            step = _log_sum_over_steps(emissions[:, t + 1] + beta, weights.T) + shift
            beta = np.where(mask[:, t + 1, None], step, end)
            betas.append(beta)
        log_marginals = np.stack(alphas, 1) + np.stack(betas[::-1], 1) - log_partition[:, None, None]
        return (np.exp(log_marginals) * mask[..., None]).astype(np.float32)


def _log_sum_over_steps(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    top = scores.max(axis=1, keepdims=True)                                               # (B, 1)
    total = np.exp(scores - top) @ weights                                                # (B, L)
    return np.log(np.maximum(total, np.finfo(total.dtype).tiny)) + top


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1, keepdims=True)
    return (np.log(np.exp(x - top).sum(axis=1, keepdims=True)) + top)[:, 0]
