"""The user-facing language model: `seqtag.load(path)` → `evaluate`, `score` and `generate`.

    lm = seqtag.load("runs/char-lm/model")
    lm.generate("ROMEO:", max_tokens=200, temperature=0.8, top_p=0.95, seed=1)
    lm.score("To be, or not to be")        # {"log_probability": ..., "perplexity": ..., "tokens": ...}
    lm.evaluate("heldout.txt")             # {"perplexity": ..., "loss": ..., "bits_per_char": ..., "tokens": ...}
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from tokenizers import Tokenizer

from .config import SEED_MAX, DataConfig
from .data.streams import EOS_ID, TokenStream, decode, token_level, window_loader
from .data.vocab import BPE_PIECES, CHAR, PAD_ID, UNK_ID, WORD
from .errors import InputError, SeqtagError
from .metrics import language_model_scores, perplexity
from .networks import Network, State, detach_state
from .streaming import Progress, stream_results

SCORE_CHUNK = 1024  # tokens per forward pass when scoring, so long texts run in bounded memory


def window_nats(net: Network, batch: dict[str, torch.Tensor], state: State | None, backward: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, State]:
    """Summed negative log-likelihood (nats) and count of the targets of one BPTT window, and the
    state to carry into the next window, detached so gradients stop at the window's start."""
    prefix = "backward_" if backward else ""
    targets = batch[prefix + "targets"]
    scores, state = net({"word_ids": batch[prefix + "inputs"]}, state=state, backward=backward)
    nats = net.head.loss(scores, targets, None)
    return nats, (targets >= 0).sum(), detach_state(state)


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


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, greedy: bool = False, generator: torch.Generator | None = None,
                banned: tuple[int, ...] = ()) -> int:
    """One token id from next-token scores (V,): the best one when greedy, else a sample after temperature,
    top-k (keep the k best) and top-p (keep the fewest best tokens whose probability reaches p)."""
    logits = logits.float().clone()
    logits[list(banned)] = -math.inf
    if greedy:
        return int(logits.argmax())
    logits /= temperature
    if top_k is not None and top_k < logits.numel():
        kth_best = torch.topk(logits, top_k).values[-1]
        logits[logits < kth_best] = -math.inf
    if top_p is not None and top_p < 1:
        ordered, order = logits.sort(descending=True)
        probabilities = ordered.softmax(-1)
        before = probabilities.cumsum(-1) - probabilities   # mass of the better tokens
        logits[order[before >= top_p]] = -math.inf          # the best token always stays
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


class LanguageModel:
    """A trained language model with its tokenizer."""

    task = "lm"  # its family in seqtag.families

    def __init__(self, net: Network, tokenizer: Tokenizer, data_config: DataConfig,
                 metrics: dict | None = None, path: Path | None = None, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        self.tokenizer = tokenizer
        self.data_config = data_config
        self.metrics = metrics or {}
        self.path = path
        self.level = token_level(tokenizer)

    # -- encoding -----------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` as training saw them; for words, each "\\n" is <eos>."""
        if self.level != WORD:
            return self.tokenizer.encode(text, add_special_tokens=False).ids
        ids: list[int] = []
        for number, line in enumerate(text.split("\n")):
            if number:
                ids.append(EOS_ID)
            ids.extend(self.tokenizer.encode(line, add_special_tokens=False).ids)
        return ids

    def _start(self) -> list[int]:
        """The context a text begins in: a line break (word <eos>, or the newline token when known)."""
        if self.level == WORD:
            return [EOS_ID]
        newline = self.tokenizer.encode("\n", add_special_tokens=False).ids
        return newline if len(newline) == 1 and newline[0] != UNK_ID else []

    def _run(self, ids: list[int], state: State | None) -> tuple[torch.Tensor, State]:
        logits, state = self.net({"word_ids": torch.tensor([ids], dtype=torch.long, device=self.device)},
                                 state=state)
        return logits[0].cpu(), state

    # -- evaluation and scoring ---------------------------------------------

    def evaluate(self, source: str | Path | TokenStream, batch_size: int | None = None) -> dict:
        """Perplexity, loss (nats per token), bits per character (character and BPE models) and the number of
        tokens predicted, over a file read with the model's reader settings (or a TokenStream)."""
        if isinstance(source, TokenStream):
            stream = source
        else:
            from .data.lm import read_stream  # reading files needs `datasets`; generation does not

            stream = read_stream(self.data_config, self.tokenizer, str(source))
        if len(stream) < 2:
            raise InputError(str(source), None, "holds fewer than 2 tokens; there is nothing to predict")
        columns = batch_size or self.data_config.eval_batch_size
        total, count, state = 0.0, 0, None
        with torch.inference_mode():
            for batch in window_loader(stream, columns, self.data_config.bptt, pad=True):
                batch = {key: value.to(self.device) for key, value in batch.items()}
                nats, n, state = window_nats(self.net, batch, state)
                total, count = total + float(nats), count + int(n)
        return language_model_scores(total, count, len(stream), stream.chars, tokens_are_characters=self.level == CHAR,
                                     tokens_cover_text=self.level == BPE_PIECES)

    def score(self, text: str) -> dict:
        """Log-probability (natural log) of `text` following a line break, its perplexity and token count."""
        if not isinstance(text, str):
            raise SeqtagError(f"score() takes a string, got {type(text).__name__}.")
        ids = self.encode(text)
        context = self._start()
        if not context:  # no line-break token to start from: the first token is context only
            context, ids = ids[:1], ids[1:]
        if not ids:
            raise SeqtagError(f"score(): {text!r} has no token to score.")
        log_probability, state = 0.0, None
        inputs = context + ids[:-1]
        with torch.inference_mode():
            for start in range(0, len(ids), SCORE_CHUNK):
                logits, state = self._run(inputs[start:start + SCORE_CHUNK], state)
                targets = torch.tensor(ids[start:start + SCORE_CHUNK])
                log_probability += float(logits.float().log_softmax(-1).gather(-1, targets[:, None]).sum())
        return {"log_probability": log_probability, "perplexity": perplexity(-log_probability / len(ids)),
                "tokens": len(ids)}

    # -- generation ---------------------------------------------------------

    def score_texts(self, texts: Iterable[str], index_offset: int = 0) -> list[dict]:
        """`score` of each text, in order."""
        return [self.score(text) for text in texts]

    def score_stream(self, texts: Iterable[str], window: int | None = None, workers: int = 1,
                     progress: bool | Progress | None = None) -> Iterator[dict]:
        """`score` over an iterable of texts of any length, as a generator in input order, read lazily `window`
        texts at a time, in `workers` processes (see `Predictor.predict_stream`)."""
        return stream_results(self, "score_texts", texts, window, workers, progress)

    def predict(self, *args, **kwargs):
        raise SeqtagError("A language model neither tags nor classifies: use score(), score_stream() or generate().")

    def generate(self, prompt: str = "", max_tokens: int = 200, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, greedy: bool = False) -> str:
        """The prompt followed by up to `max_tokens` generated tokens.

        Sampling draws from the softmax at `temperature`, limited to the `top_k` best tokens and to the
        nucleus of probability `top_p`; `greedy` always takes the best token. A `seed` makes the result
        repeatable. <pad> and <unk> are never generated.
        """
        check_sampling(max_tokens, temperature, top_k, top_p, seed)
        if not isinstance(prompt, str):
            raise SeqtagError(f"generate() takes a string prompt, got {type(prompt).__name__}.")
        ids = self.encode(prompt)
        if ids and all(i == UNK_ID for i in ids):
            raise SeqtagError(f"The prompt {prompt!r} is made only of tokens this model does not know (<unk>); "
                              "give a prompt in the model's vocabulary, or none.")
        context = self._start() + ids
        if not context:
            raise SeqtagError("This model has no line-break token to start from; give a prompt.")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        new: list[int] = []
        with torch.inference_mode():
            logits, state = None, None
            for start in range(0, len(context), SCORE_CHUNK):
                logits, state = self._run(context[start:start + SCORE_CHUNK], state)
            scores = logits[-1]
            for _ in range(max_tokens):
                token = sample_next(scores, temperature, top_k, top_p, greedy, generator, banned=(PAD_ID, UNK_ID))
                new.append(token)
                logits, state = self._run([token], state)
                scores = logits[-1]
        if self.level == BPE_PIECES:
            return decode(self.tokenizer, ids + new)  # byte-level BPE decodes the prompt back exactly
        continuation = decode(self.tokenizer, new)
        space = " " if self.level == WORD and prompt and not prompt[-1].isspace() and continuation[:1] != "\n" else ""
        return prompt + space + continuation
