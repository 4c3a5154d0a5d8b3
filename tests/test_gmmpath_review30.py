"""Review gmmpath: the LFCC-GMM back-end's EM stops early under ``em_tolerance`` (the published baselines iterate
until the log-likelihood gain is small) and records the iterations each class ran; ``sdd train --resume`` over a
finished EM fit says what works (not init_from, which an EM fit refuses) and refuses to replace a gradient run's
exports; ``sdd cv`` of a GMM recipe resumes a fold stopped while its held-out files were scored."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from test_crossval import TINY, _corpus
from test_gmmbackend_review29 import _recipe
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.backends.gmm import GMMConfig, fit_gmm
from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.errors import ConfigError
from sddkit.training.crossval import FOLD_NAME, cross_validate, parse_folds
from sddkit.training.recipe import TrainRecipe


def _clusters() -> torch.Tensor:
    rng = np.random.default_rng(1)
    a = rng.normal([-5.0, 0.0], [0.5, 1.0], size=(3000, 2))
    b = rng.normal([5.0, 2.0], [1.0, 0.2], size=(1000, 2))
    return torch.from_numpy(np.concatenate([a, b]))


def test_em_stops_once_the_gain_falls_below_the_tolerance():
    x = _clusters()
    full = fit_gmm(x, 2, iterations=50, seed=0)
    assert full.iterations == 50 and len(full.history) == 51  # no tolerance: every iteration, as before
    fit = fit_gmm(x, 2, iterations=50, seed=0, tolerance=1e-6)
    gains = np.diff(fit.history)
    assert 1 <= fit.iterations < 50 and len(fit.history) == fit.iterations + 1
    assert gains[-1] < 1e-6 and (gains[:-1] >= 1e-6).all()  # stopped at the first small gain, not before
    # the iterations it ran are those of the full run: the same parameters where it stopped
    prefix = fit_gmm(x, 2, iterations=fit.iterations, seed=0)
    assert fit.history == prefix.history
    assert torch.equal(fit.means, prefix.means) and torch.equal(fit.variances, prefix.variances)


@pytest.mark.parametrize("value", [0.0, -1e-3, math.inf, math.nan])
def test_a_tolerance_that_is_not_a_positive_finite_gain_is_refused(value):
    with pytest.raises(ValueError, match=r"em_tolerance must be a positive, finite gain .* or null"):
        GMMConfig(em_tolerance=value)


def test_sdd_train_stops_em_early_and_records_the_iterations(tmp_path, capsys):
    recipe = _recipe(tmp_path, tmp_path / "run", backend=", em_tolerance: 0.01")
    assert main(["train", recipe, "model.backend.em_iterations=50"]) == 0
    em = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["metadata"]["em"]
    for name in ("spoof", "bonafide"):
        history = em["mean_log_likelihood"][name]
        assert em["iterations"][name] == len(history) - 1 < 50
        assert history[-1] - history[-2] < 0.01 <= min(np.diff(history[:-1]))
    # a bad value from the command line is a usage error naming the key, before anything is read
    capsys.readouterr()
    assert main(["train", recipe, "model.backend.em_tolerance=0", f"trainer.out_dir={tmp_path / 'bad'}"]) == 2
    assert "model.backend.em_tolerance must be a positive, finite gain" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_resume_of_a_finished_em_fit_says_what_works(tmp_path, capsys):
    recipe = _recipe(tmp_path, tmp_path / "run")
    assert main(["train", recipe]) == 0
    capsys.readouterr()
    # before: "continue from one of them in another trainer.out_dir with init_from=", which a gmm recipe refuses
    assert main(["train", recipe, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "fitted by EM in one go, saving no checkpoint: --resume has nothing to continue" in err
    assert "choose another trainer.out_dir, or delete them to fit there afresh" in err
    assert "init_from" not in err


def test_a_gmm_recipe_resumed_over_a_gradient_runs_checkpoints_is_refused(tmp_path, capsys):
    # before: the EM fit ignored the checkpoints and replaced the gradient run's best/ and final/ without a word
    recipe = _recipe(tmp_path, tmp_path / "run")
    grad = tmp_path / "grad.yaml"
    grad.write_text(
        json.dumps(
            {
                "seed": 0,
                "model": TINY,
                "data": {
                    "train": {"protocol": str(tmp_path / "c" / "train_0.csv"), "format": "utterance_table"},
                    "val": {"protocol": str(tmp_path / "c" / "val_1.csv"), "format": "utterance_table"},
                    "crop_samples": 8000,
                    "batch_size": 4,
                },
                "trainer": {"max_steps": 1, "out_dir": str(tmp_path / "run"), "progress": False, "device": "cpu"},
            }
        )
    )
    assert main(["train", str(grad)]) == 0
    before = (tmp_path / "run" / "best" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", recipe, "--resume"]) == 2
    assert "this recipe's model.backend gmm is fitted by EM, which continues no checkpoint" in capsys.readouterr().err
    assert (tmp_path / "run" / "best" / "model.safetensors").read_bytes() == before


def test_sdd_cv_of_a_gmm_recipe_resumes_a_fold_stopped_while_scoring(tmp_path, caplog):
    recipe = from_dict(
        TrainRecipe,
        {
            "seed": 0,
            "model": {"frontend": {"name": "lfcc"}, "backend": {"name": "gmm", "components": 2, "em_iterations": 3}},
            "data": {
                "train": {"protocol": str(_corpus(tmp_path, "train", 0)), "format": "utterance_table"},
                "val": {"protocol": str(_corpus(tmp_path, "val", 1)), "format": "utterance_table"},
                "crop_samples": 4000,
                "batch_size": 4,
            },
            "trainer": {"epochs": 1, "out_dir": str(tmp_path / "unused"), "progress": False},
        },
    )
    folds = parse_folds("source", ["s0", "s1"])
    out = tmp_path / "cv"
    first = cross_validate(recipe, folds, out, workers=0)
    # a Ctrl-C while fold s1's held-out files were scored: its best/ and final/ exported, no fold.json, no cv.json
    fold = out / "fold_s1"
    (fold / FOLD_NAME).unlink()
    (out / "cv.json").unlink()
    weights = (fold / "best" / "model.safetensors").read_bytes()
    # before: the rerun stopped with "holds the exported model(s) ... continue ... with init_from=", so the fold
    # could only be fitted again from scratch by deleting it
    with caplog.at_level(logging.INFO, logger="sddkit.training.crossval"):
        again = cross_validate(recipe, folds, out, workers=0)
    assert "fold s1: fitted by EM before" in caplog.text
    assert (fold / "best" / "model.safetensors").read_bytes() == weights  # scored as fitted, not refitted
    assert [f["eer"] for f in again["folds"]] == [f["eer"] for f in first["folds"]]
    assert json.loads((fold / FOLD_NAME).read_text())["val_eer"] == first["folds"][1]["val_eer"]
    # a rerun under another recipe is refused for that fold, as for a fold with checkpoints (fold s0 is gone: it
    # would be refused by its fold.json alone)
    import shutil

    (fold / FOLD_NAME).unlink()
    shutil.rmtree(out / "fold_s0")
    changed = from_dict(TrainRecipe, {**to_dict(recipe), "seed": 1})
    with pytest.raises(ConfigError, match=r"fold s1: .* was trained with another recipe \(seed: 0 -> 1\)"):
        cross_validate(changed, folds, out, workers=0)
