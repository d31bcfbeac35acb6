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


def load(path, device="cpu", backend=None, quantize=None):
    """Load a saved model directory onto `device` (see `seqtag.loading.load`).

    A folder written by `seqtag export --format onnx` loads on onnxruntime (`backend="onnx"`, chosen by
    itself for such a folder), with the same API and results and without importing torch. `quantize="int8"`
    quantizes a PyTorch model's LSTM/GRU/Linear layers to int8 for the CPU (see `seqtag.quantize`)."""
    with kept_process_state():  # the imports below, torch's and numpy's, add warnings filters
        from .onnx_predict import is_export, load_export  # torch-free

        if backend not in (None, "torch", "onnx"):
            raise SeqtagError(f"backend is {backend!r}; expected 'torch' or 'onnx'.")
        exported = is_export(path)
        if backend == "onnx" or (backend is None and exported):
            if not exported:
                raise SeqtagError(f"{path} is a PyTorch model directory; make its ONNX folder first: seqtag export "
                                  f"{path} --format onnx, then load that folder.")
            if quantize is not None:
                raise SeqtagError("quantize= is for the PyTorch backend; an int8 ONNX model is exported with "
                                  "seqtag export MODEL --format onnx --int8.")
            if str(device) != "cpu":
                raise SeqtagError(f"device is {device!r}; exported models run on onnxruntime's CPU provider.")
            return load_export(path)
        if exported:
            raise SeqtagError(f"{path} is an ONNX export; load it with backend='onnx' (or none), or load the "
                              "PyTorch model it was exported from (export.json names it).")
        from .loading import load as _load

        model = _load(path, device)
        if quantize is not None:
            from .quantize import quantize_predictor

            model = quantize_predictor(model, quantize)
        return model


def train(recipe, train=None, dev=None, test=None, out=None, *, resume=False, overwrite=False, smoke=False,
          verbose=False, **settings):
    """Train a recipe (a name from recipes/ or a YAML path) as `seqtag train` does and return its
    `TrainResult` (`model_dir`, `metrics`, ...). `settings` are `--set` keys, written model__hidden_size=64 or
    **{"train.max_epochs": 5}. `out` defaults to runs/NAME.

    Quiet by default: the libraries' banners, tips, warnings and progress bars are kept out of stdout and
    stderr, and seqtag's own lines (files read, one per epoch, why training ended) are records of the "seqtag"
    logger (`logging.basicConfig(level=logging.INFO)` shows them). `verbose=True` prints all of it."""
    with kept_process_state():  # imports (Lightning, torch, numpy) add warnings filters; Trainers set signals
        from .progress import python_api_output
        from .training import train_recipe

        with python_api_output(verbose):
            return train_recipe(recipe, {"train": train, "dev": dev, "test": test}, out, resume=resume,
                                overwrite=overwrite, smoke=smoke, settings=settings)


def finetune(model_dir, train, dev=None, test=None, out=None, *, resume=False, overwrite=False, smoke=False,
             verbose=False, **settings):
    """Fine-tune the saved model in `model_dir` (never changed) on new data, as `seqtag finetune` does, and
    return its `TrainResult`. `settings` are `--set` keys: finetune__freeze="encoder", train__max_epochs=5.
    Quiet unless `verbose`, as `train`."""
    with kept_process_state():  # as in `train`
        from .finetuning import finetune as _finetune
        from .progress import python_api_output
        from .training import settings_as_overrides

        with python_api_output(verbose):
            return _finetune(model_dir, train, dev, test, out, settings_as_overrides(settings), resume=resume,
                             overwrite=overwrite, smoke=smoke)


__all__ = ["load", "train", "finetune", "ModelFileError", "SeqtagError", "__version__"]
