"""Edge cases of the training/export pipeline: model-dir saves, MoLEx growth and the finalize script."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from script_support import load_script
from torch import nn

from sddkit.detectors import model_dir as md

REPO = Path(__file__).resolve().parents[1]


# --- model directories ----------------------------------------------------------------------------
class _Tiny(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.head = nn.Linear(width, 2)


def test_failed_save_leaves_the_previous_model_dir_intact(tmp_path, monkeypatch):
    monkeypatch.setitem(md.ARCHITECTURES, "tiny_edge", lambda cfg: _Tiny(cfg["width"]))
    torch.manual_seed(0)
    first = _Tiny(4)
    d = md.save_model_dir(tmp_path / "m", first, model_config={"width": 4}, architecture="tiny_edge")
    second = _Tiny(4)
    with pytest.raises(TypeError, match="int64"):  # metadata JSON cannot hold (e.g. a numpy int64 left in it)
        md.save_model_dir(d, second, model_config={"width": 4}, architecture="tiny_edge", metadata={"n": np.int64(3)})
    loaded = md.load_model_dir(d)  # still the first model, weights and config together
    for k, v in first.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k


# --- MoLEx growth in place ---------------------------------------------------------------------------
def test_gradient_clipping_sees_only_the_trainable_region_of_a_grown_tensor():
    from sddkit.training.molex import ExpertAddition

    class GrowingFrontend(nn.Module):
        def __init__(self):
            super().__init__()
            self.router = nn.Parameter(torch.randn(2, 3))

        def add_experts(self, n: int) -> None:
            self.router = nn.Parameter(torch.cat([self.router.detach(), torch.randn(n, 3)]))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.frontend = GrowingFrontend()
            self.backend = nn.Linear(3, 2)

    torch.manual_seed(0)
    model = Model()
    growth = ExpertAddition(model, 1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1.0)
    growth.attach(opt)
    (100.0 * model.frontend.router[:2].sum() + model.frontend.router[2:].sum()).backward()
    # the old rows' gradient is thrown away at the step: the clip norm must not count it
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
    assert float(norm) == pytest.approx(3**0.5)
    before = model.frontend.router.detach()[2:].clone()
    opt.step()
    step = (before - model.frontend.router.detach()[2:]).norm()
    assert float(step) == pytest.approx(1.0, rel=1e-4)


# --- scripts/finalize_default_model.py ---------------------------------------------------------------
def _finalize_module():
    return load_script("scripts/finalize_default_model.py")


def _sddbench(tmp_path: Path) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows = ["path,label,partition,system,attack_type,source,speaker,duration_s"]
    for i in range(6):
        label = "bonafide" if i % 2 else "spoof"
        rel = f"audio/{label}_{i}.wav"
        (tmp_path / "audio").mkdir(exist_ok=True)
        sf.write(tmp_path / rel, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
        rows.append(f"{rel},{label},val,{'-' if label == 'bonafide' else 'A01'},tts,src,spk{i},1.0")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_finalize_refuses_a_cache_at_another_sample_rate(tmp_path):
    from sddkit.data.dataset import CachedWaveforms
    from sddkit.data.protocols import read_protocol

    model = tmp_path / "model"
    shutil.copytree(REPO / "src" / "sddkit" / "assets" / "default_model", model)
    manifest = _sddbench(tmp_path)
    table = read_protocol(manifest, partitions=["val"])
    ids = [str(u) for u in table.column("utt_id")]
    waves = [np.full(8000, 0.01 * (i + 1), dtype=np.float32) for i in range(len(ids))]  # "8 kHz" audio
    offsets = np.r_[0, np.cumsum([len(w) for w in waves])]
    cache = CachedWaveforms(ids, np.concatenate(waves), offsets, 8000).save(tmp_path / "cache8k.npz")
    config_before = (model / "config.json").read_bytes()
    args = [str(model), "--out", str(tmp_path / "out"), "--manifest", str(manifest), "--cache", str(cache)]
    with pytest.raises(SystemExit, match="8000"):
        _finalize_module().main([*args, "--threads", "1"])
    assert (model / "config.json").read_bytes() == config_before
    assert not (tmp_path / "out").exists()


def test_finalize_calibrates_on_val_and_installs(tmp_path):
    import json

    import soundfile as sf

    from sddkit.metrics import eer
    from sddkit.scoring.api import load_detector

    model = tmp_path / "model"
    shutil.copytree(REPO / "src" / "sddkit" / "assets" / "default_model", model)
    manifest = _sddbench(tmp_path)
    names = [f"audio/{'bonafide' if i % 2 else 'spoof'}_{i}.wav" for i in range(6)]
    waves = [sf.read(tmp_path / name, dtype="float32")[0] for name in names]
    # the files are noise, so the model's raw scores order them arbitrarily: label them by that order, with one
    # pair swapped, so that the calibration has a positive, finite slope to find whatever the bundled weights
    raw = np.array([r.raw_score for r in load_detector(model).score_many(waves)])
    labels = np.empty(6, dtype=int)
    labels[np.argsort(raw)] = [0, 0, 1, 0, 1, 1]
    header, *rows = manifest.read_text().splitlines()
    fields = [row.split(",") for row in rows]
    for f, y in zip(fields, labels):
        f[1] = "bonafide" if y else "spoof"  # the label column
    manifest.write_text("\n".join([header] + [",".join(f) for f in fields]) + "\n")
    out = tmp_path / "out"
    before = (model / "config.json").read_bytes()
    assert _finalize_module().main([str(model), "--out", str(out), "--manifest", str(manifest), "--threads", "1"]) == 0
    config = json.loads((out / "config.json").read_text())
    # the copy in --out is calibrated; the trained folder is left as it was (it was rewritten too)
    assert (model / "config.json").read_bytes() == before and config != json.loads(before)
    assert (out / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()
    cal, meta = config["inference"]["calibration"], config["metadata"]["val_calibrated"]
    assert cal["prior"] == 0.5 and (cal["n_bonafide"], cal["n_spoof"]) == (3, 3)
    assert (meta["n_bonafide"], meta["n_spoof"]) == (3, 3)
    # the threshold is at the val EER operating point of the calibrated scores: halfway between that point (one
    # file's score) and the next lower score, so it makes the same val decisions with a margin on both sides
    det = load_detector(out)
    llr = np.array([r.score for r in det.score_many(waves)])
    result = eer(labels, llr)
    threshold = config["inference"]["threshold"]
    below = llr[llr < result.threshold]
    if below.size:
        assert threshold == pytest.approx((below.max() + result.threshold) / 2)
    assert np.array_equal(llr >= threshold, llr >= result.threshold)
    assert not np.isclose(llr, threshold, rtol=0, atol=1e-6).any()  # no file sits on it
    assert meta["eer_whole_files"] == pytest.approx(result.eer)
