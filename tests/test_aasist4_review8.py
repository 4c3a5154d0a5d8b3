"""Review 8 (aasist4): AASIST back-end and the import of published AASIST weights."""

from __future__ import annotations

import pytest
import torch

from sddkit.backends.aasist_import import import_aasist, load_reference_state, sddkit_to_reference
from sddkit.cli.main import main
from sddkit.errors import CheckpointError
from sddkit.registry import get_registry


def _published_light() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = get_registry("backend").build({"name": "aasist_l", "reference_compat": True})
    return sddkit_to_reference(model.state_dict())


def test_a_directory_is_not_reported_as_missing(tmp_path, capsys):
    # before: "no such weights file" for a folder that exists (a model directory, models/weights/)
    folder = tmp_path / "weights"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        import_aasist(folder, tmp_path / "out")
    assert main(["import-aasist", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_compiled_model_state_dicts_import(tmp_path, prefix):
    # before: torch.compile's "_orig_mod." prefix was kept, and the file matched no variant
    # ("458 mismatch(es), e.g. missing first_bn.weight, ...")
    state = _published_light()
    path = tmp_path / "compiled.pth"
    torch.save({f"{prefix}{k}": v for k, v in state.items()}, path)
    assert set(load_reference_state(path)) == set(state)
    assert import_aasist(path, tmp_path / "out").variant == "aasist_l"


def test_training_checkpoint_with_model_state_dict_imports(tmp_path):
    # before: the PyTorch tutorials' checkpoint layout was refused ("bad entries ['model_state_dict', ...]")
    state = _published_light()
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 7, "model_state_dict": state, "optimizer_state_dict": optimizer.state_dict()}, path)
    assert set(load_reference_state(path)) == set(state)
    assert import_aasist(path, tmp_path / "out").variant == "aasist_l"


@pytest.mark.parametrize("variant", ["auto", "aasist_l"])
def test_a_file_of_other_names_shows_its_own_keys(tmp_path, variant):
    # before: "matches no published AASIST variant (aasist: 458 mismatch(es), e.g. missing first_bn.weight, missing
    # first_bn.bias, ...)": every reference name listed as missing, none of the names the file does hold
    path = tmp_path / "lightning.pth"
    torch.save({"state_dict": {f"model.{k}": v for k, v in _published_light().items()}}, path)
    with pytest.raises(CheckpointError, match=r"none of its 229 keys \(e\.g\. model\.first_bn\.weight.*'model\.'"):
        import_aasist(path, tmp_path / "out", variant=variant)
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 3), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"none of its 2 keys \(e\.g\. fc\.weight, fc\.bias\)") as info:
        import_aasist(path, tmp_path / "out", variant=variant)
    assert "every key starts with" not in str(info.value)  # 'fc.' is shared, but stripping it names nothing known
