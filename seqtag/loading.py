"""`seqtag.load(path)`: a saved model directory back as the predictor its family declares.

This is the prediction layer: it imports neither Lightning, the training modules nor `datasets`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .artifact import read_model
from .families import FAMILIES


def load(path: str | Path, device: str | torch.device = "cpu"):
    """Load a saved model directory — a tagger, a classifier or a language model, as its config.json says —
    onto `device` ("cpu", "cuda", "cuda:1", ...). Needs no network and not the training corpus."""
    parts = read_model(path, {name: family.required_files for name, family in FAMILIES.items()})
    return FAMILIES[parts["config"]["task"]].load(parts, Path(path), device)
