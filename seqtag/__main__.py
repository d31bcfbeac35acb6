"""`python -m seqtag` and the `seqtag` console script: run the typer app written in cli.py.

Why a loader: the project keeps its CLI in cli.py at the repository root, outside the library folder,
and an installed wheel must not put a module with a name as common as `cli` into site-packages. So
pyproject.toml ships that one file inside the package, as `seqtag._cli.cli`. A source checkout or an
editable install has no such copy (setuptools' editable finder cannot map a module into a folder
without an `__init__.py`), and there the root file itself is loaded. Nothing here imports torch.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path


def load_cli():
    """The cli module: the wheel's copy if seqtag was installed from one, else the repository's cli.py."""
    try:
        return importlib.import_module("seqtag._cli.cli")
    except ModuleNotFoundError as err:
        if err.name not in ("seqtag._cli", "seqtag._cli.cli"):
            raise  # the CLI's own import failed: show that, not a confusing fallback
    if "cli" in sys.modules:
        return sys.modules["cli"]
    path = Path(__file__).resolve().parent.parent / "cli.py"
    spec = importlib.util.spec_from_file_location("cli", path)
    if spec is None or not path.is_file():
        raise SystemExit(f"seqtag: the command-line module is missing: neither seqtag._cli.cli is installed nor "
                         f"{path} exists. Reinstall seqtag (pip install .) or run from a full source checkout.")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cli"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    load_cli().app(prog_name="seqtag")


if __name__ == "__main__":
    main()
