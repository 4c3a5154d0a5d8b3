"""The feature layout a back-end reads, checked when it is built against the front-end's
(:func:`sddkit.detectors.detector.feature_layout`): a mismatched pair (an encoder front-end under an LCNN)
otherwise builds and fails at its first forward, where the trainer's crop-length check reads the shape error
as a crop that is too short."""

from __future__ import annotations

from sddkit.errors import ConfigError

_WHAT = {"spectral": "spectral features (B, F, T)", "frames": "encoder frames (B, N, D)"}
_FRONTENDS = {"spectral": "logmel, lfcc or logspec", "frames": "ssl"}
# a registered front-end of the user's own is taken to give encoder frames unless it declares its layout
# (sddkit.detectors.detector.feature_layout): the refusal says how, or a spectral one that built before is stuck
_DECLARE = {"spectral": "(B, F, T)", "frames": "(B, N, D)"}


def require_layout(backend: str, reads: str, feature_layout: str | None) -> None:
    """ConfigError unless ``feature_layout`` (the front-end's: ``spectral``, ``frames``; None when unknown or
    raw, which the builders check themselves) is ``reads``, the layout ``backend`` reads."""
    if feature_layout is None or feature_layout == reads:
        return
    shown = _WHAT.get(feature_layout, repr(feature_layout))
    raise ConfigError(
        f"backend {backend!r} reads {_WHAT[reads]}, but the front-end gives {shown}: "
        f"use a {_FRONTENDS[reads]} front-end with it, or another back-end (a front-end of your own that gives "
        f"{_DECLARE[reads]} features declares it with a class attribute feature_layout = {reads!r})"
    )
