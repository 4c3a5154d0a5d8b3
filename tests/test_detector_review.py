"""Review of the Detector composition, the back-ends' edge cases and model directories."""

from __future__ import annotations

import json

import pytest
import torch

from sddkit.config import from_dict
from sddkit.detectors import model_dir as md
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.errors import CheckpointError, ConfigError
from sddkit.registry import get_registry

BACKENDS = get_registry("backend")

TINY_LCNN = {"name": "lcnn", "channels": 4, "lstm_layers": 1}
TINY_SSL_AASIST = {
    "name": "ssl_aasist",
    "proj_dim": 12,
    "filts": [[1, 4], [4, 4], [4, 4], [4, 4]],
    "gat_dims": [8, 8],
    "attention_dim": 8,
}


def _detector(frontend: dict, backend: dict):
    return build_detector(from_dict(DetectorConfig, {"frontend": frontend, "backend": backend}, "model")).eval()


# --- the pooled linear head under a front-end whose layout is known ------------------------------


@pytest.mark.parametrize(("frontend", "bins"), [({"name": "logmel"}, 80), ({"name": "lfcc"}, 60)])
def test_linear_head_scores_an_input_with_as_many_frames_as_feature_bins(frontend, bins):
    # (B, 80, 80) features used to be refused as an "ambiguous layout": one input length (0.79 s for
    # log-Mel) failed although the spectral front-end fixes the layout.
    det = _detector(frontend, {"name": "linear"})
    x = torch.randn(2, (bins - 1) * 160)
    with torch.no_grad():
        out = det(x)
        longer = det(torch.cat([x, x[:, :1]], dim=1))  # one sample more: same frames, different length
    assert out.score.shape == (2,) and torch.isfinite(out.score).all()
    assert longer.score.shape == (2,)


def test_linear_head_built_for_encoder_frames_takes_square_inputs():
    head = BACKENDS.build({"name": "linear"}, in_dim=16, feature_layout="frames").eval()
    frames = torch.randn(2, 16, 16)
    expected = torch.cat([frames.mean(dim=1), frames.var(dim=1, correction=0).sqrt()], dim=-1)
    torch.testing.assert_close(head(frames).embedding, expected)


def test_an_explicit_linear_layout_is_kept():
    # where the front-end's layout is unknown or the same (one that contradicts it is refused: test_leftovers_review6)
    for known in (None, "frames"):
        head = BACKENDS.build({"name": "linear", "layout": "frames"}, in_dim=16, feature_layout=known)
        assert head.layout == "frames"


# --- waveform dtypes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frontend", "backend", "samples"),
    [
        ({"name": "logmel"}, TINY_LCNN, 4000),
        ({"name": "lfcc"}, {"name": "resnet18", "width": 4}, 4000),
        ({"name": "logspec"}, {"name": "linear"}, 4000),
        ({"name": "raw"}, {"name": "aasist_l"}, 6000),
    ],
)
def test_a_float64_waveform_scores_as_its_float32_copy(frontend, backend, samples):
    # soundfile and numpy hand out float64 by default; every detector used to fail on it inside torch
    det = _detector(frontend, backend)
    x = 0.1 * torch.randn(2, samples)
    with torch.no_grad():
        ref = det(x)
        out = det(x.double())
    assert out.score.dtype == torch.float32
    torch.testing.assert_close(out.score, ref.score)


def test_a_float64_model_takes_a_float32_waveform():
    det = _detector({"name": "logmel"}, TINY_LCNN).double()
    x = 0.1 * torch.randn(2, 4000)
    with torch.no_grad():
        out = det(x)
    assert out.score.dtype == torch.float64 and torch.isfinite(out.score).all()


@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.uint8, torch.bool])
def test_an_integer_waveform_is_refused_with_a_hint(dtype):
    # int16 PCM used to score silently on a 32768x louder scale (spectral) or crash in batch norm (AASIST); a bool
    # tensor is no PCM: refused without the PCM hint, as the spectral features refuse it (one check for both)
    det = _detector({"name": "logmel"}, TINY_LCNN)
    with pytest.raises(ValueError, match=r"floating-point waveform") as info:
        det(torch.zeros(1, 4000, dtype=dtype))
    assert ("divide 16-bit PCM by 32768" in str(info.value)) == (dtype != torch.bool)


def test_an_empty_waveform_is_refused_in_one_line():
    det = _detector({"name": "logmel"}, TINY_LCNN)
    with pytest.raises(ValueError, match="no samples"):
        det(torch.zeros(2, 0))


# --- graph back-ends train on a batch of one short input -----------------------------------------


def test_aasist_trains_on_one_input_of_the_minimum_length():
    # one temporal node per graph: the node batch norm saw one row and torch refused to train on it
    model = BACKENDS.build({"name": "aasist_l"}).train()
    out = model(torch.randn(1, model.min_samples))
    out.logits.sum().backward()
    assert torch.isfinite(out.logits).all()
    # a usable training step: finite gradients reach the parameters (not only a forward without error)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_ssl_aasist_trains_on_one_input_of_three_frames():
    model = BACKENDS.build(TINY_SSL_AASIST, in_dim=16).train()
    out = model(torch.randn(1, 3, 16))
    out.logits.sum().backward()
    assert torch.isfinite(out.logits).all()
    # a usable training step: finite gradients reach the parameters (not only a forward without error)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_one_row_node_batch_norm_leaves_the_running_statistics_unchanged():
    model = BACKENDS.build({"name": "aasist_l"}).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model(torch.randn(1, model.min_samples))
    changed = [k for k, v in before.items() if not torch.equal(v, model.state_dict()[k])]
    # the sinc/encoder batch norms see many values and update; the graph's one-row ones must not
    assert not [k for k in changed if k.startswith("graph.") and ".bn." in k and "gat_temporal" in k]


# --- model directories ----------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    cfg = {"frontend": {"name": "logmel"}, "backend": {**TINY_LCNN, "lstm_layers": 0}}
    det = build_detector(from_dict(DetectorConfig, cfg, "model"))
    directory = md.save_model_dir(tmp_path / "m", det, model_config=cfg)
    return directory, json.loads((directory / md.CONFIG_NAME).read_text())


def _write_config(directory, config) -> None:
    (directory / md.CONFIG_NAME).write_text(json.dumps(config))


@pytest.mark.parametrize("architecture", [["detector"], {"name": "detector"}, 3])
def test_an_architecture_that_is_not_a_name_is_a_checkpoint_error(saved, architecture):
    directory, config = saved
    _write_config(directory, {**config, "architecture": architecture})
    with pytest.raises(CheckpointError, match="architecture"):
        md.load_model_dir(directory)


@pytest.mark.parametrize("key", ["inference", "metadata"])
@pytest.mark.parametrize("value", [[1], "x", 3])
def test_inference_and_metadata_must_be_objects(saved, key, value):
    directory, config = saved
    _write_config(directory, {**config, key: value})
    with pytest.raises(CheckpointError, match=f"{key} must be a JSON object"):
        md.read_model_config(directory)


def test_a_bad_model_section_names_the_config_file(saved):
    directory, config = saved
    _write_config(directory, {**config, "model": {**config["model"], "backend": {"name": "lcnn", "chanels": 4}}})
    with pytest.raises(ConfigError, match=r"config\.json: .*'chanels'") as info:
        md.load_model_dir(directory)
    assert "\n" not in str(info.value)


def test_a_mixture_with_a_log_mel_gate_scores_a_float64_waveform():
    from sddkit.detectors.mixture import MixtureConfig, build_mixture

    expert = {"frontend": {"name": "logmel"}, "backend": TINY_LCNN}
    cfg = {"experts": [expert, expert], "gate": {"name": "classic"}}
    mixture = build_mixture(from_dict(MixtureConfig, cfg, "model")).eval()
    x = 0.1 * torch.randn(2, 4000)
    with torch.no_grad():
        torch.testing.assert_close(mixture(x.double()).score, mixture(x).score)


# --- features -------------------------------------------------------------------------------------


def test_a_mel_filterbank_with_empty_filters_warns():
    # 128 HTK bands on a 512-point FFT: the lowest triangles fall between two FFT bins, so one band
    # is all zeros and its log-Mel row a constant, which nothing used to say
    from sddkit.features.spectral import mel_filterbank

    with pytest.warns(UserWarning, match=r"1 of the 128 mel filters .* n_fft"):
        fb = mel_filterbank(n_mels=128, n_fft=512, sample_rate=16000, f_min=20.0, f_max=7600.0)
    assert int((fb.sum(dim=1) == 0).sum()) == 1


def test_the_default_mel_filterbank_has_no_empty_filter(recwarn):
    from sddkit.features.spectral import LogMel

    LogMel()
    assert not [w for w in recwarn if "mel filters" in str(w.message)]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_holding_nan_or_inf_are_refused_when_loaded(saved, bad):
    from safetensors.torch import load_file, save_file

    directory, _ = saved
    md.load_model_dir(directory)  # finite weights load
    state = load_file(str(directory / md.WEIGHTS_NAME))
    name = next(k for k, t in state.items() if t.is_floating_point() and t.numel() > 1)
    state[name].view(-1)[1] = bad
    # as a save of a diverged model writes it: the pair's digests agree, the values are what is wrong
    digest = md.weights_digest(state)
    save_file(state, str(directory / md.WEIGHTS_NAME), metadata={md.DIGEST_KEY: digest})
    config = json.loads((directory / md.CONFIG_NAME).read_text())
    _write_config(directory, {**config, "weights_digest": digest})
    with pytest.raises(CheckpointError, match=rf"{name} holds NaN or inf values"):
        md.load_model_dir(directory)


@pytest.mark.parametrize("version", ["1", 1.5, True, None])
def test_a_format_version_that_is_not_an_integer_is_refused(saved, version):
    directory, config = saved
    _write_config(directory, {**config, "format_version": version})
    with pytest.raises(CheckpointError, match="format_version .* is not an integer"):
        md.load_model_dir(directory)


def test_a_half_precision_score_is_the_float32_difference_of_its_logits():
    # bfloat16 keeps ~3 significant digits: a score taken in it made distinct trials tie and moved the val EER
    det = _detector({"name": "logmel"}, TINY_LCNN).eval()
    x = 0.1 * torch.randn(64, 4000)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = det(x)
    # the output layer computes in float32 under autocast (review precision29): its logits are no longer rounded
    assert out.logits.dtype == torch.float32
    assert out.score.dtype == torch.float32
    torch.testing.assert_close(out.score, out.logits[:, 1].float() - out.logits[:, 0].float(), rtol=0, atol=0)


# --- half precision: features from float32 samples and constants ----------------------------------


@pytest.mark.parametrize("name", ["logmel", "logspec", "lfcc", "mgd", "cqt", "cqcc"])
def test_a_half_precision_model_computes_its_spectral_features_as_the_float32_one(name):
    # the window and filterbanks are buffers: model.to(bfloat16) rounded them (and the detector rounded the
    # samples to bfloat16 before the front-end), moving quiet log-Mel bins by up to 3 nats
    torch.manual_seed(0)
    full = _detector({"name": name, "level_db": -27}, TINY_LCNN)
    half = _detector({"name": name, "level_db": -27}, TINY_LCNN)
    half.load_state_dict(full.state_dict())
    half.to(torch.bfloat16)
    seen = []
    half.backend.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = 0.05 * torch.randn(2, 4000) + 1e-4 * torch.randn(2, 4000)
    with torch.no_grad():
        half(x)
        expected = full.frontend(x).features
    assert seen[0].dtype == torch.bfloat16  # the back-end still runs in the model's dtype
    torch.testing.assert_close(seen[0], expected.to(torch.bfloat16), atol=0, rtol=0)


def test_a_half_precision_whisper_front_end_takes_the_log_mel_of_the_float32_samples():
    torch.manual_seed(0)
    det = _detector({"name": "ssl", "encoder": {"name": "whisper_tiny", "dropout": 0.0}}, TINY_SSL_AASIST)
    log_mel = det.frontend.encoder.log_mel
    x = 0.05 * torch.randn(2, 8000)
    with torch.no_grad():
        expected = log_mel(x)
        det.to(torch.bfloat16)
        seen = []
        log_mel.register_forward_hook(lambda module, args, out: seen.append(out))
        assert torch.isfinite(det(x).score).all()
    assert log_mel.window.dtype == torch.float32
    torch.testing.assert_close(seen[0], expected, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_mixture_gives_its_spectral_experts_float32_samples(dtype):
    from sddkit.detectors.mixture import MixtureConfig, build_mixture

    torch.manual_seed(0)
    expert = {"frontend": {"name": "logmel"}, "backend": TINY_LCNN}
    mixture = build_mixture(
        from_dict(MixtureConfig, {"experts": [expert, expert], "gate": {"name": "classic"}}, "model")
    )
    mixture.eval()
    x = 0.05 * torch.randn(2, 4000)
    with torch.no_grad():
        expected = mixture.experts[0].frontend(x).features
        mixture.to(dtype)
        seen = []
        mixture.experts[0].backend.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        mixture(x)
    torch.testing.assert_close(seen[0], expected.to(dtype), atol=0, rtol=0)


# --- sample rates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["logmel", "logspec", "lfcc", "mgd", "cqt", "cqcc"])
def test_a_spectral_front_end_at_another_rate_than_the_pipeline_is_refused(name):
    # a 44.1 kHz logmel was built, trained and scored on the 16 kHz audio the pipeline feeds: a 1 kHz tone
    # landed in the band labelled 2.7 kHz
    with pytest.raises(ConfigError, match="16000 Hz audio"):
        _detector({"name": name, "sample_rate": 44100}, TINY_LCNN)
    _detector({"name": name, "sample_rate": 16000}, TINY_LCNN)


def test_a_model_dir_scored_at_another_rate_than_its_front_end_is_refused(tmp_path):
    # inference.sample_rate 8000 resampled every file to 8 kHz and the 16 kHz model read it as 16 kHz
    from scoring_support import save_tiny_lcnn

    from sddkit.scoring.api import load_detector
    from sddkit.scoring.onnx_export import export_onnx

    model = save_tiny_lcnn(tmp_path / "m", inference={"sample_rate": 8000, "window_samples": 4000})
    with pytest.raises(CheckpointError, match="inference.sample_rate is 8000 Hz"):
        load_detector(model)
    with pytest.raises(CheckpointError, match="inference.sample_rate is 8000 Hz"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("frontend", ["logmel", "logspec", "lfb", "lfcc", "mgd", "cqt", "cqcc"])
def test_linear_pooling_over_cmvn_features_is_refused_as_a_constant_model(frontend):
    """The linear head pools each bin's mean and std over time; per-utterance CMVN sets them to 0 and 1, so every
    input pools alike: a model that trained to a constant. Without normalisation (or with an LCNN) it builds."""

    def build(front, back):
        return build_detector(from_dict(DetectorConfig, {"frontend": front, "backend": back}))

    with pytest.raises(ConfigError, match="normalize: false"):
        build({"name": frontend, "normalize": True}, {"name": "linear"})
    torch.manual_seed(0)
    linear = build({"name": frontend}, {"name": "linear"}).eval()
    x = torch.randn(2, 16000) * torch.tensor([[0.05], [0.5]])
    assert not torch.allclose(linear(x).logits[0], linear(x).logits[1])
    build({"name": frontend, "normalize": True}, {"name": "lcnn", "channels": 4})
