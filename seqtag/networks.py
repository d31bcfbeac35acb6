"""The networks, composed from parts: token embedders → a recurrent encoder → an output head.

Plain `nn.Module`s that know nothing of Lightning, files, tokenizers or label strings. A network
is rebuilt from the recipe's `ModelConfig` plus the vocabulary and label sizes (both saved in
config.json) and a safetensors file.

The parts come from their registries, each filled in beside the parts' classes; adding a part is one class
plus one registration line there:

    EMBEDDERS   embedders.py   name → class(model, sizes, word_dropout); forward(features, mask) → (B, T, D)
    CELLS       cells.py       name → a fused PyTorch recurrent layer (nn.LSTM, nn.GRU, nn.RNN) or a module with
                               nn.LSTM's signature and weight names (the peephole and coupled LSTMs)
    HEADS       heads.py       name → class(input_size, model, sizes, tied); scores(states, mask, lengths),
                               loss(scores, gold, mask) and decode(scores, mask) → (label ids, probabilities);
                               the CRF registers itself in crf.py
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .cells import CELLS, LockedDropout, drop_recurrent_weights, run_layer_by_layer
from .embedders import EMBEDDERS, PAD_ID, UNK_ID, WORD_EMBEDDER, WordEmbedder  # noqa: F401 - the ids, re-exported
from . import crf  # noqa: F401 - registers the CRF head, so HEADS is complete
from .heads import HEADS

if TYPE_CHECKING:
    from .config import ModelConfig

# A recurrent state: an LSTM's (h, c) pair or a GRU/RNN's h, each (layers × directions, B, H).
State = torch.Tensor | tuple[torch.Tensor, ...]


def detach_state(state: State | None) -> State | None:
    """The same state cut from the graph (truncated backpropagation), whatever the cell's state shape."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return tuple(detach_state(part) for part in state)


# ---------------------------------------------------------------------------
# The recurrent encoder


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
        tied = self.embedders[WORD_EMBEDDER].embedding if causal and model.tie_embeddings else None
        self.head = HEADS[head](self.encoder.output_size, model, sizes, tied)
        self.word_embedder().embedding.weight.requires_grad_(not (model.freeze_embeddings and not
                                                                  model.pretrained_vectors))

    def word_embedder(self) -> WordEmbedder:
        return self.embedders[WORD_EMBEDDER]

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
