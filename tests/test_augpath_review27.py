"""Augmentation review (folders of noise and impulse responses, session 27): each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sddkit.augment.pipeline import build_augmentation
from sddkit.errors import SilentAudioError

SR = 16000


def _speech(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.2 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _snr_db(x: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2)))


# --- noise_files: a segment holding no noise ---------------------------------------------------------------------


def _folder_with_gap(root: Path) -> Path:
    """One noise recording of 4 s whose middle 3 s are digital silence (a MUSAN-style file with a pause)."""
    root.mkdir(parents=True, exist_ok=True)
    noise = (0.1 * np.random.default_rng(0).standard_normal(4 * SR)).astype(np.float32)
    noise[SR // 2 : SR // 2 + 3 * SR] = 0.0
    sf.write(root / "gap.wav", noise, SR)
    return root


def test_a_silent_noise_segment_is_drawn_again(tmp_path):
    root = _folder_with_gap(tmp_path / "noise")
    aug = build_augmentation({"name": "noise_files", "root": str(root), "snr_db": [10, 10]})
    x = _speech(1.0)  # a 1 s segment of the 4 s file: about a third of the draws fall inside the 3 s gap
    snrs = [_snr_db(x, aug(x, SR, np.random.default_rng(seed))) for seed in range(30)]
    # before: a draw inside the gap added nothing (SNR infinite, the item returned clean) whatever snr_db asked
    assert max(snrs) == pytest.approx(10.0, abs=0.01)
    assert min(snrs) == pytest.approx(10.0, abs=0.01)


@pytest.mark.parametrize(
    "samples",
    [
        np.zeros(SR, dtype=np.float32),  # digital silence
        np.full(SR, 0.1, dtype=np.float32),  # a constant offset: became a DC shift "at the SNR"
        np.array([0.1], dtype=np.float32),  # one sample, looped into a constant
    ],
    ids=["silence", "dc_offset", "one_sample"],
)
def test_a_folder_without_noise_is_refused_with_the_file_named(tmp_path, samples):
    root = tmp_path / "noise"
    root.mkdir()
    sf.write(root / "empty_take.wav", samples, SR)
    aug = build_augmentation({"name": "noise_files", "root": str(root), "snr_db": [5, 5]})
    x = _speech(0.5)
    # before: the item came back without noise (silence), or shifted by a constant offset, without a word
    with pytest.raises(SilentAudioError, match=r"hold no noise.*empty_take\.wav"):
        aug(x, SR, np.random.default_rng(0))


def test_a_silent_file_among_noise_files_is_skipped(tmp_path):
    root = tmp_path / "noise"
    root.mkdir()
    sf.write(root / "a_silent.wav", np.zeros(SR, dtype=np.float32), SR)
    sf.write(root / "b_noise.wav", (0.1 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32), SR)
    aug = build_augmentation({"name": "noise_files", "root": str(root), "snr_db": [0, 0]})
    x = _speech(0.5)
    for seed in range(20):  # half the first draws pick the silent file
        assert _snr_db(x, aug(x, SR, np.random.default_rng(seed))) == pytest.approx(0.0, abs=0.01)


# --- a recipe's relative folder ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["noise_files", "rir_files"])
def test_a_missing_relative_folder_says_it_is_read_against_the_working_directory(tmp_path, monkeypatch, name):
    from sddkit.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    # before: "audio folder noise/musan does not exist", nothing said that a recipe's relative root is read against
    # the working directory (not the recipe's folder), as a protocol's missing relative path says
    with pytest.raises(ConfigError, match=rf"{name}\.root: .*noise/musan does not exist.*working directory"):
        build_augmentation({"name": name, "root": "noise/musan"})
