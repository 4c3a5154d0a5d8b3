"""Review 6 (aasist3): provenance recorded by ``sdd import-aasist``."""

from __future__ import annotations

import json

import torch

from sddkit.backends.aasist_import import import_aasist, sddkit_to_reference
from sddkit.registry import get_registry


def test_import_metadata_names_the_layout_not_a_claimed_origin(tmp_path):
    # any state dict of the reference Model imports (the ASVspoof 5 baseline, one's own training run),
    # so the model directory must not claim every file is the ICASSP 2022 published checkpoint
    torch.manual_seed(0)
    model = get_registry("backend").build({"name": "aasist_l", "reference_compat": True})
    weights = tmp_path / "my_own_run.pth"
    torch.save(sddkit_to_reference(model.state_dict()), weights)
    out = tmp_path / "model"
    import_aasist(weights, out)
    metadata = json.loads((out / "config.json").read_text())["metadata"]
    assert "published weights" not in metadata["source"]
    assert "clovaai/aasist layout" in metadata["source"]
    assert metadata["imported_from"] == "my_own_run.pth"
