"""Review 10 of the augmentations: codec delays measured before the loader's workers fork; noise and impulse-response
files holding NaN/inf named as the faulty files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sddkit.augment import codecs
from sddkit.augment.codecs import resolve_bitrate
from sddkit.augment.pipeline import AugmentationPipeline, build_augmentation
from sddkit.errors import NonFiniteAudioError

SR = 16000


@pytest.mark.parametrize(
    "codec, kbps",
    [("mp3", (16.3, 20.6)), ("opus", (6.0, 9.5)), ("amrnb", (5.0, 10.0)), ("amrnb", (4.75, 12.2)), ("aac", (95.6, 96))],
)
def test_drawable_bit_rates_are_what_draws_resolve_to(codec, kbps):
    from sddkit.augment.codecs import drawable_bit_rates

    draws = np.linspace(kbps[0], kbps[1], 20001)
    assert sorted({resolve_bitrate(codec, float(v)) for v in draws}) == drawable_bit_rates(codec, kbps)


def test_drawable_bit_rates_without_a_range_are_the_default():
    from sddkit.augment.codecs import drawable_bit_rates

    assert drawable_bit_rates("mp3", None) == [64000]
    assert drawable_bit_rates("g722", None) == [None]


def _voice(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    x = np.sin(2 * np.pi * 150 * t) + 0.3 * np.sin(2 * np.pi * 1200 * t) + 0.05 * rng.standard_normal(len(t))
    return (0.3 * x).astype(np.float32)


SPECS = [
    {
        "name": "one_of",
        "choices": [
            {"name": "codec", "codec": "opus", "bitrate_kbps": [12, 14], "fast": True},
            {"name": "codec", "codec": "amrnb", "bitrate_kbps": [4.75, 5.9]},
            {"name": "codec", "codec": "mulaw"},
        ],
    },
    {"name": "launder_chain", "codecs": ["mp3"], "bitrate_kbps": {"mp3": [16, 17]}, "fast_codec": True, "p": 0.5},
]


def test_prepared_pipeline_measures_no_codec_delay_when_augmenting():
    # DataLoader workers are forked anew each epoch from the main process, which never augments: every worker
    # measured each codec delay again (a 1 s round trip per bit rate drawn, ~200 per epoch of the bundled recipe)
    pipe = AugmentationPipeline(SPECS, seed=3)
    codecs.codec_delay.cache_clear()
    try:
        assert pipe.prepare(SR) is pipe
        measured = codecs.codec_delay.cache_info().misses
        # opus 12-14 (3), amrnb 4.75/5.15/5.9 (3), mulaw (1), the launder chain's mp3 16-17 (2)
        assert measured == 9
        outs = [pipe(_voice(0.25, i), SR, index=i) for i in range(24)]
        assert codecs.codec_delay.cache_info().misses == measured  # every delay drawn was already there
        assert len({o.tobytes() for o in outs}) == len(outs)
    finally:
        codecs.codec_delay.cache_clear()


def test_prepare_changes_no_output():
    pipe = AugmentationPipeline(SPECS, seed=3)
    x = _voice(0.25, 0)
    codecs.codec_delay.cache_clear()
    before = [pipe(x, SR, index=i) for i in range(6)]
    codecs.codec_delay.cache_clear()
    pipe.prepare(SR)
    after = [pipe(x, SR, index=i) for i in range(6)]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_training_dataset_with_loader_workers_is_prepared(tmp_path):
    from sddkit.data.table import UtteranceTable
    from sddkit.training.data import build_dataset
    from sddkit.training.recipe import DataConfig

    records = []
    for i, label in enumerate(["bonafide", "spoof"]):
        path = tmp_path / f"{i}.wav"
        sf.write(path, _voice(0.5, i), SR)
        records.append({"utt_id": str(i), "path": str(path), "label": label, "attack": label, "source": "s"})
    table = UtteranceTable.from_records(records)
    augment = [{"name": "codec", "codec": "opus", "bitrate_kbps": [20, 22], "fast": True}]
    codecs.codec_delay.cache_clear()
    try:
        build_dataset(table, DataConfig(augment=augment, crop_samples=4000, num_workers=1), train=True, seed=0)
        assert codecs.codec_delay.cache_info().currsize == 3  # 20, 21 and 22 kb/s, before any worker starts
        codecs.codec_delay.cache_clear()
        # no workers: the process that augments keeps its own cache, nothing measured ahead
        build_dataset(table, DataConfig(augment=augment, crop_samples=4000, num_workers=0), train=True, seed=0)
        assert codecs.codec_delay.cache_info().currsize == 0
    finally:
        codecs.codec_delay.cache_clear()


@pytest.mark.parametrize("seconds", [0.5, 3.0])  # shorter than the clip (read whole) and longer (a segment read)
def test_noise_file_with_nan_is_named(tmp_path, seconds):
    noise = (0.1 * np.random.default_rng(0).standard_normal(int(SR * seconds))).astype(np.float32)
    noise[::50] = np.nan  # every segment holds some
    sf.write(tmp_path / "bad.wav", noise, SR, subtype="FLOAT")
    aug = build_augmentation({"name": "noise_files", "root": str(tmp_path)})
    with pytest.raises(NonFiniteAudioError, match=r"bad\.wav.*NaN/Inf"):
        aug(_voice(1.0, 0), SR, np.random.default_rng(0))


def test_impulse_response_with_inf_is_named(tmp_path):
    rir = np.zeros(800, dtype=np.float32)
    rir[0], rir[5:] = 1.0, 0.01
    rir[50] = np.inf
    sf.write(tmp_path / "room.wav", rir, SR, subtype="FLOAT")
    aug = build_augmentation({"name": "rir_files", "root": str(tmp_path)})
    with pytest.raises(NonFiniteAudioError, match=r"room\.wav.*NaN/Inf"):
        aug(_voice(0.5, 0), SR, np.random.default_rng(0))
