"""Where seqtag finds its bundled files. Imports nothing heavy: the CLI reads it to list the recipes in --help."""
from __future__ import annotations

from pathlib import Path

# An installed wheel carries the recipes inside the package (pyproject.toml maps seqtag.recipes onto recipes/);
# a source checkout or an editable install has them beside the package. max() keeps the first folder that exists.
RECIPES_DIR = max((Path(__file__).resolve().parent / "recipes", Path(__file__).resolve().parent.parent / "recipes"),
                  key=Path.is_dir)
