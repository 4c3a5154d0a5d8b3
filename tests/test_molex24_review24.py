"""Review 24 of MoLEx as a research user trains it (molex24): sdd train with MoLEx recipes, expert addition
(init_from + molex.add_experts), molex_report.json, and scoring/evaluating grown models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_train_support import one_thread, write_corpus  # noqa: F401  (one_thread: autouse fixture)

from sddkit.config import from_dict
from sddkit.errors import ConfigError
from sddkit.metrics import eer
from sddkit.training.molex import describe_by_attack, report_attack_names
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _spec(path):
    return {"protocol": str(path), "format": "utterance_table"}


def _model(adapter: str, **section):
    frontend = {"name": "ssl", "encoder": {"name": "wav2vec2_tiny"}, "adapter": adapter}
    frontend[adapter] = {"rank": 2, "targets": ["q", "v"], **section}
    return {"frontend": frontend, "backend": {"name": "linear"}}


def _trained(tmp_path, model):
    train = write_corpus(tmp_path / "data", n=6, samples=2400)
    val = write_corpus(tmp_path / "data", n=6, samples=2400, seed=1, partition="val")
    recipe = {
        "model": model,
        "data": {"train": _spec(train), "val": _spec(val), "crop_samples": 2400, "batch_size": 3},
        "trainer": {"max_steps": 1, "out_dir": str(tmp_path / "first"), "progress": False},
    }
    return Trainer(from_dict(TrainRecipe, recipe)).fit().best_dir, train, val


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (_model("lora"), r"needs a MoLEx front-end \(adapter: molex\); this model's front-end has adapter: lora"),
        (_model("molex", num_experts=2, router={"name": "topk", "k": 1, "mode": "straight_through"}), "top-1"),
    ],
)
def test_a_model_add_experts_cannot_grow_is_refused_before_old_eval_is_scored(tmp_path, monkeypatch, model, match):
    # the refusal came from the growth, after molex.old_eval (a whole old-domain corpus) had been scored with the
    # loaded model; a LoRA model's also named no recipe key ("add_experts needs the molex adapter")
    best, train, val = _trained(tmp_path, model)
    scored: list[str] = []
    monkeypatch.setattr(Trainer, "_molex_before", lambda self: scored.append("old_eval"))
    grow = {
        "init_from": str(best),
        "data": {"train": _spec(train), "val": _spec(val), "crop_samples": 2400, "batch_size": 3},
        "trainer": {"max_steps": 1, "out_dir": str(tmp_path / "grow"), "progress": False},
        "molex": {"add_experts": 1, "old_eval": _spec(val)},
    }
    with pytest.raises(ConfigError, match=match) as err:
        Trainer(from_dict(TrainRecipe, grow)).fit()
    assert f"init_from={best}" in str(err.value) and "molex.add_experts" in str(err.value)
    assert scored == []


def _relabel_corpus(csv_path, corpus: str):
    import pandas as pd

    table = pd.read_csv(csv_path)
    table["corpus"] = corpus
    table.to_csv(csv_path, index=False)
    return csv_path


def test_attacks_named_alike_in_two_old_eval_corpora_are_reported_apart(tmp_path):
    # molex.old_eval listing two corpora that both name attacks A01 .. (ASVspoof 5 dev and ASVspoof 2019 LA eval:
    # A09 .. A16 in both, different systems): molex_report.json merged each pair into one attack, one EER and one
    # expert use computed over the spoofs of both
    best, train, val = _trained(tmp_path, _model("molex", num_experts=2))
    first = _relabel_corpus(write_corpus(tmp_path / "c1", n=9, attacks=("A01", "A02"), samples=2400, seed=5), "c1")
    second = _relabel_corpus(write_corpus(tmp_path / "c2", n=9, attacks=("A01", "A03"), samples=2400, seed=6), "c2")
    grow = {
        "init_from": str(best),
        "data": {"train": _spec(train), "val": _spec(val), "crop_samples": 2400, "batch_size": 3},
        "trainer": {"max_steps": 1, "out_dir": str(tmp_path / "grow"), "progress": False},
        "molex": {"add_experts": 1, "old_eval": [_spec(first), _spec(second)]},
    }
    Trainer(from_dict(TrainRecipe, grow)).fit()
    report = json.loads((tmp_path / "grow" / "molex_report.json").read_text())
    names = {"c1/A01", "c2/A01", "A02", "A03"}  # A02 and A03 name one corpus's spoofs each: kept as they are
    for when in ("before", "after"):
        old = report["old_domains"][when]
        assert set(old["per_attack"]) == names
        assert set(old["expert_use"]["molex_gate_mean"]) == names | {"bonafide"}
        assert set(old["expert_use_per_layer"]["molex_gate_mean"]) == names | {"bonafide"}
    assert set(report["new_domain"]["per_attack"]) == {"A01", "A02"}  # one corpus: the names as they are


def test_report_attack_names_and_figures_by_hand():
    labels = np.array([1, 0, 0, 0, 1, 0, 0])
    attacks = np.array(["-", "A01", "A01", "A02", "bonafide", "A01", "A03"])
    corpora = np.array(["x", "x", "x", "x", "y", "y", "y"])
    names = report_attack_names(labels, attacks, corpora)
    assert names.tolist() == ["bonafide", "x/A01", "x/A01", "A02", "bonafide", "y/A01", "A03"]
    assert report_attack_names(labels, attacks).tolist() == ["bonafide", "A01", "A01", "A02", "bonafide", "A01", "A03"]
    use = np.array([[1.0, 0.0], [0.8, 0.2], [0.6, 0.4], [0.5, 0.5], [0.9, 0.1], [0.0, 1.0], [0.3, 0.7]])[:, None]
    scores = np.array([2.0, -1.0, 3.0, -2.0, 1.0, 0.5, -3.0])
    part = describe_by_attack(labels, scores, {"molex_gate_mean": use}, attacks, corpora)
    assert part["expert_use"]["molex_gate_mean"]["x/A01"] == [0.7, 0.3]  # x's two A01 spoofs only
    assert part["expert_use"]["molex_gate_mean"]["y/A01"] == [0.0, 1.0]
    assert part["expert_use"]["molex_gate_mean"]["bonafide"] == [0.95, 0.05]
    # each group's spoofs against every bona fide trial (2.0, 1.0), as before: y's A01 spoof scores below both, one of
    # x's two above both (merged, the three spoofs gave a third EER)
    assert part["per_attack"]["y/A01"] == 0.0
    assert part["per_attack"]["x/A01"] == pytest.approx(float(eer(np.array([1, 1, 0, 0]), np.array([2, 1, -1, 3.0]))))
    assert part["per_attack"]["x/A01"] == pytest.approx(0.5)
