"""Named robustness test conditions: fixed degradations to evaluate a detector under.

``CONDITIONS`` maps a stable condition name to an augmentation spec with fixed parameters
(ranges collapsed to a point, ``p = 1``). What is still random (the noise realisation,
the RIR, a preset's draws) comes from the seed, so

    apply_condition("mp3_64k", x, 16000, seed=0)

is a pure function of its arguments: every detector is scored on the same degraded audio.
"""

from __future__ import annotations

from functools import cache
from types import MappingProxyType
from typing import Any

import numpy as np

from sddkit.augment.base import Augmentation, as_waveform
from sddkit.errors import UnknownNameError


def _codec(codec: str, kbps: float | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "codec", "codec": codec}
    if kbps is not None:
        spec["bitrate_kbps"] = [kbps, kbps]
    return spec


def _noise(exponent: float, snr_db: float) -> dict[str, Any]:
    return {"name": "noise", "exponent": [exponent, exponent], "snr_db": [snr_db, snr_db]}


def _reverb(rt60: float, method: str = "noise_tail") -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "reverb", "rt60": [rt60, rt60], "method": method}
    if method == "noise_tail":
        spec["drr_db"] = [3.0, 3.0]
    return spec


_SPECS: dict[str, dict[str, Any]] = {
    "clean": {"name": "clean"},
    # lossy codecs
    "mp3_128k": _codec("mp3", 128),
    "mp3_64k": _codec("mp3", 64),
    "mp3_32k": _codec("mp3", 32),
    "mp3_16k": _codec("mp3", 16),
    "aac_64k": _codec("aac", 64),
    "aac_32k": _codec("aac", 32),
    "aac_16k": _codec("aac", 16),
    "opus_32k": _codec("opus", 32),
    "opus_16k": _codec("opus", 16),
    "opus_8k": _codec("opus", 8),
    "vorbis_native": _codec("vorbis_native"),
    "amrnb": _codec("amrnb", 12.2),
    "amrnb_4.75k": _codec("amrnb", 4.75),
    "g722": _codec("g722"),
    "mulaw": _codec("mulaw"),
    "alaw": _codec("alaw"),
    # band limitation
    "narrowband_8k": {"name": "resample", "sample_rates": [8000]},
    "telephone_band": {"name": "band_filter", "kind": "bandpass", "low_hz": [300.0, 300.0], "high_hz": [3400.0] * 2},
    "lowpass_4k": {"name": "band_filter", "kind": "lowpass", "high_hz": [4000.0, 4000.0]},
    # additive noise
    "noise_white_20db": _noise(0.0, 20.0),
    "noise_white_10db": _noise(0.0, 10.0),
    "noise_white_5db": _noise(0.0, 5.0),
    "noise_pink_10db": _noise(1.0, 10.0),
    "noise_pink_5db": _noise(1.0, 5.0),
    "noise_brown_5db": _noise(2.0, 5.0),
    # reverberation
    "reverb_rt60_0.3": _reverb(0.3),
    "reverb_rt60_0.5": _reverb(0.5),
    "reverb_rt60_1.0": _reverb(1.0),
    "reverb_room_0.5": _reverb(0.5, "image_source"),
    # laundering chains
    "rerecord": {"name": "rerecord"},
    "car_cabin": {"name": "car_cabin"},
    "launder_chain": {"name": "launder_chain"},
    # time scale and pitch
    "pitch_+2": {"name": "pitch_shift", "semitones": [2.0, 2.0]},
    "pitch_-2": {"name": "pitch_shift", "semitones": [-2.0, -2.0]},
    "stretch_1.1": {"name": "time_stretch", "rate": [1.1, 1.1]},
    "stretch_0.9": {"name": "time_stretch", "rate": [0.9, 0.9]},
    # level: attenuation alone changes no content; a gain-sensitive detector's scores move anyway
    "gain_-10db": {"name": "gain", "gain_db": [-10.0, -10.0]},
    "gain_-20db": {"name": "gain", "gain_db": [-20.0, -20.0]},
    "gain_-30db": {"name": "gain", "gain_db": [-30.0, -30.0]},
    "clip_-6db": {"name": "clipping", "threshold_db": [-6.0, -6.0]},
}

CONDITIONS: MappingProxyType[str, dict[str, Any]] = MappingProxyType(_SPECS)


def condition_names() -> list[str]:
    """Every condition name, in definition order (clean first)."""
    return list(CONDITIONS)


def condition_spec(name: str) -> dict[str, Any]:
    """A copy of the augmentation spec behind condition ``name``."""
    try:
        spec = CONDITIONS[name]
    except KeyError:
        raise UnknownNameError("condition", name, condition_names()) from None
    return {k: (list(v) if isinstance(v, list) else v) for k, v in spec.items()}


def condition_config(name: str) -> dict[str, Any]:
    """The full configuration of condition ``name``: its spec with every default filled in, e.g. ``{"name": "noise",
    "snr_db": [10.0, 10.0], "exponent": [0.0, 0.0], "low_hz": 20.0, "p": 1.0}``. A change of a default (noise's
    ``low_hz`` went from 0 to 20 Hz) changes it, and the degraded audio with it, under the same condition name."""
    from sddkit.augment import AUGMENTATIONS
    from sddkit.config import to_dict

    return to_dict(AUGMENTATIONS.parse(condition_spec(name)))


@cache
def build_condition(name: str) -> Augmentation:
    """The (cached, stateless) augmentation that implements condition ``name``."""
    from sddkit.augment.pipeline import build_augmentation

    return build_augmentation(condition_spec(name))


def apply_condition(name: str, x: np.ndarray, sr: int, seed: int = 0) -> np.ndarray:
    """Degrade ``x`` with condition ``name``; deterministic in (name, x, sr, seed). (T,) -> (T,) float32."""
    return build_condition(name)(as_waveform(x), sr, np.random.default_rng(seed))
