from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch

from sddkit.backends.aasist_import import (
    detect_variant,
    import_aasist,
    load_reference_state,
    reference_to_sddkit,
    sddkit_to_reference,
)
from sddkit.cli.main import main
from sddkit.detectors.model_dir import load_model_dir
from sddkit.errors import CheckpointError
from sddkit.registry import get_registry

BACKENDS = get_registry("backend")

# a few key names exactly as the clovaai/aasist Model spells them
REFERENCE_KEYS = {
    "pos_S",
    "master1",
    "master2",
    "first_bn.running_var",
    "encoder.0.0.conv1.weight",
    "encoder.0.0.conv_downsample.weight",
    "encoder.5.0.bn1.num_batches_tracked",
    "GAT_layer_S.att_weight",
    "HtrgGAT_layer_ST22.proj_without_attM.bias",
    "pool_hT2.proj.weight",
    "out_layer.weight",
}


def published_layout(variant: str) -> OrderedDict[str, torch.Tensor]:
    """A random state dict in the published file layout (reference key names), with non-trivial BN stats."""
    model = BACKENDS.build({"name": variant, "reference_compat": True})
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.num_batches_tracked.fill_(1234)
    return OrderedDict(sddkit_to_reference(model.state_dict()))


@pytest.fixture(scope="module")
def light_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("published") / "AASIST-L.pth"
    torch.save(published_layout("aasist_l"), path)
    return path


def test_reference_layout_matches_the_published_files():
    for variant in ("aasist", "aasist_l"):
        state = published_layout(variant)
        assert len(state) == 229  # entries in the published AASIST.pth / AASIST-L.pth
        assert REFERENCE_KEYS <= set(state)
        assert detect_variant(state) == variant
        assert set(sddkit_to_reference(reference_to_sddkit(state))) == set(state)


def test_import_round_trip_is_strict_and_exact(light_weights, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["import-aasist", str(light_weights), "--out", str(out)]) == 0
    assert "aasist_l (85,306 parameters)" in capsys.readouterr().out

    config = json.loads((out / "config.json").read_text())
    assert config["model"]["frontend"]["name"] == "raw"
    assert config["model"]["backend"]["name"] == "aasist_l"
    assert config["model"]["backend"]["reference_compat"] is True
    inference = config["inference"]
    assert (inference["sample_rate"], inference["window_samples"], inference["threshold"]) == (16000, 64600, 0.0)
    assert inference["window_samples"] / inference["sample_rate"] == 4.0375

    loaded = load_model_dir(out).model
    source = BACKENDS.build({"name": "aasist_l", "reference_compat": True})
    source.load_state_dict(reference_to_sddkit(torch.load(light_weights, weights_only=True)), strict=True)
    source.eval()
    x = torch.randn(2, 9000)
    with torch.no_grad():
        got, want = loaded(x), source(x)
    assert torch.equal(got.logits, want.logits)
    assert torch.equal(got.score, want.logits[:, 1] - want.logits[:, 0])  # class 1 = bona fide kept
    assert torch.equal(loaded.backend.encoder[2].bn1.num_batches_tracked, torch.tensor(1234))


def test_existing_model_dir_needs_force(light_weights, tmp_path):
    import_aasist(light_weights, tmp_path / "m")
    with pytest.raises(CheckpointError, match="already holds a model"):
        import_aasist(light_weights, tmp_path / "m")
    assert import_aasist(light_weights, tmp_path / "m", overwrite=True).variant == "aasist_l"


def test_wrapped_and_data_parallel_files_are_accepted(tmp_path):
    state = published_layout("aasist_l")
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = load_reference_state(path)
    assert set(loaded) == set(state)


def test_variant_detection_and_explicit_mismatch(tmp_path):
    state = published_layout("aasist")
    assert detect_variant(state) == "aasist"
    path = tmp_path / "full.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"does not match aasist_l: .*shape \(64"):
        import_aasist(path, tmp_path / "out", variant="aasist_l")


class NotATensor:
    pass


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p: p.write_text('{"model_config": {}}'),
            r"not a PyTorch checkpoint \(neither a zip archive nor a pickle\)",
        ),
        (lambda p: p.write_bytes(b"PK\x03\x04 truncated zip"), "weights_only=True failed"),
        (lambda p: torch.save({"x": NotATensor()}, p), "not a PyTorch file of plain tensors"),
        (lambda p: torch.save([torch.zeros(1)], p), "expected a non-empty state dict"),
        (lambda p: torch.save({"a": 1}, p), "named tensors"),
        (lambda p: torch.save({"pos_S": torch.zeros(1, 23, 24)}, p), "matches no published AASIST variant"),
        (
            lambda p: torch.save({**published_layout("aasist_l"), "extra.weight": torch.zeros(1)}, p),
            "unexpected extra.weight",
        ),
    ],
)
def test_wrong_files_give_clean_errors(tmp_path, capsys, make, message):
    path = tmp_path / "weights.pth"
    make(path)
    with pytest.raises(CheckpointError, match=message):
        import_aasist(path, tmp_path / "out")
    assert main(["import-aasist", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdd import-aasist: error:") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such weights file"):
        import_aasist(tmp_path / "nope.pth", tmp_path / "out")
