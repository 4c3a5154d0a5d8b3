"""Review 27 of the MoLEx path as a researcher uses it (molexpath): a first MoLEx run, experts added for a new attack
(init_from + molex.add_experts), and the resumes that cross that change."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_train_support import one_thread, write_corpus  # noqa: F401  (one_thread: autouse fixture)

from sddkit.config import from_dict
from sddkit.errors import CheckpointError
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer

MOLEX_MODEL = {
    "frontend": {
        "name": "ssl",
        "encoder": {"name": "wav2vec2_tiny"},
        "adapter": "molex",
        "molex": {"num_experts": 2, "rank": 2, "targets": ["q", "v"]},
    },
    "backend": {"name": "linear"},
}


def _spec(path):
    return {"protocol": str(path), "format": "utterance_table"}


def _data(train, val):
    return {"train": _spec(train), "val": _spec(val), "crop_samples": 2400, "batch_size": 3}


def _first(out, data):
    return {"model": MOLEX_MODEL, "data": data, "molex": {}, "trainer": {"max_steps": 1, "out_dir": str(out)}}


def _grow(out, data, init_from, n, old_eval=None):
    molex = {"add_experts": n, **({"old_eval": _spec(old_eval)} if old_eval is not None else {})}
    return {"init_from": str(init_from), "data": data, "molex": molex, "trainer": {"max_steps": 1, "out_dir": str(out)}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A first MoLEx run (``first``) and a run that grew its best/ by one expert (``grow``), one step each."""
    root = tmp_path_factory.mktemp("molexpath")
    old_train = write_corpus(root / "old", n=6, attacks=("A01",), samples=2400)
    old_val = write_corpus(root / "old", n=6, attacks=("A01",), samples=2400, seed=1, partition="val")
    new_train = write_corpus(root / "new", n=6, attacks=("A02",), samples=2400, seed=2)
    new_val = write_corpus(root / "new", n=6, attacks=("A02",), samples=2400, seed=3, partition="val")
    old, new = _data(old_train, old_val), _data(new_train, new_val)
    Trainer(from_dict(TrainRecipe, _first(root / "first", old))).fit()
    Trainer(from_dict(TrainRecipe, _grow(root / "grow", new, root / "first" / "best", 1))).fit()
    return {"root": root, "old": old, "new": new, "old_val": old_val}


def _copy(runs, name, tmp_path):
    out = tmp_path / name
    shutil.copytree(runs["root"] / name, out)
    return out


def _scored(monkeypatch) -> list[str]:
    scored: list[str] = []
    monkeypatch.setattr(Trainer, "_molex_before", lambda self: scored.append("old_eval"))
    return scored


def test_resuming_a_first_stage_run_with_the_add_experts_recipe_is_refused_before_old_eval_is_scored(
    runs, tmp_path, monkeypatch
):
    # before: molex.old_eval (none recorded by the first stage, so "changed") was scored with the model, a whole
    # old-domain corpus, and only then the checkpoint's load failed ("missing [...lora_A.1...]"), listing some 40
    # recipe keys as changed, the first stage's model section as "-> null", molex.add_experts among them
    out = _copy(runs, "first", tmp_path)
    scored = _scored(monkeypatch)
    recipe = _grow(out, runs["new"], out / "best", 1, old_eval=runs["old_val"])
    with pytest.raises(CheckpointError) as err:
        Trainer(from_dict(TrainRecipe, recipe), resume=True).fit()
    assert scored == []
    message = str(err.value)
    assert "with molex.add_experts: 1" in message and "a model without added experts (molex.add_experts: 0)" in message
    assert "resume it with the recipe it was started with" in message
    assert f"init_from={out / 'best'}" in message and "-> null" not in message


@pytest.mark.parametrize("n", [0, 2])
def test_resuming_a_grown_run_with_another_expert_count_is_refused_before_old_eval_is_scored(
    runs, tmp_path, monkeypatch, n
):
    # n = 2: a mismatched count; n = 0: the first stage's recipe (its model section, no add_experts) on the grown run
    out = _copy(runs, "grow", tmp_path)
    scored = _scored(monkeypatch)
    if n:
        recipe = _grow(out, runs["new"], runs["root"] / "first" / "best", n, old_eval=runs["old_val"])
    else:
        recipe = {**_first(out, runs["new"]), "molex": {"old_eval": _spec(runs["old_val"])}}
    with pytest.raises(CheckpointError) as err:
        Trainer(from_dict(TrainRecipe, recipe), resume=True).fit()
    assert scored == []
    message = str(err.value)
    assert f"with molex.add_experts: {n}" in message
    assert "a model grown by 1 expert(s) (molex.add_experts: 1)" in message
    assert "set molex.add_experts back to 1" in message
    # the refused resume left the run as it was: with its own count it continues
    recipe = _grow(out, runs["new"], runs["root"] / "first" / "best", 1)
    recipe["trainer"]["max_steps"] = 2
    trainer = Trainer(from_dict(TrainRecipe, recipe), resume=True)
    assert trainer.fit().step == 2
    assert trainer.module.frontend.expert_groups == (2, 1)


def test_a_model_grown_through_the_api_is_not_saved_under_the_config_it_was_loaded_with(runs, tmp_path):
    # before: save_model_dir wrote the grown weights under the config taken before the growth (added_experts []):
    # the directory was written, and never loaded again ("unexpected [...lora_A.1...]", "config.json ... edited
    # since the save?")
    from sddkit.detectors.model_dir import load_model_dir, save_model_dir
    from sddkit.errors import ConfigError

    loaded = load_model_dir(runs["root"] / "first" / "best")
    model, config = loaded.model, loaded.model_config
    model.frontend.add_experts(2)
    with pytest.raises(ConfigError, match=r"added_experts'\] is \[\], but .* expert groups \[2, 2\]"):
        save_model_dir(tmp_path / "stale", model, model_config=config, inference=loaded.inference)
    assert not (tmp_path / "stale").exists()
    # with the growth recorded, as the message says, it saves and reloads as it was
    grown = {**config, "frontend": model.frontend.config_after_growth(config["frontend"])}
    save_model_dir(tmp_path / "grown", model, model_config=grown, inference=loaded.inference)
    reloaded = load_model_dir(tmp_path / "grown").model
    assert reloaded.frontend.expert_groups == (2, 2)
    state = model.state_dict()
    assert all(torch.equal(t, state[k]) for k, t in reloaded.state_dict().items())
