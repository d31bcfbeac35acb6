"""seqtag: sequence labelling with masked bidirectional LSTMs, and LSTM language models.

    import seqtag
    tagger = seqtag.load("runs/demo/model")
    tagger.predict("Ada Lovelace was born in London.")

    classifier = seqtag.load("runs/mr/model")          # a model trained with task: classification
    classifier.predict(["a gorgeous , witty film", "dull"], top_k=1)

    lm = seqtag.load("runs/char-lm/model")              # a model trained with task: lm
    lm.generate("ROMEO:", max_tokens=200, temperature=0.8, seed=1)

    result = seqtag.train("demo", out="runs/demo", model__hidden_size=64)     # as `seqtag train`
    tuned = seqtag.finetune("runs/demo/model", train="mine.conll", out="runs/mine", finetune__freeze="encoder")

Importing seqtag is quick: each function imports what it needs when called. `load` never imports the
training stack (Lightning, datasets); `train` and `finetune` do.
"""
from .errors import ModelFileError, SeqtagError  # errors imports nothing heavy
from .process_state import kept_process_state  # standard library only: the import stays quick
from .version import __version__


def load(path, device="cpu"):
    """Load a saved model directory onto `device` (see `seqtag.loading.load`)."""
    with kept_process_state():  # the imports below, torch's and numpy's, add warnings filters
        from .loading import load as _load

        return _load(path, device)


def train(recipe, train=None, dev=None, test=None, out=None, *, resume=False, overwrite=False, smoke=False,
          **settings):
    """Train a recipe (a name from recipes/ or a YAML path) as `seqtag train` does and return its
    `TrainResult` (`model_dir`, `metrics`, ...). `settings` are `--set` keys, written model__hidden_size=64 or
    **{"train.max_epochs": 5}. `out` defaults to runs/NAME."""
    with kept_process_state():  # imports (Lightning, torch, numpy) add warnings filters; Trainers set signals
        from .training import train_recipe

        return train_recipe(recipe, {"train": train, "dev": dev, "test": test}, out, resume=resume,
                            overwrite=overwrite, smoke=smoke, settings=settings)


def finetune(model_dir, train, dev=None, test=None, out=None, *, resume=False, overwrite=False, smoke=False,
             **settings):
    """Fine-tune the saved model in `model_dir` (never changed) on new data, as `seqtag finetune` does, and
    return its `TrainResult`. `settings` are `--set` keys: finetune__freeze="encoder", train__max_epochs=5."""
    with kept_process_state():  # as in `train`
        from .finetuning import finetune as _finetune
        from .training import settings_as_overrides

        return _finetune(model_dir, train, dev, test, out, settings_as_overrides(settings), resume=resume,
                         overwrite=overwrite, smoke=smoke)


__all__ = ["load", "train", "finetune", "ModelFileError", "SeqtagError", "__version__"]
