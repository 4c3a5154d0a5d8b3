"""Fixtures shared by the `sdd calibrate` review tests: a labelled protocol the model separates a little, and an action
run while the calibration scores its files (another process writing the folder)."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from sddkit.scoring.api import ScoringDetector, load_detector


def noise_protocol(tmp_path, model, n: int = 12):
    """A labelled CSV of noise files at two overlapping levels, labelled so that bona fide scores higher on average
    with ``model``'s weights -> (protocol path, raw scores, labels)."""
    det = load_detector(model)
    rng = np.random.default_rng(0)
    paths, levels = [], []
    for i in range(n):
        level = (0.1, 0.2)[i % 2] * (0.5 + rng.random())
        path = tmp_path / "wav" / f"f{i:02d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, (level * rng.standard_normal(2400)).astype(np.float32), 16000)
        paths.append(path)
        levels.append(i % 2)
    raw = np.array([det.score_file(p).raw_score for p in paths])
    loud_higher = raw[1::2].mean() > raw[0::2].mean()
    labels = np.array([int(lv == 1) if loud_higher else int(lv == 0) for lv in levels])
    protocol = tmp_path / "val.csv"
    rows = [f"{p},{'bonafide' if y else 'spoof'}" for p, y in zip(paths, labels)]
    protocol.write_text("path,label\n" + "\n".join(rows) + "\n")
    return protocol, raw, labels


def while_scoring(monkeypatch, action) -> None:
    """Run ``action()`` once, when the first file of the calibration is scored (another process writing the model
    directory or the --out folder while sdd calibrate scores its files)."""
    original = ScoringDetector.score_file
    done = []

    def score_file(self, *args, **kwargs):
        if not done:
            done.append(True)
            action()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ScoringDetector, "score_file", score_file)
