"""Augmentation review (second look): each test failed on the code before its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_train_support import write_corpus

from sddkit.augment.pipeline import AugmentationPipeline, build_augmentation
from sddkit.config import from_dict
from sddkit.errors import ConfigError
from sddkit.training.recipe import TrainRecipe

SR = 16000


def _noise_folder(root: Path, n: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(root / f"n{i}.wav", 0.1 * np.random.default_rng(i).standard_normal(SR // 4), SR)
    return root


# --- noise / impulse-response folders: checked when built, not when a training item draws a file ------------


@pytest.mark.parametrize("name", ["noise_files", "rir_files"])
def test_unreadable_file_in_a_folder_fails_when_built(tmp_path, name):
    root = _noise_folder(tmp_path / "noise")
    (root / "n9_truncated.wav").write_bytes(b"RIFF\x00\x00")  # an interrupted download
    # before: built fine, then the run died whenever an item happened to draw that file (a random moment)
    with pytest.raises(ConfigError, match=rf"{name}\.root: .*n9_truncated\.wav.* cannot be read"):
        build_augmentation({"name": name, "root": str(root), "p": 0.1})


@pytest.mark.parametrize("name", ["noise_files", "rir_files"])
def test_empty_folder_and_empty_file_fail_when_built(tmp_path, name):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=rf"{name}\.root: no \.wav/\.flac files under"):
        build_augmentation({"name": name, "root": str(empty)})
    root = _noise_folder(tmp_path / "noise")
    sf.write(root / "header_only.wav", np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(ConfigError, match="header_only.wav.* holds no samples"):
        build_augmentation({"name": name, "root": str(root)})
    with pytest.raises(ConfigError, match="extensions must name at least one file type"):
        build_augmentation({"name": name, "root": str(root), "extensions": []})


def test_a_checked_folder_still_augments(tmp_path):
    root = _noise_folder(tmp_path / "noise")
    aug = build_augmentation({"name": "noise_files", "root": str(root), "snr_db": [10, 10]})
    x = 0.2 * np.sin(2 * np.pi * 220 * np.arange(SR // 2) / SR).astype(np.float32)
    y = aug(x, SR, np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.01)


def test_training_names_the_recipe_key_of_a_bad_noise_folder(tmp_path):
    from sddkit.training.data import build_dataset, read_tables

    path = write_corpus(tmp_path / "corpus", n=6, samples=800)
    empty = tmp_path / "noise"
    empty.mkdir()
    augment = ["gain", {"name": "noise_files", "root": str(empty), "p": 0.05}]
    cfg = from_dict(
        TrainRecipe,
        {"init_from": "x", "data": {"train": {"protocol": str(path)}, "crop_samples": 800, "augment": augment}},
    ).data
    table = read_tables(cfg.train)
    with pytest.raises(ConfigError, match=r"^data\.augment\[1\]: noise_files\.root: no \.wav/\.flac files"):
        build_dataset(table, cfg, train=True, seed=1)
    with pytest.raises(ConfigError, match=r"^augmentations\[0\]: noise_files\.root"):
        AugmentationPipeline([{"name": "noise_files", "root": str(empty)}])


# --- values that parsed but made every augmented item fail -----------------------------------------------------


@pytest.mark.parametrize("weights", [[float("inf"), 1.0], [1e308, 1e308]])
def test_one_of_refuses_weights_without_a_finite_sum(weights):
    # before: built, then the first item raised numpy's "Probabilities contain NaN" (or "do not sum to 1")
    with pytest.raises(ConfigError, match="positive, finite sum"):
        build_augmentation({"name": "one_of", "choices": ["gain", "noise"], "weights": weights})


def test_rawboost_refuses_an_infinite_impulse_gain():
    # before: built, then every item that drew impulses failed with "RawBoost produced non-finite samples"
    with pytest.raises(ConfigError, match="impulse_gain must be finite"):
        build_augmentation({"name": "rawboost", "algo": 2, "impulse_gain": float("inf")})


def test_spec_augment_in_data_augment_points_to_the_front_end_option(tmp_path):
    path = write_corpus(tmp_path / "corpus", n=6, samples=800)
    # before: "... works on features, not waveforms; apply it to features instead", without the key or the way;
    # since review 9 (data9) refused when the recipe is read, not when training builds the dataset
    with pytest.raises(ConfigError, match=r"^data\.augment\[0\]: .* set model\.frontend\.spec_augment"):
        from_dict(
            TrainRecipe,
            {"init_from": "x", "data": {"train": {"protocol": str(path)}, "augment": [{"name": "spec_augment"}]}},
        )


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3")
def test_noise_file_shorter_than_its_header_says_still_gives_noise(tmp_path):
    from sddkit.augment.files import read_segment

    path = tmp_path / "cut.mp3"
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal(10 * SR), SR, format="MP3")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 4])  # an interrupted copy: the Xing header says 10 s
    assert sf.info(str(path)).frames == 10 * SR
    # before: a segment drawn past the real end read 0 samples and looping it raised ZeroDivisionError
    for seed in range(12):
        y = read_segment(path, SR, SR, np.random.default_rng(seed))
        assert y.shape == (SR,) and 0.05 < np.sqrt(np.mean(y**2)) < 0.2
