"""Edge cases of audio loading, tables, samplers and codecs: NaN or inf limits, sparse columns, tiny epochs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from sddkit.audio import io as audio_io
from sddkit.audio.io import load_audio, validate_waveform
from sddkit.augment.codecs import codec_roundtrip
from sddkit.data.samplers import GroupBalancedSampler
from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError

SR = 16000


# --- audio.io: NaN bounds were accepted and silently disabled the checks ------------------


def _tone(tmp_path, seconds: float = 1.0):
    path = tmp_path / "tone.wav"
    t = np.arange(int(SR * seconds)) / SR
    sf.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), SR)
    return path


@pytest.mark.parametrize("kwargs", [{"max_duration": math.nan}, {"min_duration": math.nan}])
def test_nan_duration_bounds_are_refused(tmp_path, kwargs):
    path = _tone(tmp_path)
    with pytest.raises(ConfigError):
        load_audio(path, **kwargs)
    with pytest.raises(ConfigError):
        validate_waveform(np.full(SR, 0.1, dtype=np.float32), SR, **kwargs)


def test_infinite_max_duration_means_no_limit_in_soundfile_decoder(tmp_path, monkeypatch):
    """max_duration=inf made the soundfile decoder fail (int(inf)); only the FFmpeg fallback saved it."""
    path = _tone(tmp_path)

    def no_pyav(*args, **kwargs):
        raise RuntimeError("pyav disabled for this test")

    monkeypatch.setattr(audio_io, "_decode_pyav", no_pyav)
    y = load_audio(path, max_duration=math.inf)
    assert y.shape == (SR,)


# --- table: NaN in columns present in only some concatenated tables ------------------------


def test_concat_fills_missing_extra_columns_with_empty_strings():
    a = UtteranceTable.from_records([{"utt_id": f"a{i}", "label": "spoof", "pair_id": f"p{i}"} for i in range(4)])
    b = UtteranceTable.from_records([{"utt_id": f"b{i}", "label": "bonafide"} for i in range(40)])
    both = UtteranceTable.concat([a, b])
    assert list(both.column("pair_id")[4:]) == [""] * 40
    assert len(both.where(pair_id="")) == 40
    # rows without a pair_id fall back to their utt_id: they spread over the folds as in `b` alone
    folds = both.group_folds(["pair_id"], 5)
    np.testing.assert_array_equal(folds[4:], b.group_folds([], 5))
    assert len(set(folds[4:].tolist())) > 1


# --- samplers: DDP padding when the epoch is shorter than the world ------------------------


@pytest.mark.parametrize("num_samples, world_size", [(1, 3), (2, 5), (3, 8)])
def test_every_rank_gets_len_items_even_for_a_tiny_epoch(num_samples, world_size):
    for rank in range(world_size):
        s = GroupBalancedSampler(["a", "b", "c"], num_samples=num_samples, rank=rank, world_size=world_size)
        assert len(list(s)) == len(s) == 1


# --- codecs: resampling overshoot clipped by integer-PCM encoders ---------------------------


@pytest.mark.parametrize("codec", ["mulaw", "alaw"])
def test_full_scale_input_is_not_clipped_by_8k_codecs(codec):
    """A hard-clipped (full-scale square) input overshoots ~28% once band-limited to 8 kHz; the
    s16 encoder input must be scaled so that this overshoot is not clipped."""
    t = np.arange(SR) / SR
    x = np.sign(np.sin(2 * np.pi * 1000 * t + 0.1)).astype(np.float32)  # peak 1.0
    y = codec_roundtrip(x, SR, codec)
    quiet = 4.0 * codec_roundtrip(x / 4.0, SR, codec)  # far from full scale: cannot clip
    assert abs(np.max(np.abs(y)) - np.max(np.abs(quiet))) < 0.05
    assert np.sqrt(np.mean((y - quiet) ** 2)) < 0.02


def test_reader_columns_missing_in_some_rows_are_empty_not_nan(tmp_path):
    """build_table's NaN -> '' fill checked dtype == object, which pandas 3's str dtype is not."""
    from sddkit.data.protocols import read_protocol

    for model in ("modelA", "modelB"):
        (tmp_path / "fake" / "de" / model).mkdir(parents=True)
        sf.write(tmp_path / "fake" / "de" / model / "x.wav", np.zeros(160), SR)
    (tmp_path / "fake" / "de" / "modelA" / "meta.csv").write_text(
        "path|original_file|language|is_original_language|duration|training_data|model_name|architecture|transcript\n"
        "./fake/de/modelA/x.wav|de_DE/by_book/female/eva/b/wavs/a.wav|de|True|0.01|thorsten|modelA|vits|hallo\n"
    )
    table = read_protocol(tmp_path, "mlaad")  # modelB has no meta.csv: listed from its files
    df = table.df.set_index("utt_id")
    assert df.loc["fake/de/modelB/x", "architecture"] == ""
    assert df.loc["fake/de/modelB/x", "original_file"] == ""
    assert len(table.where(architecture="")) == 1
