"""MoLEx: experts and router trained together (aux losses), then expert addition on a new domain."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch
from safetensors.torch import load_file
from test_train_support import one_thread, write_corpus  # noqa: F401  (one_thread: autouse fixture)

from sddkit.config import from_dict
from sddkit.detectors.model_dir import load_model_dir
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer

MOLEX_MODEL = {
    "frontend": {
        "name": "ssl",
        "encoder": {"name": "wav2vec2_tiny"},
        "adapter": "molex",
        "molex": {"num_experts": 2, "rank": 2, "targets": ["q", "v"], "load_balance_weight": 0.1},
    },
    "backend": {"name": "linear"},
}


def _spec(path):
    return {"protocol": str(path), "format": "utterance_table"}


def _scalars(tb_dir) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_molex_training_then_expert_addition(tmp_path):
    old_train = write_corpus(tmp_path / "old", n=12, attacks=("A01", "A02"), samples=3200)
    old_val = write_corpus(tmp_path / "old", n=9, attacks=("A01", "A02"), samples=3200, seed=1, partition="val")
    new_train = write_corpus(tmp_path / "new", n=12, attacks=("A03",), samples=3200, seed=2)
    new_val = write_corpus(tmp_path / "new", n=9, attacks=("A03",), samples=3200, seed=3, partition="val")
    common = {
        "seed": 0,
        "optimizer": {"lr": 5e-3, "weight_decay": 0.1},
        "loss": {"class_weights": [0.3, 0.7]},
    }
    trainer = {"epochs": 2, "log_every": 1, "progress": False}

    # 1. experts and router trained together; the load-balancing loss flows into the objective
    first = from_dict(
        TrainRecipe,
        {
            **common,
            "model": MOLEX_MODEL,
            "data": {"train": _spec(old_train), "val": _spec(old_val), "crop_samples": 2400, "batch_size": 4},
            "trainer": {**trainer, "out_dir": str(tmp_path / "first")},
            "molex": {},
        },
    )
    result = Trainer(first).fit()
    assert result.step == 6 and result.best_dir is not None
    assert {"train/aux/molex_load_balance", "train/aux/molex_orthogonality", "train/loss"} <= _scalars(
        tmp_path / "first" / "tb"
    )
    base = load_model_dir(result.best_dir)
    # an untrained model from the same seed, for comparison (in its own out_dir: that one holds a run)
    init = Trainer(
        dataclasses.replace(first, trainer=dataclasses.replace(first.trainer, out_dir=str(tmp_path / "init")))
    )
    init._setup()
    untrained = dict(init.module.named_parameters())
    init._teardown()
    trained = dict(base.model.named_parameters())
    router = [n for n in trained if ".router." in n]
    experts = [n for n in trained if ".lora_A." in n]
    assert router and experts
    assert all(not torch.equal(trained[n], untrained[n].detach()) for n in router + experts)
    report = json.loads((tmp_path / "first" / "molex_report.json").read_text())
    gate = report["new_domain"]["expert_use"]["molex_gate_mean"]
    assert set(gate) == {"bonafide", "A01", "A02"} and all(len(v) == 2 for v in gate.values())
    layered = report["new_domain"]["expert_use_per_layer"]["molex_gate_mean"]
    n_layers = len({n.split(".router.")[0] for n in router})  # adapted projections (MoLEx layers)
    assert all(np.array(v).shape == (n_layers, 2) for v in layered.values())  # (adapted layers, experts)
    assert all(np.allclose(np.mean(layered[a], axis=0), gate[a], atol=1e-5) for a in gate)

    # 2. add one expert and train it alone on a new attack
    second = from_dict(
        TrainRecipe,
        {
            **common,
            "init_from": str(result.best_dir),
            "data": {"train": _spec(new_train), "val": _spec(new_val), "crop_samples": 2400, "batch_size": 4},
            "trainer": {**trainer, "out_dir": str(tmp_path / "second")},
            "molex": {"add_experts": 1, "old_eval": _spec(old_val)},
        },
    )
    grown = Trainer(second)
    result2 = grown.fit()
    assert result2.step == 6
    trainable = set(grown.expert_addition.trainable_names)
    assert trainable and all(".lora_A.1" in n or ".lora_B.1" in n or ".router." in n for n in trainable)
    final = load_model_dir(tmp_path / "second" / "final")
    assert final.model_config["frontend"]["molex"]["added_experts"] == [1]
    after = dict(final.model.named_parameters())
    for name, value in trained.items():  # every old parameter, old experts and back-end included, kept bitwise
        assert torch.equal(after[name], value), name
    assert any(not torch.equal(after[n], torch.zeros_like(after[n])) for n in trainable if ".lora_B.1" in n)
    stored = load_file(str(tmp_path / "second" / "final" / "model.safetensors"))
    assert set(stored) == set(final.model.state_dict())  # no pretrained encoder: everything is stored

    report = json.loads((tmp_path / "second" / "molex_report.json").read_text())
    assert report["units"] == {"eer": "fraction"}
    assert report["added_experts"] == 1
    old = report["old_domains"]
    assert set(old["before"]["per_attack"]) == set(old["after"]["per_attack"]) == {"A01", "A02"}
    assert old["forgetting_eer"] == old["after"]["eer"] - old["before"]["eer"]
    use = old["after"]["expert_use"]["molex_gate_mean"]
    assert set(use) == {"bonafide", "A01", "A02"} and all(len(v) == 3 for v in use.values())
    assert all(len(v) == 2 for v in old["before"]["expert_use"]["molex_gate_mean"].values())
    assert set(report["new_domain"]["per_attack"]) == {"A03"}


def test_expert_addition_keeps_the_old_region_of_a_tensor_grown_in_place():
    from torch import nn

    from sddkit.training.molex import ExpertAddition

    class GrowingFrontend(nn.Module):
        """A router weight that grows in place (E, D) -> (E + n, D), as some front-ends may do."""

        def __init__(self):
            super().__init__()
            self.router = nn.Parameter(torch.randn(2, 3))
            self.other = nn.Parameter(torch.randn(3))

        def add_experts(self, n: int) -> None:
            self.router = nn.Parameter(torch.cat([self.router.detach(), torch.randn(n, 3)]))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.frontend = GrowingFrontend()
            self.backend = nn.Linear(3, 2)

    model = Model()
    old_router, old_other = model.frontend.router.detach().clone(), model.frontend.other.detach().clone()
    growth = ExpertAddition(model, 2, train_backend=True)
    assert growth.trainable_names == ["frontend.router", "backend.weight", "backend.bias"] and not growth.new
    assert not model.frontend.other.requires_grad and model.backend.weight.requires_grad
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.5)
    growth.attach(opt)
    new_before = model.frontend.router.detach()[2:].clone()
    backend_before = model.backend.weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        (model.frontend.router.sum() + model.backend.weight.sum()).backward()
        opt.step()
    router = model.frontend.router.detach()
    assert torch.equal(router[:2], old_router)  # gradient and weight decay never reach the old rows
    assert not torch.equal(router[2:], new_before) and not torch.equal(model.backend.weight, backend_before)
    assert torch.equal(model.frontend.other.detach(), old_other)


def test_expert_addition_refuses_top_k_routers():
    """The new experts start far below the old ones: a top-k router would never select (or train) them."""
    import pytest

    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.errors import ConfigError
    from sddkit.training.molex import ExpertAddition

    model = {**MOLEX_MODEL, "frontend": {**MOLEX_MODEL["frontend"]}}
    model["frontend"]["molex"] = {**model["frontend"]["molex"], "router": {"name": "topk", "k": 1}}
    detector = build_detector(from_dict(DetectorConfig, model))
    before = {n: p.shape for n, p in detector.named_parameters()}
    with pytest.raises(ConfigError, match="softmax routers"):
        ExpertAddition(detector, 1)
    assert {n: p.shape for n, p in detector.named_parameters()} == before  # refused before growing anything
