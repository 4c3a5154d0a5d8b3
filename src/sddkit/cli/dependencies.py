"""A package sddkit depends on that the environment lacks, said in one line: which one, and what to install.

A dependency is imported only by the command that needs it (fastapi by ``sdd serve``, onnxruntime by ``--backend
onnx``), so one left out (``pip install --no-deps``, a hand-made environment, an uninstall) showed up as a
ModuleNotFoundError traceback from deep inside sddkit, as if sddkit were broken.
"""

from __future__ import annotations

import re

# The top-level module of each package sddkit imports -> the distribution that provides it, one of pyproject's
# dependencies (starlette and pydantic come with fastapi, huggingface_hub with transformers).
DEPENDENCY_MODULES: dict[str, str] = {
    "torch": "torch",
    "numpy": "numpy",
    "scipy": "scipy",
    "soundfile": "soundfile",
    "soxr": "soxr",
    "av": "av",
    "sklearn": "scikit-learn",
    "transformers": "transformers",
    "huggingface_hub": "transformers",
    "safetensors": "safetensors",
    "yaml": "PyYAML",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "tensorboard": "tensorboard",
    "fastapi": "fastapi",
    "starlette": "fastapi",
    "pydantic": "fastapi",
    "uvicorn": "uvicorn",
    "python_multipart": "python-multipart",
    "multipart": "python-multipart",
    "fastapi_offline": "fastapi-offline",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxscript": "onnxscript",
}


def missing_dependency_message(exc: ImportError) -> str | None:
    """One line for an ``ImportError`` of a package sddkit depends on: which one, and the ``pip install`` (with
    the version range sddkit declares) that brings it; None for any other module (a bug: its traceback stays)."""
    module = getattr(exc, "name", None) or ""
    distribution = DEPENDENCY_MODULES.get(module.partition(".")[0])
    if distribution is None:
        return None
    requirement = _declared_requirement(distribution)
    hint = ""
    if distribution == "torch":  # PyPI's default torch for Linux is the CUDA build, with gigabytes of nvidia-*
        hint = " (the CPU build: add --index-url https://download.pytorch.org/whl/cpu)"
    return (
        f"{distribution!r}, a package sddkit needs, is missing or cannot be imported ({type(exc).__name__}: {exc}); "
        f"install it with: pip install '{requirement}'{hint} (`pip install sddkit` without --no-deps installs "
        "every dependency)"
    )


def _declared_requirement(distribution: str) -> str:
    """``distribution`` with the version range of sddkit's installed metadata (``fastapi<1,>=0.110``); the bare
    name when sddkit is not installed (a checkout on PYTHONPATH)."""
    from importlib import metadata

    try:
        requirements = metadata.requires("sddkit") or []
    except metadata.PackageNotFoundError:
        return distribution
    wanted = _normalized(distribution)
    for line in requirements:
        spec = line.partition(";")[0].strip()
        if ";" not in line and _normalized(_requirement_name(spec)) == wanted:  # a dependency, not an extra's
            return spec.replace(" ", "")
    return distribution


def _requirement_name(spec: str) -> str:
    name = spec
    for stop in "<>=!~[ (":
        name = name.partition(stop)[0]
    return name


def _normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them (``PyYAML`` is ``pyyaml``, ``python_multipart``
    ``python-multipart``)."""
    return re.sub(r"[-_.]+", "-", name).lower()
