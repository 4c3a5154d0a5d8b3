"""Review 5 of the training data path: files shared between specs or splits, stale waveform caches."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import soundfile as sf

from sddkit.data.dataset import CachedWaveforms, UtteranceDataset
from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError
from sddkit.training.data import read_train_table, warn_shared_files
from sddkit.training.recipe import DataConfig, ProtocolSpec


def _write_table(path, rows):
    """An utterance table CSV of ``(utt_id, audio path)`` rows, alternately spoof and bona fide."""
    records = [
        {"utt_id": u, "path": str(p), "label": "bonafide" if k % 2 else "spoof", "attack": "A01"}
        for k, (u, p) in enumerate(rows)
    ]
    return str(UtteranceTable.from_records(records).save(path))


def _spec(path: str) -> ProtocolSpec:
    return ProtocolSpec(protocol=path, format="utterance_table")


def test_two_train_specs_listing_one_file_under_other_ids_are_named(tmp_path, caplog):
    """Two data.train protocols that list the same audio file under different utt_ids (one reader keyed by the
    stem, another by the relative path) concatenated without a word: the file was trained on twice as often as
    every other, or towards both labels. Now a conflicting label is a ConfigError naming both specs and the file,
    and a shared file with one label a warning naming them; distinct files concatenate quietly."""
    audio = tmp_path / "audio"
    a = _write_table(tmp_path / "a.csv", [(f"a{i}", audio / f"{i}.wav") for i in range(4)])  # a2 is spoof
    b = _write_table(tmp_path / "b.csv", [(f"b{i}", audio / f"{i}.wav") for i in range(4, 6)])
    # the same file as a.csv's a2, written another way (a redundant "./" component), and spoof too
    c = _write_table(tmp_path / "c.csv", [("c0", f"{audio}/./2.wav"), ("c1", audio / "9.wav")])
    # ... or bona fide
    d = _write_table(tmp_path / "d.csv", [("d0", audio / "8.wav"), ("d1", f"{audio}/./2.wav")])
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        assert len(read_train_table(DataConfig(train=[_spec(a), _spec(b)]))) == 6
        assert not caplog.records
        assert len(read_train_table(DataConfig(train=[_spec(a), _spec(b), _spec(c)]))) == 8
    assert "data.train[2] (" in caplog.text and "c.csv) and data.train[0] (" in caplog.text
    assert "both list 1 audio file(s)" in caplog.text and "2.wav as 'c0' and 'a2'" in caplog.text
    with pytest.raises(
        ConfigError, match=r"data.train\[1\] \(.*d.csv\) and data.train\[0\] \(.*a.csv\) label 1 audio file"
    ) as err:
        read_train_table(DataConfig(train=[_spec(a), _spec(d)]))
    assert "2.wav: bona fide as 'd1', spoof as 'a2'" in str(err.value)


def test_rows_without_audio_are_not_one_shared_file(tmp_path):
    """Protocols read without an audio root have '' paths: those are not the same file."""
    a = _write_table(tmp_path / "a.csv", [("a0", ""), ("a1", "")])
    b = _write_table(tmp_path / "b.csv", [("b0", ""), ("b1", "")])
    assert len(read_train_table(DataConfig(train=[_spec(a), _spec(b)]))) == 4


def test_val_files_that_train_lists_too_are_warned(tmp_path, caplog):
    """A data.val holding training files (the same protocol as train, or an overlapping partition) was accepted
    without a word, and the validation EER then selected the checkpoint that memorised them best. It stays
    accepted (sdd cv documents it) but warns with the count and an example."""
    audio = tmp_path / "audio"
    train = UtteranceTable.from_records(
        [{"utt_id": f"t{i}", "path": str(audio / f"{i}.wav"), "label": "spoof"} for i in range(4)]
    )
    val = UtteranceTable.from_records(
        [{"utt_id": f"v{i}", "path": str(audio / f"{i}.wav"), "label": "spoof"} for i in range(3, 6)]
    )
    apart = UtteranceTable.from_records(
        [{"utt_id": f"w{i}", "path": str(audio / f"{i}.wav"), "label": "spoof"} for i in range(4, 6)]
    )
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        assert warn_shared_files(train, apart) == 0
        assert not caplog.records
        assert warn_shared_files(train, val) == 1
    assert "data.val lists 1 of its 3 audio files in data.train" in caplog.text
    assert "3.wav" in caplog.text and "'v3'" in caplog.text


def test_trainer_warns_for_val_files_in_train(tmp_path, monkeypatch, caplog):
    """The Trainer runs the check on the tables it reads."""
    from test_train import _recipe
    from test_train_support import install_tiny, write_corpus

    from sddkit.training.trainer import Trainer

    install_tiny(monkeypatch)
    monkeypatch.chdir(tmp_path)
    table = write_corpus(tmp_path / "corpus", n=9, samples=800)
    r = _recipe(
        tmp_path,
        data={
            "train": {"protocol": str(table), "format": "utterance_table"},
            "val": {"protocol": str(table), "format": "utterance_table"},
            "crop_samples": 640,
            "batch_size": 4,
        },
        trainer={"max_steps": 1},
    )
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        Trainer(r).fit()
    assert "data.val lists 9 of its 9 audio files in data.train" in caplog.text


def _corpus(tmp_path, n=3):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = tmp_path / f"{i}.wav"
        sf.write(path, 0.1 * rng.standard_normal(1600 + 100 * i).astype(np.float32), 16000)
        rows.append({"utt_id": f"u{i}", "path": str(path), "label": "bonafide" if i % 2 else "spoof"})
    return UtteranceTable.from_records(rows)


def test_a_saved_cache_is_refused_for_a_file_changed_since(tmp_path):
    """CachedWaveforms saved to .npz only remembered the path of each file: one re-encoded or replaced on disk
    since was trained on (or scored) from its old audio without a word. The cache now keeps each file's size and
    modification time and refuses a changed file, naming it."""
    table = _corpus(tmp_path)
    cache = CachedWaveforms.from_table(table)
    saved = CachedWaveforms.load(cache.save(tmp_path / "cache.npz"))
    ds = UtteranceDataset(table, crop_samples=None, train=False, waveforms=saved)  # unchanged: accepted
    np.testing.assert_array_equal(ds[1]["waveform"].numpy(), cache["u1"])

    changed = tmp_path / "1.wav"
    sf.write(changed, 0.2 * np.random.default_rng(5).standard_normal(2400).astype(np.float32), 16000)
    with pytest.raises(ValueError, match=r"'u1' decoded from .*1.wav, which has changed on disk"):
        UtteranceDataset(table, crop_samples=None, train=False, waveforms=saved)

    # same size, other content: the modification time tells
    sf.write(changed, 0.3 * np.random.default_rng(6).standard_normal(1700).astype(np.float32), 16000)
    st = os.stat(changed)
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert os.stat(changed).st_size == saved.stats[1, 0]
    with pytest.raises(ValueError, match=r"'u1' decoded from .*1.wav, which has changed on disk"):
        UtteranceDataset(table, crop_samples=None, train=False, waveforms=saved)
    fresh = CachedWaveforms.from_table(table)
    assert UtteranceDataset(table, crop_samples=None, train=False, waveforms=fresh)  # rebuilt: accepted


def test_a_cache_saved_without_stats_still_loads(tmp_path):
    """An .npz written before the stats were kept reads back and is checked by path only."""
    table = _corpus(tmp_path, n=2)
    cache = CachedWaveforms.from_table(table)
    old = CachedWaveforms(cache.ids, cache.buffer, cache.offsets, cache.sample_rate, paths=cache.paths)
    loaded = CachedWaveforms.load(old.save(tmp_path / "old.npz"))
    assert loaded.stats is None
    sf.write(tmp_path / "0.wav", np.full(1000, 0.1, np.float32) * np.sin(np.arange(1000)), 16000)
    assert len(UtteranceDataset(table, crop_samples=400, train=False, waveforms=loaded)) == 2


def test_group_folds_of_an_empty_table_are_integers():
    """An empty table (a where that keeps no row) gave float64 folds, which numpy refuses as indices."""
    table = UtteranceTable.from_records([{"utt_id": "a", "label": "spoof", "speaker": "s1"}])
    empty = table.where(speaker="nobody")
    folds = empty.group_folds(["speaker"], 3)
    assert folds.dtype == np.int64 and folds.shape == (0,)
    assert table.group_folds(["speaker"], 3).dtype == np.int64
    assert np.zeros(0)[folds].shape == (0,)


def test_one_file_listed_as_bona_fide_and_as_spoof_is_refused(tmp_path):
    """A protocol that lists one audio file twice, once bona fide and once spoof (under two utt_ids), was read
    without a word: training pushed the same audio towards both labels. The ConfigError names the spec, the file
    and both ids; a file listed twice with one label is still read (it is the sampler's business)."""
    audio = tmp_path / "audio"
    records = [
        {"utt_id": "a", "path": str(audio / "1.wav"), "label": "bonafide"},
        {"utt_id": "b", "path": str(audio / "2.wav"), "label": "spoof"},
        {"utt_id": "c", "path": str(audio / "1.wav"), "label": "spoof"},
    ]
    bad = str(UtteranceTable.from_records(records).save(tmp_path / "bad.csv"))
    with pytest.raises(
        ConfigError, match=r"data.train: .*bad.csv lists .*1.wav both as bona fide \('a'\) and as spoof"
    ):
        read_train_table(DataConfig(train=_spec(bad)))
    records[2]["label"] = "bonafide"
    same = str(UtteranceTable.from_records(records).save(tmp_path / "same.csv"))
    assert len(read_train_table(DataConfig(train=_spec(same)))) == 3
