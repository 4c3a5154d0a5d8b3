"""Constant-Q features, pure torch: the log power of a constant-Q transform (CQT) and constant-Q cepstral
coefficients (CQCC, Todisco, Delgado and Evans, "Constant Q cepstral coefficients", CSL 2017).

The transform follows the CQT toolbox the CQCC baseline calls (``cqt(x, B, fs, fmin, fmax, 'rasterize', 'full',
'gamma', gamma)``: Holighaus, Doerfler, Velasco and Grill's nonstationary Gabor transform). Bin k is centred on
``f_k = f_min * 2^(k / B)`` (B = ``bins_per_octave``) and its filter is a Hann window *in frequency*, centred on
f_k, whose whole support is ``W_k = alpha * f_k + gamma`` Hz, ``alpha = 2^(1/B) - 2^(-1/B)``; with the baseline's
``gamma = 228.7 * alpha`` (3.3 Hz at B = 96, :func:`baseline_gamma`) the bandwidths are a constant fraction of the
ERB critical bandwidth, so the lowest bins are about 3.5 Hz wide (kernels whose main lobe spans +-0.57 s) instead
of the 0.23 Hz (+-8.8 s) a strict constant Q gives at 15.6 Hz; ``gamma: 0`` is that strict constant Q. Bins run
from f_min up to ``f_max`` (the toolbox's ``floor(B * log2(f_max / f_min)) + 1`` of them), less those whose band
passes the Nyquist frequency, as the toolbox drops them: 863 for the defaults (15.6 Hz to 7885 Hz).

How it is computed (batched, differentiable, on any device, no torchaudio or librosa): the whole input, reflected at
its ends (like the STFT features' centred frames) and followed by zeros, is transformed by one FFT; each bin's band
of that spectrum is weighted by its Hann window and brought back to the time domain by an inverse FFT sampled every
``hop_length`` samples (the band folded onto the frame grid: the values at the frame times are exact, not
interpolated). A bin's coefficient at frame t is thus its filter's output at sample ``t * hop_length``: frames are
centred there, ``frames = 1 + T // hop_length`` as for the STFT features (401 for 4 s at 16 kHz and a 160-sample
hop), where the toolbox's 'full' rasterisation gives every bin as many coefficients as its widest band needs. The
reflection is as long as the widest kernel's main lobe (two over the narrowest bandwidth: 0.57 s for the defaults,
at most 2 s) and a gap of zeros as long again keeps the FFT's circular wrap away from the frames. A filter
narrower than four FFT bins is widened to four (the toolbox's ``min_win``), which only a strict constant Q with a
low f_min on short inputs reaches.

Scale: a sinusoid of amplitude A at a bin's centre frequency gives that bin a power of A^2 / 4, whatever the input
length, at the frames farther than the bin's kernel reaches (2 / W_k seconds) from the input's ends: nearer, the kernel
also sums the reflection, whose phase does not continue the tone's (a 66 Hz bin of a 0.5 s tone reads 57 % of it at the
middle frame). The log is natural, ``log(power + log_floor)`` with ``log_floor`` MATLAB's ``eps`` (2.2e-16) as in the
baseline; the transform is computed in float64 (float32 rounding noise, ~1e-14 of a frame's energy, would lie above that
floor in every quiet bin) and returned in float32 (float64 for float64 input), autocast disabled.
Traced for the ONNX export, the two FFTs become matrix products (:meth:`CQT.power`), which ONNX Runtime computes in
float64 too: the exported graph gives the same features to float rounding.

CQCC: the log power spectrum of the CQT (geometrically spaced bins) is resampled onto a uniform frequency grid from
f_min in steps of ``f_min / d`` Hz (d = 16 samples in the first octave; 8059 points for the defaults) by a
not-a-knot cubic spline along frequency (the baseline's ``resample(..., 'spline')``), then an orthonormal DCT-II
(MATLAB's ``dct``) keeps ``n_coeffs`` coefficients: c0 .. c19 by default (the baseline's 'Z' options, its default
'ZsdD'), c1 .. c20 with ``with_c0: false``. Both steps are linear in the log spectrum, so they are folded into one
(n_coeffs, n_bins) matrix built once. Deltas and double deltas are the CQCC package's ``Deltas(x, 3)``: a
regression over +-3 frames, edges replicated, divided by ``2 * (1 + 4 + 9) = 28`` (the LFCC baseline's deltas are
unnormalised and over +-1 frame). Output: [static, delta, double delta], 60 dims by default.

Differences from the MATLAB baseline, all deliberate: frames every ``hop_length`` samples (10 ms), centred and
reflected at the input's ends like every other feature here, where the toolbox transforms the file circularly and
rasterises at its widest band's rate (about 8.5 ms); filter windows sampled at their exact centre frequencies (the
toolbox rounds centres and widths to FFT bins). The ASVspoof 2019 CQCC-GMM baseline's script passed
``fs/2^10`` and 29 to ``cqcc``: ``f_min: 7.8125, n_coeffs: 30`` reproduce it (90 dims); the ASVspoof 2021 LA script's
``cqcc(x, fs, 12, 4000, 62.50, 16, 19, 'ZsdD')`` is ``bins_per_octave: 12, f_min: 62.5, f_max: 4000`` (60 dims).
``cqcc``'s options without 'Z' keep c1 .. c_cf (cf coefficients, 19 by default): ``with_c0: false, n_coeffs: 19``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sddkit.features.spectral import (
    _DB_PER_NEPER,
    Float32Constants,
    _check_log_options,
    append_deltas,
    check_delta_width,
    check_float_samples,
    clamp_dynamic_range,
    dct_matrix,
    feature_dtype,
    pre_emphasis,
)

__all__ = [
    "CQCC",
    "CQCCConfig",
    "CQT",
    "CQTConfig",
    "MATLAB_EPS",
    "baseline_gamma",
    "cqcc_matrix",
    "cqt_bandwidths",
    "cqt_frequencies",
    "default_f_min",
    "uniform_frequencies",
]

MATLAB_EPS = float(np.finfo(np.float64).eps)
"""The baseline's log floor: ``log(abs(X).^2 + eps)``."""

_MIN_FILTER_BINS = 4  # the toolbox's min_win: a filter spans at least this many FFT bins
_MAX_PAD_SECONDS = 2.0  # the reflection is the widest kernel's main lobe, at most this long
_PLANS_KEPT = 8  # FFT plans (one per input length and device) cached per module


def baseline_gamma(bins_per_octave: int) -> float:
    """The CQCC baseline's bandwidth offset ``228.7 * (2^(1/B) - 2^(-1/B))`` Hz (3.30 Hz for B = 96)."""
    return 228.7 * (2.0 ** (1.0 / bins_per_octave) - 2.0 ** (-1.0 / bins_per_octave))


def default_f_min(f_max: float) -> float:
    """The baseline's default f_min: ``f_max / 2^ceil(log2(f_max / 20))``, whole octaves down to about 20 Hz
    (15.625 Hz for f_max 8000 Hz)."""
    return f_max / 2.0 ** math.ceil(math.log2(f_max / 20.0))


# --- configs ------------------------------------------------------------------------------------


@dataclass
class CQTConfig:
    """Log power of a constant-Q transform: 96 bins per octave from ``f_min`` (None: :func:`default_f_min`, whole
    octaves below ``f_max`` down to about 20 Hz: 15.6 Hz for an ``f_max`` of 8 or 4 kHz) to ``f_max`` (None:
    Nyquist), the CQCC baseline's bandwidths (``gamma`` None:
    :func:`baseline_gamma`; 0: a strict constant Q), a frame every ``hop_length`` samples; (B, 863, frames) for
    the defaults. No pre-emphasis, as the baseline. See the module docstring for the transform.
    """

    sample_rate: int = 16000
    hop_length: int = 160
    bins_per_octave: int = 96
    f_min: float | None = None
    f_max: float | None = None
    gamma: float | None = None
    pre_emphasis: float = 0.0
    log_floor: float = MATLAB_EPS
    top_db: float | None = None

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {self.sample_rate}")
        if self.hop_length <= 0:
            raise ValueError(f"hop_length must be > 0, got {self.hop_length}")
        # bool is an int to isinstance: `bins_per_octave: true` would be 1 bin per octave
        if isinstance(self.bins_per_octave, bool) or not 1 <= self.bins_per_octave <= 1200:
            raise ValueError(
                f"bins_per_octave must be an integer in [1, 1200] (the CQCC baseline uses 96), "
                f"got {self.bins_per_octave}"
            )
        if not 0.0 <= self.pre_emphasis < 1.0:
            raise ValueError(f"pre_emphasis must be in [0, 1), got {self.pre_emphasis}")
        _check_log_options(self.log_floor, self.top_db)
        if self.gamma is not None and not 0.0 <= self.gamma < math.inf:
            raise ValueError(
                f"gamma must be >= 0 Hz (or null: the baseline's {baseline_gamma(self.bins_per_octave):.4g}), "
                f"got {self.gamma}"
            )
        nyquist = self.sample_rate / 2.0
        f_max = self.resolved_f_max
        if not 0.0 < f_max <= nyquist:
            raise ValueError(f"f_max must be in (0, sample_rate/2 = {nyquist:g}] Hz (or null: Nyquist), got {f_max}")
        f_min = self.resolved_f_min
        if not 0.0 < f_min < f_max:
            raise ValueError(
                f"need 0 < f_min < f_max <= sample_rate/2 = {nyquist:g} Hz, got f_min={f_min}, f_max={f_max}"
            )
        lowest_width = float(_bandwidths(np.array([f_min]), self)[0])
        if f_min < lowest_width / 2:  # the toolbox drops such bins with a warning
            raise ValueError(
                f"the lowest bin's band (centred on f_min={f_min:g} Hz, {lowest_width:.3g} Hz wide with "
                f"gamma={self.resolved_gamma:.4g}) reaches below 0 Hz: raise f_min or lower gamma"
            )
        if cqt_frequencies(self).size == 0:
            raise ValueError(
                f"no bin's band fits below the Nyquist frequency ({nyquist:g} Hz): f_min={f_min:g} Hz is too close "
                f"to it for a band {lowest_width:.3g} Hz wide; lower f_min or gamma"
            )

    @property
    def resolved_f_max(self) -> float:
        return self.sample_rate / 2.0 if self.f_max is None else float(self.f_max)

    @property
    def resolved_f_min(self) -> float:
        return default_f_min(self.resolved_f_max) if self.f_min is None else float(self.f_min)

    @property
    def band_hz(self) -> tuple[float, float]:
        """``(f_min, f_max)`` in Hz as resolved (the spectral front-ends' ``band_hz``)."""
        return self.resolved_f_min, self.resolved_f_max

    @property
    def resolved_gamma(self) -> float:
        return baseline_gamma(self.bins_per_octave) if self.gamma is None else float(self.gamma)


@dataclass
class CQCCConfig(CQTConfig):
    """CQCC as the ASVspoof 2015-2019 CQCC-GMM baseline's ``cqcc(x, fs, 96, fs/2, fs/2^9, 16, 19, 'ZsdD')``: the
    CQT of :class:`CQTConfig`, its log power resampled to a uniform grid of ``f_min / d`` Hz steps (cubic spline),
    an orthonormal DCT keeping ``n_coeffs`` (20: c0 .. c19; ``with_c0: false``: c1 .. c20), then deltas and
    double deltas over +-``delta_width // 2`` frames normalised as the baseline's ``Deltas``: (B, 60, frames).
    """

    d: int = 16
    n_coeffs: int = 20
    with_c0: bool = True
    with_deltas: bool = True
    delta_width: int = 7

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.d, bool) or self.d < 1:
            raise ValueError(f"d (uniform samples in the first octave) must be an integer >= 1, got {self.d}")
        check_delta_width(self.delta_width, "the baseline's is 7: +-3 frames")
        points = uniform_frequencies(self).size
        most = points if self.with_c0 else points - 1
        if not 1 <= self.n_coeffs <= most:
            raise ValueError(
                f"n_coeffs must be in [1, {most}] (the uniform grid has {points} points"
                f"{'' if self.with_c0 else ', less c0'}), got {self.n_coeffs}"
            )


# --- frequencies and matrices --------------------------------------------------------------------


def _bandwidths(freqs: np.ndarray, cfg: CQTConfig) -> np.ndarray:
    alpha = 2.0 ** (1.0 / cfg.bins_per_octave) - 2.0 ** (-1.0 / cfg.bins_per_octave)
    return alpha * freqs + cfg.resolved_gamma


def cqt_frequencies(cfg: CQTConfig) -> np.ndarray:
    """Bin centre frequencies ``f_min * 2^(k / B)`` in Hz (float64), k = 0 .. n_bins - 1: those up to f_max whose
    band (:func:`cqt_bandwidths`) ends at or below the Nyquist frequency, as the toolbox keeps them."""
    f_min, f_max, bins = cfg.resolved_f_min, cfg.resolved_f_max, cfg.bins_per_octave
    # the toolbox's floor(B * log2(fmax / fmin)); the tolerance keeps a whole number of octaves whole
    top = math.floor(bins * math.log2(f_max / f_min) + 1e-9)
    freqs = f_min * 2.0 ** (np.arange(top + 1, dtype=np.float64) / bins)
    past = np.nonzero(freqs + _bandwidths(freqs, cfg) / 2.0 > cfg.sample_rate / 2.0)[0]
    return freqs[: past[0]] if past.size else freqs


def cqt_bandwidths(cfg: CQTConfig) -> np.ndarray:
    """The whole support in Hz of each bin's Hann window, ``alpha * f_k + gamma`` (float64, n_bins)."""
    return _bandwidths(cqt_frequencies(cfg), cfg)


def uniform_frequencies(cfg: CQCCConfig) -> np.ndarray:
    """The CQCC's uniform grid: f_min, f_min + f_min / d, ... up to the highest bin's centre (float64, Hz)."""
    freqs = cqt_frequencies(cfg)
    step = cfg.resolved_f_min / cfg.d
    return freqs[0] + step * np.arange(math.floor((freqs[-1] - freqs[0]) / step + 1e-9) + 1, dtype=np.float64)


def cqcc_matrix(cfg: CQCCConfig) -> np.ndarray:
    """The (n_coeffs, n_bins) float64 matrix that maps a log CQT frame to its static CQCCs: the orthonormal DCT-II
    rows kept, times the not-a-knot cubic spline from the bins' frequencies onto :func:`uniform_frequencies`."""
    freqs, grid = cqt_frequencies(cfg), uniform_frequencies(cfg)
    if freqs.size == 1:  # one bin: the resampled spectrum is that bin's value everywhere
        spline = np.ones((grid.size, 1))
    else:
        # a spline is linear in its data: interpolating the identity gives the resampling matrix (grid, bins)
        from scipy.interpolate import CubicSpline  # here: scoring a model without CQCC never imports scipy

        spline = CubicSpline(freqs, np.eye(freqs.size), axis=0, bc_type="not-a-knot")(grid)
    first = 0 if cfg.with_c0 else 1
    dct = dct_matrix(grid.size, cfg.n_coeffs + first, dtype=torch.float64).numpy()[first:]
    return dct @ spline


# --- modules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    """An octave's n bins: the FFT bins from each one's band's start (n, a multiple of the grid) and its Hann window
    there (float64), zero past the band."""

    index: Tensor
    window: Tensor
    width: int  # the widest band's FFT bins; a Python int: traced, sizes read from tensors were dynamic in the graph


@dataclass(frozen=True)
class _Plan:
    """How one input length is transformed: padding, FFT size and each octave's band gather and windows."""

    pad: int  # samples reflected (or zero-padded) before the signal: a whole number of hops
    fft_size: int  # hop_length * grid
    grid: int  # frame times on the FFT's circle; frame t of the output is grid point pad / hop + t
    groups: tuple[_Group, ...]  # one per octave


class CQT(Float32Constants):
    """Natural-log power of a constant-Q transform: waveform (..., T) -> (..., n_bins, 1 + T // hop_length).

    Exports to ONNX: traced, it computes its FFTs as matrix products (see :meth:`power`).
    """

    def __init__(self, cfg: CQTConfig | None = None):
        super().__init__()
        self.cfg = cfg or CQTConfig()
        self._freqs = cqt_frequencies(self.cfg)
        self._widths = _bandwidths(self._freqs, self.cfg)
        self._plans: dict[tuple[int, str], _Plan] = {}
        # a float32 constant as the other features' windows: it also gives the module its dtype, which a Detector
        # gives the waveform in (detectors.detector.waveform_dtype). Without one, a bfloat16 model's front-end got
        # samples rounded to bfloat16, which moved quiet bins by up to 5 nats
        self.register_buffer("centre_hz", torch.from_numpy(self._freqs).to(torch.float32), persistent=False)

    @property
    def output_dim(self) -> int:
        return self.n_bins

    @property
    def n_bins(self) -> int:
        """The CQT's bins (the CQCC's output_dim is its coefficients')."""
        return int(self._freqs.size)

    @property
    def frequencies(self) -> Tensor:
        """Bin centre frequencies in Hz, float64 (n_bins,)."""
        return torch.from_numpy(self._freqs.copy())

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a signal of ``num_samples``: ``1 + num_samples // hop_length``."""
        _check_length(num_samples)
        return 1 + num_samples // self.cfg.hop_length

    def forward(self, waveform: Tensor) -> Tensor:
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            return self.log_power(waveform).to(feature_dtype(waveform))

    def log_power(self, waveform: Tensor) -> Tensor:
        """(..., T) -> (..., n_bins, frames) ``log(power + log_floor)`` (floored ``top_db`` below the item's
        maximum), float64."""
        log_power = torch.log(self.power(waveform) + self.cfg.log_floor)
        return clamp_dynamic_range(log_power, self.cfg.top_db, _DB_PER_NEPER)

    def power(self, waveform: Tensor, *, matmul: bool | None = None) -> Tensor:
        """(..., T) -> (..., n_bins, frames) CQT power, float64.

        ``matmul`` (None: only while traced for the ONNX export) computes it by matrix products instead of FFTs
        (:func:`_real_spectrum`, :func:`_frame_values`): the same values to float64 rounding, in the MatMul, Gather
        and elementwise operators every ONNX runtime has in float64, where the exporter refuses complex tensors
        and ONNX Runtime's DFT is a naive, float32 one for lengths not a power of two. It costs about 1.7 times
        the FFTs on a CPU, so eager calls keep those.
        """
        check_float_samples(waveform)
        length = waveform.shape[-1]
        traced = torch.jit.is_tracing()
        if traced:  # a traced size is a tensor; the export's window length is fixed, so the plan is constant
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                length = int(length)
        matmul = traced if matmul is None else matmul
        _check_length(length)
        lead = waveform.shape[:-1]
        cfg = self.cfg
        if waveform.numel() == 0 and not traced:  # an empty batch: MKL's FFT refuses a transform of no signal
            return waveform.new_zeros((*lead, self.n_bins, 1 + length // cfg.hop_length), dtype=torch.float64)
        x = pre_emphasis(waveform.to(torch.float64), cfg.pre_emphasis).reshape(-1, 1, length)
        plan = self._plan(length, x.device)
        # the reflection where the signal is long enough, zeros beyond it and after: the FFT's circle wraps there
        reflect = min(plan.pad, length - 1)
        if reflect > 0:
            x = F.pad(x, (reflect, reflect), mode="reflect")
        x = F.pad(x, (plan.pad - reflect, plan.fft_size - length - plan.pad - reflect))[:, 0]
        first, frames = plan.pad // cfg.hop_length, 1 + length // cfg.hop_length
        if matmul:
            spectrum = _real_spectrum(x, plan)  # (N, 2, fft_size // 2 + 1): real and imaginary parts
        else:
            spectrum = torch.fft.rfft(x, n=plan.fft_size)  # (N, fft_size // 2 + 1)
        parts = []
        for group in plan.groups:
            index, window = group.index, group.window  # zero-padded to whole turns of the grid: no padding below
            folds = index.shape[-1] // plan.grid
            if matmul and folds == 1:  # the products need only the band itself
                index, window = index[:, : group.width], window[:, : group.width]
            # (N, [2,] n, width): each bin's band, windowed
            bands = spectrum.index_select(-1, index.reshape(-1)).unflatten(-1, index.shape) * window
            # folded onto the frame grid: an inverse DFT over `grid` points then samples the band's time signal at
            # every hop exactly (sampling in time sums the spectrum's shifts by the sampling rate)
            if folds > 1:
                bands = bands.unflatten(-1, (folds, plan.grid)).sum(-2)
            if matmul:
                re, im = _frame_values(bands[:, 0], bands[:, 1], min(group.width, plan.grid), plan.grid, first, frames)
            else:
                coeffs = torch.fft.ifft(bands, norm="forward")[..., first : first + frames]
                re, im = coeffs.real, coeffs.imag
            parts.append(re.square() + im.square())  # |c|^2: finite gradients at 0, unlike abs()
        power = torch.cat(parts, dim=-2)
        return power.reshape(*lead, *power.shape[-2:])

    def _plan(self, length: int, device: torch.device) -> _Plan:
        key = (length, str(device))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _PLANS_KEPT:
                self._plans.clear()
            # made as normal tensors even while scoring (torch.inference_mode): a plan of inference tensors, cached,
            # failed every later forward at that length whose input needs a gradient (an attack, a saliency map)
            with torch.inference_mode(False):
                plan = self._plans[key] = _make_plan(self._freqs, self._widths, self.cfg, length, device)
        return plan


class CQCC(CQT):
    """Constant-Q cepstral coefficients: waveform (..., T) -> (..., output_dim, 1 + T // hop_length).

    output_dim = 3 * n_coeffs with deltas (60 by default), else n_coeffs.
    """

    def __init__(self, cfg: CQCCConfig | None = None):
        cfg = cfg or CQCCConfig()
        super().__init__(cfg)
        self.register_buffer("cepstrum", torch.from_numpy(cqcc_matrix(cfg)), persistent=False)  # float64

    @property
    def output_dim(self) -> int:
        cfg: CQCCConfig = self.cfg  # type: ignore[assignment]
        return cfg.n_coeffs * (3 if cfg.with_deltas else 1)

    def forward(self, waveform: Tensor) -> Tensor:
        cfg: CQCCConfig = self.cfg  # type: ignore[assignment]
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            # in float64, rounded once at the end: c0 sums 8059 log values (about -3200 for silence), whose float32
            # rounding differed between torch and ONNX Runtime by ~1e-3
            log_power = self.log_power(waveform)
            ceps = torch.matmul(self.cepstrum.to(log_power.dtype), log_power)
            if not cfg.with_deltas:
                return ceps.to(feature_dtype(waveform))
            h = cfg.delta_width // 2
            norm = 2.0 * sum(k * k for k in range(1, h + 1))  # the baseline's Deltas divides by 2 * sum(k^2)
            return append_deltas(ceps, cfg.delta_width, norm).to(feature_dtype(waveform))


def _check_length(length: int) -> None:
    if length < 1:
        raise ValueError(f"the signal has no samples (length {length}): it gives no CQT frame")


def _make_plan(freqs: np.ndarray, widths: np.ndarray, cfg: CQTConfig, length: int, device: torch.device) -> _Plan:
    hop, sr = cfg.hop_length, cfg.sample_rate
    # the widest kernel's main lobe reaches 2 / W seconds from its centre (W: the narrowest band)
    reach = min(2.0 / float(widths.min()), _MAX_PAD_SECONDS)
    pad = hop * math.ceil(reach * sr / hop)
    from scipy.fft import next_fast_len  # here: scoring a model without a CQT never imports scipy

    # signal, its two reflections and a gap of zeros as long as one, so the circle's wrap sits two reaches away
    grid = next_fast_len(-(-(length + 3 * pad) // hop))
    fft_size = hop * grid
    resolution = sr / fft_size
    widths = np.maximum(widths, _MIN_FILTER_BINS * resolution)
    groups = []
    for start in range(0, freqs.size, cfg.bins_per_octave):
        f, w = freqs[start : start + cfg.bins_per_octave, None], widths[start : start + cfg.bins_per_octave, None]
        lo = np.floor((f - w / 2) / resolution).astype(np.int64) + 1  # first FFT bin inside the band
        hi = np.ceil((f + w / 2) / resolution).astype(np.int64) - 1  # last one
        width = int((hi - lo).max()) + 1
        index = lo + np.arange(-(-width // grid) * grid)  # whole turns of the grid: the eager path folds them as is
        # divided by the FFT size: the inverse transform's 1 / fft_size (a tone of amplitude A then gives A / 2)
        window = (0.5 + 0.5 * np.cos(2 * math.pi * (index * resolution - f) / w)) / fft_size
        # past the band's end (a narrower band of the octave), or below 0 Hz / above Nyquist for a widened one
        outside = (index > hi) | (index < 0) | (index > fft_size // 2)
        window[outside] = 0.0
        index = np.clip(index, 0, fft_size // 2)
        groups.append(_Group(torch.from_numpy(index).to(device), torch.from_numpy(window).to(device), width))
    return _Plan(pad=pad, fft_size=fft_size, grid=grid, groups=tuple(groups))


def _divisor_near_root(n: int) -> int:
    """The largest divisor of ``n`` not above its square root."""
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            best = d
    return best


def _cos_sin(numerator: np.ndarray, period: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin of ``2 pi numerator / period`` in float64, the integer numerator reduced modulo ``period`` first
    (the angle stays within one turn: exact to float64 rounding however large the product)."""
    angle = (numerator % period).astype(np.float64) * (2 * math.pi / period)
    return torch.from_numpy(np.cos(angle)).to(device), torch.from_numpy(np.sin(angle)).to(device)


def _real_spectrum(x: Tensor, plan: _Plan) -> Tensor:
    """``torch.fft.rfft(x, n=plan.fft_size)`` as (N, 2, fft_size // 2 + 1) real and imaginary parts, from matrix
    products: the fft_size = N1 * N2 points as an (N1, N2) array, a DFT over N1 (one MatMul per part), twiddle
    factors, a DFT over N2 for the bins up to Nyquist (Gentleman and Sande's four-step FFT)."""
    size = plan.fft_size
    n1 = _divisor_near_root(size)
    n2 = size // n1
    device = x.device
    # x[n1 * N2 + n2] -> (N, N1, N2); A[k1, n2] = sum over n1 of x W_N1^(n1 k1), W_N = exp(-2 pi i / N)
    rows = x.reshape(-1, n1, n2)
    cos1, sin1 = _cos_sin(np.arange(n1)[:, None] * np.arange(n1), n1, device)
    a_re, a_im = torch.matmul(cos1, rows), -torch.matmul(sin1, rows)
    # twiddle W_size^(n2 k1)
    cos_t, sin_t = _cos_sin(np.arange(n1)[:, None] * np.arange(n2), size, device)
    b_re, b_im = a_re * cos_t + a_im * sin_t, a_im * cos_t - a_re * sin_t
    # X[k1 + N1 k2] = sum over n2 of B[k1, n2] W_N2^(n2 k2), for the k2 that reach Nyquist
    k2 = (size // 2) // n1 + 1
    cos2, sin2 = _cos_sin(np.arange(n2)[:, None] * np.arange(k2), n2, device)  # (N2, K2)
    x_re = torch.matmul(b_re, cos2) + torch.matmul(b_im, sin2)
    x_im = torch.matmul(b_im, cos2) - torch.matmul(b_re, sin2)
    spectrum = torch.stack([x_re, x_im], dim=1)  # (N, 2, N1, K2), bin k1 + N1 k2
    return spectrum.transpose(-1, -2).reshape(-1, 2, k2 * n1)[..., : size // 2 + 1]


def _frame_values(re: Tensor, im: Tensor, width: int, grid: int, first: int, frames: int) -> tuple[Tensor, Tensor]:
    """The unnormalised inverse DFT over ``grid`` points of the folded bands ``re + i im`` (..., width), width <=
    grid, at points first .. first + frames - 1 only, as real and imaginary parts (..., frames): two MatMuls each."""
    cos, sin = _cos_sin(np.arange(width)[:, None] * np.arange(first, first + frames), grid, re.device)
    return torch.matmul(re, cos) - torch.matmul(im, sin), torch.matmul(re, sin) + torch.matmul(im, cos)
