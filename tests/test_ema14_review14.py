"""trainer.ema_decay: the exponential moving average of the weights is what is validated, ranked, saved and exported,
with batch-norm statistics re-estimated for it on trainer.ema_bn_batches fixed training batches; training goes on
from the raw weights and statistics, and a resume continues both."""

from __future__ import annotations

import copy
import json
import math
import types
from pathlib import Path

import pytest
import torch
from test_train_support import (
    SyntheticDataset,
    crash_on_save,
    hand_bn,
    install_tiny,
    is_bn_stat,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import default_collate

from sddkit.config import from_dict
from sddkit.detectors.model_dir import load_model_dir
from sddkit.errors import CheckpointError, ConfigError
from sddkit.training import checkpoint as ckpt
from sddkit.training.data import EMA_BN_EPOCH, epoch_batches
from sddkit.training.distributed import DistInfo
from sddkit.training.ema import BatchNormEstimate, WeightEMA, updated_batch_norms
from sddkit.training.erm import ERM
from sddkit.training.evaluate import evaluate
from sddkit.training.recipe import TrainerConfig, TrainRecipe
from sddkit.training.trainer import Trainer


def _recipe(
    out: Path, max_steps: int, ema_decay: float | None, batch_norm: bool = True, **trainer: object
) -> TrainRecipe:
    return from_dict(
        TrainRecipe,
        {
            "seed": 5,
            "model": {
                "frontend": {"name": "tiny_test", "dropout": 0.2},
                "backend": {"name": "tiny_test_head", "batch_norm": batch_norm},
            },
            "strategy": {"name": "mldg", "beta": 1.0},
            "optimizer": {"lr": 1e-2, "weight_decay": 0.01},
            "data": {"batch_size": 8},
            "trainer": {
                "epochs": 100,
                "max_steps": max_steps,
                "val_every": 4,
                "save_every": 3,
                "keep_top_k": 2,
                "average_top_k": 2,
                "ema_decay": ema_decay,
                "out_dir": str(out),
                "progress": False,
                **trainer,
            },
        },
    )


def _fit(
    out: Path, max_steps: int, ema_decay: float | None, resume: bool = False, batch_norm: bool = True, **trainer: object
) -> Trainer:
    t = Trainer(
        _recipe(out, max_steps, ema_decay, batch_norm, **trainer),
        train_data=SyntheticDataset(40, n_attacks=4),
        val_data=SyntheticDataset(18, seed=9),
        resume=resume,
    )
    t.fit()
    return t


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_model_dir(model_dir).model.state_dict()


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bit for bit


@pytest.mark.parametrize("value", [1.0, -0.1, math.nan, 1.5])
def test_an_ema_decay_outside_0_to_1_is_refused_naming_the_key(value, monkeypatch):
    install_tiny(monkeypatch)
    # a recipe names the key (NaN is refused by the number parser already, as for every float key)
    with pytest.raises(ConfigError, match=r"trainer(\.|: )ema_decay") as caught:
        _recipe(Path("unused"), 2, value)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):  # so does the config built in Python
        TrainerConfig(ema_decay=value)
    assert _recipe(Path("unused"), 2, 0.0).trainer.ema_decay == 0.0


def test_ema_decay_zero_is_the_raw_weights_bit_for_bit_without_batch_norm(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    # a model without batch norm: nothing is re-estimated, and no item is read for it
    reads: list[object] = []
    real_getitem = SyntheticDataset.__getitem__

    def counted(self, index):
        reads.append(index)
        return real_getitem(self, index)

    monkeypatch.setattr(SyntheticDataset, "__getitem__", counted)
    _fit(tmp_path / "raw", 9, None, batch_norm=False)
    raw_reads, reads[:] = list(reads), []
    zero = _fit(tmp_path / "zero", 9, 0.0, batch_norm=False)
    assert reads == raw_reads and zero.bn_estimate is None
    for name in ("best", "final"):
        _assert_same(_weights(tmp_path / "raw" / name), _weights(tmp_path / "zero" / name))
    metadata = json.loads((tmp_path / "zero" / "best" / "config.json").read_text())["metadata"]
    assert metadata["ema_decay"] == 0.0 and metadata["ema_bn_batches"] == 0
    assert "ema_decay" not in json.loads((tmp_path / "raw" / "best" / "config.json").read_text())["metadata"]
    raw_metrics = (tmp_path / "raw" / "metrics.jsonl").read_text()
    assert raw_metrics == (tmp_path / "zero" / "metrics.jsonl").read_text()
    assert zero.ema is not None and zero.ema.decay == 0.0
    # a run without it writes no raw_model: its checkpoints are as before
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "raw" / "checkpoints"))
    assert "raw_model" not in state


def test_the_average_after_two_steps_is_the_hand_computed_one_with_re_estimated_statistics(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    d = 0.7
    seen: list[dict[str, torch.Tensor]] = []
    real_step = ERM.step

    def recording_step(self, batch, ctx):
        if not seen:
            seen.append({k: v.detach().clone() for k, v in ctx.module.state_dict().items()})  # w0
        result = real_step(self, batch, ctx)
        seen.append({k: v.detach().clone() for k, v in ctx.module.state_dict().items()})  # w1, w2
        return result

    monkeypatch.setattr(ERM, "step", recording_step)
    out = tmp_path / "run"
    trainer = Trainer(
        from_dict(
            TrainRecipe,
            {
                "seed": 5,
                "model": {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head", "batch_norm": True}},
                "optimizer": {"lr": 5e-2},
                "data": {"batch_size": 8},
                "trainer": {"epochs": 10, "max_steps": 2, "ema_decay": d, "out_dir": str(out), "progress": False},
            },
        ),
        train_data=SyntheticDataset(40, n_attacks=4),
        val_data=SyntheticDataset(18, seed=9),
    )
    trainer.fit()
    w0, w1, w2 = seen
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(out / "checkpoints"))
    assert state["trainer"]["step"] == 2
    trainable = {n for n, p in trainer.module.named_parameters() if p.requires_grad}
    assert "frontend.adapter.weight" in trainable and "frontend.encoder.weight" not in trainable
    for key, saved in state["model"].items():
        if key in trainable:
            expected = d * (d * w0[key] + (1 - d) * w1[key]) + (1 - d) * w2[key]
            torch.testing.assert_close(saved, expected, rtol=1e-6, atol=1e-7)
            assert not torch.allclose(saved, w2[key])  # the average, not the last weights
        elif is_bn_stat(key):  # re-estimated for the averaged weights, on ema_bn_batches (8, of 5 there are) batches
            assert not torch.equal(saved, w2[key]), key
        else:  # frozen parameters: the model's own
            assert torch.equal(saved, w2[key]), key
    _assert_same(state["raw_model"], w2)  # training goes on from the raw weights and statistics
    assert float(state["model"]["backend.norm.num_batches_tracked"]) == 5
    assert float(state["raw_model"]["backend.norm.num_batches_tracked"]) == 2
    # final/ (average_top_k 1: the last step) is that average
    _assert_same(_weights(out / "final"), state["model"])


def test_best_scores_the_validation_data_with_the_eer_that_was_recorded(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    trainer = _fit(out, 9, 0.8, average_top_k=1)
    best_step = trainer.state.best_step
    recorded = next(h for h in trainer.history if h["step"] == best_step)
    model = load_model_dir(out / "best").model
    result = evaluate(
        model, SyntheticDataset(18, seed=9), batch_size=8, device=torch.device("cpu"), loss_fn=trainer.loss_fn
    )
    assert result.eer == recorded["val_eer"] and result.loss == pytest.approx(recorded["val_loss"], rel=1e-6)
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["metadata"]["ema_decay"] == 0.8 and config["metadata"]["train_recipe"]["trainer"]["ema_decay"] == 0.8
    run = json.loads((out / "run.json").read_text())
    assert run["recipe"]["trainer"]["ema_decay"] == 0.8
    # what best/ holds is the average, not the raw weights of its step
    state = ckpt.load_checkpoint(out / "checkpoints" / f"step-{best_step:08d}")
    assert not torch.equal(state["model"]["frontend.adapter.weight"], state["raw_model"]["frontend.adapter.weight"])
    _assert_same(_weights(out / "best"), state["model"])


def test_an_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    with crash_on_save(monkeypatch, 4):
        _fit(tmp_path / "crashed", 13, 0.9)  # saves at steps 3, 4, 6, then dies saving step 8
    assert ckpt.latest_checkpoint(tmp_path / "crashed" / "checkpoints").name == "step-00000006"
    _fit(tmp_path / "crashed", 13, 0.9, resume=True)
    _fit(tmp_path / "straight", 13, 0.9)
    for name in ("best", "final"):
        _assert_same(_weights(tmp_path / "straight" / name), _weights(tmp_path / "crashed" / name))
    a = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "straight" / "checkpoints"))
    b = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "crashed" / "checkpoints"))
    for key in ("model", "raw_model"):
        _assert_same(a[key], b[key])
    assert a["history"] == b["history"] and a["trainer"]["ranked"] == b["trainer"]["ranked"]
    final = json.loads((tmp_path / "crashed" / "final" / "config.json").read_text())["metadata"]
    assert final["ema_decay"] == 0.9 and final["selection"] == "average of the top 2 checkpoints"


@pytest.mark.parametrize(("before", "after", "message"), [(None, 0.9, "saved without"), (0.9, None, "saved with")])
def test_a_resume_that_switches_the_average_on_or_off_is_refused(tmp_path, monkeypatch, before, after, message):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(out, 4, before)
    with pytest.raises(CheckpointError, match=f"{message} trainer.ema_decay.*resume with trainer.ema_decay="):
        _fit(out, 6, after, resume=True)


def test_a_resume_with_another_decay_warns_and_goes_on_with_it(tmp_path, monkeypatch, caplog):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(out, 4, 0.9)
    with caplog.at_level("WARNING", logger="sddkit.training"):
        resumed = _fit(out, 6, 0.5, resume=True)
    assert "trainer.ema_decay: 0.9 -> 0.5" in caplog.text
    assert resumed.ema is not None and resumed.ema.decay == 0.5 and resumed.state.step == 6


def test_weight_ema_averages_trainable_floats_only_and_swaps_back_exactly():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    model[2].requires_grad_(False)
    ema = WeightEMA(model, 0.5)
    assert ema.names == ["0.weight", "0.bias", "1.weight", "1.bias"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    ema.update()
    torch.testing.assert_close(ema.shadow[0], before["0.weight"] + 0.5)
    model.eval()
    with ema.swapped_in():
        torch.testing.assert_close(model[0].weight, before["0.weight"] + 0.5)
        assert torch.equal(model[2].weight, raw["2.weight"])  # frozen: the model's own
    assert not model.training  # modes are left alone
    _assert_same(model.state_dict(), raw)


def test_expert_addition_averages_the_grown_model_and_keeps_the_old_weights(tmp_path):
    from test_train_molex import MOLEX_MODEL, _spec
    from test_train_support import write_corpus

    old = write_corpus(tmp_path / "old", n=6, attacks=("A01", "A02"), samples=2400)
    new = write_corpus(tmp_path / "new", n=6, attacks=("A03",), samples=2400, seed=2)
    new_val = write_corpus(tmp_path / "new", n=6, attacks=("A03",), samples=2400, seed=3, partition="val")
    common = {"seed": 0, "optimizer": {"lr": 5e-3}}
    trainer = {"epochs": 1, "progress": False}
    data = {"crop_samples": 2000, "batch_size": 3}
    first = from_dict(
        TrainRecipe,
        {
            **common,
            "model": MOLEX_MODEL,
            "data": {**data, "train": _spec(old)},
            "trainer": {**trainer, "out_dir": str(tmp_path / "first")},
        },
    )
    base = Trainer(first).fit().best_dir
    second = from_dict(
        TrainRecipe,
        {
            **common,
            "init_from": str(base),
            "data": {**data, "train": _spec(new), "val": _spec(new_val)},
            "trainer": {**trainer, "ema_decay": 0.5, "out_dir": str(tmp_path / "second")},
            "molex": {"add_experts": 1},
        },
    )
    grown = Trainer(second)
    grown.fit()
    # built over the grown model: the new experts and the tensors grown in place (their old region stays put)
    assert grown.ema is not None and set(grown.ema.names) == set(grown.expert_addition.trainable_names)
    trained = dict(load_model_dir(base).model.named_parameters())
    for name in ("best", "final"):
        after = dict(load_model_dir(tmp_path / "second" / name).model.named_parameters())
        for key, value in trained.items():
            if after[key].shape == value.shape:
                assert torch.equal(after[key], value), (name, key)
            else:  # grown in place: the old region, bit for bit
                assert torch.equal(after[key][tuple(slice(0, n) for n in value.shape)], value), (name, key)
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "second" / "checkpoints"))
    new_b = next(n for n in grown.ema.names if ".lora_B.1" in n)
    assert not torch.equal(state["model"][new_b], state["raw_model"][new_b])


def _independent_bn_batches(trainer: Trainer, n: int) -> list[torch.Tensor]:
    """The batches the recipe's sampler gives one process for the reserved pseudo-epoch, drawn here again."""
    data = trainer.recipe.data
    batches = epoch_batches(trainer.train_data, data, seed=trainer.recipe.seed, epoch=EMA_BN_EPOCH, info=DistInfo())
    return [default_collate([trainer.train_data[k] for k in keys])["waveform"] for keys in list(batches)[:n]]


@pytest.mark.parametrize("decay", [0.8, 0.0])
def test_best_and_final_hold_batch_norm_statistics_re_estimated_for_the_measured_weights(tmp_path, monkeypatch, decay):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    trainer = _fit(out, 9, decay, ema_bn_batches=3, average_top_k=1)
    estimate = trainer.bn_estimate
    assert estimate is not None and [n for n, _ in estimate.norms] == ["backend.norm"]
    batches = _independent_bn_batches(trainer, 3)
    assert len(estimate.batches) == 3 and all(torch.equal(a, b) for a, b in zip(estimate.batches, batches))
    for name in ("best", "final"):
        model = load_model_dir(out / name).model
        exported = model.state_dict()
        hand = hand_bn(model, batches, estimate.seed)  # the exported weights, their statistics re-estimated
        assert hand.keys() == {
            "backend.norm.running_mean",
            "backend.norm.running_var",
            "backend.norm.num_batches_tracked",
        }
        for key, value in hand.items():
            torch.testing.assert_close(exported[key], value, rtol=1e-6, atol=1e-7)
        assert json.loads((out / name / "config.json").read_text())["metadata"]["ema_bn_batches"] == 3
    # best/ is its checkpoint's model, whose raw model keeps the statistics training accumulated
    best = trainer.state.best_step
    state = ckpt.load_checkpoint(out / "checkpoints" / f"step-{best:08d}")
    _assert_same(_weights(out / "best"), state["model"])
    key = "backend.norm.running_mean"
    assert not torch.equal(state["model"][key], state["raw_model"][key])
    assert int(state["raw_model"]["backend.norm.num_batches_tracked"]) == best
    if decay == 0.0:  # the raw weights (bit for bit) with re-estimated statistics
        for key, value in state["model"].items():
            if not is_bn_stat(key):
                assert torch.equal(value, state["raw_model"][key]), key
        last = ckpt.load_checkpoint(ckpt.latest_checkpoint(out / "checkpoints"))  # final/: the last step
        _assert_same(
            {k: v for k, v in _weights(out / "final").items() if not is_bn_stat(k)},
            {k: v for k, v in last["raw_model"].items() if not is_bn_stat(k)},
        )
    # the recorded val EER is the one best/ scores
    recorded = next(h for h in trainer.history if h["step"] == best)
    result = evaluate(
        load_model_dir(out / "best").model,
        SyntheticDataset(18, seed=9),
        batch_size=8,
        device=torch.device("cpu"),
        loss_fn=trainer.loss_fn,
    )
    assert result.eer == recorded["val_eer"] and result.loss == pytest.approx(recorded["val_loss"], rel=1e-6)


def test_a_training_set_of_fewer_batches_re_estimates_on_all_it_has(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    trainer = _fit(tmp_path / "run", 2, 0.5, ema_bn_batches=100)
    assert trainer.bn_estimate is not None and len(trainer.bn_estimate.batches) == 40 // 8
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text())["metadata"]["ema_bn_batches"] == 5


def test_validating_and_re_estimating_leave_training_as_it_was(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    # dropout 0.2 and MLDG's split stream: a re-estimation that drew from the training's generators, or left the
    # raw model's statistics, momenta or modes changed, would make the three runs' raw weights differ
    every = _fit(tmp_path / "every", 9, 0.8, val_every=1, save_every=None)
    third = _fit(tmp_path / "third", 9, 0.8, val_every=3, save_every=None)
    _fit(tmp_path / "plain", 9, None, val_every=3, save_every=None)
    assert len(every.history) == 9 and len(third.history) == 3
    a = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "every" / "checkpoints"))
    b = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "third" / "checkpoints"))
    plain = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "plain" / "checkpoints"))
    assert a["trainer"]["step"] == b["trainer"]["step"] == plain["trainer"]["step"] == 9
    _assert_same(a["raw_model"], b["raw_model"])
    _assert_same(a["raw_model"], plain["model"])
    _assert_same(a["model"], b["model"])  # the measured model of the last step too
    momenta = [m.momentum for m in every.module.modules() if isinstance(m, _BatchNorm)]
    assert momenta == [0.1]


@pytest.mark.parametrize("value", [0, -2])
def test_an_ema_bn_batches_below_one_is_refused_naming_the_key(value, monkeypatch):
    install_tiny(monkeypatch)
    with pytest.raises(ConfigError, match=r"trainer(\.|: )ema_bn_batches") as caught:
        _recipe(Path("unused"), 2, 0.9, ema_bn_batches=value)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="ema_bn_batches must be >= 1"):
        TrainerConfig(ema_bn_batches=value)
    with pytest.raises(ConfigError, match="ema_bn_batches"):
        _recipe(Path("unused"), 2, 0.9, ema_bn_batches=2.5)


def test_batch_norm_estimate_is_update_bn_and_leaves_the_model_as_it_was():
    from sddkit.training.molex import _stay_in_eval

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4),
        torch.nn.Dropout(0.3),
        torch.nn.BatchNorm1d(4, momentum=0.3),
        torch.nn.BatchNorm1d(4),  # frozen: kept in eval mode, as MoLEx keeps the norms of frozen parts
        torch.nn.Linear(4, 2),
    )
    model[3].train = types.MethodType(_stay_in_eval, model[3])
    model.train()
    with torch.no_grad():  # statistics of a model that trained a while
        for _ in range(3):
            model(torch.randn(6, 3))
    model.eval()
    norms = updated_batch_norms(model)
    assert [n for n, _ in norms] == ["2"] and not model.training and not model[0].training
    batches = [torch.randn(5, 3) for _ in range(4)]
    estimate = BatchNormEstimate(model, norms, batches, seed=11)
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    stats = estimate.estimate()
    _assert_same(model.state_dict(), before)
    assert torch.equal(torch.get_rng_state(), rng) and model[2].momentum == 0.3 and not model[2].training
    # torch's own update_bn of the same batches under the same seed (the frozen norm left out of the comparison)
    reference = copy.deepcopy(model)
    reference[3].train = types.MethodType(_stay_in_eval, reference[3])
    with torch.random.fork_rng():
        torch.manual_seed(11)
        torch.optim.swa_utils.update_bn(batches, reference)
    assert set(stats) == {"2.running_mean", "2.running_var", "2.num_batches_tracked"}
    torch.testing.assert_close(stats["2.running_mean"], reference[2].running_mean)
    torch.testing.assert_close(stats["2.running_var"], reference[2].running_var)
    assert int(stats["2.num_batches_tracked"]) == 4
    assert torch.equal(reference[3].running_mean, before["3.running_mean"])  # frozen: untouched
    with estimate.loaded(stats):
        assert torch.equal(model[2].running_var, stats["2.running_var"])
    _assert_same(model.state_dict(), before)


def test_a_log_mel_lcnn_read_from_its_recipe_exports_re_estimated_statistics(tmp_path):
    from test_train_support import write_corpus

    train = write_corpus(tmp_path / "corpus", n=24, samples=4800)
    val = write_corpus(tmp_path / "corpus", n=9, samples=4800, seed=3, partition="val")
    out = tmp_path / "run"
    recipe = from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": {
                "frontend": {"name": "logmel", "n_mels": 32},
                "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 0},
            },
            "optimizer": {"lr": 1e-2},
            "data": {
                "train": [{"protocol": str(train), "format": "utterance_table"}],
                "val": [{"protocol": str(val), "format": "utterance_table"}],
                "crop_samples": 4000,
                "batch_size": 4,
                "sampler": "class_balanced",
                "augment": [{"name": "gain"}],
            },
            "trainer": {
                "epochs": 10,
                "max_steps": 6,
                "val_every": 3,
                "ema_decay": 0.7,
                "ema_bn_batches": 2,
                "out_dir": str(out),
                "progress": False,
            },
        },
    )
    trainer = Trainer(recipe)
    trainer.fit()
    estimate = trainer.bn_estimate
    assert estimate is not None and len(estimate.norms) == sum(
        isinstance(m, _BatchNorm) for m in trainer.module.modules()
    )
    assert len(estimate.norms) >= 2  # the LCNN's batch norms (affine-free ones included)
    # the class-balanced sampler's batches of the reserved pseudo-epoch, cropped and augmented as in training
    batches = _independent_bn_batches(trainer, 2)
    assert len(estimate.batches) == 2 and all(torch.equal(a, b) for a, b in zip(estimate.batches, batches))
    model = load_model_dir(out / "best").model
    exported = model.state_dict()
    hand = hand_bn(model, batches, estimate.seed)
    assert len(hand) == 3 * len(estimate.norms)
    for key, value in hand.items():
        torch.testing.assert_close(exported[key], value, rtol=1e-5, atol=1e-6)
    recorded = next(h for h in trainer.history if h["step"] == trainer.state.best_step)
    result = evaluate(model, trainer.val_data, batch_size=4, device=torch.device("cpu"), loss_fn=trainer.loss_fn)
    assert result.eer == recorded["val_eer"] and result.loss == pytest.approx(recorded["val_loss"], rel=1e-6)
