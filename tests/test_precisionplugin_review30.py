"""Validation under bfloat16 autocast (``trainer.bf16``) of a back-end of one's own (review precisionplugin30).

sddkit's own back-ends compute their logits in float32 under autocast (``Float32Linear``); a plugin back-end ending
in its own ``nn.Linear(E, 2)`` still gave bfloat16 logits, rounded to steps of 1/32 near 6: its validation scores
tied and reordered against float32 scoring of the same weights (``sdd score``), moving the val EER that picks
``best/``. The Detector warns once, naming the fix (``Float32Linear``), about a back-end whose logits autocast lowers,
and rewrites none of its layers. CPU only: bfloat16 autocast runs on the CPU."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from test_train_support import one_thread  # noqa: F401  (autouse: tiny models on one thread)
from torch import Tensor, nn

from sddkit.backends.heads import Float32Linear
from sddkit.config import from_dict, to_dict
from sddkit.detectors import detector as detector_module
from sddkit.detectors.detector import Detector, DetectorConfig, build_detector
from sddkit.detectors.model_dir import load_model_dir, save_model_dir
from sddkit.detectors.outputs import BackendOutput
from sddkit.registry import Entry, get_registry
from sddkit.training.evaluate import evaluate
from sddkit.training.losses import DetectionLoss, LossConfig


@dataclass
class PooledConfig:
    output: str = "linear"  # the output layer: a plain nn.Linear, Float32Linear (the documented fix) or a 1x1 conv


class Pooled(nn.Module):
    """(B, F, T) -> mean and std over time (float32 under autocast) -> output layer -> logits (B, 2)."""

    def __init__(self, in_dim: int, output: str):
        super().__init__()
        self.conv_output = output == "conv"
        layers = {"linear": nn.Linear, "float32": Float32Linear}
        self.out = nn.Conv1d(2 * in_dim, 2, 1) if self.conv_output else layers[output](2 * in_dim, 2)

    def forward(self, features: Tensor) -> BackendOutput:
        emb = torch.cat([features.mean(dim=-1), features.std(dim=-1)], dim=-1)
        logits = self.out(emb.unsqueeze(-1)).squeeze(-1) if self.conv_output else self.out(emb)
        return BackendOutput(logits=logits, embedding=emb)


def build_pooled(cfg: PooledConfig, *, in_dim: int, **_: object) -> Pooled:
    return Pooled(in_dim, cfg.output)


@pytest.fixture
def plugin(monkeypatch):
    """The back-end ``review30_pooled`` registered, as a plugin module registers it, for one test."""
    entries = get_registry("backend")._entries
    monkeypatch.setitem(entries, "review30_pooled", Entry("review30_pooled", build_pooled, PooledConfig, "plugin"))


def _model(**backend) -> tuple[Detector, DetectorConfig]:
    torch.manual_seed(0)
    cfg = from_dict(
        DetectorConfig, {"frontend": {"name": "logmel"}, "backend": {"name": "review30_pooled", **backend}}, "model"
    )
    model = build_detector(cfg)
    with torch.no_grad():
        model.backend.out.bias.copy_(torch.tensor([6.0, 6.0]))  # logits near 6: bfloat16 steps of 1/32
    return model, cfg


class _Items(torch.utils.data.Dataset):
    """``{"waveform", "label", "index"}`` items as the trainer's validation reads them."""

    def __init__(self, n: int = 24):
        self.waves = 0.1 * torch.randn(n, 1600, generator=torch.Generator().manual_seed(3))
        self.labels = np.arange(n) % 2

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"waveform": self.waves[i], "label": torch.tensor(int(self.labels[i])), "index": torch.tensor(i)}


def _bf16_cpu() -> torch.autocast:
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16)


def _validate(model: nn.Module, autocast=None):
    kwargs = {"batch_size": 8, "device": torch.device("cpu"), "loss_fn": DetectionLoss(LossConfig())}
    return evaluate(model, _Items(), autocast=autocast, **kwargs) if autocast else evaluate(model, _Items(), **kwargs)


def test_a_plugin_backend_ending_in_float32linear_validates_as_float32_under_bf16_autocast(plugin, tmp_path):
    # the documented fix: its validation scores are float32 scoring's (24 distinct), where a plain nn.Linear(E, 2)
    # gave 15 values in steps of 1/32 and moved the validation EER (0.5 -> 0.54 here); a model directory round-trips
    model, cfg = _model(output="float32")
    fp32, mixed = _validate(model), _validate(model, _bf16_cpu)
    assert len(np.unique(mixed.scores)) == len(np.unique(fp32.scores)) == 24
    np.testing.assert_allclose(mixed.scores, fp32.scores, rtol=1e-5, atol=1e-6)
    assert mixed.eer == fp32.eer
    save_model_dir(tmp_path / "m", model, model_config=to_dict(cfg))
    loaded = load_model_dir(tmp_path / "m").model
    np.testing.assert_allclose(_validate(loaded, _bf16_cpu).scores, fp32.scores, rtol=1e-5, atol=1e-6)


def _logmel_linear() -> DetectorConfig:
    return from_dict(DetectorConfig, {"frontend": {"name": "logmel"}, "backend": {"name": "linear"}}, "model")


@pytest.mark.parametrize("output", ["linear", "conv"])
def test_a_backend_whose_logits_autocast_lowers_is_warned_about_once_naming_the_fix(
    plugin, caplog, monkeypatch, output
):
    # a plain nn.Linear or a 1x1 convolution as the output layer gives bfloat16 logits: said once per back-end class,
    # however many validations, with the layer to use instead; the layer itself is left as its author wrote it
    monkeypatch.setattr(
        detector_module, "_WARNED_LOGITS", set(), raising=False
    )  # this process may have warned about Pooled
    model, _ = _model(output=output)
    kind = type(model.backend.out)
    with caplog.at_level(logging.WARNING, logger="sddkit.detectors.detector"):
        _validate(model)  # float32: nothing to say
        assert not caplog.records
        mixed = _validate(model, _bf16_cpu)
        _validate(model, _bf16_cpu)
    assert len(np.unique(mixed.scores)) < 24  # what the warning is about: rounded, tied scores
    assert type(model.backend.out) is kind
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1
    assert "the back-end Pooled returned bfloat16 logits under autocast (trainer.bf16)" in warned[0]
    assert "validation EER that picks best/" in warned[0]
    assert "sddkit.backends.heads.Float32Linear in place of nn.Linear" in warned[0]
    # nothing said of sddkit's own back-ends (Float32Linear) nor of a half-precision model (its own dtype, as asked)
    caplog.clear()
    own, half = build_detector(_logmel_linear()), build_detector(_logmel_linear()).to(torch.bfloat16)
    with caplog.at_level(logging.WARNING, logger="sddkit.detectors.detector"), torch.no_grad(), _bf16_cpu():
        assert own(_Items().waves[:2]).logits.dtype == torch.float32
        assert half(_Items().waves[:2]).logits.dtype == torch.bfloat16
    assert not caplog.records
