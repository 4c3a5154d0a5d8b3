"""sddkit: generalizable speech deepfake detection.

Score convention everywhere: higher = more bona fide.
"""

import typing as _typing

if _typing.TYPE_CHECKING:
    # what a type checker (mypy, pyright, an IDE) sees of the lazy name below: without it, sddkit.load_detector
    # and all it returns (the detector, its ScoreResults) were Any to them, unchecked
    from sddkit.scoring.api import load_detector

__version__ = "0.1.0"

__all__ = ["__version__", "load_detector"]


def __dir__() -> list[str]:
    # the lazy name too, so that tab completion (IPython, Jupyter) offers sddkit.load_detector
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str) -> _typing.Any:
    # Lazy: `import sddkit` stays light (no torch) until the scoring API is actually used.
    if name == "load_detector":
        from sddkit.scoring.api import load_detector

        return load_detector
    raise AttributeError(f"module 'sddkit' has no attribute {name!r}")
