"""Sampling settings for generation, checked, and a numpy sampler: what the onnxruntime language model
uses without torch. `language_model.py` checks its settings here too (its sampler draws with torch)."""
from __future__ import annotations

import math

import numpy as np

from .data.tokens import decode
from .data.vocab import BPE_PIECES, UNK_ID, WORD
from .errors import SeqtagError

SEED_MAX = 2**32 - 1  # numpy's seeds are unsigned 32-bit (config.SEED_MAX, for train.seed, is the same bound)


def check_sampling(max_tokens: int, temperature: float, top_k: int | None, top_p: float | None,
                   seed: int | None = None) -> None:
    """Reject sampling settings that have no meaning, naming the setting and its allowed range."""
    if seed is not None and not (isinstance(seed, int) and 0 <= seed <= SEED_MAX):
        raise SeqtagError(f"seed is {seed!r}; it must be a whole number from 0 to {SEED_MAX}.")
    if not isinstance(max_tokens, int) or max_tokens < 0:
        raise SeqtagError(f"max_tokens is {max_tokens!r}; it must be a whole number, 0 or more.")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise SeqtagError(f"temperature is {temperature!r}; it must be greater than 0 (lower is more conservative; "
                          "for the single most likely continuation use greedy decoding).")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise SeqtagError(f"top_k is {top_k!r}; it must be 1 or more (or unset to sample from every token).")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise SeqtagError(f"top_p is {top_p!r}; it must be in (0, 1] (1 keeps every token).")



def sample_next_numpy(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, greedy: bool = False, rng: np.random.Generator | None = None,
                      banned: tuple[int, ...] = ()) -> int:
    """`language_model.sample_next` in numpy: the best id when greedy (the same token as PyTorch's), else a
    draw after temperature, top-k and top-p, from numpy's generator (so not PyTorch's draw for a seed)."""
    logits = np.array(logits, dtype=np.float32)
    logits[list(banned)] = -np.inf
    if greedy:
        return int(logits.argmax())
    logits /= temperature
    if top_k is not None and top_k < logits.size:
        kth_best = np.sort(logits)[-top_k]
        logits[logits < kth_best] = -np.inf
    if top_p is not None and top_p < 1:
        order = np.argsort(-logits, kind="stable")
        probabilities = _softmax(logits[order])
        before = np.cumsum(probabilities) - probabilities       # mass of the better tokens
        logits[order[before >= top_p]] = -np.inf               # the best token always stays
    probabilities = _softmax(logits).astype(np.float64)
    rng = rng or np.random.default_rng()
    return int(rng.choice(logits.size, p=probabilities / probabilities.sum()))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def generation_context(model, prompt, max_tokens: int, temperature: float, top_k: int | None,
                       top_p: float | None, seed: int | None) -> tuple[list[int], list[int]]:
    """The token ids a language model generates after (its start plus the encoded prompt) and the prompt's own
    ids, once the settings and the prompt are checked. `model` has `encode` and `_start`."""
    check_sampling(max_tokens, temperature, top_k, top_p, seed)
    if not isinstance(prompt, str):
        raise SeqtagError(f"generate() takes a string prompt, got {type(prompt).__name__}.")
    ids = model.encode(prompt)
    if ids and all(i == UNK_ID for i in ids):
        raise SeqtagError(f"The prompt {prompt!r} is made only of tokens this model does not know (<unk>); "
                          "give a prompt in the model's vocabulary, or none.")
    context = model._start() + ids
    if not context:
        raise SeqtagError("This model has no line-break token to start from; give a prompt.")
    return context, ids


def generated_text(tokenizer, level: str, prompt: str, prompt_ids: list[int], new: list[int]) -> str:
    """The prompt followed by the text of the generated ids `new`."""
    if level == BPE_PIECES:
        return decode(tokenizer, prompt_ids + new)  # byte-level BPE decodes the prompt back exactly
    continuation = decode(tokenizer, new)
    space = " " if level == WORD and prompt and not prompt[-1].isspace() and continuation[:1] != "\n" else ""
    return prompt + space + continuation
