from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

import sddkit
from sddkit.config import from_dict, to_dict
from sddkit.detectors import model_dir as md
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import (
    AudioError,
    AudioTooShortError,
    CheckpointError,
    ConfigError,
    NonFiniteAudioError,
    SilentAudioError,
    UnsupportedSampleRateError,
)
from sddkit.scoring import api
from sddkit.scoring.inference import calibrate_model_dir, read_inference, write_inference

SR = 16000


class MeanModel(nn.Module):
    """Hand-checkable detector: window score = gain * mean(window); gate weights from the sign."""

    def __init__(self, gain: float):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(float(gain)))

    def forward(self, x):
        s = self.gain * x.mean(dim=1)
        logits = torch.stack([torch.zeros_like(s), s], dim=1)
        gate = torch.softmax(torch.stack([s, -s, torch.zeros_like(s)], dim=1), dim=1)
        return DetectorOutput(
            logits=logits,
            score=s,
            embedding=x[:, :4],
            # batch-level statistics cannot be attributed to one input: never reported, even when a
            # (3,) vector happens to match a batch of 3 windows
            stats={"gate_weights": gate, "batch_level": s.mean(), "usage_total": gate.sum(0)},
        )


@pytest.fixture
def mean_dir(tmp_path, monkeypatch):
    monkeypatch.setitem(md.ARCHITECTURES, "mean_test", lambda cfg: MeanModel(cfg["gain"]))
    inference = {
        "window_samples": 100,
        "hop_samples": 40,
        "threshold": 0.5,
        "calibration": {"a": 2.0, "b": -1.0},
        "min_duration_s": 0.0,  # hand-checked inputs of a few samples
    }
    return md.save_model_dir(
        tmp_path / "mean", MeanModel(10.0), model_config={"gain": 10.0}, architecture="mean_test", inference=inference
    )


def test_windows_aggregation_calibration_and_decision_by_hand(mean_dir):
    det = sddkit.load_detector(mean_dir)
    x = np.concatenate([np.full(150, 0.2), np.full(100, -0.1)]).astype(np.float32)  # 250 samples
    r = det.score(x, SR)
    # windows of 100 every 40, last aligned to the end: starts 0, 40, 80, 120, 150
    starts = [0, 40, 80, 120, 150]
    raw = [10 * x[s : s + 100].mean() for s in starts]
    assert r.window_starts_s == pytest.approx([s / SR for s in starts])
    assert r.window_ends_s == pytest.approx([(s + 100) / SR for s in starts])
    assert r.raw_score == pytest.approx(np.mean(raw), rel=1e-5)
    assert r.window_scores == pytest.approx([2 * v - 1 for v in raw], rel=1e-5)
    assert r.score == pytest.approx(2 * np.mean(raw) - 1, rel=1e-5)
    assert r.probability == pytest.approx(1 / (1 + np.exp(-r.score)))
    assert r.decision == ("bonafide" if r.score >= 0.5 else "spoof")
    assert r.duration_s == pytest.approx(250 / SR) and r.n_windows == 5
    # stats: per-window gate weights averaged over windows; the batch-level scalar is not reported
    assert set(r.weights) == {"gate_weights"}
    expected_gate = np.mean([np.exp([v, -v, 0]) / np.exp([v, -v, 0]).sum() for v in raw], axis=0)
    assert r.weights["gate_weights"] == pytest.approx(expected_gate.tolist(), rel=1e-5)
    assert det.weight_columns() == ["gate_w0", "gate_w1", "gate_w2"]


def test_batch_level_stats_are_ignored_even_when_shapes_coincide(mean_dir):
    det = api.load_detector(mean_dir, batch_size=3)
    assert det.stat_widths() == {"gate_weights": 3}
    x = np.linspace(-0.5, 0.5, 180).astype(np.float32)  # windows at 0, 40, 80: one batch of exactly 3
    r = det.score(x, SR)
    assert r.n_windows == 3 and set(r.weights) == {"gate_weights"}


def test_short_input_is_repeat_padded_and_decisions_follow_threshold(mean_dir):
    det = sddkit.load_detector(mean_dir)
    short = np.array([0.3, 0.1, 0.2], dtype=np.float32)  # tiled to 100 samples: 0.3,0.1,0.2,0.3,...
    r = det.score(short, SR)
    tiled = np.tile(short, 34)[:100]
    assert r.n_windows == 1 and r.duration_s == pytest.approx(3 / SR)
    assert r.raw_score == pytest.approx(10 * tiled.mean(), rel=1e-5)
    assert r.decision == "bonafide"  # 2 * 2.0 - 1 = 3.0 >= 0.5
    assert det.score(-short, SR).decision == "spoof"


def test_inputs_shorter_than_the_models_minimum_are_refused_not_scored(tmp_path):
    path, _ = _real_model_dir(tmp_path / "m")
    det = sddkit.load_detector(path)
    assert det.inference.min_duration_s == 0.1  # the default of every model directory
    rng = np.random.default_rng(0)
    with pytest.raises(AudioTooShortError, match=r"6 ms of audio is too short to score .*minimum: 100 ms"):
        det.score(0.1 * rng.standard_normal(100).astype(np.float32), SR)
    wav = tmp_path / "click.wav"
    sf.write(wav, 0.1 * rng.standard_normal(800), SR)  # 50 ms
    with pytest.raises(AudioTooShortError, match=r"click\.wav: 50 ms"):
        det.score_file(wav)
    assert det.score(0.1 * rng.standard_normal(1600).astype(np.float32), SR).n_windows == 1  # 0.1 s: scored
    with pytest.raises(CheckpointError, match="min_duration_s must be >= 0"):
        write_inference(path, {"window_samples": 8000, "min_duration_s": -1})


def test_aggregations_and_batching_do_not_change_results(mean_dir):
    x = np.sin(np.linspace(0, 20, 1000)).astype(np.float32) + 0.05
    base = api.load_detector(mean_dir, batch_size=64).score(x, SR)
    for bs in (1, 3, 7):
        r = api.load_detector(mean_dir, batch_size=bs).score(x, SR)
        assert r.window_scores == pytest.approx(base.window_scores, rel=1e-6, abs=1e-7)
    cfg = json.loads((mean_dir / "config.json").read_text())
    for agg, fn in (("min", np.min), ("max", np.max), ("median", np.median)):
        cfg["inference"]["aggregation"] = agg
        (mean_dir / "config.json").write_text(json.dumps(cfg))
        r = api.load_detector(mean_dir).score(x, SR)
        assert r.raw_score == pytest.approx(fn((np.array(base.window_scores) + 1) / 2), rel=1e-5)


def test_many_inputs_in_one_batch_equal_one_by_one(mean_dir):
    det = api.load_detector(mean_dir, batch_size=4)
    rng = np.random.default_rng(3)
    xs = [(rng.standard_normal(n) * 0.1 + m).astype(np.float32) for n, m in ((30, 0.1), (420, -0.2), (260, 0.05))]
    together = det.score_many(xs)
    alone = [det.score(x, SR) for x in xs]
    for a, b in zip(together, alone):
        assert a.window_scores == pytest.approx(b.window_scores, rel=1e-6)
        assert a.weights["gate_weights"] == pytest.approx(b.weights["gate_weights"], rel=1e-6)


def test_input_forms_and_resampling(mean_dir):
    det = api.load_detector(mean_dir)
    t = np.arange(8000) / SR
    x = (0.3 * np.sin(2 * np.pi * 50 * t) + 0.1).astype(np.float32)
    mono = det.score(x, SR)
    assert det.score(np.stack([x, x]), SR).score == pytest.approx(mono.score, rel=1e-6)  # (C, T)
    assert det.score(np.stack([x, x], axis=1), SR).score == pytest.approx(mono.score, rel=1e-6)  # (T, C)
    assert det.score(torch.from_numpy(x), SR).score == pytest.approx(mono.score, rel=1e-6)
    pcm = np.round(x * 32767).astype(np.int16)
    assert det.score(pcm, SR).score == pytest.approx(mono.score, rel=1e-3)  # int16 scaled to [-1, 1)
    # a 50 Hz tone with an offset survives resampling from 8 kHz: same mean, half the samples
    half = det.score(x[::2], 8000)
    assert half.duration_s == pytest.approx(mono.duration_s, abs=1e-3)
    assert half.score == pytest.approx(mono.score, rel=0.02)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (np.zeros(500, np.float32), SilentAudioError),
        (np.array([0.1, np.nan] * 100, np.float32), NonFiniteAudioError),
        (np.zeros((3, 4, 5), np.float32), AudioError),
        (np.zeros((20, 30), np.float32), AudioError),  # no plausible channel axis
    ],
)
def test_bad_waveforms_raise_typed_errors(mean_dir, bad, error):
    det = api.load_detector(mean_dir)
    with pytest.raises(error):
        det.score(bad, SR)
    with pytest.raises(AudioError, match="sample_rate"):
        det.score(np.ones(10, np.float32), 0)
    with pytest.raises(UnsupportedSampleRateError, match="100 Hz"):
        det.score(np.full(400, 0.1, np.float32), 100)


def _real_model_dir(path, **inference):
    """logmel + LCNN, small enough for fast CPU tests."""
    cfg = from_dict(
        DetectorConfig,
        {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 0}},
    )
    torch.manual_seed(0)
    model = build_detector(cfg).eval()
    md.save_model_dir(path, model, model_config=to_dict(cfg), inference={"window_samples": 8000, **inference})
    return path, model


def test_real_model_matches_direct_forward_and_score_file(tmp_path):
    d, model = _real_model_dir(tmp_path / "lcnn")
    det = sddkit.load_detector(d)
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(8000)).astype(np.float32)  # exactly one window: no padding, no overlap
    with torch.no_grad():
        direct = model(torch.from_numpy(x)[None]).score.item()
    r = det.score(x, SR)
    assert r.n_windows == 1 and r.score == pytest.approx(direct, rel=1e-5, abs=1e-6)
    sf.write(tmp_path / "x.wav", x, SR, subtype="FLOAT")
    assert det.score_file(tmp_path / "x.wav").score == pytest.approx(direct, rel=1e-5, abs=1e-6)
    assert det.info["components"] == {"frontend": "logmel", "backend": "lcnn", "band_hz": [20.0, 7600.0]}
    assert det.info["num_parameters"] == sum(p.numel() for p in model.parameters())


def test_calibrate_model_dir_changes_scores_affinely(tmp_path):
    d, _ = _real_model_dir(tmp_path / "lcnn")
    det = api.load_detector(d)
    rng = np.random.default_rng(1)
    xs = [(0.05 * (1 + i % 3) * rng.standard_normal(8000)).astype(np.float32) for i in range(12)]
    raw = np.array([r.raw_score for r in det.score_many(xs)])
    labels = (raw > np.median(raw)).astype(int)
    labels[[0, -1]] = 1 - labels[[0, -1]]  # not perfectly separable
    cfg = calibrate_model_dir(d, raw, labels, prior=0.3)
    assert read_inference(d).calibration == cfg.calibration and cfg.calibration.prior == 0.3
    again = api.load_detector(d).score_many(xs)
    a, b = cfg.calibration.a, cfg.calibration.b
    assert [r.score for r in again] == pytest.approx(list(a * raw + b), rel=1e-5, abs=1e-6)
    assert [r.raw_score for r in again] == pytest.approx(list(raw), rel=1e-6)


def test_concurrent_calls_give_the_same_results(tmp_path):
    d, _ = _real_model_dir(tmp_path / "lcnn")
    det = api.load_detector(d)
    rng = np.random.default_rng(2)
    xs = [(0.1 * rng.standard_normal(4000 + 3000 * i)).astype(np.float32) for i in range(6)]
    expected = [det.score(x, SR).score for x in xs]
    got: dict[int, float] = {}

    def work(i: int) -> None:
        got[i] = det.score(xs[i], SR).score

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(xs))] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_missing_default_model_and_bad_backend(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "default_model_dir", lambda: tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="pass --model"):
        api.load_detector(None)
    d, _ = _real_model_dir(tmp_path / "lcnn")
    with pytest.raises(CheckpointError, match="unknown scoring backend"):
        api.load_detector(d, backend="tensorflow")
    cfg = json.loads((d / "config.json").read_text())
    cfg["inference"]["windw"] = 1
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown key"):
        api.load_detector(d)


def test_devices_that_do_not_exist_here_are_config_errors(tmp_path, monkeypatch):
    d, _ = _real_model_dir(tmp_path / "lcnn")
    with pytest.raises(ConfigError, match="unknown device 'foo'"):
        api.load_detector(d, device="foo")
    with pytest.raises(ConfigError, match="scoring runs on cpu, cuda or mps"):
        api.load_detector(d, device="meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        api.load_detector(d, device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"only 2 CUDA device\(s\) here \(cuda:0..cuda:1\)"):
        api.scoring_device("cuda:2")
    assert api.scoring_device("cuda:1") == torch.device("cuda", 1)
    noise = np.random.default_rng(0).uniform(-0.1, 0.1, 4000).astype(np.float32)
    assert api.load_detector(d, device="cpu").score(noise, SR).decision in (
        "bonafide",
        "spoof",
    )


def test_import_sddkit_stays_light():
    import subprocess
    import sys

    code = "import sys, sddkit; assert 'torch' not in sys.modules; assert callable(sddkit.load_detector); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_lora_adapters_are_merged_at_load_and_scores_do_not_change(tmp_path, monkeypatch):
    cfg = from_dict(
        DetectorConfig,
        {
            "frontend": {
                "name": "ssl",
                "encoder": {"name": "wav2vec2_tiny", "dropout": 0.0},
                "adapter": "lora",
                "lora": {"rank": 2, "alpha": 2.0},
            },
            "backend": {"name": "linear"},
        },
    )
    torch.manual_seed(0)
    model = build_detector(cfg).eval()
    lora_layers = [m for m in model.modules() if type(m).__name__ == "LoRALinear"]
    assert lora_layers
    for layer in lora_layers:  # non-zero B: the adapters really change the output
        torch.nn.init.normal_(layer.lora_B, std=0.5)
    path = md.save_model_dir(tmp_path / "lora", model, model_config=to_dict(cfg))
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    det = sddkit.load_detector(path)
    assert det.info["merged_lora_layers"] == len(lora_layers)
    loaded = [m for m in det.runner.model.modules() if type(m).__name__ == "LoRALinear"]
    assert all(m.merged for m in loaded)
    monkeypatch.setattr(api, "merge_lora_for_inference", lambda model: 0)
    unmerged = sddkit.load_detector(path)
    assert unmerged.info["merged_lora_layers"] == 0
    assert not any(m.merged for m in unmerged.runner.model.modules() if type(m).__name__ == "LoRALinear")
    expected = unmerged.score(x, SR).raw_score
    assert det.score(x, SR).raw_score == pytest.approx(expected, abs=1e-5)
    assert abs(expected) > 1e-3  # a real score, not a degenerate zero


def test_scoring_the_bundled_model_does_not_import_scipy(tmp_path):
    """scipy's signal/stats/optimize stacks cost about 1.4 s of start-up; scoring needs none of them, so
    one-file `sdd score` calls must not pay for them (they belong to training, augmentation and fitting)."""
    import subprocess
    import sys

    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    code = (
        "import sys\n"
        "from sddkit.cli.main import main\n"
        f"assert main(['score', {str(wav)!r}, '--out', {str(tmp_path / 's.csv')!r}, '--quiet']) == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] == 'scipy'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "s.csv").read_text().count("\n") == 2  # header + the scored file
