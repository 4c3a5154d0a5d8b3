"""RawBoost (Tak, Kamble, Patino, Todisco, Evans, ICASSP 2022): raw-waveform data boosting.

Three signal degradations, applied alone or combined:

1. **LnL convolutive noise** — linear and non-linear convolutive distortion: the sum over
   orders ``k = 1..N_f`` of ``x**k`` filtered by a random cascade of ``nBands`` FIR band-stop
   (notch) filters, each with a random centre frequency, bandwidth and (odd) number of taps;
   the higher (non-linear) orders are attenuated by a random bias in dB.
2. **ISD additive noise** — impulsive, signal-dependent: a random ``beta``% (at most ``P``%)
   of the samples get ``g_sd * x[n] * u1 * u2`` added, with ``u1, u2 ~ U(-1, 1)``.
3. **SSI additive noise** — stationary, signal-independent: white noise coloured by a random
   notch-filter cascade, added at a random SNR in ``[SNRmin, SNRmax]`` dB.

Published combinations: 4 = 1+2+3 in series, 5 = 1+2 in series, 6 = 1+3 in series,
7 = 2+3 in series, 8 = 1 and 2 in parallel (summed, then peak-normalised).

Defaults are the published ones (nBands 5, minF 20, maxF 8000, minBW 100, maxBW 1000,
minCoeff 10, maxCoeff 100, minG 0, maxG 0, minBiasLinNonLin 5, maxBiasLinNonLin 20,
N_f 5, P 10, g_sd 2, SNRmin 10, SNRmax 40), written as ``(low, high)`` ranges here.

Against the reference code (``RawBoost.py`` and ``process_Rawboost_feature`` of SSL_Anti-spoofing): the
algorithms, their order of random draws and every default agree, and fed the same draws the outputs agree to
float32 precision, except where this implementation differs on purpose:

* Time alignment: the reference's ``filterFIR`` keeps its output from tap ``(L + 1) / 2`` of an odd length-``L``
  FIR whose delay is ``(L - 1) / 2``, so its filtered signal comes one sample early; here every filter is
  delay-compensated exactly (algo 1's output, and algo 3's coloured noise, is the reference's one sample later).
* FIR lengths: 11 to 101 taps instead of the reference's 11 to 99 (see ``fir_taps``).
* The cascade's peak gain is measured on 513 bins from 0 Hz to Nyquist (more beyond 1024 taps); the reference's
  ``freqz`` takes 512 and leaves Nyquist out (at most about 0.01 dB apart).
* The non-linear gain range is ``[minG - maxBiasLinNonLin, maxG - minBiasLinNonLin]``; the reference code draws
  between ``minG - minBiasLinNonLin`` and ``maxG - maxBiasLinNonLin``. Both are -20 to -5 dB at the published
  ``minG = maxG = 0``; they differ only when ``gain_db`` is a range.
* Any sample rate: a notch whose band lies above Nyquist is skipped (the reference, written for 16 kHz, raises).
* ``snr_db`` must lie in [-30, 100] dB and ``gain_db`` in [-120, 60] dB (the reference takes any value): beyond them
  the level factors overflow and the output is not finite.
* SSI on a silent input adds noise at the -100 dBFS floor (``SILENCE_POWER``) less the SNR; the reference adds
  nothing.

sddkit's training datasets augment each random crop; SSL_Anti-spoofing augments the whole file before cutting it
to 64600 samples, so its normalisations and SNRs refer to the whole file rather than to the crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft
from scipy.fft import next_fast_len

from sddkit.augment import AUGMENTATIONS
from sddkit.augment.base import (
    LEVEL_DB_LIMITS,
    SNR_DB_LIMITS,
    Augmentation,
    Range,
    check_probability,
    check_range,
    uniform,
    uniform_int,
)
from sddkit.augment.dsp import convolve_aligned, peak_normalize_if_over, scale_to_snr

# The published combinations: algo id -> stages applied in series ("1|2" = in parallel).
_ALGOS: dict[int, tuple[str, ...]] = {
    1: ("lnl",),
    2: ("isd",),
    3: ("ssi",),
    4: ("lnl", "isd", "ssi"),
    5: ("lnl", "isd"),
    6: ("lnl", "ssi"),
    7: ("isd", "ssi"),
    8: ("lnl|isd",),
}


# the longest FIR a notch cascade may draw (RawBoostConfig.fir_taps)
MAX_FIR_TAPS = 4097


@dataclass
class RawBoostConfig:
    """RawBoost parameters (published names in brackets).

    algo: 1..8, see the module docstring.
    n_bands [nBands]: notch filters per cascade.
    center_hz [minF, maxF]: range of each notch's centre frequency; the band's edges are kept inside (0, Nyquist).
    bandwidth_hz [minBW, maxBW]: range of each notch's bandwidth.
    fir_taps [minCoeff, maxCoeff]: range of each FIR's length, both ends included, then made odd (an even draw
        gains one tap): 11 to 101 taps by default, at most ``MAX_FIR_TAPS`` (4097). The reference code truncates a
        float drawn below maxCoeff, so its longest FIR has 99 taps; one draw in 91 differs, kept so that earlier
        runs reproduce.
    gain_db [minG, maxG]: gain of the linear (first-order) filter cascade.
    nonlinear_bias_db [minBiasLinNonLin, maxBiasLinNonLin]: extra attenuation of the
        higher-order (non-linear) terms; their gain is drawn in
        ``[gain_db[0] - bias[1], gain_db[1] - bias[0]]``.
    n_orders [N_f]: highest non-linear order (x, x**2, ..., x**N_f).
    impulse_percent [0, P]: range of the percentage of samples hit by impulsive noise.
    impulse_gain [g_sd]: gain of the impulsive noise relative to the sample it hits.
    snr_db [SNRmin, SNRmax]: SNR range of the coloured stationary noise.
    p: probability of applying the augmentation at all.
    """

    algo: int = 5
    n_bands: int = 5
    center_hz: Range = (20.0, 8000.0)
    bandwidth_hz: Range = (100.0, 1000.0)
    fir_taps: tuple[int, int] = (10, 100)
    gain_db: Range = (0.0, 0.0)
    nonlinear_bias_db: Range = (5.0, 20.0)
    n_orders: int = 5
    impulse_percent: Range = (0.0, 10.0)
    impulse_gain: float = 2.0
    snr_db: Range = (10.0, 40.0)
    p: float = 1.0

    def __post_init__(self) -> None:
        if self.algo not in _ALGOS:
            raise ValueError(f"algo must be one of {sorted(_ALGOS)}, got {self.algo}")
        if self.n_bands < 1 or self.n_orders < 1:
            raise ValueError("n_bands and n_orders must be >= 1")
        check_range("center_hz", self.center_hz, lo=0.0)
        check_range("bandwidth_hz", self.bandwidth_hz, lo=0.0)
        # at most 4097 taps (a quarter of a second at 16 kHz, 40x the published longest): a cascade of five such
        # FIRs costs about 0.2 s per 2 s item on one core, of 16,385-tap ones 30-50 s, so `fir_taps: [10, 1e6]`
        # would stall training at its first item instead of being refused when parsed
        check_range("fir_taps", self.fir_taps, lo=3, hi=MAX_FIR_TAPS)
        check_range("gain_db", self.gain_db, *LEVEL_DB_LIMITS)
        check_range("nonlinear_bias_db", self.nonlinear_bias_db, lo=0.0)
        check_range("impulse_percent", self.impulse_percent, lo=0.0, hi=100.0)
        check_range("snr_db", self.snr_db, *SNR_DB_LIMITS)
        if not 0 <= self.impulse_gain < np.inf:  # an infinite gain made every augmented item non-finite
            raise ValueError(f"impulse_gain must be finite and >= 0, got {self.impulse_gain}")
        check_probability(self.p)


def bandstop_fir(taps: int, f1: float, f2: float, sr: int) -> np.ndarray:
    """Hamming-windowed-sinc band-stop FIR (``taps`` odd) with unit gain at DC: scipy's
    ``firwin(taps, [f1, f2], window="hamming")`` without its per-call overhead. (taps,)."""
    m = np.arange(taps) - (taps - 1) / 2.0
    lo, hi = 2.0 * f1 / sr, 2.0 * f2 / sr
    h = lo * np.sinc(lo * m) - hi * np.sinc(hi * m)
    h[(taps - 1) // 2] += 1.0  # all-pass minus the band-pass
    h *= np.hamming(taps)
    return h / h.sum()


def notch_cascade(cfg: RawBoostConfig, gain_db: tuple[float, float], sr: int, rng: np.random.Generator) -> np.ndarray:
    """Impulse response of a cascade of ``n_bands`` random linear-phase FIR band-stop filters.

    The cascade is normalised to a peak magnitude response (on 513 bins, 0 Hz to Nyquist) of ``10**(g/20)``,
    ``g`` drawn in ``gain_db``. Returns (L,) with L odd, so its group delay ``(L - 1) / 2`` is an integer.
    """
    nyq = sr / 2.0
    b = np.ones(1)
    for _ in range(cfg.n_bands):
        fc = uniform(rng, cfg.center_hz)
        bw = uniform(rng, cfg.bandwidth_hz)
        taps = uniform_int(rng, cfg.fir_taps)
        taps += 1 - taps % 2  # a band-stop FIR must have an odd length (type I)
        f1 = max(fc - bw / 2.0, 1e-3)
        f2 = min(fc + bw / 2.0, nyq - 1e-3)
        if f1 >= f2:  # the band fell entirely above Nyquist (other sample rates): nothing to notch
            continue
        b = np.convolve(bandstop_fir(taps, f1, f2, sr), b)
    g = uniform(rng, gain_db)
    peak = np.max(np.abs(np.fft.rfft(b, max(1024, len(b)))))
    return 10.0 ** (g / 20.0) * b / peak


def _fir(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    return convolve_aligned(x, b, ref=(len(b) - 1) // 2)


def lnl_convolutive_noise(x: np.ndarray, sr: int, cfg: RawBoostConfig, rng: np.random.Generator) -> np.ndarray:
    """Algorithm 1: sum_k FIR_k(x**k), k = 1..n_orders; zero-mean, peak-limited to 1. (T,) -> (T,)."""
    nonlin_gain = (cfg.gain_db[0] - cfg.nonlinear_bias_db[1], cfg.gain_db[1] - cfg.nonlinear_bias_db[0])
    filters = [notch_cascade(cfg, cfg.gain_db if k == 1 else nonlin_gain, sr, rng) for k in range(1, cfg.n_orders + 1)]
    # All filters are linear phase with odd lengths: centring each in the longest one's span gives
    # them one common delay, so the n_orders convolutions can be summed in the frequency domain
    # and inverted once.
    span = max(len(b) for b in filters)
    nfft = next_fast_len(len(x) + span - 1, real=True)
    powers = np.empty((len(filters), len(x)), dtype=np.float32)  # float32 FFTs: 2x faster, ample precision
    powers[0] = x
    for k in range(1, len(filters)):
        powers[k] = powers[k - 1] * powers[0]  # x**(k+1) by repeated products: much faster than **
    centred = np.zeros((len(filters), span), dtype=np.float32)
    for k, b in enumerate(filters):
        off = (span - len(b)) // 2
        centred[k, off : off + len(b)] = b
    spec = (sp_fft.rfft(powers, nfft, axis=-1) * sp_fft.rfft(centred, nfft, axis=-1)).sum(axis=0)
    y = sp_fft.irfft(spec, nfft)[(span - 1) // 2 : (span - 1) // 2 + len(x)]
    y -= y.mean()
    return peak_normalize_if_over(y)


def isd_additive_noise(x: np.ndarray, cfg: RawBoostConfig, rng: np.random.Generator) -> np.ndarray:
    """Algorithm 2: impulsive noise proportional to the signal on a random beta% of samples. (T,) -> (T,)."""
    beta = uniform(rng, cfg.impulse_percent)
    n = int(len(x) * beta / 100.0)
    y = x.astype(np.float64, copy=True)
    idx = rng.permutation(len(x))[:n]
    f_r = (2.0 * rng.random(n) - 1.0) * (2.0 * rng.random(n) - 1.0)
    y[idx] += cfg.impulse_gain * y[idx] * f_r
    return peak_normalize_if_over(y)


def ssi_additive_noise(x: np.ndarray, sr: int, cfg: RawBoostConfig, rng: np.random.Generator) -> np.ndarray:
    """Algorithm 3: notch-filtered white noise added at an SNR drawn in ``snr_db``. (T,) -> (T,)."""
    noise = rng.standard_normal(len(x))
    noise = _fir(noise, notch_cascade(cfg, cfg.gain_db, sr, rng))
    snr = uniform(rng, cfg.snr_db)
    x64 = x.astype(np.float64)
    return x64 + scale_to_snr(x64, noise, snr)


def rawboost(x: np.ndarray, sr: int, cfg: RawBoostConfig, rng: np.random.Generator) -> np.ndarray:
    """Apply RawBoost algorithm ``cfg.algo`` to ``x``. (T,) -> (T,) float64."""
    y = x.astype(np.float64)
    for stage in _ALGOS[cfg.algo]:
        if stage == "lnl":
            y = lnl_convolutive_noise(y, sr, cfg, rng)
        elif stage == "isd":
            y = isd_additive_noise(y, cfg, rng)
        elif stage == "ssi":
            y = ssi_additive_noise(y, sr, cfg, rng)
        else:  # "lnl|isd": both from the same input, summed, then peak-limited
            y = peak_normalize_if_over(lnl_convolutive_noise(y, sr, cfg, rng) + isd_additive_noise(y, cfg, rng))
    return y


class RawBoost(Augmentation):
    """RawBoost as a waveform augmentation (see the module docstring)."""

    cfg: RawBoostConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return rawboost(x, sr, self.cfg, rng)


@AUGMENTATIONS.register("rawboost", config=RawBoostConfig)
def build_rawboost(cfg: RawBoostConfig, **_: object) -> RawBoost:
    """RawBoost (Tak et al. 2022): convolutive, impulsive and coloured additive noise (algo 1-8)."""
    return RawBoost(cfg)
