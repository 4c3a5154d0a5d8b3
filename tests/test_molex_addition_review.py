"""Review tests: what an expert addition reports as trained, and its errors on models it cannot grow."""

from __future__ import annotations

import pytest
import torch
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)
from torch import nn

from sddkit.errors import ConfigError
from sddkit.training.molex import ExpertAddition


class _GrowingFrontend(nn.Module):
    """One expert tensor per add_experts call (as the MoLEx front-end appends expert groups)."""

    def __init__(self):
        super().__init__()
        self.experts = nn.ParameterList([nn.Parameter(torch.randn(2, 3))])

    def add_experts(self, n: int) -> None:
        self.experts.append(nn.Parameter(torch.zeros(n, 3)))


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.frontend = _GrowingFrontend()
        self.backend = nn.Linear(3, 2)


def test_trainable_names_list_the_backend_when_it_trains():
    # before: with train_backend the back-end trained but molex_report.json's "trainable" (these names)
    # listed only the new experts, so the report said the old model was untouched
    model = _Model()
    growth = ExpertAddition(model, 1, train_backend=True)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"frontend.experts.1", "backend.weight", "backend.bias"}
    assert set(growth.trainable_names) == trained
    frozen_backend = ExpertAddition(_Model(), 1, train_backend=False)
    assert frozen_backend.trainable_names == ["frontend.experts.1"]


def test_growing_a_model_without_a_front_end_names_the_model():
    # before: "...; NoneType has none" for a detector mixture (no .frontend attribute)
    class Mixture(nn.Module):
        def __init__(self):
            super().__init__()
            self.experts = nn.ModuleList([_Model()])

    with pytest.raises(ConfigError) as exc:
        ExpertAddition(Mixture(), 1)
    assert "NoneType" not in str(exc.value) and "Mixture has no front-end" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_expert_use_is_kept_per_layer_where_layers_route_differently():
    """Layer 0 sends A01 to expert 0 and A02 to expert 1, layer 1 the opposite: the layer mean says 50/50 for
    both attacks, the per-layer table shows the routing (it was averaged away before the report saw it)."""
    import numpy as np
    import torch

    from sddkit.training.evaluate import _per_utterance
    from sddkit.training.molex import expert_use_by_attack

    a01 = [[1.0, 0.0], [0.0, 1.0]]
    a02 = [[0.0, 1.0], [1.0, 0.0]]
    stat = torch.tensor([a01, a02, a01])  # (utterances, layers, experts)
    per = _per_utterance(stat, 3)
    assert per.shape == (3, 2, 2)
    attacks = np.array(["A01", "A02", "A01"])
    layered = expert_use_by_attack({"molex_gate_mean": per}, attacks, per_layer=True)["molex_gate_mean"]
    assert layered == {"A01": a01, "A02": a02}
    mean = expert_use_by_attack({"molex_gate_mean": per}, attacks)["molex_gate_mean"]
    assert mean == {"A01": [0.5, 0.5], "A02": [0.5, 0.5]}
