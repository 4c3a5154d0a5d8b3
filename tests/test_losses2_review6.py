"""Training objectives (review 6, second look): settings the chosen objective never reads are refused when the
recipe is read, instead of training something else than the recipe says."""

from __future__ import annotations

import pytest

from sddkit.config import from_dict
from sddkit.errors import ConfigError
from sddkit.registry import get_registry
from sddkit.training.recipe import LossConfig
from sddkit.training.sam import SAMConfig


def test_oc_margins_without_oc_softmax_are_refused():
    # kind: ce never reads the margins: this recipe trained plain cross-entropy while it read like OC-softmax
    with pytest.raises(ConfigError, match=r"oc_margins: \[0.3, 0.8\] is read by kind: oc_softmax only"):
        from_dict(LossConfig, {"oc_margins": [0.3, 0.8]})
    # the margins with their objective, the published default left as it is, and a cross-entropy recipe all pass
    assert tuple(from_dict(LossConfig, {"kind": "oc_softmax", "oc_margins": [0.3, 0.8]}).oc_margins) == (0.3, 0.8)
    assert tuple(from_dict(LossConfig, {"kind": "ce", "oc_margins": [0.2, 0.9]}).oc_margins) == (0.2, 0.9)
    assert from_dict(LossConfig, {"class_weights": [0.1, 0.9]}).kind == "ce"


def test_eta_without_adaptive_sam_is_refused():
    # plain SAM's neighbourhood is a ball: eta (ASAM's offset) changes nothing, so the recipe would mislead
    reg = get_registry("strategy")
    with pytest.raises(ConfigError, match=r"eta: 0.5 is read by ASAM only \(adaptive: true\)"):
        reg.parse({"name": "sam", "rho": 0.05, "eta": 0.5})
    assert reg.build({"name": "sam", "rho": 1.0, "adaptive": True, "eta": 0.5}).cfg.eta == 0.5
    assert SAMConfig(rho=0.05).eta == 0.01  # the default is no setting of the user's: plain SAM takes it
