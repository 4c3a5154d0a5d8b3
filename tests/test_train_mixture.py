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


def test_joint_fine_tuning_of_experts_from_configs(tmp_path, monkeypatch):
    recipe = _recipe(tmp_path, {"experts": EXPERTS, "gate": "enhanced_mlp", "freeze_experts": False})
    built = {}
    real_build = Trainer._build_model

    def recording_build(self):
        model = real_build(self)
        built.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(Trainer, "_build_model", recording_build)
    Trainer(recipe).fit()
    loaded = load_model_dir(tmp_path / "run" / "final")
    assert not loaded.model.freeze_experts
    assert all(p.requires_grad for p in loaded.model.parameters())
    # every expert and the gate really learnt: each has parameters (not only batch-norm statistics)
    # that the optimiser moved away from their initial values
    final = {k: p.detach() for k, p in loaded.model.named_parameters()}
    for part in ("experts.0.", "experts.1.", "gate."):
        names = [k for k in final if k.startswith(part)]
        assert names and any(not torch.equal(final[k], built[k]) for k in names), part


def test_frozen_experts_given_only_as_configs_are_refused(tmp_path):
    """They would be randomly initialised and never learn: the gate would train over noise."""

    import pytest

    from sddkit.errors import ConfigError

    with pytest.raises(ConfigError, match="expert_dirs"):
        _recipe(tmp_path, {"experts": EXPERTS, "gate": "average"})
    _recipe(tmp_path, {"experts": EXPERTS, "gate": "average", "freeze_experts": False})  # joint training: fine


def test_average_gate_over_frozen_experts_is_validated_and_exported_without_training(tmp_path):
    """Nothing to learn: no step, one validation, best/ and final/ score exactly like the mixture built by hand."""
    dirs = []
    for i, cfg in enumerate(EXPERTS):
        det = build_detector(from_dict(DetectorConfig, cfg))
        dirs.append(str(save_model_dir(tmp_path / f"expert{i}", det, model_config=cfg)))
    trainer = Trainer(_recipe(tmp_path, {"expert_dirs": dirs, "gate": "average"}))
    result = trainer.fit()
    assert trainer.assembled and result.step == 0 and result.best_step == 0
    assert result.best_eer is not None and result.final_eer == result.best_eer
    assert [h["step"] for h in result.history] == [0]
    assert not (tmp_path / "run" / "checkpoints").exists()  # no optimiser state to keep
    x = torch.randn(3, 4000, generator=torch.Generator().manual_seed(1))
    experts = [load_model_dir(d).model.eval() for d in dirs]
    by_hand = torch.stack([e(x).logits.log_softmax(-1).exp() for e in experts]).mean(0)
    for name in ("best", "final"):
        loaded = load_model_dir(tmp_path / "run" / name)
        probs = loaded.model.eval()(x).logits.log_softmax(-1).exp()
        torch.testing.assert_close(probs, by_hand, atol=1e-6, rtol=1e-5)


def test_a_plain_detector_with_nothing_trainable_is_still_refused(tmp_path):
    """Only a mixture is exported as built: a detector with every parameter frozen is a mistake in the recipe."""
    import dataclasses

    import pytest

    from sddkit.errors import ConfigError

    recipe = _recipe(tmp_path, {"expert_dirs": [], "experts": EXPERTS[:1], "freeze_experts": False})
    recipe = dataclasses.replace(recipe, mixture=None, model=from_dict(DetectorConfig, EXPERTS[0]))
    model = build_detector(from_dict(DetectorConfig, EXPERTS[0])).requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        Trainer(recipe, model=model, model_config=EXPERTS[0]).fit()


def test_experts_are_named_after_their_run_folders_through_to_sdd_scores_record(tmp_path):
    """expert_names default to the expert directories' run folders; the model directory, the scoring API's
    model info and sdd score's run record carry them (sdd eval names its gate tables from that record)."""
    from sddkit.scoring.api import load_detector
    from sddkit.scoring.batch import run_info

    dirs = []
    for name, sub, cfg in (("run_lcnn", "best", EXPERTS[0]), ("run_resnet", "final", EXPERTS[1])):
        det = build_detector(from_dict(DetectorConfig, cfg))
        dirs.append(str(save_model_dir(tmp_path / name / sub, det, model_config=cfg)))
    Trainer(_recipe(tmp_path, {"expert_dirs": dirs, "gate": "average"})).fit()
    loaded = load_model_dir(tmp_path / "run" / "best")
    assert loaded.model_config["expert_names"] == ["run_lcnn", "run_resnet"]
    detector = load_detector(tmp_path / "run" / "best")
    experts = detector.info["components"]["experts"]
    assert [(e["name"], e["backend"]) for e in experts] == [("run_lcnn", "lcnn"), ("run_resnet", "resnet18")]
    assert run_info(detector)["expert_names"] == ["run_lcnn", "run_resnet"]
    plain = load_detector(dirs[0])  # a single detector: no expert names in its record
    assert "expert_names" not in run_info(plain)


def test_expert_names_given_checked_and_defaulted():
    import pytest

    from sddkit.detectors.mixture import MixtureConfig, expert_names
    from sddkit.errors import ConfigError

    experts = [from_dict(DetectorConfig, c) for c in EXPERTS]
    assert expert_names(MixtureConfig(experts=experts)) == ["expert0", "expert1"]
    assert expert_names(MixtureConfig(experts=experts, expert_names=["mel", "spec"])) == ["mel", "spec"]
    # run folders that coincide (x/m/best, y/m/best) cannot tell the experts apart: numbered instead
    assert expert_names(MixtureConfig(expert_dirs=["x/m/best", "y/m/best"])) == ["expert0", "expert1"]
    assert expert_names(MixtureConfig(expert_dirs=["x/tortoise/best", "yourtts"])) == ["tortoise", "yourtts"]
    for bad, message in (
        (["mel"], "1 expert_names for 2 experts"),
        (["mel", "mel"], "must be distinct"),
        (["mel", " "], "must not be empty"),
    ):
        with pytest.raises(ConfigError, match=message):
            from_dict(MixtureConfig, {"experts": EXPERTS, "expert_names": bad})
