"""sdd robustness as a researcher checks it: a time stretch condition scores the stretched speech (no padding or
cropping back to the input's length), and the report records the codec settings the run used."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import sddkit
from sddkit.audio.io import load_audio
from sddkit.augment.conditions import apply_condition, condition_config, keeps_length
from sddkit.augment.timescale import wsola
from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.model_dir import save_model_dir
from sddkit.evaluation.robustness import (
    RobustnessConfig,
    RobustnessResult,
    condition_configs,
    condition_seed,
    degrade,
    header_differences,
)

SR = 16000


def _voiced(seconds: float, f0: float = 140.0) -> np.ndarray:
    """A harmonic, amplitude-modulated tone, loud up to its last sample (no trailing silence of its own)."""
    t = np.arange(int(SR * seconds)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * x).astype(np.float32)


@pytest.mark.parametrize(("name", "rate"), [("stretch_1.1", 1.1), ("stretch_0.9", 0.9)])
def test_a_time_stretch_condition_is_the_whole_stretched_utterance(name, rate):
    # before: cut back to the input's length, stretch_1.1 ended in 9 % digital silence and stretch_0.9 lost the last
    # 10 % of the speech; on real speech that moved a detector's scores more than the stretch itself
    x = _voiced(1.0)
    y = apply_condition(name, x, SR, seed=0)
    assert not keeps_length(name)
    assert len(y) == round(len(x) / rate)
    np.testing.assert_array_equal(y, wsola(x, SR, rate))
    tail = y[-int(0.05 * SR) :]  # the last 50 ms: speech, not zeros
    assert np.sqrt(np.mean(tail**2)) > 0.05
    # the same whole length on the path sdd robustness takes, with and without --fast-codecs
    for fast in (False, True):
        np.testing.assert_array_equal(degrade(name, x, SR, 7, fast_codecs=fast), y)
    for other in ("pitch_+2", "mulaw", "noise_white_10db", "gain_-10db"):  # every other condition keeps the length
        assert keeps_length(other) and apply_condition(other, x, SR, seed=1).shape == x.shape


def test_a_journal_of_the_cropped_stretch_is_refused():
    # a journal written when the stretch was cut back to the input's length holds other audio under the same name:
    # its definition (condition_configs) differs, so a resume is refused instead of mixing the two
    now = {"schema": "s", "settings": {"conditions": ["clean", "stretch_1.1"]}, "utterances": {"n": 1}}
    now["settings"]["condition_configs"] = condition_configs(["clean", "stretch_1.1"])
    earlier = json.loads(json.dumps(now))
    old = {"name": "time_stretch", "rate": [1.1, 1.1], "fill": "zeros", "p": 1.0}
    earlier["settings"]["condition_configs"]["stretch_1.1"] = old
    diffs = header_differences(earlier, now)
    assert len(diffs) == 1 and "stretch_1.1" in diffs[0] and "length" in diffs[0]
    assert condition_config("stretch_1.1") == {
        "name": "time_stretch",
        "rate": [1.1, 1.1],
        "p": 1.0,
        "length": "stretched",
    }


def test_the_report_records_the_fast_codec_search_a_run_used():
    # before: with --fast-codecs robustness.json said "fast_codecs": true, and "fast": false in each codec condition's
    # configuration ("what each name meant in this run")
    names = ["clean", "mp3_64k", "launder_chain", "noise_white_10db"]
    n = 2
    result = RobustnessResult(
        config=RobustnessConfig(conditions=names, fast_codecs=True),
        threshold=0.0,
        utt_ids=["a", "b"],
        labels=np.array([1, 0]),
        scores={c: np.zeros(n) for c in names},
        failures=[],
        condition_errors={},
        rows=[],
    )
    configs = result.to_dict()["condition_configs"]
    assert configs["mp3_64k"]["fast"] is True and configs["launder_chain"]["fast_codec"] is True
    assert configs["noise_white_10db"] == condition_config("noise_white_10db")
    result.config.fast_codecs = False
    configs = result.to_dict()["condition_configs"]
    assert configs["mp3_64k"]["fast"] is False and configs["launder_chain"]["fast_codec"] is False
    # the journal's record of the definitions stays without the fast search (fast_codecs is a setting of its own),
    # so journals written before the report recorded it still resume
    assert condition_configs(names)["mp3_64k"]["fast"] is False


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny logmel + LCNN model directory and a labelled folder of two files per class."""
    root = tmp_path_factory.mktemp("robust26")
    data = root / "data"
    for label, f0 in (("bonafide", 120.0), ("spoof", 190.0)):
        (data / label).mkdir(parents=True)
        for i in range(2):
            sf.write(data / label / f"u{i}.wav", _voiced(0.6 + 0.2 * i, f0 + 10 * i), SR)
    cfg = from_dict(
        DetectorConfig,
        {"frontend": "logmel", "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 0, "dropout": 0.0}},
    )
    torch.manual_seed(0)
    model = save_model_dir(
        root / "model", build_detector(cfg).eval(), model_config=to_dict(cfg), inference={"window_samples": 4000}
    )
    return {"root": root, "data": data, "model": model}


def test_sdd_robustness_scores_the_whole_stretched_utterance(tiny, capsys):
    out = tiny["root"] / "out"
    args = ["robustness", "--model", str(tiny["model"]), "--protocol", str(tiny["data"]), "--out", str(out)]
    assert main([*args, "--conditions", "stretch_1.1,stretch_0.9", "--mode", "all", "--quiet", "--workers", "0"]) == 0
    scores = pd.read_csv(out / "scores_all.csv").set_index(["condition", "utt_id"])["score"]
    report = json.loads((out / "robustness.json").read_text())
    assert report["condition_configs"]["stretch_0.9"]["length"] == "stretched"
    det = sddkit.load_detector(tiny["model"])
    path = tiny["data"] / "spoof" / "u1.wav"
    x = load_audio(path, sample_rate=SR)
    for name, rate in (("stretch_1.1", 1.1), ("stretch_0.9", 0.9)):
        y = apply_condition(name, x, SR, seed=condition_seed(0, name, "spoof/u1"))
        assert len(y) == round(len(x) / rate)
        assert scores.loc[(name, "spoof/u1")] == pytest.approx(det.score(y, SR).score, rel=1e-5, abs=1e-6)
