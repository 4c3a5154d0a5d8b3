"""Laundering presets: chains of degradations that mimic how audio reaches a detector in the wild.

* ``rerecord`` — played through a loudspeaker (band-pass + soft saturation), across a room
  (reverb), into a microphone (high/low roll-off + a presence peak) that adds self-noise.
* ``car_cabin`` — a short, damped cabin reverb and low-frequency heavy car noise: brown
  road/wind rumble below a few hundred Hz plus engine harmonics.
* ``launder_chain`` — reverb, then additive noise, then a lossy codec.

Each preset draws all of its parameters from its config ranges with the one ``rng``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sddkit.augment import AUGMENTATIONS
from sddkit.augment.base import (
    DRR_DB_LIMITS,
    LEVEL_DB_LIMITS,
    SNR_DB_LIMITS,
    Augmentation,
    Range,
    check_probability,
    check_range,
    power,
    uniform,
)
from sddkit.augment.codecs import (
    CODECS,
    CodecName,
    check_bitrate,
    check_codec_available,
    codec_roundtrip,
    prepare_codec_delays,
    resolve_bitrate,
)
from sddkit.augment.dsp import (
    COLORED_NOISE_LOW_HZ,
    add_at_snr,
    band_pass,
    colored_noise,
    match_rms,
    peaking_eq,
    soft_clip,
)
from sddkit.augment.reverb import MAX_RT60_SECONDS, noise_tail_rir, reverberate
from sddkit.config import did_you_mean


def loudspeaker(x: np.ndarray, sr: int, low_hz: float, high_hz: float, drive: float) -> np.ndarray:
    """Small-loudspeaker playback: 2nd-order band-pass and tanh saturation (``drive`` relative to
    the peak; 0 = linear), at the input's RMS level. (T,) -> (T,)."""
    y = band_pass(x, sr, low_hz, high_hz, order=2)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0.0 and drive > 0.0:
        y = soft_clip(y / peak, drive) * peak
    return match_rms(y, x)


def microphone(x: np.ndarray, sr: int, low_hz: float, high_hz: float, presence_hz: float, presence_db: float):
    """Microphone response: 1st-order high/low roll-offs and a presence peak (q = 1). (T,) -> (T,)."""
    y = band_pass(x, sr, low_hz, high_hz, order=1)
    return peaking_eq(y, sr, presence_hz, presence_db, q=1.0)


@dataclass
class RerecordConfig:
    """Re-recording (replay) chain. speaker_low_hz / speaker_high_hz: loudspeaker pass band edges;
    speaker_drive: tanh saturation drive (0 = linear); rt60, drr_db: room reverb (noise-tail RIR);
    mic_low_hz / mic_high_hz: microphone roll-off corners; presence_hz / presence_db: microphone
    presence peak; noise_snr_db: microphone self-noise SNR; noise_exponent: its 1/f^a slope; p."""

    speaker_low_hz: Range = (100.0, 300.0)
    speaker_high_hz: Range = (4000.0, 7500.0)
    speaker_drive: Range = (0.5, 3.0)
    rt60: Range = (0.2, 0.7)
    drr_db: Range = (0.0, 12.0)
    mic_low_hz: Range = (40.0, 120.0)
    mic_high_hz: Range = (6000.0, 7800.0)
    presence_hz: Range = (2000.0, 5000.0)
    presence_db: Range = (0.0, 6.0)
    noise_snr_db: Range = (25.0, 45.0)
    noise_exponent: Range = (0.0, 1.0)
    p: float = 1.0

    def __post_init__(self) -> None:
        for name in (
            "speaker_low_hz",
            "speaker_high_hz",
            "speaker_drive",
            "mic_low_hz",
            "mic_high_hz",
            "presence_hz",
        ):
            check_range(name, getattr(self, name), lo=0.0)
        check_range("rt60", self.rt60, lo=0.01, hi=MAX_RT60_SECONDS)
        check_range("drr_db", self.drr_db, *DRR_DB_LIMITS)
        check_range("presence_db", self.presence_db, lo=-24.0, hi=24.0)
        check_range("noise_snr_db", self.noise_snr_db, *SNR_DB_LIMITS)
        check_range("noise_exponent", self.noise_exponent, lo=-2.0, hi=3.0)
        check_probability(self.p)
        # checked now, as band_filter does: ranges that overlap drew a crossed band now and then, which stopped a
        # training run mid-epoch ("low edge must lie below the high edge")
        for band in ("speaker", "mic"):
            low, high = getattr(self, f"{band}_low_hz"), getattr(self, f"{band}_high_hz")
            if low[1] >= high[0]:
                raise ValueError(
                    f"{band}_low_hz {list(low)} and {band}_high_hz {list(high)} overlap: every low edge must lie below "
                    "every high edge"
                )


class Rerecord(Augmentation):
    """Loudspeaker -> room -> microphone (+ self-noise)."""

    cfg: RerecordConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        speaker = (uniform(rng, c.speaker_low_hz), uniform(rng, c.speaker_high_hz), uniform(rng, c.speaker_drive))
        y = loudspeaker(x, sr, *speaker)
        y = reverberate(y, noise_tail_rir(sr, uniform(rng, c.rt60), uniform(rng, c.drr_db), rng))
        mic = (uniform(rng, c.mic_low_hz), uniform(rng, c.mic_high_hz), uniform(rng, c.presence_hz))
        y = match_rms(microphone(y, sr, mic[0], mic[1], mic[2], uniform(rng, c.presence_db)), x)
        snr, a = uniform(rng, c.noise_snr_db), uniform(rng, c.noise_exponent)
        return add_at_snr(y, colored_noise(len(y), a, rng, sr, COLORED_NOISE_LOW_HZ), snr)


def car_noise(n: int, sr: int, rumble_hz: float, engine_hz: float, engine_db: float, rng: np.random.Generator):
    """Car cabin noise (n,): brown noise from 20 Hz low-passed at ``rumble_hz`` (road and wind) plus engine
    firing harmonics at ``engine_hz`` (amplitude 1/k, slow random RPM drift), the engine ``engine_db``
    relative to the rumble. Unit RMS."""
    # from 20 Hz: drawn down to the lowest FFT bin, ~80 % of the car noise (rumble and engine) lay below 20 Hz
    rumble = band_pass(colored_noise(n, 2.0, rng, sr, COLORED_NOISE_LOW_HZ), sr, 0.0, rumble_hz, order=2)
    t = np.arange(n) / sr
    drift = 1.0 + 0.03 * np.sin(2 * np.pi * (0.1 + 0.2 * rng.random()) * t + 2 * np.pi * rng.random())
    phase = 2 * np.pi * np.cumsum(engine_hz * drift) / sr
    engine = np.zeros(n)
    for k in range(1, 9):
        if k * engine_hz * 1.03 < sr / 2:
            engine += np.sin(k * phase + 2 * np.pi * rng.random()) / k
    rumble = rumble / np.sqrt(max(power(rumble), 1e-20))
    engine = engine / np.sqrt(max(power(engine), 1e-20)) * 10.0 ** (engine_db / 20.0)
    total = rumble + engine
    return (total / np.sqrt(max(power(total), 1e-20))).astype(np.float32)


@dataclass
class CarCabinConfig:
    """In-car recording. snr_db: speech-to-car-noise ratio; rumble_hz: low-pass corner of the road/wind
    rumble; engine_hz: engine firing frequency (RPM x cylinders / 120); engine_db: engine level
    relative to the rumble; rt60: short cabin reverb; drr_db: its direct-to-reverberant ratio; p."""

    snr_db: Range = (-5.0, 10.0)
    rumble_hz: Range = (150.0, 500.0)
    engine_hz: Range = (25.0, 80.0)
    engine_db: Range = (-12.0, 0.0)
    rt60: Range = (0.05, 0.15)
    drr_db: Range = (5.0, 15.0)
    p: float = 1.0

    def __post_init__(self) -> None:
        check_range("snr_db", self.snr_db, *SNR_DB_LIMITS)
        check_range("rumble_hz", self.rumble_hz, lo=20.0)
        check_range("engine_hz", self.engine_hz, lo=5.0)
        check_range("engine_db", self.engine_db, *LEVEL_DB_LIMITS)
        check_range("rt60", self.rt60, lo=0.01, hi=MAX_RT60_SECONDS)
        check_range("drr_db", self.drr_db, *DRR_DB_LIMITS)
        check_probability(self.p)


class CarCabin(Augmentation):
    """Cabin reverb + low-frequency car noise."""

    cfg: CarCabinConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        y = reverberate(x, noise_tail_rir(sr, uniform(rng, c.rt60), uniform(rng, c.drr_db), rng))
        snr = uniform(rng, c.snr_db)
        noise = car_noise(
            len(x), sr, uniform(rng, c.rumble_hz), uniform(rng, c.engine_hz), uniform(rng, c.engine_db), rng
        )
        return add_at_snr(y, noise, snr)


def _default_launder_bitrates() -> dict[str, Range]:
    return {"mp3": (16.0, 64.0), "aac": (16.0, 64.0), "opus": (8.0, 32.0), "amrnb": (4.75, 12.2)}


@dataclass
class LaunderChainConfig:
    """Reverb -> noise -> codec. rt60, drr_db: noise-tail reverb; snr_db, noise_exponent: additive
    1/f^a noise; codecs: codecs to pick from (uniformly); bitrate_kbps: bit-rate range per codec
    (codecs without bit-rate control need none), merged into the chain's defaults, so ``{mp3: [32, 32]}``
    changes mp3's range only and aac, opus and amrnb keep the chain's low-rate ranges rather than falling
    back to each codec's own default rate; fast_codec: cheaper encoder search; p: probability."""

    rt60: Range = (0.2, 0.8)
    drr_db: Range = (0.0, 10.0)
    snr_db: Range = (10.0, 30.0)
    noise_exponent: Range = (0.0, 2.0)
    codecs: list[CodecName] = field(default_factory=lambda: ["mp3", "aac", "opus", "amrnb"])
    bitrate_kbps: dict[str, Range] = field(default_factory=_default_launder_bitrates)
    fast_codec: bool = False
    p: float = 1.0

    def __post_init__(self) -> None:
        check_range("rt60", self.rt60, lo=0.01, hi=MAX_RT60_SECONDS)
        check_range("drr_db", self.drr_db, *DRR_DB_LIMITS)
        check_range("snr_db", self.snr_db, *SNR_DB_LIMITS)
        check_range("noise_exponent", self.noise_exponent, lo=-2.0, hi=3.0)
        if not self.codecs:
            raise ValueError("codecs must name at least one codec")
        for name in self.bitrate_kbps:
            if name not in CODECS:  # before: the valid names were not given
                raise ValueError(
                    f"bitrate_kbps: unknown codec {name!r}{did_you_mean([name], CODECS)}; codecs: {', '.join(CODECS)}"
                )
        self.bitrate_kbps = {**_default_launder_bitrates(), **self.bitrate_kbps}
        for name in self.codecs:
            rng_ = self.bitrate_kbps.get(name)
            if rng_ is None:
                resolve_bitrate(name, None)  # a codec with bit-rate control uses its default
                continue
            check_range(f"bitrate_kbps.{name}", rng_)
            for v in rng_:
                check_bitrate(f"bitrate_kbps.{name}", name, v)
        check_probability(self.p)


class LaunderChain(Augmentation):
    """Reverb, additive noise, then a random lossy codec."""

    cfg: LaunderChainConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        y = reverberate(x, noise_tail_rir(sr, uniform(rng, c.rt60), uniform(rng, c.drr_db), rng))
        snr, a = uniform(rng, c.snr_db), uniform(rng, c.noise_exponent)
        y = add_at_snr(y, colored_noise(len(y), a, rng, sr, COLORED_NOISE_LOW_HZ), snr)
        codec = c.codecs[int(rng.integers(len(c.codecs)))]
        rate = c.bitrate_kbps.get(codec)
        return codec_roundtrip(y, sr, codec, None if rate is None else uniform(rng, rate), fast=c.fast_codec)

    def prepare(self, sr: int) -> None:
        for codec in self.cfg.codecs:
            prepare_codec_delays(codec, sr, self.cfg.bitrate_kbps.get(codec), self.cfg.fast_codec)


@AUGMENTATIONS.register("rerecord", config=RerecordConfig)
def build_rerecord(cfg: RerecordConfig, **_: object) -> Rerecord:
    """Replay laundering: loudspeaker band-pass + saturation, room reverb, microphone response + noise."""
    return Rerecord(cfg)


@AUGMENTATIONS.register("car_cabin", config=CarCabinConfig)
def build_car_cabin(cfg: CarCabinConfig, **_: object) -> CarCabin:
    """In-car recording: short cabin reverb + low-frequency road rumble and engine harmonics."""
    return CarCabin(cfg)


@AUGMENTATIONS.register("launder_chain", config=LaunderChainConfig)
def build_launder_chain(cfg: LaunderChainConfig, **_: object) -> LaunderChain:
    """Reverb, then additive noise, then a random lossy codec."""
    for codec in cfg.codecs:
        check_codec_available(codec)
    return LaunderChain(cfg)
