"""Review 23 (research lines 1 and 2 end to end: LoRA ERM/MLDG, MoLEx and expert addition, resume, scoring)."""

from __future__ import annotations

import json
import os

import torch
from test_train_support import one_thread, write_corpus  # noqa: F401  (one_thread: autouse fixture)

from sddkit.config import from_dict
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def test_checkpoint_tensors_are_as_readable_as_the_umask_allows(tmp_path):
    # safetensors wrote state.safetensors 0600 whatever the umask, while state.json beside it was 0644: a colleague
    # (or a service account) could read the run's records but not resume from or average its checkpoints
    old = os.umask(0o022)
    try:
        path = ckpt.save_checkpoint(tmp_path / "checkpoints", "step-00000001", {"model": {"w": torch.ones(3)}})
        modes = {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()}
        assert modes == {ckpt.STATE_JSON: 0o644, ckpt.STATE_TENSORS: 0o644}
        os.umask(0o077)  # a private umask is kept: the file is no more readable than any other the user writes
        path = ckpt.save_checkpoint(tmp_path / "checkpoints", "step-00000002", {"model": {"w": torch.ones(3)}})
        assert (path / ckpt.STATE_TENSORS).stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    state = ckpt.load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.ones(3))


def test_molex_report_names_the_rows_of_its_per_layer_expert_use(tmp_path):
    # expert_use_per_layer held one unnamed row per adapted projection (8 rows for 2 layers x q, k, v, out): expert k of
    # one projection is unrelated to expert k of another, so the rows could not be read without knowing their order
    train = write_corpus(tmp_path / "data", n=9, attacks=("A01", "A02"), samples=3200)
    val = write_corpus(tmp_path / "data", n=6, attacks=("A01", "A02"), samples=3200, seed=1, partition="val")
    model = {
        "frontend": {
            "name": "ssl",
            "encoder": {"name": "wav2vec2_tiny"},
            "adapter": "molex",
            "molex": {"num_experts": 3, "rank": 2, "targets": ["q", "v", "out"]},
        },
        "backend": {"name": "linear"},
    }
    spec = {"format": "utterance_table"}
    recipe = from_dict(
        TrainRecipe,
        {
            "model": model,
            "data": {
                "train": {**spec, "protocol": str(train)},
                "val": {**spec, "protocol": str(val)},
                "crop_samples": 2400,
                "batch_size": 3,
            },
            "trainer": {"epochs": 1, "max_steps": 1, "progress": False, "out_dir": str(tmp_path / "run")},
            "molex": {},
        },
    )
    Trainer(recipe).fit()
    report = json.loads((tmp_path / "run" / "molex_report.json").read_text())
    names = [f"layers.{i}.{t}" for i in range(2) for t in ("q", "v", "out")]
    assert report["layers"] == names
    per_layer = report["new_domain"]["expert_use_per_layer"]
    for stat in ("molex_gate_mean", "molex_top1_count"):
        for rows in per_layer[stat].values():
            assert len(rows) == len(names) and all(len(row) == 3 for row in rows)


def test_class_weighted_loss_pooled_over_ranks_warns_nothing(tmp_path):
    # every DDP run of a class-weighted recipe (the ASVspoof ones: [0.1, 0.9]) printed torch's "Converting a tensor
    # with requires_grad=True to a scalar may lead to unexpected behavior" from float(ce); torch warns once per
    # process, so the check runs in a process of its own
    import subprocess
    import sys
    from pathlib import Path

    script = f"""
import warnings
import torch
import torch.distributed as dist
from sddkit.detectors.outputs import DetectorOutput
from sddkit.training.losses import DetectionLoss, pooled_over_ranks
from sddkit.training.recipe import LossConfig

dist.init_process_group("gloo", init_method="file://{tmp_path / "store"}", rank=0, world_size=1)
loss_fn = DetectionLoss(LossConfig(class_weights=[0.1, 0.9]))
logits = torch.randn(4, 2, requires_grad=True)
labels = torch.tensor([0, 1, 0, 1])
parts = loss_fn(DetectorOutput(logits=logits, score=logits[:, 1] - logits[:, 0], embedding=logits), labels)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pooled = pooled_over_ranks(parts, loss_fn, labels, world_size=2)
pooled.total.backward()
dist.destroy_process_group()
assert logits.grad is not None and torch.isfinite(logits.grad).all()
print("WARNINGS", [str(w.message) for w in caught])
"""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "WARNINGS []" in out.stdout, out.stdout + out.stderr


def test_resume_of_a_run_whose_init_from_was_moved_says_so_and_goes_on_from_its_new_place(tmp_path):
    # a resume builds the model from init_from again; with that folder moved, the error said "train it first", as
    # for a first stage never trained, though the run only needs the folder back (or its new place)
    import shutil

    import pytest

    from sddkit.errors import CheckpointError

    train = write_corpus(tmp_path / "data", n=9, attacks=("A01", "A02"), samples=3200)
    data = {"train": {"protocol": str(train), "format": "utterance_table"}, "crop_samples": 2400, "batch_size": 3}
    model = {
        "frontend": {"name": "ssl", "encoder": {"name": "wav2vec2_tiny"}, "adapter": "lora", "lora": {"rank": 2}},
        "backend": {"name": "linear"},
    }
    trainer = {"epochs": 1, "max_steps": 1, "progress": False}
    first = from_dict(
        TrainRecipe, {"model": model, "data": data, "trainer": {**trainer, "out_dir": str(tmp_path / "a")}}
    )
    stage_one = Trainer(first).fit().best_dir
    second = {"init_from": str(stage_one), "data": data, "trainer": {**trainer, "out_dir": str(tmp_path / "b")}}
    Trainer(from_dict(TrainRecipe, second)).fit()

    moved = tmp_path / "moved"
    shutil.move(str(stage_one), moved)
    with pytest.raises(CheckpointError, match="this run started from it") as err:
        Trainer(from_dict(TrainRecipe, second), resume=True).fit()
    assert "train it first" not in str(err.value)
    # its new place: the run goes on from its checkpoint
    again = {**second, "init_from": str(moved), "trainer": {**second["trainer"], "max_steps": 2}}
    assert Trainer(from_dict(TrainRecipe, again), resume=True).fit().step == 2


def test_mldg_over_training_data_of_one_spoof_domain_is_refused_before_any_step(tmp_path):
    # a path,label CSV (its attack column empty) under MLDG with a class-balanced sampler: no batch could be split,
    # every step was a plain step on the whole batch (ERM under MLDG's name), said only by a warning after 20 steps
    import pytest

    from sddkit.errors import ConfigError

    one = write_corpus(tmp_path / "one", n=9, attacks=("A01",), samples=3200)
    two = write_corpus(tmp_path / "two", n=9, attacks=("A01", "A02"), samples=3200)
    model = {"frontend": {"name": "logmel", "n_mels": 16}, "backend": {"name": "linear"}}

    def recipe(train, out, n_meta_test=1):
        return from_dict(
            TrainRecipe,
            {
                "model": model,
                "data": {
                    "train": {"protocol": str(train), "format": "utterance_table"},
                    "crop_samples": 2400,
                    "batch_size": 3,
                    "sampler": "class_balanced",
                },
                "strategy": {"name": "mldg", "n_meta_test": n_meta_test},
                "trainer": {"epochs": 1, "max_steps": 1, "progress": False, "out_dir": str(tmp_path / out)},
            },
        )

    with pytest.raises(ConfigError, match=r"spoofs have \['A01'\]: every step would be a plain step") as err:
        Trainer(recipe(one, "a")).fit()
    assert "data.domain_column 'attack'" in str(err.value) and not (tmp_path / "a" / "checkpoints").exists()
    with pytest.raises(ConfigError, match="needs spoofs of at least 3 domains"):
        Trainer(recipe(two, "b", n_meta_test=2)).fit()
    assert Trainer(recipe(two, "c")).fit().step == 1  # two spoof domains split into meta-train and meta-test


def test_a_resume_that_adds_or_changes_molex_old_eval_scores_the_old_model_on_it(tmp_path):
    # the old-domain results before the expert addition were saved at the start only: a resume that added
    # molex.old_eval (forgotten at the start) reported no "before" and no forgetting, and one that changed it compared
    # "after" on the new data with "before" on the old
    old = write_corpus(tmp_path / "old", n=9, attacks=("A01", "A02"), samples=3200)
    old_val = write_corpus(tmp_path / "old", n=6, attacks=("A01", "A02"), samples=3200, seed=1, partition="val")
    new = write_corpus(tmp_path / "new", n=9, attacks=("A03",), samples=3200, seed=2)
    molex = {"num_experts": 2, "rank": 2, "targets": ["q", "v"]}
    model = {
        "frontend": {"name": "ssl", "encoder": {"name": "wav2vec2_tiny"}, "adapter": "molex", "molex": molex},
        "backend": {"name": "linear"},
    }
    spec = {"format": "utterance_table"}
    data = {"train": {**spec, "protocol": str(old)}, "crop_samples": 2400, "batch_size": 3}
    trainer = {"epochs": 1, "max_steps": 1, "progress": False}
    first = {"model": model, "data": data, "trainer": {**trainer, "out_dir": str(tmp_path / "first")}, "molex": {}}
    base = Trainer(from_dict(TrainRecipe, first)).fit().best_dir

    def grow(out, old_eval, resume=False):
        recipe = {
            "init_from": str(base),
            "data": {**data, "train": {**spec, "protocol": str(new)}},
            "trainer": {**trainer, "out_dir": str(tmp_path / out)},
            "molex": {"add_experts": 1, **({"old_eval": old_eval} if old_eval else {})},
        }
        Trainer(from_dict(TrainRecipe, recipe), resume=resume).fit()
        return json.loads((tmp_path / out / "molex_report.json").read_text())

    on_old_val = {**spec, "protocol": str(old_val)}
    fresh = grow("fresh", on_old_val)["old_domains"]
    assert fresh["before"] is not None and "forgetting_eer" in fresh
    assert "old_domains" not in grow("late", None)  # old_eval forgotten at the start
    added = grow("late", on_old_val, resume=True)["old_domains"]  # a finished run: no step, the report again
    assert added["before"] == fresh["before"] and added["after"] == fresh["after"]
    assert added["forgetting_eer"] == fresh["forgetting_eer"]
    # another old-domain set: "before" is that set's too, as a fresh run with it reports it
    on_old_train = {**spec, "protocol": str(old)}
    changed = grow("late", on_old_train, resume=True)["old_domains"]
    assert changed["before"] == grow("fresh_train", on_old_train)["old_domains"]["before"]
    assert changed["before"] != fresh["before"]
