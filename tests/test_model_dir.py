from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from sddkit.detectors import model_dir as md
from sddkit.errors import CheckpointError, ConfigError


class Tiny(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.frozen = nn.Linear(3, width)
        self.head = nn.Linear(width, 2)
        self.register_buffer("stat", torch.zeros(width))
        self.frozen.requires_grad_(False)


@pytest.fixture
def tiny_arch(monkeypatch):
    def build(cfg):
        torch.manual_seed(123)  # stands in for "frozen pretrained weights reloaded from their own files"
        return Tiny(cfg["width"])

    monkeypatch.setitem(md.ARCHITECTURES, "tiny_test", build)
    return build


def test_roundtrip_full_and_trainable(tmp_path, tiny_arch):
    torch.manual_seed(0)
    model = tiny_arch({"width": 4})
    with torch.no_grad():
        model.head.weight.add_(1.0)
        model.stat.fill_(3.0)
    for trainable_only in (False, True):
        d = md.save_model_dir(
            tmp_path / str(trainable_only),
            model,
            model_config={"width": 4},
            architecture="tiny_test",
            trainable_only=trainable_only,
            inference={"threshold": 0.5},
            metadata={"seed": 1},
        )
        loaded = md.load_model_dir(d)
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[k], v), k
        assert loaded.inference == {"threshold": 0.5} and loaded.metadata == {"seed": 1}
        assert not loaded.model.training
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_errors(tmp_path, tiny_arch):
    with pytest.raises(CheckpointError, match="no such model directory"):
        md.load_model_dir(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match=r"not a model directory \(a file\)"):
        md.load_model_dir(tmp_path / "file")
    model = tiny_arch({"width": 4})
    d = md.save_model_dir(tmp_path / "m", model, model_config={"width": 4}, architecture="tiny_test")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "model": {"width": 5}}))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        md.load_model_dir(d)
    (d / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        md.load_model_dir(d)
    (d / "config.json").write_text(json.dumps({**cfg, "architecture": "martian"}))
    with pytest.raises(CheckpointError, match="unknown architecture"):
        md.load_model_dir(d)
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable weights"):
        md.load_model_dir(d)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"thresold": 0.3}, r"unknown key\(s\) \['thresold'\]"),  # a hand-edited typo is not ignored
        ({"weights": "partial"}, r"weights must be one of \['full', 'trainable'\]"),
        ({"model": None}, r"missing key\(s\) \['model'\]"),
    ],
)
def test_config_keys_are_checked(tmp_path, tiny_arch, edit, message):
    d = md.save_model_dir(tmp_path / "m", tiny_arch({"width": 4}), model_config={"width": 4}, architecture="tiny_test")
    cfg = {**json.loads((d / "config.json").read_text()), **edit}
    (d / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if v is not None}))
    with pytest.raises(CheckpointError, match=message):
        md.load_model_dir(d)


def _pretrained_detector(tmp_path, encoder: str, frontend: dict):
    """A detector whose encoder is read from a local Hugging Face directory (tiny, random)."""
    from sddkit.config import from_dict
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    hf_dir = tmp_path / f"{encoder}_hf"
    if not hf_dir.exists():
        build_encoder(EncoderConfig(), preset=encoder).model.save_pretrained(hf_dir)
    config = {
        "frontend": {"name": "ssl", "encoder": {"name": encoder, "pretrained": str(hf_dir)}, **frontend},
        "backend": {"name": "linear"},
    }
    return config, build_detector(from_dict(DetectorConfig, config, "model"))


@pytest.mark.parametrize("encoder", ["wav2vec2_tiny", "wavlm_tiny"])
def test_trainable_only_omits_exactly_the_pretrained_encoder_weights(tmp_path, encoder):
    lora = {"adapter": "lora", "lora": {"rank": 2, "targets": ["q", "k", "v", "out"]}}
    config, model = _pretrained_detector(tmp_path, encoder, lora)
    with torch.no_grad():  # B = 0 at init: give the adapters a visible effect
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    d = md.save_model_dir(tmp_path / "m", model, model_config=config, trainable_only=True)
    stored = set(load_file(str(d / "model.safetensors")))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # the encoder's weights (base projections included, also under WavLM's weight parametrization)
    assert frozen and stored.isdisjoint(frozen)
    assert any("lora_B" in n for n in stored) and any(n.startswith("backend.") for n in stored)
    loaded = md.load_model_dir(d).model
    model.eval()
    x = torch.randn(1, 4000)
    assert torch.allclose(loaded(x).logits, model(x).logits, atol=1e-6)


def test_a_trainable_only_model_refuses_a_pretrained_folder_replaced_since(tmp_path):
    # the frozen encoder weights come from the pretrained folder: another encoder saved there loaded without a
    # word (the scores moved, weights_digest stayed) and an add-experts run grew from it
    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    lora = {"adapter": "lora", "lora": {"rank": 2, "targets": ["q", "v"]}}
    config, model = _pretrained_detector(tmp_path, "wav2vec2_tiny", lora)
    d = md.save_model_dir(tmp_path / "m", model, model_config=config, trainable_only=True)
    recorded = json.loads((d / "config.json").read_text())["pretrained_digest"]
    assert len(recorded) == 64
    md.load_model_dir(d)
    hf_dir = tmp_path / "wav2vec2_tiny_hf"
    torch.manual_seed(123)
    build_encoder(EncoderConfig(), preset="wav2vec2_tiny").model.save_pretrained(hf_dir)  # another encoder
    with pytest.raises(CheckpointError, match="wav2vec2_tiny_hf.*not those this model was trained on"):
        md.load_model_dir(d)
    # a full directory holds the encoder itself and records no such digest
    full = md.save_model_dir(tmp_path / "full", model, model_config=config)
    assert "pretrained_digest" not in json.loads((full / "config.json").read_text())


def test_frozen_trained_experts_are_stored_and_required(tmp_path):
    """Experts frozen by an expert addition hold trained values no pretrained file restores."""
    from sddkit.training.molex import ExpertAddition, grown_frontend_config

    molex = {"adapter": "molex", "molex": {"num_experts": 2, "rank": 2, "targets": ["q", "v"]}}
    config, model = _pretrained_detector(tmp_path, "wav2vec2_tiny", molex)
    ExpertAddition(model, 1)
    config = {**config, "frontend": grown_frontend_config(config["frontend"], model.frontend)}
    old_experts = {n for n, p in model.named_parameters() if ".lora_A.0" in n and not p.requires_grad}
    assert old_experts  # frozen after the addition, and not from a pretrained file
    d = md.save_model_dir(tmp_path / "grown", model, model_config=config, trainable_only=True)
    stored = load_file(str(d / "model.safetensors"))
    assert old_experts <= set(stored)
    loaded = md.load_model_dir(d).model
    for name in old_experts:
        assert torch.equal(loaded.state_dict()[name], model.state_dict()[name])
    del stored[sorted(old_experts)[0]]  # a directory that lacks one: refused, never random values
    digest = md.weights_digest(stored)  # a consistent pair (digests agree) that still lacks a tensor
    md.atomic_save_safetensors(stored, d / "model.safetensors", metadata={md.DIGEST_KEY: digest})
    saved_config = json.loads((d / md.CONFIG_NAME).read_text())
    (d / md.CONFIG_NAME).write_text(json.dumps({**saved_config, "weights_digest": digest}))
    with pytest.raises(CheckpointError, match="missing"):
        md.load_model_dir(d)


def test_a_model_with_merged_lora_is_not_saved(tmp_path):
    lora = {"adapter": "lora", "lora": {"rank": 2, "targets": ["q", "v"]}}
    config, model = _pretrained_detector(tmp_path, "wav2vec2_tiny", lora)
    model.frontend.merge()
    with pytest.raises(ConfigError, match="unmerge"):
        md.save_model_dir(tmp_path / "m", model, model_config=config, trainable_only=True)
    model.frontend.unmerge()
    md.save_model_dir(tmp_path / "m", model, model_config=config, trainable_only=True)


def _save_tiny(directory, model, **kwargs):
    return md.save_model_dir(directory, model, model_config={"width": 4}, architecture="tiny_test", **kwargs)


def test_both_files_carry_one_weights_digest_and_saves_are_reproducible(tmp_path, tiny_arch):
    from safetensors import safe_open

    model = tiny_arch({"width": 4})
    first = _save_tiny(tmp_path / "a", model)
    digest = json.loads((first / md.CONFIG_NAME).read_text())["weights_digest"]
    with safe_open(str(first / md.WEIGHTS_NAME), framework="pt") as f:
        assert f.metadata()[md.DIGEST_KEY] == digest
    assert digest == md.weights_digest(model.state_dict())
    # content-derived, not random: the same weights give byte-identical files
    second = _save_tiny(tmp_path / "b", model)
    for name in (md.CONFIG_NAME, md.WEIGHTS_NAME):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    with torch.no_grad():
        model.head.bias[0] += 1e-3
    assert md.weights_digest(model.state_dict()) != digest
    # dtype is part of the digest: equal values in another precision are other weights
    halved = {k: v.half() for k, v in model.state_dict().items()}
    assert md.weights_digest(halved) != md.weights_digest({k: v.float() for k, v in halved.items()})
    assert md.weights_digest({"x": torch.ones(2, dtype=torch.bfloat16)})  # numpy has no bfloat16: still hashed


def test_an_overwrite_interrupted_between_the_two_files_is_refused(tmp_path, tiny_arch, monkeypatch):
    old = tiny_arch({"width": 4})
    directory = _save_tiny(tmp_path / "m", old)
    new = tiny_arch({"width": 4})
    with torch.no_grad():
        new.head.weight.mul_(-1.0)

    write = md.atomic_write_bytes

    def crash(path, data):
        write(path, data)
        raise KeyboardInterrupt  # the process dies after the config's rename, before the weights'

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(md, "atomic_write_bytes", crash)
        _save_tiny(directory, new)
    with pytest.raises(CheckpointError, match="come from different saves"):
        md.load_model_dir(directory)
    # saving again mends it
    _save_tiny(directory, new)
    torch.testing.assert_close(md.load_model_dir(directory).model.head.weight, new.head.weight)


def test_weights_copied_from_another_model_are_refused_and_old_dirs_without_a_digest_load(tmp_path, tiny_arch):
    a = _save_tiny(tmp_path / "a", tiny_arch({"width": 4}))
    other = tiny_arch({"width": 4})
    with torch.no_grad():
        other.head.bias.fill_(2.0)
    b = _save_tiny(tmp_path / "b", other)
    (a / md.WEIGHTS_NAME).write_bytes((b / md.WEIGHTS_NAME).read_bytes())
    with pytest.raises(CheckpointError, match="different saves"):
        md.load_model_dir(a)
    # a directory written before the digest existed: no key in the config, none in the header
    config = json.loads((b / md.CONFIG_NAME).read_text())
    del config["weights_digest"]
    (b / md.CONFIG_NAME).write_text(json.dumps(config))
    md.atomic_save_safetensors(other.state_dict(), b / md.WEIGHTS_NAME)
    torch.testing.assert_close(md.load_model_dir(b).model.head.bias, other.head.bias)
    config["weights_digest"] = 7
    (b / md.CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="weights_digest must be a string"):
        md.load_model_dir(b)


def _folder_unlike_its_preset(tmp_path, encoder: str):
    """A pretrained folder whose architecture differs from the preset's in what a preset lets differ (the
    convolutions' layout: XLS-R's or base's) and whose preprocessor says not to normalise."""
    from sddkit.frontends.encoders import PRESETS, EncoderConfig, build_encoder

    hf_dir = tmp_path / f"{encoder}_hf"
    overrides = {"conv_bias": True, "feat_extract_norm": "layer", "do_stable_layer_norm": True}
    if PRESETS[encoder].arch.get("feat_extract_norm") == "layer":  # the other layout then
        overrides = {"conv_bias": False, "feat_extract_norm": "group", "do_stable_layer_norm": False}
    if encoder.startswith("whisper"):
        overrides = {"max_source_positions": 750, "scale_embedding": True}
    build_encoder(EncoderConfig(overrides=overrides), preset=encoder).model.save_pretrained(hf_dir)
    (hf_dir / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    return hf_dir


@pytest.mark.parametrize("encoder", ["wav2vec2_tiny", "hubert_tiny", "wavlm_tiny", "whisper_tiny"])
def test_a_full_weights_model_loads_without_its_pretrained_folder(tmp_path, encoder):
    # every encoder weight is stored in a full directory, yet loading rebuilt the architecture from the
    # pretrained folder: a mixture or a fine-tuned model could not be moved to a machine without that folder
    import shutil

    _folder_unlike_its_preset(tmp_path, encoder)
    config, model = _pretrained_detector(tmp_path, encoder, {"adapter": "lora", "lora": {"rank": 2}})
    d = md.save_model_dir(tmp_path / "m", model, model_config=config)
    shutil.rmtree(tmp_path / f"{encoder}_hf")
    saved = json.loads((d / md.CONFIG_NAME).read_text())
    spec = saved["model"]["frontend"]["encoder"]
    assert spec["pretrained"] is None
    assert saved["metadata"]["pretrained_folders"] == [str(tmp_path / f"{encoder}_hf")]
    if encoder.startswith("whisper"):
        assert spec["overrides"]["max_source_positions"] == 750 and not spec.get("normalize")
    else:
        assert "do_stable_layer_norm" in spec["overrides"] and spec["normalize"] is False
    _assert_loads_as(d, model)


def _assert_loads_as(d, model) -> None:
    """The model directory ``d`` loads and scores as ``model`` does."""
    loaded = md.load_model_dir(d).model
    model.eval()
    x = torch.randn(2, 8000)
    assert torch.allclose(loaded(x).logits, model(x).logits, atol=1e-6)


def test_a_mixture_of_pretrained_experts_loads_without_their_folders(tmp_path):
    import shutil

    from sddkit.config import from_dict
    from sddkit.detectors.mixture import MixtureConfig, build_mixture

    _folder_unlike_its_preset(tmp_path, "wav2vec2_tiny")
    expert, _ = _pretrained_detector(tmp_path, "wav2vec2_tiny", {"adapter": "lora", "lora": {"rank": 2}})
    config = {"experts": [expert, expert], "gate": {"name": "classic"}}
    model = build_mixture(from_dict(MixtureConfig, config, "model"))
    d = md.save_model_dir(tmp_path / "mix", model, model_config=config, architecture="mixture")
    assert json.loads((d / md.CONFIG_NAME).read_text())["metadata"]["pretrained_folders"] == [
        str(tmp_path / "wav2vec2_tiny_hf")
    ]
    shutil.rmtree(tmp_path / "wav2vec2_tiny_hf")
    _assert_loads_as(d, model)


def test_a_recipe_expert_config_matches_its_full_weights_directory(tmp_path):
    # a full directory records its encoder's architecture instead of the pretrained folder: the same expert given
    # by config and by directory was refused as "differs from the config stored"
    from sddkit.config import from_dict
    from sddkit.detectors.mixture import MixtureConfig, expert_dir_configs

    _folder_unlike_its_preset(tmp_path, "wav2vec2_tiny")
    config, model = _pretrained_detector(tmp_path, "wav2vec2_tiny", {"adapter": "lora", "lora": {"rank": 2}})
    d = md.save_model_dir(tmp_path / "expert", model, model_config=config)
    mixture = {"experts": [config], "expert_dirs": [str(d)], "gate": {"name": "classic"}}
    assert len(expert_dir_configs(from_dict(MixtureConfig, mixture, "mixture"))) == 1
    other = {**config, "backend": {"name": "linear", "head": "cosine"}}  # a real difference is still refused
    with pytest.raises(ConfigError, match=r"experts\[0\] differs"):
        expert_dir_configs(from_dict(MixtureConfig, {**mixture, "experts": [other]}, "mixture"))
