"""Pretrained word vectors: they join the vocabulary and initialise the embedding rows, for taggers and
classifiers alike."""
from __future__ import annotations

import gzip
import json
import numpy as np
import pytest
import torch

import seqtag
from seqtag.config import load_recipe
from seqtag.data.vectors import coverage, first_words, load_vectors, match_words
from seqtag.errors import InputError, SeqtagError
from seqtag.objectives import OBJECTIVES
from seqtag.training import train


def _network(recipe):
    objective = OBJECTIVES[recipe.task]
    recipe = objective.family.resolve(recipe)
    prepared = objective.prepare(recipe)
    net = objective.family.build_network(recipe.model, prepared.sizes)
    objective.start_network(net, recipe, prepared)
    return prepared, net


def _tagger(ner_files, vectors, *overrides):
    recipe = load_recipe("conll-ner", ["model.word_dim=3", f"model.pretrained_vectors={vectors}", *overrides],
                         train=ner_files["train"], dev=ner_files["dev"])
    return _network(recipe)


def test_vectors_initialise_embeddings_and_extend_the_vocabulary(ner_files, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 3\nparis 0.5 -1 2\nzurich 1 1 1\n", encoding="utf-8")
    prepared, net = _tagger(ner_files, vectors)
    vocab = prepared.featurizer.words.get_vocab()
    assert "zurich" in vocab, "a pretrained word unseen in training still gets its own id"
    weights = net.word_embedder().embedding.weight
    torch.testing.assert_close(weights[vocab["paris"]], torch.tensor([0.5, -1.0, 2.0]))
    torch.testing.assert_close(weights[vocab["zurich"]], torch.tensor([1.0, 1.0, 1.0]))


def test_with_lowercasing_the_first_case_variant_in_the_file_wins(ner_files, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("Paris 1 2 3\nparis 9 9 9\nPARIS 7 7 7\n", encoding="utf-8")
    prepared, net = _tagger(ner_files, vectors)
    row = prepared.featurizer.words.get_vocab()["paris"]
    torch.testing.assert_close(net.word_embedder().embedding.weight[row], torch.tensor([1.0, 2.0, 3.0]))


def test_frozen_embeddings_keep_pretrained_rows_and_train_the_others(ner_files, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("paris 0.5 -1 2\n", encoding="utf-8")
    prepared, net = _tagger(ner_files, vectors, "model.freeze_embeddings=true")
    vocab = prepared.featurizer.words.get_vocab()
    weight = net.word_embedder().embedding.weight
    (weight * torch.randn_like(weight)).sum().backward()
    assert weight.grad[vocab["paris"]].abs().sum() == 0, "the pretrained row stays fixed"
    assert weight.grad[vocab["<unk>"]].abs().sum() > 0 and weight.grad[vocab["ada"]].abs().sum() > 0


def test_vectors_of_the_wrong_size_name_the_line(ner_files, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("paris 0.5 -1 2\noslo 1 1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"vectors.txt, line 2: expected a word and 3 numbers"):
        _tagger(ner_files, vectors)


def test_classifiers_use_pretrained_vectors_too(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\ngood film,pos\nbad film,neg\ngreat fun,pos\ndull plot,neg\n", encoding="utf-8")
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("film 1 2 3 4\nzebra 0 0 0 0\n", encoding="utf-8")
    recipe = load_recipe("sentiment", ["model.word_dim=4", f"model.pretrained_vectors={vectors}"], train=train,
                         dev=train)
    prepared, net = _network(recipe)
    vocab = prepared.featurizer.words.get_vocab()
    torch.testing.assert_close(net.word_embedder().embedding.weight[vocab["film"]], torch.tensor([1.0, 2, 3, 4]))
    assert "zebra" in vocab, "the file's first words join a classifier's vocabulary too"
    assert prepared.record.pretrained_coverage["types"] == 7
    bpe = load_recipe("sentiment", ["model.word_dim=4", f"model.pretrained_vectors={vectors}", "data.tokenizer=bpe"],
                      train=train, dev=train)
    with pytest.raises(SeqtagError, match="pretrained_vectors needs data.tokenizer 'word'"):
        _network(bpe)


# -- formats, one pass, what is kept -------------------------------------------------------------------------

WORDS = {"Paris": [0.5, -1.0, 2.0], "paris": [9.0, 9.0, 9.0], "zurich": [1.0, 1.0, 1.0], "ada": [0.25, 0.0, -3.0]}


def _text(header: bool, trailing: str = "") -> bytes:
    lines = [f"{word} {' '.join(map(str, values))}{trailing}\n" for word, values in WORDS.items()]
    return ((f"{len(WORDS)} 3\n" if header else "") + "".join(lines)).encode("utf-8")


def _binary(newlines: bool, vectors: dict | None = None) -> bytes:
    vectors = WORDS if vectors is None else vectors
    dim = len(next(iter(vectors.values())))
    records = [word.encode() + b" " + np.array(values, dtype="<f4").tobytes() + (b"\n" if newlines else b"")
               for word, values in vectors.items()]
    return f"{len(vectors)} {dim}\n".encode() + b"".join(records)


FILES = {
    "glove.txt": _text(header=False),
    "word2vec.txt": _text(header=True),
    "fasttext.vec": _text(header=True, trailing=" "),        # fastText and the C tool end lines with a space
    "crlf.txt": _text(header=False, trailing="\r"),
    "glove.txt.gz": gzip.compress(_text(header=False)),
    "c-tool.bin": _binary(newlines=True),                      # the original word2vec writes a newline
    "gensim.bin": _binary(newlines=False),                     # gensim does not
    "c-tool.bin.gz": gzip.compress(_binary(newlines=True)),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_format_is_recognised_and_read_alike(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(FILES[name])
    vectors = load_vectors(path, 3, wanted=WORDS, first_n=0)
    assert list(vectors) == list(WORDS), "file order, every wanted word"
    for word, values in WORDS.items():
        np.testing.assert_array_equal(vectors[word], np.array(values, dtype=np.float32))


def test_the_format_can_be_named(tmp_path):
    path = tmp_path / "vectors"
    path.write_bytes(_binary(newlines=False))
    assert set(load_vectors(path, 3, ["ada"], format="word2vec_binary")) == {"ada"}
    text = tmp_path / "text"
    text.write_bytes(_text(header=False))
    with pytest.raises(InputError, match=r"text, line 1: .*'word2vec_binary' but the first line is not a 'count dim'"):
        load_vectors(text, 3, ["ada"], format="word2vec_binary")
    with pytest.raises(SeqtagError, match="model.pretrained_format"):
        load_recipe("conll-ner", ["model.pretrained_format=glove"])


def test_only_the_wanted_words_and_the_first_n_are_kept_and_parsed(tmp_path):
    path = tmp_path / "vectors.txt"
    # "junk" has no numbers at all: never kept, so never parsed; its field count is still right.
    path.write_text("the 1 1 1\nof 2 2 2\njunk x y z\nZurich 3 3 3\nzurich 4 4 4\nParis 5 5 5\n", encoding="utf-8")
    vectors = load_vectors(path, 3, wanted={"zurich", "PARIS"}, first_n=2)
    assert list(vectors) == ["the", "of", "Zurich", "zurich", "Paris"]
    assert first_words(vectors, 2) == ["the", "of"]
    with pytest.raises(InputError, match=r"line 3: expected numbers after the word, found 'x'"):
        load_vectors(path, 3, wanted={"junk"})


def test_exact_forms_first_then_the_first_case_variant(tmp_path):
    vectors = {"Zurich": np.ones(2), "zurich": np.zeros(2), "Paris": np.full(2, 5.0)}
    assert match_words(vectors, ["zurich", "PARIS"], lowercase=False) == {"zurich": "zurich", "PARIS": "Paris"}
    assert match_words(vectors, ["zurich", "paris"], lowercase=True) == {"zurich": "Zurich", "paris": "Paris"}
    report = coverage({"zurich": "Zurich", "paris": "paris"}, {"zurich": 3, "paris": 1, "oslo": 4}, unknown_tokens=2)
    assert report == {"types": 3, "types_found": 2, "types_percent": 66.67, "tokens": 10, "tokens_found": 4,
                      "tokens_percent": 40.0, "lowercase_fallback_types": 1, "lowercase_fallback_tokens": 3}


# -- bad input ------------------------------------------------------------------------------------------------

def test_a_vector_size_other_than_word_dim_names_both_and_the_fix(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_bytes(_text(header=False))
    with pytest.raises(InputError, match=r"line 1: the vectors have 3 numbers .* model.word_dim is 5; set "
                                         r"--set model.word_dim=3"):
        load_vectors(path, 5, ["ada"])
    binary = tmp_path / "vectors.bin"
    binary.write_bytes(_binary(newlines=False))
    with pytest.raises(InputError, match=r"vectors.bin, line 1: the vectors have 3 numbers \(the header"):
        load_vectors(binary, 4, ["ada"])


def test_a_text_vector_size_changing_mid_file_names_the_line(tmp_path):
    path = tmp_path / "vectors.txt.gz"
    path.write_bytes(gzip.compress(b"3 3\nthe 1 2 3\nof 1 2 3\nand 1 2 3 4\n"))
    with pytest.raises(InputError, match=r"vectors.txt.gz, line 4: expected a word and 3 numbers like the lines "
                                         r"before, found 4: the vector size changes within the file"):
        load_vectors(path, 3, [])


def test_a_binary_vector_size_changing_mid_file_names_the_record_and_byte(tmp_path):
    path = tmp_path / "vectors.bin"
    good = _binary(newlines=True, vectors={"the": [1, 2, 3], "of": [4, 5, 6]})
    bad = b"and " + np.array([1, 2], dtype="<f4").tobytes() + b"\n" + b"to " + np.zeros(3, "<f4").tobytes() + b"\n"
    path.write_bytes(good.replace(b"2 3\n", b"4 3\n", 1) + bad)
    offset = len(good) + 4 + 12   # the 12 bytes of record 3's vector take its newline and 3 bytes of record 4
    with pytest.raises(InputError, match=rf"vectors.bin, record 4: \(byte {offset:,}\) expected the newline .* "
                                         r"\(the vector size changes within the file\)"):
        load_vectors(path, 3, [])


def test_a_binary_file_cut_short_is_named(tmp_path):
    path = tmp_path / "vectors.bin"
    whole = _binary(newlines=False)
    path.write_bytes(whole[:-5])
    with pytest.raises(InputError, match=r"vectors.bin, record 4: \(byte [\d,]+\) is cut short: .* download it "
                                         "again"):
        load_vectors(path, 3, [])
    path.write_bytes(whole.replace(b"4 3\n", b"6 3\n", 1))
    with pytest.raises(InputError, match=r"record 5: .* the header promises 6 vectors but the file ends after 4"):
        load_vectors(path, 3, [])


def test_missing_not_utf8_and_damaged_gzip_files(tmp_path):
    with pytest.raises(InputError, match=r"nowhere.txt: pretrained vector file not found"):
        load_vectors(tmp_path / "nowhere.txt", 3, [])
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("the 1 2 3\nZürich 1 2 3\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.txt, line 2: is not valid UTF-8"):
        load_vectors(latin, 3, [])
    packed = gzip.compress(_text(header=False) * 50)
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(packed[:len(packed) // 2])
    with pytest.raises(InputError, match=r"cut.txt.gz: is a damaged gzip file"):
        load_vectors(cut, 3, [])
    damaged = tmp_path / "damaged.txt.gz"
    damaged.write_bytes(packed[:20] + bytes(b ^ 0x55 for b in packed[20:40]) + packed[40:])
    with pytest.raises(InputError, match=r"damaged.txt.gz: is a damaged gzip file"):
        load_vectors(damaged, 3, [])


# -- the families ---------------------------------------------------------------------------------------------

def test_a_trained_tagger_carries_its_vectors_and_never_needs_the_file_again(ner_files, tmp_path):
    vectors = tmp_path / "vectors.bin"
    vectors.write_bytes(_binary(newlines=True, vectors={"Paris": [0.5, -1, 2], "zebra": [1, 1, 1],
                                                        "visited": [3, 2, 1]}))
    overrides = ["model.word_dim=3", f"model.pretrained_vectors={vectors}", "model.pretrained_max_words=2",
                 "model.hidden_size=4", "model.char_dim=4", "model.char_hidden=4", "train.progress_bar=false"]
    recipe = load_recipe("conll-ner", overrides, train=ner_files["train"], dev=ner_files["dev"])
    model_dir = train(recipe, tmp_path / "run", smoke=True).model_dir
    vectors.unlink()
    config = json.loads((model_dir / "config.json").read_text())
    report = config["pretrained_coverage"]
    assert report["types_found"] == 2 and report["lowercase_fallback_types"] == 1   # "visited", "paris" <- "Paris"
    assert 0 < report["tokens_percent"] < 100 and report["tokens"] > report["types"]
    model = seqtag.load(model_dir)
    vocab = model.featurizer.words.get_vocab()
    assert "zebra" in vocab, "one of the file's first two words"
    # A smoke run takes one optimiser step: the row has moved, but only a little, from the pretrained vector.
    row = model.net.word_embedder().embedding.weight[vocab["paris"]].detach()
    torch.testing.assert_close(row, torch.tensor([0.5, -1.0, 2.0]), atol=0.05, rtol=0)
    assert model.predict(["Ada visited Paris ."])[0].labels


def test_a_word_language_model_takes_vectors_for_its_vocabulary_only(tmp_path):
    text = tmp_path / "verse.txt"
    text.write_text("To be or not to be that is the question\n" * 12, encoding="utf-8")
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("zebra 0 0 0 0\nQuestion 1 2 3 4\n", encoding="utf-8")
    overrides = ["model.word_dim=4", f"model.pretrained_vectors={vectors}", "data.bptt=4", "data.batch_size=2"]
    recipe = load_recipe("word-lm", overrides, train=text)
    prepared, net = _network(recipe)
    vocab = prepared.tokenizer.get_vocab()
    assert "zebra" not in vocab, "a language model's vocabulary is its training words"
    torch.testing.assert_close(net.word_embedder().embedding.weight[vocab["question"]], torch.tensor([1.0, 2, 3, 4]))
    assert prepared.record.pretrained_coverage["types_found"] == 1, "\"question\" takes \"Question\""
    assert prepared.record.pretrained_coverage["lowercase_fallback_types"] == 1
    chars = load_recipe("char-lm", overrides, train=text)
    with pytest.raises(SeqtagError, match="pretrained_vectors needs data.tokenizer 'word' in a language model"):
        _network(chars)


def test_fine_tuning_takes_vectors_for_the_words_it_adds_only(tmp_path):
    from seqtag.finetuning import finetune

    small = ["train.progress_bar=false", "model.hidden_size=4", "model.word_dim=3", "model.char_hidden=4",
             "model.char_dim=4"]
    parent = train(load_recipe("demo", small), tmp_path / "parent", smoke=True).model_dir
    parent_model = seqtag.load(parent)
    old_vocab = parent_model.featurizer.words.get_vocab()
    old_word = next(word for word in old_vocab if word.isalpha())
    new = tmp_path / "new.conll"
    new.write_text(f"Aspirin\t_\tB-DRUG\nhelped\t_\tO\n{old_word}\t_\tO\n", encoding="utf-8")
    vectors = tmp_path / "vectors.txt"
    vectors.write_text(f"aspirin 1 2 3\n{old_word} 7 7 7\n", encoding="utf-8")
    result = finetune(parent, new, dev=new, out=tmp_path / "ft",
                      overrides=["train.max_epochs=1", f"model.pretrained_vectors={vectors}",
                                 "model.freeze_embeddings=true"])
    model = seqtag.load(result.model_dir)
    weight = model.net.word_embedder().embedding.weight.detach()
    vocab = model.featurizer.words.get_vocab()
    torch.testing.assert_close(weight[vocab["aspirin"]], torch.tensor([1.0, 2.0, 3.0]))
    assert not torch.equal(weight[vocab[old_word]], torch.tensor([7.0, 7.0, 7.0])), "the parent's row is its own"


@pytest.mark.parametrize("name", ["glove.txt", "crlf.txt", "c-tool.bin", "gensim.bin"])
def test_lines_and_records_cut_by_block_ends_read_alike(name, tmp_path, monkeypatch):
    from seqtag.data import vectors as module

    monkeypatch.setattr(module, "BLOCK", 7)   # every line and record crosses reads
    path = tmp_path / name
    path.write_bytes(FILES[name])
    read = load_vectors(path, 3, wanted=WORDS)
    assert list(read) == list(WORDS)
    for word, values in WORDS.items():
        np.testing.assert_array_equal(read[word], np.array(values, dtype=np.float32))
    if name == "glove.txt":
        path.write_bytes(FILES[name] + b"oslo 1 2\n")
        with pytest.raises(InputError, match=r"glove.txt, line 5: expected a word and 3 numbers"):
            load_vectors(path, 3, [])
