"""Mixture scoring speed (review 31): a mixture's experts of one framing share the level normalisation and power
spectrum of their input, and front-end steps run in place without autograd; every score stays what each expert
computes alone, bit for bit."""

from __future__ import annotations

import pytest
import torch

import sddkit.features.spectral as spectral
import sddkit.frontends.spectral as frontends
from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.mixture import DetectorMixture, MixtureConfig, build_mixture, mix_log_probs
from sddkit.features.groupdelay import ModifiedGroupDelay, ModifiedGroupDelayConfig
from sddkit.features.spectral import LogMel, LogMelConfig, shared_computation, shared_result

_LCNN = {"name": "lcnn", "channels": 4, "lstm_layers": 1}
_FRAMING = {"n_fft": 512, "win_length": 400, "hop_length": 160, "pre_emphasis": 0.97, "normalize": True}
# as the bundled model and the three-expert gate: logmel and lfb of one framing and level, mgd on its own
EXPERTS = [
    {"frontend": {"name": "logmel", "n_mels": 32, "level_db": -27.0, **_FRAMING}, "backend": _LCNN},
    {"frontend": {"name": "lfb", "n_filters": 32, "level_db": -27.0, **_FRAMING}, "backend": _LCNN},
    {"frontend": {"name": "mgd", "n_filters": 32, "level_db": -27.0, **_FRAMING}, "backend": _LCNN},
]


def _mixture(experts: list[dict] = EXPERTS) -> DetectorMixture:
    torch.manual_seed(0)
    cfg = MixtureConfig(experts=[from_dict(DetectorConfig, e) for e in experts], gate={"name": "enhanced_mlp"})
    mix = build_mixture(cfg)
    for m in mix.modules():  # running statistics other than (0, 1), so a wrong input would show in every score
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return mix.eval()


def _waveforms() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    speechy = 0.1 * torch.randn(3, 6400, generator=g)
    speechy[1, 3000:] = 0.0  # a window padded with digital silence
    return [speechy, 0.3 * torch.randn(2, 6400, generator=g) + 0.05]


def _alone(mix: DetectorMixture, x: torch.Tensor):
    """Each expert on its own (no shared steps), and the gate on their embeddings: the mixture's score computed
    step by step."""
    outs = [expert(x) for expert in mix.experts]
    weights = mix.gate(x, [o.embedding for o in outs])
    log_probs = torch.stack([torch.log_softmax(o.logits.float(), dim=-1) for o in outs], dim=1)
    logits = mix_log_probs(log_probs, weights)
    return torch.stack([o.score for o in outs], dim=1), logits[:, 1] - logits[:, 0]


@pytest.mark.parametrize("mode", ["inference_mode", "no_grad"])
def test_mixture_scores_equal_each_expert_run_alone(mode):
    """The shared level normalisation and STFT (logmel and lfb) and the in-place front-end steps leave every expert's
    score, and so the mixture's, exactly what each expert computes alone; one forward after another never reads the
    previous input's spectra."""
    mix = _mixture()
    ctx = torch.inference_mode if mode == "inference_mode" else torch.no_grad
    with ctx():
        for x in _waveforms():
            out = mix(x)
            experts, score = _alone(mix, x)
            assert torch.equal(out.stats["expert_scores"], experts)
            assert torch.equal(out.score, score)


def test_experts_of_one_framing_compute_one_stft_and_one_level_normalisation(monkeypatch):
    """logmel and lfb of equal framing and level: one STFT and one level normalisation per forward (two of each
    before), mgd its own; experts of another hop or level compute theirs."""
    calls = {"stft": 0, "level": 0}
    stft, level = spectral.stft, frontends.level_normalize

    def counted_stft(*args, **kwargs):
        calls["stft"] += 1
        return stft(*args, **kwargs)

    def counted_level(*args, **kwargs):
        calls["level"] += 1
        return level(*args, **kwargs)

    monkeypatch.setattr(spectral, "stft", counted_stft)
    monkeypatch.setattr(frontends, "level_normalize", counted_level)
    x = _waveforms()[0]
    with torch.inference_mode():
        _mixture(EXPERTS[:2])(x)
        assert calls == {"stft": 1, "level": 1}
        calls.update(stft=0, level=0)
        _mixture()(x)  # mgd's STFTs are its own (stft_parts), its level normalisation is shared
        assert calls["level"] == 1

        other = [EXPERTS[0], {**EXPERTS[1], "frontend": {**EXPERTS[1]["frontend"], "hop_length": 128}}]
        calls.update(stft=0, level=0)
        _mixture(other)(x)
        assert calls == {"stft": 2, "level": 1}
        louder = [EXPERTS[0], {**EXPERTS[1], "frontend": {**EXPERTS[1]["frontend"], "level_db": -20.0}}]
        calls.update(stft=0, level=0)
        mix = _mixture(louder)
        out = mix(x)
        assert calls == {"stft": 2, "level": 2}
        assert torch.equal(out.stats["expert_scores"], _alone(mix, x)[0])


def test_shared_results_live_only_inside_one_block():
    """Outside a block nothing is cached; inside, a result is matched by the input tensor itself and the settings."""
    x, y = torch.randn(2, 1000), torch.randn(2, 1000)
    count = []

    def compute(t):
        count.append(1)
        return t * 2

    assert shared_result("s", x, 1, lambda: compute(x)) is not shared_result("s", x, 1, lambda: compute(x))
    with shared_computation():
        a = shared_result("s", x, 1, lambda: compute(x))
        assert shared_result("s", x, 1, lambda: compute(x)) is a
        assert torch.equal(shared_result("s", y, 1, lambda: compute(y)), y * 2)  # another input
        assert shared_result("s", x, 2, lambda: compute(x)) is not a  # other settings
        with shared_computation():  # a nested block (a mixture as an expert) starts empty
            assert shared_result("s", x, 1, lambda: compute(x)) is not a
    assert len(count) == 6
    assert spectral._SHARED.get() is None


def test_mixture_training_step_still_backpropagates_to_the_waveform():
    """Autograd through the shared steps: the waveform's gradient (an attack, a saliency map) equals the sum of each
    expert's own, and a joint fine-tuning step runs (the in-place steps are taken only without autograd)."""
    mix = _mixture(EXPERTS)
    x = _waveforms()[0].double().requires_grad_(True)
    mix.double()
    mix(x).score.sum().backward()
    shared = x.grad.clone()
    x.grad = None
    _alone(mix, x)[1].sum().backward()
    # the same gradient up to the order of its sums (the shared steps add their consumers' gradients first)
    torch.testing.assert_close(shared, x.grad, rtol=0, atol=1e-7 * float(x.grad.abs().max()))

    torch.manual_seed(0)
    experts = [from_dict(DetectorConfig, e) for e in EXPERTS]
    joint = build_mixture(MixtureConfig(experts=experts, gate="enhanced_mlp", freeze_experts=False)).train()
    joint(_waveforms()[0]).score.sum().backward()
    assert all(p.grad is not None for p in joint.experts[2].backend.parameters() if p.requires_grad)


def test_in_place_front_end_steps_equal_the_autograd_ones():
    """mgd's gram, the log filterbank's log and the utterance normalisation without autograd (in place) equal their
    autograd form, bit for bit; a constant row still normalises to exactly 0."""
    x = _waveforms()[0]
    for cfg in (ModifiedGroupDelayConfig(), ModifiedGroupDelayConfig(n_coeffs=12, with_deltas=True)):
        mgd = ModifiedGroupDelay(cfg)
        with torch.inference_mode():
            fast = mgd(x)
        assert torch.equal(fast, mgd(x.clone().requires_grad_(True)).detach())
    logmel = LogMel(LogMelConfig(n_mels=40))
    with torch.inference_mode():
        fast = logmel(x)
    assert torch.equal(fast, logmel(x.clone().requires_grad_(True)).detach())
    feats = torch.randn(3, 20, 50) * 4 - 20
    feats[1, 3] = -13.8
    with torch.inference_mode():
        fast = frontends.utterance_normalize(feats)
    slow = frontends.utterance_normalize(feats.clone().requires_grad_(True)).detach()
    assert torch.equal(fast, slow)
    assert torch.all(fast[1, 3] == 0)
    x64 = feats.double()
    reference = (x64 - x64.mean(-1, keepdim=True)) / (x64.var(-1, keepdim=True, unbiased=False) + 1e-5).sqrt()
    torch.testing.assert_close(fast, reference.float(), rtol=0, atol=1e-6)


def test_level_normalize_leaves_a_float64_input_unchanged():
    """level_normalize works in place on its own float64 copy only: a float64 input (``.double()`` is then the input
    itself) is not overwritten, nor is utterance_normalize's."""
    x = torch.randn(2, 4000, dtype=torch.float64) * 0.01 + 0.2
    before = x.clone()
    with torch.inference_mode():
        out = frontends.level_normalize(x, -27.0)
        frontends.utterance_normalize(x)
    assert torch.equal(x, before)
    rms_db = 20 * torch.log10(out.pow(2).mean(-1).sqrt())
    torch.testing.assert_close(rms_db, torch.full((2,), -27.0, dtype=torch.float64))


def test_single_detector_is_unchanged_by_the_mixture_block():
    """A plain detector (no mixture) computes as before, and inside a block its result equals its own."""
    det = build_detector(from_dict(DetectorConfig, EXPERTS[0])).eval()
    x = _waveforms()[0]
    with torch.inference_mode():
        alone = det(x).score
        with shared_computation():
            assert torch.equal(det(x).score, alone)
            assert torch.equal(det(x).score, alone)  # the second call reads the first's spectra
