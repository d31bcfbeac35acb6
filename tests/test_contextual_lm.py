"""Contextual string embeddings: a character LM pair trained from a file, a folder or a glob (recipe contextual-lm),
and the "lm" embedder that feeds a tagger or a classifier the pair's states around each word; the saved model
carries the pair, so it predicts without the LM folder."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import seqtag
from seqtag.config import RECIPES_DIR, load_recipe
from seqtag.data.batching import EncodedBatches
from seqtag.data.text_readers import text_files
from seqtag.errors import SeqtagError
from seqtag.families import FAMILIES
from seqtag.training import train

TEXT = ("Radia Torvalds met the team from Wayne Foundation yesterday.\n"
        "She said that Wilson lives near Sydney, and prices rose in Poland.\n"
        "The team visited Paris on Monday; Ada stayed in Oslo.\n")
TINY_LM = ["train.progress_bar=false", "model.hidden_size=12", "model.word_dim=8", "data.bptt=16",
           "data.batch_size=4", "data.eval_batch_size=3", "train.val_check_interval=1.0"]
TINY_TAGGER = ["train.progress_bar=false", "model.hidden_size=8", "model.word_dim=8", "model.char_hidden=4",
               "model.char_dim=4"]


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A contextual-lm pair trained for one epoch on one small file."""
    tmp = tmp_path_factory.mktemp("pair")
    corpus = _write(tmp / "corpus.txt", TEXT * 6)
    recipe = load_recipe("contextual-lm", [*TINY_LM, "train.max_epochs=1"], train=str(corpus))
    return train(recipe, tmp / "lm").model_dir


@pytest.fixture(scope="module")
def tagger(pair, tmp_path_factory):
    """A demo tagger with [word, lm], one training step, trained from a copy of the pair that is then deleted."""
    tmp = tmp_path_factory.mktemp("tagger")
    copy = shutil.copytree(pair.parent, tmp / "lm")
    recipe = load_recipe("demo", [*TINY_TAGGER, "model.embedders=[word,lm]", f"model.lm={copy}"])
    model_dir = train(recipe, tmp / "run", smoke=True).model_dir
    shutil.rmtree(copy)
    return model_dir


def test_the_pair_trains_both_directions_from_a_file(pair):
    config = json.loads((pair / "config.json").read_text())
    assert config["recipe"]["model"]["lm_directions"] == "both" and config["recipe"]["data"]["tokenizer"] == "char"
    metrics = json.loads((pair / "metrics.json").read_text())
    assert metrics["dev"]["bits_per_char"] > 0
    state = load_file(pair / "model.safetensors")
    assert any(name.startswith("backward_encoder.") for name in state)


def test_a_folder_and_a_glob_name_the_text_files(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "more").mkdir(parents=True)
    _write(folder / "b.txt", TEXT * 3)
    _write(folder / "more" / "a.txt", TEXT * 3)
    _write(folder / "notes.md", "not text for the model\n")
    assert text_files(str(folder)) == [str(folder / "b.txt"), str(folder / "more" / "a.txt")]
    assert text_files(str(folder / "**" / "*.txt")) == [str(folder / "more" / "a.txt")]  # glob's own rules
    from_folder = train(load_recipe("contextual-lm", TINY_LM, train=str(folder)), tmp_path / "folder", smoke=True)
    from_glob = train(load_recipe("contextual-lm", TINY_LM, train=str(folder / "*.txt")), tmp_path / "glob",
                      smoke=True)
    # Both files against one: twice the text, the last tenth of each cut off as dev.
    assert abs(from_folder.metrics["train_tokens"] - 2 * from_glob.metrics["train_tokens"]) <= 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeqtagError, match="holds no .txt file"):
        text_files(str(tmp_path / "empty"))


def test_the_tagger_carries_the_pair_and_predicts_without_its_folder(tagger, pair):
    names = sorted(path.name for path in tagger.iterdir())
    assert "lm_tokenizer.json" in names and "char_tokenizer.json" not in names
    config = json.loads((tagger / "config.json").read_text())
    model = config["recipe"]["model"]
    assert (model["lm_cell"], model["lm_dim"], model["lm_hidden_size"], model["lm_layers"]) == ("lstm", 8, 12, 1)
    assert config["sizes"]["lm_chars"] == json.loads((pair / "config.json").read_text())["sizes"]["words"]
    loaded = seqtag.load(tagger)
    sentence = loaded.predict("Radia Torvalds visited Paris .")
    assert [token.text for token in sentence.tokens] == ["Radia", "Torvalds", "visited", "Paris", "."]
    # Windows of a long sentence slice the words' pieces of the text like every other feature.
    long = ["Wilson", "lives", "near", "Sydney", "."] * 5
    assert len(loaded.predict([long], max_tokens=8)[0].tokens) == len(long)
    assert loaded.evaluate(RECIPES_DIR / "data" / "demo.test.conll")["sentences"] > 0


def test_fixed_language_models_keep_their_weights_and_tuned_ones_learn(tagger, pair, tmp_path):
    theirs = load_file(pair / "model.safetensors")
    frozen = load_file(tagger / "model.safetensors")
    for mine, name in [("embedders.lm.forward_lm.weight_hh_l0", "encoder.rnn.weight_hh_l0"),
                       ("embedders.lm.backward_lm.weight_ih_l0", "backward_encoder.rnn.weight_ih_l0"),
                       ("embedders.lm.embedding.weight", "embedders.word.embedding.weight")]:
        assert torch.equal(frozen[mine], theirs[name]), mine
    recipe = load_recipe("demo", [*TINY_TAGGER, "model.embedders=[word,lm]", f"model.lm={pair}",
                                  "model.lm_tune=true", "model.lm_lr=0.05"])
    tuned = load_file(train(recipe, tmp_path / "tuned", smoke=True).model_dir / "model.safetensors")
    assert not torch.equal(tuned["embedders.lm.forward_lm.weight_hh_l0"], theirs["encoder.rnn.weight_hh_l0"])
    assert not torch.equal(tuned["embedders.lm.backward_lm.weight_hh_l0"], theirs["backward_encoder.rnn.weight_hh_l0"])


def _word_vectors(loaded, sentences):
    features = loaded.featurizer.encode(sentences)
    batch = EncodedBatches.from_lists({key: features[key] for key in ("word_ids", "lm_char_ids")})[
        list(range(len(sentences)))]
    with torch.no_grad():
        return loaded.net.embedders["lm"](batch.features, batch.mask)


def test_a_words_vector_is_the_pairs_states_around_it_in_its_sentence(tagger, pair):
    loaded = seqtag.load(tagger)
    hidden = 12
    vectors = _word_vectors(loaded, [["Ada", "visited", "Paris"], ["Ada", "visited", "Paris", "today"],
                                     ["Paris", "rose"]])
    paris, paris_today, paris_first = vectors[0, 2], vectors[1, 2], vectors[2, 0]
    assert torch.equal(paris[:hidden], paris_today[:hidden]), "the forward state reads the left context only"
    assert not torch.allclose(paris[hidden:], paris_today[hidden:]), "the backward one reads the right context"
    assert not torch.allclose(paris, paris_first)
    # The same states from the language model pair itself, run over the sentence as one line.
    lm = seqtag.load(pair)
    ids = torch.tensor([lm.encode("\nAda visited Paris\n")])
    embed = lm.net.embedders["word"].embedding
    with torch.no_grad():
        forward, _ = lm.net.encoder.rnn(embed(ids))
        backward, _ = lm.net.backward_encoder.rnn(embed(ids.flip(1)))
    backward = backward.flip(1)
    first, last = len("\nAda visited "), len("\nAda visited Paris") - 1
    assert torch.allclose(paris[:hidden], forward[0, last], atol=1e-6)
    assert torch.allclose(paris[hidden:], backward[0, first], atol=1e-6)


def test_the_featurizer_and_the_embedder_agree_on_the_lm_feature_and_its_chunks():
    # The featurizer keeps its own copies (it must not import torch, for the ONNX path); they must stay equal.
    from seqtag import embedders
    from seqtag.data import featurizer

    assert featurizer.LM_CHAR_IDS == embedders.LM_FEATURE
    assert featurizer.LM_CHUNK_ROWS == embedders.LM_CHUNK_ROWS


# Two encoded sentences, a short one and a long one, in the lm feature's character ids (9 characters).
SHORT = {"word_ids": [5, 6], "lm_char_ids": [[2, 3, 4], [8, 5]]}
LONG = {"word_ids": [7, 8, 9], "lm_char_ids": [[2, 5, 5, 6, 7, 3, 3], [8, 4], [8, 6, 6, 6, 6, 6, 6, 6, 6]]}


def _tiny_embedder():
    """An `lm` embedder with random fixed language models of 3 units, in evaluation mode."""
    from seqtag.config import ModelConfig
    from seqtag.embedders import ContextualStrings

    torch.manual_seed(0)
    model = ModelConfig(lm_cell="lstm", lm_dim=4, lm_hidden_size=3, lm_layers=1)
    return ContextualStrings(model, {"lm_chars": 9}).eval()


def test_padding_and_other_sentences_never_reach_a_words_vector():
    from seqtag.data.batching import collate

    embedder, short, long = _tiny_embedder(), SHORT, LONG
    alone, padded = collate([short]), collate([long, short])
    with torch.no_grad():
        vectors_alone = embedder(alone.features, alone.mask)
        vectors_padded = embedder(padded.features, padded.mask)
    torch.testing.assert_close(vectors_padded[1, :2], vectors_alone[0])
    assert torch.equal(vectors_padded[1, 2], torch.zeros(6)), "a padding word's vector is zero"
    assert not any(p.requires_grad for p in embedder.parameters()), "fixed unless model.lm_tune"


def test_kept_vectors_equal_computed_ones_whatever_batch_a_sentence_comes_in():
    from seqtag.data.batching import collate

    embedder, short, long = _tiny_embedder(), SHORT, LONG
    other = {"word_ids": [5], "lm_char_ids": [[2, 3, 4, 4]]}
    batches = [collate([long, short]), collate([short, other]), collate([other, long, short])]
    with torch.no_grad():
        expected = [embedder(b.features, b.mask) for b in batches]
    computed_rows = []
    states = embedder._states
    embedder._states = lambda pieces, mask: computed_rows.append(len(pieces)) or states(pieces, mask)
    embedder.keep_states(1)
    kept = embedder.kept
    for batch, vectors in zip(batches, expected):
        torch.testing.assert_close(embedder(batch.features, batch.mask), vectors, rtol=1e-6, atol=1e-7)
    assert computed_rows == [2, 1], "each sentence ran once; `short` came padded wider in the first batch"
    assert len(kept.vectors) == 3
    # Without room for a sentence, it is computed every time, and still right.
    embedder.keep_states(30 / 2 ** 20)        # 30 bytes: room for `other` (1 word x 6 floats) only, once seen
    for batch, vectors in zip(batches, expected):
        torch.testing.assert_close(embedder(batch.features, batch.mask), vectors, rtol=1e-6, atol=1e-7)
    assert len(embedder.kept.vectors) == 1 and computed_rows[2:] == [2, 2, 2]
    embedder.keep_states(0)
    assert embedder.kept is None
    embedder.tune = True
    embedder.keep_states(1)
    assert embedder.kept is None, "tuned language models change: nothing is kept"


def test_training_with_kept_lm_vectors_learns_the_same_weights(pair, tmp_path, monkeypatch):
    from seqtag.embedders import ContextualStrings

    settings = [*TINY_TAGGER, "model.embedders=[word,lm]", f"model.lm={pair}", "train.max_epochs=3",
                "train.patience=0"]
    computed_rows = []
    states = ContextualStrings._states
    monkeypatch.setattr(ContextualStrings, "_states",
                        lambda self, pieces, mask: computed_rows.append(len(pieces)) or states(self, pieces, mask))
    weights, rows = {}, {}
    for budget in (0, 64):
        computed_rows.clear()
        recipe = load_recipe("demo", [*settings, f"train.cache_mb={budget}"])
        weights[budget] = load_file(train(recipe, tmp_path / f"kept{budget}").model_dir / "model.safetensors")
        rows[budget] = sum(computed_rows)
    # Kept: every training and dev sentence runs through the pair once (and the test set after training), not
    # once per epoch.
    assert rows[64] < rows[0] / 2
    assert weights[0].keys() == weights[64].keys()
    for name in weights[0]:
        torch.testing.assert_close(weights[64][name], weights[0][name], rtol=1e-4, atol=1e-5, msg=name)


def test_a_classifier_reads_the_pair_too(pair, tmp_path):
    path = _write(tmp_path / "train.csv", "text,label\n" + "".join(
        f"{text},{label}\n" for text, label in [("Paris was great fun", "pos"), ("a dull day in Oslo", "neg")] * 4))
    recipe = load_recipe("sentiment", [*TINY_TAGGER, "model.embedders=[word,lm]", f"model.lm={pair}"],
                         train=str(path))
    model_dir = train(recipe, tmp_path / "run", smoke=True).model_dir
    result = seqtag.load(model_dir).predict("Wayne Foundation was great")
    assert result.label in ("pos", "neg")


def test_model_lm_missing_or_not_a_pair_is_a_clear_error(tmp_path, pair):
    def resolve(*settings):
        FAMILIES["tagging"].resolve(load_recipe("demo", ["model.embedders=[word,lm]", *settings]))

    with pytest.raises(SeqtagError, match="model.lm does not say"):
        resolve()
    with pytest.raises(SeqtagError, match="holds no saved model"):
        resolve(f"model.lm={tmp_path / 'nowhere'}")
    forward_only = tmp_path / "forward"
    forward_only.mkdir()
    config = json.loads((pair / "config.json").read_text())
    config["recipe"]["model"]["lm_directions"] = "forward"
    _write(forward_only / "config.json", json.dumps(config))
    with pytest.raises(SeqtagError, match="reads forward only"):
        resolve(f"model.lm={forward_only}")
    config["task"] = "tagging"
    _write(forward_only / "config.json", json.dumps(config))
    with pytest.raises(SeqtagError, match="holds a 'tagging' model"):
        resolve(f"model.lm={forward_only}")
    with pytest.raises(SeqtagError, match="does not name 'lm'"):
        FAMILIES["tagging"].resolve(load_recipe("demo", [f"model.lm={pair}"]))


def test_a_tagger_and_a_classifier_with_lm_features_export_and_predict_the_same(tagger, pair, tmp_path):
    pytest.importorskip("onnxruntime")
    from seqtag.export import export_onnx

    from test_export import _assert_same_tagging, _padded_sentences

    folder = export_onnx(tagger, tmp_path / "onnx")
    assert (folder / "lm_tokenizer.json").is_file()
    torch_model, onnx_model = seqtag.load(tagger), seqtag.load(folder)
    assert onnx_model.backend == "onnx"
    # Lines of 1 to 100 words in one batch (most of each line padding for the others), unknown characters,
    # empty input, and windows of an over-long sentence.
    _assert_same_tagging(torch_model, onnx_model, _padded_sentences(3), batch_size=128)
    _assert_same_tagging(torch_model, onnx_model, ["Zoë met Ada in Zürich !", "", "Wilson lives near Sydney ."])
    _assert_same_tagging(torch_model, onnx_model, [["Wilson", "lives", "near", "Sydney", "."] * 20], max_tokens=16)
    crf = load_recipe("demo", [*TINY_TAGGER, "model.embedders=[word,char_cnn,lm]", f"model.lm={pair}",
                               "model.head=crf"])
    crf_model = train(crf, tmp_path / "crf", smoke=True).model_dir
    _assert_same_tagging(seqtag.load(crf_model), seqtag.load(export_onnx(crf_model, tmp_path / "crf-onnx")),
                         _padded_sentences(4)[:50], batch_size=64)
    texts = _write(tmp_path / "train.csv", "text,label\n" + "".join(
        f"{text},{label}\n" for text, label in [("Paris was great fun", "pos"), ("a dull day in Oslo", "neg")] * 4))
    recipe = load_recipe("sentiment", [*TINY_TAGGER, "model.embedders=[word,lm]", f"model.lm={pair}"],
                         train=str(texts))
    classifier = train(recipe, tmp_path / "classifier", smoke=True).model_dir
    ours, theirs = seqtag.load(classifier), seqtag.load(export_onnx(classifier, tmp_path / "classifier-onnx"))
    sample = ["a good film", "Zoë found the plot dull", ""]
    for a, b in zip(ours.probabilities(sample), theirs.probabilities(sample)):
        assert a == pytest.approx(b, abs=1e-4)


def test_a_tagger_with_lm_features_fine_tunes_and_so_does_the_pair_on_new_text(tagger, pair, tmp_path):
    from seqtag.finetuning import finetune

    from conftest import write_conll

    # The tagger, on new sentences with a new type and a character neither it nor its pair has seen (é).
    new = write_conll(tmp_path / "new.conll", [[("José", "_", "B-DRUG"), ("took", "_", "O"), ("aspirin", "_", "B-DRUG"),
                                                (".", "_", "O")], [("Ada", "_", "B-PER"), ("left", "_", "O")]])
    tuned = finetune(tagger, new, dev=new, out=tmp_path / "tuned", overrides=["train.max_epochs=1"]).model_dir
    before, after = load_file(tagger / "model.safetensors"), load_file(tuned / "model.safetensors")
    for name in ("embedders.lm.forward_lm.weight_hh_l0", "embedders.lm.backward_lm.weight_ih_l0"):
        assert torch.equal(before[name], after[name]), name   # the pair stays fixed unless model.lm_tune
    rows = before["embedders.lm.embedding.weight"].shape[0]
    assert torch.equal(after["embedders.lm.embedding.weight"][:rows], before["embedders.lm.embedding.weight"])
    assert "B-DRUG" in seqtag.load(tuned).labels
    assert len(seqtag.load(tuned).predict("José took aspirin .").tokens) == 4
    # The pair itself, fine-tuned on new-domain text, then read by a new tagger.
    domain = _write(tmp_path / "domain.txt", "Ibuprofen and aspirin ease pain; José takes both.\n" * 20)
    new_pair = finetune(pair, domain, out=tmp_path / "pair2", overrides=["train.max_epochs=1"]).model_dir
    moved = load_file(new_pair / "model.safetensors")
    assert not torch.equal(moved["encoder.rnn.weight_hh_l0"], load_file(pair / "model.safetensors")["encoder.rnn.weight_hh_l0"])
    recipe = load_recipe("demo", [*TINY_TAGGER, "model.embedders=[word,lm]", f"model.lm={new_pair}"])
    reader = train(recipe, tmp_path / "reader", smoke=True).model_dir
    carried = load_file(reader / "model.safetensors")
    assert torch.equal(carried["embedders.lm.forward_lm.weight_hh_l0"], moved["encoder.rnn.weight_hh_l0"])


def test_a_tagger_without_lm_features_gains_them_when_fine_tuned(pair, tmp_path):
    """`--set model.embedders=[..., lm] --set model.lm=PAIR` on a parent without the embedder: the child carries
    the pair, its encoder reads the pair's states through new input columns that start at zero (so it first scores
    as the parent did), and those columns learn."""
    from seqtag.finetuning import finetune

    from conftest import write_conll

    parent = train(load_recipe("demo", [*TINY_TAGGER, "train.max_epochs=2"]), tmp_path / "parent").model_dir
    new = write_conll(tmp_path / "new.conll", [[("Wilson", "_", "B-PER"), ("visited", "_", "O"), ("Oslo", "_", "B-LOC"),
                                                (".", "_", "O")], [("Ada", "_", "B-PER"), ("left", "_", "O")]] * 3)
    copy = shutil.copytree(pair.parent, tmp_path / "lm")
    adds = ["model.embedders=[word,char_cnn,lm]", f"model.lm={copy}", "train.max_epochs=2"]
    before = load_file(parent / "model.safetensors")
    width = before["encoder.rnn.weight_ih_l0"].shape[1]

    # At a learning rate that moves nothing, the child is the parent plus the pair's zero-weighted states.
    still = load_file(finetune(parent, new, dev=new, out=tmp_path / "still",
                               overrides=[*adds, "train.lr=1e-12"]).model_dir / "model.safetensors")
    for name in ("encoder.rnn.weight_ih_l0", "encoder.rnn.weight_ih_l0_reverse"):
        assert still[name].shape[1] == width + 2 * 12, name   # the pair's hidden size, both directions
        assert still[name][:, width:].abs().max() < 1e-9, name
        assert torch.allclose(still[name][:, :width], before[name], atol=1e-9), name
    sentence = "Wilson visited Sydney ."
    expected = [token.probability for token in seqtag.load(parent).predict(sentence).tokens]
    got = [token.probability for token in seqtag.load(tmp_path / "still" / "model").predict(sentence).tokens]
    assert got == pytest.approx(expected, abs=1e-6)

    tuned_dir = finetune(parent, new, dev=new, out=tmp_path / "tuned", overrides=adds).model_dir
    tuned = load_file(tuned_dir / "model.safetensors")
    assert tuned["encoder.rnn.weight_ih_l0"][:, width:].abs().max() > 1e-4   # the new columns learnt
    theirs = load_file(pair / "model.safetensors")
    assert torch.equal(tuned["embedders.lm.forward_lm.weight_hh_l0"], theirs["encoder.rnn.weight_hh_l0"])
    assert torch.equal(tuned["embedders.lm.embedding.weight"], theirs["embedders.word.embedding.weight"])
    model = json.loads((tuned_dir / "config.json").read_text())["recipe"]["model"]
    assert model["embedders"] == ["word", "char_cnn", "lm"] and model["lm_hidden_size"] == 12
    shutil.rmtree(copy)   # the child carries the pair
    assert [t.text for t in seqtag.load(tuned_dir).predict(sentence).tokens] == sentence.split()


def test_a_classifier_without_lm_features_gains_them_when_fine_tuned(pair, tmp_path):
    from seqtag.finetuning import finetune

    path = _write(tmp_path / "train.csv", "text,label\n" + "".join(
        f"{text},{label}\n" for text, label in [("Paris was great fun", "pos"), ("a dull day in Oslo", "neg")] * 4))
    parent = train(load_recipe("sentiment", TINY_TAGGER, train=str(path)), tmp_path / "parent", smoke=True).model_dir
    child = finetune(parent, path, out=tmp_path / "child", smoke=True,
                     overrides=["model.embedders=[word,char_cnn,lm]", f"model.lm={pair}"]).model_dir
    assert "embedders.lm.forward_lm.weight_hh_l0" in load_file(child / "model.safetensors")
    assert seqtag.load(child).predict("Wayne Foundation was great").label in ("pos", "neg")


def test_fine_tuning_adds_the_lm_embedder_last_and_keeps_a_parents_pair(tagger, pair, tmp_path):
    from seqtag.config import finetune_recipe

    plain = load_recipe("demo", TINY_TAGGER).to_dict()   # embedders [word, char_cnn]
    with pytest.raises(SeqtagError, match=r"can add the 'lm' embedder, last: --set model.embedders=\[word, char_cnn, lm\]"):
        finetune_recipe(plain, ["model.embedders=[word,lm]", f"model.lm={pair}"])
    with pytest.raises(SeqtagError, match="has no 'lm' embedder to read it"):
        finetune_recipe(plain, [f"model.lm={pair}"])
    recipe, _, _ = finetune_recipe(plain, ["model.embedders=[word,char_cnn,lm]", f"model.lm={pair}"])
    assert recipe.model.embedders == ["word", "char_cnn", "lm"] and recipe.model.lm_hidden_size == 0   # read at start
    reads_pair = json.loads((tagger / "config.json").read_text())["recipe"]
    with pytest.raises(SeqtagError, match="keeps them"):
        finetune_recipe(reads_pair, [f"model.lm={tmp_path}"])
    with pytest.raises(SeqtagError, match="keeps them"):
        finetune_recipe(reads_pair, ["model.embedders=[word]"])
    same, _, _ = finetune_recipe(reads_pair, [f"model.lm={reads_pair['model']['lm']}", "model.lm_tune=true"])
    assert same.model.lm_tune and same.model.lm_hidden_size == 12


def test_a_run_folder_of_a_model_with_the_pair_can_be_overwritten(pair, tmp_path):
    """Every file a model folder holds is one seqtag writes (lm_tokenizer.json too), so --overwrite replaces it."""
    recipe = load_recipe("demo", [*TINY_TAGGER, "model.embedders=[word,lm]", f"model.lm={pair}"])
    first = train(recipe, tmp_path / "run", smoke=True).model_dir
    assert (first / "lm_tokenizer.json").is_file()
    again = train(recipe, tmp_path / "run", smoke=True, overwrite=True).model_dir
    assert sorted(p.name for p in again.iterdir()) == ["config.json", "labels.json", "lm_tokenizer.json",
                                                      "metrics.json", "model.safetensors", "word_tokenizer.json"]
