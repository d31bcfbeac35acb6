"""Token embedders: each turns a batch's features into one vector per token, (B, T, D).

Every embedder has `feature` (the batch feature it reads: "word_ids" or "char_ids"), `output_size`, and
`forward(features, mask) → (B, T, D)`; it is built as `Embedder(model, sizes, word_dropout)` from the recipe's
model settings and the vocabulary sizes. It registers itself in `EMBEDDERS` under the name `model.embedders`
uses; `default_for` names the task families whose networks have it unless the recipe lists others.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .cells import CELLS
from .registry import Registry

EMBEDDERS = Registry("model.embedders", "token embedder")
PAD_ID, UNK_ID = 0, 1  # the same ids in every vocabulary (seqtag.data.vocab builds them that way)
WORD_EMBEDDER = "word"  # the embedder every network starts with (its rows grow when fine-tuning adds words)
LM_CHUNK_ROWS = 16  # sentences the language models read together, sorted by line length (the ONNX path reads
# data.featurizer.LM_CHUNK_ROWS, which must equal it: the featurizer does not import torch)


@EMBEDDERS.register(WORD_EMBEDDER)
class WordEmbedder(nn.Module):
    """A vector per word id. During training a few words become <unk> (word dropout), so the unknown
    vector learns something useful, and with `model.embedding_dropout` whole word types lose their vector for
    the batch. Pretrained rows can be frozen while the others learn."""

    default_for = ("tagging", "classification", "lm")

    feature = "word_ids"

    def __init__(self, model, sizes: Mapping[str, int], word_dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(sizes["words"], model.word_dim, padding_idx=PAD_ID)
        self.word_dropout = word_dropout
        self.embedding_dropout = model.embedding_dropout
        self.output_size = model.word_dim
        self._frozen_rows: torch.Tensor | None = None

    def forward(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        ids = features["word_ids"]                                            # (B, T)
        if self.training and self.word_dropout > 0:
            drop = torch.rand(ids.shape, device=ids.device) < self.word_dropout
            ids = ids.masked_fill(drop & mask, UNK_ID)
        vectors = self.embedding(ids)                                         # (B, T, Dw)
        if self.training and self.embedding_dropout > 0:
            # One draw per word type (a row of the matrix), so every occurrence of a dropped word is zero.
            keep = torch.rand(self.embedding.num_embeddings, device=ids.device) >= self.embedding_dropout
            scale = keep.to(vectors.dtype) / (1 - self.embedding_dropout)    # (V,)
            vectors = vectors * scale[ids][..., None]                         # (B, T, Dw)
        return vectors

    def set_rows(self, vectors: Mapping[int, torch.Tensor], freeze: bool) -> int:
        """Copy pretrained vectors into the rows of their ids; with `freeze` exactly those rows stay fixed
        (unknown and randomly started rows still learn). Returns how many rows were set."""
        with torch.no_grad():
            for index, vector in vectors.items():
                self.embedding.weight[index] = vector
        if freeze and vectors:
            rows = torch.zeros(self.embedding.num_embeddings, 1, dtype=torch.bool)
            rows[list(vectors)] = True
            self._frozen_rows = rows
            self.embedding.weight.register_hook(self._zero_frozen_rows)
        return len(vectors)

    def _zero_frozen_rows(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.masked_fill(self._frozen_rows.to(grad.device), 0.0)


@EMBEDDERS.register("char_cnn")
class CharCNN(nn.Module):
    """A vector per word: a convolution over its characters, max-pooled over real characters."""

    default_for = ("tagging", "classification")

    feature = "char_ids"

    def __init__(self, model, sizes: Mapping[str, int], word_dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(sizes["chars"], model.char_dim, padding_idx=PAD_ID)
        self.conv = nn.Conv1d(model.char_dim, model.char_hidden, model.char_kernel, padding=model.char_kernel // 2)
        self.output_size = model.char_hidden

    def encode_words(self, chars: torch.Tensor) -> torch.Tensor:
        # chars: (N, C) for N real words
        words = chars.size(0)
        if not self.training:
            chars = _rounded_up(chars)                             # (N', C'): see _rounded_up
        x = self.embed(chars).transpose(1, 2)                      # (N, D, C)
        h = self.conv(x)[:, :, : chars.size(1)]                    # (N, F, C); even kernels pad one extra
        h = h.masked_fill((chars == PAD_ID)[:, None, :], float("-inf"))
        return h.max(dim=2).values[:words]                         # (N, F)

    def forward(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        return _per_real_word(self.encode_words, features["char_ids"], mask)


@EMBEDDERS.register("char_lstm")
class CharLSTM(nn.Module):
    """A vector per word: the final states of a BiLSTM reading its characters both ways."""

    default_for = ()

    feature = "char_ids"

    def __init__(self, model, sizes: Mapping[str, int], word_dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(sizes["chars"], model.char_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(model.char_dim, model.char_hidden, batch_first=True, bidirectional=True)
        self.output_size = 2 * model.char_hidden

    def encode_words(self, chars: torch.Tensor) -> torch.Tensor:
        lengths = (chars != PAD_ID).sum(1).clamp(min=1).cpu()     # (N,)
        packed = pack_padded_sequence(self.embed(chars), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)                              # h: (2, N, H)
        return torch.cat([h[0], h[1]], dim=-1)                     # (N, 2H)

    def forward(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        return _per_real_word(self.encode_words, features["char_ids"], mask)


LM_EMBEDDER = "lm"
LM_FEATURE = "lm_char_ids"
LM_WIDTH_STEP = 16   # characters a chunk's width is rounded up to


@EMBEDDERS.register(LM_EMBEDDER)
class ContextualStrings(nn.Module):
    """Contextual string embeddings: a forward and a backward character language model (a `seqtag train
    contextual-lm` pair, copied in with `load_language_models`) read the whole sentence once per batch; a word's
    vector is the forward model's state after its last character and the backward model's state after reading,
    right to left, its first one.

    The feature "lm_char_ids" holds, per word, its separator from the word before ("\\n" before the first word,
    the start of a line as the language models saw it, else one space) and then its characters, in the language
    models' own character ids: the sentence is the words' pieces end to end, so a window of the words is a window
    of the text. Unless `model.lm_tune`, the language models are fixed: no gradient, always in evaluation mode.
    """

    default_for = ()

    feature = LM_FEATURE

    def __init__(self, model, sizes: Mapping[str, int], word_dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(sizes["lm_chars"], model.lm_dim, padding_idx=PAD_ID)

        def language_model() -> nn.Module:
            return CELLS[model.lm_cell](model.lm_dim, model.lm_hidden_size, num_layers=model.lm_layers,
                                        batch_first=True)

        self.forward_lm, self.backward_lm = language_model(), language_model()
        self.tune = model.lm_tune
        self.output_size = 2 * model.lm_hidden_size
        self.requires_grad_(self.tune)
        self.kept: KeptStates | None = None  # sentences' word vectors, while they are kept (`keep_states`)

    def train(self, mode: bool = True) -> "ContextualStrings":
        return super().train(mode and self.tune)  # fixed language models keep their dropout off

    def load_language_models(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy in a contextual-lm network's weights (its shared character embedding and its two encoders)."""
        prefixes = {"embedders.word.embedding.": "embedding.", "encoder.rnn.": "forward_lm.",
                    "backward_encoder.rnn.": "backward_lm."}
        mine = {}
        for name, tensor in state.items():
            for theirs, ours in prefixes.items():
                if name.startswith(theirs):
                    mine[ours + name[len(theirs):]] = tensor
        self.load_state_dict(mine)  # strict: every weight of the pair must be there

    def keep_states(self, megabytes: float) -> None:
        """Remember each sentence's word vectors, up to `megabytes` of them (0: off), and reuse them when the
        sentence comes again. A training run reads the same sentences every epoch, and with the language models
        fixed their vectors never change, while the pair costs more than the rest of a tagger's step. Tuned
        language models keep nothing; `keep_states(0)` drops the store."""
        self.kept = None if self.tune or megabytes <= 0 else KeptStates(megabytes)

    def forward(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        if self.kept is not None:  # never set for tuned language models
            return self._kept_states(features[LM_FEATURE], mask)
        with torch.set_grad_enabled(self.tune and torch.is_grad_enabled()):
            return self._states(features[LM_FEATURE], mask)

    def _kept_states(self, pieces: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`_states`, computed only for the rows whose sentence is not kept yet (and kept while there is room).
        A row's vectors depend on its own text alone (every row runs on its own, padding after its characters),
        so they are the same whichever batch the sentence comes in."""
        keys = [row_key({LM_FEATURE: pieces}, mask, row) for row in range(pieces.size(0))]
        missing = [row for row, key in enumerate(keys) if key not in self.kept.vectors]
        out = self.embedding.weight.new_zeros(*mask.shape, self.output_size)    # (B, T, 2H)
        if missing:
            with torch.no_grad():
                computed = self._states(pieces[missing], mask[missing])
            out[missing] = computed
            for vectors, row in zip(computed, missing):
                self.kept.add(keys[row], vectors[:int(mask[row].sum())])
        self.kept.fill(out, [(row, keys[row]) for row in range(len(keys)) if row not in missing])
        return out

    def _run(self, language_model: nn.Module, text: torch.Tensor, lengths: torch.Tensor, positions: torch.Tensor
             ) -> torch.Tensor:
        """The language model's states at `positions` (B, T) of each row of `text` (B, L): (B, T, H).

        The rows run sorted by length in chunks of LM_CHUNK_ROWS, each padded only to its own longest row
        (rounded up to LM_WIDTH_STEP characters). A batch's lines differ a lot in length (a tweet with a URL),
        and padding steps cost as much as real ones; packed sequences avoid them too, but their packing and
        unpacking took a quarter of the time and they leave oneDNN's fused LSTM: chunks ran WNUT-17's test set
        1.4x faster than packing (bench/RESULTS.md). Rounded widths keep the shapes oneDNN compiles for few.
        Padding comes after a row's characters, so no real state reads it."""
        embedded = self.embedding(text)                                       # (B, L, D)
        order = torch.argsort(lengths, descending=True)
        hidden = self.output_size // 2
        out = embedded.new_zeros(*positions.shape, hidden)                    # (B, T, H)
        for first in range(0, len(order), LM_CHUNK_ROWS):
            rows = order[first:first + LM_CHUNK_ROWS]
            width = min(text.size(1), -(-int(lengths[rows[0]]) // LM_WIDTH_STEP) * LM_WIDTH_STEP)
            states, _ = language_model(embedded[rows, :width], None)         # (R, width, H)
            out[rows] = states.gather(1, positions[rows, :, None].clamp(max=width - 1).expand(-1, -1, hidden))
        return out

    def _states(self, pieces: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # pieces: (B, T, C) character ids per word, PAD after each piece and on padding words
        batch, words, width = pieces.shape
        real = (pieces != PAD_ID) & mask[..., None]                           # (B, T, C)
        piece_lengths = real.sum(-1)                                          # (B, T)
        offsets = piece_lengths.cumsum(1) - piece_lengths                     # (B, T) where each piece starts
        # One line of text per sentence, the pieces end to end, closed by the separator the first word opened
        # with, a line break: the backward model starts at a line's end, as in training.
        lengths = piece_lengths.sum(1) + 1                                    # (B,)
        columns = -(-int(lengths.max()) // LM_WIDTH_STEP) * LM_WIDTH_STEP
        text = pieces.new_full((batch, columns), PAD_ID)                      # (B, L)
        flat = real.view(batch, -1)
        rows = torch.arange(batch, device=pieces.device)[:, None].expand_as(flat)[flat]
        text[rows, (flat.cumsum(1) - 1)[flat]] = pieces.view(batch, -1)[flat]
        text[torch.arange(batch, device=pieces.device), lengths - 1] = pieces[:, 0, 0]
        # Each row reversed within its own length (padding stays at the end, where no real state reads it).
        positions = torch.arange(text.size(1), device=pieces.device)[None, :]
        reverse = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
        first = (offsets + 1).clamp(max=text.size(1) - 1)                     # the word's first character
        last = (offsets + piece_lengths - 1).clamp(min=0)                     # its last one
        first_reversed = (lengths[:, None] - 1 - first).clamp(min=0)          # where the backward model reads it
        vectors = torch.cat([self._run(self.forward_lm, text, lengths, last),
                             self._run(self.backward_lm, text.gather(1, reverse), lengths, first_reversed)], dim=-1)
        return vectors * mask[..., None].to(vectors.dtype)                    # (B, T, 2H), zeros on padding


class KeptStates:
    """Per-sentence results that training computes the same way every epoch (a fixed pair's word vectors, a
    fine-tuning parent's distillation targets), by `row_key`, in main memory up to a budget of bytes."""

    def __init__(self, megabytes: float):
        self.vectors: dict[bytes, torch.Tensor] = {}
        self.room = int(megabytes * 2 ** 20)

    def add(self, key: bytes, vectors: torch.Tensor) -> None:
        size = vectors.numel() * vectors.element_size()
        if key not in self.vectors and size <= self.room:
            self.vectors[key] = vectors.to("cpu", copy=True)  # a copy: not a view that holds the whole batch
            self.room -= size

    def fill(self, out: torch.Tensor, rows: list[tuple[int, bytes]]) -> None:
        """Write the kept tensor of each (row, key) into the start of `out[row]`."""
        for row, key in rows:
            kept = self.vectors[key]
            out[row, :len(kept)] = kept.to(out.device)


def row_key(features: Mapping[str, torch.Tensor], mask: torch.Tensor, row: int) -> bytes:
    """One row of a batch's features as bytes that do not depend on the batch it came in: each feature's real
    words, and of a per-word feature (characters) only up to the row's longest (a batch pads every word to the
    batch's longest)."""
    parts = []
    for name in sorted(features):
        values = features[name][row]
        if values.dim() >= 1 and values.shape[0] == mask.shape[1]:
            values = values[mask[row]]                                        # (N, ...) the real words
            if values.dim() == 2:
                width = int((values != PAD_ID).sum(-1).max()) if len(values) else 0
                values = values[:, :width]
        parts += [name.encode(), repr(tuple(values.shape)).encode(), values.contiguous().cpu().numpy().tobytes()]
    return b"\0".join(parts)


def _rounded_up(chars: torch.Tensor) -> torch.Tensor:
    """`chars` padded to a word count that is a power of two and a word length that is a multiple of 8, so that
    prediction meets few distinct convolution shapes. oneDNN keeps a compiled kernel (with its buffers) per shape
    it has run, up to 1,024 of them: with a shape per batch, a long prediction run grew by hundreds of MB. The
    padding rows and characters are ignored (PAD embeds to zeros, as the convolution's own padding, and is masked
    before the max)."""
    words, length = chars.shape
    rows, columns = 1 << max(0, words - 1).bit_length(), -(-length // 8) * 8
    if (rows, columns) == (words, length):
        return chars
    return torch.nn.functional.pad(chars, (0, columns - length, 0, rows - words), value=PAD_ID)


def _per_real_word(encode, char_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Run a character encoder on the real words only; padding positions stay zero."""
    vectors = encode(char_ids[mask])                               # (N, D)
    full = vectors.new_zeros(*mask.shape, vectors.size(-1))        # (B, T, D)
    full[mask] = vectors
    return full
