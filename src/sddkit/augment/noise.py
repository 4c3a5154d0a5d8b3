"""Additive noise at a target SNR: synthetic coloured noise (1/f^a) or segments of a user's noise files.

The SNR is measured over the whole clip: ``10 log10(mean(x**2) / mean(n**2))`` equals the
drawn SNR exactly (before float32 rounding) for clips above -100 dBFS; a quieter or silent clip is
measured as -100 dBFS (``SILENCE_POWER``), so the noise is louder than the SNR says relative to it.
Coloured noise has no power below ``low_hz`` (20 Hz), so all of it counts in the audible band.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sddkit.audio.io import SILENCE_PEAK
from sddkit.augment import AUGMENTATIONS
from sddkit.augment.base import SNR_DB_LIMITS, Augmentation, Range, check_probability, check_range, uniform
from sddkit.augment.dsp import COLORED_NOISE_LOW_HZ, add_at_snr, colored_noise
from sddkit.augment.files import AudioFolder, read_segment
from sddkit.errors import SilentAudioError

COLOR_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0, "violet": -2.0}

# How many (file, segment) draws NoiseFiles makes to find one that holds noise before refusing the folder.
MAX_NOISE_DRAWS = 8


@dataclass
class NoiseConfig:
    """snr_db: SNR range in dB; exponent: range of the spectral slope ``a`` of a 1/f^a power
    spectrum (0 white, 1 pink, 2 brown, -1 blue, -2 violet); low_hz: coloured noise (``a`` not 0) has
    no power below this frequency; 0 runs the 1/f^a law down to the clip's lowest FFT bin, where a brown
    noise puts nearly all its power below 20 Hz (its audible SNR 15-25 dB above ``snr_db``; the behaviour
    before 2026-12-06); p: probability."""

    snr_db: Range = (5.0, 30.0)
    exponent: Range = (0.0, 2.0)
    low_hz: float = COLORED_NOISE_LOW_HZ
    p: float = 1.0

    def __post_init__(self) -> None:
        check_range("snr_db", self.snr_db, *SNR_DB_LIMITS)
        check_range("exponent", self.exponent, lo=-2.0, hi=3.0)
        if not 0.0 <= self.low_hz <= 1000.0:
            raise ValueError(f"low_hz must be in [0, 1000] Hz (the noise's lowest frequency), got {self.low_hz}")
        check_probability(self.p)


class Noise(Augmentation):
    """Gaussian noise with a 1/f^a spectrum added at a random SNR."""

    cfg: NoiseConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        snr = uniform(rng, self.cfg.snr_db)
        a = uniform(rng, self.cfg.exponent)
        return add_at_snr(x, colored_noise(len(x), a, rng, sr, self.cfg.low_hz), snr)


@dataclass
class NoiseFilesConfig:
    """root: folder of noise recordings (searched recursively); extensions: file types to use;
    snr_db: SNR range in dB; p: probability. A random file, a random segment, looped if short; the channels of a
    multichannel file are averaged. A segment with no noise in it (digital silence, dither below -80 dBFS, a
    constant DC offset) is drawn again, from a random file, up to 8 times before a SilentAudioError names the
    files drawn."""

    root: str  # required, no default: `sdd list augmentation NAME` shows it so, and a recipe without it fails when read
    extensions: list[str] = field(default_factory=lambda: [".wav", ".flac"])
    snr_db: Range = (0.0, 20.0)
    p: float = 1.0

    def __post_init__(self) -> None:
        if not self.root:
            raise ValueError(f"root must name a folder of noise files, got {self.root!r}")
        if not self.extensions:
            raise ValueError("extensions must name at least one file type, e.g. ['.wav', '.flac']")
        check_range("snr_db", self.snr_db, *SNR_DB_LIMITS)
        check_probability(self.p)


class NoiseFiles(Augmentation):
    """A random segment of a random file from a noise folder, added at a random SNR."""

    cfg: NoiseFilesConfig

    def __init__(self, cfg: NoiseFilesConfig):
        super().__init__(cfg)
        self.folder = AudioFolder(cfg.root, cfg.extensions, what="noise_files.root")
        self.folder.check()

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        snr = uniform(rng, self.cfg.snr_db)
        silent = []
        for _ in range(MAX_NOISE_DRAWS):
            path = self.folder.choose(rng)
            noise = read_segment(path, len(x), sr, rng)
            if not is_noiseless(noise):
                return add_at_snr(x, noise, snr)
            # before: scaled "to the SNR" a silent segment stayed silent (and a constant offset became a DC shift),
            # so the item was returned without noise, without a word, whatever snr_db asked
            silent.append(str(path))
        raise SilentAudioError(
            f"noise_files: {MAX_NOISE_DRAWS} segments drawn under {self.folder.root} hold no noise (digital "
            f"silence, dither below -80 dBFS or a constant offset), from {', '.join(sorted(set(silent)))}; "
            "remove silent files from the folder"
        )


def is_noiseless(noise: np.ndarray) -> bool:
    """Whether a noise segment holds nothing to add: its half peak-to-peak swing (the peak left once the best
    constant offset is removed) is below -80 dBFS, as ``load_audio`` judges silence."""
    return len(noise) == 0 or float(np.max(noise) - np.min(noise)) / 2.0 < SILENCE_PEAK


@AUGMENTATIONS.register("noise", config=NoiseConfig)
def build_noise(cfg: NoiseConfig, **_: object) -> Noise:
    """Coloured Gaussian noise (white/pink/brown: 1/f^a) at a random SNR."""
    return Noise(cfg)


@AUGMENTATIONS.register("noise_files", config=NoiseFilesConfig)
def build_noise_files(cfg: NoiseFilesConfig, **_: object) -> NoiseFiles:
    """Noise from a folder of recordings (random file and segment, looped) at a random SNR."""
    return NoiseFiles(cfg)
