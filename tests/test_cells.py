"""The peephole and coupled LSTMs against their equations, masked and stacked; the LSTM-literature regularisers
(weight drop, locked dropout, embedding dropout): off by default and as before, on in training only."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqtag
from seqtag.cells import CoupledLSTM, PeepholeLSTM, locked_dropout, reverse_within_lengths
from seqtag.config import ADDED_KEYS, ModelConfig, load_recipe
from seqtag.errors import SeqtagError
from seqtag.data.batching import collate
from seqtag.networks import CELLS, Network, RecurrentEncoder, WordEmbedder
from seqtag.training import train

from test_nn import SIZES, _rows
from test_pipeline import SHAPE, SMALL, _recipe_files

NEW_CELLS = ["peephole", "coupled"]
H, D = 2, 3


def _load_blocks(cell: nn.Module, blocks: list[torch.Tensor], bias: torch.Tensor) -> None:
    """Gate matrices W (H, H + D) acting on [h_{t-1}, x_t], as the equations write them, into the cell's layout."""
    with torch.no_grad():
        cell.weight_hh_l0.copy_(torch.cat([w[:, :H] for w in blocks]))
        cell.weight_ih_l0.copy_(torch.cat([w[:, H:] for w in blocks]))
        cell.bias_l0.copy_(bias)


def _fixed(*shape: int, start: float) -> torch.Tensor:
    """Small fixed weights, different in every entry."""
    return torch.linspace(start - 0.8, start + 0.8, shape[0] * shape[1]).reshape(shape)


def _one_step(cell: nn.Module):
    x = torch.tensor([[[0.5, -1.0, 0.25]]])                                  # (B=1, T=1, D)
    h0, c0 = torch.tensor([[[0.3, -0.2]]]), torch.tensor([[[-0.4, 0.6]]])    # (1, 1, H)
    out, (h, c) = cell(x, (h0, c0))
    return torch.cat([h0[0, 0], x[0, 0]]), c0[0, 0], out[0, 0], h[0, 0], c[0, 0]


def test_one_peephole_step_follows_the_equations():
    cell = PeepholeLSTM(D, H)
    w_f, w_i, w_c, w_o = (_fixed(H, H + D, start=s) for s in (0.1, -0.3, 0.2, -0.5))
    b_f, b_i, b_c, b_o = torch.tensor([0.1, -0.2]), torch.tensor([0.3, 0.0]), torch.tensor([-0.1, 0.2]), \
        torch.tensor([0.05, -0.05])
    p_f, p_i, p_o = torch.tensor([0.7, -0.3]), torch.tensor([-0.6, 0.4]), torch.tensor([0.2, 0.9])
    _load_blocks(cell, [w_f, w_i, w_c, w_o], torch.cat([b_f, b_i, b_c, b_o]))
    with torch.no_grad():
        cell.weight_ch_l0.copy_(torch.stack([p_f, p_i, p_o]))
        hx, c_prev, out, h, c = _one_step(cell)
    f = torch.sigmoid(w_f @ hx + p_f * c_prev + b_f)
    i = torch.sigmoid(w_i @ hx + p_i * c_prev + b_i)
    c_expected = f * c_prev + i * torch.tanh(w_c @ hx + b_c)
    o = torch.sigmoid(w_o @ hx + p_o * c_expected + b_o)
    torch.testing.assert_close(c, c_expected)
    torch.testing.assert_close(h, o * torch.tanh(c_expected))
    torch.testing.assert_close(out, h)


def test_one_coupled_step_follows_the_equations():
    cell = CoupledLSTM(D, H)
    w_f, w_c, w_o = (_fixed(H, H + D, start=s) for s in (0.1, 0.2, -0.5))
    b_f, b_c, b_o = torch.tensor([0.1, -0.2]), torch.tensor([-0.1, 0.2]), torch.tensor([0.05, -0.05])
    _load_blocks(cell, [w_f, w_c, w_o], torch.cat([b_f, b_c, b_o]))
    with torch.no_grad():
        hx, c_prev, out, h, c = _one_step(cell)
    f = torch.sigmoid(w_f @ hx + b_f)
    c_expected = f * c_prev + (1 - f) * torch.tanh(w_c @ hx + b_c)
    torch.testing.assert_close(c, c_expected)
    torch.testing.assert_close(h, torch.sigmoid(w_o @ hx + b_o) * torch.tanh(c_expected))
    torch.testing.assert_close(out, h)


def test_parameter_counts_are_those_the_equations_imply():
    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    d, h = 5, 4
    # Per gate block W (H, H + D) and b (H); layer 2 of a bidirectional stack reads 2H.
    blocks = [h * (h + d) + h, h * (h + 2 * h) + h]
    assert count(CoupledLSTM(d, h)) == 3 * blocks[0]
    assert count(CoupledLSTM(d, h, num_layers=2, bidirectional=True)) == 2 * 3 * sum(blocks)
    # The peephole LSTM: four gate blocks and three diagonal peephole vectors.
    assert count(PeepholeLSTM(d, h)) == 4 * blocks[0] + 3 * h
    assert count(PeepholeLSTM(d, h, num_layers=2, bidirectional=True)) == 2 * (4 * sum(blocks) + 2 * 3 * h)


def test_reversing_within_lengths_leaves_padding_in_place():
    x = torch.arange(8.0).reshape(2, 4, 1)
    reversed_ = reverse_within_lengths(x, torch.tensor([2, 4]))
    assert reversed_[..., 0].tolist() == [[1, 0, 2, 3], [7, 6, 5, 4]]
    torch.testing.assert_close(reverse_within_lengths(reversed_, torch.tensor([2, 4])), x)


def _garbage_padded(lengths: list[int], seed: int = 0) -> torch.Tensor:
    """A (B, T, D) batch whose padding holds large values, which would show wherever padding leaked."""
    torch.manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), 4)
    for row, length in enumerate(lengths):
        x[row, length:] = 100.0
    return x


@pytest.mark.parametrize("cell", NEW_CELLS)
def test_padding_never_changes_a_real_token_in_either_direction_or_layer(cell):
    torch.manual_seed(1)
    rnn = CELLS[cell](4, 3, num_layers=2, batch_first=True, bidirectional=True).eval()
    lengths = [3, 6, 1]
    x = _garbage_padded(lengths)
    with torch.no_grad():
        packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        out, (h, c) = rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)
        assert h.shape == c.shape == (4, 3, 3) and out.shape == (3, 6, 6)
        for row, length in enumerate(lengths):
            alone, (h_alone, c_alone) = rnn(x[row:row + 1, :length])
            torch.testing.assert_close(out[row, :length], alone[0])
            torch.testing.assert_close(h[:, row], h_alone[:, 0])
            torch.testing.assert_close(c[:, row], c_alone[:, 0])
            assert (out[row, length:] == 0).all()


@pytest.mark.parametrize("cell", NEW_CELLS)
def test_two_windows_with_the_state_passed_equal_one_long_pass(cell):
    torch.manual_seed(0)
    net = Network(ModelConfig(word_dim=6, hidden_size=5, num_layers=2, cell=cell), SIZES, ["word"], "next_token",
                  causal=True).eval()
    ids = torch.tensor([[3, 4, 5, 6, 7, 8], [9, 8, 7, 6, 5, 4]])
    with torch.no_grad():
        whole, (h, c) = net({"word_ids": ids})
        first, state = net({"word_ids": ids[:, :4]})
        second, _ = net({"word_ids": ids[:, 4:]}, state=state)
    assert h.shape == c.shape == (2, 2, 5)  # nn.LSTM's layout: (layers × directions, B, H)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


@pytest.mark.parametrize("cell", NEW_CELLS)
@pytest.mark.parametrize("name", ["demo", "sentiment", "char-lm"])
def test_the_new_cells_train_save_and_predict_in_every_family(name, cell, tmp_path):
    shape = [*SHAPE, "data.bptt=8", "data.batch_size=4"] if name == "char-lm" else SMALL
    recipe = load_recipe(name, [*shape, f"model.cell={cell}"], **_recipe_files(name, tmp_path))
    model = seqtag.load(train(recipe, tmp_path / "run", smoke=True).model_dir)
    assert isinstance(model.net.encoder.rnn, CELLS[cell])
    if name == "char-lm":
        assert model.generate("To", max_tokens=3, seed=0) == model.generate("To", max_tokens=3, seed=0)
    else:
        predicted = model.predict(["Ada visited Paris ."])[0]
        labels = predicted.labels if hasattr(predicted, "labels") else [predicted.label]
        assert labels and set(labels) <= set(model.labels)


# ---------------------------------------------------------------------------
# Regularisers

REGULARISERS = {"weight_drop": 0.5, "locked_dropout": True, "embedding_dropout": 0.5}


def _net(cell="lstm", head="softmax", embedders=("word",), causal=False, **changes) -> Network:
    torch.manual_seed(0)
    model = ModelConfig(word_dim=6, hidden_size=7, num_layers=2, cell=cell, **changes)
    return Network(model, SIZES, list(embedders), head, causal=causal)


def _batch():
    short, long = _rows()
    return collate([short, long])


def _run(net: Network, batch, seed: int = 5) -> torch.Tensor:
    torch.manual_seed(seed)
    return net(batch.features, batch.lengths, batch.mask)[0]


def test_the_new_keys_are_off_by_default_and_added_with_the_values_of_older_models():
    model = ModelConfig()
    assert (model.weight_drop, model.locked_dropout, model.embedding_dropout) == (0.0, False, 0.0)
    assert {key: ADDED_KEYS[key] for key in ("model.weight_drop", "model.locked_dropout",
                                             "model.embedding_dropout")} == {
        "model.weight_drop": 0.0, "model.locked_dropout": False, "model.embedding_dropout": 0.0}
    with pytest.raises(SeqtagError, match=r"model.weight_drop is 1.0; it must be in \[0, 1\)"):
        load_recipe("demo", ["model.weight_drop=1.0"])


def test_with_the_defaults_the_network_computes_what_it_did_before():
    """Today's forward written out with plain torch (word dropout, nn.Dropout, the fused LSTM on packed
    sequences, the head) gives the same training-mode output from the same random draws."""
    net = _net(embedders=("word", "char_cnn")).train()
    batch = _batch()
    torch.manual_seed(5)
    ids = batch.features["word_ids"]
    drop = torch.rand(ids.shape) < net.word_embedder().word_dropout
    words = net.word_embedder().embedding(ids.masked_fill(drop & batch.mask, 1))
    x = nn.functional.dropout(torch.cat([words, net.embedders["char_cnn"](batch.features, batch.mask)], -1), 0.33)
    packed = pack_padded_sequence(x, batch.lengths, batch_first=True, enforce_sorted=False)
    states, _ = pad_packed_sequence(net.encoder.rnn(packed)[0], batch_first=True)
    expected = net.head.linear(nn.functional.dropout(states, 0.33))
    torch.testing.assert_close(_run(net, batch), expected, rtol=0, atol=0)
    assert isinstance(net.encoder.rnn, nn.LSTM) and isinstance(net.dropout, nn.Dropout)


@pytest.mark.parametrize("setting", sorted(REGULARISERS))
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_regulariser_changes_training_outputs_never_eval_outputs_nor_the_saved_layout(cell, setting):
    # No other dropout, so training and eval outputs differ only by the regulariser.
    quiet = {"dropout": 0.0 if setting != "locked_dropout" else 0.5, "word_dropout": 0.0}
    plain, regularised = _net(cell, **quiet), _net(cell, **quiet, **{setting: REGULARISERS[setting]})
    assert plain.state_dict().keys() == regularised.state_dict().keys()
    regularised.load_state_dict(plain.state_dict())
    batch = _batch()
    with torch.no_grad():
        assert not torch.allclose(_run(regularised.train(), batch), _run(plain.train(), batch))
        torch.testing.assert_close(_run(regularised.eval(), batch), _run(plain.eval(), batch), rtol=0, atol=0)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_weight_drop_reaches_the_recurrent_weights_themselves(cell):
    """A dropped entry of weight_hh takes no part in the pass, so its gradient is exactly zero: about half of
    them at p = 0.5, and none without weight drop."""
    def zero_share(weight_drop: float) -> float:
        net = _net(cell, dropout=0.0, word_dropout=0.0, weight_drop=weight_drop).train()
        _run(net, _batch()).square().sum().backward()
        return (net.encoder.rnn.weight_hh_l0.grad == 0).float().mean().item()

    assert zero_share(0.0) == 0.0
    assert 0.3 < zero_share(0.5) < 0.7


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_layers_run_one_at_a_time_compute_what_the_stacked_cell_does(cell, causal):
    """Locked dropout runs the layers one by one (weights renamed to a one-layer twin); at rate 0 that is the
    stacked cell exactly, carried state included."""
    encoder = RecurrentEncoder(cell, 4, 3, num_layers=3, dropout=0.0, bidirectional=not causal,
                               locked_dropout=True).train()
    x, lengths = _garbage_padded([5, 2]), torch.tensor([5, 2])
    state = None
    if causal:
        x, lengths = torch.randn(2, 5, 4), None
        start = (torch.randn(3, 2, 3), torch.randn(3, 2, 3))
        state = start if cell in ("lstm", "peephole", "coupled") else start[0]
    layer_by_layer, final = encoder(x, lengths, state)
    stacked, stacked_final = encoder.eval()(x, lengths, state)
    torch.testing.assert_close(layer_by_layer, stacked)
    for part, expected in zip(final if isinstance(final, tuple) else (final,),
                              stacked_final if isinstance(stacked_final, tuple) else (stacked_final,)):
        torch.testing.assert_close(part, expected)


def test_locked_dropout_keeps_one_mask_per_sequence_over_time_padded_or_packed():
    torch.manual_seed(0)
    ones = torch.ones(6, 5, 8)
    dropped = locked_dropout(ones, 0.5, training=True)
    assert (dropped == dropped[:, :1]).all() and set(dropped.unique().tolist()) == {0.0, 2.0}
    assert len({tuple(row[0].tolist()) for row in dropped}) > 1, "each sequence draws its own mask"
    lengths = torch.tensor([5, 2, 4, 1, 3, 5])
    packed = locked_dropout(pack_padded_sequence(ones, lengths, batch_first=True, enforce_sorted=False), 0.5, True)
    unpacked, _ = pad_packed_sequence(packed, batch_first=True)
    for row, length in enumerate(lengths.tolist()):
        assert (unpacked[row, :length] == unpacked[row, :1]).all()
    assert locked_dropout(ones, 0.5, training=False) is ones


def test_embedding_dropout_drops_whole_word_types_and_scales_the_rest():
    embedder = WordEmbedder(ModelConfig(word_dim=4, embedding_dropout=0.5), {"words": 50}, word_dropout=0.0)
    ids = torch.tensor([[5, 6, 5, 7, 6, 5, 8, 9]] * 3)
    mask = torch.ones_like(ids, dtype=torch.bool)
    torch.manual_seed(0)
    ratio = (embedder.train()({"word_ids": ids}, mask) / embedder.embedding(ids)).detach()    # (B, T, Dw)
    assert set(ratio.round(decimals=4).unique().tolist()) == {0.0, 2.0}
    for word in ids.unique():
        assert len(ratio[ids == word].unique()) == 1, "every occurrence of a word shares its row's fate"
    torch.testing.assert_close(embedder.eval()({"word_ids": ids}, mask), embedder.embedding(ids))


@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole", "coupled"])
def test_padding_stays_harmless_with_every_regulariser_on_in_training(cell):
    """The same random draws, other values in the padding (ids and characters): real positions do not move."""
    net = _net(cell, embedders=("word", "char_cnn"), **REGULARISERS).train()
    batch = _batch()
    other = collate(list(_rows()))
    other.features["word_ids"][~other.mask] = 7
    other.features["char_ids"][~other.mask] = 3
    with torch.no_grad():
        torch.testing.assert_close(_run(net, other)[batch.mask], _run(net, batch)[batch.mask])


def test_a_model_saved_before_the_new_keys_loads_and_predicts_as_before(tmp_path):
    model_dir = train(load_recipe("demo", SMALL), tmp_path / "run", smoke=True).model_dir
    before = seqtag.load(model_dir).predict(["Ada visited Paris ."])[0].labels
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    for key in ("weight_drop", "locked_dropout", "embedding_dropout"):
        del config["recipe"]["model"][key]
    config_path.write_text(json.dumps(config))
    assert seqtag.load(model_dir).predict(["Ada visited Paris ."])[0].labels == before


def test_regularised_training_runs_end_to_end(tmp_path):
    settings = [f"model.{key}={str(value).lower()}" for key, value in REGULARISERS.items()]
    recipe = load_recipe("demo", [*SMALL, "model.cell=coupled", *settings])
    model = seqtag.load(train(recipe, tmp_path / "run", smoke=True).model_dir)
    assert model.net.encoder._one_layer is not None and model.net.word_embedder().embedding_dropout == 0.5
