"""Mixtures (review 13): a resume without the experts' model directories, and what joint fine-tuning trains."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from test_train_support import one_thread, write_corpus  # noqa: F401  (autouse fixture)

import sddkit
from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.mixture import MixtureConfig, build_mixture
from sddkit.detectors.model_dir import load_model_dir, save_model_dir
from sddkit.errors import CheckpointError
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer

EXPERTS = [
    {"frontend": {"name": "logmel", "n_mels": 16}, "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}},
    {"frontend": {"name": "logspec"}, "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}},
]
GATE = {"name": "enhanced_mlp", "hidden": 8}


def _expert_dirs(tmp_path) -> list[str]:
    dirs = []
    for i, cfg in enumerate(EXPERTS):  # stage 1 stands in: two "trained" expert model directories
        det = build_detector(from_dict(DetectorConfig, cfg))
        dirs.append(str(save_model_dir(tmp_path / "experts" / f"expert{i}" / "best", det, model_config=cfg)))
    return dirs


def _recipe(tmp_path, dirs: list[str], steps: int) -> TrainRecipe:
    csv = write_corpus(tmp_path / "audio", n=8, samples=4000)
    spec = {"protocol": str(csv), "format": "utterance_table"}
    return from_dict(
        TrainRecipe,
        {
            "seed": 0,
            "mixture": {"expert_dirs": dirs, "gate": GATE},
            "data": {"train": spec, "val": spec, "crop_samples": 4000, "batch_size": 4},
            "optimizer": {"lr": 1e-2},
            "trainer": {"max_steps": steps, "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )


def test_a_mixture_resumes_and_its_exports_load_without_the_expert_dirs(tmp_path):
    dirs = _expert_dirs(tmp_path)
    trained = [load_model_dir(d).model.state_dict() for d in dirs]
    Trainer(_recipe(tmp_path, dirs, steps=1)).fit()
    shutil.rmtree(tmp_path / "experts")  # moved or removed since: the checkpoint holds every expert's weights

    result = Trainer(_recipe(tmp_path, dirs, steps=2), resume=True).fit()

    assert result.step == 2
    for name in ("best", "final"):
        loaded = load_model_dir(tmp_path / "run" / name)
        # the frozen experts are the trained ones, from the checkpoint, not experts built afresh from the configs
        for expert, weights in zip(loaded.model.experts, trained, strict=True):
            for key, value in weights.items():
                assert torch.equal(expert.state_dict()[key], value), (name, key)
        assert loaded.model_config["expert_names"] == ["expert0", "expert1"]  # still named after their run folders
        assert loaded.metadata["expert_dirs"] == dirs  # where they came from, as provenance
        detector = sddkit.load_detector(tmp_path / "run" / name)
        scored = detector.score(np.random.default_rng(0).standard_normal(8000).astype(np.float32), 16000)
        assert np.isfinite(scored.score)


def test_a_checkpoint_without_the_experts_configs_still_reads_them_from_expert_dirs(tmp_path):
    dirs = _expert_dirs(tmp_path)
    Trainer(_recipe(tmp_path, dirs, steps=1)).fit()
    latest = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    doc_path = latest / ckpt.STATE_JSON
    document = json.loads(doc_path.read_text())
    del document["state"]["model_config"]  # as a checkpoint that did not record them
    doc_path.write_text(json.dumps(document))
    shutil.move(tmp_path / "experts", tmp_path / "moved")

    with pytest.raises(CheckpointError) as err:
        Trainer(_recipe(tmp_path, dirs, steps=2), resume=True).fit()
    message = str(err.value)
    assert "expert_dirs[0]" in message and "no such model directory" in message
    assert str(latest) in message and "does not record the experts' configs" in message
    assert "\n" not in message

    shutil.move(tmp_path / "moved", tmp_path / "experts")  # restored: the resume goes on as before
    assert Trainer(_recipe(tmp_path, dirs, steps=2), resume=True).fit().step == 2


@pytest.mark.parametrize("gate", ["enhanced_mlp", "attention"])
def test_joint_fine_tuning_trains_the_experts_through_the_gates_input_too(gate):
    """Unfrozen experts get gradient from the gate's weights alone (the embeddings the gate reads are not
    detached, as in end-to-end MoE training and the MELE reference code); frozen ones get none."""
    spec = {"name": gate, "d_model": 8, "heads": 2, "ff_dim": 16} if gate == "attention" else {"name": gate}
    experts = [from_dict(DetectorConfig, e) for e in EXPERTS]
    for freeze in (False, True):
        torch.manual_seed(0)
        mixture = build_mixture(MixtureConfig(experts=experts, gate=spec, freeze_experts=freeze)).train()
        out = mixture(torch.randn(3, 4000))
        # the first expert's weight alone: through the gate only (the experts' class probabilities do not enter it)
        out.stats["gate_weights"][:, 0].sum().backward()
        for i, expert in enumerate(mixture.experts):
            grads = [p.grad for p in expert.parameters()]
            if freeze:
                assert all(g is None for g in grads), i
            else:
                assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), i
        assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in mixture.gate.parameters())
