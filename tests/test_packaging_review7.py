"""Packaging and set-up: what the wheel ships, honest dependency bounds, and scripts/setup.sh's Python check.

All offline: setup.sh runs against stand-in interpreters (it stops before anything is installed), and the wheel
is built from a copy of the project with ``--no-build-isolation --no-index --no-deps`` (seconds, no download).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _lower_bound(requirement: str) -> Version | None:
    lows = [Version(s.version) for s in Requirement(requirement).specifier if s.operator in (">=", "==", "~=")]
    return max(lows) if lows else None


def _dependency(name: str) -> str:
    found = [d for d in PYPROJECT["project"]["dependencies"] if Requirement(d).name.lower() == name]
    assert len(found) == 1, found
    return found[0]


# --- scripts/setup.sh: Python 3.11 is checked before anything is created or installed ---------------------------


def _fake_python(path: Path, version: str) -> Path:
    """A stand-in interpreter: answers ``-V`` with ``version``, the 3.11 check (``-c``) as that version would, and
    logs every call (a ``-m venv`` or ``-m pip`` call it logs is setup.sh going ahead)."""
    ok = version.startswith("3.11.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{path.parent}/calls.log"\n'
        f'case "$1" in -V|--version) echo "Python {version}"; exit 0;; -c) exit {0 if ok else 1};; esac\n'
        "exit 1\n"
    )
    path.chmod(0o755)
    return path


def _run_setup(project: Path, python: Path | None) -> subprocess.CompletedProcess:
    (project / "scripts").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "scripts" / "setup.sh", project / "scripts" / "setup.sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(SDD_SKIP_MAIN_JOB="1", PIP_NO_INDEX="1")  # nothing may be downloaded, whatever goes wrong
    if python is not None:
        env["PYTHON"] = str(python)
    return subprocess.run(
        ["bash", str(project / "scripts" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60
    )


def _calls(folder: Path) -> str:
    log = folder / "calls.log"
    return log.read_text() if log.exists() else ""


def test_setup_refuses_another_python_before_creating_the_venv(tmp_path):
    # it went on to create a 3.10 .venv and `pip install torch==2.13.0` there: no local wheel for that Python,
    # so pip fetched torch (a CUDA build) from the index, and later runs reused that .venv
    fake = _fake_python(tmp_path / "bin" / "python3.10", "3.10.13")
    project = tmp_path / "project"
    done = _run_setup(project, fake)
    assert done.returncode != 0
    assert "needs Python 3.11" in done.stderr and "3.10.13" in done.stderr, done.stderr
    assert "-m venv" not in _calls(fake.parent)
    assert not (project / ".venv").exists()


def test_setup_refuses_an_existing_venv_of_another_python(tmp_path):
    project = tmp_path / "project"
    venv_python = _fake_python(project / ".venv" / "bin" / "python", "3.12.1")
    good = _fake_python(tmp_path / "bin" / "python3.11", "3.11.7")
    done = _run_setup(project, good)
    assert done.returncode != 0
    assert "3.12.1" in done.stderr and "rm -rf .venv" in done.stderr, done.stderr
    assert "-m pip" not in _calls(venv_python.parent)  # nothing installed into the wrong .venv


def test_setup_goes_ahead_with_python_311(tmp_path):
    fake = _fake_python(tmp_path / "bin" / "python3.11", "3.11.7")
    done = _run_setup(tmp_path / "project", fake)
    # the stand-in cannot create a venv, so the script stops there: but it got past the check
    assert "-m venv .venv" in _calls(fake.parent), (done.stdout, done.stderr)
    assert "needs Python 3.11" not in done.stderr


# --- pyproject.toml ---------------------------------------------------------------------------------------------


def test_license_is_an_spdx_expression_for_setuptools_77():
    # the `license = {text = ...}` table is deprecated: setuptools announced builds using it stop after 2027-02-18,
    # and pip's isolated build (setup.sh's editable install) always takes the newest setuptools
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    requires = {Requirement(r).name: r for r in PYPROJECT["build-system"]["requires"]}
    low = _lower_bound(requires["setuptools"])
    assert low is not None and low >= Version("77"), requires


def test_torch_lower_bound_is_one_transformers_accepts():
    # transformers 5 disables PyTorch below 2.6 ("PyTorch >= 2.6 is required"), so with the old torch>=2.4 an
    # install that honoured the bounds could not build any pretrained encoder
    torch_low = _lower_bound(_dependency("torch"))
    assert torch_low is not None and torch_low >= Version("2.6")
    needed = [
        _lower_bound(r)
        for r in metadata.requires("transformers") or []
        if Requirement(r).name == "torch" and Requirement(r).marker is not None
    ]
    needed = [v for v in needed if v is not None]
    assert all(torch_low >= v for v in needed), (torch_low, needed)


def test_py_typed_marker_exists_and_is_package_data():
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["sddkit"]
    assert (REPO / "src" / "sddkit" / "py.typed").is_file()


# --- the wheel --------------------------------------------------------------------------------------------------


def _setuptools_version() -> Version | None:
    try:
        return Version(metadata.version("setuptools"))
    except metadata.PackageNotFoundError:
        return None


@pytest.mark.skipif(
    (_setuptools_version() or Version("0")) < Version("77"), reason="building the wheel offline needs setuptools>=77"
)
def test_wheel_ships_the_default_model_web_page_and_marker(tmp_path):
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(REPO / "src", project / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_NO_INDEX"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-v"]
        + ["-w", str(tmp_path / "dist"), str(project)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SetuptoolsDeprecationWarning" not in done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("sddkit-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    model = REPO / "src" / "sddkit" / "assets" / "default_model"
    static = REPO / "src" / "sddkit" / "service" / "static"
    needed = {f"sddkit/{p.relative_to(REPO / 'src' / 'sddkit')}" for p in [*model.iterdir(), *static.iterdir()]}
    assert {"sddkit/assets/default_model/model.safetensors", "sddkit/service/static/index.html"} <= needed
    assert needed | {"sddkit/py.typed", "sddkit/__init__.py"} <= names
    sources = {f"sddkit/{p.relative_to(REPO / 'src' / 'sddkit')}" for p in (REPO / "src" / "sddkit").rglob("*.py")}
    assert sources <= names  # every module, none left out as a folder without __init__.py
    assert "License-Expression: Apache-2.0" in meta
    assert "sdd = sddkit.cli.main:main" in entry_points
