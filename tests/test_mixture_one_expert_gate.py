"""A trained gate over one frozen expert learns nothing: the recipe's mixture says so before a run spends its epochs."""

from __future__ import annotations

import logging

import pytest
from test_detector_review import TINY_LCNN

from sddkit.config import from_dict
from sddkit.detectors.mixture import MixtureConfig
from sddkit.training.assembly import build_recipe_mixture

EXPERT = {"frontend": {"name": "logmel"}, "backend": TINY_LCNN}
WARNING = "gate over one frozen expert gets no gradient"


def _build(tmp_path, experts, gate, freeze=True):
    cfg = from_dict(MixtureConfig, {"experts": experts, "gate": {"name": gate}, "freeze_experts": freeze}, "model")
    return build_recipe_mixture(cfg, ckpt_dir=None, out_dir=tmp_path)


@pytest.mark.parametrize("gate", ["classic", "enhanced_mlp"])
def test_a_trained_gate_over_one_frozen_expert_is_warned(tmp_path, caplog, gate):
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        _build(tmp_path, [EXPERT], gate)
    assert WARNING in caplog.text and "gate: average" in caplog.text


@pytest.mark.parametrize(
    ("experts", "gate", "freeze"),
    [([EXPERT, EXPERT], "classic", True), ([EXPERT], "average", True), ([EXPERT], "classic", False)],
)
def test_no_warning_where_training_can_change_the_scores(tmp_path, caplog, experts, gate, freeze):
    """Two experts (the gate chooses), nothing trainable (exported as built), or an unfrozen expert (it trains)."""
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        _build(tmp_path, experts, gate, freeze)
    assert WARNING not in caplog.text
