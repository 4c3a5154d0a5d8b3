"""Review of the front-ends and MoLEx training support: defects found, pinned by tests."""

from __future__ import annotations

import copy

import pytest
import torch

from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.training.molex import ExpertAddition


def _molex_aasist_detector():
    cfg = from_dict(
        DetectorConfig,
        {
            "frontend": {
                "name": "ssl",
                "encoder": {"name": "wav2vec2_tiny", "dropout": 0.0},
                "adapter": "molex",
                "molex": {"num_experts": 2, "rank": 2, "targets": ["q", "v"]},
            },
            "backend": {"name": "ssl_aasist"},  # BatchNorm layers with running statistics
        },
    )
    return build_detector(cfg)


@pytest.mark.parametrize("train_backend", [False, True])
def test_expert_addition_keeps_the_frozen_backends_batchnorm_statistics(train_backend):
    """With ``train_backend: false`` the back-end must stay as it was; its BatchNorm running
    statistics (buffers, not parameters) were updated by every training-mode forward on the new
    domain, so the old domain's eval outputs drifted although no frozen parameter moved."""
    torch.manual_seed(0)
    det = _molex_aasist_detector()
    ExpertAddition(det, 1, train_backend=train_backend)
    x_old = torch.randn(3, 8000)
    det.eval()
    with torch.no_grad():
        before_out = det(x_old).logits
    before = {n: b.clone() for n, b in det.named_buffers()}
    assert any(".running_mean" in n for n in before)
    det.train()
    for _ in range(3):  # training-mode forwards on the "new domain"
        det(3.0 * torch.randn(4, 8000) + 0.5)
    changed = [n for n, b in det.named_buffers() if not torch.equal(b, before[n])]
    det.eval()
    with torch.no_grad():
        after_out = det(x_old).logits
    if train_backend:  # a trained back-end updates its statistics as usual
        assert any(n.startswith("backend.") and n.endswith("running_mean") for n in changed)
        return
    assert changed == []
    torch.testing.assert_close(after_out, before_out, rtol=0, atol=0)
    # the frozen norm layers stay in eval mode through detector.train() (and in a deep copy of it), so
    # training sees the back-end exactly as inference does
    for module in (det, copy.deepcopy(det)):
        module.train()
        bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert bns and not any(m.training for m in bns) and module.backend.training


def test_unreadable_pretrained_files_raise_a_config_error_naming_the_directory(tmp_path):
    """A truncated or corrupt weights file (an interrupted copy) surfaced as a bare SafetensorError
    ("header too large") or an UnpicklingError advising ``weights_only=False``, without the path; a
    config.json holding a JSON list crashed with AttributeError."""
    from sddkit.errors import ConfigError
    from sddkit.registry import get_registry

    encoders = get_registry("encoder")
    good = tmp_path / "good"
    encoders.build("wav2vec2_tiny").model.save_pretrained(good)
    config_text = (good / "config.json").read_text()

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text(config_text)
    (corrupt / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes()[:100])
    with pytest.raises(ConfigError, match="cannot load weights from .*corrupt"):
        encoders.build({"name": "wav2vec2_tiny", "pretrained": str(corrupt)})

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(config_text)
    (pickled / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="cannot load weights from .*pickled"):
        encoders.build({"name": "wav2vec2_tiny", "pretrained": str(pickled)})

    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        encoders.build({"name": "wav2vec2_tiny", "pretrained": str(listed)})


def test_whisper_length_limit_is_exact_and_its_error_says_by_how_much():
    """The longest input is 480,159 samples (3,000 mel frames); one sample more failed with
    "Whisper encodes at most 30 s, got 30.0 s", which reads as a contradiction."""
    from sddkit.errors import AudioTooLongError
    from sddkit.registry import get_registry

    enc = get_registry("encoder").build({"name": "whisper_tiny", "dropout": 0.0}).eval()
    with torch.no_grad():
        assert enc(torch.zeros(1, 480_159)).shape == (1, 1500, 32)
        with pytest.raises(AudioTooLongError, match="at most 480159 samples .* got 480160"):
            enc(torch.zeros(1, 480_160))


def test_weights_inside_the_encoders_own_layers_that_do_not_load_are_named(tmp_path, caplog):
    """A tensor under one of the encoder's own modules (LoRA factors saved into its folder) was dropped with
    only transformers' printed load report; a pre-training head (quantizer) is left out on purpose, quietly."""
    import logging

    from safetensors.torch import load_file, save_file

    from sddkit.registry import get_registry

    encoders = get_registry("encoder")
    folder = tmp_path / "enc"
    encoders.build("wav2vec2_tiny").model.save_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    weights["encoder.layers.0.attention.q_proj.lora_A"] = torch.zeros(2, 4)
    weights["quantizer.codevectors"] = torch.zeros(1, 4, 2)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="sddkit.frontends.encoders"):
        encoders.build({"name": "wav2vec2_tiny", "pretrained": str(folder)})
    warned = [r.getMessage() for r in caplog.records if r.name == "sddkit.frontends.encoders"]
    assert len(warned) == 1 and "q_proj.lora_A" in warned[0] and "quantizer" not in warned[0]
    caplog.clear()
    del weights["encoder.layers.0.attention.q_proj.lora_A"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="sddkit.frontends.encoders"):
        encoders.build({"name": "wav2vec2_tiny", "pretrained": str(folder)})
    assert not [r for r in caplog.records if r.name == "sddkit.frontends.encoders"]
