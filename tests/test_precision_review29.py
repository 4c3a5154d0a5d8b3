"""Mixed precision in training (review precision29): ``trainer.bf16`` only where the GPU computes bfloat16 natively
(a V100 or T4 trains in float32, said in a warning, recorded in run.json), and validation scores that autocast
does not round to bfloat16 (the output layer computes its logits in float32). CPU only: CUDA is faked by
monkeypatching ``torch.cuda``; bfloat16 autocast runs on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.training.evaluate import evaluate
from sddkit.training.losses import DetectionLoss, LossConfig
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer, bf16_autocast


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA device of the given compute capability and name, as torch.cuda reports it (no GPU needed)."""

    def install(capability: tuple[int, int], name: str) -> torch.device:
        monkeypatch.setattr(torch.version, "hip", None)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        return torch.device("cuda", 0)

    return install


@pytest.mark.parametrize(("capability", "name"), [((7, 0), "Tesla V100-SXM2-32GB"), ((7, 5), "Tesla T4")])
def test_bf16_falls_back_to_float32_on_gpus_without_bf16_tensor_cores(gpu, capability, name) -> None:
    # trainer.bf16 defaults to true: on a V100 or T4 it trained under emulated bfloat16, slower than float32 and
    # with 8 significant bits, without a word
    used, note = bf16_autocast(True, gpu(capability, name))
    assert used is False
    assert note is not None and name in note and f"compute capability {capability[0]}.{capability[1]}" in note
    assert "training in float32" in note and "trainer.bf16: false" in note


def test_bf16_is_used_on_ampere_and_newer_and_never_on_the_cpu(gpu) -> None:
    assert bf16_autocast(True, gpu((8, 0), "NVIDIA A100-SXM4-80GB")) == (True, None)
    assert bf16_autocast(True, gpu((9, 0), "NVIDIA H100 80GB HBM3")) == (True, None)
    assert bf16_autocast(False, gpu((8, 0), "NVIDIA A100-SXM4-80GB")) == (False, None)
    assert bf16_autocast(False, gpu((7, 0), "Tesla V100-SXM2-32GB")) == (False, None)  # asked off: no warning
    assert bf16_autocast(True, torch.device("cpu")) == (False, None)  # GPU only, as documented


def test_run_json_records_the_precision_the_session_used(tmp_path, monkeypatch) -> None:
    # the recipe's trainer.bf16 (true by default) said bfloat16 for a run that trained in float32 (the CPU, or now an
    # older GPU); run.json's session recorded the device but not what its forward passes ran under
    install_tiny(monkeypatch)
    recipe = from_dict(
        TrainRecipe,
        {
            "seed": 1,
            "model": {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head"}},
            "data": {"batch_size": 8},
            "trainer": {
                "epochs": 1,
                "max_steps": 2,
                "device": "cpu",
                "out_dir": str(tmp_path / "run"),
                "progress": False,
            },
        },
    )
    assert recipe.trainer.bf16 is True
    Trainer(recipe, train_data=SyntheticDataset(16), val_data=SyntheticDataset(12, seed=9)).fit()
    session = json.loads((tmp_path / "run" / "run.json").read_text())["sessions"][-1]
    assert session["device"] == "cpu"
    assert session["autocast"] is None


class _Items(torch.utils.data.Dataset):
    """``{"waveform", "label", "index"}`` items as the trainer's validation reads them."""

    def __init__(self, waves: torch.Tensor, labels: np.ndarray):
        self.waves, self.labels = waves, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"waveform": self.waves[i], "label": torch.tensor(int(self.labels[i])), "index": torch.tensor(i)}


def _bf16_cpu() -> torch.autocast:
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_validation_under_bf16_autocast_scores_as_float32_does(head) -> None:
    # logits near 6 rounded to bfloat16 (steps of 1/32): the validation scores (their difference) took a few
    # values, trials tied and reordered against float32 scoring of the same weights, and the EER that picks best/
    # moved. The logmel features and the linear back-end's pooling are float32 under autocast, so the output
    # layer was the only rounding: scores now equal float32 scoring to float32 rounding.
    torch.manual_seed(0)
    backend = {"name": "linear", "head": head} if head == "cosine" else {"name": "linear"}
    model = build_detector(from_dict(DetectorConfig, {"frontend": {"name": "logmel"}, "backend": backend}, "model"))
    if head == "linear":
        with torch.no_grad():
            model.backend.classifier.bias.copy_(torch.tensor([6.0, 6.0]))
    labels = np.array([i % 2 for i in range(24)])
    waves = 0.1 * torch.randn(24, 1600, generator=torch.Generator().manual_seed(3))
    data = _Items(waves, labels)
    loss_fn = DetectionLoss(LossConfig())
    kwargs = {"batch_size": 8, "device": torch.device("cpu"), "loss_fn": loss_fn}

    fp32 = evaluate(model, data, **kwargs)
    mixed = evaluate(model, data, autocast=_bf16_cpu, **kwargs)
    np.testing.assert_allclose(mixed.scores, fp32.scores, rtol=1e-5, atol=1e-6)
    assert mixed.eer == fp32.eer
    assert mixed.loss == pytest.approx(fp32.loss, rel=1e-5)
    # the logits (what the loss takes in training) are float32 under autocast too
    with torch.no_grad(), _bf16_cpu():
        assert model(waves[:2]).logits.dtype == torch.float32
