"""Review 9 of the back-ends and spectral/encoder front-ends."""

from __future__ import annotations

import pytest
import torch

from sddkit.features.spectral import LFCC, LFCCConfig, LinearSpectrogram, LinearSpectrogramConfig, LogMel, LogMelConfig


@pytest.mark.parametrize(
    "module",
    [
        LogMel(LogMelConfig(n_fft=401, win_length=400)),
        LinearSpectrogram(LinearSpectrogramConfig(n_fft=401, win_length=400)),
        LFCC(LFCCConfig(n_fft=321)),
    ],
)
def test_num_frames_agrees_with_the_features_for_an_odd_n_fft(module) -> None:
    # torch pads n_fft // 2 on each side of centred frames: with an odd n_fft a length that is a multiple of the
    # hop gives one frame less than 1 + T // hop (num_frames said 101 for 100 frames of a 1 s input)
    for length in (1, 159, 160, 161, 320, 16000, 16001):
        assert module.num_frames(length) == module(torch.randn(length)).shape[-1], length


@pytest.mark.parametrize("head", ["Cosine", "cosine ", "arcface"])
def test_an_unknown_head_is_refused_not_built_as_a_linear_one(head) -> None:
    from sddkit.backends.lcnn import LCNNConfig

    # a config built in Python skips the recipe loader's check: the LCNN got a plain linear output layer
    with pytest.raises(ValueError, match=f"head must be 'linear' or 'cosine', got '{head}'"):
        LCNNConfig(head=head)


def test_an_unknown_linear_layout_is_refused_when_configured() -> None:
    from sddkit.backends.linear import LinearHeadConfig

    # it built into a KeyError: 'frame' next to a front-end of another layout, or failed at the first forward
    with pytest.raises(ValueError, match="layout must be 'auto', 'frames' or 'spectral', got 'frame'"):
        LinearHeadConfig(layout="frame")


@pytest.mark.parametrize("layer", ["weighted ", "12", "middle", True])
def test_an_encoder_layer_that_is_neither_an_index_nor_a_known_name_is_refused(layer) -> None:
    from sddkit.frontends.encoders import EncoderConfig

    # any other string ran the encoder as layer 'last' without a word; True selected layer 1
    with pytest.raises(ValueError, match="layer must be an integer >= 0, 'last' or 'weighted'"):
        EncoderConfig(layer=layer)


def test_valid_encoder_layers_and_heads_still_build() -> None:
    from sddkit.backends.linear import LinearHeadConfig
    from sddkit.frontends.encoders import EncoderConfig

    for layer in ("last", "weighted", 0, 3):
        assert EncoderConfig(layer=layer).layer == layer
    for layout in ("auto", "frames", "spectral"):
        assert LinearHeadConfig(layout=layout, head="cosine").layout == layout


def test_lcnn_on_the_raw_waveform_says_so() -> None:
    from sddkit.backends import BACKENDS
    from sddkit.errors import ConfigError

    with pytest.raises(ConfigError, match="not the raw waveform") as info:
        BACKENDS.build("lcnn", in_dim=None)
    assert "None" not in str(info.value)  # was "needs spectral features with at least 16 bins, got None"
    with pytest.raises(ConfigError, match="at least 16 bins, got 12"):
        BACKENDS.build("lcnn", in_dim=12, feature_layout="spectral")


@torch.no_grad()
def test_layer_l_of_a_pre_norm_encoder_is_the_model_output_as_documented() -> None:
    # pins the documented behaviour (docs-only change: the module doc said every layer k is hidden_states[k])
    import transformers

    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    torch.manual_seed(0)
    last = build_encoder(EncoderConfig(normalize=False), preset="wav2vec2_tiny").eval()
    top = build_encoder(EncoderConfig(layer=2, normalize=False), preset="wav2vec2_tiny").eval()
    top.load_state_dict(last.state_dict())
    x = torch.randn(1, 4000)
    torch.testing.assert_close(top(x), last(x), rtol=0, atol=0)
    hf = last.model(x, output_hidden_states=True)
    if int(transformers.__version__.split(".")[0]) >= 5:
        assert not torch.allclose(top(x), hf.hidden_states[2])  # transformers 5: before the final LayerNorm
    else:
        torch.testing.assert_close(top(x), hf.hidden_states[2], rtol=0, atol=0)  # transformers 4: after it
