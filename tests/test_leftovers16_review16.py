"""Review 16 leftovers: best/'s ``steps`` are its checkpoint's, a final/ of fewer checkpoints than
trainer.average_top_k says so, score_columns' csv errors are ProtocolErrors, README's run settings are the code's."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path

import pytest
from test_train_support import (
    fit_tiny,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
    tiny_bn_recipe,
)

from sddkit.errors import ProtocolError
from sddkit.evaluation.scores import read_scores, score_columns
from sddkit.training.erm import ERM
from sddkit.training.recipe import RUN_SETTINGS, TrainRecipe
from sddkit.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def _recipe(out: Path, **trainer: object) -> TrainRecipe:
    return tiny_bn_recipe(out, seed=5, lr=1e-2, ema_bn_batches=2, **trainer)


def _fit(out: Path, resume: bool = False, **trainer: object) -> Trainer:
    return fit_tiny(_recipe(out, **trainer), resume=resume)


def _eer_by_step(monkeypatch, eers: dict[int, float]) -> None:
    """Every validation measures ``eers[step]``: which checkpoints rank best is known in advance."""
    real = Trainer._evaluate

    def evaluate(self, *a, **k):
        return dataclasses.replace(real(self, *a, **k), eer=eers.get(self.state.step, 0.5))

    monkeypatch.setattr(Trainer, "_evaluate", evaluate)


def _metadata(model_dir: Path) -> dict:
    return json.loads((model_dir / "config.json").read_text())["metadata"]


def _no_step(monkeypatch) -> None:
    def no_step(self, batch, ctx):
        raise AssertionError("a finished run took a training step")

    monkeypatch.setattr(ERM, "step", no_step)


def test_best_records_the_steps_of_its_own_checkpoint(tmp_path, monkeypatch):
    # before: best/'s steps was the run's last step (8) though its weights are those of step 2
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _eer_by_step(monkeypatch, {2: 0.1, 4: 0.3, 6: 0.2, 8: 0.4})
    result = _fit(out, average_top_k=1, keep_top_k=1)
    best, final = _metadata(out / "best"), _metadata(out / "final")
    assert (best["checkpoint"], best["best_step"], best["steps"], best["run_steps"]) == ("step-00000002", 2, 2, 8)
    assert final["steps"] == 8 and final["selection"] == "last step" and result.state.step == 8
    assert "run_steps" not in final and "average_top_k" not in final  # the last weights, as asked


def test_a_resumed_final_of_fewer_checkpoints_than_average_top_k_says_so(tmp_path, monkeypatch, caplog):
    # before: with top-k checkpoints deleted, final/ silently held the last weights (or a smaller average) with
    # nothing in its metadata or the log saying it was not the average trainer.average_top_k asked for
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _eer_by_step(monkeypatch, {2: 0.3, 4: 0.2, 6: 0.1, 8: 0.4})  # ranked: 6, 4, 2; latest: 8
    _fit(out, average_bn="reestimate")
    full = _metadata(out / "final")
    assert full["checkpoints"] == ["step-00000006", "step-00000004", "step-00000002"]
    assert "average_top_k" not in full and full["average_bn"] == "reestimate"
    _no_step(monkeypatch)

    shutil.rmtree(out / "checkpoints" / "step-00000002")
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        _fit(out, resume=True, average_bn="reestimate")
    final = _metadata(out / "final")
    assert final["selection"] == "average of the top 2 checkpoints"
    assert final["checkpoints"] == ["step-00000006", "step-00000004"] and final["average_bn"] == "reestimate"
    assert (final["average_top_k"], final["ranked_checkpoints"]) == (3, 2)
    said = [r.getMessage() for r in caplog.records if "trainer.average_top_k asks for" in r.getMessage()]
    assert len(said) == 1 and "final/ holds the average of the top 2, not the average of the top 3" in said[0]
    assert "step-00000002 were deleted" in said[0]

    caplog.clear()
    shutil.rmtree(out / "checkpoints" / "step-00000004")
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        _fit(out, resume=True, average_bn="reestimate")
    final = _metadata(out / "final")
    assert final["selection"] == "last step" and "checkpoints" not in final and "average_bn" not in final
    assert (final["average_top_k"], final["ranked_checkpoints"], final["steps"]) == (3, 1, 8)
    said = [r.getMessage() for r in caplog.records if "trainer.average_top_k asks for" in r.getMessage()]
    assert len(said) == 1 and "final/ holds the last step's weights (trainer.average_bn does not apply" in said[0]
    assert "step-00000004, step-00000002 were deleted" in said[0] and "\n" not in said[0]
    assert _metadata(out / "best")["checkpoint"] == "step-00000006"


def test_a_raised_average_top_k_on_resume_says_why_final_is_not_that_average(tmp_path, monkeypatch, caplog):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(out, keep_top_k=1, average_top_k=1)
    _no_step(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        _fit(out, resume=True, keep_top_k=3, average_top_k=3)
    final = _metadata(out / "final")
    assert final["selection"] == "last step" and (final["average_top_k"], final["ranked_checkpoints"]) == (3, 1)
    said = [r.getMessage() for r in caplog.records if "trainer.average_top_k asks for" in r.getMessage()]
    assert len(said) == 1 and "lower trainer.keep_top_k" in said[0]


@pytest.mark.parametrize("header_first", [True, False])
def test_score_columns_and_readers_raise_a_protocol_error_for_a_field_over_the_csv_limit(tmp_path, header_first):
    # before: csv.Error("field larger than field limit") came out raw, naming no file
    path = tmp_path / "scores.csv"
    huge = "x" * 200_000
    if header_first:
        path.write_text(f'path"{huge},score\na.wav,0.5\n')  # the header line itself
    else:
        path.write_text(f'path,score\n"{huge}",0.5\n')
    line = 1 if header_first else 2
    with pytest.raises(ProtocolError, match=rf"^{re.escape(str(path))}:{line}: malformed CSV \(field larger") as caught:
        read_scores(path)
    assert "\n" not in str(caught.value)
    if header_first:
        with pytest.raises(ProtocolError, match=rf"^{re.escape(str(path))}:1: malformed CSV"):
            score_columns(path)
    else:
        assert score_columns(path) == ("path", "score")  # the header alone is read


def test_score_columns_of_a_tsv_names_the_format(tmp_path):
    path = tmp_path / "scores.tsv"
    path.write_text(f'utt_id\t"{"y" * 200_000}\nu1\t0.5\n')
    with pytest.raises(ProtocolError, match=r"scores\.tsv:1: malformed TSV"):
        score_columns(path, "tsv")


def test_readme_run_settings_are_the_code_run_settings():
    reference = (REPO / "docs" / "cli.md").read_text()  # README's sdd train row, until it moved to docs/cli.md
    found = re.findall(r"the run settings \(([^)]*)\), which a resume may change freely", reference)
    assert len(found) == 1, "docs/cli.md's sdd train section lists the run settings once"
    named, prefix = set(), None
    for item in re.findall(r"`([^`]+)`", found[0]):
        # `trainer.out_dir`, `device`, ...: a bare key belongs to the section named before it
        prefix, key = item.split(".", 1) if "." in item else (prefix, item)
        named.add(f"{prefix}.{key}")
    assert named == set(RUN_SETTINGS)
