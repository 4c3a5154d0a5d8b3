"""Review 27 (sddkit used as a library): the metrics on torch tensors as a training loop holds them, a model directory
of a component of one's own loaded where that component is not registered, and a component of one's own that
returns something other than the output dataclasses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import sddkit
import sddkit.metrics as M
from sddkit.config import from_dict, to_dict
from sddkit.detectors import Detector, DetectorConfig, build_detector
from sddkit.detectors.model_dir import load_model_dir, save_model_dir
from sddkit.detectors.outputs import BackendOutput
from sddkit.errors import ConfigError
from sddkit.registry import Entry, get_registry

LABELS = np.array([1, 1, 1, 0, 0, 0, 1, 0, 1, 0])
SCORES = np.array([2.0, 1.0, 0.3, 0.0, -1.0, 0.5, -0.2, 0.1, 0.9, -0.4])


def test_metrics_take_a_models_scores_as_the_forward_gives_them() -> None:
    # `eer(batch["label"], output.score)` in a plain loop was torch's "Can't call numpy() on Tensor that requires
    # grad"; bfloat16 scores (autocast) were "scores are not numbers: Got unsupported ScalarType BFloat16"
    labels = torch.tensor(LABELS)
    scores = torch.tensor(SCORES, requires_grad=True)
    assert M.eer(labels, scores) == M.eer(LABELS, SCORES)
    assert M.eer(labels.bool(), scores) == M.eer(LABELS, SCORES)
    assert M.min_dcf(labels, scores) == M.min_dcf(LABELS, SCORES)
    assert M.cllr(labels, scores) == M.cllr(LABELS, SCORES)
    assert M.roc_auc(labels, scores) == M.roc_auc(LABELS, SCORES)
    half = torch.tensor(SCORES).bfloat16()
    assert M.eer(labels, half) == M.eer(LABELS, half.float().numpy())
    # a threshold computed in torch (a 0-d tensor) is a number too
    assert M.threshold_metrics(labels, scores, torch.tensor(0.25, requires_grad=True)) == M.threshold_metrics(
        LABELS, SCORES, 0.25
    )
    other = torch.tensor(SCORES[::-1].copy(), requires_grad=True)
    assert M.paired_bootstrap(M.eer, labels, scores, other, n=20) == M.paired_bootstrap(
        M.eer, LABELS, SCORES, SCORES[::-1].copy(), n=20
    )


@dataclass
class MineConfig:
    hidden: int = 4


class Mine(nn.Module):
    """(B, F, T) -> mean over time -> Linear -> (B, 2)."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden)
        self.out = nn.Linear(hidden, 2)

    def forward(self, features: Tensor) -> BackendOutput:
        h = torch.relu(self.proj(features.mean(dim=-1)))
        return BackendOutput(logits=self.out(h), embedding=h)


def build_mine(cfg: MineConfig, *, in_dim: int, **_: object) -> Mine:
    return Mine(in_dim, cfg.hidden)


def test_a_model_of_a_component_not_registered_says_to_import_its_module(tmp_path, monkeypatch) -> None:
    entries = get_registry("backend")._entries
    monkeypatch.setitem(entries, "review27_mine", Entry("review27_mine", build_mine, MineConfig, "mine"))
    cfg = from_dict(DetectorConfig, {"frontend": {"name": "lfcc"}, "backend": {"name": "review27_mine"}}, "model")
    save_model_dir(tmp_path / "m", build_detector(cfg), model_config=to_dict(cfg))
    assert load_model_dir(tmp_path / "m").architecture == "detector"  # registered: it loads
    monkeypatch.delitem(entries, "review27_mine")  # a fresh process that did not import the module
    # was only "unknown backend 'review27_mine'; registered: aasist, ...": nothing of the import that registers it
    with pytest.raises(ConfigError, match=r"model\.backend: unknown backend 'review27_mine'") as info:
        sddkit.load_detector(tmp_path / "m")
    assert "if backend 'review27_mine' is a component of your own, import the module that registers it" in str(
        info.value
    )
    # a name close to a registered one reads as a typo: no import hint next to the "did you mean"
    config = (tmp_path / "m" / "config.json").read_text()
    (tmp_path / "m" / "config.json").write_text(config.replace('"name": "review27_mine"', '"name": "lcnnn"'))
    with pytest.raises(ConfigError, match=r"did you mean 'lcnn'") as info:
        load_model_dir(tmp_path / "m")
    assert "component of your own" not in str(info.value)


class TupleBackend(nn.Module):
    """As reference code returns: (embedding, logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(60, 2)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        h = features.mean(dim=-1)
        return h, self.out(h)


class OneLogitBackend(TupleBackend):
    def forward(self, features: Tensor) -> BackendOutput:  # type: ignore[override]
        h = features.mean(dim=-1)
        return BackendOutput(logits=self.out(h)[:, :1], embedding=h)


class BareFrontend(nn.Module):
    def forward(self, waveform: Tensor) -> Tensor:
        return waveform[:, None, :400]


def test_a_component_of_ones_own_returning_no_output_dataclass_is_told_the_contract() -> None:
    # were "'tuple' object has no attribute 'logits'", "'Tensor' object has no attribute 'features'" and a bare
    # IndexError from the score's logits[:, 1]
    lfcc = get_registry("frontend").build("lfcc")
    waveform = torch.randn(2, 16000)
    with pytest.raises(TypeError, match=r"the back-end TupleBackend returned a tuple: .* returns a BackendOutput"):
        Detector(frontend=lfcc, backend=TupleBackend())(waveform)
    with pytest.raises(TypeError, match=r"the front-end BareFrontend returned a Tensor: .* returns a FrontendOutput"):
        Detector(frontend=BareFrontend(), backend=TupleBackend())(waveform)
    with pytest.raises(ValueError, match=r"returned logits of shape \(2, 1\): a back-end gives \(B, 2\) logits"):
        Detector(frontend=lfcc, backend=OneLogitBackend())(waveform)
