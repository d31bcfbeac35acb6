"""seqtag as a user installs it: the wheel ships the recipes and the demo corpus, installs no top-level `cli`
module, and `seqtag train demo` works from any folder, installed from the wheel or in editable mode.

The wheel test builds from a copy of the working tree (so no build/ folder is left in the checkout) with
the set-up's own setuptools (--no-build-isolation: no download), installs it without dependencies into a
throwaway virtual environment, and lends that environment the dependencies of the running one through a
.pth file. Only the wheel's seqtag is importable there: the checkout is never on its sys.path.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__",
                                   ".pytest_cache", "lightning_logs", ".hf_cache")


def test_pyproject_declares_what_the_code_needs():
    project = PYPROJECT["project"]
    # seqtag/text.py uses possessive quantifiers, new in Python 3.11.
    assert project["requires-python"] == ">=3.11"
    torch = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert "2.13.0" in SpecifierSet(torch.removeprefix("torch"))
    assert project["scripts"]["seqtag"] == "seqtag.__main__:main"
    assert "cli" not in PYPROJECT["tool"]["setuptools"].get("py-modules", [])


def test_every_package_under_seqtag_is_listed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "seqtag").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"


def _run(*command, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    scratch = tmp_path_factory.mktemp("wheel")
    source = scratch / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", scratch / "dist", source, cwd=scratch)
    (built,) = (scratch / "dist").glob("seqtag-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment holding the wheel; its python's path."""
    venv = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv)
    python = venv / "bin" / "python"
    # Installed before the dependencies are lent: pip must not see (or touch) the running set-up's seqtag.
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel,
         cwd=venv)
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=venv).stdout.strip()
    (Path(site) / "seqtag-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


@pytest.mark.slow
def test_wheel_ships_recipes_and_demo_data_and_no_cli_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in (ROOT / "recipes").glob("*.yaml"):
        assert f"seqtag/recipes/{recipe.name}" in names
    for split in ("train", "dev", "test"):
        assert f"seqtag/recipes/data/demo.{split}.conll" in names
    assert "seqtag/_cli/cli.py" in names
    assert not any(name.count("/") == 0 and name.endswith(".py") for name in names), "a top-level module"
    for module in (ROOT / "seqtag").rglob("*.py"):
        assert module.relative_to(ROOT).as_posix() in names


@pytest.mark.slow
def test_installed_wheel_trains_the_demo_from_another_folder(installed, tmp_path):
    code = ("import importlib.util, seqtag, seqtag.config; print(seqtag.__file__); "
            "print(seqtag.config.RECIPES_DIR); print(importlib.util.find_spec('cli'))")
    where = _run(installed, "-c", code, cwd=tmp_path).stdout.split()
    package = Path(where[0]).parent
    assert package.is_relative_to(installed.parent.parent), "seqtag must come from the wheel"
    assert where[1] == str(package / "recipes"), "the recipes must come from the installed package"
    assert where[2] == "None", "the wheel must not install a top-level module named cli"

    seqtag = installed.parent / "seqtag"
    assert _run(seqtag, "--version", cwd=tmp_path).stdout.startswith("seqtag ")
    done = _run(seqtag, "train", "demo", "--smoke", "--out", tmp_path / "run", cwd=tmp_path)
    assert done.stdout.startswith(f"model: {tmp_path / 'run' / 'model'}")


@pytest.mark.slow
def test_editable_install_trains_the_demo_from_another_folder(tmp_path):
    seqtag = Path(sys.executable).parent / "seqtag"
    if not seqtag.is_file():
        pytest.skip("no seqtag script beside this python (run scripts/setup.sh)")
    done = _run(seqtag, "train", "demo", "--smoke", "--out", tmp_path / "run", cwd=tmp_path)
    assert done.stdout.startswith(f"model: {tmp_path / 'run' / 'model'}")
    recipes = _run(sys.executable, "-c", "from seqtag.config import RECIPES_DIR; print(RECIPES_DIR)", cwd=tmp_path)
    assert recipes.stdout.strip() == str(ROOT / "recipes")
    assert _run(sys.executable, "-m", "seqtag", "--version", cwd=tmp_path).stdout.startswith("seqtag ")
