"""`seqtag export MODEL --format onnx`: a saved model as a self-contained folder that predicts with
onnxruntime, without PyTorch (see `onnx_predict.py`).

    export_onnx("runs/demo/model", "runs/demo/model-onnx")          # model.onnx, tokenizers, labels, export.json
    export_onnx("runs/demo/model", "runs/demo/model-int8", int8=True)

What the graph computes, per family (inputs → outputs; B and T are dynamic):

    tagging         word_ids (B, T), lengths (B,) [, char_ids (B, T, C)]  → probabilities (B, T, L)  softmax head
                    [, lm_text (B, L), lm_lengths (B,), lm_last (B, T),   → emissions (B, T, L)      CRF head
                       lm_first_reversed (B, T): featurizer.line_layout]
    classification  the same inputs → probabilities (B, L)
    lm              word_ids (B, T), state_h (layers, B, H) [, state_c] → logits (B, T, V), next_state_h [, _c]

The PyTorch encoder packs bidirectional input (`pack_padded_sequence`), which the exporter cannot express.
The export-time forward here masks instead: each direction is a one-direction layer over the padded batch,
the backward one over every row reversed within its own length (`cells.reverse_within_lengths`), so padding
only ever follows the real tokens and never reaches them; outputs are zero on padding as the packed encoder
gives them. The character encoders run over every (padded) word slot and keep the real words' vectors. The
CRF's Viterbi and marginals run in numpy after the graph (`crf_numpy.py`), on the transitions saved in
crf.json. After writing, the export runs both networks on a batch of mixed lengths and refuses a graph whose
outputs differ from PyTorch's by more than 1e-4.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cells import GatedRecurrentLayers, reverse_within_lengths
from .crf import CRFHead
from .artifact import publish_folder, staging_folder
from .durable import write_durably
from .data.featurizer import LM_LAYOUT, line_layout
from .embedders import PAD_ID, CharCNN, CharLSTM, ContextualStrings, WordEmbedder
from .errors import SeqtagError
from .runs import MODEL_FILES
from .heads import NextTokenHead, PooledHead, SoftmaxHead
from .loading import load
from .version import __version__

EXPORT_FILE = "export.json"     # what marks a folder as an export (onnx_predict.py reads it)
EXPORT_FORMAT_VERSION = 1
DEFAULT_OPSET = 17
MIN_OPSET = 14                  # what the fused cells' graphs need (tested 14, 16, 17, 20)
MIN_LOOP_OPSET = 16             # the scripted step loops of the peephole and coupled cells (Optional ops, typed
                                # as onnxruntime accepts them from 16 on)
TOLERANCE = 1e-4                # the export's own check: largest difference to PyTorch's outputs

# ---------------------------------------------------------------------------
# The export-time forward: masking in place of packing


def _fused_twin(rnn: nn.RNNBase, layer: int, suffix: str) -> nn.RNNBase:
    """A one-layer, one-direction copy of layer `layer`, direction `suffix` ("" or "_reverse") of a fused
    recurrent layer (nn.LSTM, nn.GRU, nn.RNN or a subclass), holding that direction's weights."""
    kind = nn.LSTM if isinstance(rnn, nn.LSTM) else nn.GRU if isinstance(rnn, nn.GRU) else nn.RNN
    extra = {"nonlinearity": rnn.nonlinearity} if kind is nn.RNN else {}
    if getattr(rnn, "proj_size", 0):
        raise SeqtagError("an LSTM with proj_size cannot be exported: the masked export forward does not "
                          "handle projected states.")
    input_size = getattr(rnn, f"weight_ih_l{layer}{suffix}").size(1)
    twin = kind(input_size, rnn.hidden_size, num_layers=1, batch_first=True, bias=rnn.bias, **extra)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if hasattr(twin, f"{name}_l0"):
                getattr(twin, f"{name}_l0").copy_(getattr(rnn, f"{name}_l{layer}{suffix}"))
    return twin.eval()


class MaskedRecurrent(nn.Module):
    """A bidirectional (or one-direction) stacked recurrent layer run on padded input with lengths, giving
    the packed layer's outputs at real positions and zeros on padding. Its final state is not computed:
    taggers and classifiers read the outputs only."""

    def __init__(self, rnn: nn.Module, num_layers: int, bidirectional: bool):
        super().__init__()
        self.suffixes = ("", "_reverse") if bidirectional else ("",)
        self.num_layers = num_layers
        self.gated = isinstance(rnn, GatedRecurrentLayers)
        if self.gated:
            self.rnn = rnn            # its own weights and scripted step loop
        elif isinstance(rnn, nn.RNNBase):
            self.twins = nn.ModuleList(_fused_twin(rnn, layer, suffix)
                                       for layer in range(num_layers) for suffix in self.suffixes)
        else:
            raise SeqtagError(f"the recurrent cell {type(rnn).__name__} cannot be exported: the exporter runs "
                              "PyTorch's fused layers (nn.LSTM, nn.GRU, nn.RNN and their subclasses) and the "
                              "LSTM variants of cells.py (GatedRecurrentLayers), not other modules.")

    def _direction(self, x: torch.Tensor, layer: int, direction: int, keep: torch.Tensor) -> torch.Tensor:
        if not self.gated:
            return self.twins[layer * len(self.suffixes) + direction](x)[0]              # (B, T, H)
        name = f"l{layer}{self.suffixes[direction]}"
        inputs = nn.functional.linear(x, getattr(self.rnn, f"weight_ih_{name}"),
                                      getattr(self.rnn, f"bias_{name}")).transpose(0, 1)   # (T, B, G·H)
        zeros = x.new_zeros(x.size(0), self.rnn.hidden_size)                              # (B, H)
        # `keep` as a tensor, not None: the exporter cannot type a None passed to the scripted loop.
        out, _, _ = self.rnn.steps(inputs.contiguous(), name, zeros, zeros, keep)        # (T, B, H)
        return out.transpose(0, 1)                                                        # (B, T, H)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.t()[..., None]                                                        # (T, B, 1)
        for layer in range(self.num_layers):
            outputs = []
            for direction, suffix in enumerate(self.suffixes):
                if suffix:  # the backward direction reads each row reversed within its length
                    out = self._direction(reverse_within_lengths(x, lengths), layer, direction, keep)
                    outputs.append(reverse_within_lengths(out, lengths))
                else:
                    outputs.append(self._direction(x, layer, direction, keep))
            x = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]           # (B, T, H·dirs)
        return torch.where(mask[..., None], x, torch.zeros_like(x))                      # zeros on padding


class ExportEmbedder(nn.Module):
    """An embedder's forward for the graph: the word embedder as it is; a character encoder over every word
    slot of the batch (padding slots give zeros), where PyTorch picks the real words out first."""

    def __init__(self, embedder: nn.Module, name: str):
        super().__init__()
        self.embedder = embedder
        if isinstance(embedder, WordEmbedder):
            self.kind = "word"
        elif isinstance(embedder, CharCNN):
            self.kind = "char_cnn"
        elif isinstance(embedder, CharLSTM):
            self.kind = "char_lstm"
            self.twins = nn.ModuleList(_fused_twin(embedder.lstm, 0, s) for s in ("", "_reverse"))
        elif isinstance(embedder, ContextualStrings):
            self.kind = "lm"
            if not all(isinstance(lm, nn.RNNBase) for lm in (embedder.forward_lm, embedder.backward_lm)):
                raise SeqtagError(f"the {name!r} embedder's language models are {type(embedder.forward_lm).__name__}"
                                  "; the exporter runs the pair when it is PyTorch's fused LSTM (or GRU, RNN).")
        else:
            raise SeqtagError(f"the embedder {name!r} ({type(embedder).__name__}) cannot be exported: the exporter "
                              "knows word, char_cnn, char_lstm and lm; give it an export forward in seqtag/export.py.")

    def forward(self, word_ids: torch.Tensor, features: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "word":
            return self.embedder.embedding(word_ids)                                      # (B, T, Dw)
        if self.kind == "lm":
            return self._language_models(features, mask)
        char_ids = features["char_ids"]
        batch, steps, width = char_ids.shape
        chars = char_ids.reshape(-1, width)                                               # (B·T, C)
        if self.kind == "char_cnn":
            x = self.embedder.embed(chars).transpose(1, 2)                               # (N, D, C)
            h = self.embedder.conv(x)[:, :, :width]                                       # (N, F, C)
            h = h.masked_fill((chars == PAD_ID)[:, None, :], float("-inf"))
            words = h.max(dim=2).values                                                   # (N, F)
        else:
            words = self._char_lstm(chars)
        words = words.reshape(batch, steps, -1)                                           # (B, T, F)
        return torch.where(mask[..., None], words, torch.zeros_like(words))              # a padding slot: 0

    def _language_models(self, features: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        # The line each sentence spells comes laid out by the feeds (featurizer.line_layout): both models run
        # over the padded lines (padding follows the characters, so no real state reads it), the backward one
        # over each line reversed within its length.
        x = self.embedder.embedding(features["lm_text"])                                 # (B, L, D)
        lengths = features["lm_lengths"]
        forward_states = self.embedder.forward_lm(x)[0]                                   # (B, L, H)
        backward_states = self.embedder.backward_lm(reverse_within_lengths(x, lengths))[0]
        hidden = forward_states.size(-1)
        vectors = torch.cat([
            forward_states.gather(1, features["lm_last"][..., None].expand(-1, -1, hidden)),
            backward_states.gather(1, features["lm_first_reversed"][..., None].expand(-1, -1, hidden))], dim=-1)
        return torch.where(mask[..., None], vectors, torch.zeros_like(vectors))          # (B, T, 2H)

    def _char_lstm(self, chars: torch.Tensor) -> torch.Tensor:
        lengths = (chars != PAD_ID).sum(1).clamp(min=1)                                   # (N,)
        x = self.embedder.embed(chars)                                                    # (N, C, D)
        last = (lengths - 1)[:, None, None]
        ends = [self.twins[0](x)[0], self.twins[1](reverse_within_lengths(x, lengths))[0]]
        return torch.cat([out.gather(1, last.expand(-1, 1, out.size(2)))[:, 0] for out in ends], dim=-1)


class TokenGraph(nn.Module):
    """A tagger's or classifier's network for export: embedders → masked encoder → head, with the head's
    probabilities (softmax, pooled) or emissions (CRF) as output."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.embedders = nn.ModuleList(ExportEmbedder(e, name) for name, e in net.embedders.items())
        kinds = {e.kind for e in self.embedders}
        # The graph's inputs after word_ids and lengths, in order.
        self.extra_inputs = ((["char_ids"] if kinds & {"char_cnn", "char_lstm"} else []) +
                             (list(LM_LAYOUT) if "lm" in kinds else []))
        encoder = net.encoder
        self.encoder = MaskedRecurrent(encoder.rnn, encoder.num_layers, encoder.bidirectional)
        self.head = net.head
        if not isinstance(self.head, (SoftmaxHead, CRFHead, PooledHead)):
            raise SeqtagError(f"the head {type(self.head).__name__} cannot be exported: the exporter knows softmax, "
                              "crf and pooled for taggers and classifiers.")
        self.crf = isinstance(self.head, CRFHead)

    def forward(self, word_ids: torch.Tensor, lengths: torch.Tensor, *extra: torch.Tensor):
        mask = torch.arange(word_ids.size(1))[None, :] < lengths[:, None]                 # (B, T)
        features = dict(zip(self.extra_inputs, extra))
        vectors = [e(word_ids, features, mask) for e in self.embedders]
        x = torch.cat(vectors, dim=-1) if len(vectors) > 1 else vectors[0]               # (B, T, D)
        states = self.encoder(x, lengths, mask)                                           # (B, T, H·dirs)
        scores = self.head.scores(states, mask, lengths)                                  # (B, T, L) | (B, L)
        return scores if self.crf else scores.softmax(-1)


class LanguageModelGraph(nn.Module):
    """A language model's forward network for export, its recurrent state an explicit input and output
    (generation and scoring carry it from call to call). The encoder reads left to right with no padding
    before a real token, so it runs as PyTorch runs it, fused layers and scripted step loops alike."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        rnn = net.encoder.rnn
        if not isinstance(rnn, (nn.RNNBase, GatedRecurrentLayers)):
            raise SeqtagError(f"the recurrent cell {type(rnn).__name__} cannot be exported (see MaskedRecurrent).")
        if not isinstance(net.head, NextTokenHead):
            raise SeqtagError(f"the head {type(net.head).__name__} cannot be exported for a language model.")
        self.pair = isinstance(rnn, nn.LSTM) or isinstance(rnn, GatedRecurrentLayers)  # an (h, c) state

    def forward(self, word_ids: torch.Tensor, *state: torch.Tensor):
        logits, new = self.net({"word_ids": word_ids}, state=tuple(state) if self.pair else state[0])
        return (logits, *new) if self.pair else (logits, new)


# ---------------------------------------------------------------------------
# Writing the folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sample_tokens(net, inputs: list[str], rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """A batch of mixed lengths (1 to 13 tokens, one row of each) with random ids, for tracing and checking:
    word_ids, lengths and the graph's other `inputs`."""
    lengths = torch.tensor([1, 13, 4, 9, 2, 7])
    word_ids = torch.from_numpy(rng.integers(2, net.sizes["words"], (len(lengths), 13)))
    mask = torch.arange(13)[None, :] < lengths[:, None]
    word_ids = word_ids.masked_fill(~mask, PAD_ID)
    extra = {}
    if "char_ids" in inputs:
        char_lengths = torch.from_numpy(rng.integers(1, 8, (len(lengths), 13)))
        char_ids = torch.from_numpy(rng.integers(2, max(3, net.sizes["chars"]), (len(lengths), 13, 7)))
        char_ids = char_ids.masked_fill(torch.arange(7) >= char_lengths[..., None], PAD_ID)
        extra["char_ids"] = char_ids.masked_fill(~mask[..., None], PAD_ID)
    if "lm_text" in inputs:  # each word a separator and 1 to 7 characters
        pieces = [[[int(c) for c in rng.integers(2, max(3, net.sizes["lm_chars"]), int(rng.integers(2, 9)))]
                   for _ in range(int(n))] for n in lengths]
        extra.update({name: torch.from_numpy(value) for name, value in line_layout(pieces, PAD_ID).items()})
    return (word_ids, lengths, *(extra[name] for name in inputs))


def _export_graph(predictor, path: Path, opset: int) -> dict:
    """Write model.onnx for `predictor`'s network; returns the graph's description for export.json."""
    net = predictor.net.cpu().eval()
    rng = np.random.default_rng(0)
    if isinstance(net.encoder.rnn, GatedRecurrentLayers) and opset < MIN_LOOP_OPSET:
        raise SeqtagError(f"--opset is {opset}; a {type(net.encoder.rnn).__name__} encoder runs a step loop whose "
                          f"ONNX form (Loop with an optional mask) needs opset {MIN_LOOP_OPSET} or newer.")
    if predictor.task == "lm":
        graph = LanguageModelGraph(net).eval()
        rnn = net.encoder.rnn
        layers = rnn.num_layers
        size = rnn.hidden_size
        state_names = ["state_h", "state_c"] if graph.pair else ["state_h"]
        word_ids = torch.from_numpy(rng.integers(2, net.sizes["words"], (2, 5)))
        state = [torch.zeros(layers, 2, size) for _ in state_names]
        args = (word_ids, *state)
        inputs = ["word_ids", *state_names]
        outputs = ["logits", *(f"next_{name}" for name in state_names)]
        axes = {"word_ids": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"},
                **{name: {1: "batch"} for name in state_names + outputs[1:]}}
        described = {"inputs": inputs, "outputs": outputs, "state": state_names, "layers": layers,
                     "hidden_size": size}
    else:
        graph = TokenGraph(net).eval()
        args = _sample_tokens(net, graph.extra_inputs, rng)
        inputs = ["word_ids", "lengths", *graph.extra_inputs]
        output = "emissions" if graph.crf else "probabilities"
        outputs = [output]
        axes = {"word_ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                output: {0: "batch", 1: "time"} if predictor.task == "tagging" else {0: "batch"},
                "char_ids": {0: "batch", 1: "time", 2: "characters"}, "lm_text": {0: "batch", 1: "line"},
                "lm_lengths": {0: "batch"}, "lm_last": {0: "batch", 1: "time"},
                "lm_first_reversed": {0: "batch", 1: "time"}}
        axes = {name: axis for name, axis in axes.items() if name in inputs + outputs}
        described = {"inputs": inputs, "outputs": outputs, "head": "crf" if graph.crf else "softmax"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        expected = graph(*args)
        try:
            torch.onnx.export(graph, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=axes,
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        except Exception as err:  # the exporter's own errors name an op; say what was being exported
            raise SeqtagError(f"exporting the {predictor.task} network to ONNX opset {opset} failed: {err}. "
                              f"Try the default --opset {DEFAULT_OPSET}.") from err
    described["check"] = {"args": args, "expected": expected if isinstance(expected, tuple) else (expected,)}
    return described


def _type_optionals(path: Path) -> None:
    """Give the graph's untyped optionals the type tensor(bool). The step loops of cells.py take their mask
    `keep` as Optional[Tensor]; the TorchScript exporter writes that Optional without an element type, which
    onnxruntime refuses to load. The mask is the only optional those loops have, and it is bool."""
    import onnx

    def typed(proto) -> None:
        if proto.HasField("optional_type"):
            inner = proto.optional_type.elem_type
            if not inner.HasField("sequence_type") and inner.tensor_type.elem_type == onnx.TensorProto.UNDEFINED:
                inner.tensor_type.elem_type = onnx.TensorProto.BOOL
        elif proto.HasField("tensor_type") and proto.tensor_type.elem_type == onnx.TensorProto.UNDEFINED:
            proto.tensor_type.elem_type = onnx.TensorProto.BOOL

    def walk(graph) -> None:
        for value in [*graph.input, *graph.output, *graph.value_info]:
            if value.type.HasField("optional_type"):
                typed(value.type)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TYPE_PROTO and node.op_type == "Optional":
                    typed(attribute.tp)
                elif attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g)

    model = onnx.load(str(path))
    if any(node.op_type in ("Optional", "OptionalHasElement") for node in _all_nodes(model.graph)):
        walk(model.graph)
        onnx.save(model, str(path))


def _all_nodes(graph):
    """Every node of the graph and of its subgraphs (the bodies of Loop and If)."""
    import onnx

    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)


def _check_graph(path: Path, described: dict) -> float:
    """The largest difference between onnxruntime's outputs and PyTorch's on the export's own batch."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    check = described.pop("check")
    feeds = {name: arg.numpy() for name, arg in zip(described["inputs"], check["args"])}
    got = session.run(None, feeds)
    return max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, check["expected"]))


def export_onnx(model_dir: str | Path, out: str | Path | None = None, opset: int = DEFAULT_OPSET,
                int8: bool = False, overwrite: bool = True) -> Path:
    """Export the saved model in `model_dir` to a folder `out` (default: MODEL-onnx, or MODEL-onnx-int8)
    holding model.onnx, the tokenizer and label files, crf.json for a CRF head, metrics.json and export.json
    (seqtag's version, the parent model's path and weight hash, the graph's inputs and outputs). With `int8`,
    the graph's weights are quantized to int8 (onnxruntime dynamic quantization). Returns `out`."""
    try:
        import onnx  # noqa: F401 - the exporter writes through it
        import onnxruntime  # noqa: F401 - the export checks its graph with it
    except ImportError:
        raise SeqtagError("exporting to ONNX needs the onnx extra: pip install 'seqtag[onnx]'.") from None
    model_dir = Path(model_dir)
    if (model_dir / EXPORT_FILE).is_file():
        raise SeqtagError(f"{model_dir} is already an export (it holds {EXPORT_FILE}); export the PyTorch model "
                          "it was made from.")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise SeqtagError(f"--opset is {opset!r}; the graph needs opset {MIN_OPSET} or newer (default {DEFAULT_OPSET}).")
    out = Path(out) if out is not None else model_dir.with_name(model_dir.name + ("-onnx-int8" if int8 else "-onnx"))
    if out.exists() and not (out / EXPORT_FILE).is_file():
        raise SeqtagError(f"{out} exists and is not an export; give another --out (an earlier export there would "
                          "be replaced).")
    if out.exists() and not overwrite:
        raise SeqtagError(f"{out} already holds an export; remove it or give another --out.")
    predictor = load(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(out)  # not mkdtemp: its private 0700 mode would pass to the export
    try:
        described = _export_graph(predictor, staging / "model.onnx", opset)
        _type_optionals(staging / "model.onnx")
        difference = _check_graph(staging / "model.onnx", described)
        if not difference <= TOLERANCE:
            raise SeqtagError(f"the exported graph's outputs differ from PyTorch's by {difference:.2e} (more than "
                              f"{TOLERANCE}); this network cannot be exported faithfully. Please report it.")
        if int8:
            _quantize(staging / "model.onnx")
        # Every file of the model folder but the network, which the graph replaces (and config.json, export.json's).
        files = [name for name in sorted(MODEL_FILES - {"config.json", "model.safetensors"})
                 if (model_dir / name).is_file()]
        for name in files:
            shutil.copyfile(model_dir / name, staging / name)
        if described.get("head") == "crf":
            head = predictor.net.head
            write_durably(staging / "crf.json", json.dumps({
                "start": head.start_scores.tolist(), "steps": head.transition_scores.tolist(),
                "end": head.end_scores.tolist()}).encode("utf-8"))
        manifest = {
            "format": "onnx", "format_version": EXPORT_FORMAT_VERSION, "seqtag_version": __version__,
            "task": config["task"], "opset": opset, "int8": int8, "graph": described,
            "checked_difference": difference,
            "parent": {"path": str(model_dir.resolve()), "model_sha256": _sha256(model_dir / "model.safetensors"),
                       "config_sha256": _sha256(model_dir / "config.json"),
                       "seqtag_version": config.get("seqtag_version")},
            "files": sorted(files + ["model.onnx"] + (["crf.json"] if described.get("head") == "crf" else [])),
            "model": config,  # the parent's config.json: the recipe's reader settings, schemes, sizes
        }
        write_durably(staging / EXPORT_FILE, json.dumps(manifest, indent=2).encode("utf-8"))
        for name in os.listdir(staging):  # the copies and the graph are on disk before the folder is renamed
            with open(staging / name, "rb") as handle:
                os.fsync(handle.fileno())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return publish_folder(staging, out)


def _quantize(path: Path) -> None:
    """The graph's weights to int8 in place (dynamic quantization: activations are quantized per batch)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name("model.int8.onnx")
    root = logging.getLogger()
    quiet = _Quiet()  # its advice to pre-process image models, logged on the root logger
    root.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Not Conv: onnxruntime's ConvInteger made the character CNN slower than in float32 (bench/RESULTS.md,
            # ONNX export), more than the int8 LSTM gained.
            quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["LSTM", "MatMul", "Gemm", "Gather"])
    finally:
        root.removeFilter(quiet)
    os.replace(quantized, path)


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()
