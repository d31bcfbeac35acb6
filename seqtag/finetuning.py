"""Fine-tuning: load a saved model, adapt it to new data, train on.

    seqtag finetune MODEL --train FILE [--dev FILE] [--test FILE] [--out DIR] [--set KEY=VALUE ...] [--resume]

The parent's saved recipe rebuilds its network, featurizer and labels; the data is read with the parent's
reader settings (unless `--set data.*` changes them); labels, words and characters the data brings are appended
(`data/growth.py`), and the head and embedding rows grow by copying the parent's rows in. Training then runs as
`seqtag train` runs: the same `training.train`, started `FromParent` (`starts.py`), with its checkpoints, early
stopping and `--resume`, into a new model directory whose config.json records the parent, the data and the
settings. The parent's directory is only read. A parent without the "lm" embedder can gain it (`--set
model.embedders=[..., lm] --set model.lm=PAIR`): the encoder's inputs grow by the pair's states, from zero weights.
"""
from __future__ import annotations

from pathlib import Path

from .artifact import read_model
from .config import Recipe, finetune_recipe
from .data.growth import Growth
from .data.readers import FORMATS
from .embedders import LM_EMBEDDER
from .errors import InputError, SeqtagError
from .families import FAMILIES
from .starts import FromParent
from . import training
from .training import TrainResult


def _first_rows(path: str) -> list[str]:
    """The first non-blank, non-comment lines of a file (none when it cannot be read: the reader reports that)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.rstrip("\n") for _, line in zip(range(200), handle)]
    except OSError:
        return []
    return [line for line in lines if line.strip() and not line.startswith("#")]


def check_reader(recipe: Recipe, parent_dir: Path, changed: list[str]) -> None:
    """A fine-tuning file in another format than the parent's reader, with no data.format given, is an error
    before anything is read."""
    mismatch = FORMATS[recipe.data.format].mismatch
    if "data.format" in changed or mismatch is None:
        return
    data = recipe.data
    for split in ("train", "dev", "test"):
        source = getattr(data, split)
        rows = _first_rows(source) if source is not None else []
        problem = mismatch(rows) if rows else None
        if problem:
            raise InputError(source, None, f"{problem}, but the model {parent_dir} reads data.format="
                             f"{data.format!r}. Give the file's format with --set data.format=... (and its columns, "
                             "e.g. data.label_column), or convert the file.")


def default_out(parent_dir: Path) -> Path:
    """runs/NAME-finetuned, NAME being the parent's run folder (for RUN/model) or its directory."""
    name = parent_dir.resolve().parent.name if parent_dir.name == "model" else parent_dir.resolve().name
    return Path("runs") / f"{name}-finetuned"


def _refuse_parent_as_out(parent_dir: Path, out: Path) -> None:
    parent, target = parent_dir.resolve(), out.resolve()
    if target == parent or parent.is_relative_to(target) or target.is_relative_to(parent):
        raise SeqtagError(f"--out {out} is (or holds, or is inside) the model being fine-tuned, {parent_dir}; the "
                          "parent is never changed: give another folder, e.g. --out runs/my-finetuned.")


def finetune(parent: str | Path, train: str | Path | None, dev: str | Path | None = None,
             test: str | Path | None = None, out: str | Path | None = None, overrides: list[str] = (),
             resume: bool = False, overwrite: bool = False, smoke: bool = False, cache_dir: str | None = None,
             callbacks: list = ()) -> TrainResult:
    """Fine-tune the model in `parent` on new data and save a new model directory (a `training.TrainResult`).

    `overrides` are `--set` assignments: `finetune.*` (see `config.FinetuneConfig`), `train.*`, reader settings
    `data.*`, the model's dropout, pretrained-vector and lm_tune/lm_lr keys, and an added "lm" embedder with its
    model.lm (`config._added_pair`). Without train.lr, the learning rate is the
    parent's times finetune.lr_factor. `callbacks`: Lightning callbacks that watch the run, as for `train`."""
    parent_dir = Path(parent)
    out = Path(out) if out is not None else default_out(parent_dir)
    _refuse_parent_as_out(parent_dir, out)
    parts = read_model(parent_dir, {name: family.required_files for name, family in FAMILIES.items()})
    family = FAMILIES[parts["config"]["task"]]
    predictor = family.load(parts, parent_dir)  # checks the saved recipe and weights fit together
    recipe, settings, changed = finetune_recipe(parts["config"]["recipe"], list(overrides), train=train, dev=dev,
                                                test=test)
    if recipe.data.train is None:
        raise SeqtagError("No fine-tuning data: give --train FILE.")
    if "model.pretrained_vectors" not in changed:
        recipe.model.pretrained_vectors = None  # the parent's rows are in its weights; its vector file may be gone
    if settings.replay and family.causal:
        raise SeqtagError("finetune.replay mixes sentences or texts into each epoch; a language model reads one "
                          "stream: append the original text to the fine-tuning text instead.")
    if settings.keep_old == "distill" and family.causal:
        if "finetune.keep_old" in changed:
            raise SeqtagError("finetune.keep_old=distill holds a tagger's or classifier's old labels; a language "
                              "model has none: use finetune.keep_old=none, or append the original text to the "
                              "fine-tuning text.")
        settings.keep_old = "none"  # the default for language models
    check_reader(recipe, parent_dir, changed)
    growth = Growth(settings, featurizer=getattr(predictor, "featurizer", None),
                    tokenizer=getattr(predictor, "tokenizer", None))
    if settings.replay:
        growth.replay = str(Path(settings.replay).resolve())
    growth.adds_language_models = (LM_EMBEDDER in recipe.model.embedders
                                   and LM_EMBEDDER not in parts["config"]["recipe"]["model"]["embedders"])
    return training.train(recipe, out, resume=resume, smoke=smoke, cache_dir=cache_dir, overwrite=overwrite,
                          init=FromParent(parent_dir, parts, growth, changed), callbacks=callbacks)

