"""scripts/finalize_default_model.py as a caller of `sdd calibrate`'s library steps (sddkit.scoring.calibrate): the
fit, threshold, record and writing go through the same functions; the script keeps its sddbench val partition, its
decode cache and its batched scoring."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from script_support import load_script

from sddkit.errors import ConfigError
from sddkit.scoring import calibrate as calibrate_lib
from sddkit.scoring.api import ScoringDetector, load_detector


def _val_set(tmp_path: Path, model: Path, order=(0, 0, 1, 0, 1, 1)) -> tuple[Path, list[np.ndarray], np.ndarray]:
    """An sddbench-like manifest of six 150 ms noise files in ``val`` (and one in ``train``, which must not count),
    labelled by the model's own raw-score order (``order``, lowest first), so that the fit has a positive slope."""
    rng = np.random.default_rng(0)
    (tmp_path / "audio").mkdir()
    waves = [((0.05 + 0.02 * i) * rng.standard_normal(2400)).astype(np.float32) for i in range(6)]
    raw = np.array([r.raw_score for r in load_detector(model).score_many(waves)])
    labels = np.empty(6, dtype=int)
    labels[np.argsort(raw)] = order
    rows = ["path,label,partition,system,attack_type,source,speaker,duration_s"]
    for i, (x, y) in enumerate(zip(waves, labels)):
        sf.write(tmp_path / "audio" / f"f{i}.wav", x, 16000)
        rows.append(f"audio/f{i}.wav,{'bonafide' if y else 'spoof'},val,{'-' if y else 'A01'},tts,src,spk{i},0.15")
    sf.write(tmp_path / "audio" / "t.wav", waves[0], 16000)
    rows.append("audio/t.wav,bonafide,train,-,tts,src,spk9,0.15")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, waves, labels


def _finalize(model: Path, out: Path, manifest: Path) -> int:
    args = [str(model), "--out", str(out), "--manifest", str(manifest), "--threads", "1"]
    return load_script("scripts/finalize_default_model.py").main(args)


def test_finalize_fits_and_writes_through_the_library_steps_of_sdd_calibrate(tmp_path, tiny_stats, monkeypatch):
    from sddkit.scoring.calibrate import calibrate_on_protocol, calibrated_config

    model = tiny_stats(tmp_path / "model")
    manifest, _, labels = _val_set(tmp_path, model)
    calls = []
    for name in ("calibrated_config", "store_calibrated", "writable_target"):
        real = getattr(calibrate_lib, name)
        monkeypatch.setattr(
            calibrate_lib, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k)
        )
    out = tmp_path / "out"
    assert _finalize(model, out, manifest) == 0
    assert calls == ["writable_target", "calibrated_config", "store_calibrated"]

    written = json.loads((out / "config.json").read_text())
    # the script's val scores are batched (score_many); from them the library fits what the script installed
    decoded = [sf.read(tmp_path / "audio" / f"f{i}.wav", dtype="float32")[0] for i in range(6)]  # 16-bit PCM
    raw = np.array([r.raw_score for r in load_detector(model).score_many(decoded)])
    expected, inference, point = calibrated_config(model, raw, labels, threshold="eer", prior=0.5)
    assert written["inference"] == expected["inference"]
    assert {k: v for k, v in written.items() if k != "metadata"} == {
        k: v for k, v in expected.items() if k != "metadata"
    }
    record = written["metadata"]["val_calibrated"]
    assert (record["n_bonafide"], record["n_spoof"]) == (3, 3)  # val only: the train file does not count
    assert record["eer_whole_files"] == point.eer
    # sdd calibrate on the same partition fits the same calibration and threshold rule (it scores one file at a time,
    # so its figures may differ in the last digits only)
    report = calibrate_on_protocol(model, manifest, partitions=["val"], out=tmp_path / "by_sdd_calibrate")
    assert report["calibration"] == pytest.approx({"a": inference.calibration.a, "b": inference.calibration.b})
    assert report["threshold"] == pytest.approx(inference.threshold) and report["eer"] == pytest.approx(point.eer)


def test_finalize_refuses_an_out_it_cannot_write_before_scoring(tmp_path, tiny_stats, monkeypatch):
    model = tiny_stats(tmp_path / "model")
    manifest, _, _ = _val_set(tmp_path, model)
    scored = []
    real = ScoringDetector.score_many
    monkeypatch.setattr(ScoringDetector, "score_many", lambda self, *a, **k: scored.append(1) or real(self, *a, **k))
    out = tmp_path / "a_file"
    out.write_text("not a folder\n")
    # it was FileExistsError (a traceback) from the install, after every val file had been scored
    with pytest.raises(ConfigError, match=r"a_file: cannot write the calibrated model there"):
        _finalize(model, out, manifest)
    assert not scored
    assert out.read_text() == "not a folder\n"


def test_finalize_names_the_manifest_when_val_holds_one_class(tmp_path, tiny_stats):
    model = tiny_stats(tmp_path / "model")
    manifest, _, _ = _val_set(tmp_path, model, order=(0, 0, 0, 0, 0, 0))
    # it was the fit's "calibration needs both classes; got 0 bona fide and 6 spoof scores", after all the scoring,
    # naming neither the manifest nor the partition
    with pytest.raises(ConfigError, match=r"manifest\.csv \(partition val\): 0 bona fide and 6 spoof files"):
        _finalize(model, tmp_path / "out", manifest)
    assert not (tmp_path / "out").exists()


def test_finalize_leaves_no_out_folder_behind_when_the_install_fails(tmp_path, tiny_stats, monkeypatch):
    from sddkit.detectors import model_dir as md

    model = tiny_stats(tmp_path / "model")
    manifest, _, _ = _val_set(tmp_path, model)

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(md, "atomic_write_bytes", full_disk)
    out = tmp_path / "new" / "out"
    # it was an OSError traceback, and new/out/ stayed behind holding the weights without a config
    with pytest.raises(ConfigError, match=r"out: cannot write the calibrated model \(No space left on device\)"):
        _finalize(model, out, manifest)
    assert not (tmp_path / "new").exists()
