"""Reverberation: synthetic room impulse responses (RIRs) or a user's RIR files.

Two synthetic models:

* ``noise_tail`` — the direct path followed by exponentially decaying Gaussian noise whose
  amplitude falls by 60 dB in RT60 seconds, at a chosen direct-to-reverberant ratio (DRR).
* ``image_source`` — a small shoebox image-source model (Allen & Berkley 1979): a random
  room, source and microphone; wall reflection coefficients from Sabine's formula for the
  requested RT60; all images up to ``max_order`` reflections, continued by a noise tail
  with the same decay once the image set is no longer complete; high-passed at 30 Hz, as
  in-phase reflections give the image set a DC gain that real rooms do not have.

Every RIR is aligned so that its direct path is tap 0 (the output is not delayed) and the
reverberant output is rescaled to the input's RMS level.

RT60 is the time the noise tail's energy takes to fall by 60 dB (measured T20/T30 match it, up to the largest RT60
accepted, 5 s: a synthetic RIR runs RT60 seconds, to its -60 dB point; measured files are cut at 2 s). An image set only
follows it as far as Sabine's formula holds: a shoebox is no diffuse field, and paths that graze few walls decay
more slowly. With the default ``max_order`` 8 the tail takes over early and T30 is within a few percent of RT60
from about 0.4 s up (about 8 % long on average at 0.2 s, up to 20 % for some rooms); higher orders let the image set
run longer, e.g. a T20 of about 0.7 s for an RT60 of 0.4 s at ``max_order`` 30. An RT60 shorter than Sabine's formula
allows in the drawn room at the largest absorption kept (0.99: about 0.08 s in a 3 x 3 x 2.4 m room, 0.17 s in a
10 x 8 x 4 m one) is not reached: the response then decays faster than asked (T30 ~0.7 RT60 at 0.1 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
import soundfile as sf
from scipy import signal

from sddkit.augment import AUGMENTATIONS
from sddkit.augment.base import DRR_DB_LIMITS, Augmentation, Range, check_probability, check_range, uniform
from sddkit.augment.dsp import butter_sos, convolve_aligned, match_rms, resample
from sddkit.augment.files import AudioFolder, check_finite
from sddkit.errors import AudioDecodeError

SPEED_OF_SOUND = 343.0  # m/s
_LN_1000 = np.log(1000.0)  # amplitude decays by 60 dB = a factor 1000 over RT60
MAX_RIR_SECONDS = 2.0  # measured RIR files are cut here: past it a recording holds mostly its noise floor
# The longest RT60 the configs accept. A synthetic RIR runs to its -60 dB point, RT60 seconds: cut at 2 s (as measured
# files are), an RT60 of 5 s stopped at -24 dB and measured T30 4.2 s (3.9 s image-source), 4 s measured T30 3.7 s.
MAX_RT60_SECONDS = 5.0
DC_BLOCK_HZ = 30.0  # high-pass of image-source RIRs: removes their DC build-up, below any voice


def decay_envelope(n: int, sr: int, rt60: float) -> np.ndarray:
    """exp(-ln(1000) t / rt60): the amplitude envelope of a tail that decays 60 dB in ``rt60`` s. (n,)."""
    return np.exp(-_LN_1000 * np.arange(n) / (sr * rt60))


def noise_tail_rir(sr: int, rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Direct impulse (1.0 at tap 0) + exponentially decaying noise at direct-to-reverberant ratio
    ``drr_db``. (L,) with L = min(rt60, MAX_RT60_SECONDS) * sr: the tail ends 60 dB down."""
    n = max(int(min(rt60, MAX_RT60_SECONDS) * sr), 2)
    tail = rng.standard_normal(n) * decay_envelope(n, sr, rt60)
    tail[0] = 0.0
    tail *= np.sqrt(1.0 / (np.sum(tail**2) * 10.0 ** (drr_db / 10.0)))
    tail[0] = 1.0
    return tail


def sabine_reflection(room: np.ndarray, rt60: float) -> float:
    """Wall reflection coefficient (pressure) giving ``rt60`` in a shoebox ``room`` by Sabine's formula,
    ``RT60 = 0.161 V / (S alpha)``; clipped to a physical absorption in [0.01, 0.99]."""
    lx, ly, lz = room
    volume = lx * ly * lz
    surface = 2.0 * (lx * ly + lx * lz + ly * lz)
    alpha = float(np.clip(0.161 * volume / (surface * rt60), 0.01, 0.99))
    return float(np.sqrt(1.0 - alpha))


def _axis_images(length: float, src: float, mic: float, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis image offsets ``image - mic`` and reflection counts for orders up to ``order``."""
    n = np.arange(-((order + 1) // 2) - 1, (order + 1) // 2 + 2)
    pos = np.concatenate([2 * n * length + src, 2 * n * length - src])
    refl = np.concatenate([np.abs(2 * n), np.abs(2 * n - 1)])
    keep = refl <= order
    return pos[keep] - mic, refl[keep]


def image_source_rir(
    sr: int,
    room: np.ndarray,
    src: np.ndarray,
    mic: np.ndarray,
    rt60: float,
    max_order: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Shoebox image-source RIR aligned to the direct path (tap 0, amplitude 1). (L,).

    Arrivals are rounded to the nearest sample. Images up to ``max_order + 1`` reflections are
    generated; the response (before a 30 Hz DC-blocking high-pass) is exact up to the first
    arrival of order ``max_order + 1`` (``t_c``),
    after which a decaying noise tail continues it at the energy density of the last 10 ms (the
    diffuse-field density where that window holds no reflection, e.g. with ``max_order`` 0).
    """
    beta = sabine_reflection(room, rt60)
    order = max_order + 1
    axes = [_axis_images(room[i], src[i], mic[i], order) for i in range(3)]
    dx, dy, dz = np.meshgrid(axes[0][0], axes[1][0], axes[2][0], indexing="ij", sparse=True)
    rx, ry, rz = np.meshgrid(axes[0][1], axes[1][1], axes[2][1], indexing="ij", sparse=True)
    refl = (rx + ry + rz).ravel()
    dist = np.sqrt(dx**2 + dy**2 + dz**2).ravel()
    valid = refl <= order
    refl, dist = refl[valid], dist[valid]
    d0 = float(dist[refl == 0][0])
    t_c = float(dist[refl == order].min() - d0) / SPEED_OF_SOUND  # image set complete before t_c
    n = max(int(min(rt60, MAX_RT60_SECONDS) * sr), int(t_c * sr) + 2)
    early = refl <= max_order
    delays = np.rint((dist[early] - d0) / SPEED_OF_SOUND * sr).astype(np.int64)
    amps = (d0 / dist[early]) * beta ** refl[early].astype(np.float64)
    inside = delays < n
    h = np.zeros(n)
    np.add.at(h, delays[inside], amps[inside])
    c = int(t_c * sr)
    if c < n:
        win = max(int(0.01 * sr), 1)
        density = float(np.mean(h[max(c - win, 1) : c] ** 2)) if c > 1 else 0.0
        if density <= 0.0:
            # No reflection in that window (max_order 0, or sparse low orders in a large room): use the
            # diffuse-field density of a complete image set instead, 4 pi C d0^2 / V per second relative
            # to the direct path (C the speed of sound), decayed 60 dB per RT60 since its emission at
            # t_c + d0 / C.
            volume = float(np.prod(room))
            emitted = t_c + d0 / SPEED_OF_SOUND
            density = 4.0 * np.pi * SPEED_OF_SOUND * d0**2 / (volume * sr) * np.exp(-2.0 * _LN_1000 * emitted / rt60)
        tail = rng.standard_normal(n - c) * np.sqrt(density) * decay_envelope(n - c, sr, rt60)
        h[c:] = tail
    # With positive reflection coefficients every arrival adds in phase at 0 Hz, so the image set has
    # a DC gain no room has (+15-20 dB below 20 Hz over the speech band). Allen & Berkley high-pass
    # the response for this; a causal 2nd-order Butterworth keeps the direct path at tap 0.
    h = signal.sosfilt(butter_sos("highpass", (DC_BLOCK_HZ,), int(sr), 2), h)
    return h / h[0]


@dataclass
class ReverbConfig:
    """rt60: reverberation time range in s; method: noise_tail or image_source; drr_db:
    direct-to-reverberant ratio range (noise_tail only; the image-source DRR follows from the
    geometry); room_m: (length, width, height) ranges in metres (image_source); max_order:
    image-source reflection order (image_source); p: probability."""

    rt60: Range = (0.2, 1.0)
    method: Literal["noise_tail", "image_source"] = "noise_tail"
    drr_db: Range = (-3.0, 10.0)
    room_m: tuple[Range, Range, Range] = ((3.0, 10.0), (3.0, 8.0), (2.4, 4.0))
    max_order: int = 8
    p: float = 1.0

    def __post_init__(self) -> None:
        check_range("rt60", self.rt60, lo=0.01, hi=MAX_RT60_SECONDS)
        check_range("drr_db", self.drr_db, lo=DRR_DB_LIMITS[0], hi=DRR_DB_LIMITS[1])
        for i, r in enumerate(self.room_m):
            check_range(f"room_m[{i}]", r, lo=1.0, hi=100.0)
        if not 0 <= self.max_order <= 30:
            raise ValueError(f"max_order must be in [0, 30], got {self.max_order}")
        check_probability(self.p)


def random_rir(cfg: ReverbConfig, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic RIR drawn from ``cfg``, direct path at tap 0."""
    rt60 = uniform(rng, cfg.rt60)
    if cfg.method == "noise_tail":
        return noise_tail_rir(sr, rt60, uniform(rng, cfg.drr_db), rng)
    room = np.array([uniform(rng, r) for r in cfg.room_m])
    # Source and microphone at least 0.5 m from the walls (0.2 m in tiny rooms), at speaking height.
    margin = np.minimum(0.5, room / 5.0)
    src = margin + rng.random(3) * (room - 2 * margin)
    mic = margin + rng.random(3) * (room - 2 * margin)
    return image_source_rir(sr, room, src, mic, rt60, cfg.max_order, rng)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a direct-path-aligned RIR and restore the input's RMS level. (T,) -> (T,)."""
    return match_rms(convolve_aligned(x, rir, ref=0), x)


class Reverb(Augmentation):
    """Convolution with a synthetic room impulse response of random RT60."""

    cfg: ReverbConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return reverberate(x, random_rir(self.cfg, sr, rng))


@lru_cache(maxsize=64)
def load_rir(path: str, sr: int) -> np.ndarray:
    """A measured RIR file: first channel, resampled to ``sr``, cut at its direct path (the peak),
    at most MAX_RIR_SECONDS long, peak 1. Cached (read-only): RIR sets are small and reused constantly."""
    try:
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
        raise AudioDecodeError(f"cannot decode: {exc}", path=path) from None
    h = resample(check_finite(data[:, 0], path), file_sr, sr).astype(np.float64)
    if len(h) == 0 or not np.any(h):
        raise AudioDecodeError("impulse response is empty or silent", path=path)
    direct = int(np.argmax(np.abs(h)))
    h = h[direct : direct + int(MAX_RIR_SECONDS * sr)]
    h = h / h[0]
    h.setflags(write=False)
    return h


@dataclass
class RirFilesConfig:
    """root: folder of measured impulse responses (searched recursively); extensions: file types;
    p: probability. A random file per call; the first channel is used. A file sampled below the audio's rate holds
    no response above its Nyquist frequency: convolving with it attenuates the speech above it (an 8 kHz file the
    5-8 kHz band of 16 kHz speech, by 10-25 dB), so use impulse responses sampled at the audio's rate or above."""

    root: str  # required, no default: `sdd list augmentation NAME` shows it so, and a recipe without it fails when read
    extensions: list[str] = field(default_factory=lambda: [".wav", ".flac"])
    p: float = 1.0

    def __post_init__(self) -> None:
        if not self.root:
            raise ValueError(f"root must name a folder of impulse-response files, got {self.root!r}")
        if not self.extensions:
            raise ValueError("extensions must name at least one file type, e.g. ['.wav', '.flac']")
        check_probability(self.p)


class RirFiles(Augmentation):
    """Convolution with a random measured RIR from a folder (direct-path aligned, level-matched)."""

    cfg: RirFilesConfig

    def __init__(self, cfg: RirFilesConfig):
        super().__init__(cfg)
        self.folder = AudioFolder(cfg.root, cfg.extensions, what="rir_files.root")
        self.folder.check()

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return reverberate(x, load_rir(str(self.folder.choose(rng)), sr))


@AUGMENTATIONS.register("reverb", config=ReverbConfig)
def build_reverb(cfg: ReverbConfig, **_: object) -> Reverb:
    """Synthetic room reverberation (exponential noise tail or image-source room) at a random RT60."""
    return Reverb(cfg)


@AUGMENTATIONS.register("rir_files", config=RirFilesConfig)
def build_rir_files(cfg: RirFilesConfig, **_: object) -> RirFiles:
    """Reverberation with measured impulse responses from a folder."""
    return RirFiles(cfg)
