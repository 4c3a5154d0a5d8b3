"""Review tests (MoLEx, second look): the router checks of a model read by ``init_from``, and a MoLEx report whose
scoring meets non-finite scores after the models were exported."""

from __future__ import annotations

import json

import pytest
import torch
from test_train_support import one_thread, write_corpus  # noqa: F401  (one_thread: autouse fixture)

from sddkit.config import from_dict
from sddkit.errors import ConfigError
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _model(molex: dict) -> dict:
    return {
        "frontend": {
            "name": "ssl",
            "encoder": {"name": "wav2vec2_tiny"},
            "adapter": "molex",
            "molex": {"num_experts": 2, "rank": 2, "targets": ["q", "v"], **molex},
        },
        "backend": {"name": "linear"},
    }


def _spec(path):
    return {"protocol": str(path), "format": "utterance_table"}


def test_init_from_a_model_whose_router_cannot_train_is_refused(tmp_path):
    """A recipe refuses to train a weighted top-1 router without load balancing (no gradient reaches the router),
    but only for a model it configures: ``init_from`` read the same config from a directory and trained it,
    the router kept its random routing. The frozen experts of such a model (a mixture's) are not refused."""
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.model_dir import save_model_dir

    config = _model({"router": {"name": "topk", "k": 1}, "load_balance_weight": 0.0})
    with pytest.raises(ConfigError, match="router topk k=1"):  # the recipe's own check, for a configured model
        from_dict(TrainRecipe, {"model": config})
    model = build_detector(from_dict(DetectorConfig, config))  # a model trained before that check, say
    save_model_dir(tmp_path / "old", model, model_config=config)
    train = write_corpus(tmp_path / "data", n=6, samples=2400)
    recipe = from_dict(
        TrainRecipe,
        {
            "init_from": str(tmp_path / "old"),
            "data": {"train": _spec(train), "crop_samples": 2400, "batch_size": 3},
            "trainer": {"epochs": 1, "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )
    with pytest.raises(ConfigError, match=r"init_from=.*old: frontend: router topk k=1 \(mode: weighted\)"):
        Trainer(recipe).fit()
    assert not (tmp_path / "run" / "checkpoints").exists()

    from sddkit.training.molex import trained_molex_problem

    model.requires_grad_(False)  # frozen (a mixture's expert): nothing of its router trains, nothing to refuse
    assert trained_molex_problem(model) is None
    fine = build_detector(from_dict(DetectorConfig, _model({})))
    assert trained_molex_problem(fine) is None


def test_non_finite_scores_in_the_molex_report_do_not_fail_a_saved_run(tmp_path):
    """molex_report.json is written after best/ and final/ were exported; a model scoring NaN there raised
    TrainingDivergedError and failed the run whose models were saved. The report now says what went wrong."""
    train = write_corpus(tmp_path / "data", n=6, samples=2400)
    val = write_corpus(tmp_path / "data", n=6, samples=2400, seed=1, partition="val")
    recipe = from_dict(
        TrainRecipe,
        {
            "model": _model({}),
            "data": {"train": _spec(train), "val": _spec(val), "crop_samples": 2400, "batch_size": 3},
            "trainer": {"epochs": 1, "out_dir": str(tmp_path / "run"), "progress": False},
            "molex": {"old_eval": _spec(val)},
        },
    )

    class NaNAfterExport(Trainer):
        def _finish(self):
            result = super()._finish()
            with torch.no_grad():  # the model as scored by the report only (best/ and final/ are on disk)
                for p in self.module.backend.parameters():
                    p.fill_(float("nan"))
            return result

    result = NaNAfterExport(recipe).fit()
    assert result.best_dir is not None and (tmp_path / "run" / "final").is_dir()
    report = json.loads((tmp_path / "run" / "molex_report.json").read_text())
    assert "non-finite score" in report["new_domain"]["error"]
    old = report["old_domains"]
    # no init_from: no trained model before this run, so no "before" (it was the random initialisation's figures)
    assert old["before"] is None and "non-finite score" in old["after"]["error"]
    assert "forgetting_eer" not in old
