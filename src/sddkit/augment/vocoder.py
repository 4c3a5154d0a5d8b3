"""Copy-synthesis: re-generate a bona fide waveform through a (non-neural) vocoder.

Vocoded copies of real recordings are a known way to add spoofed training data that shares speaker,
text, channel and source with its bona fide original (Wang & Yamagishi, ICASSP 2023, used neural
vocoders). Only the vocoding differs between the pair, so a detector cannot separate them by the
recording conditions, a confound of small corpora such as sddbench. Nothing here downloads weights:
the vocoders are signal processing (Griffin-Lim phase reconstruction from a linear or mel magnitude),
so their artefacts are phase incoherence and, for mel, spectral smearing, a crude stand-in for
neural vocoders' artefacts.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from sddkit.augment.base import as_waveform
from sddkit.augment.dsp import match_rms, peak_normalize_if_over
from sddkit.errors import ConfigError, NonFiniteAudioError
from sddkit.features.spectral import mel_filterbank

Magnitude = Literal["linear", "mel"]


def griffin_lim(
    magnitude: Tensor,
    *,
    n_fft: int,
    hop_length: int,
    length: int,
    n_iter: int = 32,
    momentum: float = 0.99,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Waveform (length,) whose STFT magnitude approaches ``magnitude`` (n_fft // 2 + 1, frames).

    Fast Griffin-Lim (Perraudin et al. 2013): alternate projections between consistent spectrograms
    and the target magnitude, with ``momentum`` on the phase estimate; random initial phase.
    """
    if not 0.0 <= momentum < 1.0:
        raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
    if n_iter < 1:
        raise ConfigError(f"n_iter must be >= 1, got {n_iter}")
    window = torch.hann_window(n_fft, dtype=magnitude.dtype)
    phase = torch.rand(magnitude.shape, generator=generator, dtype=magnitude.dtype) * (2 * torch.pi)
    angles = torch.polar(torch.ones_like(magnitude), phase)
    previous = torch.zeros_like(angles)
    for _ in range(n_iter):
        wave = torch.istft(magnitude * angles, n_fft, hop_length, window=window, length=length)
        rebuilt = torch.stft(wave, n_fft, hop_length, window=window, return_complex=True)
        accelerated = rebuilt - (momentum / (1.0 + momentum)) * previous
        previous = rebuilt
        angles = accelerated / accelerated.abs().clamp_min(1e-8)
    return torch.istft(magnitude * angles, n_fft, hop_length, window=window, length=length)


def copy_synthesis(
    wave: np.ndarray,
    sample_rate: int,
    *,
    magnitude: Magnitude = "mel",
    n_fft: int = 1024,
    hop_length: int = 256,
    n_mels: int = 80,
    n_iter: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """Vocoded copy of ``wave`` (T,) float32: same length, same loudness, phase rebuilt by Griffin-Lim.

    ``wave`` holds finite float samples in [-1, 1]; integer PCM is refused (a TypeError), NaN or inf samples too
    (a NonFiniteAudioError).

    Same loudness means the same RMS, unless that would put a peak above 0.999: the copy is then scaled down
    to that peak (so it can be written as 16-bit PCM) and is quieter than the original (by up to about 1 dB on
    sddbench's bona fide train files, 2 of 40 sampled).

    ``magnitude="mel"`` first reduces the magnitude to ``n_mels`` mel bands (as TTS acoustic models
    predict it) and maps it back with the filterbank's pseudo-inverse, so detail between bands is
    lost as in mel-conditioned vocoders; ``"linear"`` keeps the exact magnitude and changes only the
    phase.
    """
    if wave.ndim != 1 or wave.size < n_fft:
        raise ConfigError(f"copy_synthesis needs a mono waveform of at least {n_fft} samples, got {wave.shape}")
    if magnitude not in ("linear", "mel"):
        raise ConfigError(f"magnitude must be 'linear' or 'mel', got {magnitude!r}")
    # before: int16 PCM was taken as floats 32768 times too loud (the copy then came out peak-normalised to 0.999,
    # not at the original's level), and a NaN or inf sample made the whole copy NaN, written out without a word
    wave = as_waveform(wave)
    if not np.isfinite(wave).all():
        raise NonFiniteAudioError(
            f"copy_synthesis got {int(np.count_nonzero(~np.isfinite(wave)))} non-finite (NaN or inf) samples of "
            f"{wave.size}; fix the audio (or its decoding) upstream"
        )
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).double()
    window = torch.hann_window(n_fft, dtype=x.dtype)
    mag = torch.stft(x, n_fft, hop_length, window=window, return_complex=True).abs()  # (F, frames)
    if magnitude == "mel":
        fb = mel_filterbank(n_mels=n_mels, n_fft=n_fft, sample_rate=sample_rate).double()  # (n_mels, F)
        mag = (torch.linalg.pinv(fb) @ (fb @ mag)).clamp_min(0.0)
    generator = torch.Generator().manual_seed(seed)
    y = griffin_lim(mag, n_fft=n_fft, hop_length=hop_length, length=x.numel(), n_iter=n_iter, generator=generator)
    # Same RMS as the original: loudness must not tell the pair apart.
    out = match_rms(y.numpy(), x.numpy())
    return peak_normalize_if_over(out, 0.999).astype(np.float32)
