"""Every registered augmentation honours the contract; composition, seeding and configs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from sddkit.augment import AUGMENTATIONS
from sddkit.augment.base import item_rng
from sddkit.augment.pipeline import AugmentationPipeline, Compose, build_augmentation
from sddkit.errors import ConfigError

SR = 16000


def speechlike(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A gliding harmonic tone with syllable-rate modulation plus a little noise, peak ~0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    f0 = 120 + 60 * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 25) if k * 180 < SR / 2)
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t)) + 0.05 * rng.standard_normal(len(t))
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A noise folder (one long and one short file) and an RIR folder, written at other sample rates."""
    root = tmp_path_factory.mktemp("aug")
    rng = np.random.default_rng(0)
    noise_dir, rir_dir = root / "noise", root / "rirs"
    (noise_dir / "sub").mkdir(parents=True)
    rir_dir.mkdir()
    sf.write(noise_dir / "long.wav", 0.1 * rng.standard_normal(3 * 22050), 22050)
    sf.write(noise_dir / "sub" / "short.flac", 0.1 * rng.standard_normal(2000), 16000)
    sf.write(noise_dir / "ignored.txt", np.zeros(10), 16000, format="WAV")
    t = np.arange(4000) / 8000
    rir = np.r_[np.zeros(50), rng.standard_normal(4000) * np.exp(-t / 0.05)]
    rir[50] = 3.0  # direct path after 50 samples of pre-delay
    sf.write(rir_dir / "room.wav", np.stack([rir, 0.5 * rir], axis=1), 8000)
    hall = np.r_[1.0, 0.3 * rng.standard_normal(8000) * np.exp(-np.arange(8000) / 3000)]
    sf.write(rir_dir / "hall.flac", hall, 16000)
    return noise_dir, rir_dir


def waveform_specs(folders) -> dict[str, dict]:
    """One spec per registered waveform augmentation (defaults unless a parameter is required)."""
    noise_dir, rir_dir = folders
    return {
        "band_filter": {"name": "band_filter"},
        "car_cabin": {"name": "car_cabin"},
        "clean": {"name": "clean"},
        "clipping": {"name": "clipping"},
        "codec": {"name": "codec", "codec": "opus", "bitrate_kbps": [12, 24]},
        "compose": {"name": "compose", "augmentations": [{"name": "gain"}, {"name": "noise"}]},
        "gain": {"name": "gain"},
        "launder_chain": {"name": "launder_chain"},
        "noise": {"name": "noise"},
        "noise_files": {"name": "noise_files", "root": str(noise_dir)},
        "one_of": {"name": "one_of", "choices": [{"name": "noise"}, {"name": "reverb"}]},
        "pitch_shift": {"name": "pitch_shift"},
        "rawboost": {"name": "rawboost"},
        "rerecord": {"name": "rerecord"},
        "resample": {"name": "resample"},
        "reverb": {"name": "reverb"},
        "rir_files": {"name": "rir_files", "root": str(rir_dir)},
        "time_stretch": {"name": "time_stretch"},
    }


FEATURE_DOMAIN = {"spec_augment"}
DETERMINISTIC = {"clean"}  # no random parameter at all


def test_specs_cover_the_registry(folders):
    assert set(waveform_specs(folders)) | FEATURE_DOMAIN == set(AUGMENTATIONS.names())


@pytest.mark.parametrize("name", sorted(set(AUGMENTATIONS.names()) - FEATURE_DOMAIN))
def test_contract(name, folders):
    # feature-domain augmentations (SpecAugment) are tested in test_augment_signal.py
    aug = build_augmentation(waveform_specs(folders)[name])
    x = speechlike(0.75)
    x_before = x.copy()
    y = aug(x, SR, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all()
    np.testing.assert_array_equal(x, x_before)  # the input is never modified in place
    np.testing.assert_array_equal(y, aug(x, SR, np.random.default_rng(1)))
    if name not in DETERMINISTIC:
        others = [aug(x, SR, np.random.default_rng(s)) for s in (2, 3)]
        assert any(not np.array_equal(y, o) for o in others)
    # float64, short and silent inputs still honour the contract
    for z in (x.astype(np.float64), x[:400], np.zeros(SR // 4, dtype=np.float32)):
        out = aug(z, SR, np.random.default_rng(0))
        assert out.shape == z.shape and out.dtype == np.float32 and np.isfinite(out).all()
    # picklable (DataLoader workers) and the copy behaves identically
    clone = pickle.loads(pickle.dumps(aug))
    np.testing.assert_array_equal(clone(x, SR, np.random.default_rng(1)), y)


def test_probability_gate():
    x = speechlike(0.25)
    never = build_augmentation({"name": "noise", "p": 0.0})
    np.testing.assert_array_equal(never(x, SR, np.random.default_rng(0)), x)
    half = build_augmentation({"name": "gain", "gain_db": [6.0, 6.0], "p": 0.5})
    changed = [not np.array_equal(half(x, SR, np.random.default_rng(s)), x) for s in range(200)]
    assert 70 < sum(changed) < 130


def test_compose_and_one_of():
    x = speechlike(0.25)
    both = Compose.from_specs([{"name": "gain", "gain_db": [6, 6]}, {"name": "gain", "gain_db": [-6, -6]}])
    np.testing.assert_allclose(both(x, SR, np.random.default_rng(0)), x, rtol=1e-5, atol=1e-7)
    pick = build_augmentation(
        {
            "name": "one_of",
            "choices": [{"name": "gain", "gain_db": [20, 20]}, {"name": "gain", "gain_db": [-20, -20]}],
            "weights": [3.0, 1.0],
        }
    )
    ups = [pick(x, SR, np.random.default_rng(s)).max() > x.max() * 5 for s in range(400)]
    assert 0.65 < np.mean(ups) < 0.85  # weights 3:1


def test_pipeline_seeded_per_item():
    specs = [{"name": "rawboost", "p": 0.5, "algo": 5}, {"name": "noise", "snr_db": [5, 30]}]
    pipe = AugmentationPipeline(specs, seed=7)
    x = speechlike(0.5)
    a = pipe(x, SR, index=3, epoch=1)
    np.testing.assert_array_equal(a, pipe(x, SR, index=3, epoch=1))
    np.testing.assert_array_equal(a, pipe.apply(x, SR, item_rng(7, 3, 1)))
    assert not np.array_equal(a, pipe(x, SR, index=4, epoch=1))
    assert not np.array_equal(a, pipe(x, SR, index=3, epoch=2))
    assert not np.array_equal(a, AugmentationPipeline(specs, seed=8)(x, SR, index=3, epoch=1))
    clone = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(clone(x, SR, index=3, epoch=1), a)
    assert pipe.to_list()[0]["name"] == "rawboost" and pipe.to_list()[0]["algo"] == 5
    assert len(AugmentationPipeline([])) == 0
    np.testing.assert_array_equal(AugmentationPipeline([])(x, SR, index=0), x)


def test_compose_child_streams_are_independent():
    # Changing the first augmentation must not change what the second one draws.
    x = np.zeros(SR // 4, dtype=np.float32) + 0.1
    noise = {"name": "noise", "snr_db": [10, 10], "exponent": [0, 0]}
    a = Compose.from_specs([{"name": "gain", "gain_db": [0, 0]}, noise])(x, SR, np.random.default_rng(0))
    b = Compose.from_specs([{"name": "gain", "gain_db": [-6, 6]}, noise])(x, SR, np.random.default_rng(0))
    na, nb = a - x, b - x  # gain 0 dB vs random; the noise realisation must be identical up to scale
    assert abs(np.corrcoef(na, nb)[0, 1]) > 0.999


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"name": "noise", "snr_db": [30, 5]}, "low 30.0 is above high 5.0"),
        ({"name": "noise", "snrdb": [5, 30]}, "unknown key"),
        ({"name": "rawboost", "algo": 9}, "algo must be one of"),
        ({"name": "noise", "p": 1.5}, "p must be in"),
        ({"name": "codec", "codec": "mp3", "bitrate_kbps": [8, 400]}, "outside"),
        ({"name": "codec", "codec": "g722", "bitrate_kbps": [32, 32]}, "no bit-rate control"),
        ({"name": "codec", "codec": "wma"}, "is not one of"),
        ({"name": "one_of", "choices": []}, "at least one"),
        ({"name": "one_of", "choices": ["noise", "nope"]}, "unknown augmentation 'nope'"),
        ({"name": "band_filter", "low_hz": [100, 5000], "high_hz": [3000, 4000]}, "must lie below"),
        ({"name": "noise_files", "root": "/definitely/not/here"}, "does not exist"),
        ({"name": "spec_augment"}, "works on features"),
    ],
)
def test_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_augmentation(spec)


def test_rejects_bad_inputs():
    aug = build_augmentation("gain")
    with pytest.raises(ValueError, match="mono"):
        aug(np.zeros((2, 100), dtype=np.float32), SR, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        aug(np.zeros(100, dtype=np.float32), SR, None)
    # an int seed is accepted as a convenience
    np.testing.assert_array_equal(aug(speechlike(0.1), SR, 5), aug(speechlike(0.1), SR, np.random.default_rng(5)))


class _Items(torch.utils.data.Dataset):
    def __init__(self, pipe: AugmentationPipeline):
        self.pipe = pipe

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> np.ndarray:
        return self.pipe(speechlike(0.25, seed=index), SR, index=index)


def test_pipeline_in_dataloader_workers_matches_main_process():
    specs = [{"name": "rawboost", "algo": 4}, {"name": "codec", "codec": "mulaw", "p": 0.5}]
    pipe = AugmentationPipeline(specs, seed=3)
    loader = torch.utils.data.DataLoader(
        _Items(pipe), batch_size=2, num_workers=2, multiprocessing_context="fork", shuffle=False
    )
    got = torch.cat([b for b in loader]).numpy()
    want = np.stack([pipe(speechlike(0.25, seed=i), SR, index=i) for i in range(4)])
    np.testing.assert_array_equal(got, want)
