"""`sdd import-aasist --config X.conf`: weights of a clovaai/aasist run trained under other pool ratios,
temperatures or input length than the published AASIST's import with them (they leave no trace in the shapes)."""

from __future__ import annotations

import json

import pytest
import torch

from sddkit.backends.aasist_import import import_aasist, sddkit_to_reference
from sddkit.cli.main import main
from sddkit.detectors.model_dir import load_model_dir
from sddkit.errors import CheckpointError
from sddkit.registry import get_registry

_OWN = {"pool_ratios": [0.6, 0.6, 0.6, 0.6], "temperatures": [1.0, 1.0, 10.0, 10.0]}


def _own_run(tmp_path, nb_samp=48000):
    """The weights and .conf of a clovaai/aasist AASIST-L run trained under other pool ratios and temperatures."""
    torch.manual_seed(0)
    light = {"filts": [70, [1, 32], [32, 32], [32, 24], [24, 24]], "gat_dims": [24, 32]}
    backend = get_registry("backend").build({"name": "aasist", **light, **_OWN, "reference_compat": True}).eval()
    weights = tmp_path / "run.pth"
    torch.save(sddkit_to_reference(backend.state_dict()), weights)
    conf = tmp_path / "AASIST-L-own.conf"
    model_config = {"architecture": "AASIST", "nb_samp": nb_samp, "first_conv": 128, **light, **_OWN}
    conf.write_text(json.dumps({"batch_size": 24, "model_config": {**model_config, "freq_aug": "False"}}))
    return backend, weights, conf


def test_weights_import_with_the_configuration_they_were_trained_under(tmp_path, capsys):
    backend, weights, conf = _own_run(tmp_path)
    x = 0.1 * torch.randn(2, 48000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = backend(x).logits
    assert main(["import-aasist", str(weights), "--config", str(conf), "--out", str(tmp_path / "m")]) == 0
    loaded = load_model_dir(tmp_path / "m")
    assert loaded.inference["window_samples"] == 48000  # nb_samp: the input length it was trained on
    with torch.no_grad():
        got = loaded.model.eval()(x).logits
    assert torch.allclose(got, expected, atol=1e-5)
    metadata = json.loads((tmp_path / "m" / "config.json").read_text())["metadata"]
    assert metadata["config"] == "AASIST-L-own.conf" and len(metadata["config_sha256"]) == 64
    # without it, the published AASIST-L's values: the same weights score otherwise, with nothing said
    import_aasist(weights, tmp_path / "published")
    with torch.no_grad():
        published = load_model_dir(tmp_path / "published").model.eval()(x).logits
    assert not torch.allclose(published, expected, atol=1e-3)


def test_a_configuration_that_is_not_aasists_is_refused(tmp_path):
    _, weights, conf = _own_run(tmp_path)
    for bad, words in (
        ({"model_config": {"architecture": "RawNet2"}}, "model_config.architecture is 'RawNet2'; only AASIST"),
        ({"model_config": {"architecture": "AASIST", "nb_layers": 3}}, "key(s) 'nb_layers' are not AASIST's"),
        ({"model_config": {"architecture": "AASIST", "nb_samp": 0}}, "nb_samp must be a positive number"),
        ({"model_config": {"gat_dims": [64, 32]}}, "does not match the model of"),  # AASIST's, for AASIST-L weights
    ):
        conf.write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=words.replace("(", r"\(").replace(")", r"\)")):
            import_aasist(weights, tmp_path / "x", config=conf)
    conf.write_text("not json")
    with pytest.raises(CheckpointError, match="not a clovaai/aasist configuration"):
        import_aasist(weights, tmp_path / "x", config=conf)
    conf.write_text(json.dumps({"model_config": {"architecture": "AASIST"}}))
    with pytest.raises(CheckpointError, match="--variant aasist_l and --config .* both give the architecture"):
        import_aasist(weights, tmp_path / "x", config=conf, variant="aasist_l")


def test_the_published_aasist_l_configuration_names_the_variant_aasist_l(tmp_path, capsys):
    # AASIST-L.conf's values are the registered aasist_l back-end's: the import was recorded as `aasist` at its size
    torch.manual_seed(0)
    backend = get_registry("backend").build({"name": "aasist_l", "reference_compat": True}).eval()
    weights = tmp_path / "AASIST-L.pth"
    torch.save(sddkit_to_reference(backend.state_dict()), weights)
    light = {"first_conv": 128, "filts": [70, [1, 32], [32, 32], [32, 24], [24, 24]], "gat_dims": [24, 32]}
    published = {"pool_ratios": [0.4, 0.5, 0.7, 0.5], "temperatures": [2.0, 2.0, 100.0, 100.0]}
    conf = tmp_path / "AASIST-L.conf"
    conf.write_text(json.dumps({"model_config": {"architecture": "AASIST", "nb_samp": 64600, **light, **published}}))
    assert main(["import-aasist", str(weights), "--config", str(conf), "--out", str(tmp_path / "m")]) == 0
    assert "imported aasist_l (85,306 parameters)" in capsys.readouterr().out
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"]["backend"]["name"] == "aasist_l" and config["metadata"]["variant"] == "aasist_l"
    # other values stay an `aasist` with them (the run above)
    _, own, own_conf = _own_run(tmp_path)
    assert import_aasist(own, tmp_path / "own", config=own_conf).variant == "aasist"
