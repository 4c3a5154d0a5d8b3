"""Audio loading: any common file or container -> validated mono float32 at a fixed sample rate.

Decoders: soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus-in-Ogg, MP3, AIFF, ...) is tried
first because it is fast and exact; PyAV (FFmpeg) is the fallback for whatever libsndfile cannot
open (M4A/AAC, MP4/MKV/WebM audio tracks as in FakeAVCeleb, raw ADTS, ...). Channels are averaged
to mono *before* resampling (both are linear, so the order does not change the result, and mono
resampling is cheaper); resampling uses soxr at "HQ" quality. Integer PCM is scaled to [-1, 1)
by 2**(bits-1); float data is kept as is (not clipped).

Duration guard: a header that declares a duration clearly over ``max_duration`` (more than
``_HEADER_MARGIN`` x the limit + ``_HEADER_SLACK_S``; bitrate-based estimates can be off) is
rejected before any decoding. Otherwise decoding counts samples and stops as soon as the limit
is passed, so at most ``max_duration`` seconds of audio are ever decoded, whatever the header says.

Every failure is one of the typed :mod:`sddkit.errors` audio errors; no numpy, soundfile or av
exception escapes. Checks, in order: missing path / directory (``AudioNotFoundError``), 0-byte
file (``EmptyAudioError``), undecodable (``AudioDecodeError``), too long from the header, zero
decoded samples (``EmptyAudioError``), a native rate below ``MIN_SAMPLE_RATE``
(``UnsupportedSampleRateError``), NaN/Inf (``NonFiniteAudioError``), too short / too long
(``AudioTooShortError`` / ``AudioTooLongError``), silent (``SilentAudioError``, peak below -80 dBFS).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

from sddkit.errors import (
    AudioDecodeError,
    AudioError,
    AudioNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    ConfigError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    UnsupportedSampleRateError,
)

__all__ = [
    "MIN_SAMPLE_RATE",
    "SILENCE_PEAK",
    "AudioInfo",
    "audio_info",
    "decode_audio_bytes",
    "load_audio",
    "validate_waveform",
]

SILENCE_PEAK = 1e-4
"""A waveform whose absolute peak is below this (-80 dBFS) is silent: digital zero, or dither of
a few LSB of 16-bit PCM (1 LSB = 3.1e-5), e.g. a stereo file whose channels cancel in the mono
mix. Speech, even recorded very quietly, peaks far above it."""

MIN_SAMPLE_RATE = 4000
"""Native sample rates below this (Hz) are rejected: such audio holds no speech band worth
scoring (a 1 Hz header, say, is a broken file), and upsampling it would only invent a signal."""

_RESAMPLE_QUALITY = "HQ"
# A header duration only rejects a file when it is clearly over the limit: MP3/ADTS durations are
# estimated from the bitrate and can be off by a few percent; the decoded-sample count is exact.
_HEADER_MARGIN = 1.02
_HEADER_SLACK_S = 0.5
# Comparisons of durations in seconds tolerate this much (far below one sample at 16 kHz).
_DURATION_EPS_S = 1e-6
# libsndfile reports an absurd frame count when the length is unknown (pipes, some streams).
_UNKNOWN_FRAMES = 2**62


@dataclass(frozen=True)
class AudioInfo:
    """What a file declares about its (first) audio stream.

    ``num_frames`` is per channel at ``sample_rate``. For files read by soundfile it is the exact
    count; for FFmpeg containers it comes from the declared duration when there is one (which may
    differ from the decoded count by codec priming/padding), else from counting decoded samples.
    ``format``: soundfile's major format lower-cased ("wav", "flac", "ogg", "mp3") or FFmpeg's
    demuxer name ("mov" for MP4/M4A, "matroska", "aac", ...).
    """

    sample_rate: int
    channels: int
    num_frames: int
    duration_s: float
    format: str


# --- public API ---------------------------------------------------------------------------


def _check_file(path: str | Path) -> str:
    """The path's label for messages, after checking it names a non-empty regular file."""
    label = str(path)
    p = Path(path)
    try:
        is_dir = p.is_dir()
        exists = is_dir or p.exists()
    except OSError as exc:  # Path hides only "no such file": a name too long or an unsearchable folder raise
        raise AudioDecodeError(f"cannot access file: {_reason(exc)}", path=label) from None
    if is_dir:
        raise AudioNotFoundError("is a directory, not an audio file", path=label)
    if not exists:
        broken = "a broken symbolic link (its target is missing, or the link loops)"
        raise AudioNotFoundError(broken if p.is_symlink() else "no such file", path=label)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise AudioDecodeError(f"cannot stat file: {exc}", path=label) from None
    if size == 0:
        raise EmptyAudioError("file is empty (0 bytes)", path=label)
    return label


def load_audio(
    path: str | Path,
    *,
    sample_rate: int = 16000,
    max_duration: float | None = 600.0,
    min_duration: float = 0.0,
    allow_silent: bool = False,
) -> np.ndarray:
    """Decode ``path`` to a mono float32 waveform of shape (T,) at ``sample_rate``.

    ``max_duration`` (seconds, ``None`` = no limit) and ``min_duration`` bound the length;
    silent files raise unless ``allow_silent``. Raises only :class:`~sddkit.errors.AudioError`
    subclasses (plus ``ConfigError`` for invalid arguments).
    """
    _check_arguments(sample_rate, max_duration, min_duration)
    label = _check_file(path)
    mono, native_sr = _decode(label, label=label, max_duration=max_duration)
    return _finish(
        mono,
        native_sr,
        label=label,
        sample_rate=sample_rate,
        max_duration=max_duration,
        min_duration=min_duration,
        allow_silent=allow_silent,
    )


def decode_audio_bytes(
    data: bytes | bytearray | memoryview,
    *,
    sample_rate: int = 16000,
    max_duration: float | None = 600.0,
    min_duration: float = 0.0,
    allow_silent: bool = False,
    name: str | None = None,
) -> np.ndarray:
    """Like :func:`load_audio` for an in-memory file (e.g. an HTTP upload); (T,) float32.

    ``name`` only labels error messages (e.g. the uploaded file name).
    """
    _check_arguments(sample_rate, max_duration, min_duration)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise EmptyAudioError("no data (0 bytes)", path=name)
    mono, native_sr = _decode(data, label=name, max_duration=max_duration)
    return _finish(
        mono,
        native_sr,
        label=name,
        sample_rate=sample_rate,
        max_duration=max_duration,
        min_duration=min_duration,
        allow_silent=allow_silent,
    )


def audio_info(path: str | Path) -> AudioInfo:
    """Header information of ``path`` without decoding the samples (when the header has a length)."""
    label = _check_file(path)
    failures: list[str] = []
    try:
        info = sf.info(label)
        if info.samplerate > 0 and 0 <= info.frames < _UNKNOWN_FRAMES:
            return AudioInfo(
                sample_rate=int(info.samplerate),
                channels=int(info.channels),
                num_frames=int(info.frames),
                duration_s=info.frames / info.samplerate,
                format=str(info.format).lower(),
            )
        failures.append("soundfile: no usable length in header")
    except Exception as exc:  # libsndfile cannot open it: try FFmpeg
        failures.append(f"soundfile: {_reason(exc)}")
    try:
        return _pyav_info(label, label=label)
    except AudioError:
        raise
    except Exception as exc:  # FFmpeg raises many types; all mean "cannot read this"
        failures.append(f"pyav: {_reason(exc)}")
    raise AudioDecodeError("not a readable audio file (" + "; ".join(failures) + ")", path=label)


def validate_waveform(
    x: np.ndarray,
    sample_rate: int,
    *,
    min_duration: float = 0.0,
    max_duration: float | None = None,
    allow_silent: bool = False,
    path: str | None = None,
) -> np.ndarray:
    """Check a (T,) waveform at ``sample_rate`` and return it as contiguous float32.

    Integer arrays are scaled to [-1, 1) as PCM. One sample of slack on both duration bounds
    absorbs resampling rounding. ``path`` only labels error messages.
    """
    _check_arguments(sample_rate, max_duration, min_duration)
    _check_native_rate(sample_rate, path)
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise AudioError(f"expected a 1-D mono waveform, got shape {arr.shape}", path=path)
    if arr.dtype.kind in "iu":
        arr = _pcm_to_float(arr)
    elif arr.dtype.kind != "f":
        raise AudioError(f"expected a numeric waveform, got dtype {arr.dtype}", path=path)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    n = arr.shape[0]
    if n == 0:
        raise EmptyAudioError("zero samples", path=path)
    if not np.isfinite(arr).all():
        raise NonFiniteAudioError(f"{int((~np.isfinite(arr)).sum())} NaN/Inf sample(s)", path=path)
    duration = n / sample_rate
    if n < min_duration * sample_rate - 1:
        raise AudioTooShortError(f"duration {duration:.3f} s is below min_duration {min_duration} s", path=path)
    if max_duration is not None and n > max_duration * sample_rate + 1:
        raise AudioTooLongError(f"duration {duration:.3f} s exceeds max_duration {max_duration} s", path=path)
    peak = float(np.abs(arr).max())
    if peak < SILENCE_PEAK and not allow_silent:
        level = f"{20 * math.log10(peak):.1f} dBFS" if peak > 0 else "digital zero"
        raise SilentAudioError(f"silent (peak {peak:.2e}, {level}, below -80 dBFS): nothing to score", path=path)
    return arr


# --- decoding -------------------------------------------------------------------------------


def _check_native_rate(sample_rate: int, path: str | None) -> None:
    if sample_rate < MIN_SAMPLE_RATE:
        raise UnsupportedSampleRateError(
            f"sample rate {sample_rate} Hz is below the minimum {MIN_SAMPLE_RATE} Hz (no speech band to score)",
            path=path,
        )


def _check_arguments(sample_rate: int, max_duration: float | None, min_duration: float) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ConfigError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if math.isnan(min_duration) or min_duration < 0:  # NaN compares false: it would disable the bound
        raise ConfigError(f"min_duration must be >= 0, got {min_duration}")
    if max_duration is not None and (math.isnan(max_duration) or max_duration <= 0 or max_duration < min_duration):
        raise ConfigError(f"max_duration must be > 0 and >= min_duration, got {max_duration}")


def _finish(
    mono: np.ndarray,
    native_sr: int,
    *,
    label: str | None,
    sample_rate: int,
    max_duration: float | None,
    min_duration: float,
    allow_silent: bool,
) -> np.ndarray:
    """Native-rate mono -> validated (T,) float32 at ``sample_rate``."""
    if mono.size == 0:
        raise EmptyAudioError("decodes to zero samples", path=label)
    _check_native_rate(native_sr, label)
    # Checked before resampling: soxr would smear one NaN over the whole filter length.
    if not np.isfinite(mono).all():
        raise NonFiniteAudioError(f"{int((~np.isfinite(mono)).sum())} NaN/Inf sample(s)", path=label)
    if native_sr != sample_rate:
        mono = soxr.resample(mono, native_sr, sample_rate, quality=_RESAMPLE_QUALITY)
    return validate_waveform(
        mono,
        sample_rate,
        min_duration=min_duration,
        max_duration=max_duration,
        allow_silent=allow_silent,
        path=label,
    )


def _decode(source: str | bytes, *, label: str | None, max_duration: float | None) -> tuple[np.ndarray, int]:
    """(mono float32 at the native rate, native rate); soundfile first, then PyAV."""
    failures: list[str] = []
    for name, decoder in (("soundfile", _decode_soundfile), ("pyav", _decode_pyav)):
        file = source if isinstance(source, str) else io.BytesIO(source)
        try:
            return decoder(file, label=label, max_duration=max_duration)
        except AudioError:
            raise
        except Exception as exc:  # decoders raise many types; each means "this decoder cannot read it"
            failures.append(f"{name}: {_reason(exc)}")
    raise AudioDecodeError("not a readable audio file (" + "; ".join(failures) + ")", path=label)


def _reason(exc: Exception) -> str:
    """The decoder's own reason, without the file object or path it repeats."""
    reason = getattr(exc, "error_string", None) or getattr(exc, "strerror", None) or str(exc)
    return str(reason).strip().rstrip(".")


def _decode_soundfile(
    file: str | io.BytesIO, *, label: str | None, max_duration: float | None
) -> tuple[np.ndarray, int]:
    with sf.SoundFile(file) as f:
        sr = int(f.samplerate)
        if sr <= 0:
            raise AudioDecodeError(f"invalid sample rate {sr} in header", path=label)
        _check_native_rate(sr, label)  # before the duration guard: a 1 Hz header declares absurd lengths
        if 0 < f.frames < _UNKNOWN_FRAMES:
            _check_declared(f.frames / sr, max_duration, label)
        # Read at most one sample past the limit: enough to know the file is too long.
        limited = max_duration is not None and math.isfinite(max_duration)  # inf = no limit
        frames = math.floor((max_duration + _DURATION_EPS_S) * sr) + 1 if limited else -1
        data = f.read(frames=frames, dtype="float32", always_2d=True)
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if max_duration is not None and mono.shape[0] / sr > max_duration + _DURATION_EPS_S:
        raise AudioTooLongError(f"longer than max_duration {max_duration} s (decoding stopped there)", path=label)
    return np.ascontiguousarray(mono, dtype=np.float32), sr


def _decode_pyav(file: str | io.BytesIO, *, label: str | None, max_duration: float | None) -> tuple[np.ndarray, int]:
    with av.open(file, metadata_errors="ignore") as container:
        stream = _first_audio_stream(container, label)
        if stream.sample_rate:
            _check_native_rate(int(stream.sample_rate), label)
        declared = _declared_duration(container, stream)
        if declared is not None:
            _check_declared(declared, max_duration, label)
        segments: list[tuple[int, list[np.ndarray]]] = []  # (rate, chunks): the rate may change mid-stream
        seconds = 0.0
        for chunk, rate in _iter_pyav_mono(container, stream):
            if not segments or segments[-1][0] != rate:
                segments.append((rate, []))
            segments[-1][1].append(chunk)
            seconds += chunk.shape[0] / rate
            if max_duration is not None and seconds > max_duration + _DURATION_EPS_S:
                raise AudioTooLongError(
                    f"longer than max_duration {max_duration} s (decoding stopped at {seconds:.1f} s)", path=label
                )
    if not segments:
        return np.zeros(0, dtype=np.float32), int(stream.sample_rate or 1)
    rate = segments[0][0]
    parts = []
    for seg_rate, chunks in segments:
        seg = np.concatenate(chunks)
        parts.append(seg if seg_rate == rate else soxr.resample(seg, seg_rate, rate, quality=_RESAMPLE_QUALITY))
    return np.concatenate(parts).astype(np.float32, copy=False), rate


def _iter_pyav_mono(container, stream):
    """Yield (mono float32 chunk, sample rate) for every decoded frame of ``stream``.

    Packets that fail to decode are skipped, as the ``ffmpeg`` tool does; a stream where every
    packet fails raises the last error.
    """
    decoded_any = False
    last_error: Exception | None = None
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            last_error = exc
            continue
        for frame in frames:
            if frame.samples == 0:
                continue
            decoded_any = True
            yield _frame_to_mono(frame), int(frame.sample_rate)
    if not decoded_any and last_error is not None:
        raise last_error


def _frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """An AudioFrame (any sample format, planar or packed) -> (samples,) float32 mono."""
    arr = frame.to_ndarray()
    channels = max(1, frame.layout.nb_channels)
    if not frame.format.is_planar:  # packed: (1, samples * channels), interleaved
        arr = arr.reshape(-1, channels).T
    arr = _pcm_to_float(arr)
    return arr.mean(axis=0, dtype=np.float32) if arr.shape[0] > 1 else arr[0]


def _pcm_to_float(arr: np.ndarray) -> np.ndarray:
    """Integer PCM -> float32 in [-1, 1) (unsigned PCM is offset-binary); floats pass through."""
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    bits = arr.dtype.itemsize * 8
    scale = float(2 ** (bits - 1))
    if arr.dtype.kind == "u":
        return ((arr.astype(np.float64) - scale) / scale).astype(np.float32)
    return (arr.astype(np.float64) / scale).astype(np.float32)


def _first_audio_stream(container, label: str | None):
    if not container.streams.audio:
        raise AudioDecodeError("no audio stream in the file", path=label)
    stream = container.streams.audio[0]
    if stream.codec_context is None:  # a plain error: the caller adds it to the other decoders' reasons
        raise ValueError("no decoder for the audio stream's codec")
    return stream


def _declared_duration(container, stream) -> float | None:
    """Duration in seconds from the stream or container header, if any."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _check_declared(declared_s: float, max_duration: float | None, label: str | None) -> None:
    if max_duration is None:
        return
    if declared_s > max_duration * _HEADER_MARGIN + _HEADER_SLACK_S:
        raise AudioTooLongError(
            f"header declares {declared_s:.1f} s, over max_duration {max_duration} s (not decoded)", path=label
        )


def _pyav_info(file: str, *, label: str) -> AudioInfo:
    with av.open(file, metadata_errors="ignore") as container:
        stream = _first_audio_stream(container, label)
        rate = int(stream.sample_rate or 0)
        channels = int(stream.channels or 0)
        fmt = container.format.name.split(",")[0]
        declared = _declared_duration(container, stream)
        if declared is not None and rate > 0:
            frames = round(declared * rate)
            return AudioInfo(rate, channels, frames, frames / rate, fmt)
        # No length in the header (e.g. some raw streams): count decoded samples, keeping none.
        frames = 0
        for chunk, chunk_rate in _iter_pyav_mono(container, stream):
            rate = rate or chunk_rate
            frames += chunk.shape[0]
    if rate <= 0:
        raise AudioDecodeError("the audio stream declares no sample rate", path=label)
    return AudioInfo(rate, channels, frames, frames / rate, fmt)
