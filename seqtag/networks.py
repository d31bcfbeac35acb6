"""The networks, composed from parts: token embedders → a recurrent encoder → an output head.

Plain `nn.Module`s that know nothing of Lightning, files, tokenizers or label strings. A network
is rebuilt from the recipe's `ModelConfig` plus the vocabulary and label sizes (both saved in
config.json) and a safetensors file.

Adding a part is one class plus one line in its registry:

    EMBEDDERS   name → class(model, sizes); forward(features, mask) → (B, T, D)
    CELLS       name → a fused PyTorch recurrent layer (nn.LSTM, nn.GRU, nn.RNN) or a module with nn.LSTM's
                signature and weight names (seqtag.cells: the peephole and coupled LSTMs)
    HEADS       name → class(input_size, model, sizes, tied); scores(states, mask, lengths),
                loss(scores, gold, mask) and decode(scores, mask) → (label ids, probabilities)
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .cells import CoupledLSTM, LockedDropout, PeepholeLSTM, drop_recurrent_weights, run_layer_by_layer
from .config import ModelConfig
from .crf import CRFHead

PAD_ID, UNK_ID = 0, 1  # the same ids in every vocabulary (seqtag.data.vocab builds them that way)

# A recurrent state: an LSTM's (h, c) pair or a GRU/RNN's h, each (layers × directions, B, H).
State = torch.Tensor | tuple[torch.Tensor, ...]


def detach_state(state: State | None) -> State | None:
    """The same state cut from the graph (truncated backpropagation), whatever the cell's state shape."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return tuple(detach_state(part) for part in state)


# ---------------------------------------------------------------------------
# Token embedders


class WordEmbedder(nn.Module):
    """A vector per word id. During training a few words become <unk> (word dropout), so the unknown
    vector learns something useful, and with `model.embedding_dropout` whole word types lose their vector for
    the batch. Pretrained rows can be frozen while the others learn."""

    feature = "word_ids"

    def __init__(self, model: ModelConfig, sizes: Mapping[str, int], word_dropout: float):
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


class CharCNN(nn.Module):
    """A vector per word: a convolution over its characters, max-pooled over real characters."""

    feature = "char_ids"

    def __init__(self, model: ModelConfig, sizes: Mapping[str, int], word_dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(sizes["chars"], model.char_dim, padding_idx=PAD_ID)
        self.conv = nn.Conv1d(model.char_dim, model.char_hidden, model.char_kernel, padding=model.char_kernel // 2)
        self.output_size = model.char_hidden

    def encode_words(self, chars: torch.Tensor) -> torch.Tensor:
        # chars: (N, C) for N real words
        x = self.embed(chars).transpose(1, 2)                      # (N, D, C)
        h = self.conv(x)[:, :, : chars.size(1)]                    # (N, F, C); even kernels pad one extra
        h = h.masked_fill((chars == PAD_ID)[:, None, :], float("-inf"))
        return h.max(dim=2).values                                 # (N, F)

    def forward(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        return _per_real_word(self.encode_words, features["char_ids"], mask)


class CharLSTM(nn.Module):
    """A vector per word: the final states of a BiLSTM reading its characters both ways."""

    feature = "char_ids"

    def __init__(self, model: ModelConfig, sizes: Mapping[str, int], word_dropout: float = 0.0):
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


def _per_real_word(encode, char_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Run a character encoder on the real words only; padding positions stay zero."""
    vectors = encode(char_ids[mask])                               # (N, D)
    full = vectors.new_zeros(*mask.shape, vectors.size(-1))        # (B, T, D)
    full[mask] = vectors
    return full


EMBEDDERS: dict[str, type[nn.Module]] = {"word": WordEmbedder, "char_cnn": CharCNN, "char_lstm": CharLSTM}


# ---------------------------------------------------------------------------
# The recurrent encoder


CELLS: dict[str, type[nn.Module]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN,
                                     "peephole": PeepholeLSTM, "coupled": CoupledLSTM}


class RecurrentEncoder(nn.Module):
    """A stacked recurrent layer from `CELLS`, with dropout between layers.

    Bidirectional encoders read packed sequences, so padding never enters a real token's state in
    either direction. A left-to-right encoder (language models) reads full windows and carries its
    state; padding can only follow the real tokens there, so it never reaches them.

    In training, `weight_drop` runs the cell on DropConnect-ed hidden-to-hidden weights, and `locked_dropout`
    runs it a layer at a time with one dropout mask per sequence between layers. Both call the cell through
    `torch.func.functional_call`, so the weights stay in `self.rnn` under their usual names either way.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
                 bidirectional: bool, weight_drop: float = 0.0, locked_dropout: bool = False):
        super().__init__()
        self.rnn = CELLS[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True,
                               bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.bidirectional = bidirectional
        self.output_size = hidden_size * (2 if bidirectional else 1)
        self.weight_drop, self.dropout, self.num_layers = weight_drop, dropout, num_layers
        # Weightless (meta) one-layer twins of the cell, one per layer, in a list so they are not submodules.
        self._one_layer = [CELLS[cell](input_size if layer == 0 else self.output_size, hidden_size, num_layers=1,
                                       batch_first=True, bidirectional=bidirectional, device="meta")
                           for layer in range(num_layers)] if locked_dropout and num_layers > 1 else None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        # x: (B, T, D); lengths: (B,) on the CPU
        if isinstance(self.rnn, nn.RNNBase):
            self.rnn.flatten_parameters()  # one weight block for cuDNN (DDP replicas lose it); a no-op on the CPU
        if not self.bidirectional:
            return self._run(x, state)                             # (B, T, H), state
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self._run(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out, state                                          # (B, T, 2H), zeros on padding

    def _run(self, x, state: State | None):
        if not self.training or (self.weight_drop == 0 and self._one_layer is None):
            return self.rnn(x, state)
        weights = drop_recurrent_weights(self.rnn, self.weight_drop)
        if self._one_layer is None:
            return functional_call(self.rnn, weights, (x, state))
        return run_layer_by_layer(self._one_layer, weights, x, state, self.num_layers,
                                  2 if self.bidirectional else 1, self.dropout, self.training)


# ---------------------------------------------------------------------------
# Output heads


class SoftmaxHead(nn.Module):
    """Label scores per token; softmax cross-entropy over the real tokens."""

    def __init__(self, input_size: int, model: ModelConfig, sizes: Mapping[str, int], tied=None):
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
        probabilities = scores.float().softmax(-1)
        return probabilities.argmax(-1), probabilities


def _known_label_loss(scores: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor | None, num_labels: int,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy where gold ids outside [0, num_labels) — padding, or labels never seen in training —
    carry no gradient. A batch with no known label gives 0, not NaN."""
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
    return nn.functional.cross_entropy(flat_scores, flat_gold, weight=weight, ignore_index=-100)


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


class PooledHead(nn.Module):
    """One label per text: token states pooled over the real tokens, then a linear layer and softmax.
    Optional class weights (balanced training) weigh the loss."""

    def __init__(self, input_size: int, model: ModelConfig, sizes: Mapping[str, int], tied=None):
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
        probabilities = scores.float().softmax(-1)
        return probabilities.argmax(-1), probabilities


class NextTokenHead(nn.Module):
    """Next-token scores over the vocabulary. Tied: the word embedding matrix is the output layer too
    (one tensor, stored once), with the states projected to its size when the sizes differ."""

    def __init__(self, input_size: int, model: ModelConfig, sizes: Mapping[str, int],
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
        """Summed negative log-likelihood in nats; targets < 0 (padding) are skipped."""
        return nn.functional.cross_entropy(scores.flatten(0, 1).float(), gold.flatten(), ignore_index=-100,
                                           reduction="sum")

    def decode(self, scores: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = scores.float().softmax(-1)
        return probabilities.argmax(-1), probabilities


HEADS: dict[str, type[nn.Module]] = {"softmax": SoftmaxHead, "pooled": PooledHead, "next_token": NextTokenHead,
                                     "crf": CRFHead}


# ---------------------------------------------------------------------------
# The network


class Network(nn.Module):
    """Embedders (concatenated) → dropout (locked: one mask per sequence) → recurrent encoder → head.

    `sizes` gives "words", "chars" and "labels". A causal network (a language model) reads left to
    right and carries its state between calls; the state at position t has seen tokens ≤ t only.
    With `model.lm_directions == "both"` a causal network has a second encoder that reads the
    reversed stream (an ELMo-style pair), sharing the embedders and the head.
    """

    def __init__(self, model: ModelConfig, sizes: Mapping[str, int], embedders: list[str], head: str,
                 causal: bool = False):
        super().__init__()
        self.sizes = dict(sizes)
        self.causal = causal
        # Word dropout is a tagger/classifier regulariser; a language model's inputs are its targets too.
        word_dropout = 0.0 if causal else model.word_dropout
        self.embedders = nn.ModuleDict({name: EMBEDDERS[name](model, sizes, word_dropout) for name in embedders})
        self.features = sorted({embedder.feature for embedder in self.embedders.values()})
        input_size = sum(embedder.output_size for embedder in self.embedders.values())
        self.dropout = LockedDropout(model.dropout) if model.locked_dropout else nn.Dropout(model.dropout)

        def encoder() -> RecurrentEncoder:
            return RecurrentEncoder(model.cell, input_size, model.hidden_size, model.num_layers, model.dropout,
                                    bidirectional=not causal, weight_drop=model.weight_drop,
                                    locked_dropout=model.locked_dropout)

        self.encoder = encoder()
        self.backward_encoder = encoder() if causal and model.lm_directions == "both" else None
        tied = self.embedders["word"].embedding if causal and model.tie_embeddings else None
        self.head = HEADS[head](self.encoder.output_size, model, sizes, tied)
        self.word_embedder().embedding.weight.requires_grad_(not (model.freeze_embeddings and not
                                                                  model.pretrained_vectors))

    def word_embedder(self) -> WordEmbedder:
        return self.embedders["word"]

    def forward(self, features: Mapping[str, torch.Tensor], lengths: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, state: State | None = None, backward: bool = False
                ) -> tuple[torch.Tensor, State]:
        """Head scores — (B, T, L) per token or (B, L) per text — and the encoder's final state.

        With `backward` (a bidirectional language model), the features are already in right-to-left
        order and the backward encoder reads them.
        """
        if mask is None:
            mask = torch.ones_like(features["word_ids"], dtype=torch.bool)
        vectors = [embedder(features, mask) for embedder in self.embedders.values()]
        x = self.dropout(torch.cat(vectors, dim=-1) if len(vectors) > 1 else vectors[0])   # (B, T, D)
        encoder = self.backward_encoder if backward else self.encoder
        states, state = encoder(x, lengths, state)                                         # (B, T, H·dirs)
        return self.head.scores(states, mask, lengths), state
