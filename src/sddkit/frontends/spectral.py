"""Spectral and raw-waveform front-ends (registry ``frontend``): ``logmel``, ``lfb``, ``logspec``, ``lfcc``, ``mgd``,
``cqt``, ``cqcc``, ``raw``.

Each maps a waveform (B, T) at 16 kHz to a :class:`FrontendOutput`:

| name | features | ``output_dim`` |
|---|---|---|
| ``logmel`` | (B, n_mels, frames) log-Mel energies | n_mels (80) |
| ``lfb`` | (B, n_filters, frames) log energies of linear triangular filters (LFCC before its DCT) | n_filters (120) |
| ``logspec`` | (B, n_fft // 2 + 1, frames) log power spectrum | 257 for n_fft 512 |
| ``lfcc`` | (B, 3 * n_coeffs, frames) LFCC + deltas (ASVspoof baseline) | 60 |
| ``mgd`` | (B, n_filters, frames) modified group delay (a phase feature) over linear bands | n_filters (120) |
| ``cqt`` | (B, n_bins, frames) log power of a constant-Q transform, 96 bins per octave (CQT-LCNN) | 863 at 16 kHz |
| ``cqcc`` | (B, 3 * n_coeffs, frames) CQCC + deltas (ASVspoof CQCC-GMM baseline) | 60 |
| ``raw`` | (B, T) the waveform itself (AASIST has its own sinc front-end) | ``None`` |

``mgd`` with ``n_coeffs`` set gives the gram's cepstrum, MGDCC: (B, n_coeffs, frames), 3 * n_coeffs with deltas.
``lfcc`` keeps c0 as the LFCC-GMM baseline does; ``with_energy: true`` replaces it by the frame's log
energy (over its f_min-f_max band) as the LFCC-LCNN baseline's front-end does. ``cqt`` and ``cqcc``
(:mod:`sddkit.features.cqt`) follow the MATLAB CQCC baseline's transform (its ERB-offset bandwidths, 15.6 Hz to
Nyquist) with a frame every 10 ms; their values are large (a log floor of 2.2e-16, and CQCC's c0 sums 8059
resampled log values), so a neural back-end wants ``normalize: true``.

``frames = 1 + T // hop_length`` (centred frames, even n_fft). Optional per-utterance normalisation
(``normalize: true``): spectral features get zero mean / unit variance per frequency bin over
time (CMVN), the raw waveform zero mean / unit variance over samples. It is **off** by default
because the published set-ups these front-ends reproduce (LFCC-LCNN, log-Mel/LPS-LCNN, AASIST
on raw audio) feed unnormalised features; the statistics span the whole (fixed-length) input,
padding included.

Optional level normalisation (``level_db: -27``): each input waveform has its DC offset removed and is scaled
to that RMS level (dBFS, an RMS of 1 being 0 dBFS) before anything else, so the features, hence the score, do not
depend on the recording's gain.
Without it, log spectra with an absolute floor (``log(mel + log_floor)``) are not gain-invariant even
after CMVN: a quieter recording pushes more bins onto the floor. Inputs quieter than ``LEVEL_FLOOR_DB``
RMS (digital silence, dither) get the gain of an input at that floor, so they stay far below speech
level instead of being raised to it. Off (``null``) by default; in training it applies to each crop,
in scoring to each window.

Optional SpecAugment masking of the spectral features (``spec_augment: {freq_width: [0, 20], ...}``,
the :class:`~sddkit.features.specaugment.SpecAugmentConfig` fields): applied **in training mode only**,
after normalisation, so that with ``normalize: true`` a zero mask reads as the utterance's average. Without
normalisation a zero in a log-Mel or log spectrogram is ``log(1)``, neither silence nor average: louder than
about 97 % of the bins of speech recordings (their floors are ``log(1e-6)`` and ``log(1e-10)``); use
``mask_value: mean`` there (the item's mean over all bins and frames). ``model.eval()`` (scoring, validation,
export) never masks.
Masks come from torch's global generator, which the trainer seeds. It is off (``null``) by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from sddkit.detectors.outputs import FrontendOutput
from sddkit.errors import ConfigError
from sddkit.features.cqt import CQCC, CQT, CQCCConfig, CQTConfig
from sddkit.features.groupdelay import ModifiedGroupDelay, ModifiedGroupDelayConfig
from sddkit.features.specaugment import SpecAugment, SpecAugmentConfig
from sddkit.features.spectral import (
    LFCC,
    LFCCConfig,
    LinearSpectrogram,
    LinearSpectrogramConfig,
    LogLinearFilterbank,
    LogLinearFilterbankConfig,
    LogMel,
    LogMelConfig,
    check_float_samples,
    shared_result,
)
from sddkit.frontends import FRONTENDS, SAMPLE_RATE

__all__ = [
    "LEVEL_FLOOR_DB",
    "CQCCFrontendConfig",
    "CQTFrontendConfig",
    "LFCCFrontendConfig",
    "LogLinearFilterbankFrontendConfig",
    "LogMelFrontendConfig",
    "LogSpecFrontendConfig",
    "ModifiedGroupDelayFrontendConfig",
    "RawFrontend",
    "RawFrontendConfig",
    "SpectralFrontend",
    "level_normalize",
    "utterance_normalize",
]

# Variance floors: log features vary by O(1) over time; waveforms can be very quiet (std 1e-3),
# so their floor is the one of HF's wav2vec2 feature extractor.
_FEATURE_NORM_EPS = 1e-5
_WAVEFORM_NORM_EPS = 1e-7


LEVEL_FLOOR_DB = -80.0
"""``level_normalize`` gives inputs below this RMS level (dBFS) the gain of one at it: silence stays quiet."""


def level_normalize(waveform: Tensor, level_db: float) -> Tensor:
    """Remove each waveform's DC offset, then scale it to an RMS of ``level_db`` dBFS: (B, T) -> (B, T).

    Exactly gain-invariant and offset-invariant for inputs whose RMS around their mean is above
    ``LEVEL_FLOOR_DB``. Integer (PCM) samples are refused: they were scaled in float64 and cast back to their
    integer type, which rounded every sample of the normalised signal (a few hundredths at -27 dBFS) to 0.
    """
    check_float_samples(waveform)
    # An offset carries no speech but would count in the RMS: speech riding on a large one was scaled down.
    # In float64: float32 squares overflow for samples above ~1.8e19 (the RMS became inf, the input zeros).
    x64 = waveform.double()  # converted once (the mean took a second copy)
    centred = x64 - x64.mean(dim=-1, keepdim=True)
    floor = 10.0 ** (LEVEL_FLOOR_DB / 20.0)
    # the floor applies to the mean square, before the square root: sqrt's slope is infinite at 0, so flooring
    # the RMS after it gave digital silence (or a DC-only input) a NaN gradient (0 * inf). The values are
    # the same: sqrt(floor ** 2) is exactly floor.
    rms = centred.pow(2).mean(dim=-1, keepdim=True).clamp_min(floor * floor).sqrt()
    gain = 10.0 ** (level_db / 20.0) / rms
    if centred.requires_grad:  # pow's backward reads centred: it must stay as it is
        return (centred * gain).to(waveform.dtype)
    return centred.mul_(gain).to(waveform.dtype)  # a temporary of our own: scaled in place, one copy fewer


def _check_level_db(level_db: float | None) -> None:
    if level_db is not None and not LEVEL_FLOOR_DB < level_db <= 0:
        raise ValueError(f"level_db must be in ({LEVEL_FLOOR_DB:g}, 0] dBFS (or null), got {level_db}")


def utterance_normalize(x: Tensor, dim: int = -1, eps: float = _FEATURE_NORM_EPS) -> Tensor:
    """Zero mean, unit variance along ``dim`` (biased variance + ``eps``); same shape and dtype.

    Computed in float64: a row whose values vary less than ``eps`` (a bin at the log floor all along,
    digital silence) is divided by about ``sqrt(eps)``, which magnifies the float32 rounding error of its
    mean (a few 1e-6 for log features near -23) to ~1e-3, differently in every implementation of the mean
    (torch, ONNX Runtime). In float64 a constant row normalises to exactly 0.
    """
    x64 = x.double()
    centred = x64 - x64.mean(dim=dim, keepdim=True)
    # the variance as the mean square of the centred values (two passes, exact enough in float64): torch.var's
    # one-pass kernel took twice as long as the rest of this function together
    std = (centred.square().mean(dim=dim, keepdim=True) + eps).sqrt()
    if centred.requires_grad:  # square's backward reads centred: not in place
        return (centred / std).to(x.dtype)
    return centred.div_(std).to(x.dtype)  # a temporary of our own (x64 may be x itself, centred never is)


class SpectralFrontend(nn.Module):
    """A feature extractor as a front-end: waveform (B, T) -> features (B, F, frames).

    ``level_db`` (optional) scales each input to that RMS first; ``spec_augment`` (optional) masks the
    features in training mode only.
    """

    float32_waveform = True  # features from float32 samples in any model dtype (detectors.detector.waveform_dtype)

    def __init__(
        self,
        *,
        features: nn.Module,
        normalize: bool = False,
        spec_augment: SpecAugment | None = None,
        level_db: float | None = None,
    ):
        super().__init__()
        _check_level_db(level_db)
        self.features = features
        self.normalize = normalize
        self.spec_augment = spec_augment
        self.level_db = level_db
        self.output_dim: int = features.output_dim

    def forward(self, waveform: Tensor) -> FrontendOutput:
        if self.level_db is not None:
            # one input's level normalisation is shared by a mixture's experts of one level (shared_computation)
            level_db = self.level_db
            waveform = shared_result("level", waveform, level_db, lambda: level_normalize(waveform, level_db))
        feats = self.features(waveform)
        if self.normalize:
            feats = utterance_normalize(feats, dim=-1)
        if self.training and self.spec_augment is not None:
            feats = self.spec_augment(feats)
        return FrontendOutput(features=feats)


class RawFrontend(nn.Module):
    """Pass-through: waveform (B, T) -> features (B, T); ``output_dim`` is None."""

    def __init__(self, *, normalize: bool = False):
        super().__init__()
        self.normalize = normalize
        self.output_dim: int | None = None

    def forward(self, waveform: Tensor) -> FrontendOutput:
        # integer PCM went on unscaled (90 dB too loud), or, normalised, was cast back to its integer type: zeros
        check_float_samples(waveform)
        if not self.normalize:
            return FrontendOutput(features=waveform)
        return FrontendOutput(features=utterance_normalize(waveform, dim=-1, eps=_WAVEFORM_NORM_EPS))


@dataclass
class _FrontendOptions:
    """What a spectral front-end adds to its feature config: level normalisation, per-utterance
    normalisation and training-only SpecAugment masking (fields listed in ``_FRONTEND_ONLY_FIELDS``)."""

    normalize: bool = False
    spec_augment: SpecAugmentConfig | None = None
    level_db: float | None = None

    def __post_init__(self) -> None:
        # first: another rate failed the band check (f_max above its Nyquist), which advised lowering f_max
        message = _sample_rate_error(self.sample_rate)  # type: ignore[attr-defined]
        if message:
            raise ValueError(message)
        super().__post_init__()  # type: ignore[misc]  # the feature config's own checks
        _check_level_db(self.level_db)


@dataclass
class LogMelFrontendConfig(_FrontendOptions, LogMelConfig):
    """:class:`~sddkit.features.spectral.LogMelConfig` plus the front-end options."""


@dataclass
class LogLinearFilterbankFrontendConfig(_FrontendOptions, LogLinearFilterbankConfig):
    """:class:`~sddkit.features.spectral.LogLinearFilterbankConfig` plus the front-end options."""


@dataclass
class LogSpecFrontendConfig(_FrontendOptions, LinearSpectrogramConfig):
    """:class:`~sddkit.features.spectral.LinearSpectrogramConfig` plus the front-end options."""


@dataclass
class LFCCFrontendConfig(_FrontendOptions, LFCCConfig):
    """:class:`~sddkit.features.spectral.LFCCConfig` plus the front-end options."""


@dataclass
class ModifiedGroupDelayFrontendConfig(_FrontendOptions, ModifiedGroupDelayConfig):
    """:class:`~sddkit.features.groupdelay.ModifiedGroupDelayConfig` plus the front-end options."""


@dataclass
class RawFrontendConfig:
    """Raw waveform pass-through; ``normalize`` standardises each waveform."""

    normalize: bool = False


_FRONTEND_ONLY_FIELDS = ("normalize", "spec_augment", "level_db")


def _sample_rate_error(sample_rate: int) -> str | None:
    if sample_rate == SAMPLE_RATE:
        return None
    # the features would be computed as if the 16 kHz input were at this rate: every band mislabelled
    return (
        f"sample_rate: {sample_rate}, but sddkit trains and scores {SAMPLE_RATE} Hz audio "
        f"(leave sample_rate at {SAMPLE_RATE}; band limits are f_min/f_max)"
    )


def _spectral_frontend(cfg: Any, feature_cls: type, config_cls: type) -> SpectralFrontend:
    """The front-end of a spectral config: its feature fields build ``feature_cls``, the rest wrap it."""
    message = _sample_rate_error(cfg.sample_rate)
    if message:
        raise ConfigError(f"frontend.{message}")
    features = feature_cls(config_cls(**{k: v for k, v in vars(cfg).items() if k not in _FRONTEND_ONLY_FIELDS}))
    masking = SpecAugment(cfg.spec_augment) if cfg.spec_augment is not None else None
    return SpectralFrontend(features=features, normalize=cfg.normalize, spec_augment=masking, level_db=cfg.level_db)


@FRONTENDS.register("logmel", config=LogMelFrontendConfig)
def build_logmel(cfg: LogMelFrontendConfig, **context: Any) -> SpectralFrontend:
    """Log-Mel filterbank energies (80 HTK-mel bands, 25/10 ms): (B, 80, frames)."""
    return _spectral_frontend(cfg, LogMel, LogMelConfig)


@FRONTENDS.register("lfb", config=LogLinearFilterbankFrontendConfig)
def build_lfb(cfg: LogLinearFilterbankFrontendConfig, **context: Any) -> SpectralFrontend:
    """Log linear-filterbank energies (120 triangular filters over 0-8 kHz, 25/10 ms): (B, 120, frames)."""
    return _spectral_frontend(cfg, LogLinearFilterbank, LogLinearFilterbankConfig)


@FRONTENDS.register("logspec", config=LogSpecFrontendConfig)
def build_logspec(cfg: LogSpecFrontendConfig, **context: Any) -> SpectralFrontend:
    """Linear log power spectrogram (512-point FFT): (B, 257, frames)."""
    return _spectral_frontend(cfg, LinearSpectrogram, LinearSpectrogramConfig)


@FRONTENDS.register("lfcc", config=LFCCFrontendConfig)
def build_lfcc(cfg: LFCCFrontendConfig, **context: Any) -> SpectralFrontend:
    """LFCC with deltas, ASVspoof baseline settings (20 filters, 20 ms/10 ms): (B, 60, frames)."""
    return _spectral_frontend(cfg, LFCC, LFCCConfig)


@FRONTENDS.register("mgd", config=ModifiedGroupDelayFrontendConfig)
def build_mgd(cfg: ModifiedGroupDelayFrontendConfig, **context: Any) -> SpectralFrontend:
    """Modified group delay, a phase feature (120 linear bands, 25/10 ms): (B, 120, frames); n_coeffs: MGDCC.

    alpha 0.4, gamma 0.9; ``n_coeffs`` gives its cepstrum (c1 .. c_n_coeffs; 3 * n_coeffs with ``with_deltas``)."""
    return _spectral_frontend(cfg, ModifiedGroupDelay, ModifiedGroupDelayConfig)


@FRONTENDS.register("raw", config=RawFrontendConfig)
def build_raw(cfg: RawFrontendConfig, **context: Any) -> RawFrontend:
    """Raw waveform pass-through for back-ends with their own front-end (AASIST): (B, T)."""
    return RawFrontend(normalize=cfg.normalize)


# --- constant-Q front-ends (sddkit.features.cqt) ---------------------------------------------------------------


@dataclass
class CQTFrontendConfig(_FrontendOptions, CQTConfig):
    """:class:`~sddkit.features.cqt.CQTConfig` plus the front-end options."""


@dataclass
class CQCCFrontendConfig(_FrontendOptions, CQCCConfig):
    """:class:`~sddkit.features.cqt.CQCCConfig` plus the front-end options."""


@FRONTENDS.register("cqt", config=CQTFrontendConfig)
def build_cqt(cfg: CQTFrontendConfig, **context: Any) -> SpectralFrontend:
    """Log power constant-Q transform (96 bins/octave, 15.6 Hz-7.9 kHz, 10 ms hop; CQT-LCNN): (B, 863, frames)."""
    return _spectral_frontend(cfg, CQT, CQTConfig)


@FRONTENDS.register("cqcc", config=CQCCFrontendConfig)
def build_cqcc(cfg: CQCCFrontendConfig, **context: Any) -> SpectralFrontend:
    """CQCC with deltas, ASVspoof baseline settings (96 bins/octave, d 16, c0-c19, 10 ms hop): (B, 60, frames)."""
    return _spectral_frontend(cfg, CQCC, CQCCConfig)
