"""Review 6 (third look at MoLEx expert addition)."""

from __future__ import annotations

import pytest

from sddkit.config import from_dict
from sddkit.errors import ConfigError
from sddkit.training.recipe import MolexConfig


def test_train_backend_without_expert_addition_is_refused():
    # before: molex.train_backend was read by the expert addition only; with add_experts 0 it was silently ignored
    with pytest.raises((ConfigError, ValueError), match="train_backend"):
        from_dict(MolexConfig, {"train_backend": True})
    assert from_dict(MolexConfig, {"train_backend": True, "add_experts": 1}).train_backend
    assert not from_dict(MolexConfig, {}).train_backend
