from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from sddkit.audio import center_crop, fixed_windows, load_audio, random_crop, repeat_pad, window_starts
from sddkit.errors import EmptyAudioError


def test_repeat_pad_tiles_short_signal():
    np.testing.assert_array_equal(repeat_pad(np.array([1, 2, 3]), 7), [1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(repeat_pad(np.array([5.0]), 3), [5.0, 5.0, 5.0])
    np.testing.assert_array_equal(repeat_pad(np.arange(10), 4), [0, 1, 2, 3])
    batch = repeat_pad(np.array([[1, 2], [3, 4]]), 5)
    np.testing.assert_array_equal(batch, [[1, 2, 1, 2, 1], [3, 4, 3, 4, 3]])
    t = repeat_pad(torch.tensor([1.0, 2.0, 3.0]), 5)
    assert isinstance(t, torch.Tensor) and t.tolist() == [1.0, 2.0, 3.0, 1.0, 2.0]
    with pytest.raises(EmptyAudioError):
        repeat_pad(np.zeros(0), 4)
    with pytest.raises(ValueError, match="length must be a positive integer, got 0"):
        repeat_pad(np.ones(3), 0)


def test_repeat_pad_exact_length_file_unchanged(tmp_path):
    """64,600 samples (AASIST's input length) in, the same 64,600 samples out."""
    rng = np.random.default_rng(1)
    pcm = rng.integers(-20000, 20000, size=64600).astype(np.int16)
    path = tmp_path / "exact.wav"
    sf.write(str(path), pcm, 16000, subtype="PCM_16")
    x = load_audio(path)
    assert x.shape == (64600,)
    out = repeat_pad(x, 64600)
    assert out is x
    np.testing.assert_array_equal(out, pcm / 32768.0)
    longer = repeat_pad(np.concatenate([x, x[:10]]), 64600)
    np.testing.assert_array_equal(longer, x)


def test_random_crop_deterministic_and_contiguous():
    x = np.arange(1000)
    a = [random_crop(x, 100, np.random.default_rng(7)) for _ in range(3)]
    assert all(np.array_equal(a[0], other) for other in a[1:])
    assert a[0].shape == (100,) and np.all(np.diff(a[0]) == 1)  # one contiguous window
    rng1, rng2 = np.random.default_rng(123), np.random.default_rng(123)
    seq1 = [int(random_crop(x, 100, rng1)[0]) for _ in range(20)]
    seq2 = [int(random_crop(x, 100, rng2)[0]) for _ in range(20)]
    assert seq1 == seq2 and len(set(seq1)) > 1
    t = random_crop(torch.arange(1000), 100, np.random.default_rng(7))
    assert t.tolist() == a[0].tolist()


def test_random_crop_covers_every_start_and_pads_short():
    x = np.arange(12)
    rng = np.random.default_rng(0)
    starts = {int(random_crop(x, 10, rng)[0]) for _ in range(200)}
    assert starts == {0, 1, 2}
    np.testing.assert_array_equal(random_crop(np.array([1, 2]), 5, rng), [1, 2, 1, 2, 1])


def test_center_crop():
    np.testing.assert_array_equal(center_crop(np.arange(10), 4), [3, 4, 5, 6])
    np.testing.assert_array_equal(center_crop(np.arange(11), 4), [3, 4, 5, 6])
    np.testing.assert_array_equal(center_crop(np.arange(3), 5), [0, 1, 2, 0, 1])
    assert center_crop(torch.zeros(2, 10), 4).shape == (2, 4)


def test_window_starts_hand_values():
    np.testing.assert_array_equal(window_starts(10, 4, 3), [0, 3, 6])
    np.testing.assert_array_equal(window_starts(11, 4, 3), [0, 3, 6, 7])
    np.testing.assert_array_equal(window_starts(4, 4, 2), [0])
    np.testing.assert_array_equal(window_starts(3, 4, 2), [0])
    assert window_starts(11, 4, 3).dtype == np.int64
    with pytest.raises(ValueError, match=r"hop must be in \[1, length=4\].*got 5"):
        window_starts(10, 4, 5)  # a hop larger than the window would leave gaps
    with pytest.raises(ValueError, match=r"hop must be in \[1, length=4\].*got 0"):
        window_starts(10, 4, 0)


@pytest.mark.parametrize("length,hop", [(8, 3), (8, 8), (5, 1)])
def test_fixed_windows_cover_whole_file(length, hop):
    for n in range(length + 1, 60):
        x = np.arange(n)
        wins = fixed_windows(x, length, hop)
        starts = window_starts(n, length, hop)
        assert wins.shape == (len(starts), length)
        for s, w in zip(starts, wins):
            np.testing.assert_array_equal(w, x[s : s + length])
        covered = np.zeros(n, bool)
        for s in starts:
            covered[s : s + length] = True
        assert covered.all()
        assert starts[0] == 0 and starts[-1] + length == n
        assert np.all(np.diff(starts) <= hop) and np.all(np.diff(starts) > 0)


def test_fixed_windows_short_and_torch():
    out = fixed_windows(np.array([1.0, 2.0, 3.0]), 5, 2)
    np.testing.assert_array_equal(out, [[1, 2, 3, 1, 2]])
    x = np.random.default_rng(0).standard_normal(64600 * 2 + 123).astype(np.float32)
    np_w = fixed_windows(x, 64600, 32300)
    t_w = fixed_windows(torch.from_numpy(x), 64600, 32300)
    # 129,323 samples: starts 0, 32300, 64600 and one aligned to the end, 129323 - 64600
    np.testing.assert_array_equal(window_starts(len(x), 64600, 32300), [0, 32300, 64600, 64723])
    assert isinstance(t_w, torch.Tensor) and t_w.shape == np_w.shape == (4, 64600)
    np.testing.assert_array_equal(t_w.numpy(), np_w)
    np.testing.assert_array_equal(np_w[-1], x[-64600:])
    with pytest.raises(ValueError, match=r"1-D signal, got shape \(2, 10\)"):
        fixed_windows(np.zeros((2, 10)), 4, 2)
