"""Lossy codec round trips through PyAV (FFmpeg), entirely in memory.

``codec_roundtrip(x, sr, codec, bitrate_kbps)`` resamples to the codec's sample rate,
encodes and decodes packet by packet (no container, no files), resamples the decoded
signal back to ``sr`` and removes the codec delay so the output stays time-aligned with
the input (exactly ``T`` samples out).

Codec delay (encoder priming, look-ahead, filter banks) is a property of the codec
configuration, not of the signal, and FFmpeg does not report it consistently across
codecs. It is therefore *measured* once per (codec, sample rate, bit rate) by
cross-correlating the round trip of a fixed synthetic speech-like signal with the signal,
cached for the process, and removed from every later round trip.

Codecs (FFmpeg encoder -> decoder, codec sample rate):

=============  =====================  ========  ======================================
name           encoder                rate      bit rate
=============  =====================  ========  ======================================
mp3            libmp3lame             16 kHz    8-160 kb/s (MPEG-2 layer III, CBR)
aac            aac (FFmpeg native)    16 kHz    8-96 kb/s (AAC-LC)
opus           libopus                16 kHz    6-256 kb/s (decoded at 48 kHz)
vorbis         libvorbis              16 kHz    16-192 kb/s
vorbis_native  vorbis (FFmpeg native) 16 kHz    encoder default (~80 kb/s on speech)
amrnb          libopencore_amrnb      8 kHz     4.75-12.2 kb/s (snapped to the 8 modes)
g722           g722                   16 kHz    64 kb/s fixed (sub-band ADPCM)
mulaw          pcm_mulaw (G.711)      8 kHz     64 kb/s fixed
alaw           pcm_alaw (G.711)       8 kHz     64 kb/s fixed
=============  =====================  ========  ======================================

Bit rates are requests to the encoder, and two saturate at the 16 kHz codec rate: FFmpeg's AAC
encoder cannot exceed 96 kb/s on a 16 kHz mono stream (6144 bits per 1024-sample frame; it clamps
higher requests, so the range stops there) and its rate control reaches only about 72-82 kb/s;
libopus pads rather than clamps, and decoded speech stops changing at about 150 kb/s.

The PyAV wheels ship FFmpeg without libvorbis, so ``vorbis`` raises
:class:`CodecUnavailableError` there. ``vorbis_native`` is FFmpeg's experimental
built-in encoder instead: stereo only (the mono signal is duplicated and the decoded
channels averaged), and its ``global_quality`` scale is unusable (higher settings
attenuate tonal content by up to 20 dB), so it runs at its default setting only.
"""

from __future__ import annotations

import fractions
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import signal

from sddkit.augment import AUGMENTATIONS
from sddkit.augment.base import Augmentation, Range, check_probability, check_range, fit_length, uniform
from sddkit.augment.dsp import resample
from sddkit.errors import ConfigError, SddkitError

CodecName = Literal["mp3", "aac", "opus", "vorbis", "vorbis_native", "amrnb", "g722", "mulaw", "alaw"]


class CodecUnavailableError(SddkitError, RuntimeError):
    """The FFmpeg build behind PyAV lacks an encoder or decoder this codec needs."""


@dataclass(frozen=True)
class CodecInfo:
    """Static facts about one codec as used here."""

    encoder: str
    decoder: str
    sample_rate: int
    channels: int = 1
    bitrate_kbps: Range | None = None  # allowed range; None = fixed rate
    default_kbps: float | None = None
    modes_kbps: tuple[float, ...] = ()  # discrete rates (AMR modes) the request is snapped to
    options: tuple[tuple[str, str], ...] = ()
    fast_options: tuple[tuple[str, str], ...] = ()  # cheaper encoder search, same bitstream format


CODECS: dict[str, CodecInfo] = {
    "mp3": CodecInfo(
        "libmp3lame",
        "mp3",
        16000,
        bitrate_kbps=(8.0, 160.0),
        default_kbps=64.0,
        fast_options=(("compression_level", "7"),),  # lame -q 7
    ),
    "aac": CodecInfo(
        "aac",
        "aac",
        16000,
        bitrate_kbps=(8.0, 96.0),  # the encoder's ceiling for 16 kHz mono (6144 bits per frame)
        default_kbps=32.0,
        fast_options=(("aac_coder", "fast"),),  # instead of the two-loop search
    ),
    "opus": CodecInfo(
        "libopus",
        "libopus",
        16000,
        bitrate_kbps=(6.0, 256.0),
        default_kbps=16.0,
        fast_options=(("compression_level", "5"),),  # complexity 5 instead of 10
    ),
    "vorbis": CodecInfo("libvorbis", "vorbis", 16000, bitrate_kbps=(16.0, 192.0), default_kbps=64.0),
    "vorbis_native": CodecInfo("vorbis", "vorbis", 16000, channels=2, options=(("strict", "experimental"),)),
    "amrnb": CodecInfo(
        "libopencore_amrnb",
        "amrnb",
        8000,
        bitrate_kbps=(4.75, 12.2),
        default_kbps=12.2,
        modes_kbps=(4.75, 5.15, 5.9, 6.7, 7.4, 7.95, 10.2, 12.2),
    ),
    "g722": CodecInfo("g722", "g722", 16000),
    "mulaw": CodecInfo("pcm_mulaw", "pcm_mulaw", 8000),
    "alaw": CodecInfo("pcm_alaw", "pcm_alaw", 8000),
}

# Extra silence fed after the signal so the delayed decoder output still covers all T samples.
_TAIL_SECONDS = 0.25
# Search window for the codec delay, in seconds (codec delays are tens of milliseconds).
_MAX_DELAY_SECONDS = 0.2


def codec_info(codec: str) -> CodecInfo:
    try:
        return CODECS[codec]
    except KeyError:
        raise ConfigError(f"unknown codec {codec!r}; available: {', '.join(CODECS)}") from None


@lru_cache(maxsize=64)
def _missing_part(codec: str) -> str | None:
    """Why PyAV cannot round-trip ``codec`` (None if it can); cached, FFmpeg builds do not change."""
    import av

    info = codec_info(codec)
    for name, mode in ((info.encoder, "w"), (info.decoder, "r")):
        try:
            av.Codec(name, mode)
        except Exception as exc:  # av.codec.codec.UnknownCodecError and friends
            what = "encoder" if mode == "w" else "decoder"
            return (
                f"codec {codec!r} needs the FFmpeg {what} {name!r}, which this PyAV build (av {av.__version__}) "
                f"does not have ({exc}); pick another codec or install a PyAV/FFmpeg build with it"
            )
    return None


def check_codec_available(codec: str) -> None:
    """Raise :class:`CodecUnavailableError` if PyAV's FFmpeg cannot encode and decode ``codec``."""
    problem = _missing_part(codec)
    if problem is not None:
        raise CodecUnavailableError(problem)


def resolve_bitrate(codec: str, bitrate_kbps: float | None) -> int | None:
    """Validate a bit-rate request for ``codec``; returns the encoder's bit rate in b/s (None = fixed rate)."""
    info = codec_info(codec)
    if info.bitrate_kbps is None:
        if bitrate_kbps is not None:
            raise ConfigError(f"codec {codec!r} has no bit-rate control here; leave bitrate_kbps unset")
        return None
    kbps = info.default_kbps if bitrate_kbps is None else float(bitrate_kbps)
    lo, hi = info.bitrate_kbps
    if not lo <= kbps <= hi:
        raise ConfigError(f"codec {codec!r}: bit rate {kbps} kb/s outside [{lo}, {hi}]")
    if info.modes_kbps:
        kbps = min(info.modes_kbps, key=lambda m: abs(m - kbps))
    else:
        kbps = float(round(kbps))  # whole kb/s: encoders round anyway, and it bounds the delay cache
    return int(round(kbps * 1000))


def _to_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    if arr.dtype == np.int32:
        return arr.astype(np.float32) / 2147483648.0
    return arr.astype(np.float32, copy=False)


def _encode_decode(pcm: np.ndarray, codec: str, bit_rate: int | None, fast: bool) -> tuple[np.ndarray, int]:
    """Encode then decode ``pcm`` ((N,) float in [-1, 1] at the codec rate); returns (decoded mono, its rate)."""
    import av

    info = codec_info(codec)
    check_codec_available(codec)
    enc_codec = av.Codec(info.encoder, "w")
    formats = [f.name for f in (enc_codec.audio_formats or [])]
    fmt = next((f for f in ("fltp", "flt", "s16", "s16p") if f in formats), formats[0] if formats else "s16")
    layout = "mono" if info.channels == 1 else "stereo"

    enc = av.CodecContext.create(info.encoder, "w")
    enc.sample_rate = info.sample_rate
    enc.layout = layout
    enc.format = fmt
    enc.time_base = fractions.Fraction(1, info.sample_rate)
    enc.thread_count = 1
    if bit_rate is not None:
        enc.bit_rate = bit_rate
    options = dict(info.options) | (dict(info.fast_options) if fast else {})
    if options:
        enc.options = options
    try:
        enc.open()
    except Exception as exc:
        raise CodecUnavailableError(f"cannot open the {codec!r} encoder {info.encoder!r}: {exc}") from None

    frame_size = enc.frame_size or max(len(pcm), 1)  # 0 = any frame size (PCM): one frame
    n = len(pcm)
    padded = np.zeros(-(-n // frame_size) * frame_size, dtype=np.float32)
    padded[:n] = pcm
    if fmt.startswith("s16"):
        data = np.clip(np.round(padded * 32767.0), -32768, 32767).astype(np.int16)
    else:
        data = padded
    planar = fmt.endswith("p")
    packets = []
    for start in range(0, len(data), frame_size):
        chunk = data[start : start + frame_size]
        if info.channels == 1:
            arr = chunk[None, :]
        elif planar:
            arr = np.stack([chunk] * info.channels)
        else:
            arr = np.repeat(chunk, info.channels)[None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout=layout)
        frame.sample_rate = info.sample_rate
        frame.pts = start
        frame.time_base = enc.time_base
        packets.extend(enc.encode(frame))
    packets.extend(enc.encode(None))

    dec = av.CodecContext.create(info.decoder, "r")
    dec.sample_rate = info.sample_rate
    dec.layout = layout
    if enc.extradata is not None:
        dec.extradata = enc.extradata
    dec.thread_count = 1
    chunks: list[np.ndarray] = []
    out_rate = info.sample_rate
    for packet in [*packets, None]:
        for frame in dec.decode(packet):
            arr = _to_float(frame.to_ndarray())
            channels = len(frame.layout.channels)
            if frame.format.is_planar:
                mono = arr.reshape(channels, -1).mean(axis=0)
            else:
                mono = arr.reshape(-1, channels).mean(axis=1)
            chunks.append(mono)
            out_rate = frame.sample_rate
    if not chunks:
        return np.zeros(0, dtype=np.float32), out_rate
    return np.concatenate(chunks).astype(np.float32), out_rate


def _raw_roundtrip(x: np.ndarray, sr: int, codec: str, bit_rate: int | None, fast: bool) -> np.ndarray:
    """Resample -> encode -> decode -> resample, *without* delay compensation; output at ``sr``, any length.

    The codec-rate signal is scaled into [-1, 1] for the encoder and scaled back after decoding."""
    info = codec_info(codec)
    pcm = resample(x, sr, info.sample_rate)
    # Scaled into [-1, 1] *after* resampling: band-limiting a full-scale input (e.g. a clipped
    # recording) can overshoot its peak by tens of percent, which integer encoders would clip.
    peak = float(np.max(np.abs(pcm))) if len(pcm) else 0.0
    scale = peak / 0.99 if peak > 0.99 else 1.0
    tail = np.zeros(int(_TAIL_SECONDS * info.sample_rate), dtype=np.float32)
    pcm = np.concatenate([pcm / np.float32(scale), tail])
    decoded, out_rate = _encode_decode(pcm, codec, bit_rate, fast)
    return resample(decoded, out_rate, sr) * np.float32(scale)


def calibration_signal(sr: int, seconds: float = 1.0) -> np.ndarray:
    """A fixed speech-like test signal: a glottal pulse train with gliding pitch through three
    formant resonators, syllable-rate amplitude modulation and a noise burst. Broadband and
    non-periodic at the scale of codec delays, so its autocorrelation has a single sharp peak
    that even parametric low-rate codecs (AMR, Opus/SILK) preserve. (N,) float32, peak 0.5.
    """
    rng = np.random.default_rng(20220322)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    f0 = 110.0 + 80.0 * t / seconds + 8.0 * np.sin(2 * np.pi * 3.0 * t)
    phase = np.cumsum(f0 / sr)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per pitch period
    src = pulses + 0.02 * rng.standard_normal(n)
    y = np.zeros(n)
    for fc, bw in ((600.0, 80.0), (1400.0, 120.0), (2600.0, 200.0)):
        if fc < sr / 2:
            r = np.exp(-np.pi * bw / sr)
            a = [1.0, -2.0 * r * np.cos(2 * np.pi * fc / sr), r * r]
            y += signal.lfilter([1.0 - r], a, src)
    if not np.any(y):
        # no formant lies below Nyquist (sr <= 1200 Hz): before, the signal was 0 / 0 = NaN, which libmp3lame met
        # with a failed assertion that killed the whole process; the broadband source alone still has one sharp peak
        y = src
    env = 0.55 - 0.45 * np.cos(2 * np.pi * 4.0 * t)
    burst = (t > 0.62 * seconds) & (t < 0.7 * seconds)
    y = y * env + burst * 0.3 * rng.standard_normal(n) * np.std(y)
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def estimate_lag(y: np.ndarray, x: np.ndarray, max_lag: int) -> int:
    """The lag ``d`` in ``[-max_lag, max_lag]`` maximising ``sum y[n + d] x[n]`` (``y`` delayed by ``d``)."""
    cc = signal.correlate(y.astype(np.float64), x.astype(np.float64), mode="full", method="fft")
    lags = signal.correlation_lags(len(y), len(x), mode="full")
    keep = np.abs(lags) <= max_lag
    return int(lags[keep][np.argmax(cc[keep])])


# Room for every (codec, whole kb/s, fast) of a few sample rates (682 bit rates per rate and fast setting): at 256,
# a recipe drawing mp3 over 8-160 and opus over 6-256 kb/s (404 keys) evicted entries it kept needing, so that under
# uniform draws some 1 - 256/404 = 37 % of its round trips measured the delay again (a second, 1 s round trip each).
# An entry is one int.
@lru_cache(maxsize=8192)
def codec_delay(codec: str, sr: int, bit_rate: int | None, fast: bool = False) -> int:
    """Delay (in samples at ``sr``) of the uncompensated round trip, measured on :func:`calibration_signal`."""
    ref = calibration_signal(sr)
    out = _raw_roundtrip(ref, sr, codec, bit_rate, fast)
    return estimate_lag(out, ref, int(_MAX_DELAY_SECONDS * sr))


def drawable_bit_rates(codec: str, bitrate_kbps: Sequence[float] | None) -> list[int | None]:
    """Every encoder bit rate (b/s, as :func:`resolve_bitrate` gives it) that a uniform draw in ``bitrate_kbps``
    can resolve to: the whole kb/s between its rounded ends, or the AMR modes between the modes nearest them;
    the codec's default (None for a fixed-rate codec) when no range is given."""
    if bitrate_kbps is None:
        return [resolve_bitrate(codec, None)]
    low, high = (int(resolve_bitrate(codec, v) or 0) for v in bitrate_kbps)  # a fixed-rate codec refuses a range
    modes = codec_info(codec).modes_kbps
    # resolve_bitrate is monotonic: a draw's rate (whole kb/s, or nearest mode) lies between those of the two ends
    candidates = sorted(int(round(m * 1000)) for m in modes) if modes else range(low, high + 1, 1000)
    return [r for r in candidates if low <= r <= high]


def prepare_codec_delays(codec: str, sr: int, bitrate_kbps: Sequence[float] | None, fast: bool) -> None:
    """Measure (and cache in this process) :func:`codec_delay` for every bit rate a draw in ``bitrate_kbps`` can
    give, as :func:`codec_roundtrip` looks them up. A DataLoader's workers are forked anew every epoch from a
    process that never augments: each measured the delays again (a 1 s round trip per bit rate drawn; ~200 per
    epoch of the bundled recipe: a third more CPU time augmenting) unless the parent measured them first."""
    for bit_rate in drawable_bit_rates(codec, bitrate_kbps):
        codec_delay(codec, int(sr), bit_rate, fast)  # positional, as codec_roundtrip calls it: one cache key


def codec_roundtrip(
    x: np.ndarray, sr: int, codec: str, bitrate_kbps: float | None = None, fast: bool = False
) -> np.ndarray:
    """Encode and decode ``x`` with ``codec``; time-aligned, same length and rate. (T,) -> (T,) float32.

    ``fast`` uses a cheaper encoder search where the codec has one (mp3 ``-q 7``, aac's fast
    coder, opus complexity 5): 3-6x faster, same bitstream format, slightly more coding noise.
    The signal is scaled into [-1, 1] for the encoder (integer-PCM encoders would clip) and
    scaled back afterwards, so the codec adds coding noise but no clipping of its own.
    """
    bit_rate = resolve_bitrate(codec, bitrate_kbps)
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():  # before: libmp3lame aborted the process on a NaN; s16 encoders coded it as noise
        raise ValueError(
            f"codec_roundtrip got {int(np.count_nonzero(~np.isfinite(x)))} non-finite (NaN or inf) samples"
        )
    out = _raw_roundtrip(x, sr, codec, bit_rate, fast)
    delay = codec_delay(codec, int(sr), bit_rate, fast)
    if delay >= 0:
        out = out[delay:]
    else:
        out = np.concatenate([np.zeros(-delay, dtype=np.float32), out])
    return fit_length(out, len(x))


def check_bitrate(key: str, codec: str, kbps: float | None) -> None:
    """:func:`resolve_bitrate`, whose refusal names the config key that asked for the rate: before, a rate outside
    the codec's range was refused as ``data.augment[0]: codec 'mp3': bit rate 200.0 kb/s outside [8.0, 160.0]``,
    not saying which setting to change."""
    try:
        resolve_bitrate(codec, kbps)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


@dataclass
class CodecConfig:
    """codec: which codec; bitrate_kbps: (low, high) bit-rate range in kb/s, None = the codec's default
    (fixed-rate codecs g722, mulaw, alaw and vorbis_native take none); fast: cheaper encoder search
    (mp3, aac, opus; for training throughput); p: probability."""

    codec: CodecName = "mp3"
    bitrate_kbps: Range | None = None
    fast: bool = False
    p: float = 1.0

    def __post_init__(self) -> None:
        if self.bitrate_kbps is not None:
            check_range("bitrate_kbps", self.bitrate_kbps)
            for v in self.bitrate_kbps:
                check_bitrate("bitrate_kbps", self.codec, v)
        check_probability(self.p)


class Codec(Augmentation):
    """A lossy codec round trip at a bit rate drawn from the configured range."""

    cfg: CodecConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        kbps = None if self.cfg.bitrate_kbps is None else uniform(rng, self.cfg.bitrate_kbps)
        return codec_roundtrip(x, sr, self.cfg.codec, bitrate_kbps=kbps, fast=self.cfg.fast)

    def prepare(self, sr: int) -> None:
        prepare_codec_delays(self.cfg.codec, sr, self.cfg.bitrate_kbps, self.cfg.fast)


@AUGMENTATIONS.register("codec", config=CodecConfig)
def build_codec(cfg: CodecConfig, **_: object) -> Codec:
    """Lossy codec round trip, time-aligned: mp3, aac, opus, vorbis, vorbis_native, amrnb, g722, mulaw, alaw."""
    check_codec_available(cfg.codec)
    return Codec(cfg)
