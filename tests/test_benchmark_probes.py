"""benchmarks/probe_whisper_features.py runs end to end on a tiny random Whisper and a synthetic sddbench."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from script_support import load_script


def _probe_module():
    return load_script("benchmarks/probe_whisper_features.py")


def _manifest(tmp_path: Path) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows = ["path,label,partition,system,attack_type,source,speaker,duration_s"]
    (tmp_path / "audio").mkdir()
    for part in ("train", "val", "test_unseen"):
        for i in range(6):
            label = "bonafide" if i % 2 else "spoof"
            rel = f"audio/{part}_{i}.wav"
            # the classes differ in level-independent spectral shape (white vs smoothed noise)
            x = rng.standard_normal(8000)
            if label == "spoof":
                x = np.convolve(x, np.ones(8) / 8, mode="same")
            sf.write(tmp_path / rel, (0.05 * (i + 1) * x / np.abs(x).max()).astype(np.float32), 16000)
            system = "-" if label == "bonafide" else "A01"
            rows.append(f"{rel},{label},{part},{system},tts,src,spk{i},0.5")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_whisper_feature_probe_writes_val_and_test_scores(tmp_path, capsys):
    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    encoder_dir = tmp_path / "whisper"
    encoder = build_encoder(EncoderConfig(), preset="whisper_tiny")
    encoder.model.save_pretrained(encoder_dir)
    manifest = _manifest(tmp_path)
    out, feats = tmp_path / "lr.csv", tmp_path / "feats.npz"
    args = ["--out", str(out), "--manifest", str(manifest), "--encoder", str(encoder_dir), "--preset", "whisper_tiny"]
    args += ["--features", str(feats), "--cs", "1", "--threads", "1"]
    probe = _probe_module()
    assert probe.main(args) == 0
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    scored = {Path(r["path"]).name for r in rows}
    assert scored == {f"{p}_{i}.wav" for p in ("val", "test_unseen") for i in range(6)}  # never train
    assert all(np.isfinite(float(r["raw_score"])) for r in rows)
    saved = np.load(feats)
    # files, the input of layer 1 and the output of each layer, mean and std of each dimension
    assert saved["X"].shape == (18, encoder.total_layers + 1, 2 * encoder.output_dim)
    assert "chosen on val" in capsys.readouterr().out
    # the cache is read back, not recomputed: the same scores come out without the encoder folder
    out2 = tmp_path / "lr2.csv"
    args2 = [a if a != str(out) else str(out2) for a in args]
    args2[args2.index(str(encoder_dir))] = str(tmp_path / "missing")
    assert probe.main(args2) == 0
    assert out2.read_text() == out.read_text()
