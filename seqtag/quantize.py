"""int8 inference for the PyTorch backend: `seqtag.load(path, quantize="int8")`.

Dynamic quantization (`torch.ao.quantization.quantize_dynamic`): weights are stored in int8 and activations
are quantized per batch, on the CPU. PyTorch has int8 kernels for nn.LSTM, nn.GRU and nn.Linear only, so:

    lstm, gru             the encoder (and a char_lstm embedder's LSTM) and every Linear layer in int8
    rnn, peephole, coupled  only the Linear layers (the heads, a tied head's projection); the recurrence stays
                          float32 (nn.RNN has no dynamic int8 kernel; the LSTM variants of cells.py are
                          matrix products in a scripted loop that quantize_dynamic does not reach)

Embeddings, the character CNN and a tied output layer (the embedding matrix itself) stay float32.
`predictor.quantized` lists which modules were quantized.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from .errors import SeqtagError

log = logging.getLogger("seqtag")

INT8 = "int8"
QUANTIZABLE = (nn.LSTM, nn.GRU, nn.Linear)  # what quantize_dynamic has int8 kernels for


def quantize_predictor(predictor, kind: str):
    """`predictor` with its network's LSTM/GRU/Linear layers dynamically quantized to int8, in place."""
    if kind != INT8:
        raise SeqtagError(f"quantize is {kind!r}; the one kind there is is 'int8' (dynamic int8 on the CPU).")
    if predictor.device.type != "cpu":
        raise SeqtagError(f"quantize='int8' runs on the CPU only (PyTorch's dynamic int8 kernels); the model was "
                          f"loaded onto {predictor.device}. Load it with device='cpu'.")
    if "qnnpack" not in torch.backends.quantized.supported_engines and \
            "fbgemm" not in torch.backends.quantized.supported_engines:
        raise SeqtagError("this PyTorch build has no quantized engine (fbgemm or qnnpack); int8 is not available.")
    names = [name for name, module in predictor.net.named_modules() if type(module) in QUANTIZABLE or
             (isinstance(module, QUANTIZABLE) and not isinstance(module, nn.RNNBase))]
    with torch.no_grad():
        predictor.net = torch.ao.quantization.quantize_dynamic(predictor.net, set(QUANTIZABLE), dtype=torch.qint8)
    kept = sorted({type(module).__name__ for module in predictor.net.modules()
                   if isinstance(module, nn.RNNBase) or type(module).__name__ in ("PeepholeLSTM", "CoupledLSTM")})
    predictor.quantized = {"int8": names, "float32_recurrent": kept}
    if kept:
        log.info("quantize=int8: %s stay float32 (no dynamic int8 kernel); Linear layers are int8", ", ".join(kept))
    return predictor
