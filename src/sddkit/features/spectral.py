"""Pure-torch spectral features: log-Mel, log linear-filterbank energies, linear log-power spectrogram, LFCC.

Everything is batched, differentiable and runs on any device (no torchaudio): a waveform
(..., T) becomes features (..., F, frames). With ``center=True`` (the default) frames are
centred on ``t * hop_length`` (reflect padding), so ``frames = 1 + T // hop_length`` (for an odd
n_fft ``1 + (T - 1) // hop_length``: torch pads n_fft // 2 on each side); 4 s at 16 kHz with a
160-sample hop gives 401 frames.

Mel filterbank: ``mel_scale="htk"`` (default) uses mel = 2595 log10(1 + f/700) and filters
with unit peak, as torchaudio's ``MelSpectrogram`` default (HTK and Kaldi use the same scale and
peak but draw their triangles linear in mel, so their weights differ a little); ``"slaney"`` uses
the Slaney/Auditory-Toolbox scale (linear below 1 kHz, logarithmic above), and
``mel_norm="slaney"`` scales each filter to unit area (librosa's default, use both for
librosa-compatible features). Filters are triangles on the FFT bin frequencies between
consecutive band edges; rows of a filterbank are filters: (n_filters, n_fft // 2 + 1).
Centred frames reflect the signal at its ends as torchaudio does; librosa (0.10 on) zero-pads
them by default (``pad_mode="constant"``), so its first and last few frames differ.

Spectra are power spectra ``|STFT|^2`` computed as ``re^2 + im^2`` (finite gradients at 0).
Features are returned in float32 (float64 for float64 input) with autocast disabled: under fp16
the log of small powers and the FFT would lose too much precision. The linear spectrogram's power
spectrum is computed in float64 (see ``_PowerSpectrum.power``), so its quiet bins, each a feature down
to a log floor of 1e-10, are not float32 FFT rounding noise.
"""

from __future__ import annotations

import contextvars
import math
import warnings
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LFCC",
    "LFCCConfig",
    "LinearSpectrogram",
    "LinearSpectrogramConfig",
    "LogLinearFilterbank",
    "LogLinearFilterbankConfig",
    "LogMel",
    "LogMelConfig",
    "Float32Constants",
    "append_deltas",
    "check_delta_width",
    "check_float_samples",
    "dct_matrix",
    "deltas",
    "feature_dtype",
    "hz_to_mel",
    "linear_filterbank",
    "mel_filterbank",
    "mel_to_hz",
    "power_spectrogram",
    "pre_emphasis",
    "shared_computation",
    "shared_result",
    "stft",
    "triangular_filterbank",
    "window_function",
]

MelScale = Literal["htk", "slaney"]
MelNorm = Literal["none", "slaney"]
WindowKind = Literal["hann", "hamming"]

# Slaney scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above.
_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOGSTEP = math.log(6.4) / 27.0


# --- functional pieces ------------------------------------------------------------------------


def hz_to_mel(freq: Tensor, scale: MelScale = "htk") -> Tensor:
    """Frequencies in Hz -> mel (same shape)."""
    freq = torch.as_tensor(freq, dtype=torch.float64, device="cpu")
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    if scale != "slaney":
        raise ValueError(f"unknown mel scale {scale!r}; use 'htk' or 'slaney'")
    linear = freq / _SLANEY_F_SP
    log_part = (
        _SLANEY_MIN_LOG_MEL + torch.log(freq.clamp_min(_SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    )
    return torch.where(freq >= _SLANEY_MIN_LOG_HZ, log_part, linear)


def mel_to_hz(mel: Tensor, scale: MelScale = "htk") -> Tensor:
    """Mel -> Hz, the inverse of :func:`hz_to_mel`."""
    mel = torch.as_tensor(mel, dtype=torch.float64, device="cpu")
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if scale != "slaney":
        raise ValueError(f"unknown mel scale {scale!r}; use 'htk' or 'slaney'")
    linear = mel * _SLANEY_F_SP
    log_part = _SLANEY_MIN_LOG_HZ * torch.exp(_SLANEY_LOGSTEP * (mel - _SLANEY_MIN_LOG_MEL))
    return torch.where(mel >= _SLANEY_MIN_LOG_MEL, log_part, linear)


def _bin_frequencies(n_fft: int, sample_rate: int) -> Tensor:
    """The rFFT bins' frequencies in Hz, float64 (n_fft // 2 + 1,): bin k lies at k * sr / n_fft (for an odd n_fft
    the last one falls short of sr / 2)."""
    return torch.arange(n_fft // 2 + 1, dtype=torch.float64, device="cpu") * (sample_rate / n_fft)


def triangular_filterbank(edges_hz: Tensor, *, n_fft: int, sample_rate: int) -> Tensor:
    """Triangles on the rFFT bin frequencies: (n_filters, n_fft // 2 + 1) float32.

    Filter i rises from ``edges_hz[i]`` to a peak of 1 at ``edges_hz[i + 1]`` and falls to 0 at
    ``edges_hz[i + 2]``; ``edges_hz`` has n_filters + 2 increasing values.
    """
    _check_fft_size(n_fft, sample_rate)
    edges = torch.as_tensor(edges_hz, dtype=torch.float64, device="cpu")
    if edges.dim() != 1 or edges.numel() < 3 or not bool((edges[1:] > edges[:-1]).all()):
        raise ValueError("edges_hz must be a 1-D increasing sequence of at least 3 frequencies")
    bins = _bin_frequencies(n_fft, sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    return torch.minimum(rising, falling).clamp_min(0.0).to(torch.float32)


def mel_filterbank(
    *,
    n_mels: int,
    n_fft: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: MelScale = "htk",
    norm: MelNorm = "none",
) -> Tensor:
    """Mel triangular filterbank (n_mels, n_fft // 2 + 1); edges equally spaced in mel.

    ``norm="slaney"`` divides each filter by half its bandwidth in Hz (unit area, librosa).
    """
    _check_filter_count("n_mels", n_mels)
    _check_fft_size(n_fft, sample_rate)
    f_max = sample_rate / 2.0 if f_max is None else f_max
    _check_band(f_min, f_max, sample_rate)
    edges = _mel_edges(n_mels, f_min, f_max, scale)
    fb = triangular_filterbank(edges, n_fft=n_fft, sample_rate=sample_rate)
    # narrow low bands can fall between two FFT bins; which way f_min should move is worked out only for the warning
    _warn_empty_filters(
        fb,
        f"{n_mels} mel filters",
        lambda: (
            f"use fewer mels, a larger n_fft (now {n_fft}) or "
            + _widening_f_min(n_mels, f_min, f_max, scale, step=sample_rate / n_fft)
        ),
    )
    if norm == "slaney":
        fb = fb * (2.0 / (edges[2:] - edges[:-2])).to(torch.float32)[:, None]
    elif norm != "none":
        raise ValueError(f"unknown mel norm {norm!r}; use 'none' or 'slaney'")
    return fb


def _mel_edges(n_mels: int, f_min: float, f_max: float, scale: MelScale) -> Tensor:
    """The n_mels + 2 band edges in Hz (float64), equally spaced in mel from f_min to f_max."""
    lo, hi = hz_to_mel(torch.tensor([f_min, f_max], device="cpu"), scale).tolist()
    return mel_to_hz(torch.linspace(lo, hi, n_mels + 2, dtype=torch.float64, device="cpu"), scale)


def _widening_f_min(n_mels: int, f_min: float, f_max: float, scale: MelScale, step: float) -> str:
    """Which way to move f_min to widen the narrowest (lowest) mel filter: raising f_min shrinks the band's mel range
    but moves its lowest filters up to where a mel spans more Hz, which widens them only for a wide band (f_min
    below ~2.5 kHz for an 8 kHz HTK f_max). For a narrow high band (a 6-8 kHz sub-band expert) "a higher f_min",
    the advice given whatever the band, made them narrower still."""

    def narrowest(low: float) -> float:
        edges = _mel_edges(n_mels, low, f_max, scale)
        return float((edges[2:] - edges[:-2]).min())

    if f_min + step < f_max and narrowest(f_min + step) > narrowest(f_min):
        return "a higher f_min"
    return "a lower f_min (a wider f_min..f_max band)"


def linear_filterbank(
    *, n_filters: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """Linearly spaced triangular filterbank (n_filters, n_fft // 2 + 1), as in LFCC."""
    _check_filter_count("n_filters", n_filters)
    _check_fft_size(n_fft, sample_rate)
    f_max = sample_rate / 2.0 if f_max is None else f_max
    _check_band(f_min, f_max, sample_rate)
    edges = torch.linspace(f_min, f_max, n_filters + 2, dtype=torch.float64, device="cpu")
    fb = triangular_filterbank(edges, n_fft=n_fft, sample_rate=sample_rate)
    # filters narrower than the bin spacing (many filters over a narrow band) can fall between two FFT bins
    _warn_empty_filters(
        fb, f"{n_filters} linear filters", f"use fewer filters, a larger n_fft (now {n_fft}) or a wider f_min..f_max"
    )
    return fb


def _check_filter_count(name: str, count: int) -> None:
    # 0 or fewer filters failed later with an error about ``edges_hz``, an argument the caller never passed
    if count <= 0:
        raise ValueError(f"{name} must be > 0, got {count}")


def _check_fft_size(n_fft: int, sample_rate: int) -> None:
    # n_fft 0 was a ZeroDivisionError, a negative one torch's error about linspace bounds
    if n_fft < 2:
        raise ValueError(f"n_fft must be >= 2, got {n_fft}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")


def _warn_empty_filters(fb: Tensor, what: str, advice: str | Callable[[], str]) -> None:
    """Warn about filters (rows of ``fb``) without an FFT bin: their log energy is a constant row, the log floor.
    ``advice`` may be a function, called only when there is something to warn about."""
    empty = int((fb.sum(dim=1) == 0).sum())
    if empty:
        said = advice() if callable(advice) else advice
        warnings.warn(f"{empty} of the {what} cover no FFT bin (all zeros): {said}", UserWarning, stacklevel=3)


def dct_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Orthonormal DCT-II basis (n_out, n_in): ``coeffs = dct_matrix(N, K) @ x`` (MATLAB's ``dct``); computed in
    float64, returned in ``dtype``."""
    if not 0 < n_out <= n_in:
        raise ValueError(f"need 0 < n_out <= n_in, got n_out={n_out}, n_in={n_in}")
    n = torch.arange(n_in, dtype=torch.float64, device="cpu")
    k = torch.arange(n_out, dtype=torch.float64, device="cpu")[:, None]
    basis = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis.to(dtype)


def window_function(
    kind: WindowKind, win_length: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> Tensor:
    """Periodic (DFT-even) Hann or Hamming window (win_length,), computed in ``dtype`` on ``device``."""
    if kind == "hann":
        return torch.hann_window(win_length, periodic=True, dtype=dtype, device=device)
    if kind == "hamming":
        return torch.hamming_window(win_length, periodic=True, dtype=dtype, device=device)
    raise ValueError(f"unknown window {kind!r}; use 'hann' or 'hamming'")


def pre_emphasis(x: Tensor, coef: float) -> Tensor:
    """y[t] = x[t] - coef * x[t-1] along the last axis (y[0] = x[0]); (..., T) -> (..., T)."""
    if coef == 0.0:
        return x
    return torch.cat([x[..., :1], x[..., 1:] - coef * x[..., :-1]], dim=-1)


def stft(x: Tensor, *, n_fft: int, hop_length: int, window: Tensor, center: bool = True) -> Tensor:
    """Complex STFT (..., T) -> (..., n_fft // 2 + 1, frames).

    ``window`` (win_length <= n_fft) is zero-padded on both sides to n_fft, as torch.stft does.
    Frames: ``1 + (T - n_fft % 2) // hop_length`` with ``center`` (reflect padding of n_fft // 2 on each side,
    constant padding when the signal is too short to reflect), else ``1 + (T - n_fft) // hop_length``.
    An empty batch (a leading size 0) gives an empty result; a signal without a frame is a ValueError.
    """
    lead, length = x.shape[:-1], x.shape[-1]
    _check_signal_length(length, n_fft=n_fft, center=center)
    if x.numel() == 0:
        # torch.stft refuses an empty batch (with an error about a (1, 0, T) input): transform one
        # silent signal for the output's frame count and dtype, and keep none of it
        one = stft(x.new_zeros(length), n_fft=n_fft, hop_length=hop_length, window=window, center=center)
        return one.new_zeros((*lead, *one.shape))
    flat = x.reshape(-1, length)
    spec = torch.stft(
        flat,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=window.shape[0],
        window=window.to(device=x.device, dtype=x.dtype),
        center=center,
        pad_mode=_pad_mode(length, n_fft),
        return_complex=True,
    )
    return spec.reshape(*lead, *spec.shape[1:])


def _pad_mode(length: int, n_fft: int) -> str:
    """How a centred STFT pads a signal of ``length`` samples: reflect, or zeros when it is too short to reflect."""
    return "reflect" if length > n_fft // 2 else "constant"


def _real_stft(x: Tensor, *, n_fft: int, hop_length: int, window: Tensor, center: bool = True) -> Tensor:
    """The STFT's real and imaginary parts (..., 2, n_fft // 2 + 1, frames) as a matrix product with a windowed DFT
    basis: the frames and values of :func:`stft` (to float rounding, ~1e-7 of the frame's amplitude in float32),
    from slicing, a reshape and one MatMul, which every ONNX runtime computes in float32 and float64.

    It is the form the traced power spectrum takes for the ONNX export. ONNX Runtime's STFT operator computes any
    n_fft not a power of two (400, 401, ...) as a naive DFT whose float32 twiddle factors, ``cos(k * n * 2 pi /
    n_fft)`` with ``k * n`` up to n_fft^2 / 2, are off by up to ~1e-4 rad: a tone leaked ~1e-8 of its power into
    every bin (float32 FFT rounding leaves ~1e-14), which moved a log-Mel's quiet bands by up to 0.4 and a
    cosine-head LCNN's logits by 6e-4, and it took several times longer than the product. Here the angles are
    reduced modulo n_fft in integers and the basis is computed in float64. (A strided Conv1d computes the same
    product about as fast, but ONNX Runtime has no float64 Conv, which the log spectrogram's power spectrum needs.)
    """
    length, win = x.shape[-1], window.shape[0]
    if torch.jit.is_tracing():
        # a traced size is a tensor; the export's window length is fixed, so the framing below is constant
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            length, win = int(length), int(win)
    _check_signal_length(length, n_fft=n_fft, center=center)
    lead = x.shape[:-1]
    left = (n_fft - win) // 2  # torch.stft centres a shorter window in the n_fft frame: only those samples count
    pad = n_fft // 2 if center else 0
    frames = 1 + (length + 2 * pad - n_fft) // hop_length
    flat = x.reshape(-1, 1, length)
    if center:
        flat = F.pad(flat, (pad, pad), mode=_pad_mode(length, n_fft))
    # frame t is rows t .. t + rows - 1 of the signal cut into rows of hop_length samples, cut to win: rows slices
    # and a concatenation instead of a Gather (or unfold) of every frame's samples
    rows = -(-win // hop_length)
    need = (frames + rows - 1) * hop_length
    flat = flat[..., left : left + need]
    short = need - (length + 2 * pad - left)
    if short > 0:  # past the last frame's end: zeros that land only in the cut-off tails
        flat = F.pad(flat, (0, short))
    cut = flat.reshape(-1, frames + rows - 1, hop_length)
    framed = torch.cat([cut[:, j : j + frames] for j in range(rows)], dim=-1)[..., :win]  # (N, frames, win)
    basis = _dft_basis(n_fft, left, window).to(device=x.device, dtype=x.dtype)  # (2 * bins, win)
    spec = torch.matmul(framed, basis.T).transpose(1, 2)  # (N, 2 * bins, frames)
    return spec.reshape(*lead, 2, n_fft // 2 + 1, frames)


def _dft_basis(n_fft: int, left: int, window: Tensor) -> Tensor:
    """Rows ``w[n] cos(2 pi k (left + n) / n_fft)``, then ``-w[n] sin(...)``, for bins k = 0 .. n_fft // 2; float64."""
    k = torch.arange(n_fft // 2 + 1, dtype=torch.int64)[:, None]
    n = torch.arange(left, left + window.shape[0], dtype=torch.int64)
    # k * n reduced in integers: the angle stays within one turn, exact to float64 rounding
    angle = (k * n % n_fft).to(torch.float64) * (2 * math.pi / n_fft)
    w = window.detach().to(device="cpu", dtype=torch.float64)
    return torch.cat([torch.cos(angle) * w, -torch.sin(angle) * w])


def _check_signal_length(length: int, *, n_fft: int, center: bool) -> None:
    """A signal must give at least one frame: some samples, and a whole n_fft of them without ``center``."""
    if length < 1:
        raise ValueError(f"the signal has no samples (length {length}): it gives no STFT frame")
    if not center and length < n_fft:
        raise ValueError(f"signal of {length} samples is shorter than n_fft={n_fft} (use center=True)")


def power_spectrogram(x: Tensor, *, n_fft: int, hop_length: int, window: Tensor, center: bool = True) -> Tensor:
    """|STFT|^2 (..., T) -> (..., n_fft // 2 + 1, frames), real.

    Traced (the TorchScript ONNX exporter) it is computed from :func:`_real_stft`, a matrix product with a DFT basis:
    the exporter refuses complex tensors, and ONNX Runtime's STFT operator is imprecise for an n_fft not a power of
    two. The values are those of the complex STFT (to float rounding), which eager calls keep using.
    """
    if torch.jit.is_tracing():
        spec = _real_stft(x, n_fft=n_fft, hop_length=hop_length, window=window, center=center)
        return spec.square().sum(dim=-3)  # re^2 + im^2: indexing each part became a slow Gather in ONNX Runtime
    spec = stft(x, n_fft=n_fft, hop_length=hop_length, window=window, center=center)
    # re^2 + im^2, the sum written into the first square (its own temporary, which square's backward does not read)
    return spec.real.square().add_(spec.imag.square())


def deltas(x: Tensor, width: int = 3) -> Tensor:
    """Regression deltas along the last (time) axis: (..., F, frames) -> same shape.

    d[t] = sum_{k=1..h} k * (x[t+k] - x[t-k]), h = width // 2, edges replicated. As in the
    ASVspoof baseline's ``deltas.m`` there is no 2 * sum(k^2) normalisation.
    """
    if width < 3 or width % 2 == 0:
        raise ValueError(f"delta width must be odd and >= 3, got {width}")
    h = width // 2
    frames = x.shape[-1]
    flat = x.reshape(-1, 1, frames)
    padded = F.pad(flat, (h, h), mode="replicate")
    out = torch.zeros_like(flat)
    for k in range(1, h + 1):
        out = out + k * (padded[..., h + k : h + k + frames] - padded[..., h - k : h - k + frames])
    return out.reshape(x.shape)


def append_deltas(coeffs: Tensor, width: int, scale: float = 1.0) -> Tensor:
    """(..., C, frames) -> (..., 3 * C, frames): ``[coeffs, deltas, double deltas]`` along the feature axis, each
    delta divided by ``scale`` (1: the LFCC baseline's unnormalised deltas; the CQCC package divides by 2 sum k^2)."""
    d1 = deltas(coeffs, width) / scale
    d2 = deltas(d1, width) / scale
    return torch.cat([coeffs, d1, d2], dim=-2)


def check_delta_width(width: int, hint: str = "") -> None:
    """A config's ``delta_width``: odd and at least 3 (:func:`deltas`), else a ValueError (``hint`` in parentheses)."""
    if width < 3 or width % 2 == 0:
        raise ValueError(f"delta_width must be odd and >= 3{f' ({hint})' if hint else ''}, got {width}")


# one forward's results of the front-ends' shared steps (see shared_computation), None outside such a block; a context
# variable, not an attribute of a module: each thread (the HTTP service scores from several) has its own
_SHARED: contextvars.ContextVar[dict[Hashable, tuple[Tensor, Tensor]] | None] = contextvars.ContextVar(
    "sddkit_shared_front_end_steps", default=None
)


@contextmanager
def shared_computation() -> Iterator[None]:
    """Within it, a front-end step that :func:`shared_result` names (level normalisation, a power spectrum) is computed
    once per input and settings, and its result handed to every later front-end asking for the same: a mixture's
    ``logmel`` and ``lfb`` experts of one framing compute one STFT, not two. The results are the ones each front-end
    computes for itself, bit for bit; they are dropped when the block ends (nothing is kept on a module). Blocks nest,
    each with its own results."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def shared_result(step: str, x: Tensor, settings: Hashable, compute: Callable[[], Tensor]) -> Tensor:
    """``compute()``, the ``step`` of input ``x`` under ``settings``; inside :func:`shared_computation` computed once
    per (step, ``x``, settings). ``x`` is matched by identity (the same tensor object), kept alive by the cache so that
    its id names it; the result is shared, so a caller must not change it in place. Traced or compiled (ONNX export,
    ``torch.compile``) it is always computed: an exported graph stays the one of each front-end alone."""
    cache = _SHARED.get()
    if cache is None or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return compute()
    key = (step, id(x), x.dtype, x.device, settings)
    hit = cache.get(key)
    if hit is not None and hit[0] is x:
        return hit[1]
    out = compute()
    cache[key] = (x, out)
    return out


def feature_dtype(waveform: Tensor) -> torch.dtype:
    """The dtype every feature here returns: float64 for float64 input, else float32 (half-precision input too)."""
    return torch.float64 if waveform.dtype == torch.float64 else torch.float32


_DB_PER_NEPER = 10.0 / math.log(10.0)  # dB per natural-log unit of power


def clamp_dynamic_range(log_power: Tensor, top_db: float | None, db_per_unit: float) -> Tensor:
    """Raise every value of each item to at least its maximum minus ``top_db``: (..., F, frames) -> same.

    ``log_power`` is a log power spectrum; ``db_per_unit`` converts its units to dB (10 / ln 10 for
    natural logs, 10 for log10). The floor is relative to the item's own loudest bin, so it does
    not depend on the recording level, and whatever lies below it (digital silence, a codec's
    empty bands, a quiet noise floor) reads the same for every file: a model cannot learn the
    depth of a recording's silences, which differs between corpora more than between classes.
    ``None`` leaves the input unchanged.
    """
    if top_db is None:
        return log_power
    floor = log_power.amax(dim=(-2, -1), keepdim=True) - top_db / db_per_unit
    return torch.maximum(log_power, floor)


_MIN_LOG_FLOOR = float(torch.finfo(torch.float32).tiny)  # 1.1755e-38


def _check_log_options(log_floor: float, top_db: float | None) -> None:
    """The options every log spectrum shares: the floor inside the log and the dynamic-range floor."""
    # NaN made every feature NaN; a floor below float32's smallest normal number rounds away when it is added to the
    # float32 energies (1e-46 became 0), so a silent bin's log was -inf and, normalised, NaN
    if not _MIN_LOG_FLOOR <= log_floor < math.inf:
        raise ValueError(
            f"log_floor must be finite and >= {_MIN_LOG_FLOOR:.4g} (float32's smallest normal number: the features "
            f"are computed in float32, where a smaller floor rounds to 0 and silence's log is -inf), got {log_floor}"
        )
    if top_db is not None and not top_db > 0:
        raise ValueError(f"top_db must be > 0 (or null), got {top_db}")


def check_float_samples(waveform: Tensor) -> None:
    """A ValueError unless ``waveform`` holds floating-point samples (meant to lie in [-1, 1]).

    Integer PCM was cast to float as it stood, so features of 16-bit samples sat 90 dB (32768 times in amplitude)
    above those of the same audio in [-1, 1], and complex samples lost their imaginary part, both without a word.
    """
    if not waveform.is_floating_point():
        raise ValueError(
            f"expected a floating-point waveform (samples in [-1, 1]), got {waveform.dtype}"
            + (
                "; divide 16-bit PCM by 32768 (soundfile's default read does)"
                if not waveform.is_complex() and waveform.dtype != torch.bool
                else ""
            )
        )


def _check_band(f_min: float, f_max: float, sample_rate: int) -> None:
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        # name each value: "got 20.0, 9000.0" left a reader to guess which was which
        raise ValueError(
            f"need 0 <= f_min < f_max <= sample_rate/2 = {sample_rate / 2:g} Hz, got f_min={f_min}, f_max={f_max}"
        )


def _band_bins(n_fft: int, sample_rate: int, f_min: float, f_max: float) -> slice:
    """The rFFT bins whose frequency ``k * sample_rate / n_fft`` lies in ``[f_min, f_max]`` (a config's resolved
    ``band_hz``), as a slice (empty when the band falls between two bins); every bin for the full band."""
    bins = _bin_frequencies(n_fft, sample_rate)
    inside = ((bins >= f_min) & (bins <= f_max)).nonzero().flatten().tolist()
    return slice(inside[0], inside[-1] + 1) if inside else slice(0, 0)


# --- configs ------------------------------------------------------------------------------------


@dataclass
class _FramingConfig:
    """STFT framing shared by every spectral feature (sizes in samples)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    window: WindowKind = "hann"
    center: bool = True
    pre_emphasis: float = 0.97

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {self.sample_rate}")
        if self.n_fft < 2:
            raise ValueError(f"n_fft must be >= 2, got {self.n_fft}")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"win_length must be in [1, n_fft={self.n_fft}], got {self.win_length}")
        if self.hop_length <= 0:
            raise ValueError(f"hop_length must be > 0, got {self.hop_length}")
        if not 0.0 <= self.pre_emphasis < 1.0:
            raise ValueError(f"pre_emphasis must be in [0, 1), got {self.pre_emphasis}")


@dataclass
class _BandConfig(_FramingConfig):
    """Framing plus a band from ``f_min`` to ``f_max`` in Hz (``f_max`` null: Nyquist). Each subclass declares
    the two fields with its own defaults; the band is resolved here, once, for its checks and for a model's
    description (``band_hz`` of ``GET /v1/model``)."""

    if TYPE_CHECKING:  # fields of the subclasses, not of this class: a default here would reorder theirs
        f_min: float
        f_max: float | None

    @property
    def band_hz(self) -> tuple[float, float]:
        """``(f_min, f_max)`` in Hz, a null ``f_max`` resolved to the Nyquist frequency."""
        return self.f_min, self.sample_rate / 2.0 if self.f_max is None else self.f_max


@dataclass
class LogMelConfig(_BandConfig):
    """Log-Mel filterbank energies: 25 ms Hann window, 10 ms hop, 80 HTK-mel bands over 20-7600 Hz.

    top_db: if set, every band energy is floored at the input's loudest one minus ``top_db``
    (:func:`clamp_dynamic_range`); the same option exists for the other log spectra.
    """

    n_mels: int = 80
    f_min: float = 20.0
    f_max: float | None = 7600.0
    mel_scale: MelScale = "htk"
    mel_norm: MelNorm = "none"
    log_floor: float = 1e-6
    top_db: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_log_options(self.log_floor, self.top_db)
        if self.n_mels <= 0:
            raise ValueError(f"n_mels must be > 0, got {self.n_mels}")
        _check_band(*self.band_hz, self.sample_rate)


@dataclass
class LogLinearFilterbankConfig(_BandConfig):
    """Log energies of linearly spaced triangular filters (LFCC's filterbank, without its DCT): 25 ms Hann
    window, 10 ms hop, 120 filters over 0-8000 Hz (centres 66 Hz apart at 16 kHz, each filter spanning about four
    FFT bins of 31.25 Hz).

    The high bands keep the resolution of the low ones, where a Mel filterbank widens them (a 120-band HTK
    filterbank up to 8 kHz has bands ~160 Hz apart near 7 kHz and ~16 Hz apart at 100 Hz); it costs what a
    log-Mel of as many bands costs, where the linear log spectrogram has 257 bins and a float64 FFT.
    """

    n_filters: int = 120
    f_min: float = 0.0
    f_max: float | None = None
    log_floor: float = 1e-6
    top_db: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_log_options(self.log_floor, self.top_db)
        if self.n_filters <= 0:
            raise ValueError(f"n_filters must be > 0, got {self.n_filters}")
        _check_band(*self.band_hz, self.sample_rate)


@dataclass
class LinearSpectrogramConfig(_FramingConfig):
    """Log power spectrogram, n_fft // 2 + 1 bins (257 for n_fft 512).

    The floor sits below 16-bit quantisation noise power per bin (~1e-8), so quiet passages
    keep their shape instead of being clipped.
    """

    log_floor: float = 1e-10
    top_db: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_log_options(self.log_floor, self.top_db)


@dataclass
class LFCCConfig(_BandConfig):
    """LFCC as in the ASVspoof 2019 LFCC-GMM baseline (Sahidullah et al., Interspeech 2015).

    Pre-emphasis 0.97, 20 ms Hamming window, 10 ms hop, 512-point FFT, 20 linear triangular
    filters over 0..sample_rate/2, log10 of the filter energies, orthonormal DCT-II keeping 20
    coefficients (c0 included), then deltas and double deltas (width 3, unnormalised) -> 60
    dims ordered [static, delta, double delta]. Unlike the MATLAB code (non-centred 'nodelay'
    framing) frames are centred like every other feature here. The window is the periodic Hamming
    window of every feature here, where the MATLAB code's ``hamming(320)`` is symmetric: static
    coefficients differ from the baseline's by a few hundredths (the filterbank, log, DCT and deltas
    are the same; the log's floor is ``log_floor``, 1e-10, where MATLAB adds ``eps``, 2.2e-16).

    with_energy: replace c0 by the frame's log energy ``log10(sum(|X|^2) / n_fft + log_floor)`` before
    the deltas, as the ASVspoof 2021 LFCC-LCNN baseline's front-end does (X. Wang's ``LFCC(...,
    with_energy=True)``, which also zero-pads its centred frames and floors its logs at float32's eps);
    the LFCC-GMM MATLAB code keeps c0. The sum runs over the FFT bins from ``f_min`` to ``f_max`` (every bin
    for the default band), as Wang's code sums the spectrum it has cut to its band: a band-limited LFCC reads
    nothing outside its band. ``top_db`` floors it at the item's loudest frame minus ``top_db``.
    """

    win_length: int = 320
    window: WindowKind = "hamming"
    n_filters: int = 20
    n_coeffs: int = 20
    f_min: float = 0.0
    f_max: float | None = None
    with_deltas: bool = True
    with_energy: bool = False
    delta_width: int = 3
    log_floor: float = 1e-10
    top_db: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_log_options(self.log_floor, self.top_db)
        if self.n_filters <= 0 or not 0 < self.n_coeffs <= self.n_filters:
            raise ValueError(f"need 0 < n_coeffs <= n_filters, got {self.n_coeffs}, {self.n_filters}")
        _check_band(*self.band_hz, self.sample_rate)
        check_delta_width(self.delta_width)


# --- modules ------------------------------------------------------------------------------------

_HALF = (torch.float16, torch.bfloat16)


class Float32Constants(nn.Module):
    """A module whose float32 buffers (window, filterbanks: constants derived from its config) stay float32
    when the module is cast to half precision; they still follow it to its device.

    The features are computed in float32 anyway, but a window rounded to bfloat16 (8 significant bits)
    cannot be unrounded: it leaks enough to move the quiet bins of a log-Mel by several dB, so a
    ``model.to(torch.bfloat16)`` would see other features than the model it was trained as. A module cast to
    float64 first (``.double()``, which holds the float32 values exactly) gets them back in float32 too.
    """

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # float64 too: after .double() the constants are float64, and .half() then rounded them to half precision
        # (a log-Mel of white noise moved by up to 0.14), the loss this class exists to prevent
        kept = {
            name: b for name, b in self._buffers.items() if b is not None and b.dtype in (torch.float32, torch.float64)
        }
        super()._apply(fn, recurse)
        for name, original in kept.items():
            moved = self._buffers[name]
            if moved is not None and moved.dtype in _HALF:
                self._buffers[name] = original.to(device=moved.device, dtype=torch.float32)
        return self


class _PowerSpectrum(Float32Constants):
    """Shared front part: pre-emphasis + windowed power spectrum, float32 (float64 kept for float64 input).

    ``float64_fft``: compute it in float64 and round at the end, for a feature that reads single bins down to a
    log floor below float32 FFT rounding noise (see :meth:`power`); the mel and linear filterbanks of LogMel and
    LFCC sum many bins, whose noise is far below their floors, so they keep the faster float32 FFT.
    """

    float64_fft = False

    def __init__(self, cfg: _FramingConfig):
        super().__init__()
        self.cfg = cfg
        # Derived from the config, so not part of checkpoints (persistent=False).
        self.register_buffer("window", window_function(cfg.window, cfg.win_length), persistent=False)

    def power(self, waveform: Tensor) -> Tensor:
        """(..., T) -> (..., n_fft // 2 + 1, frames) power, float32 (float64 kept for float64 input).

        With ``float64_fft`` computed in float64 and rounded to float32 at the end. A float32 FFT's rounding
        error is ~1e-7 of the frame's amplitude in *every* bin, i.e. a power of ~1e-14 of the frame's energy
        (1e-12 for a loud frame): the quiet bins of a tone or of a band-limited recording, truly far below
        logspec's log floor of 1e-10, held mostly rounding noise, which differs between FFT implementations
        (torch on CPU or GPU, ONNX Runtime) and moved ``log(power + 1e-10)`` there by up to 0.2. In float64 that
        noise is ~1e-30 of the frame's energy; speech, whose quiet bins lie well above it, moves by float noise.
        The float64 FFT costs about twice the float32 one on a CPU.
        """
        check_float_samples(waveform)
        cfg = self.cfg
        # everything the spectrum depends on: front-ends of equal framing (a mixture's logmel and lfb) share it
        settings = (
            type(self)._power,  # a subclass computing it otherwise shares only with its own kind
            cfg.n_fft,
            cfg.win_length,
            cfg.hop_length,
            cfg.window,
            cfg.center,
            cfg.pre_emphasis,
            self.float64_fft,
            self.window.device,
        )
        return shared_result("power", waveform, settings, lambda: self._power(waveform))

    def _power(self, waveform: Tensor) -> Tensor:
        out_dtype = feature_dtype(waveform)
        cfg = self.cfg
        work = torch.float64 if self.float64_fft else out_dtype
        x = pre_emphasis(waveform.to(work), cfg.pre_emphasis)
        if work == torch.float64:
            # the float32 buffer's rounding (~2e-7, torch computes it in float32) leaks into every bin as a
            # deterministic noise of ~1e-13 of the frame's energy, what the float64 FFT is there to avoid
            window = window_function(cfg.window, cfg.win_length, torch.float64, device=x.device)
        else:
            window = self.window.to(work)
        power = power_spectrogram(x, n_fft=cfg.n_fft, hop_length=cfg.hop_length, window=window, center=cfg.center)
        return power.to(out_dtype)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a signal of ``num_samples``; ValueError, as :func:`stft`, when it gives none."""
        cfg = self.cfg
        _check_signal_length(num_samples, n_fft=cfg.n_fft, center=cfg.center)
        if cfg.center:
            # n_fft // 2 samples of padding on each side: one short of a whole n_fft for an odd n_fft
            return 1 + (num_samples - cfg.n_fft % 2) // cfg.hop_length
        return 1 + (num_samples - cfg.n_fft) // cfg.hop_length


class _LogFilterbank(_PowerSpectrum):
    """Natural-log energies of a filterbank (rows: filters) over the power spectrum:
    waveform (..., T) -> (..., n_filters, frames). The config carries ``log_floor`` and ``top_db``."""

    def __init__(self, cfg: LogMelConfig | LogLinearFilterbankConfig, filterbank: Tensor):
        super().__init__(cfg)
        self.register_buffer("filterbank", filterbank, persistent=False)

    @property
    def output_dim(self) -> int:
        return int(self.filterbank.shape[0])

    def forward(self, waveform: Tensor) -> Tensor:
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            power = self.power(waveform)
            energies = torch.matmul(self.filterbank.to(power.dtype), power)
            if energies.requires_grad:  # log's backward reads its input
                log_energies = torch.log(energies + self.cfg.log_floor)
            else:  # the same values, in the product's own memory
                log_energies = energies.add_(self.cfg.log_floor).log_()
            return clamp_dynamic_range(log_energies, self.cfg.top_db, _DB_PER_NEPER)


class LogMel(_LogFilterbank):
    """Log-Mel energies: waveform (..., T) -> (..., n_mels, frames)."""

    def __init__(self, cfg: LogMelConfig | None = None):
        cfg = cfg or LogMelConfig()
        fb = mel_filterbank(
            n_mels=cfg.n_mels,
            n_fft=cfg.n_fft,
            sample_rate=cfg.sample_rate,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            scale=cfg.mel_scale,
            norm=cfg.mel_norm,
        )
        super().__init__(cfg, fb)


class LogLinearFilterbank(_LogFilterbank):
    """Log energies of linearly spaced triangular filters: waveform (..., T) -> (..., n_filters, frames)."""

    def __init__(self, cfg: LogLinearFilterbankConfig | None = None):
        cfg = cfg or LogLinearFilterbankConfig()
        fb = linear_filterbank(
            n_filters=cfg.n_filters, n_fft=cfg.n_fft, sample_rate=cfg.sample_rate, f_min=cfg.f_min, f_max=cfg.f_max
        )
        super().__init__(cfg, fb)


class LinearSpectrogram(_PowerSpectrum):
    """Natural-log power spectrogram: waveform (..., T) -> (..., n_fft // 2 + 1, frames)."""

    float64_fft = True  # every bin is a feature, down to the log floor of 1e-10 (see _PowerSpectrum.power)

    def __init__(self, cfg: LinearSpectrogramConfig | None = None):
        cfg = cfg or LinearSpectrogramConfig()
        super().__init__(cfg)

    @property
    def output_dim(self) -> int:
        return self.cfg.n_fft // 2 + 1

    def forward(self, waveform: Tensor) -> Tensor:
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            log_power = torch.log(self.power(waveform) + self.cfg.log_floor)
            return clamp_dynamic_range(log_power, self.cfg.top_db, _DB_PER_NEPER)


class LFCC(_PowerSpectrum):
    """Linear-frequency cepstral coefficients: waveform (..., T) -> (..., output_dim, frames).

    output_dim = n_coeffs * 3 with deltas (60 by default), else n_coeffs; with ``with_energy`` the first
    coefficient of each frame is its log energy instead of c0.
    """

    def __init__(self, cfg: LFCCConfig | None = None):
        cfg = cfg or LFCCConfig()
        super().__init__(cfg)
        fb = linear_filterbank(
            n_filters=cfg.n_filters, n_fft=cfg.n_fft, sample_rate=cfg.sample_rate, f_min=cfg.f_min, f_max=cfg.f_max
        )
        self.register_buffer("filterbank", fb, persistent=False)
        self.register_buffer("dct", dct_matrix(cfg.n_filters, cfg.n_coeffs), persistent=False)
        # with_energy's bins: those of the band. Summed over every bin, a band-limited LFCC's c0 was the full band's
        # energy (for a 4-8 kHz LFCC mostly the speech below 4 kHz), what its band limit was set to keep out
        self._energy_bins = _band_bins(cfg.n_fft, cfg.sample_rate, *cfg.band_hz)

    @property
    def output_dim(self) -> int:
        return self.cfg.n_coeffs * (3 if self.cfg.with_deltas else 1)

    def forward(self, waveform: Tensor) -> Tensor:
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            power = self.power(waveform)
            energies = torch.matmul(self.filterbank.to(power.dtype), power)
            log_energies = clamp_dynamic_range(torch.log10(energies + self.cfg.log_floor), self.cfg.top_db, 10.0)
            ceps = torch.matmul(self.dct.to(power.dtype), log_energies)
            if self.cfg.with_energy:
                band = power[..., self._energy_bins, :]
                frame_energy = torch.log10(band.sum(dim=-2, keepdim=True) / self.cfg.n_fft + self.cfg.log_floor)
                frame_energy = clamp_dynamic_range(frame_energy, self.cfg.top_db, 10.0)
                ceps = torch.cat([frame_energy, ceps[..., 1:, :]], dim=-2)
            if not self.cfg.with_deltas:
                return ceps
            return append_deltas(ceps, self.cfg.delta_width)
