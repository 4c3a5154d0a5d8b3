"""Review of the pretrained encoders (log-Mel, pretrained folders): defects found, pinned by tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sddkit.frontends.encoders import WhisperLogMel
from sddkit.pretrained import absolute_pretrained_paths
from sddkit.registry import get_registry


def build(name: str, **params):
    return get_registry("encoder").build({"name": name, **params})


@pytest.mark.parametrize("samples", [16_000, 16_159, 479_999])
def test_whisper_log_mel_takes_its_peak_over_the_frames_past_the_kept_ones(samples):
    """The extractor clamps at (peak - 8) with the peak over all its 3000 frames, including those after the
    ``T // 160`` kept ones that still overlap the input's end; the peak was taken over the kept frames only, so a
    loud last 10 ms moved every clamped (quiet) bin, by up to 0.68 here."""
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(0)
    wav = (1e-4 * rng.standard_normal(samples)).astype(np.float32)
    wav[-60:] += 0.9 * rng.standard_normal(60).astype(np.float32)  # a loud end, past the last kept frame
    ref = WhisperFeatureExtractor()(wav, sampling_rate=16000, return_tensors="np").input_features[0]
    ours = WhisperLogMel()(torch.from_numpy(wav)[None])[0].numpy()
    assert ours.shape == (80, samples // 160)
    np.testing.assert_allclose(ours, ref[:, : ours.shape[1]], rtol=0, atol=1e-5)


def test_a_pretrained_folder_under_home_stays_loadable_once_made_absolute(tmp_path, monkeypatch):
    """``pretrained: ~/enc`` builds (the builder expands ``~``), but the path recorded for the model directory was
    ``os.path.abspath("~/enc")`` = ``<cwd>/~/enc``: the model could not be loaded again."""
    home, elsewhere = tmp_path / "home", tmp_path / "run"
    elsewhere.mkdir()
    build("wav2vec2_tiny").model.save_pretrained(home / "enc")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    spec = {"frontend": {"encoder": {"name": "wav2vec2_tiny", "pretrained": "~/enc"}}}
    recorded = absolute_pretrained_paths(spec)["frontend"]["encoder"]
    assert recorded["pretrained"] == str(home / "enc")
    build(**recorded)  # loads, from the folder the recipe named


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_detector_normalises_the_waveform_in_float32(dtype):
    """With ``normalize`` the samples were rounded to the model's half precision before the mean and variance
    were taken: the variance of a quiet input is a float16 subnormal, and every sample rounded twice. The
    feature extractor normalises in float32; the model sees those samples rounded once, to its dtype."""
    from sddkit.config import from_dict
    from sddkit.detectors.detector import DetectorConfig, build_detector

    encoder = {"name": "wav2vec2_tiny", "dropout": 0.0, "normalize": True}
    spec = {"frontend": {"name": "ssl", "encoder": encoder}, "backend": {"name": "ssl_aasist"}}
    det = build_detector(from_dict(DetectorConfig, spec)).eval().to(dtype)
    assert det.frontend.float32_waveform
    seen = []
    det.frontend.encoder.model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    torch.manual_seed(0)
    wav = 3e-3 * torch.randn(1, 8000) + 1e-3  # -50 dBFS, a small DC offset
    with torch.no_grad():
        det(wav)
    expected = ((wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-7)).to(dtype)
    assert seen[0].dtype == dtype
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)


def test_pad_to_30s_on_a_whisper_with_fewer_than_1500_positions_is_a_config_error():
    """A Whisper encoder with ``max_source_positions`` < 1500 (cut down for short inputs) and ``pad_to_30s: true``
    built, then every input failed in the encoder ("The size of tensor a (1500) must match ... (750)")."""
    from sddkit.errors import ConfigError

    overrides = {"max_source_positions": 750}
    with pytest.raises(ConfigError, match=r"pad_to_30s encodes 30 s \(1500 positions\).* has 750"):
        build("whisper_tiny", overrides=overrides, pad_to_30s=True)
    enc = build("whisper_tiny", overrides=overrides).eval()  # unpadded: up to 15 s
    with torch.no_grad():
        assert enc(torch.randn(1, 16000)).shape == (1, 50, 32)


@pytest.mark.parametrize("do_normalize", [True, False])
def test_normalize_none_reads_a_processor_saved_by_transformers_5(tmp_path, do_normalize):
    """transformers 5 saves a processor (``Wav2Vec2Processor.save_pretrained``) as one ``processor_config.json``
    with a ``feature_extractor`` section, and no ``preprocessor_config.json``: its ``do_normalize`` was ignored
    and the layer-norm rule decided instead (hubert_tiny: group norm, so never normalised)."""
    import json

    folder = tmp_path / "enc"
    build("hubert_tiny").model.save_pretrained(folder)
    section = {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "do_normalize": do_normalize}
    processor = {"feature_extractor": section, "processor_class": "Wav2Vec2Processor"}
    (folder / "processor_config.json").write_text(json.dumps(processor))
    # transformers' precedence: the processor's section over a preprocessor_config.json
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": not do_normalize}))
    assert build("hubert_tiny", pretrained=str(folder)).normalize is do_normalize
