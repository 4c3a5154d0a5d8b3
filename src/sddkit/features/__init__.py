"""Pure-torch spectral features (log-Mel, log linear filterbank, log spectrogram, LFCC, modified group delay) and their
building blocks."""

from sddkit.features.groupdelay import ModifiedGroupDelay, ModifiedGroupDelayConfig
from sddkit.features.spectral import (
    LFCC,
    LFCCConfig,
    LinearSpectrogram,
    LinearSpectrogramConfig,
    LogLinearFilterbank,
    LogLinearFilterbankConfig,
    LogMel,
    LogMelConfig,
    dct_matrix,
    deltas,
    hz_to_mel,
    linear_filterbank,
    mel_filterbank,
    mel_to_hz,
    power_spectrogram,
    pre_emphasis,
    stft,
    triangular_filterbank,
    window_function,
)

__all__ = [
    "LFCC",
    "LFCCConfig",
    "LinearSpectrogram",
    "LinearSpectrogramConfig",
    "LogLinearFilterbank",
    "LogLinearFilterbankConfig",
    "LogMel",
    "LogMelConfig",
    "ModifiedGroupDelay",
    "ModifiedGroupDelayConfig",
    "dct_matrix",
    "deltas",
    "hz_to_mel",
    "linear_filterbank",
    "mel_filterbank",
    "mel_to_hz",
    "power_spectrogram",
    "pre_emphasis",
    "stft",
    "triangular_filterbank",
    "window_function",
]
