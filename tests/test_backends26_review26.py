"""Review 26 of the back-ends: forward hooks inside AASIST's residual blocks at inference, and `sdd import-aasist`'s
refusals (a scoring window shorter than the model's input, weights of another size or variant)."""

from __future__ import annotations

import json

import pytest
import torch

from sddkit.backends.aasist_import import import_aasist, sddkit_to_reference
from sddkit.backends.fastpath import plain_computation
from sddkit.errors import CheckpointError
from sddkit.registry import get_registry


def _backend(name: str, in_dim: int | None = None, **values):
    torch.manual_seed(0)
    return get_registry("backend").build({"name": name, **values}, in_dim=in_dim).eval()


def _kept_output(model, name: str, x: torch.Tensor, *, plain: bool) -> torch.Tensor:
    """What a forward hook on ``name`` holds after one inference forward (the tensor itself, as a feature extractor
    keeps it: not a copy)."""
    kept = {}
    handle = model.get_submodule(name).register_forward_hook(lambda _m, _i, out: kept.__setitem__("out", out))
    try:
        if plain:
            with plain_computation(), torch.no_grad():
                model(x)
        else:
            with torch.inference_mode():
                model(x)
    finally:
        handle.remove()
    return kept["out"].clone()


@pytest.mark.parametrize(
    ("backend", "shape", "modules"),
    [
        ("aasist", (2, 6001), ("encoder.1.bn1", "encoder.1.conv2", "encoder.2.conv2", "encoder.0.conv2")),
        ("ssl_aasist", (2, 12, 32), ("encoder.3.bn1", "encoder.3.conv2")),
    ],
)
def test_a_hook_in_an_aasist_residual_block_keeps_the_modules_output_at_inference(backend, shape, modules):
    # the inference path applied SELU to bn1's output and added the shortcut to conv2's in place: a hook that kept
    # them (activations collected for analysis) held the activated / summed tensors, not what the module gave
    model = _backend(backend, **({"in_dim": 32} if backend == "ssl_aasist" else {}))
    x = 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    for name in modules:
        expected = _kept_output(model, name, x, plain=True)
        got = _kept_output(model, name, x, plain=False)
        assert torch.allclose(got, expected, atol=1e-5), name
    # without a hook the inference path still gives the plain computation's scores
    with plain_computation(), torch.no_grad():
        plain = model(x).logits
    with torch.inference_mode():
        fast = model(x).logits
    assert torch.allclose(fast, plain, atol=1e-5)


def _run(tmp_path, model_config: dict, **shape):
    """Weights of a clovaai/aasist run of AASIST (at ``shape``'s sizes) and its .conf with ``model_config``."""
    backend = _backend("aasist", reference_compat=True, **shape)
    weights = tmp_path / "run.pth"
    torch.save(sddkit_to_reference(backend.state_dict()), weights)
    conf = tmp_path / "run.conf"
    conf.write_text(json.dumps({"model_config": {"architecture": "AASIST", **model_config}}))
    return weights, conf


@pytest.mark.parametrize(
    ("model_config", "words"),
    [
        ({"nb_samp": 1000}, "nb_samp is 1000 samples, but this AASIST .* takes at least 2315"),
        # filters as long as the window: the sinc convolution leaves fewer frames than the seven 3x pools need
        ({"nb_samp": 64600, "first_conv": 64000}, "nb_samp is 64600 samples, but this AASIST .* takes at least 66187"),
    ],
)
def test_a_scoring_window_shorter_than_the_models_input_is_refused_at_import(tmp_path, model_config, words):
    # it imported, and every `sdd score` of the directory then failed with a traceback ("AASIST needs at least ...")
    weights, conf = _run(tmp_path, model_config)
    with pytest.raises(CheckpointError, match=words):
        import_aasist(weights, tmp_path / "m", config=conf)
    assert not (tmp_path / "m" / "config.json").exists()
    # the shortest window it takes imports
    conf.write_text(json.dumps({"model_config": {"architecture": "AASIST", "nb_samp": 2315}}))
    assert import_aasist(weights, tmp_path / "m", config=conf).detector.backend.min_samples == 2315


def test_weights_that_match_no_published_size_say_how_they_import(tmp_path):
    # the error listed the mismatched shapes and stopped: nothing said that --config imports a run of other sizes
    weights, conf = _run(tmp_path, {"gat_dims": [16, 32]}, gat_dims=(16, 32))
    with pytest.raises(CheckpointError, match=r"matches no published AASIST variant .*--config CONF"):
        import_aasist(weights, tmp_path / "m")
    with pytest.raises(CheckpointError, match=r"does not match aasist: .*--config CONF"):
        import_aasist(weights, tmp_path / "m", variant="aasist")
    assert import_aasist(weights, tmp_path / "m", config=conf).num_parameters > 0


def test_weights_of_the_other_variant_name_it(tmp_path):
    light = _backend("aasist_l", reference_compat=True)
    weights = tmp_path / "AASIST-L.pth"
    torch.save(sddkit_to_reference(light.state_dict()), weights)
    with pytest.raises(
        CheckpointError, match=r"does not match aasist: .*they are aasist_l's weights: --variant aasist_l"
    ):
        import_aasist(weights, tmp_path / "m", variant="aasist")
