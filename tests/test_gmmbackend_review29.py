"""The ``gmm`` back-end (LFCC-GMM / CQCC-GMM baselines): EM, likelihoods, scores, and its ``sdd train`` path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from test_train_support import write_corpus

from sddkit.backends.gmm import GMMBackend, GMMConfig, fit_gmm
from sddkit.errors import ConfigError


def _two_classes(n: int = 4000, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    spoof = rng.normal([1.0, -2.0, 0.5][:d], [0.5, 2.0, 1.0][:d], size=(n, d))
    bona = rng.normal([-1.0, 3.0, 0.0][:d], [1.5, 0.3, 0.7][:d], size=(n // 2, d))
    return torch.from_numpy(spoof).float(), torch.from_numpy(bona).float()


def _scipy_log_likelihood(x: np.ndarray, log_w: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """log sum_k w_k N(x | mu_k, diag(var_k)) per frame, independently of sddkit."""
    per_component = [
        lw + multivariate_normal(mean=m, cov=np.diag(v)).logpdf(x)
        for lw, m, v in zip(log_w, means, variances, strict=True)
    ]
    return logsumexp(np.stack(per_component, axis=-1), axis=-1)


def test_em_with_one_component_gives_the_closed_form_maximum_likelihood_estimates():
    spoof, bona = _two_classes()
    backend = GMMBackend(3, GMMConfig(components=1, em_iterations=3))
    backend.fit((spoof, bona), seed=0)
    for c, frames in enumerate((spoof, bona)):
        x = frames.double().numpy()
        np.testing.assert_allclose(backend.means[c, 0].double().numpy(), x.mean(0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(backend.variances[c, 0].double().numpy(), x.var(0), rtol=1e-5)  # population var
        assert float(backend.log_weights[c, 0]) == pytest.approx(0.0, abs=1e-7)


def test_em_separates_two_well_apart_clusters():
    rng = np.random.default_rng(1)
    a = rng.normal([-5.0, 0.0], [0.5, 1.0], size=(3000, 2))
    b = rng.normal([5.0, 2.0], [1.0, 0.2], size=(1000, 2))
    fit = fit_gmm(torch.from_numpy(np.concatenate([a, b])), 2, iterations=20, seed=0)
    order = torch.argsort(fit.means[:, 0])
    np.testing.assert_allclose(fit.means[order].numpy(), [a.mean(0), b.mean(0)], atol=1e-3)
    np.testing.assert_allclose(fit.variances[order].numpy(), [a.var(0), b.var(0)], rtol=1e-3)
    np.testing.assert_allclose(fit.log_weights[order].exp().numpy(), [0.75, 0.25], atol=1e-4)
    assert all(later >= earlier - 1e-9 for earlier, later in zip(fit.history, fit.history[1:]))  # EM never descends


def test_frame_log_likelihoods_match_scipy():
    backend = GMMBackend(4, GMMConfig(components=3))
    rng = np.random.default_rng(2)
    with torch.no_grad():
        w = rng.dirichlet(np.ones(3), size=2)
        backend.log_weights.copy_(torch.from_numpy(np.log(w)))
        backend.means.copy_(torch.from_numpy(rng.normal(0, 3, size=(2, 3, 4))))
        backend.variances.copy_(torch.from_numpy(rng.uniform(0.1, 5.0, size=(2, 3, 4))))
    x = rng.normal(0, 4, size=(50, 4)).astype(np.float32)
    got = backend.frame_log_likelihoods(torch.from_numpy(x)).numpy()
    for c in range(2):
        want = _scipy_log_likelihood(
            x.astype(np.float64),
            backend.log_weights[c].double().numpy(),
            backend.means[c].double().numpy(),
            backend.variances[c].double().numpy(),
        )
        np.testing.assert_allclose(got[:, c], want, rtol=1e-9, atol=1e-9)


def test_the_score_is_the_mean_frame_log_likelihood_ratio():
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.registry import get_registry

    spoof, bona = _two_classes()
    backend = GMMBackend(3, GMMConfig(components=2, em_iterations=5))
    backend.fit((spoof, bona), seed=0)
    features = torch.randn(2, 3, 40) * 2  # (B, F, T)
    out = backend(features)
    assert out.logits.shape == (2, 2) and out.embedding.shape == (2, 3)
    for b in range(2):
        x = features[b].T.double().numpy()
        ll = [
            _scipy_log_likelihood(
                x,
                backend.log_weights[c].double().numpy(),
                backend.means[c].double().numpy(),
                backend.variances[c].double().numpy(),
            )
            for c in range(2)
        ]
        llr = float(np.mean(ll[1] - ll[0]))
        assert float(out.logits[b, 1] - out.logits[b, 0]) == pytest.approx(llr, rel=1e-5)

    # through a detector: its score is the same log-likelihood ratio, on the front-end's (B, F, T) features
    cfg = DetectorConfig(
        frontend=get_registry("frontend").parse({"name": "lfcc"}),
        backend=get_registry("backend").parse({"name": "gmm", "components": 2}),
    )
    detector = build_detector(cfg).eval()
    assert detector.backend.time_axis == 2
    wave = 0.1 * torch.randn(2, 8000)
    with torch.no_grad():
        feats = detector.frontend(wave).features
        detector.backend.fit((feats[0].T, feats[1].T), seed=0)
        score = detector(wave).score
        frame_llr = detector.backend.frame_log_likelihoods(feats[0].T)
    assert float(score[0]) == pytest.approx(float((frame_llr[:, 1] - frame_llr[:, 0]).mean()), rel=1e-5)


def test_the_fit_is_deterministic_per_seed():
    spoof, bona = _two_classes(n=2000)
    fits = []
    for seed in (7, 7, 8):
        backend = GMMBackend(3, GMMConfig(components=4, em_iterations=2))
        backend.fit((spoof, bona), seed=seed)
        fits.append(backend.state_dict())
    assert all(torch.equal(fits[0][k], fits[1][k]) for k in fits[0])
    assert not torch.equal(fits[0]["means"], fits[2]["means"])


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"covariance": "full"}, "covariance must be 'diag'"),
        ({"head": "cosine"}, "head does not apply to the gmm back-end"),
        ({"components": 0}, "components must be at least 1"),
        ({"variance_floor": 0.0}, "variance_floor must be in (0, 1)"),
    ],
)
def test_configs_that_make_no_sense_are_refused(options, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        GMMConfig(**options)


def test_fewer_frames_than_components_is_refused_by_class():
    backend = GMMBackend(3, GMMConfig(components=64))
    with pytest.raises(ValueError, match=r"bonafide class: 10 training frames for 64 components"):
        backend.fit((torch.randn(100, 3), torch.randn(10, 3)))


def _recipe(tmp_path: Path, out: Path, extra: str = "", backend: str = "") -> str:
    train = write_corpus(tmp_path / "c", n=18, samples=8000, seed=0)
    val = write_corpus(tmp_path / "c", n=9, samples=8000, seed=1, partition="val")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""
seed: 3
model:
  frontend: {{name: lfcc}}
  backend: {{name: gmm, components: 4, em_iterations: 5, max_frames_per_class: 400{backend}}}
data:
  train: {{protocol: {train}, format: utterance_table}}
  val: {{protocol: {val}, format: utterance_table}}
  crop_samples: 8000
  batch_size: 4
trainer: {{epochs: 1, out_dir: {out}, progress: false, device: cpu}}
{extra}"""
    )
    return str(recipe)


def test_sdd_train_fits_by_em_then_sdd_score_and_onnx_export_use_the_model(tmp_path, capsys):
    from safetensors.torch import load_file

    from sddkit.cli.main import main
    from sddkit.detectors.model_dir import load_model_dir
    from sddkit.scoring.onnx_export import OnnxRunner, export_onnx

    recipe = _recipe(tmp_path, tmp_path / "run")
    assert main(["train", recipe]) == 0
    assert "fitted by EM on frames of 1 epoch of data.train (no gradient steps)" in capsys.readouterr().out
    best, final = tmp_path / "run" / "best", tmp_path / "run" / "final"
    meta = json.loads((best / "config.json").read_text())["metadata"]
    assert meta["selection"] == "fitted by EM (no gradient steps)"
    assert meta["em"]["frames"] == {"spoof": 400, "bonafide": 306}  # spoof sampled down to max_frames_per_class
    assert meta["val_eer"] == 0.0  # the synthetic spoofs carry a tone: an easy task
    weights = load_file(best / "model.safetensors")
    assert weights["backend.means"].shape == (2, 4, 60)
    assert not torch.equal(weights["backend.means"][0], weights["backend.means"][1])  # fitted, not as built
    assert torch.equal(weights["backend.variances"], load_file(final / "model.safetensors")["backend.variances"])
    assert main(["describe", str(best)]) == 0  # 2 x (4 + 4 x 60 + 4 x 60) frozen numbers, none trainable
    described = json.loads(capsys.readouterr().out)
    assert (described["frozen_params"], described["trainable_params"]) == (2 * (4 + 2 * 4 * 60), 0)

    # a second run with the same seed fits the same mixtures
    assert main(["train", recipe, f"trainer.out_dir={tmp_path / 'again'}"]) == 0
    again = load_file(tmp_path / "again" / "best" / "model.safetensors")
    assert all(torch.equal(weights[k], again[k]) for k in weights)

    val = tmp_path / "c" / "val_1.csv"
    assert main(["score", "--model", str(best), str(val), "--out", str(tmp_path / "s.csv"), "--quiet"]) == 0
    with open(tmp_path / "s.csv") as f:
        scores = {Path(r["path"]).name: float(r["score"]) for r in csv.DictReader(f)}
    model = load_model_dir(best).model.eval()
    import soundfile as sf

    wave, _ = sf.read(tmp_path / "c" / "val_1_0001.wav", dtype="float32")
    with torch.no_grad():
        feats = model.frontend(torch.from_numpy(wave)[None]).features[0].T
        ll = model.backend.frame_log_likelihoods(feats)
    assert scores["val_1_0001.wav"] == pytest.approx(float((ll[:, 1] - ll[:, 0]).mean()), rel=1e-5)
    assert scores["val_1_0000.wav"] > 0 > scores["val_1_0001.wav"]  # bona fide (every 3rd file) above spoof

    # ONNX: the check's windows include digital silence, whose log-likelihood ratio is in the thousands: float32
    # logits there are stored in steps of 2.4e-4, and one step apart failed the 1e-4 parity check
    report = export_onnx(best, tmp_path / "m.onnx")
    assert report["max_abs_diff"] <= 1e-4
    runner = OnnxRunner(tmp_path / "m.onnx")
    x = torch.from_numpy(wave)[None, :8000].numpy()
    onnx_logits, _ = runner(x)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).logits.numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("strategy: {name: mldg}", "strategy 'mldg' takes gradient steps"),
        ("trainer: {ema_decay: 0.99}", "trainer.ema_decay averages gradient-trained weights"),
    ],
)
def test_sdd_train_refuses_what_only_gradient_training_means(tmp_path, capsys, extra, needle):
    from sddkit.cli.main import main

    recipe = _recipe(tmp_path, tmp_path / "run")
    key, value = extra.split(": ", 1)
    override = f"{key}={value}" if key != "trainer" else "trainer.ema_decay=0.99"
    assert main(["train", recipe, override]) == 2
    err = capsys.readouterr().err
    assert "model.backend gmm is fitted by EM" in err and needle in err
    assert not (tmp_path / "run" / "best").exists()


def test_settings_of_the_gradient_loop_are_named_as_not_read(tmp_path, caplog):
    from sddkit.cli.main import main

    recipe = _recipe(tmp_path, tmp_path / "run")
    with caplog.at_level("WARNING", logger="sddkit.training"):
        assert main(["train", recipe, "optimizer.lr=0.1", "trainer.patience=3"]) == 0
    assert "optimizer, trainer.patience not read (no gradient step is taken)" in caplog.text


def test_a_gmm_expert_trained_inside_a_mixture_is_refused():
    from sddkit.config import from_dict
    from sddkit.training.em import check_em_recipe
    from sddkit.training.recipe import TrainRecipe

    expert = {"frontend": {"name": "lfcc"}, "backend": {"name": "gmm", "components": 2}}
    recipe = from_dict(
        TrainRecipe,
        {"mixture": {"experts": [expert, expert], "gate": "average", "freeze_experts": False}},
    )
    from sddkit.detectors.mixture import build_mixture

    with pytest.raises(ConfigError, match="cannot be trained with the gate"):
        check_em_recipe(recipe, build_mixture(recipe.mixture), world_size=1)
