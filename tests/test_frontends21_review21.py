"""Pins of adapter and layer-indexing behaviour that no other test held: checked against transformers itself, and
gradient checkpointing's recomputation of the LoRA dropout masks in every encoder family."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sddkit.frontends.lora import LoRAConfig
from sddkit.frontends.ssl import SSLFrontend
from sddkit.registry import get_registry

STABLE = {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}


def build(name, **kw):
    return get_registry("encoder").build({"name": name, **kw})


@pytest.mark.parametrize("overrides", [{}, STABLE], ids=["post_norm", "pre_norm"])
def test_wavlm_layer_k_is_transformers_hidden_state_k(overrides):
    # layer 0 is the input of the first transformer layer (after the feature projection and the positional
    # convolution), not the convolutional feature encoder's output; WavLM's relative position bias is made in layer 0
    torch.manual_seed(0)
    full = build("wavlm_tiny", dropout=0.0, normalize=False, overrides=overrides).eval()
    x = torch.randn(2, 4000)
    with torch.no_grad():
        hidden = full.model(x, output_hidden_states=True).hidden_states
        for k in (0, 1):
            part = build("wavlm_tiny", dropout=0.0, normalize=False, overrides=overrides, layer=k).eval()
            part.load_state_dict(full.state_dict(), strict=False)
            torch.testing.assert_close(part(x), hidden[k], atol=1e-6, rtol=0)


def test_whisper_hidden_states_are_the_transformers_encoders_on_30s_padding():
    # the encoder loop here replaces WhisperEncoder.forward: the same states, positions and final LayerNorm
    torch.manual_seed(0)
    enc = build("whisper_tiny", dropout=0.0, pad_to_30s=True).eval()
    x = torch.randn(2, 16000)
    with torch.no_grad():
        mel = enc.log_mel(F.pad(x, (0, enc.log_mel.n_samples - x.shape[-1])))
        ref = enc.model(mel, output_hidden_states=True)
        ours = enc._run(x, all_states=True)
        keep = ours[0].shape[1]
        assert len(ours) == len(ref.hidden_states) == 3
        for k in range(2):
            torch.testing.assert_close(ours[k], ref.hidden_states[k][:, :keep], atol=1e-6, rtol=0)
        torch.testing.assert_close(ours[-1], ref.last_hidden_state[:, :keep], atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "wavlm", "whisper"])
def test_gradient_checkpointing_recomputes_the_same_lora_dropout_masks(family):
    # the recomputation in backward must draw the masks of the forward: otherwise the gradients belong to
    # another network than the loss
    results, calls = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        encoder = build(f"{family}_tiny", dropout=0.0, gradient_checkpointing=checkpointing)
        front = SSLFrontend(encoder=encoder, adapter="lora", lora=LoRAConfig(rank=2, dropout=0.5)).train()
        with torch.no_grad():
            for _, m in front.adapted_modules():
                m.lora_B.normal_(std=0.5)
        count = [0]
        front.adapted_modules()[0][1].register_forward_hook(lambda *_, c=count: c.__setitem__(0, c[0] + 1))
        x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(1))
        torch.manual_seed(5)
        out = front(x).features
        out.square().sum().backward()
        results.append((out.detach(), [m.lora_A.grad for _, m in front.adapted_modules()]))
        calls.append(count[0])
    assert calls == [1, 2]  # checkpointing really recomputed the layer
    torch.testing.assert_close(results[1][0], results[0][0], atol=0, rtol=0)
    for with_ckpt, without in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(with_ckpt, without, atol=1e-6, rtol=1e-5)
