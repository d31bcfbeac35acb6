"""seqtag: sequence labelling with masked bidirectional LSTMs, and LSTM language models.

    import seqtag
    tagger = seqtag.load("runs/demo/model")
    tagger.predict("Ada Lovelace was born in London.")

    classifier = seqtag.load("runs/mr/model")          # a model trained with task: classification
    classifier.predict(["a gorgeous , witty film", "dull"], top_k=1)

    lm = seqtag.load("runs/char-lm/model")              # a model trained with task: lm
    lm.generate("ROMEO:", max_tokens=200, temperature=0.8, seed=1)
"""
from .errors import ModelFileError  # errors imports nothing heavy

__version__ = "0.1.0"


def load(path, device="cpu"):
    """Load a saved model directory onto `device` (see `seqtag.predict.load`)."""
    from .predict import load as _load  # imported here so `import seqtag` stays quick

    return _load(path, device)


__all__ = ["load", "ModelFileError", "__version__"]
