"""Saved model directories (issue 11): every damaged or edited file is a ModelFileError naming it, from
`seqtag.load` and from the CLI alike, and nothing in the directory runs as code; a load while another process
saves reads one whole version; files and folders get the modes the umask gives."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import seqtag
from cli import app
from seqtag import artifact
from seqtag.config import load_recipe
from seqtag.families import FAMILIES
from seqtag.training import train

SMALL = ["train.progress_bar=false", "model.hidden_size=8", "model.word_dim=8", "model.num_layers=1",
         "model.char_hidden=4", "model.char_dim=4"]
REQUIRED = {name: family.required_files for name, family in FAMILIES.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny demo tagger, trained under umask 022."""
    previous = os.umask(0o022)
    try:
        return train(load_recipe("demo", SMALL), tmp_path_factory.mktemp("demo") / "run", smoke=True).model_dir
    finally:
        os.umask(previous)


@pytest.fixture
def model_dir(trained, tmp_path) -> Path:
    """A copy of the trained model to damage."""
    return Path(shutil.copytree(trained, tmp_path / "model"))


def _rewrite(name: str, change):
    """A damage: the JSON file `name` replaced by `change(its value)`."""
    def damage(model: Path) -> None:
        path = model / name
        path.write_text(json.dumps(change(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")
    return damage


def _config(edit):
    """A damage: config.json changed in place by `edit`."""
    return _rewrite("config.json", lambda config: (edit(config), config)[1])


def _convert_to_classification(config):
    """Every key a careful hand would change to make the tagger a classifier (whose network has the same
    tensors); only the weights' own record of their task is left."""
    config["task"] = config["recipe"]["task"] = "classification"
    config["recipe"]["data"]["format"] = "csv"
    config["recipe"]["model"]["head"] = "pooled"
    config.update(split=None, truncated=None)
    del config["file_scheme"], config["train_scheme"]


# (case, how to damage the copy, the file the error names, what it says)
CASES = [
    ("weights truncated", lambda m: (m / "model.safetensors").write_bytes((m / "model.safetensors").read_bytes()[:999]),
     "model.safetensors", "is not a complete safetensors file .*truncated or damaged"),
    ("weights empty", lambda m: (m / "model.safetensors").write_bytes(b""), "model.safetensors", "is empty"),
    ("weights garbage", lambda m: (m / "model.safetensors").write_bytes(os.urandom(5000)),
     "model.safetensors", "is not a complete safetensors file"),
    ("weights of another shape", _config(lambda c: c["recipe"]["model"].update(hidden_size=16)),
     "model.safetensors", r"does not match config.json \(a 'tagging' network: encoder.* is \(32, \d+\) torch.float32, "
                          r"expected \(64, \d+\)"),
    ("tokenizer broken", lambda m: (m / "word_tokenizer.json").write_text('{"version": "1.0", "model": '),
     "word_tokenizer.json", "is not a tokenizer file that `tokenizers` can read"),
    ("tokenizer without a model", lambda m: (m / "word_tokenizer.json").write_text("{}"),
     "word_tokenizer.json", "is not a tokenizer file .*Model missing"),
    ("tokenizer of another model", lambda m: shutil.copy(m / "char_tokenizer.json", m / "word_tokenizer.json"),
     "word_tokenizer.json", "holds 54 entries, but config.json says the network was built for 179"),
    ("labels shorter", _rewrite("labels.json", lambda labels: labels[:-1]),
     "labels.json", r"lists 12 labels, but config.json \(sizes.labels\) and the weights' output layer have 13"),
    ("labels longer", _rewrite("labels.json", lambda labels: [*labels, "B-NEW"]),
     "labels.json", "lists 14 labels"),
    ("labels not names", _rewrite("labels.json", lambda labels: {"O": 0}),
     "labels.json", "holds dict .*expected the list of label names"),
    ("labels repeated", _rewrite("labels.json", lambda labels: [labels[0], *labels[:-1]]),
     "labels.json", "must list distinct label names"),
    ("metrics broken", lambda m: (m / "metrics.json").write_text("{"), "metrics.json", "is not valid JSON"),
    ("config unknown key", _config(lambda c: c.update(notes="best run")),
     "config.json", "unknown key 'notes'; a config.json holds only"),
    ("config unknown recipe key", _config(lambda c: c["recipe"]["model"].update(hiden_size=8)),
     "config.json", "Unknown recipe key 'model.hiden_size' in the saved recipe. Did you mean 'model.hidden_size'"),
    ("config missing key", _config(lambda c: c.pop("file_scheme")), "config.json", "the key 'file_scheme' is missing"),
    ("config missing recipe key", _config(lambda c: c["recipe"]["data"].pop("lowercase")),
     "config.json", "the saved recipe lacks data.lowercase, so the model cannot be rebuilt"),
    ("config missing size", _config(lambda c: c["sizes"].pop("labels")),
     "config.json", "sizes is .*expected a count of each of words, chars, labels"),
    ("config wrong type", _config(lambda c: c["recipe"]["model"].update(hidden_size="eight")),
     "config.json", "model.hidden_size is 'eight'; expected a whole number"),
    ("config scheme", _config(lambda c: c.update(train_scheme="bilou")),
     "config.json", "train_scheme is 'bilou'; expected one of 'iob1', 'iob2', 'bioes', 'none'"),
    ("config recipe section", _config(lambda c: c["recipe"].update(model=3)),
     "config.json", "recipe section 'model' is 3; expected a mapping of settings"),
    ("config embedders as text", _config(lambda c: c["recipe"]["model"].update(embedders="word,char_cnn")),
     "config.json", "model.embedders is 'word,char_cnn'; a saved recipe lists them"),
    ("config not a mapping", _rewrite("config.json", lambda c: [c]), "config.json", "holds list .*expected a mapping of settings"),
    ("task edited", _config(lambda c: c.update(task="classification")),
     "config.json", "task is 'classification' but the recipe it was trained with says task 'tagging'"),
    ("task edited in the recipe too", _config(lambda c: (c.update(task="classification"),
                                                         c["recipe"].update(task="classification"))),
     "config.json", "task is 'classification', but model.safetensors holds the weights of a 'tagging' model"),
    ("task converted with care", _config(_convert_to_classification),
     "config.json", "task is 'classification', but model.safetensors holds the weights of a 'tagging' model"),
    ("task edited to a language model", _config(lambda c: (c.update(task="lm"), c["recipe"].update(task="lm"))),
     "model", r"missing tokenizer.json; a 'lm' model \(as config.json says\) holds"),
    ("task unknown", _config(lambda c: c.update(task="parsing")),
     "config.json", "task is 'parsing'; expected one of 'tagging', 'classification', 'lm'"),
    ("file missing", lambda m: (m / "labels.json").unlink(), "model", "this model directory is missing labels.json"),
    ("folder under a file's name", lambda m: ((m / "labels.json").unlink(), (m / "labels.json").mkdir()),
     "labels.json", "cannot be read"),
]


@pytest.mark.parametrize("damage, name, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_damaged_or_edited_model_directory_is_a_clear_error_from_load_and_cli(model_dir, tmp_path, damage, name,
                                                                                 message):
    damage(model_dir)
    at = model_dir if name == "model" else model_dir / name
    with pytest.raises(seqtag.ModelFileError, match=message) as caught:
        seqtag.load(model_dir)
    assert caught.value.path == str(at)
    assert str(caught.value).startswith(f"{at}: ")

    text = tmp_path / "in.txt"
    text.write_text("Ada Lovelace visited Paris.\n", encoding="utf-8")
    for command in (["predict", str(model_dir), str(text)], ["evaluate", str(model_dir), str(text)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and result.stdout == ""
        assert result.stderr.strip().splitlines()[-1] == f"error: {caught.value}"


def test_a_task_edit_is_caught_in_weights_that_do_not_name_their_task(model_dir):
    """Weights saved before they named their task: the config.json entries of another family, or a recipe that
    the new task cannot read, give the edit away."""
    weights = model_dir / "model.safetensors"
    save_file(load_file(str(weights)), str(weights))  # no metadata
    original = (model_dir / "config.json").read_text()
    edits = [(_config(lambda c: (c.update(task="classification"), c["recipe"].update(task="classification"))),
              "'file_scheme' is not a key of a 'classification' model .*the task was edited"),
             (_config(lambda c: (c.update(task="classification", split=None, truncated=None),
                                 c["recipe"].update(task="classification"), c.pop("file_scheme"),
                                 c.pop("train_scheme"))),
              "config.json: data.format is 'conll', which task 'classification' cannot read")]
    for edit, message in edits:
        (model_dir / "config.json").write_text(original)
        edit(model_dir)
        with pytest.raises(seqtag.ModelFileError, match=message):
            seqtag.load(model_dir)
    (model_dir / "config.json").write_text(original)
    assert seqtag.load(model_dir).predict("Ada visited Paris .").labels


class _Planted:
    """Unpickling this calls open(marker, "w"): the marker file appears if anything unpickles a planted file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "labels.json", "word_tokenizer.json",
                                  "metrics.json"])
def test_a_pickle_planted_under_a_model_file_name_is_refused_and_never_run(model_dir, tmp_path, name, protocol):
    marker = tmp_path / "pickle-ran"
    (model_dir / name).write_bytes(pickle.dumps(_Planted(marker), protocol=protocol))
    with pytest.raises(seqtag.ModelFileError, match=f"{name}: is "):
        seqtag.load(model_dir)
    assert not marker.exists()


def test_model_file_error_is_a_seqtag_error_exported_at_the_top():
    from seqtag.errors import ModelFileError, SeqtagError

    assert seqtag.ModelFileError is ModelFileError and issubclass(ModelFileError, SeqtagError)


# -- modes ---------------------------------------------------------------------------------------------------

def _modes(directory: Path) -> tuple[int, set[int]]:
    return (stat.S_IMODE(directory.stat().st_mode),
            {stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()})


def _parts(model: Path) -> dict:
    return artifact.read_model(model, REQUIRED)


def _save(target: Path, parts: dict, **changes) -> Path:
    parts = {**parts, **changes}
    config = {k: v for k, v in parts["config"].items() if k != "format_version"}
    return artifact.save_model(target, config, parts["state_dict"],
                               {"word_tokenizer.json": parts["words"], "char_tokenizer.json": parts["chars"]},
                               parts["labels"], parts["metrics"])


def test_a_trained_model_is_readable_as_the_umask_says(trained):
    assert _modes(trained) == (0o755, {0o644})


@pytest.mark.parametrize("umask, folder, files", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o002, 0o775, 0o664)])
def test_saved_folders_and_files_get_the_modes_the_umask_gives(trained, tmp_path, umask, folder, files):
    parts = _parts(trained)
    previous = os.umask(umask)
    try:
        target = _save(tmp_path / "out" / "model", parts)
        assert _modes(target) == (folder, {files})
        _save(target, parts)  # replacing a model: the renamed-in folder gets the same modes
        assert _modes(target) == (folder, {files})
    finally:
        os.umask(previous)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"], "no staging or retired folder is left"


def test_saving_an_undeclared_config_key_is_refused(trained, tmp_path):
    parts = _parts(trained)
    with pytest.raises(ValueError, match=r"keys \['smoke'\] are not declared in seqtag.artifact.CONFIG_KEYS"):
        _save(tmp_path / "model", parts, config={**parts["config"], "smoke": True})


# -- loads while another process saves -----------------------------------------------------------------------

def _versions(trained: Path) -> dict[str, dict]:
    """Two versions of one model that differ in every part a load checks: labels reversed with the head's rows
    (so each version is a working model), and markers in config.json and metrics.json."""
    parts = _parts(trained)
    flipped = dict(parts["state_dict"])
    for name in ("head.linear.weight", "head.linear.bias"):
        flipped[name] = flipped[name].flip(0).contiguous()
    config = json.loads(json.dumps(parts["config"]))
    config["recipe"]["data"]["eval_batch_size"] = 128
    return {"A": {**parts, "metrics": {"version": "A"}},
            "B": {**parts, "config": config, "state_dict": flipped, "labels": parts["labels"][::-1],
                  "metrics": {"version": "B"}}}


def _version_of(model, versions: dict) -> set[str]:
    """Which version each part of a loaded tagger comes from: one version when nothing was mixed."""
    first_bias = float(versions["A"]["state_dict"]["head.linear.bias"][0])
    return {model.metrics["version"],
            "A" if model.data_config.eval_batch_size == 256 else "B",
            "A" if model.featurizer.labels.labels == versions["A"]["labels"] else "B",
            "A" if float(model.net.head.linear.bias[0]) == first_bias else "B"}


@pytest.mark.slow
def test_a_load_while_saves_replace_the_model_reads_one_whole_version(trained, tmp_path):
    versions = _versions(trained)
    target = _save(tmp_path / "model", versions["A"])
    stop, saves = threading.Event(), [0]

    def keep_saving():
        while not stop.is_set():
            _save(target, versions["AB"[saves[0] % 2]])
            saves[0] += 1

    saver = threading.Thread(target=keep_saving)
    saver.start()
    seen, loads, end = set(), 0, time.monotonic() + 3
    try:
        while time.monotonic() < end or loads < 50:
            parts = _version_of(seqtag.load(target), versions)
            assert len(parts) == 1, f"load {loads} mixed versions {parts}"
            seen |= parts
            loads += 1
    finally:
        stop.set()
        saver.join()
    assert saves[0] > 10 and seen == {"A", "B"}, (saves, seen, loads)


def test_a_reader_pinned_to_a_version_never_reads_a_file_of_the_next(trained, tmp_path):
    versions = _versions(trained)
    target = _save(tmp_path / "model", versions["A"])
    pinned = artifact._Version(target)
    try:
        assert json.loads(pinned.read("metrics.json")) == {"version": "A"}
        kept = os.open("labels.json", os.O_RDONLY, dir_fd=pinned.fd)  # a file already open when the save comes
        _save(target, versions["B"])
        assert pinned.replaced()
        with open(kept, "rb") as handle:
            assert json.loads(handle.read()) == versions["A"]["labels"], "an open file keeps its whole content"
        with pytest.raises(artifact._Replaced):  # the retired version is gone: read the new one instead
            pinned.read("metrics.json")
    finally:
        pinned.close()
    assert seqtag.load(target).metrics == {"version": "B"}


def test_a_save_stopped_between_its_two_renames_is_named(trained, tmp_path, monkeypatch):
    target = _save(tmp_path / "model", _parts(trained))
    os.replace(target, tmp_path / ".model.old")  # what a save killed after its first rename leaves
    monkeypatch.setattr(artifact, "READ_ATTEMPTS", 2)
    with pytest.raises(seqtag.ModelFileError, match=r"model: the model is being written \(or was changed\) by "
                                                    r"another process.*previous model is in .*\.model\.old; rename"):
        seqtag.load(target)
    with pytest.raises(seqtag.ModelFileError, match="no model directory here"):
        seqtag.load(tmp_path / "elsewhere")


def test_a_model_saved_before_a_recipe_key_existed_loads_with_the_value_it_was_trained_with(model_dir):
    from seqtag.config import ADDED_KEYS

    assert ADDED_KEYS, "keys added after format 2 are listed with their old behaviour"
    predicted = seqtag.load(model_dir).predict("Ada visited Paris .").labels
    config = json.loads((model_dir / "config.json").read_text())
    for key in ADDED_KEYS:
        section, name = key.split(".")
        del config["recipe"][section][name]
    (model_dir / "config.json").write_text(json.dumps(config))
    model = seqtag.load(model_dir)
    assert model.predict("Ada visited Paris .").labels == predicted
    for key, value in ADDED_KEYS.items():
        section, name = key.split(".")
        assert getattr(getattr(model_recipe(model_dir), section), name) == value
    del config["recipe"]["model"]["hidden_size"]  # not an added key: the file is damaged
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(seqtag.ModelFileError, match="lacks model.hidden_size"):
        seqtag.load(model_dir)


def model_recipe(model_dir: Path):
    """The recipe a loaded model was rebuilt from (ADDED_KEYS filled in)."""
    from seqtag.families import _network

    parts = artifact.read_model(model_dir, REQUIRED)
    return _network(parts, model_dir, FAMILIES["tagging"], {"file_scheme": None, "train_scheme": None})[1]
