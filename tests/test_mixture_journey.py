"""Mixture set-ups from trained expert directories: sample rates, stored configs, mixture dirs as experts."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import yaml
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)

from sddkit.cli.describe_cmd import describe
from sddkit.cli.main import main
from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.mixture import MixtureConfig, build_mixture, resolved_mixture_config
from sddkit.detectors.model_dir import load_model_dir, save_model_dir
from sddkit.errors import ConfigError

EXPERT = {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}}


def _expert(path, sample_rate=16000, window=8000, cfg=EXPERT) -> str:
    torch.manual_seed(0)
    det = build_detector(from_dict(DetectorConfig, cfg))
    inference = {"sample_rate": sample_rate, "window_samples": window}
    return str(save_model_dir(path, det, model_config=cfg, inference=inference))


def test_expert_dirs_must_share_a_sample_rate_but_not_a_window(tmp_path, capsys):
    dirs = [_expert(tmp_path / "a"), _expert(tmp_path / "b", sample_rate=8000)]
    cfg = from_dict(MixtureConfig, {"expert_dirs": dirs, "gate": "average"})
    # before: built (and trained) without a word; the 8 kHz expert then saw 16 kHz audio
    with pytest.raises(ConfigError, match="sample rate"):
        build_mixture(cfg)
    with pytest.raises(ConfigError, match="sample rate"):
        resolved_mixture_config(cfg)
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(yaml.safe_dump({"mixture": {"expert_dirs": dirs, "gate": "classic"}}))
    assert main(["describe", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "sample rate" in err and "8000" in err
    # experts scored with other windows (AASIST's 64,600 samples beside an LCNN's 64,000) mix fine:
    # the mixture scores with its own window
    same_rate = [_expert(tmp_path / "c"), _expert(tmp_path / "d", window=4000)]
    assert len(build_mixture(from_dict(MixtureConfig, {"expert_dirs": same_rate, "gate": "average"})).experts) == 2


def test_expert_configs_given_with_expert_dirs_must_match_them(tmp_path):
    dirs = [_expert(tmp_path / "a"), _expert(tmp_path / "b")]
    other = {**EXPERT, "frontend": {**EXPERT["frontend"], "normalize": True}}
    cfg = from_dict(MixtureConfig, {"experts": [EXPERT, other], "expert_dirs": dirs, "gate": "average"})
    # before: the experts were built from the directories (normalize off) but the model directory recorded
    # the given configs (normalize on), so the exported mixture scored differently from the trained one
    with pytest.raises(ConfigError, match=r"experts\[1\]"):
        build_mixture(cfg)
    with pytest.raises(ConfigError, match=r"experts\[1\]"):
        resolved_mixture_config(cfg)
    same = from_dict(MixtureConfig, {"experts": [EXPERT, EXPERT], "expert_dirs": dirs, "gate": "average"})
    mixture = build_mixture(same).eval()
    save_model_dir(tmp_path / "mix", mixture, model_config=resolved_mixture_config(same), architecture="mixture")
    x = 0.1 * torch.randn(2, 8000)
    with torch.no_grad():
        torch.testing.assert_close(load_model_dir(tmp_path / "mix").model(x).score, mixture(x).score)


def test_a_mixture_directory_as_expert_is_a_clear_error(tmp_path, capsys):
    dirs = [_expert(tmp_path / "a"), _expert(tmp_path / "b")]
    cfg = from_dict(MixtureConfig, {"expert_dirs": dirs, "gate": "average"})
    nested = save_model_dir(
        tmp_path / "mix", build_mixture(cfg), model_config=resolved_mixture_config(cfg), architecture="mixture"
    )
    recipe = tmp_path / "nested.yaml"
    recipe.write_text(yaml.safe_dump({"mixture": {"expert_dirs": [str(nested), dirs[0]], "gate": "average"}}))
    # before: `sdd describe` crashed with a traceback (a dry forward on the meta device), `sdd train` named
    # DetectorConfig's unknown keys
    assert main(["describe", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'mixture' model directory" in err


def test_describe_of_expert_dirs_reads_configs_not_weights(tmp_path, capsys):
    dirs = [_expert(tmp_path / "a"), _expert(tmp_path / "b")]
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(yaml.safe_dump({"mixture": {"expert_dirs": dirs, "gate": {"name": "classic", "n_mels": 32}}}))
    # before: every expert's weights were read from disk and copied onto the meta device (a no-op that
    # PyTorch warns about once per tensor: 40+ warnings for three tiny LCNNs, gigabytes read for SSL experts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["describe", str(recipe)]) == 0
    got = json.loads(capsys.readouterr().out)
    cfg = from_dict(MixtureConfig, {"expert_dirs": dirs, "gate": {"name": "classic", "n_mels": 32}})
    want = describe({"model": resolved_mixture_config(cfg)}, device="cpu")
    assert got == want and got["trainable_params"] == got["modules"]["gate"]["total_params"] > 0
