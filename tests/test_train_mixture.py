"""Training detector mixtures through the trainer: MELE/MILE stage 2 (gate on pooled data)."""

from __future__ import annotations

import torch
from test_train_support import one_thread, write_corpus  # noqa: F401  (autouse fixture)

from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.mixture import DetectorMixture
from sddkit.detectors.model_dir import load_model_dir, save_model_dir
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer

EXPERTS = [
    {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}},
    {"frontend": {"name": "logspec"}, "backend": {"name": "resnet18", "width": 4}},
]


def _recipe(tmp_path, mixture: dict) -> TrainRecipe:
    csv = write_corpus(tmp_path / "audio", n=12, samples=4000)
    spec = {"protocol": str(csv), "format": "utterance_table"}
    return from_dict(
        TrainRecipe,
        {
            "seed": 0,
            "mixture": mixture,
            "data": {"train": spec, "val": spec, "crop_samples": 4000, "batch_size": 4},
            "optimizer": {"lr": 1e-2},
            "trainer": {"max_steps": 2, "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )


def test_gate_training_with_frozen_trained_experts(tmp_path):
    dirs = []
    for i, cfg in enumerate(EXPERTS):  # stage 1 stands in: two "trained" expert model directories
        det = build_detector(from_dict(DetectorConfig, cfg))
        dirs.append(str(save_model_dir(tmp_path / f"expert{i}", det, model_config=cfg)))
    before = [load_model_dir(d).model.state_dict() for d in dirs]
    result = Trainer(
        _recipe(tmp_path, {"expert_dirs": dirs, "gate": {"name": "attention", "d_model": 16, "heads": 2, "ff_dim": 32}})
    ).fit()
    loaded = load_model_dir(tmp_path / "run" / "final")
    assert loaded.architecture == "mixture" and isinstance(loaded.model, DetectorMixture)
    assert [e["backend"]["name"] for e in loaded.model_config["experts"]] == ["lcnn", "resnet18"]
    assert "expert_dirs" not in loaded.model_config or not loaded.model_config["expert_dirs"]
    for i, expert in enumerate(loaded.model.experts):  # frozen experts are exported unchanged
        for k, v in before[i].items():
            assert torch.equal(expert.state_dict()[k], v), k
    out = loaded.model(torch.randn(2, 4000))
    torch.testing.assert_close(out.stats["gate_weights"].sum(-1), torch.ones(2))
    assert result is not None


def test_joint_fine_tuning_of_experts_from_configs(tmp_path):
    recipe = _recipe(tmp_path, {"experts": EXPERTS, "gate": "enhanced_mlp", "freeze_experts": False})
    Trainer(recipe).fit()
    loaded = load_model_dir(tmp_path / "run" / "final")
    assert not loaded.model.freeze_experts
    assert all(p.requires_grad for p in loaded.model.parameters())


def test_frozen_experts_given_only_as_configs_are_refused(tmp_path):
    """They would be randomly initialised and never learn: the gate would train over noise."""
    import pytest

    from sddkit.errors import ConfigError

    with pytest.raises(ConfigError, match="expert_dirs"):
        _recipe(tmp_path, {"experts": EXPERTS, "gate": "average"})
    _recipe(tmp_path, {"experts": EXPERTS, "gate": "average", "freeze_experts": False})  # joint training: fine
