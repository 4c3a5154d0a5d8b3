"""Modified group delay (MGD): a phase feature, waveform (..., T) -> (..., bands, frames).

Magnitude features (log-Mel, LFCC, log spectrogram) discard the STFT's phase, where vocoders leave artefacts of
their own (a neural vocoder predicts or reconstructs phase; natural speech's phase follows its excitation and vocal
tract). The group delay, minus the derivative of the phase over frequency, reads it without phase unwrapping:

    tau(k) = (X_re(k) Y_re(k) + X_im(k) Y_im(k)) / |X(k)|^2,      Y = DFT(n x[n])

for a windowed frame x[n] and its time-weighted copy n x[n]. Its spikes where |X| nearly vanishes (zeros near the
unit circle) hide the rest, so the *modified* group delay (Murthy and Gadde 2003; Hegde, Murthy and Gadde 2007)
divides by a cepstrally smoothed spectrum S instead and compresses the result:

    tau_s(k) = (X_re Y_re + X_im Y_im) / S(k)^(2 gamma),      mgd(k) = sign(tau_s) |tau_s|^alpha

with alpha 0.4 and gamma 0.9 by default (the pair of values MGD's usual examples pass, assigned as Hegde et al. name
the two exponents: alpha the compression, gamma the smoothed spectrum's; the covarep/ASVspoof-era MATLAB function
``modified_group_delay_feature(rho, gamma)`` names them the other way round: its ``rho`` is this ``gamma``, in the
denominator, and its ``gamma`` this ``alpha``, the compression, so its values 0.4 and 0.9, Wu et al.'s, are
``alpha: 0.9, gamma: 0.4`` here, not these defaults). S is ``exp`` of log|X| projected on its first
``smooth_coeffs`` orthonormal DCT-II coefficients (30, as that MATLAB function; without its 5-point median filter).

Two choices differ from that MATLAB function, each for a reason:
- ``delay_origin="center"`` (the default) measures n from the frame's centre, not its first sample: a delay of half
  a frame adds ``(N / 2) |X|^2 / S^(2 gamma)`` to every bin, a magnitude term as large as the phase term it hides
  (``"start"`` reproduces the MATLAB function's 1..N over the window's samples up to its 1-sample offset: here
  0..N-1, from the window's first sample, not the zero-padded n_fft frame's).
- no division by the utterance's largest value by default: the front-end's per-utterance normalisation
  (``normalize: true``) does that job for a neural back-end. ``max_normalize: true`` divides each utterance's gram
  (bands or bins x frames, each item of a batch on its own) by its largest absolute value as the MATLAB function
  does; it scales the cepstrum below with it, and makes the features (nearly: the log floor) independent of the
  recording's gain.
``n_filters`` (120 by default) then averages the 257 bins over linear triangular filters (each filter's weights sum
to 1), so an LCNN sees as many bands as over the ``lfb`` features; ``null`` keeps every bin.

MGDCC, the gram's cepstrum (``n_coeffs`` set; None, the default, gives the gram): the orthonormal DCT-II of each
frame's gram over its bands (all 257 bins with ``n_filters: null``), as MATLAB's ``dct``, keeping c1 .. c_n_coeffs:
c0, the frame's mean delay, is dropped as the MATLAB function's ``cep(2:num_coeff+1, :)`` drops it (``with_c0: true``
keeps c0 .. c_{n_coeffs-1}). ``with_deltas: true`` appends deltas and double deltas as ``lfcc`` computes them
(:func:`~sddkit.features.spectral.deltas`, ``delta_width`` 3, unnormalised): 3 * n_coeffs dims. The MATLAB function's
MGDCC, its ``[~, cep] = modified_group_delay_feature(file, 0.4, 0.9, 12)``, is ``alpha: 0.9, gamma: 0.4,
delay_origin: start, n_filters: null, n_coeffs: 12, max_normalize: true`` (12 dims; less its median filter, and up
to its framing: centred frames here, the periodic Hamming window, a log floor in the smoothing).

Computed in float64 and returned in float32 (float64 for float64 input), autocast off: the quiet bins' numerator is
FFT rounding noise divided by a small S^(2 gamma), which a float32 FFT makes differ between implementations (torch,
ONNX Runtime) as it made the log spectrogram's quiet bins differ (see ``sddkit.features.spectral``). Traced for the
ONNX export, both transforms are the DFT matrix products of ``_real_stft``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from sddkit.features.spectral import (
    _BandConfig,
    _check_band,
    _PowerSpectrum,
    _real_stft,
    append_deltas,
    check_delta_width,
    check_float_samples,
    dct_matrix,
    feature_dtype,
    linear_filterbank,
    pre_emphasis,
    stft,
    window_function,
)

__all__ = ["ModifiedGroupDelay", "ModifiedGroupDelayConfig", "cepstrum_matrix", "dct_smoothing_matrix", "stft_parts"]

DelayOrigin = Literal["center", "start"]


@dataclass
class ModifiedGroupDelayConfig(_BandConfig):
    """Modified group delay: 25 ms Hamming window, 10 ms hop, 512-point FFT, alpha 0.4, gamma 0.9, log|X| smoothed on
    its first 30 DCT coefficients, averaged over 120 linear filters (0-8 kHz). ``n_coeffs`` (None: the gram) gives
    its cepstrum, MGDCC: c1 .. c_n_coeffs of an orthonormal DCT-II over the bands (``with_c0``: c0 ..
    c_{n_coeffs-1}), with deltas and double deltas if ``with_deltas``. ``max_normalize`` divides the gram by the
    utterance's largest absolute value first. See the module docstring."""

    window: Literal["hann", "hamming"] = "hamming"
    alpha: float = 0.4
    gamma: float = 0.9
    smooth_coeffs: int = 30
    n_filters: int | None = 120
    f_min: float = 0.0
    f_max: float | None = None
    delay_origin: DelayOrigin = "center"
    log_floor: float = 1e-10
    n_coeffs: int | None = None
    with_c0: bool = False
    with_deltas: bool = False
    delta_width: int = 3
    max_normalize: bool = False

    @property
    def bands(self) -> int:
        """The gram's rows: n_filters, or every FFT bin (n_fft // 2 + 1) with ``n_filters: null``."""
        return self.n_fft // 2 + 1 if self.n_filters is None else int(self.n_filters)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha (the compression exponent) must be in (0, 1], got {self.alpha}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma (the smoothed spectrum's exponent) must be in [0, 1], got {self.gamma}")
        bins = self.n_fft // 2 + 1
        if not 0 < self.smooth_coeffs <= bins:
            raise ValueError(f"smooth_coeffs must be in [1, n_fft // 2 + 1 = {bins}], got {self.smooth_coeffs}")
        if self.n_filters is not None and self.n_filters <= 0:
            raise ValueError(f"n_filters must be > 0 (or null for every FFT bin), got {self.n_filters}")
        _check_band(*self.band_hz, self.sample_rate)
        narrowed = self.band_hz != (0.0, self.sample_rate / 2.0)
        if self.n_filters is None and narrowed:
            # the band only places the filters: without them every bin up to Nyquist came out, the band ignored
            raise ValueError(
                f"f_min/f_max (got {self.f_min}, {self.f_max}) bound the n_filters bands, but n_filters is null: "
                f"every FFT bin from 0 Hz to Nyquist is kept; set n_filters, or leave f_min at 0 and f_max null"
            )
        if self.delay_origin not in ("center", "start"):
            raise ValueError(f"delay_origin must be 'center' or 'start', got {self.delay_origin!r}")
        if not 0.0 < self.log_floor < 1.0:
            raise ValueError(f"log_floor must be in (0, 1), got {self.log_floor}")
        self._check_cepstrum()

    def _check_cepstrum(self) -> None:
        if self.n_coeffs is None:
            # these shape the cepstrum: on the gram they would be ignored without a word
            if self.with_c0 or self.with_deltas:
                named = [k for k in ("with_c0", "with_deltas") if getattr(self, k)]
                given = " and ".join(f"{k}: true" for k in named)
                raise ValueError(
                    f"{given} {'apply' if len(named) > 1 else 'applies'} to the MGD cepstrum (MGDCC), but n_coeffs "
                    f"is null (the gram); "
                    f"set n_coeffs (covarep's MGDCC keeps 12), or leave {given.replace(': true', '')} false"
                )
        else:
            bands = self.bands
            most = bands if self.with_c0 else bands - 1
            if isinstance(self.n_coeffs, bool) or not 1 <= self.n_coeffs <= most:
                where = "n_filters" if self.n_filters is not None else "n_fft // 2 + 1 bins with n_filters null"
                dropped = "" if self.with_c0 else ", c0 dropped (with_c0: false)"
                raise ValueError(
                    f"n_coeffs must be in [1, {most}]: the DCT over the {bands} bands ({where}) has {bands} "
                    f"coefficients{dropped}; got {self.n_coeffs}"
                )
        check_delta_width(self.delta_width)


def dct_smoothing_matrix(bins: int, keep: int) -> Tensor:
    """(bins, bins) float64 projection onto the first ``keep`` orthonormal DCT-II basis vectors: ``M @ v`` is ``v``
    low-passed along its bins (MATLAB's ``idct(dct(v)(1:keep), bins)``)."""
    basis = dct_matrix(bins, keep).double()  # (keep, bins), rows orthonormal
    return basis.T @ basis


def cepstrum_matrix(cfg: ModifiedGroupDelayConfig) -> Tensor:
    """The (n_coeffs, bands) float64 rows of the orthonormal DCT-II (MATLAB's ``dct``) that give the MGDCC of a gram
    frame: c1 .. c_n_coeffs, or c0 .. c_{n_coeffs-1} with ``with_c0``."""
    if cfg.n_coeffs is None:
        raise ValueError("n_coeffs is null: the front-end gives the gram, which has no cepstrum matrix")
    first = 0 if cfg.with_c0 else 1
    return dct_matrix(cfg.bands, cfg.n_coeffs + first, dtype=torch.float64)[first:]


def stft_parts(x: Tensor, *, n_fft: int, hop_length: int, window: Tensor, center: bool) -> tuple[Tensor, Tensor]:
    """The STFT's real and imaginary parts, each (..., n_fft // 2 + 1, frames), in ``x``'s dtype.

    Eager: torch's FFT; traced (ONNX export): the DFT matrix product of ``_real_stft`` (the exporter refuses
    complex tensors)."""
    if torch.jit.is_tracing():
        parts = _real_stft(x, n_fft=n_fft, hop_length=hop_length, window=window, center=center)
        return parts[..., 0, :, :], parts[..., 1, :, :]
    spec = stft(x, n_fft=n_fft, hop_length=hop_length, window=window, center=center)
    return spec.real, spec.imag


class ModifiedGroupDelay(_PowerSpectrum):
    """Modified group delay: waveform (..., T) -> (..., output_dim, frames).

    output_dim: the gram's bands (n_filters, or n_fft // 2 + 1 with ``n_filters: null``); with ``n_coeffs`` the
    cepstrum's n_coeffs, times 3 with deltas ([static, delta, double delta])."""

    def __init__(self, cfg: ModifiedGroupDelayConfig | None = None):
        cfg = cfg or ModifiedGroupDelayConfig()
        super().__init__(cfg)
        bins = cfg.n_fft // 2 + 1
        # the smoothing is dct_smoothing_matrix as two thin products (keep x bins each): 4x fewer operations than the
        # (bins, bins) matrix at 30 of 257 coefficients
        self.register_buffer("dct", dct_matrix(bins, cfg.smooth_coeffs), persistent=False)
        if cfg.n_filters is None:
            self.filterbank: Tensor | None = None
        else:
            fb = linear_filterbank(
                n_filters=cfg.n_filters, n_fft=cfg.n_fft, sample_rate=cfg.sample_rate, f_min=cfg.f_min, f_max=cfg.f_max
            )
            # an average per band, not a sum: the group delay is not an energy
            self.register_buffer("filterbank", fb / fb.sum(dim=1, keepdim=True).clamp_min(1e-12), persistent=False)
        # float64 (Float32Constants keeps it from half precision): the cepstrum is computed in float64 with the gram
        cepstrum = None if cfg.n_coeffs is None else cepstrum_matrix(cfg)
        self.register_buffer("cepstrum", cepstrum, persistent=False)

    @property
    def output_dim(self) -> int:
        cfg = self.cfg
        if cfg.n_coeffs is None:
            return cfg.bands
        return cfg.n_coeffs * (3 if cfg.with_deltas else 1)

    def _delay_window(self, window: Tensor) -> Tensor:
        """n * w[n] for the window's samples n, n counted from the frame's centre or the window's first sample."""
        cfg = self.cfg
        n = torch.arange(cfg.win_length, dtype=window.dtype, device=window.device)
        # torch.stft centres a window shorter than n_fft in the frame: sample 0 of the window is frame sample `left`
        left = (cfg.n_fft - cfg.win_length) // 2
        # "start" counts from the window's sample 0, as the MATLAB function counts 1..N over its win_length-sample
        # frame (zero-padded after it to n_fft). Counted from the n_fft frame's first sample, every delay was `left`
        # (56 for 400 in 512) samples longer: a magnitude term left * |X|^2 / S^(2 gamma) the MATLAB feature has not
        origin = cfg.n_fft / 2.0 - left if cfg.delay_origin == "center" else 0.0
        return (n - origin) * window

    def _gram(self, x_re: Tensor, x_im: Tensor, y_re: Tensor, y_im: Tensor) -> Tensor:
        """The compressed modified group delay of each bin (..., bins, frames) from the two STFTs' parts."""
        cfg = self.cfg
        # log|X| smoothed along frequency: (bins, bins) @ (..., bins, frames)
        log_mag = 0.5 * torch.log(x_re.square() + x_im.square() + cfg.log_floor)
        dct = self.dct.to(torch.float64)
        log_smooth = torch.matmul(dct.T, torch.matmul(dct, log_mag))
        tau = (x_re * y_re + x_im * y_im) * torch.exp(-2.0 * cfg.gamma * log_smooth)
        # |tau|^alpha has an infinite slope at 0: the floor keeps gradients finite there (its value is ~1e-12^alpha)
        return torch.sign(tau) * tau.abs().clamp_min(1e-12).pow(cfg.alpha)

    def _gram_in_place(self, x_re: Tensor, x_im: Tensor, y_re: Tensor, y_im: Tensor) -> Tensor:
        """:meth:`_gram` without autograd: the same operations in the same order, so the same values bit for bit,
        each step but the first of a chain written into its input, a temporary of its own. A fresh (bins x frames)
        float64 tensor per step (13 MB for 16 windows of 4 s) was most of this feature's cost besides the FFTs."""
        cfg = self.cfg
        power = x_re.square()
        log_mag = power.add_(x_im.square()).add_(cfg.log_floor).log_().mul_(0.5)
        dct = self.dct.to(torch.float64)
        log_smooth = torch.matmul(dct.T, torch.matmul(dct, log_mag))
        tau = (x_re * y_re).add_(x_im * y_im).mul_(log_smooth.mul_(-2.0 * cfg.gamma).exp_())
        sign = torch.sign(tau)
        return tau.abs_().clamp_min_(1e-12).pow_(cfg.alpha).mul_(sign)

    def forward(self, waveform: Tensor) -> Tensor:
        check_float_samples(waveform)
        cfg = self.cfg
        out_dtype = feature_dtype(waveform)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            x = pre_emphasis(waveform.to(torch.float64), cfg.pre_emphasis)
            window = window_function(cfg.window, cfg.win_length, torch.float64, device=x.device)
            framing = {"n_fft": cfg.n_fft, "hop_length": cfg.hop_length, "center": cfg.center}
            x_re, x_im = stft_parts(x, window=window, **framing)
            y_re, y_im = stft_parts(x, window=self._delay_window(window), **framing)
            parts = (x_re, x_im, y_re, y_im)
            if torch.is_grad_enabled() and any(p.requires_grad for p in parts):
                mgd = self._gram(*parts)
            else:
                mgd = self._gram_in_place(*parts)
            if self.filterbank is not None:
                mgd = torch.matmul(self.filterbank.to(torch.float64), mgd)
            if cfg.max_normalize:
                # the MATLAB function's grp_phase / max(max(abs(grp_phase))), per item; an all-zero gram stays zero
                peak = mgd.abs().amax(dim=(-2, -1), keepdim=True)
                mgd = mgd / peak.clamp_min(torch.finfo(torch.float64).tiny)
            if self.cepstrum is None:
                return mgd.to(out_dtype)
            ceps = torch.matmul(self.cepstrum.to(torch.float64), mgd)
            if not cfg.with_deltas:
                return ceps.to(out_dtype)
            return append_deltas(ceps, cfg.delta_width).to(out_dtype)
