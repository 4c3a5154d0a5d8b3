"""Review 13, transformers compatibility: the encoders under transformers 4 (pyproject allows 4.48 and later).

These run on the installed transformers (5.x) as well as on 4.x; under 5 the transformers 4 interfaces are imitated:
the version string for ``from_pretrained``'s dtype argument, Whisper encoder layers with the 4.x call signature (a
required head mask, a tuple returned) around the installed ones, WavLM's 4.x attention call."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from sddkit.frontends.encoders import EncoderConfig, build_encoder


def _build(name: str, **kwargs):
    return build_encoder(EncoderConfig(**kwargs), preset=name)


class _V4WhisperLayer(nn.Module):
    """A Whisper encoder layer as transformers 4 calls it: ``(hidden, mask, layer_head_mask, output_attentions)``,
    returning ``(hidden,)``; no ``gradient_checkpointing`` flag of its own (WhisperEncoder.forward checkpointed it)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.inner.gradient_checkpointing = False  # only the 4.x path may checkpoint it
        # the installed layer's own arguments (so this runs under transformers 4 too)
        self.inner_args = (None,) if "layer_head_mask" in inspect.signature(inner.forward).parameters else ()
        self.calls = 0

    def forward(self, hidden_states, attention_mask, layer_head_mask, output_attentions=False):
        assert layer_head_mask is None and not output_attentions
        self.calls += 1
        out = self.inner(hidden_states, attention_mask, *self.inner_args)
        return (out[0] if isinstance(out, tuple) else out,)


def _as_v4(enc) -> list[_V4WhisperLayer]:
    layers = [_V4WhisperLayer(layer) for layer in enc.model.layers]
    enc.model.layers = nn.ModuleList(layers)
    return layers


@pytest.mark.parametrize("layer", ["last", "weighted", 1])
def test_whisper_runs_encoder_layers_with_the_transformers_4_signature(layer):
    """transformers 4.45's WhisperEncoderLayer.forward requires ``layer_head_mask`` and returns a tuple: every
    Whisper forward failed with "missing 1 required positional argument: 'layer_head_mask'"."""
    torch.manual_seed(0)
    enc = _build("whisper_tiny", dropout=0.0, layer=layer).eval()
    wav = torch.randn(2, 8000)
    with torch.no_grad():
        expected = enc(wav)
        _as_v4(enc)
        got = enc(wav)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_whisper_gradient_checkpointing_checkpoints_transformers_4_layers():
    """Before transformers' GradientCheckpointingLayer, WhisperEncoder.forward checkpointed each layer; sddkit runs
    the layers in its own loop, so there ``gradient_checkpointing: true`` must checkpoint them there (each layer
    recomputed in backward), with the same gradients."""
    wav = torch.randn(2, 8000)

    def run(checkpointing: bool):
        torch.manual_seed(0)
        enc = _build("whisper_tiny", freeze=False, dropout=0.0, gradient_checkpointing=checkpointing).train()
        layers = _as_v4(enc)
        enc(wav).square().mean().backward()
        grads = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
        return [layer.calls for layer in layers], grads

    calls, grads = run(True)
    plain_calls, plain_grads = run(False)
    assert plain_calls == [1, 1]
    assert calls == [2, 2]  # forward, then the recompute in backward
    assert grads.keys() == plain_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], msg=name)


def test_pretrained_weights_load_as_float32_with_the_installed_transformers_dtype_argument(tmp_path, monkeypatch):
    """``from_pretrained(dtype=...)`` exists from transformers 4.56; 4.45 handed the unknown ``dtype`` to the model's
    __init__ (TypeError), so no ``pretrained`` folder loaded. Older versions get ``torch_dtype``."""
    import transformers
    from packaging.version import Version

    torch.manual_seed(0)
    _build("wav2vec2_tiny").model.half().save_pretrained(tmp_path)  # a float16 folder, as published models often are
    seen: list[dict] = []
    original = transformers.Wav2Vec2Model.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.Wav2Vec2Model, "from_pretrained", classmethod(spy))
    cases = [("4.45.2", "torch_dtype"), ("4.56.0", "dtype"), ("5.0.0", "dtype")]
    if Version(transformers.__version__).release < (4, 56):  # an old one takes no dtype=, whatever it is told
        cases = [(transformers.__version__, "torch_dtype")]
    for version, name in cases:
        monkeypatch.setattr(transformers, "__version__", version)
        enc = _build("wav2vec2_tiny", pretrained=str(tmp_path))
        assert seen[-1].get(name) is torch.float32, version
        assert {"dtype", "torch_dtype"} & seen[-1].keys() == {name}, version
        assert {p.dtype for p in enc.model.parameters()} == {torch.float32}, version


def test_wavlm_module_attention_takes_the_transformers_4_call():
    """With LoRA / MoLEx on q/k/v/out, WavLM attention is switched to one that calls the projection modules;
    transformers 4.45 calls it with a fourth argument (output_attentions), which it refused (TypeError)."""
    torch.manual_seed(0)
    enc = _build("wavlm_tiny", dropout=0.0).eval()
    enc.projection_slots(["q"])
    attn = enc.transformer_layers()[0].attention
    hidden = torch.randn(2, 7, enc.output_dim)
    bias = torch.randn(2 * attn.num_heads, 7, 7)
    with torch.no_grad():
        out5, weights5 = attn.torch_multi_head_self_attention(hidden, None, bias)
        out4, weights4 = attn.torch_multi_head_self_attention(hidden, None, bias, False)
    torch.testing.assert_close(out4, out5, rtol=0, atol=0)
    assert weights4 is None and weights5 is None
