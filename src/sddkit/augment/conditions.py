"""Named robustness test conditions: fixed degradations to evaluate a detector under.

``CONDITIONS`` maps a stable condition name to an augmentation spec with fixed parameters
(ranges collapsed to a point, ``p = 1``). What is still random (the noise realisation,
the RIR, a preset's draws) comes from the seed, so

    apply_condition("mp3_64k", x, 16000, seed=0)

is a pure function of its arguments: every detector is scored on the same degraded audio.

A condition keeps the input's length, except a time stretch (``stretch_1.1``, ``stretch_0.9``): its output is the
whole stretched utterance, ``round(T / rate)`` samples, as a sped-up or slowed-down recording is. The
``time_stretch`` augmentation itself (for training batches, which keep ``T`` samples) crops a slowed clip's end
and fills a sped-up one's with digital silence.
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

# The augmentations whose conditions are not cropped or padded back to the input's length. A time stretch changes
# the duration of the speech; cut back to T samples (the augmentation contract), stretch_0.9 dropped the last 10 %
# of every utterance and stretch_1.1 appended 9 % of digital silence, and on 24 of sddbench's test_unseen files that
# padding and cropping moved the default model's scores more (mean |change| 0.54 at 1.1) than the stretch itself (0.46).
# A detector scores any length, so these conditions give the whole stretched utterance.
_WHOLE_LENGTH = frozenset({"time_stretch"})

# The key and value of a codec's cheaper encoder search (``sdd robustness --fast-codecs``), per augmentation name.
_FAST_CODECS = {"codec": ("fast", True), "launder_chain": ("fast_codec", True)}


def condition_names() -> list[str]:
    """Every condition name, in definition order (clean first)."""
    return list(CONDITIONS)


def condition_spec(name: str, *, fast_codecs: bool = False) -> dict[str, Any]:
    """A copy of the augmentation spec behind condition ``name``; ``fast_codecs``: with the codecs' cheaper encoder
    search (same bitstream format, not bit-identical audio), for a condition that runs a codec."""
    try:
        spec = CONDITIONS[name]
    except KeyError:
        raise UnknownNameError("condition", name, condition_names()) from None
    spec = {k: (list(v) if isinstance(v, list) else v) for k, v in spec.items()}
    if fast_codecs and spec["name"] in _FAST_CODECS:
        key, value = _FAST_CODECS[spec["name"]]
        spec[key] = value
    return spec


def keeps_length(name: str) -> bool:
    """Whether condition ``name`` gives as many samples as it is given (all but a time stretch)."""
    return condition_spec(name)["name"] not in _WHOLE_LENGTH


def condition_config(name: str, *, fast_codecs: bool = False) -> dict[str, Any]:
    """The full configuration of condition ``name``: its spec with every default filled in, e.g. ``{"name": "noise",
    "snr_db": [10.0, 10.0], "exponent": [0.0, 0.0], "low_hz": 20.0, "p": 1.0}``. A change of a default (noise's
    ``low_hz`` went from 0 to 20 Hz) changes it, and the degraded audio with it, under the same condition name.
    A time stretch also holds ``"length": "stretched"`` (its output is the whole stretched utterance; before
    2026-12-06 it was cut or zero-padded back to the input's length). ``fast_codecs``: as
    :func:`apply_condition` runs it with that option."""
    from sddkit.augment import AUGMENTATIONS
    from sddkit.config import to_dict

    config = to_dict(AUGMENTATIONS.parse(condition_spec(name, fast_codecs=fast_codecs)))
    if not keeps_length(name):
        config.pop("fill", None)  # how the augmentation pads a sped-up clip back to T: the condition does not
        config["length"] = "stretched"
    return config


@cache
def build_condition(name: str, fast_codecs: bool = False) -> Augmentation:
    """The (cached, stateless) augmentation that implements condition ``name`` (``fast_codecs``: see
    :func:`condition_spec`). A time stretch's keeps the input's length, as augmentations do, unless called with
    ``keep_length=False`` as :func:`apply_condition` calls it (the whole stretched utterance)."""
    from sddkit.augment.pipeline import build_augmentation

    return build_augmentation(condition_spec(name, fast_codecs=fast_codecs))


def apply_condition(name: str, x: np.ndarray, sr: int, seed: int = 0, *, fast_codecs: bool = False) -> np.ndarray:
    """Degrade ``x`` with condition ``name``; deterministic in (name, x, sr, seed, fast_codecs). (T,) -> (T,)
    float32, except a time stretch by ``rate``: (round(T / rate),), the whole stretched utterance.
    ``fast_codecs``: the codecs' cheaper encoder search (see :func:`condition_spec`)."""
    augmentation = build_condition(name, fast_codecs)
    return augmentation(as_waveform(x), sr, np.random.default_rng(seed), keep_length=keeps_length(name))
