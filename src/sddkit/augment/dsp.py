"""Signal-processing building blocks shared by the augmentations (pure functions, numpy/scipy/soxr).

Every function takes and returns 1-D arrays and keeps time alignment: filters are
zero-phase or delay-compensated, convolutions are aligned to the kernel's reference tap.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
import soxr
from scipy import signal

from sddkit.augment.base import SILENCE_POWER, fit_length, power

FilterKind = Literal["lowpass", "highpass", "bandpass", "bandstop"]
ResampleQuality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]


def resample(x: np.ndarray, sr_in: float, sr_out: float, quality: ResampleQuality = "HQ") -> np.ndarray:
    """Band-limited resampling with soxr (linear phase, delay compensated, so time-aligned).

    x: (T,) -> (round(T * sr_out / sr_in),) float32 (halves round up; soxr's rule, not ceil).
    """
    if sr_in == sr_out:
        return x.astype(np.float32, copy=True)
    y = soxr.resample(np.asarray(x, dtype=np.float32), float(sr_in), float(sr_out), quality=quality)
    return np.asarray(y, dtype=np.float32)


def resample_roundtrip(x: np.ndarray, sr: int, mid_sr: float, quality: ResampleQuality = "HQ") -> np.ndarray:
    """Down (or up) to ``mid_sr`` and back to ``sr``: removes everything above ``mid_sr / 2``. (T,) -> (T,)."""
    return fit_length(resample(resample(x, sr, mid_sr, quality), mid_sr, sr, quality), len(x))


@lru_cache(maxsize=512)
def butter_sos(kind: FilterKind, cutoffs: tuple[float, ...], sr: int, order: int) -> np.ndarray:
    """Second-order sections of a Butterworth filter; cached because designs repeat across calls."""
    nyq = sr / 2.0
    if any(not 0.0 < c < nyq for c in cutoffs):
        raise ValueError(f"{kind} cut-off(s) {cutoffs} Hz must lie strictly between 0 and {nyq:g} Hz")
    wn: float | tuple[float, ...] = cutoffs[0] if len(cutoffs) == 1 else cutoffs
    return signal.butter(order, wn, btype=kind, fs=sr, output="sos")


def zero_phase_edges(kind: FilterKind, cutoffs: tuple[float, ...], sr: int, order: int) -> tuple[float, ...]:
    """The single-pass Butterworth edges whose forward-backward response is -3 dB at ``cutoffs``.

    A Butterworth is -3 dB at its edges per pass, hence -6 dB after two passes. In the prewarped
    analog domain (``w = tan(pi f / sr)``, as ``scipy.signal.butter`` designs), putting the requested
    frequency at ``q = (sqrt(2) - 1) ** (1 / (2 order))`` of the prototype's edge makes each pass
    -1.5 dB there: the low-pass edge becomes ``w / q``, the high-pass one ``w q``, and a band-pass
    (band-stop) keeps its geometric centre with its bandwidth divided (multiplied) by ``q``.
    """
    q = (np.sqrt(2.0) - 1.0) ** (1.0 / (2.0 * order))
    w = [float(np.tan(np.pi * c / sr)) for c in cutoffs]
    if kind == "lowpass":
        warped = [w[0] / q]
    elif kind == "highpass":
        warped = [w[0] * q]
    else:
        centre_sq, width = w[0] * w[1], w[1] - w[0]
        width = width / q if kind == "bandpass" else width * q
        high = (width + np.sqrt(width * width + 4.0 * centre_sq)) / 2.0
        warped = [centre_sq / high, high]
    return tuple(float(sr / np.pi * np.arctan(v)) for v in warped)


def butter_filter(x: np.ndarray, sr: int, kind: FilterKind, cutoffs: tuple[float, ...], order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth filtering (forward-backward, so the effective order is doubled); each
    cut-off is the -3 dB point of that two-pass response (see :func:`zero_phase_edges`). (T,) -> (T,)."""
    cutoffs = tuple(float(c) for c in cutoffs)
    if kind in ("bandpass", "bandstop"):
        if len(cutoffs) != 2 or cutoffs[0] >= cutoffs[1]:
            raise ValueError(f"{kind} needs (low, high) cut-offs with low < high, got {cutoffs}")
    elif len(cutoffs) != 1:
        raise ValueError(f"{kind} needs one cut-off, got {cutoffs}")
    nyq = sr / 2.0
    if any(not 0.0 < c < nyq for c in cutoffs):
        raise ValueError(f"{kind} cut-off(s) {cutoffs} Hz must lie strictly between 0 and {nyq:g} Hz")
    sos = butter_sos(kind, zero_phase_edges(kind, cutoffs, int(sr), int(order)), int(sr), int(order))
    # Pad by reflection with a length bounded by the signal so very short inputs still work.
    padlen = min(len(x) - 1, 3 * (2 * len(sos) + 1))
    if padlen < 1:
        return x.astype(np.float32, copy=True)
    return signal.sosfiltfilt(sos, x.astype(np.float64), padlen=padlen).astype(np.float32)


def convolve_aligned(x: np.ndarray, h: np.ndarray, ref: int = 0) -> np.ndarray:
    """Convolve ``x`` with kernel ``h`` and keep the ``T`` samples aligned to ``h[ref]``.

    ``ref`` is the kernel tap that should map to zero delay (e.g. a linear-phase FIR's
    centre, or a room impulse response's direct path). (T,), (L,) -> (T,).
    """
    full = signal.oaconvolve(x.astype(np.float64), np.asarray(h, dtype=np.float64), mode="full")
    return full[ref : ref + len(x)]


def scale_to_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that ``10 log10(P(x) / P(noise)) == snr_db`` over the whole clip.

    A silent ``x`` is measured against the silence floor (-100 dBFS) instead of zero.
    """
    p_x = max(power(x), SILENCE_POWER)
    p_n = power(noise)
    if p_n <= 0.0:
        return np.zeros_like(noise)
    return noise * np.sqrt(p_x / (p_n * 10.0 ** (snr_db / 10.0)))


def add_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """x + noise at ``snr_db`` (noise already (T,)). (T,) -> (T,)."""
    return x + scale_to_snr(x, noise, snr_db).astype(x.dtype, copy=False)


def match_rms(y: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``y`` rescaled to the RMS level of ``reference`` (unchanged if either is silent)."""
    p_y, p_r = power(y), power(reference)
    if p_y <= SILENCE_POWER or p_r <= SILENCE_POWER:
        return y
    return y * np.sqrt(p_r / p_y)


# Where coloured noise starts: the 1/f^a law has no lower end, so drawn down to the clip's lowest FFT bin (0.25 Hz for
# 4 s) a brown noise held 98-99.5 % of its power below 20 Hz, where no microphone or feature looks: its audible SNR was
# 15-25 dB above the requested one, more the longer the clip, and a pink one's 2-3 dB.
COLORED_NOISE_LOW_HZ = 20.0


def colored_noise(
    n: int, exponent: float, rng: np.random.Generator, sample_rate: float | None = None, low_hz: float = 0.0
) -> np.ndarray:
    """Gaussian noise with power spectral density ~ 1/f^exponent, unit variance. (n,) float32.

    exponent 0 = white, 1 = pink, 2 = brown (red), -1 = blue, -2 = violet. The DC bin is
    zeroed (a 1/f law is infinite there), and so is every bin below ``low_hz`` Hz (``sample_rate``
    needed): with ``low_hz`` 0 the law runs down to the first bin, whose frequency, hence the share of
    the power below the audible band, depends on the clip's length (see ``COLORED_NOISE_LOW_HZ``).
    White noise (exponent 0) is drawn as is, full band (it has 0.25 % of its power below 20 Hz at 16 kHz).
    """
    white = rng.standard_normal(n)
    if exponent == 0.0 or n < 4:
        out = white
    else:
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0  # value at DC is overwritten below; avoids 0 ** negative
        spec *= f ** (-exponent / 2.0)
        spec[: _first_bin(n, sample_rate, low_hz)] = 0.0
        out = np.fft.irfft(spec, n)
    std = float(np.std(out))
    return (out / std if std > 0 else out).astype(np.float32)


def _first_bin(n: int, sample_rate: float | None, low_hz: float) -> int:
    """The first rFFT bin of an ``n``-point transform at or above ``low_hz`` (at least 1: DC is always dropped), kept
    below the last bin so that some noise is left."""
    if low_hz <= 0.0:
        return 1
    if sample_rate is None:
        raise ValueError(f"colored_noise needs the sample rate for low_hz={low_hz}")
    return int(min(max(np.ceil(low_hz * n / sample_rate), 1), n // 2))


def soft_clip(x: np.ndarray, drive: float) -> np.ndarray:
    """Memoryless tanh saturation with unity small-signal gain: ``tanh(drive * x) / drive``."""
    if drive <= 0:
        return x
    return np.tanh(drive * x) / drive


def peak_normalize_if_over(x: np.ndarray, limit: float = 1.0) -> np.ndarray:
    """Scale ``x`` down to peak ``limit`` only when it exceeds it (RawBoost's ``normWav(x, 0)``)."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return x / peak * limit if peak > limit else x


@lru_cache(maxsize=512)
def _peaking_sos(f0: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    # RBJ audio-EQ-cookbook peaking biquad.
    a_lin = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * f0 / sr
    alpha = np.sin(w0) / (2.0 * q)
    b = np.array([1.0 + alpha * a_lin, -2.0 * np.cos(w0), 1.0 - alpha * a_lin])
    a = np.array([1.0 + alpha / a_lin, -2.0 * np.cos(w0), 1.0 - alpha / a_lin])
    return np.concatenate([b / a[0], a / a[0]])[None, :]


def peaking_eq(x: np.ndarray, sr: int, f0: float, gain_db: float, q: float = 1.0) -> np.ndarray:
    """Boost or cut ``gain_db`` around ``f0`` Hz (bandwidth ~ f0/q), zero-phase. (T,) -> (T,).

    Applied forward and backward, so each pass gets half the gain in dB.
    """
    if not 0.0 < f0 < sr / 2.0 or gain_db == 0.0 or len(x) < 8:
        return x
    sos = _peaking_sos(float(f0), float(gain_db) / 2.0, float(q), int(sr))
    return signal.sosfiltfilt(sos, x.astype(np.float64), padlen=min(len(x) - 1, 256)).astype(np.float32)


def band_pass(x: np.ndarray, sr: int, low_hz: float, high_hz: float, order: int = 4) -> np.ndarray:
    """Keep ``[low_hz, high_hz]`` with a zero-phase Butterworth. A low edge at or below 0 Hz, or a high
    edge at or above Nyquist, is left open (so 0..inf is a no-op and one setting works at any rate); a
    band that lies entirely above Nyquist (low edge at or above it) or below 0 Hz passes nothing, so the
    output is silence. (T,) -> (T,)."""
    nyq = sr / 2.0
    if low_hz >= nyq or high_hz <= 0.0:
        # before: such an edge was "left open" too, so a 5 kHz high-pass at 8 kHz returned the input unchanged
        # while a 3.9 kHz one removed nearly all of it
        return np.zeros_like(x)
    has_low = 0.0 < low_hz < nyq
    has_high = 0.0 < high_hz < nyq
    if has_low and has_high:
        if low_hz >= high_hz:
            raise ValueError(f"band-pass low edge {low_hz} Hz must lie below the high edge {high_hz} Hz")
        return butter_filter(x, sr, "bandpass", (low_hz, high_hz), order)
    if has_low:
        return butter_filter(x, sr, "highpass", (low_hz,), order)
    if has_high:
        return butter_filter(x, sr, "lowpass", (high_hz,), order)
    return x
