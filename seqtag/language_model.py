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

import numpy as np
import torch
from tokenizers import Tokenizer

from .config import DataConfig
from .data.streams import TokenStream, token_level, window_loader
from .data.tokens import encode_text, start_ids
from .data.vocab import BPE_PIECES, CHAR, PAD_ID, UNK_ID
from .errors import InputError, SeqtagError
from .metrics import language_model_scores, perplexity
from .networks import Network, State, detach_state
from .sampling import check_sampling, generated_text, generation_context  # noqa: F401 (check_sampling: re-exported)
from .streaming import Progress, check_items, evaluation, stream_results

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


def _window_token_nats(net: Network, batch: dict[str, torch.Tensor], state: State | None
                       ) -> tuple[torch.Tensor, torch.Tensor, State, torch.Tensor]:
    """`window_nats` plus each target's own nats (B, T; 0 at padding), for the loss of each line."""
    scores, state = net({"word_ids": batch["inputs"]}, state=state)
    targets = batch["targets"]
    nats = net.head.loss(scores, targets, None)  # the summed figure exactly as without details
    per_target = torch.nn.functional.cross_entropy(scores.float().flatten(0, 1), targets.flatten(),
                                                   ignore_index=-100, reduction="none").view_as(targets)
    return nats, (targets >= 0).sum(), detach_state(state), per_target


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
        return encode_text(self.tokenizer, self.level, text)  # shared with the onnxruntime model (tokens.py)

    def _start(self) -> list[int]:
        """The context a text begins in: a line break (word <eos>, or the newline token when known)."""
        return start_ids(self.tokenizer, self.level)

    def _run(self, ids: list[int], state: State | None) -> tuple[torch.Tensor, State]:
        logits, state = self.net({"word_ids": torch.tensor([ids], dtype=torch.long, device=self.device)},
                                 state=state)
        return logits[0].cpu(), state

    # -- evaluation and scoring ---------------------------------------------

    @evaluation("a file path (str or Path) or a TokenStream")
    def evaluate(self, source: str | Path | TokenStream, batch_size: int | None = None, details: bool = False
                 ) -> dict:
        """Perplexity, loss (nats per token), bits per token, bits per character (character and BPE models), the
        number of tokens predicted, and "unknown_tokens" (the text's tokens that are <unk>, with their share,
        "unknown_rate", in percent), over a file read with the model's reader settings (or a TokenStream).

        `details` (a file only) adds "details": per line of the file, its text, the tokens predicted in it
        and their mean "loss" in nats."""
        lines = None
        if isinstance(source, TokenStream):
            stream = source
        else:
            from .data import lm as lm_data  # reading files needs `datasets`; generation does not

            lines = lm_data.read_text(self.data_config, str(source))
            encoded = lm_data.encode_text(lines, self.tokenizer)  # what read_stream does, keeping the lines
            stream = TokenStream.from_dataset(encoded)
        if len(stream) < 2:
            raise InputError(str(source), None, "holds fewer than 2 tokens; there is nothing to predict")
        columns = batch_size or self.data_config.eval_batch_size
        loader = window_loader(stream, columns, self.data_config.bptt, pad=True)
        line_ends = line_nats = line_counts = None
        if details and lines is not None:
            import pyarrow.compute as pc  # comes with `datasets`, which read the file

            line_ends = np.cumsum(pc.list_value_length(encoded.data.column("ids")).to_numpy(zero_copy_only=False))
            line_nats, line_counts = np.zeros(len(line_ends)), np.zeros(len(line_ends), dtype=np.int64)
        total, count, state = 0.0, 0, None
        with torch.inference_mode():
            for window, batch in enumerate(loader):
                batch = {key: value.to(self.device) for key, value in batch.items()}
                if line_ends is None:
                    nats, n, state = window_nats(self.net, batch, state)
                else:
                    nats, n, state, token_nats = _window_token_nats(self.net, batch, state)
                    # Target (row r, column t) of window w is stream position r·L + w·bptt + t + 1 (StreamWindows).
                    targets = batch["targets"].cpu().numpy()
                    rows, steps = np.nonzero(targets >= 0)
                    positions = rows * loader.dataset.column_length + window * self.data_config.bptt + steps + 1
                    line = np.searchsorted(line_ends, positions, side="right")
                    np.add.at(line_nats, line, token_nats.cpu().numpy()[rows, steps])
                    np.add.at(line_counts, line, 1)
                total, count = total + float(nats), count + int(n)
        scores = language_model_scores(total, count, len(stream), stream.chars,
                                       tokens_are_characters=self.level == CHAR,
                                       tokens_cover_text=self.level == BPE_PIECES)
        unknown = sum(int(np.count_nonzero(piece == UNK_ID)) for piece in stream.pieces)
        scores.update(bits_per_token=scores["loss"] / math.log(2), unknown_tokens=unknown,
                      unknown_rate=100.0 * unknown / len(stream))
        if line_ends is not None:
            scores["details"] = [{"line": number + 1, "text": text.rstrip("\n"), "tokens": int(n),
                                  "loss": float(nats / n) if n else None}
                                 for number, (text, nats, n) in enumerate(zip(lines["text"], line_nats, line_counts))]
        return scores

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
        check_items(texts, "score_texts", "strings")
        return [self.score(text) for text in texts]

    def score_stream(self, texts: Iterable[str], window: int | None = None, workers: int = 1,
                     progress: bool | Progress | None = None) -> Iterator[dict]:
        """`score` over an iterable of texts of any length, as a generator in input order, read lazily `window`
        texts at a time, in `workers` processes (see `Predictor.predict_stream`)."""
        check_items(texts, "score_stream", "strings")
        return stream_results(self, "score_texts", texts, window, workers, progress)

    def predict(self, *args, **kwargs):
        raise SeqtagError("A language model neither tags nor classifies: use score(), score_stream() or generate().")

    predict_stream = predict_file = predict

    def generate(self, prompt: str = "", max_tokens: int = 200, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, greedy: bool = False) -> str:
        """The prompt followed by up to `max_tokens` generated tokens.

        Sampling draws from the softmax at `temperature`, limited to the `top_k` best tokens and to the
        nucleus of probability `top_p`; `greedy` always takes the best token. A `seed` makes the result
        repeatable. <pad> and <unk> are never generated.
        """
        context, ids = generation_context(self, prompt, max_tokens, temperature, top_k, top_p, seed)
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
        return generated_text(self.tokenizer, self.level, prompt, ids, new)
