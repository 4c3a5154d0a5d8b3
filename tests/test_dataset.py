"""UtteranceDataset: deterministic crops per (seed, epoch, index), eval crops, domains, caches, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

import sddkit.data.dataset as dataset_mod
from sddkit.data.dataset import CachedWaveforms, UtteranceDataset, collate_pad
from sddkit.data.table import UtteranceTable
from sddkit.errors import AudioError, AudioNotFoundError, ProtocolError

SR = 16000


def _ramp(n: int, offset: float) -> np.ndarray:
    # distinct, exactly representable sample values so crops can be located in the original
    return ((np.arange(n) % 8000) / 16384.0 + offset).astype(np.float32)


@pytest.fixture()
def corpus(tmp_path):
    lengths = {"a": 4000, "b": 600, "c": 3000, "d": 2500}
    records, signals = [], {}
    attacks = {"a": "bonafide", "b": "A01", "c": "A02", "d": "A01"}
    for i, (name, n) in enumerate(lengths.items()):
        x = _ramp(n, 0.01 * (i + 1))
        path = tmp_path / f"{name}.wav"
        sf.write(path, x, SR, subtype="FLOAT")
        signals[name] = x
        label = "bonafide" if attacks[name] == "bonafide" else "spoof"
        records.append({"utt_id": name, "path": str(path), "label": label, "attack": attacks[name], "source": "s"})
    return UtteranceTable.from_records(records), signals


def _offset_in(crop: np.ndarray, full: np.ndarray) -> int:
    n = len(crop)
    hits = [s for s in range(len(full) - n + 1) if np.array_equal(full[s : s + n], crop)]
    assert hits, "the crop is not a contiguous window of the file"
    return hits[0]


def test_eval_items_first_crop_and_repeat_pad(corpus):
    table, sig = corpus
    ds = UtteranceDataset(table, crop_samples=1000, train=False)
    item = ds[0]
    assert set(item) == {"waveform", "label", "domain", "index"}
    assert item["waveform"].dtype == torch.float32 and item["waveform"].shape == (1000,)
    np.testing.assert_array_equal(item["waveform"].numpy(), sig["a"][:1000])
    assert item["label"].dtype == torch.int64 and int(item["label"]) == 1 and int(item["index"]) == 0
    short = ds[1]["waveform"].numpy()  # 600 samples -> tiled to 1000
    np.testing.assert_array_equal(short, np.concatenate([sig["b"], sig["b"][:400]]))
    ds.set_epoch(5)  # evaluation ignores the epoch
    np.testing.assert_array_equal(ds[0]["waveform"].numpy(), sig["a"][:1000])
    assert [int(ds[i]["label"]) for i in range(4)] == [1, 0, 0, 0]


def test_train_crops_depend_only_on_seed_epoch_index(corpus):
    table, sig = corpus
    ds = UtteranceDataset(table, crop_samples=1000, train=True, seed=3)
    first = {i: ds[i]["waveform"].numpy().copy() for i in (0, 2, 3)}
    # another instance, items read in another order: identical
    other = UtteranceDataset(table, crop_samples=1000, train=True, seed=3)
    for i in (3, 0, 2):
        np.testing.assert_array_equal(other[i]["waveform"].numpy(), first[i])
    names = list(table.column("utt_id"))
    starts = [_offset_in(first[i], sig[names[i]]) for i in first]
    ds.set_epoch(1)
    moved = [not np.array_equal(ds[i]["waveform"].numpy(), first[i]) for i in first]
    assert any(moved)  # a new epoch draws new crops
    ds.set_epoch(0)  # ... and going back reproduces the old ones (resume)
    for i in first:
        np.testing.assert_array_equal(ds[i]["waveform"].numpy(), first[i])
    seeded = UtteranceDataset(table, crop_samples=1000, train=True, seed=4)
    assert any(not np.array_equal(seeded[i]["waveform"].numpy(), first[i]) for i in first)
    assert starts[0] <= 3000 and starts[1] <= 2000 and starts[2] <= 1500
    # the crop start is what the item's own generator draws
    rng = np.random.default_rng([3, 0, 0])
    start = int(rng.integers(0, len(sig["a"]) - 1000 + 1))
    np.testing.assert_array_equal(first[0], sig["a"][start : start + 1000])


def test_set_epoch_reaches_persistent_workers(corpus):
    table, _ = corpus
    ds = UtteranceDataset(table, crop_samples=500, train=True, seed=1)
    loader = DataLoader(ds, batch_size=4, num_workers=1, persistent_workers=True, shuffle=False)
    seen = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        seen.append(next(iter(loader))["waveform"])
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expected = torch.stack([ds[i]["waveform"] for i in range(4)])
        torch.testing.assert_close(seen[epoch], expected, rtol=0, atol=0)


def test_augment_gets_rng_and_length_is_restored(corpus):
    table, sig = corpus
    calls = []

    def augment(x, sr, rng):
        calls.append(sr)
        return np.concatenate([x * 0.5, np.full(7, rng.random(), dtype=np.float32)])  # longer than the crop

    ds = UtteranceDataset(table, crop_samples=800, train=True, augment=augment, seed=0)
    a1, a2 = ds[0]["waveform"], ds[0]["waveform"]
    assert a1.shape == (800,) and calls == [SR, SR]
    torch.testing.assert_close(a1, a2, rtol=0, atol=0)
    plain = UtteranceDataset(table, crop_samples=800, train=True, seed=0)[0]["waveform"]
    torch.testing.assert_close(a1, plain * 0.5, rtol=0, atol=0)
    UtteranceDataset(table, crop_samples=800, train=False, augment=augment)[0]
    assert len(calls) == 2  # no augmentation at evaluation


def test_in_place_augment_does_not_corrupt_cache(corpus):
    table, sig = corpus

    def destroy(x, sr, rng):
        x *= 0.0
        return x

    ds = UtteranceDataset(table, crop_samples=None, train=True, augment=destroy, cache=True)
    assert float(ds[0]["waveform"].abs().sum()) == 0.0
    np.testing.assert_array_equal(ds.load(0), sig["a"])


def test_domains(corpus):
    table, _ = corpus
    ds = UtteranceDataset(table, train=False)
    assert ds.domain_names == ["A01", "A02", "bonafide"]
    assert [int(ds[i]["domain"]) for i in range(4)] == [2, 0, 1, 0]
    fixed = UtteranceDataset(table, train=False, domain_to_index={"A01": 0, "bonafide": 1})
    assert fixed.domains.tolist() == [1, 0, -1, 0]  # A02 unseen -> -1
    by_source = UtteranceDataset(table, train=False, domain_column="source")
    assert by_source.domains.tolist() == [0, 0, 0, 0]
    with pytest.raises(ProtocolError, match="no column"):
        UtteranceDataset(table, train=False, domain_column="nope")
    with pytest.raises(ValueError, match="crop_samples must be a positive integer or None, got 0"):
        UtteranceDataset(table, train=False, crop_samples=0)


def test_whole_files_and_collate_pad(corpus):
    table, sig = corpus
    ds = UtteranceDataset(table, crop_samples=None, train=False)
    batch = collate_pad([ds[1], ds[0], ds[2]])
    assert batch["waveform"].shape == (3, 4000)
    assert batch["lengths"].tolist() == [600, 4000, 3000]
    assert batch["index"].tolist() == [1, 0, 2] and batch["label"].tolist() == [0, 1, 0]
    np.testing.assert_array_equal(batch["waveform"][0, :600].numpy(), sig["b"])
    assert float(batch["waveform"][0, 600:].abs().sum()) == 0.0
    loader = DataLoader(ds, batch_size=2, collate_fn=collate_pad)
    assert [b["waveform"].shape[1] for b in loader] == [4000, 3000]


def test_load_errors_name_the_file(corpus, tmp_path):
    table, _ = corpus
    df = table.df
    df.loc[2, "path"] = str(tmp_path / "gone.wav")
    df.loc[3, "path"] = ""
    broken = UtteranceTable(df)
    ds = UtteranceDataset(broken, crop_samples=100, train=True)
    with pytest.raises(AudioNotFoundError, match="gone.wav"):
        ds[2]
    with pytest.raises(ProtocolError, match="'d' has no audio path"):
        ds[3]
    with pytest.raises(IndexError):
        ds[4]
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 10)
    df.loc[2, "path"] = str(tmp_path / "junk.wav")
    with pytest.raises(AudioError, match="junk.wav"):
        UtteranceDataset(UtteranceTable(df), crop_samples=100, train=False)[2]


def test_cache_and_cached_waveforms(corpus, tmp_path, monkeypatch):
    table, sig = corpus
    calls: list[str] = []
    real = dataset_mod.load_audio

    def counting(path, **kw):
        calls.append(Path(path).name)
        return real(path, **kw)

    monkeypatch.setattr(dataset_mod, "load_audio", counting)
    ds = UtteranceDataset(table, crop_samples=500, train=True, cache=True)
    ds[0], ds[0], ds[1]
    assert calls == ["a.wav", "b.wav"]

    cached = CachedWaveforms.from_table(table, num_threads=2)
    assert len(cached) == 4 and cached.nbytes == 4 * sum(len(s) for s in sig.values())
    for name, x in sig.items():
        np.testing.assert_array_equal(cached[name], x)
    assert "a" in cached and cached.get("zzz") is None
    back = CachedWaveforms.load(cached.save(tmp_path / "cache" / "w.npz"))
    np.testing.assert_array_equal(back["c"], sig["c"])
    assert back.ids == cached.ids and back.sample_rate == SR

    def fail(path, **kw):
        raise AssertionError("must not decode")

    monkeypatch.setattr(dataset_mod, "load_audio", fail)
    from_cache = UtteranceDataset(table, crop_samples=500, train=False, waveforms=back)
    np.testing.assert_array_equal(from_cache[3]["waveform"].numpy(), sig["d"][:500])
    with pytest.raises(ValueError, match="Hz"):
        UtteranceDataset(table, train=False, waveforms=back, sample_rate=8000)


def test_cached_waveforms_are_checked_against_the_table_and_its_duration_limit(corpus, tmp_path):
    # the cache is keyed by utt_id: a table listing "a" at another file trained on the cached audio of the first
    # one, and a cached file longer than the dataset's max_duration was used although from disk it is refused
    from sddkit.errors import AudioTooLongError

    table, sig = corpus
    cached = CachedWaveforms.load(CachedWaveforms.from_table(table).save(tmp_path / "w.npz"))
    assert cached.paths == [str(p) for p in table.column("path")]
    moved = table.df
    moved.loc[0, "path"] = str(tmp_path / "elsewhere" / "a.wav")
    with pytest.raises(ValueError, match="holds 'a' decoded from .*a.wav, the table lists it at .*elsewhere"):
        UtteranceDataset(UtteranceTable(moved), train=False, waveforms=cached)
    same = table.df
    same.loc[0, "path"] = str(tmp_path / "." / "a.wav")  # the same file, spelt otherwise
    UtteranceDataset(UtteranceTable(same), train=False, waveforms=cached)
    short = UtteranceDataset(table, train=False, waveforms=cached, max_duration=0.2)  # "a" lasts 0.25 s
    with pytest.raises(AudioTooLongError, match="a.wav"):
        short.load(0)
    np.testing.assert_array_equal(short.load(1), sig["b"])
    # a cache saved before paths were kept still loads, unchecked
    legacy = tmp_path / "legacy.npz"
    np.savez(legacy, buffer=cached.buffer, offsets=cached.offsets, ids=np.array(cached.ids), sample_rate=SR)
    assert CachedWaveforms.load(legacy).paths is None
    UtteranceDataset(UtteranceTable(moved), train=False, waveforms=CachedWaveforms.load(legacy))
