"""Review of the pretrained-encoder presets: defects found, pinned by tests (tiny random models)."""

from __future__ import annotations

import pytest
import torch

from sddkit.errors import AudioTooShortError
from sddkit.registry import get_registry


def build(name: str, **params):
    return get_registry("encoder").build({"name": name, **params})


def test_whisper_runs_as_a_bfloat16_model_and_computes_log_mel_in_float32():
    """``encoder.to(torch.bfloat16)`` crashed in the STFT ("MKL FFT doesn't support tensors of type:
    BFloat16"; cuFFT has no bf16 either), and under bf16 autocast the mel projection ran in bf16."""
    enc = build("whisper_tiny", dropout=0.0).eval()
    wav = 0.1 * torch.randn(2, 8000)
    with torch.no_grad():
        reference = enc(wav)
        mel = enc.log_mel(wav)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast_mel = enc.log_mel(wav)
        assert autocast_mel.dtype == torch.float32
        torch.testing.assert_close(autocast_mel, mel)
        enc.to(torch.bfloat16)
        out = enc(wav.bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == reference.shape
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.05)
    # bf16 rounding costs ~0.5 % (relative norm); the element-wise bound above passes a 5 % error
    assert ((out.float() - reference).norm() / reference.norm()).item() < 0.02


@pytest.mark.parametrize("samples", [480_000, 480_100])
def test_whisper_log_mel_matches_the_feature_extractor_at_30_s_and_beyond(samples):
    """The extractor cuts inputs at 30 s and reflects the right edge there (``center=True``); the
    zero right padding used for shorter inputs changed the last frame of a 30 s clip, and samples
    past 30 s (still accepted up to 480,159) leaked into it."""
    from transformers import WhisperFeatureExtractor

    enc = build("whisper_tiny")
    wav = 0.1 * torch.randn(1, samples)
    ours = enc.log_mel(wav)
    ref = WhisperFeatureExtractor()(wav[0].numpy(), sampling_rate=16000, return_tensors="pt").input_features
    assert ours.shape == ref.shape == (1, 80, 3000)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_spec_augment_on_an_input_shorter_than_a_mask_span_is_a_clear_error():
    """In training, SpecAugment needs at least ``mask_time_length`` frames; shorter inputs failed deep in
    transformers with "`mask_length` has to be smaller than `sequence_length`"."""
    enc = build("wav2vec2_tiny", spec_augment=True).train()
    # tiny convs (10,5),(3,2),(3,2): 10 frames (mask_time_length) need 40 + 9 * 20 = 220 samples
    assert enc(torch.randn(2, 220)).shape == (2, 10, 32)
    with pytest.raises(AudioTooShortError, match="spec_augment needs at least 220 samples .* got 219"):
        enc(torch.randn(2, 219))
    with torch.no_grad():
        assert enc.eval()(torch.randn(2, 219)).shape == (2, 9, 32)  # no masking outside training
    assert build("wav2vec2_tiny").train()(torch.randn(2, 219)).shape == (2, 9, 32)


@pytest.mark.parametrize("name", ["wav2vec2_tiny", "hubert_tiny", "wavlm_tiny", "whisper_tiny"])
def test_a_frozen_encoder_keeps_its_dropout_unless_told_and_draws_no_graph(name):
    """The documented choice: ``freeze: true`` leaves the model config's dropout on in training mode;
    ``dropout: 0.0`` makes the frozen encoder a fixed feature extractor (train = eval)."""
    x = torch.randn(2, 4000)
    noisy = build(name).train()
    assert noisy(x).requires_grad is False  # frozen, no adapter: no autograd graph through the encoder
    assert not torch.equal(noisy(x), noisy.eval()(x))
    fixed = build(name, dropout=0.0).train()
    torch.testing.assert_close(fixed(x), fixed.eval()(x), atol=0, rtol=0)
