"""The networks: embeddings, character encoders, the masked BiLSTM, and the tagging and classification heads.

Plain `nn.Module`s that know nothing of Lightning, files or label strings; they are
rebuilt from `NetConfig` (saved as JSON in the model directory) and a safetensors file.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import ModelConfig
from .data.vocab import PAD_ID, UNK_ID


@dataclass
class NetConfig:
    """Everything needed to rebuild a network: the model settings plus the vocabulary sizes."""

    num_words: int
    num_chars: int
    num_labels: int
    word_dim: int = 100
    char_encoder: str = "cnn"
    char_dim: int = 30
    char_hidden: int = 50
    char_kernel: int = 3
    hidden_size: int = 200
    num_layers: int = 2
    dropout: float = 0.33
    word_dropout: float = 0.05
    freeze_embeddings: bool = False
    pooling: str = "max"

    @classmethod
    def from_model_config(cls, model: ModelConfig, num_words: int, num_chars: int, num_labels: int) -> "NetConfig":
        shared = {k: v for k, v in asdict(model).items() if k in cls.__dataclass_fields__}
        return cls(num_words=num_words, num_chars=num_chars, num_labels=num_labels, **shared)


class CharCNN(nn.Module):
    """One vector per word: a convolution over its characters, max-pooled over real characters."""

    def __init__(self, num_chars: int, char_dim: int, filters: int, kernel: int):
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=PAD_ID)
        self.conv = nn.Conv1d(char_dim, filters, kernel, padding=kernel // 2)
        self.output_size = filters

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        # chars: (N, C) for N real words
        x = self.embed(chars).transpose(1, 2)                      # (N, D, C)
        h = self.conv(x)[:, :, : chars.size(1)]                    # (N, F, C); even kernels pad one extra
        h = h.masked_fill((chars == PAD_ID)[:, None, :], float("-inf"))
        return h.max(dim=2).values                                 # (N, F)


class CharLSTM(nn.Module):
    """One vector per word: the final states of a BiLSTM reading its characters both ways."""

    def __init__(self, num_chars: int, char_dim: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(char_dim, hidden, batch_first=True, bidirectional=True)
        self.output_size = 2 * hidden

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        lengths = (chars != PAD_ID).sum(1).clamp(min=1).cpu()     # (N,)
        packed = pack_padded_sequence(self.embed(chars), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)                              # h: (2, N, H)
        return torch.cat([h[0], h[1]], dim=-1)                     # (N, 2H)


class MaskedLSTM(nn.Module):
    """A (bi)LSTM over packed sequences, so padding never enters the states in either direction."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D); lengths: (B,) on the CPU
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out                                                 # (B, T, 2H), zeros on padding


class SentenceEncoder(nn.Module):
    """Word embedding + character encoder → dropout → masked BiLSTM: one vector per token."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.words = nn.Embedding(config.num_words, config.word_dim, padding_idx=PAD_ID)
        self.words.weight.requires_grad_(not config.freeze_embeddings)
        if config.char_encoder == "cnn":
            self.chars = CharCNN(config.num_chars, config.char_dim, config.char_hidden, config.char_kernel)
        elif config.char_encoder == "lstm":
            self.chars = CharLSTM(config.num_chars, config.char_dim, config.char_hidden)
        else:
            self.chars = None
        input_size = config.word_dim + (self.chars.output_size if self.chars else 0)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = MaskedLSTM(input_size, config.hidden_size, config.num_layers, config.dropout, bidirectional=True)
        self.output_size = self.lstm.output_size

    def forward(self, word_ids: torch.Tensor, char_ids: torch.Tensor, lengths: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        if self.training and self.config.word_dropout > 0:
            # Replacing a few known words by <unk> teaches the unknown vector something useful.
            drop = torch.rand(word_ids.shape, device=word_ids.device) < self.config.word_dropout
            word_ids = word_ids.masked_fill(drop & mask, UNK_ID)
        x = self.words(word_ids)                                   # (B, T, Dw)
        if self.chars is not None:
            # Only real tokens go through the character encoder; padding stays zero.
            char_vectors = self.chars(char_ids[mask])              # (N, Dc)
            full = x.new_zeros(*word_ids.shape, char_vectors.size(-1))
            full[mask] = char_vectors.to(full.dtype)
            x = torch.cat([x, full], dim=-1)                       # (B, T, Dw + Dc)
        return self.lstm(self.dropout(x), lengths)                 # (B, T, 2H)

    def load_pretrained(self, vectors: dict[int, torch.Tensor]) -> int:
        """Copy pretrained vectors into the rows of their word ids; returns how many were set."""
        return set_rows(self.words, vectors)


def set_rows(embedding: nn.Embedding, vectors: dict[int, torch.Tensor]) -> int:
    """Copy vectors into the embedding rows of their ids; returns how many were set."""
    with torch.no_grad():
        for index, vector in vectors.items():
            embedding.weight[index] = vector
    return len(vectors)


class TaggerNet(nn.Module):
    """Sentence encoder + dropout + linear layer: label scores per token (softmax in the loss)."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.encoder = SentenceEncoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, config.num_labels)

    def forward(self, word_ids: torch.Tensor, char_ids: torch.Tensor, lengths: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(word_ids, char_ids, lengths, mask)  # (B, T, 2H)
        return self.head(self.dropout(states))                     # (B, T, L)


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


class ClassifierNet(TaggerNet):
    """Sentence encoder + pooling over real tokens + dropout + linear layer: label scores per text.

    The tagger's layers, with a pooling step between the encoder and the head."""

    def __init__(self, config: NetConfig):
        super().__init__(config)
        self.pool = Pooling(config.pooling, self.encoder.output_size)

    def forward(self, word_ids: torch.Tensor, char_ids: torch.Tensor | None, lengths: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(word_ids, char_ids, lengths, mask)  # (B, T, 2H)
        pooled = self.pool(states, mask, lengths)                  # (B, 2H)
        return self.head(self.dropout(pooled))                     # (B, L)


@dataclass
class LanguageModelConfig:
    """Everything needed to rebuild a language model network."""

    vocab_size: int
    word_dim: int = 256
    hidden_size: int = 512
    num_layers: int = 2
    dropout: float = 0.2
    tie_embeddings: bool = False
    directions: str = "forward"
    freeze_embeddings: bool = False

    @classmethod
    def from_model_config(cls, model: ModelConfig, vocab_size: int) -> "LanguageModelConfig":
        return cls(vocab_size=vocab_size, word_dim=model.word_dim, hidden_size=model.hidden_size,
                   num_layers=model.num_layers, dropout=model.dropout, tie_embeddings=model.tie_embeddings,
                   directions=model.lm_directions, freeze_embeddings=model.freeze_embeddings)


LMState = tuple[torch.Tensor, torch.Tensor]  # the LSTM's (h, c), each (num_layers, B, H)


class LanguageModelNet(nn.Module):
    """Embedding → dropout → LSTM stack (dropout between layers) → dropout → softmax over the vocabulary.

    The LSTM reads left to right only: the state at position t has seen tokens ≤ t and
    predicts token t+1, so no token is visible to its own prediction. With directions="both"
    a second stack reads the reversed stream (an ELMo-style pair); the two share the
    embedding and the output layer. Tied embeddings reuse the embedding matrix as the output
    weights, projecting the LSTM state to the embedding size when the sizes differ.
    """

    def __init__(self, config: LanguageModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.word_dim, padding_idx=PAD_ID)
        self.embedding.weight.requires_grad_(not config.freeze_embeddings)
        self.dropout = nn.Dropout(config.dropout)

        def stack() -> nn.LSTM:
            return nn.LSTM(config.word_dim, config.hidden_size, num_layers=config.num_layers, batch_first=True,
                           dropout=config.dropout if config.num_layers > 1 else 0.0)

        self.forward_lstm = stack()
        self.backward_lstm = stack() if config.directions == "both" else None
        out_size = config.hidden_size
        self.projection = None
        if config.tie_embeddings:
            if config.hidden_size != config.word_dim:
                self.projection = nn.Linear(config.hidden_size, config.word_dim)
            out_size = config.word_dim
            self.output = None
            self.output_bias = nn.Parameter(torch.zeros(config.vocab_size))
        else:
            self.output = nn.Linear(out_size, config.vocab_size)

    def forward(self, ids: torch.Tensor, state: LMState | None = None, backward: bool = False
                ) -> tuple[torch.Tensor, LMState]:
        """Next-token scores (B, T, V) for ids (B, T), and the state after the last position.

        With `backward`, `ids` are already in right-to-left order and the backward stack reads them.
        """
        lstm = self.backward_lstm if backward else self.forward_lstm
        lstm.flatten_parameters()  # one contiguous weight block for cuDNN (DDP replicas lose it); no-op on CPU
        states, state = lstm(self.dropout(self.embedding(ids)), state)    # (B, T, H)
        states = self.dropout(states)
        if self.projection is not None:
            states = self.projection(states)
        if self.output is None:
            # Tied: the embedding matrix is the output layer (one tensor, stored once).
            return nn.functional.linear(states, self.embedding.weight, self.output_bias), state
        return self.output(states), state
