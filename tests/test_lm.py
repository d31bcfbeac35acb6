"""Language models: reading and streaming text, tokenizers, the forward LSTM, TBPTT, sampling, recipes, bad input."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from typer.testing import CliRunner

import seqtag
from cli import app
from seqtag.config import DataConfig, load_recipe
from seqtag.data.lm import build_lm_tokenizer, encode_text, find_cut, read_text, training_text
from seqtag.data.streams import EOS_ID, StreamWindows, TokenStream, decode
from seqtag.data.vocab import PAD_ID, UNK_ID
from seqtag.errors import InputError, SeqtagError
from seqtag.config import ModelConfig
from seqtag.data.lm import prepare_lm
from seqtag.families import FAMILIES
from seqtag.objectives import OBJECTIVES
from seqtag.language_model import check_sampling, sample_next, window_nats
from seqtag.networks import Network
from seqtag.tasks import Task
from seqtag.training import train

runner = CliRunner()
VERSE = ("To be, or not to be, that is the question:\n"
         "Whether 'tis nobler in the mind to suffer\n"
         "The slings and arrows of outrageous fortune,\n"
         "Or to take arms against a sea of troubles\n")
FAST = ["train.progress_bar=false", "model.hidden_size=24", "model.word_dim=16", "model.num_layers=1",
        "data.bptt=8", "data.batch_size=4", "data.eval_batch_size=3"]


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _char_config(**changes) -> DataConfig:
    return DataConfig(format="text", tokenizer="char", lowercase=False, **changes)


def _stream(ids_per_line: list[list[int]]) -> TokenStream:
    ds = Dataset.from_dict({"ids": ids_per_line, "chars": [len(r) for r in ids_per_line]})
    return TokenStream.from_dataset(ds)


def _generated(lm, prompt: str, max_tokens: int, seed: int) -> str:
    """The continuation `lm` generates after `prompt`, checked for what a broken generator would get wrong."""
    text = lm.generate(prompt, max_tokens=max_tokens, seed=seed)
    assert lm.generate(prompt, max_tokens=max_tokens, seed=seed) == text, "a seed makes a sample repeatable"
    continuation = text[len(prompt):]
    assert continuation.strip(" "), "something was generated"
    assert "<pad>" not in continuation and "<unk>" not in continuation
    ids = lm.encode(continuation)
    assert PAD_ID not in ids and UNK_ID not in ids
    if lm.level == "char":
        assert len(continuation) == max_tokens, "one character per token"
    return continuation


# ---------------------------------------------------------------------------
# Reading, cutting, tokenizing


def test_raw_text_keeps_line_breaks_and_reads_globs_and_lists(tmp_path):
    _write(tmp_path / "a.txt", "ab\r\ncd")
    _write(tmp_path / "b.txt", "ef\n")
    config = _char_config()
    lines = read_text(config, str(tmp_path / "*.txt"))
    assert lines["text"] == ["ab\n", "cd", "ef\n"]
    listed = read_text(config, f"{tmp_path / 'b.txt'},{tmp_path / 'a.txt'}")
    assert listed["text"] == ["ef\n", "ab\n", "cd"]
    with pytest.raises(SeqtagError, match="no file matches"):
        read_text(config, str(tmp_path / "*.none"))


def test_empty_and_blank_corpora_are_errors_naming_the_file(tmp_path):
    for name, text in (("empty.txt", ""), ("blank.txt", " \n\n\t\n")):
        path = _write(tmp_path / name, text)
        with pytest.raises(InputError, match=f"{name}: holds no text"):
            read_text(_char_config(), str(path))


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good line\nbad \xff byte\n")
    with pytest.raises(InputError, match=r"bad.txt, line 2: is not valid UTF-8 \(byte 0xff"):
        read_text(_char_config(), str(path))


def test_cut_is_at_the_exact_character_for_raw_text_and_at_a_line_end_for_words(tmp_path):
    text = "".join(f"line number {i:02d}\n" for i in range(20))  # 20 lines of 15 characters
    lines = read_text(_char_config(), str(_write(tmp_path / "t.txt", text)))
    row, char = find_cut(lines, 0.13, whole_lines=False)
    at = int(len(text) * (1 - 0.13))
    assert char and row * 15 + char == at                   # inside line `row`
    tokenizer = build_lm_tokenizer(_char_config(), training_text(lines, (row, char)))
    encoded = encode_text(lines, tokenizer, (row, char))
    boundary = row + (1 if char else 0)
    train_part, dev_part = TokenStream.from_dataset(encoded, 0, boundary), TokenStream.from_dataset(encoded, boundary)
    assert decode(tokenizer, train_part.slice(0, len(train_part)).tolist()) == text[:at]
    assert decode(tokenizer, dev_part.slice(0, len(dev_part)).tolist()) == text[at:]
    assert train_part.chars + dev_part.chars == len(text)
    assert find_cut(lines, 0.1, whole_lines=True) == (18, 0)


def test_word_tokenizer_keeps_the_most_frequent_words_and_closes_lines_with_eos(tmp_path):
    path = _write(tmp_path / "w.txt", "the cat sat on the mat\nthe <unk> cat ran\n\n")
    config = DataConfig(format="wikitext", tokenizer="word", lowercase=False, vocab_size=5)
    lines = read_text(config, str(path))
    tokenizer = build_lm_tokenizer(config, training_text(lines, None))
    assert tokenizer.get_vocab() == {"<pad>": 0, "<unk>": 1, "<eos>": 2, "the": 3, "cat": 4}
    stream = TokenStream.from_dataset(encode_text(lines, tokenizer))
    ids = stream.slice(0, len(stream)).tolist()
    # "<unk>" in the text is the model's own unknown token; a blank line is one <eos>.
    assert ids == [3, 4, 1, 1, 3, 1, EOS_ID, 3, UNK_ID, 4, 1, EOS_ID, EOS_ID]
    assert decode(tokenizer, ids[:7]) == "the cat <unk> <unk> the <unk>\n"


def test_bpe_tokenizer_round_trips_any_text(tmp_path):
    config = DataConfig(format="text", tokenizer="bpe", vocab_size=300, lowercase=False)
    lines = read_text(config, str(_write(tmp_path / "b.txt", VERSE * 3)))
    tokenizer = build_lm_tokenizer(config, training_text(lines, None))
    stream = TokenStream.from_dataset(encode_text(lines, tokenizer))
    assert len(stream) < len(VERSE * 3)  # merges were learned
    assert decode(tokenizer, stream.slice(0, len(stream)).tolist()) == VERSE * 3
    unseen = "Zebras ñ 東京\n"
    assert decode(tokenizer, tokenizer.encode(unseen).ids) == unseen


# ---------------------------------------------------------------------------
# Streams and windows


def test_stream_views_the_arrow_buffers_without_copying():
    ds = Dataset.from_dict({"ids": [[1, 2, 3], [], [4, 5]], "chars": [3, 0, 2]})
    stream = TokenStream.from_dataset(ds)
    assert len(stream) == 5 and stream.chars == 5
    assert all(not piece.flags.owndata for piece in stream.pieces)
    assert stream.slice(1, 4).tolist() == [2, 3, 4]
    assert TokenStream.from_dataset(ds, 2).slice(0, 9).tolist() == [4, 5]


def test_windows_read_contiguous_columns_side_by_side():
    stream = _stream([list(range(10, 33))])                 # 23 tokens
    windows = StreamWindows(stream, columns=2, bptt=4)      # columns of 11, one token dropped
    assert windows.column_length == 11 and windows.dropped == 1 and len(windows) == 3
    inputs = torch.cat([windows[i]["inputs"] for i in range(len(windows))], dim=1)
    targets = torch.cat([windows[i]["targets"] for i in range(len(windows))], dim=1)
    assert inputs.tolist() == [list(range(10, 20)), list(range(21, 31))]
    assert targets.tolist() == [list(range(11, 21)), list(range(22, 32))]
    shard = StreamWindows(stream, columns=2, bptt=4, rank=1, world_size=2)
    assert shard[0]["inputs"].tolist() == [[21, 22, 23, 24]]


def test_evaluation_windows_predict_every_token_but_each_columns_first():
    stream = _stream([list(range(10, 33))])
    windows = StreamWindows(stream, columns=4, bptt=3, pad=True)   # columns of 6, the last holds 5
    targets = torch.cat([windows[i]["targets"] for i in range(len(windows))], dim=1)
    assert int((targets >= 0).sum()) == 23 - 4
    backward = StreamWindows(stream, columns=1, bptt=50, backward=True)[0]
    assert backward["backward_inputs"].tolist() == [list(range(32, 10, -1))]


# ---------------------------------------------------------------------------
# The network and truncated BPTT


def _net(cell="lstm", **changes) -> Network:
    torch.manual_seed(0)
    model = ModelConfig(word_dim=8, hidden_size=12, num_layers=2, dropout=0.0, cell=cell, **changes)
    return Network(model, {"words": 30, "chars": 0, "labels": 0}, ["word"], "next_token", causal=True).eval()


def _run(net, ids, backward=False):
    return net({"word_ids": ids}, backward=backward)


def test_a_position_never_sees_the_token_it_predicts():
    net = _net()
    ids = torch.randint(3, 30, (1, 12))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1 - 3) % 27 + 3
    before, _ = _run(net, ids)
    after, _ = _run(net, changed)
    assert torch.allclose(before[0, :6], after[0, :6])       # positions 0..5 predict tokens 1..6
    assert not torch.allclose(before[0, 6], after[0, 6])


def test_tied_embeddings_are_one_tensor_and_the_backward_stack_is_separate():
    net = _net(tie_embeddings=True, lm_directions="both")
    names = set(net.state_dict())
    assert "embedders.word.embedding.weight" in names and not any(name.startswith("head.linear") for name in names)
    assert "head.projection.weight" in names                 # hidden 12 -> embedding 8
    ids = torch.randint(3, 30, (2, 5))
    forward, _ = _run(net, ids)
    backward, _ = _run(net, ids, backward=True)
    assert not torch.allclose(forward, backward)
    with torch.no_grad():
        net.word_embedder().embedding.weight[7] += 1.0
    assert not torch.allclose(_run(net, ids)[0], forward)    # the output layer moved with the embedding


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_carried_state_makes_windows_equal_one_long_pass(cell):
    net = _net(cell)
    stream = _stream([list(np.random.default_rng(0).integers(3, 30, 41))])
    windows = StreamWindows(stream, columns=2, bptt=6)
    total, count, state = 0.0, 0, None
    for i in range(len(windows)):
        nats, n, state = window_nats(net, windows[i], state)
        assert not (state[0] if isinstance(state, tuple) else state).requires_grad
        total, count = total + float(nats), count + int(n)
    ids = torch.from_numpy(stream.slice(0, 40).astype(np.int64)).view(2, 20)
    logits, _ = _run(net, ids[:, :-1])
    whole = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum")
    assert count == 38
    assert total == pytest.approx(float(whole), rel=1e-5)


def test_training_steps_carry_a_detached_state_and_restart_each_epoch():
    task = Task(OBJECTIVES["lm"], _net(), load_recipe("char-lm"))
    task.log = lambda *args, **kwargs: None
    windows = StreamWindows(_stream([list(range(3, 30)) * 2]), columns=2, bptt=5)
    task.training_step(windows[0], 0)
    carried = task._states["train"][0]                       # the forward direction's (h, c)
    assert carried is not None and not carried[0].requires_grad
    task.training_step(windows[1], 1)
    assert not torch.equal(task._states["train"][0][0], carried[0])
    task.on_train_epoch_start()
    assert "train" not in task._states


# ---------------------------------------------------------------------------
# Sampling


def test_sampling_settings_outside_their_range_are_errors():
    for bad, match in (({"temperature": 0}, "temperature is 0"), ({"temperature": -1.0}, "temperature"),
                       ({"top_p": 0.0}, r"top_p is 0.0; it must be in \(0, 1\]"), ({"top_p": 1.5}, "top_p"),
                       ({"top_k": 0}, "top_k is 0"), ({"max_tokens": -1}, "max_tokens"),
                       ({"seed": 99999999999999999999}, "seed is 99999999999999999999; it must be a whole number")):
        settings = {"max_tokens": 5, "temperature": 1.0, "top_k": None, "top_p": None, **bad}
        with pytest.raises(SeqtagError, match=match):
            check_sampling(**settings)


def test_top_k_top_p_and_greedy_limit_the_choice():
    logits = torch.tensor([0.0, 3.0, 2.9, 1.0, -1.0])
    generator = torch.Generator().manual_seed(0)
    assert sample_next(logits, greedy=True) == 1
    assert sample_next(logits, greedy=True, banned=(1,)) == 2
    drawn = {sample_next(logits, top_k=2, generator=generator) for _ in range(200)}
    assert drawn == {1, 2}
    assert {sample_next(logits, top_p=0.01, generator=generator) for _ in range(50)} == {1}
    # Token 1 alone holds about 46% of the mass, tokens 1 and 2 about 88%.
    assert {sample_next(logits, top_p=0.6, generator=generator) for _ in range(300)} == {1, 2}
    everything = {sample_next(logits, temperature=5.0, generator=generator) for _ in range(500)}
    assert everything == {0, 1, 2, 3, 4}


# ---------------------------------------------------------------------------
# Training, the saved model, generation and the recipes


@pytest.fixture(scope="module")
def char_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("charlm")
    path = _write(tmp / "verse.txt", VERSE * 12)
    recipe = load_recipe("char-lm", [*FAST, "train.max_epochs=3", "train.lr=0.01", "model.dropout=0.0"],
                         train=str(path))
    return train(recipe, tmp / "run"), path


@pytest.mark.slow
def test_char_model_trains_saves_and_evaluates(char_model):
    result, path = char_model
    names = sorted(p.name for p in result.model_dir.iterdir())
    assert names == ["config.json", "metrics.json", "model.safetensors", "tokenizer.json"]
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["task"] == "lm" and config["split"]["dev_fraction"] == 0.1
    dev = result.metrics["dev"]
    # The dev text is the file's last tenth, which repeats the verse: this measures fitting, not generalising
    # (a uniform guess over the ~30 characters is 30, character frequencies alone about 20; seeds 1-5 gave 1.7-2.3).
    assert dev["perplexity"] < 5
    assert dev["bits_per_char"] == pytest.approx(dev["loss"] / math.log(2))
    lm = seqtag.load(result.model_dir)
    figures = lm.evaluate(path)
    assert figures["tokens"] == len(VERSE * 12) - lm.data_config.eval_batch_size
    assert figures["perplexity"] == pytest.approx(math.exp(figures["loss"]))


@pytest.fixture(scope="module")
def smoke_lm(tmp_path_factory):
    """A character model after one training step: enough for what needs a model, not a good one."""
    tmp = tmp_path_factory.mktemp("smokelm")
    path = _write(tmp / "verse.txt", VERSE * 8)
    return train(load_recipe("char-lm", FAST, train=str(path)), tmp / "run", smoke=True).model_dir, path


def test_generation_is_repeatable_with_a_seed_and_greedy_is_deterministic(smoke_lm):
    lm = seqtag.load(smoke_lm[0])
    first = lm.generate("To be", max_tokens=40, temperature=0.8, top_k=10, seed=3)
    assert len(first) == len("To be") + 40, "a character model adds one character per token"
    assert lm.generate("To be", max_tokens=40, temperature=0.8, top_k=10, seed=3) == first
    assert lm.generate("To be", max_tokens=40, temperature=0.8, top_k=10, seed=4) != first, "the seed is used"
    greedy = lm.generate("To be", max_tokens=20, greedy=True, seed=1)
    assert lm.generate("To be", max_tokens=20, greedy=True, seed=2) == greedy, "greedy draws nothing at random"
    assert len(_generated(lm, "", max_tokens=5, seed=1)) == 5
    with pytest.raises(SeqtagError, match="only of tokens this model does not know"):
        lm.generate("ZZZ", max_tokens=5)
    with pytest.raises(SeqtagError, match="temperature is 0"):
        lm.generate("To be", temperature=0)


@pytest.mark.slow
def test_score_gives_log_probability_and_perplexity(char_model):
    lm = seqtag.load(char_model[0].model_dir)
    seen, unseen = lm.score("To be, or not to be"), lm.score("xq zj vk wq kz jx")
    assert seen["tokens"] == len("To be, or not to be")
    assert seen["log_probability"] < 0
    assert seen["perplexity"] == pytest.approx(math.exp(-seen["log_probability"] / seen["tokens"]))
    assert seen["perplexity"] < unseen["perplexity"]


def test_cli_generate_and_evaluate_json(smoke_lm):
    model, path = smoke_lm
    result = runner.invoke(app, ["generate", str(model), "--prompt", "Or to", "--max-tokens", "12", "--seed", "2",
                                 "--temperature", "0.7", "--top-p", "0.9", "--top-k", "5"])
    assert result.exit_code == 0, result.output
    sample = seqtag.load(model).generate("Or to", max_tokens=12, seed=2, temperature=0.7, top_p=0.9, top_k=5)
    assert result.stdout == sample + "\n", "the command passes every setting on"
    result = runner.invoke(app, ["evaluate", str(model), str(path), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert {"perplexity", "loss", "bits_per_char", "tokens"} <= set(figures)
    assert figures == seqtag.load(model).evaluate(path), "the command reports the library's figures"
    result = runner.invoke(app, ["generate", str(model), "--top-p", "1.5"])
    assert result.exit_code == 2 and "top_p is 1.5" in result.output
    result = runner.invoke(app, ["predict", str(model)], input="hello\n")
    assert result.exit_code == 2 and "language model" in result.output


@pytest.mark.slow
def test_resume_continues_the_run(tmp_path):
    path = _write(tmp_path / "verse.txt", VERSE * 6)
    first = load_recipe("char-lm", [*FAST, "train.max_epochs=1", "train.val_check_interval=1.0"], train=str(path))
    train(first, tmp_path / "run")
    longer = load_recipe("char-lm", [*FAST, "train.max_epochs=3", "train.val_check_interval=1.0"], train=str(path))
    result = train(longer, tmp_path / "run", resume=True)
    assert result.metrics["epochs"] == 3
    with open(tmp_path / "run" / "logs" / "metrics.csv", newline="") as handle:
        epochs = [row["epoch"] for row in csv.DictReader(handle) if row["dev_perplexity"]]
    assert epochs == ["0", "1", "2"]                         # the first run's dev row was kept


def test_resuming_a_run_already_past_max_epochs_is_a_clear_error(tmp_path):
    path = _write(tmp_path / "verse.txt", VERSE * 2)
    settings = [*FAST, "train.val_check_interval=1.0"]
    train(load_recipe("char-lm", [*settings, "train.max_epochs=3"], train=str(path)), tmp_path / "run")
    with pytest.raises(SeqtagError, match="Lightning refused these settings: .*max_epochs=1"):
        train(load_recipe("char-lm", [*settings, "train.max_epochs=1"], train=str(path)), tmp_path / "run", resume=True)


@pytest.mark.parametrize("name", ["char-lm", "word-lm", "bpe-lm"])
def test_recipe_smoke(name, tmp_path):
    path = _write(tmp_path / "corpus.txt", VERSE * 8)
    extra = ["data.vocab_size=300"] if name == "bpe-lm" else []
    given = {}
    if name == "word-lm":  # WikiText-style files: dev and test are their own texts
        given = {"dev": "the question is to be\nor not to be\n", "test": "to suffer the slings of fortune\n"}
    recipe = load_recipe(name, [*FAST, *extra], train=str(path),
                         **{split: str(_write(tmp_path / f"{split}.txt", text)) for split, text in given.items()})
    result = train(recipe, tmp_path / "run", smoke=True)
    lm = seqtag.load(result.model_dir)
    assert lm.level == {"char-lm": "char", "word-lm": "word", "bpe-lm": "bpe"}[name]
    assert math.isfinite(result.metrics["dev"]["perplexity"])
    for split, text in given.items():
        # Words and one <eos> per line, less the first token of each of the 3 evaluation columns.
        assert result.metrics[split]["tokens"] == len(text.split()) + text.count("\n") - 3, split
    _generated(lm, "To be", max_tokens=3, seed=0)


def test_hub_text_dataset_by_name_offline_from_a_local_folder(tmp_path):
    folder = tmp_path / "hubtext"
    folder.mkdir()
    _write(folder / "train.txt", VERSE * 4)
    dev = "To be, or not to be: that is the question.\n" * 2
    _write(folder / "validation.txt", dev)
    recipe = load_recipe("char-lm", [*FAST, "data.format=hub", f"data.hub_name={folder}"], train="train",
                         dev="validation")
    result = train(recipe, tmp_path / "run", smoke=True)
    # Every character of the validation split is predicted but each of the 3 evaluation columns' first.
    assert result.metrics["dev"]["tokens"] == len(dev) - 3


def test_text_shorter_than_one_window_is_an_error(tmp_path):
    path = _write(tmp_path / "short.txt", "tiny\n" * 4)
    recipe = load_recipe("char-lm", ["data.bptt=64", "data.batch_size=2"], train=str(path))
    with pytest.raises(InputError, match=r"short.txt: the training text has \d+ tokens, fewer than one BPTT window"):
        prepare_lm(recipe)


def test_recipe_rejects_a_tokenizer_the_task_does_not_use():
    with pytest.raises(SeqtagError, match="data.tokenizer is 'wordpiece', which task 'lm' does not use"):
        load_recipe("char-lm", ["data.tokenizer=wordpiece"])
    with pytest.raises(SeqtagError, match="'wikitext' .* needs data.tokenizer 'word'"):
        load_recipe("word-lm", ["data.tokenizer=char"])


def test_a_forward_and_backward_pair_trains_and_generates_forward(tmp_path):
    path = _write(tmp_path / "corpus.txt", VERSE * 8)
    # Stopped by max_steps before the first dev check: early stopping must not ask for a missing score.
    recipe = load_recipe("char-lm", [*FAST, "model.lm_directions=both", "train.max_steps=3",
                                     "train.val_check_interval=1.0"], train=str(path))
    result = train(recipe, tmp_path / "run")
    lm = seqtag.load(result.model_dir)
    assert lm.net.backward_encoder is not None
    assert math.isfinite(result.metrics["dev"]["perplexity"])
    _generated(lm, "To", max_tokens=4, seed=0)


def test_pretrained_vectors_start_a_word_model_and_are_refused_for_characters(tmp_path):
    corpus = _write(tmp_path / "corpus.txt", VERSE * 4)
    vectors = _write(tmp_path / "vectors.txt", "the " + " ".join(["0.5"] * 16) + "\nzebra " + " ".join(["1"] * 16) + "\n")
    recipe = load_recipe("word-lm", [*FAST, f"model.pretrained_vectors={vectors}", "model.freeze_embeddings=true"],
                         train=str(corpus), dev=str(corpus))
    objective = OBJECTIVES["lm"]
    recipe = objective.family.resolve(recipe)
    prepared = prepare_lm(recipe)
    net = objective.family.build_network(recipe.model, prepared.sizes)
    objective.start_network(net, recipe, prepared)
    weight = net.word_embedder().embedding.weight
    the = prepared.tokenizer.token_to_id("the")
    assert torch.equal(weight[the], torch.full((16,), 0.5))
    assert prepared.tokenizer.token_to_id("zebra") is None  # vectors do not grow the model's output vocabulary
    weight.sum().backward()
    assert weight.grad[the].abs().sum() == 0 and weight.grad[1].abs().sum() > 0   # only pretrained rows frozen
    chars = load_recipe("char-lm", [*FAST, f"model.pretrained_vectors={vectors}"], train=str(corpus))
    with pytest.raises(SeqtagError, match="pretrained_vectors needs data.tokenizer 'word'"):
        prepare_lm(chars)


@pytest.mark.slow
def test_an_interrupted_run_saves_its_best_weights_and_resumes_at_the_next_window(tmp_path, monkeypatch):
    path = _write(tmp_path / "verse.txt", VERSE * 12)
    recipe = load_recipe("char-lm", [*FAST, "train.max_epochs=2", "train.val_check_interval=0.25",
                                     "train.patience=0"], train=str(path))
    seen: list[tuple[int, list[int]]] = []
    original = Task.training_step

    def spy(task, batch, batch_idx):
        if stop_at is not None and task.global_step == stop_at:
            raise KeyboardInterrupt  # what Ctrl+C raises
        seen.append((batch_idx, batch["inputs"][0].tolist()))
        return original(task, batch, batch_idx)

    monkeypatch.setattr(Task, "training_step", spy)
    stop_at = 30
    first = train(recipe, tmp_path / "run")
    assert first.interrupted and (first.model_dir / "model.safetensors").is_file()
    seen.clear()
    stop_at = None
    result = train(recipe, tmp_path / "run", resume=True)
    windows = StreamWindows(prepare_lm(recipe).encoded["train"], recipe.data.batch_size, recipe.data.bptt)
    checked = seen[0][0]                     # the batches done when the last dev check saved last.ckpt
    assert 0 < checked <= 30
    assert seen[0][1] == windows[checked]["inputs"][0].tolist()   # not the stream's first window again
    assert len(seen) == (len(windows) - checked) + len(windows)    # the rest of epoch 1, then all of epoch 2
    assert result.metrics["epochs"] == 2


def test_language_model_scores_per_token_level():
    from seqtag.metrics import language_model_scores, perplexity

    char = language_model_scores(nats=200.0, predicted=100, text_tokens=104, characters=104,
                                 tokens_are_characters=True, tokens_cover_text=False)
    assert char == pytest.approx({"perplexity": math.exp(2.0), "loss": 2.0, "tokens": 100,
                                  "bits_per_char": 2.0 / math.log(2)})
    bpe = language_model_scores(nats=300.0, predicted=100, text_tokens=110, characters=330,
                                tokens_are_characters=False, tokens_cover_text=True)
    assert bpe["bits_per_char"] == pytest.approx(3.0 * 110 / (330 * math.log(2)))
    assert "bits_per_char" not in language_model_scores(300.0, 100, 110, 330, False, False)
    assert perplexity(1000.0) == math.inf
