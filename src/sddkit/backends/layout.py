"""The feature layout a back-end reads, checked when it is built against the front-end's
(:func:`sddkit.detectors.detector.feature_layout`): a mismatched pair (an encoder front-end under an LCNN)
otherwise builds and fails at its first forward, where the trainer's crop-length check reads the shape error
as a crop that is too short."""

from __future__ import annotations

from sddkit.errors import ConfigError

_WHAT = {"spectral": "spectral features (B, F, T)", "frames": "encoder frames (B, N, D)"}
_FRONTENDS = {"spectral": "logmel, lfb, lfcc, logspec, mgd, cqt or cqcc", "frames": "ssl"}
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


def require_explicit_layout(backend: str, layout: str, feature_layout: str | None) -> None:
    """ConfigError when a back-end's explicit ``layout`` (``linear``'s ``frames`` or ``spectral``) contradicts the
    front-end's ``feature_layout`` (None: unknown, nothing to check): it built and failed at the first forward (or,
    where the sizes allowed, pooled over the feature axis instead of time). A front-end of the user's own that does
    not declare its layout is taken to give frames, and an explicit ``layout: spectral`` was how such a spectral
    one worked with ``linear``, so the refusal says how to declare it."""
    if feature_layout not in _WHAT or layout == feature_layout:
        return
    raise ConfigError(
        f"backend {backend!r}: layout {layout!r}, but the front-end gives {feature_layout} features: set "
        f"layout to 'auto' or {feature_layout!r} (a front-end of your own that gives {_DECLARE[layout]} "
        f"features declares it with a class attribute feature_layout = {layout!r})"
    )
