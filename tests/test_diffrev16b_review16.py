"""Review of the 16th diff: what ``fit()`` returns (and ``sdd train`` prints) as the best val EER and its step is
best/'s checkpoint, also after a resume that found the best checkpoint deleted."""

from __future__ import annotations

import json
import shutil

from test_leftovers16_review16 import _eer_by_step, _no_step, _recipe
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.training.trainer import Trainer, TrainResult


def _fit(out, resume: bool = False) -> TrainResult:
    return Trainer(
        _recipe(out),
        train_data=SyntheticDataset(40, n_attacks=4),
        val_data=SyntheticDataset(18, seed=9),
        resume=resume,
    ).fit()


def test_the_result_names_best_s_checkpoint_after_the_best_one_was_deleted(tmp_path, monkeypatch):
    # before: best/ held step 4's weights but the result (and `sdd train`'s "best val EER: 10.00% (step 6)", and
    # sdd cv's fold record) named the deleted step 6 and its EER, which no exported model has
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _eer_by_step(monkeypatch, {2: 0.3, 4: 0.2, 6: 0.1, 8: 0.4})
    result = _fit(out)
    assert (result.best_eer, result.best_step) == (0.1, 6)  # an intact run: the lowest EER seen is best/'s
    _no_step(monkeypatch)

    shutil.rmtree(out / "checkpoints" / "step-00000006")
    result = _fit(out, resume=True)
    best = json.loads((out / "best" / "config.json").read_text())["metadata"]
    assert (best["checkpoint"], best["steps"], best["val_eer"]) == ("step-00000004", 4, 0.2)
    assert (result.best_eer, result.best_step) == (0.2, 4)
