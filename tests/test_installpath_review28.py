"""Installing sddkit other ways than scripts/setup.sh: `pip install --no-deps` (a dependency left out),
`python -m sddkit`, and a checkout that `pip install .` built in.

Nothing is installed here: a missing package is simulated by ``sys.modules[name] = None`` (what Python's import
machinery raises ``ModuleNotFoundError`` for, as for a package that is not there).
"""

from __future__ import annotations

import runpy
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import sddkit
from sddkit.cli import main as cli_main
from sddkit.cli.dependencies import DEPENDENCY_MODULES, missing_dependency_message
from sddkit.cli.main import main

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DEPENDENCIES = PYPROJECT["project"]["dependencies"]


def _metadata_requires(name: str) -> list[str]:
    """sddkit's Requires-Dist lines as an installed copy has them (the dev extra's with their marker)."""
    assert name == "sddkit"
    dev = [f'{r}; extra == "dev"' for r in PYPROJECT["project"]["optional-dependencies"]["dev"]]
    return [*DEPENDENCIES, *dev]


# --- a dependency left out: one line naming it, not a traceback ---------------------------------------------------


def test_serve_without_uvicorn_says_what_to_install_in_one_line(monkeypatch, capsys):
    # `pip install --no-deps sddkit` then `sdd serve`: a ModuleNotFoundError traceback from inside
    # sddkit/cli/serve_cmd.py, as if sddkit were broken
    monkeypatch.setattr(metadata, "requires", _metadata_requires)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("sdd serve: error: 'uvicorn', a package sddkit needs, is missing"), err
    assert "pip install 'uvicorn>=0.29,<1'" in err
    assert "Traceback" not in err
    # a bug (a module of sddkit's own that does not import) is not dressed up as an install problem: its traceback
    from sddkit.cli import serve_cmd

    def run(args):
        raise ModuleNotFoundError("No module named 'sddkit.nowhere'", name="sddkit.nowhere")

    monkeypatch.setattr(serve_cmd, "run", run)
    with pytest.raises(ModuleNotFoundError, match="sddkit.nowhere"):
        main(["serve", "--port", "0"])


def test_a_missing_dependency_while_the_parsers_are_built_is_one_line(monkeypatch, capsys):
    # numpy is imported by the command modules themselves: without it even `sdd --help` raised
    def build():
        raise ModuleNotFoundError("No module named 'numpy'", name="numpy")

    monkeypatch.setattr(metadata, "requires", _metadata_requires)
    monkeypatch.setattr(cli_main, "_build_parsers", build)
    assert main(["--help"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sdd: error: 'numpy', a package sddkit needs"), err
    assert "pip install 'numpy>=1.26,<3'" in err and len(err.splitlines()) == 1


def test_every_declared_dependency_is_named_by_its_distribution(monkeypatch):
    # a dependency added to pyproject without its import name here would fall back to a traceback
    normalized = {Requirement(d).name.lower() for d in DEPENDENCIES}
    assert normalized <= {name.lower() for name in DEPENDENCY_MODULES.values()}
    monkeypatch.setattr(metadata, "requires", _metadata_requires)
    message = missing_dependency_message(ModuleNotFoundError("No module named 'yaml'", name="yaml"))
    assert message is not None and "pip install 'PyYAML>=6,<7'" in message
    message = missing_dependency_message(ModuleNotFoundError("No module named 'sklearn'", name="sklearn.metrics"))
    assert message is not None and "pip install 'scikit-learn>=1.4,<2'" in message
    # the dev extra's packages are not sddkit's run-time dependencies
    assert missing_dependency_message(ModuleNotFoundError("No module named 'selenium'", name="selenium")) is None


def test_torch_missing_points_at_the_cpu_build(monkeypatch):
    # PyPI's Linux torch is the CUDA build (gigabytes of nvidia-* packages): the hint must not lead there blindly
    monkeypatch.setattr(metadata, "requires", _metadata_requires)
    message = missing_dependency_message(ModuleNotFoundError("No module named 'torch'", name="torch"))
    assert message is not None and "pip install 'torch>=2.6,<2.14'" in message
    assert "download.pytorch.org/whl/cpu" in message


def test_the_requirement_is_the_bare_name_when_sddkit_is_not_installed(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", not_installed)
    message = missing_dependency_message(ModuleNotFoundError("No module named 'fastapi'", name="fastapi"))
    assert message is not None and "pip install 'fastapi'" in message


# --- python -m sddkit ---------------------------------------------------------------------------------------------


def test_python_m_sddkit_is_the_sdd_command(monkeypatch, capsys):
    # `pip install --user` puts `sdd` in ~/.local/bin, often not on PATH; `python -m sddkit` said "No module
    # named sddkit.__main__; 'sddkit' is a package and cannot be directly executed"
    monkeypatch.setattr(sys, "argv", ["sddkit", "--version"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("sddkit", run_name="__main__", alter_sys=True)
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"sddkit {sddkit.__version__}"


# --- pip install . in a checkout ----------------------------------------------------------------------------------


def test_a_checkout_ignores_what_pip_install_dot_builds_in_it():
    # `pip install /path/to/checkout` builds in the tree (setuptools' build/lib: a copy of every module and the
    # model), which `git status` then listed as 150 untracked files for `git add -A` to commit
    lines = (REPO / ".gitignore").read_text().splitlines()
    assert "/build/" in lines and "/dist/" in lines


def test_the_license_pyproject_declares_is_in_the_checkout():
    """pyproject declares Apache-2.0; setuptools ships a top-level LICENSE file in the wheel and sdist (its default
    license-files patterns), and there was none."""
    root = Path(sddkit.__file__).resolve().parents[2]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "Apache-2.0"
    text = (root / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_the_version_is_written_in_one_place():
    """pyproject's version was a second copy of sddkit.__version__ (what `sdd --version`, run records and model
    directories say); setuptools now reads it from the module."""
    root = Path(sddkit.__file__).resolve().parents[2]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sddkit.__version__"}
