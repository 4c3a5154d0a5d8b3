"""Audio I/O (load/decode/validate any common format to mono float32 at 16 kHz), crops and windows."""

from sddkit.audio.crop import center_crop, fixed_windows, random_crop, repeat_pad, window_starts
from sddkit.audio.io import (
    MIN_SAMPLE_RATE,
    SILENCE_PEAK,
    AudioInfo,
    audio_info,
    decode_audio_bytes,
    load_audio,
    validate_waveform,
)

__all__ = [
    "MIN_SAMPLE_RATE",
    "SILENCE_PEAK",
    "AudioInfo",
    "audio_info",
    "center_crop",
    "decode_audio_bytes",
    "fixed_windows",
    "load_audio",
    "random_crop",
    "repeat_pad",
    "validate_waveform",
    "window_starts",
]
