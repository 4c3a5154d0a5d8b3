"""Spectral and raw-waveform front-ends (registry ``frontend``): ``logmel``, ``logspec``, ``lfcc``, ``raw``.

Each maps a waveform (B, T) at 16 kHz to a :class:`FrontendOutput`:

| name | features | ``output_dim`` |
|---|---|---|
| ``logmel`` | (B, n_mels, frames) log-Mel energies | n_mels (80) |
| ``logspec`` | (B, n_fft // 2 + 1, frames) log power spectrum | 257 for n_fft 512 |
| ``lfcc`` | (B, 3 * n_coeffs, frames) LFCC + deltas (ASVspoof baseline) | 60 |
| ``raw`` | (B, T) the waveform itself (AASIST has its own sinc front-end) | ``None`` |

``frames = 1 + T // hop_length`` (centred frames). Optional per-utterance normalisation
(``normalize: true``): spectral features get zero mean / unit variance per frequency bin over
time (CMVN), the raw waveform zero mean / unit variance over samples. It is **off** by default
because the published set-ups these front-ends reproduce (LFCC-LCNN, log-Mel/LPS-LCNN, AASIST
on raw audio) feed unnormalised features; the statistics span the whole (fixed-length) input,
padding included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from sddkit.detectors.outputs import FrontendOutput
from sddkit.features.spectral import (
    LFCC,
    LFCCConfig,
    LinearSpectrogram,
    LinearSpectrogramConfig,
    LogMel,
    LogMelConfig,
)
from sddkit.frontends import FRONTENDS

__all__ = [
    "LFCCFrontendConfig",
    "LogMelFrontendConfig",
    "LogSpecFrontendConfig",
    "RawFrontend",
    "RawFrontendConfig",
    "SpectralFrontend",
    "utterance_normalize",
]

# Variance floors: log features vary by O(1) over time; waveforms can be very quiet (std 1e-3),
# so their floor is the one of HF's wav2vec2 feature extractor.
_FEATURE_NORM_EPS = 1e-5
_WAVEFORM_NORM_EPS = 1e-7


def utterance_normalize(x: Tensor, dim: int = -1, eps: float = _FEATURE_NORM_EPS) -> Tensor:
    """Zero mean, unit variance along ``dim`` (biased variance + ``eps``); same shape."""
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, unbiased=False)
    return (x - mean) / (var + eps).sqrt()


class SpectralFrontend(nn.Module):
    """A feature extractor as a front-end: waveform (B, T) -> features (B, F, frames)."""

    def __init__(self, *, features: nn.Module, normalize: bool = False):
        super().__init__()
        self.features = features
        self.normalize = normalize
        self.output_dim: int = features.output_dim

    def forward(self, waveform: Tensor) -> FrontendOutput:
        feats = self.features(waveform)
        if self.normalize:
            feats = utterance_normalize(feats, dim=-1)
        return FrontendOutput(features=feats)


class RawFrontend(nn.Module):
    """Pass-through: waveform (B, T) -> features (B, T); ``output_dim`` is None."""

    def __init__(self, *, normalize: bool = False):
        super().__init__()
        self.normalize = normalize
        self.output_dim: int | None = None

    def forward(self, waveform: Tensor) -> FrontendOutput:
        if not self.normalize:
            return FrontendOutput(features=waveform)
        return FrontendOutput(features=utterance_normalize(waveform, dim=-1, eps=_WAVEFORM_NORM_EPS))


@dataclass
class LogMelFrontendConfig(LogMelConfig):
    """:class:`~sddkit.features.spectral.LogMelConfig` plus per-utterance normalisation."""

    normalize: bool = False


@dataclass
class LogSpecFrontendConfig(LinearSpectrogramConfig):
    """:class:`~sddkit.features.spectral.LinearSpectrogramConfig` plus per-utterance normalisation."""

    normalize: bool = False


@dataclass
class LFCCFrontendConfig(LFCCConfig):
    """:class:`~sddkit.features.spectral.LFCCConfig` plus per-utterance normalisation."""

    normalize: bool = False


@dataclass
class RawFrontendConfig:
    """Raw waveform pass-through; ``normalize`` standardises each waveform."""

    normalize: bool = False


def _feature_config(cfg: Any, feature_cls: type) -> Any:
    """The feature part of a front-end config (every field but ``normalize``)."""
    return feature_cls(**{k: v for k, v in vars(cfg).items() if k != "normalize"})


@FRONTENDS.register("logmel", config=LogMelFrontendConfig)
def build_logmel(cfg: LogMelFrontendConfig, **context: Any) -> SpectralFrontend:
    """Log-Mel filterbank energies (80 HTK-mel bands, 25/10 ms): (B, 80, frames)."""
    return SpectralFrontend(features=LogMel(_feature_config(cfg, LogMelConfig)), normalize=cfg.normalize)


@FRONTENDS.register("logspec", config=LogSpecFrontendConfig)
def build_logspec(cfg: LogSpecFrontendConfig, **context: Any) -> SpectralFrontend:
    """Linear log power spectrogram (512-point FFT): (B, 257, frames)."""
    return SpectralFrontend(
        features=LinearSpectrogram(_feature_config(cfg, LinearSpectrogramConfig)), normalize=cfg.normalize
    )


@FRONTENDS.register("lfcc", config=LFCCFrontendConfig)
def build_lfcc(cfg: LFCCFrontendConfig, **context: Any) -> SpectralFrontend:
    """LFCC with deltas, ASVspoof baseline settings (20 filters, 20 ms/10 ms): (B, 60, frames)."""
    return SpectralFrontend(features=LFCC(_feature_config(cfg, LFCCConfig)), normalize=cfg.normalize)


@FRONTENDS.register("raw", config=RawFrontendConfig)
def build_raw(cfg: RawFrontendConfig, **context: Any) -> RawFrontend:
    """Raw waveform pass-through for back-ends with their own front-end (AASIST): (B, T)."""
    return RawFrontend(normalize=cfg.normalize)
