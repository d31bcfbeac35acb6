"""Recurrent cells beyond PyTorch's fused kernels, and the LSTM-literature regularisers of the encoder.

`PeepholeLSTM` and `CoupledLSTM` are built and called like `nn.LSTM` (batch first, packed or padded input,
an `(h, c)` state of shape (layers × directions, B, H)) and name their weights like it (`weight_ih_l0`,
`weight_hh_l0_reverse`, ...), so the encoder treats them as it treats the fused layers: weight drop replaces
their `weight_hh_*` and locked dropout runs them a layer at a time, both through `torch.func.functional_call`.

Speed: the input projections of all time steps are one matmul per layer and direction; only the recurrence
(h_{t-1} · W_h and the gate arithmetic) runs step by step, in a TorchScript-compiled loop.
"""
from __future__ import annotations

import functools
import math
import re
import warnings

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .registry import Registry

# name → a recurrent layer built as nn.LSTM is (input_size, hidden_size, num_layers=, batch_first=,
# bidirectional=, dropout=) and called as it is ((x, state) → (out, state)). PyTorch's fused kernels first.
CELLS = Registry("model.cell", "recurrent cell")
LSTM = "lstm"  # the default cell
CELLS.register(LSTM, nn.LSTM)
CELLS.register("gru", nn.GRU)
CELLS.register("rnn", nn.RNN)


def _peephole_steps(inputs: torch.Tensor, weight_hh: torch.Tensor, peephole: torch.Tensor, h: torch.Tensor,
                    c: torch.Tensor, keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """inputs: (T, B, 4H), W·x_t + b of the gates f, i, C̃, o; peephole: (3, H), the diagonal weights by
    which f and i read C_{t-1} and o reads C_t; keep: (T, B, 1), false past a sequence's end."""
    weight_hh = weight_hh.t()                                            # (H, 4H)
    outputs = []
    for t in range(inputs.size(0)):
        gates = inputs[t] + torch.mm(h, weight_hh)                       # (B, 4H)
        f_in, i_in, candidate, o_in = gates.chunk(4, 1)                  # (B, H) each
        f = torch.sigmoid(f_in + peephole[0] * c)
        i = torch.sigmoid(i_in + peephole[1] * c)
        c_next = f * c + i * torch.tanh(candidate)
        o = torch.sigmoid(o_in + peephole[2] * c_next)
        h_next = o * torch.tanh(c_next)
        if keep is not None:  # past its end a sequence keeps its state
            h_next = torch.where(keep[t], h_next, h)
            c_next = torch.where(keep[t], c_next, c)
        h, c = h_next, c_next
        outputs.append(h)
    return torch.stack(outputs), h, c                                    # (T, B, H), (B, H), (B, H)


def _coupled_steps(inputs: torch.Tensor, weight_hh: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                   keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """inputs: (T, B, 3H), W·x_t + b of the gates f, C̃, o; what f forgets, 1 − f writes."""
    weight_hh = weight_hh.t()                                            # (H, 3H)
    outputs = []
    for t in range(inputs.size(0)):
        gates = inputs[t] + torch.mm(h, weight_hh)                       # (B, 3H)
        f_in, candidate, o_in = gates.chunk(3, 1)                        # (B, H) each
        f = torch.sigmoid(f_in)
        c_next = f * c + (1.0 - f) * torch.tanh(candidate)
        h_next = torch.sigmoid(o_in) * torch.tanh(c_next)
        if keep is not None:
            h_next = torch.where(keep[t], h_next, h)
            c_next = torch.where(keep[t], c_next, c)
        h, c = h_next, c_next
        outputs.append(h)
    return torch.stack(outputs), h, c


@functools.cache
def _compiled(steps):
    """The step loop compiled by TorchScript, on first use (scripting costs ~50 ms, which `seqtag.load` of a
    model with a fused cell need not pay)."""
    with warnings.catch_warnings():
        # torch.jit.script is deprecated for torch.compile, whose first call compiles for minutes on a CPU.
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(steps)


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence of x (B, T, D) reversed within its own length; padding stays where it is. Applied twice
    it gives x back. Without lengths every sequence fills T."""
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.size(1), device=x.device)                        # (T,)
    last = (lengths.to(x.device) - 1)[:, None]                               # (B, 1)
    index = torch.where(steps < last + 1, last - steps, steps)               # (B, T)
    return x.gather(1, index[..., None].expand_as(x))


class GatedRecurrentLayers(nn.Module):
    """Stacked, optionally bidirectional layers of an LSTM variant, with nn.LSTM's signature. A subclass
    gives the gate blocks, any extra per-direction weights, and its scripted step loop."""

    gate_blocks = 4

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True,
                 bidirectional: bool = False, dropout: float = 0.0, device: torch.device | str | None = None):
        super().__init__()
        if not batch_first:
            raise ValueError(f"{type(self).__name__} reads batch-first input only")
        self.hidden_size, self.num_layers, self.dropout = hidden_size, num_layers, dropout
        self.suffixes = ("", "_reverse") if bidirectional else ("",)
        blocks = self.gate_blocks * hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * len(self.suffixes)
            for suffix in self.suffixes:
                name = f"l{layer}{suffix}"
                self.register_parameter(f"weight_ih_{name}", nn.Parameter(torch.empty(blocks, layer_input, device=device)))
                self.register_parameter(f"weight_hh_{name}", nn.Parameter(torch.empty(blocks, hidden_size, device=device)))
                # One bias per gate, as the equations have it (nn.LSTM's second bias adds nothing they need).
                self.register_parameter(f"bias_{name}", nn.Parameter(torch.empty(blocks, device=device)))
                for kind, shape in self.extra_weights().items():
                    self.register_parameter(f"{kind}_{name}", nn.Parameter(torch.empty(shape, device=device)))
        self.reset_parameters()

    def extra_weights(self) -> dict[str, tuple[int, ...]]:
        return {}

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size)  # nn.LSTM's initialisation
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def steps(self, inputs: torch.Tensor, name: str, h: torch.Tensor, c: torch.Tensor, keep: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor | PackedSequence, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        packed = isinstance(x, PackedSequence)
        lengths = None
        if packed:  # back to (B, T, D) in the caller's order; nn.LSTM's state is in that order too
            x, lengths = pad_packed_sequence(x, batch_first=True)
        batch, steps = x.shape[:2]
        keep = None
        if lengths is not None:
            mask = torch.arange(steps)[None, :] < lengths[:, None]                      # (B, T)
            keep = mask.t()[..., None].to(x.device)                                        # (T, B, 1)
        if state is None:
            zeros = x.new_zeros(self.num_layers * len(self.suffixes), batch, self.hidden_size)
            state = (zeros, zeros)
        h0, c0 = state
        finals_h, finals_c = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = nn.functional.dropout(x, self.dropout, training=True)
            outputs = []
            for direction, suffix in enumerate(self.suffixes):
                name = f"l{layer}{suffix}"
                reverse = suffix == "_reverse"
                sequence = reverse_within_lengths(x, lengths) if reverse else x                # (B, T, D)
                # Every step's input projection in one matmul; only h_{t-1}·W_h stays in the loop.
                inputs = nn.functional.linear(sequence, getattr(self, f"weight_ih_{name}"),
                                              getattr(self, f"bias_{name}")).transpose(0, 1)  # (T, B, G·H)
                index = layer * len(self.suffixes) + direction
                out, h, c = self.steps(inputs.contiguous(), name, h0[index], c0[index], keep)
                out = out.transpose(0, 1)                                                  # (B, T, H)
                outputs.append(reverse_within_lengths(out, lengths) if reverse else out)
                finals_h.append(h)
                finals_c.append(c)
            x = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]             # (B, T, H·dirs)
        if packed:
            x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        return x, (torch.stack(finals_h), torch.stack(finals_c))                           # state: (L·dirs, B, H)


@CELLS.register("peephole")
class PeepholeLSTM(GatedRecurrentLayers):
    """LSTM whose forget and input gates also read C_{t-1} and whose output gate reads C_t, each through a
    diagonal (elementwise) peephole weight: `weight_ch_*` (3, H), the rows for f, i and o."""

    gate_blocks = 4

    def extra_weights(self) -> dict[str, tuple[int, ...]]:
        return {"weight_ch": (3, self.hidden_size)}

    def steps(self, inputs, name, h, c, keep):
        return _compiled(_peephole_steps)(inputs, getattr(self, f"weight_hh_{name}"), getattr(self, f"weight_ch_{name}"),
                               h, c, keep)


@CELLS.register("coupled")
class CoupledLSTM(GatedRecurrentLayers):
    """LSTM with coupled forget and input gates: C_t = f⊙C_{t-1} + (1−f)⊙C̃, so three gate blocks (f, C̃, o)."""

    gate_blocks = 3

    def steps(self, inputs, name, h, c, keep):
        return _compiled(_coupled_steps)(inputs, getattr(self, f"weight_hh_{name}"), h, c, keep)


# ---------------------------------------------------------------------------
# Regularisers from the LSTM literature (AWD-LSTM: Merity et al. 2018; variational dropout: Gal & Ghahramani 2016)


def locked_dropout(x: torch.Tensor | PackedSequence, p: float, training: bool) -> torch.Tensor | PackedSequence:
    """Dropout with one mask per sequence, the same at every time step (variational dropout). x is (B, T, D)
    or a packed sequence, whose rows are told apart by position within each time step's batch."""
    if not training or p == 0:
        return x
    packed = isinstance(x, PackedSequence)
    data = x.data if packed else x
    batch = int(x.batch_sizes[0]) if packed else x.size(0)
    mask = data.new_empty(batch, data.size(-1)).bernoulli_(1 - p) / (1 - p)           # (B, D)
    if not packed:
        return x * mask[:, None, :]                                                    # (B, T, D)
    # Packed rows hold, for each time step, the sequences still running in sorted order: 0, 1, ... n_t − 1.
    sizes = x.batch_sizes.to(data.device)
    starts = torch.repeat_interleave(sizes.cumsum(0) - sizes, sizes)                  # (N,)
    sequence = torch.arange(data.size(0), device=data.device) - starts               # (N,)
    return x._replace(data=data * mask[sequence])


class LockedDropout(nn.Module):
    """`locked_dropout` as a module, in place of nn.Dropout on the embeddings."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return locked_dropout(x, self.p, self.training)


def drop_recurrent_weights(module: nn.Module, p: float) -> dict[str, torch.Tensor]:
    """The module's parameters with DropConnect on the hidden-to-hidden weights (`weight_hh_*`): one mask per
    call, so one per forward pass, the same at every time step."""
    parameters = dict(module.named_parameters())
    for name, weight in parameters.items():
        if name.startswith("weight_hh_") and p > 0:
            parameters[name] = nn.functional.dropout(weight, p, training=True)
    return parameters


_LAYER = re.compile(r"_l(\d+)(_reverse)?$")


def one_layer_weights(parameters: dict[str, torch.Tensor], layer: int) -> dict[str, torch.Tensor]:
    """Layer `layer`'s weights renamed as a one-layer module's (`weight_hh_l2_reverse` → `weight_hh_l0_reverse`)."""
    picked = {}
    for name, weight in parameters.items():
        found = _LAYER.search(name)
        if found and int(found.group(1)) == layer:
            picked[name[:found.start()] + "_l0" + (found.group(2) or "")] = weight
    return picked


def run_layer_by_layer(one_layer: list[nn.Module], parameters: dict[str, torch.Tensor], x, state, num_layers: int,
                       directions: int, p: float, training: bool):
    """A stacked recurrent layer run one layer at a time on its own weights, with locked dropout between layers.
    `one_layer[k]` is a weightless (meta) one-layer twin of the cell for layer k's input size."""
    finals = []
    for layer in range(num_layers):
        if layer > 0:
            x = locked_dropout(x, p, training)
        rows = slice(layer * directions, (layer + 1) * directions)
        layer_state = None if state is None else _state_rows(state, rows)
        x, final = functional_call(one_layer[layer], one_layer_weights(parameters, layer), (x, layer_state))
        finals.append(final)
    if isinstance(finals[0], torch.Tensor):
        return x, torch.cat(finals)
    return x, tuple(torch.cat(parts) for parts in zip(*finals))


def _state_rows(state, rows: slice):
    return state[rows] if isinstance(state, torch.Tensor) else tuple(part[rows] for part in state)
