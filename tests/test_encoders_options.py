"""Encoder options: Whisper ``pad_to_30s`` (the stock 30 s pipeline) and ``normalize`` read from a local
folder's ``preprocessor_config.json`` (tiny random models, folders written in tmp_path)."""

from __future__ import annotations

import json

import pytest
import torch

from sddkit.errors import AudioTooLongError, ConfigError
from sddkit.frontends.encoders import EncoderConfig
from sddkit.registry import get_registry


def build(name: str, **params):
    return get_registry("encoder").build({"name": name, **params})


def stock_whisper_states(enc, wav: torch.Tensor) -> tuple:
    """transformers' own pipeline: WhisperFeatureExtractor (pads to 30 s) + the stock WhisperEncoder forward."""
    from transformers import WhisperFeatureExtractor

    feats = WhisperFeatureExtractor()(list(wav.numpy()), sampling_rate=16000, return_tensors="pt").input_features
    assert feats.shape[-1] == 3000
    out = enc.model(feats, output_hidden_states=True)
    return out.hidden_states, out.last_hidden_state


# 3840: 24 mel frames -> 12 positions; 4000: 25 -> 13; 3900: 24 -> 12 (ceil(3900 / 320) would be 13: the
# cut keeps the unpadded path's count, floor(T / 160) mel frames, not every position centred in the input);
# 16123: 100 -> 50, not a multiple of the hop; 480000: exactly 30 s, nothing to pad
@pytest.mark.parametrize("samples, frames", [(3840, 12), (3900, 12), (4000, 13), (16_123, 50), (480_000, 1500)])
def test_whisper_pad_to_30s_equals_the_stock_extractor_and_encoder_cut_to_the_input(samples, frames):
    enc = build("whisper_tiny", dropout=0.0, pad_to_30s=True).eval()
    unpadded = build("whisper_tiny", dropout=0.0).eval()
    unpadded.load_state_dict(enc.state_dict())
    wav = 0.1 * torch.randn(2, samples)
    with torch.no_grad():
        ours = enc(wav)
        _, ref = stock_whisper_states(enc, wav)
        short = unpadded(wav)
    assert ours.shape == short.shape == (2, frames, 32)  # the back-end sees as many frames as without padding
    torch.testing.assert_close(ours, ref[:, :frames], atol=1e-5, rtol=1e-5)
    if samples < 480_000:  # the padding frames enter the attention: the features do change
        assert (ours - short).abs().max() > 1e-3
    else:
        torch.testing.assert_close(ours, short)


@pytest.mark.parametrize("layer", [1, "weighted"])
def test_whisper_pad_to_30s_with_an_inner_layer_or_the_weighted_sum(layer):
    full = build("whisper_tiny", dropout=0.0, pad_to_30s=True).eval()
    enc = build("whisper_tiny", dropout=0.0, pad_to_30s=True, layer=layer).eval()
    enc.load_state_dict(full.state_dict(), strict=False)  # layer 1: the truncated model holds a subset
    wav = 0.1 * torch.randn(1, 8000)
    with torch.no_grad():
        ours = enc(wav)
        states, last = stock_whisper_states(full, wav)
    frames = 25  # 8000 // 160 = 50 mel frames -> 25 positions
    expected = states[1] if layer == 1 else (sum(states[:-1]) + last) / len(states)  # zeros: uniform weights
    assert ours.shape == (1, frames, 32)
    torch.testing.assert_close(ours, expected[:, :frames], atol=1e-5, rtol=1e-5)


def test_pad_to_30s_is_off_by_default_whisper_only_and_keeps_the_length_limit():
    assert EncoderConfig().pad_to_30s is False
    assert build("whisper_tiny").pad_to_30s is False
    for name in ("wav2vec2_tiny", "hubert_tiny", "wavlm_tiny"):
        with pytest.raises(ConfigError, match="pad_to_30s") as err:
            build(name, pad_to_30s=True)
        assert "\n" not in str(err.value)
    enc = build("whisper_tiny", pad_to_30s=True)
    with pytest.raises(AudioTooLongError, match="at most 480159 samples"):
        enc(torch.zeros(1, 480_160))


# --- normalize from preprocessor_config.json ----------------------------------------------------


def save_folder(tmp_path, name: str, do_normalize: bool | None, *, file: bool = True):
    """A tiny model directory; ``do_normalize`` None writes a preprocessor_config.json without the key."""
    folder = tmp_path / f"{name}-{do_normalize}-{file}"
    build(name).model.save_pretrained(folder)
    if file:
        pre = {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 16000, "feature_size": 1}
        if do_normalize is not None:
            pre["do_normalize"] = do_normalize
        (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    return str(folder)


# wav2vec2_tiny has a layer-norm feature extractor (today's rule: normalise), hubert_tiny a group-norm one
@pytest.mark.parametrize(
    "name, do_normalize, file, expected",
    [
        ("wav2vec2_tiny", False, True, False),
        ("wav2vec2_tiny", True, True, True),
        ("hubert_tiny", True, True, True),
        ("hubert_tiny", False, True, False),
        ("wavlm_tiny", True, True, True),
        ("wav2vec2_tiny", None, True, True),  # file without the key: today's rule
        ("hubert_tiny", None, True, False),
        ("wav2vec2_tiny", None, False, True),  # no file: today's rule
        ("hubert_tiny", None, False, False),
    ],
)
def test_normalize_none_follows_the_folders_preprocessor_config(tmp_path, name, do_normalize, file, expected):
    folder = save_folder(tmp_path, name, do_normalize, file=file)
    assert build(name, pretrained=folder).normalize is expected
    # an explicit value in the recipe wins over the file
    assert build(name, pretrained=folder, normalize=not expected).normalize is (not expected)


def test_normalize_from_the_folder_changes_the_features(tmp_path):
    folder = save_folder(tmp_path, "hubert_tiny", True)
    enc = build("hubert_tiny", pretrained=folder, dropout=0.0).eval()
    x = torch.randn(1, 4000)
    with torch.no_grad():
        torch.testing.assert_close(enc(3.0 * x + 0.25), enc(x), atol=1e-4, rtol=1e-4)


def test_an_unreadable_preprocessor_config_is_a_one_line_error(tmp_path):
    folder = save_folder(tmp_path, "wav2vec2_tiny", True)
    pre = tmp_path / folder / "preprocessor_config.json"
    for text, match in [("{not json", "cannot read"), ('{"do_normalize": "yes"}', "do_normalize")]:
        pre.write_text(text)
        with pytest.raises(ConfigError, match=match) as err:
            build("wav2vec2_tiny", pretrained=folder)
        assert "\n" not in str(err.value)
        assert build("wav2vec2_tiny", pretrained=folder, normalize=False).normalize is False  # not read then
