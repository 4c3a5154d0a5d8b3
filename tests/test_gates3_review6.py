"""Third look at the gates and the MoLEx routers: settings and fine-tuned experts that cannot train are refused."""

from __future__ import annotations

import math

import pytest
import torch
from test_molex2_review5 import _model
from test_train_support import one_thread, write_corpus  # noqa: F401  (one_thread: autouse fixture)

from sddkit.config import from_dict
from sddkit.errors import ConfigError
from sddkit.frontends.molex import MoLExConfig
from sddkit.registry import get_registry


def test_an_infinite_classic_gate_temperature_is_refused():
    # before: accepted (YAML `.inf`); every logit divided to 0 gave uniform weights whatever the input, and no
    # gradient reached the gate: an average ensemble trained for nothing
    with pytest.raises(ConfigError, match="temperature must be a finite number > 0, got inf"):
        get_registry("gate").parse({"name": "classic", "temperature": math.inf}, "mixture.gate")
    with pytest.raises(ConfigError, match="n_mels must be positive, got 0"):
        get_registry("gate").parse({"name": "classic", "n_mels": 0}, "mixture.gate")
    gate = get_registry("gate").build({"name": "classic", "temperature": 0.5}, num_experts=2, embedding_dims=[2, 2])
    w = gate.eval()(0.1 * torch.randn(2, 4000), [])
    torch.testing.assert_close(w.sum(-1), torch.ones(2))


@pytest.mark.parametrize("key", ["product_scale_init", "negative_slope"])
def test_an_infinite_enhanced_gate_scale_is_refused(key):
    # before: accepted; the first forward's weights were NaN (inf * 0 in the scaled product / the LeakyReLU)
    with pytest.raises(ConfigError, match=f"{key} must be finite, got inf"):
        get_registry("gate").parse({"name": "enhanced_mlp", key: math.inf}, "mixture.gate")


@pytest.mark.parametrize("key", ["load_balance_weight", "orthogonality_weight"])
def test_an_infinite_molex_loss_weight_is_refused(key):
    # before: accepted; the training loss was inf (or NaN: inf * the orthogonality of B = 0) from the first step,
    # reported as a diverged run rather than as this setting
    with pytest.raises(ConfigError, match=f"{key} must be a finite number >= 0, got inf"):
        from_dict(MoLExConfig, {key: math.inf}, "frontend.molex")
    with pytest.raises(ConfigError, match=f"{key} must be a finite number >= 0, got -1"):
        from_dict(MoLExConfig, {key: -1}, "frontend.molex")


def test_a_mixture_fine_tuning_an_expert_whose_router_cannot_train_is_refused(tmp_path):
    """A mixture with expert_dirs and freeze_experts: false fine-tunes experts the recipe does not configure, so
    the recipe's router checks never saw them: a weighted top-1 router without load balancing (saved before that
    check existed, say) trained with its random routing kept. Frozen experts (the default) still pass."""
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.model_dir import save_model_dir
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    config = _model({"router": {"name": "topk", "k": 1}, "load_balance_weight": 0.0})
    for name in ("a", "b"):
        torch.manual_seed(0)
        save_model_dir(tmp_path / name, build_detector(from_dict(DetectorConfig, config)), model_config=config)
    train = write_corpus(tmp_path / "data", n=6, samples=2400)

    def recipe(freeze: bool, out: str) -> TrainRecipe:
        mixture = {"expert_dirs": [str(tmp_path / "a"), str(tmp_path / "b")], "gate": "enhanced_mlp"}
        return from_dict(
            TrainRecipe,
            {
                "mixture": {**mixture, "freeze_experts": freeze},
                "data": {
                    "train": {"protocol": str(train), "format": "utterance_table"},
                    "crop_samples": 2400,
                    "batch_size": 3,
                },
                "trainer": {"epochs": 1, "out_dir": str(tmp_path / out), "progress": False},
            },
        )

    with pytest.raises(ConfigError, match=r"mixture.expert_dirs: experts.0.frontend: router topk k=1"):
        Trainer(recipe(False, "tuned")).fit()
    assert not (tmp_path / "tuned" / "checkpoints").exists()
    Trainer(recipe(True, "frozen")).fit()  # the gate alone trains: the experts' routers are not trained
    assert (tmp_path / "frozen" / "final").is_dir()
