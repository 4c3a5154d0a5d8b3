"""Recipe parsing, loss, schedules and the Trainer loop (validation, selection, averaging, exports)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from test_train_support import (
    TINY_MODEL,
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
    tiny_detector,
    write_corpus,
    write_tiny_recipe,
)

from sddkit.config import from_dict
from sddkit.detectors.model_dir import load_model_dir
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import ConfigError
from sddkit.registry import get_registry
from sddkit.training import checkpoint as ckpt
from sddkit.training.data import read_tables
from sddkit.training.erm import ERM
from sddkit.training.losses import DetectionLoss
from sddkit.training.mldg import MLDG
from sddkit.training.recipe import LossConfig, ProtocolSpec, ScheduleConfig, TrainRecipe, load_recipe
from sddkit.training.schedules import build_optimizer, build_scheduler
from sddkit.training.strategy import StepContext
from sddkit.training.trainer import Trainer


def _recipe(tmp_path, **sections) -> TrainRecipe:
    data = {
        "seed": 3,
        "model": TINY_MODEL,
        "optimizer": {"lr": 1e-2},
        "data": {"batch_size": 8},
        "trainer": {"epochs": 2, "out_dir": str(tmp_path / "run"), "progress": False, "log_every": 2},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return from_dict(TrainRecipe, data)


# --- recipe ------------------------------------------------------------------------------------------------
def test_recipe_is_strict_and_typed(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    r = _recipe(tmp_path)
    assert r.strategy.name == "erm" and r.schedule.name == "constant" and r.optimizer.betas == (0.9, 0.999)
    with pytest.raises(ConfigError, match=r"trainer: unknown key\(s\) 'epoch'"):
        from_dict(TrainRecipe, {"model": TINY_MODEL, "trainer": {"epoch": 3}})
    with pytest.raises(ConfigError, match="needs exactly one of 'model'"):
        from_dict(TrainRecipe, {})
    with pytest.raises(ConfigError, match="add_experts needs 'init_from'"):
        from_dict(TrainRecipe, {"model": TINY_MODEL, "molex": {"add_experts": 2}})
    with pytest.raises(ConfigError, match="average_top_k"):
        from_dict(TrainRecipe, {"model": TINY_MODEL, "trainer": {"average_top_k": 3, "keep_top_k": 1}})
    with pytest.raises(ConfigError, match="unknown strategy 'sgd'"):
        from_dict(TrainRecipe, {"model": TINY_MODEL, "strategy": "sgd"})
    with pytest.raises(ConfigError, match="unknown augmentation"):
        from_dict(TrainRecipe, {"model": TINY_MODEL, "data": {"augment": [{"name": "no_such_augmentation"}]}})
    path = tmp_path / "r.yaml"
    path.write_text(
        "model:\n  frontend: tiny_test\n  backend: tiny_test_head\nstrategy: mldg\nloss: {class_weights: [0.1, 0.9]}\n"
    )
    r = load_recipe(path, ["strategy.beta=0.5", "trainer.max_steps=7", "model.frontend.dim=4"])
    assert r.strategy.name == "mldg" and r.strategy.config.beta == 0.5
    assert r.trainer.max_steps == 7 and r.model.frontend.config.dim == 4 and r.loss.class_weights == (0.1, 0.9)


# --- loss ---------------------------------------------------------------------------------------------------
def test_weighted_cross_entropy_and_aux_losses_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    aux = {"balance": torch.tensor(0.25), "z": torch.tensor([0.5])}
    out = DetectorOutput(logits=logits, score=logits[:, 1] - logits[:, 0], embedding=logits, aux_losses=aux)
    parts = DetectionLoss(LossConfig(class_weights=(0.1, 0.9)))(out, labels)
    nll = [math.log(1 + math.exp(-2.0)), math.log(1 + math.exp(-1.0)), math.log(2.0)]
    expected_ce = (0.1 * nll[0] + 0.9 * nll[1] + 0.9 * nll[2]) / (0.1 + 0.9 + 0.9)
    assert float(parts.ce) == pytest.approx(expected_ce, rel=1e-6)
    assert float(parts.total) == pytest.approx(expected_ce + 0.75, rel=1e-6)
    smooth = DetectionLoss(LossConfig(label_smoothing=0.2))(out, labels)
    # smoothing 0.2 over 2 classes: target 0.9 on the label, 0.1 on the other
    lp = torch.log_softmax(logits, dim=1)
    expected = -(0.9 * lp[torch.arange(3), labels] + 0.1 * lp[torch.arange(3), 1 - labels]).mean()
    assert float(smooth.ce) == pytest.approx(float(expected), rel=1e-6)


def test_aux_loss_gradient_reaches_the_parameters():
    batch = SyntheticDataset(n=8)
    batch = {k: torch.stack([batch[i][k] for i in range(8)]) for k in ("waveform", "label", "domain")}
    grads = {}
    for weight in (0.0, 0.5):
        torch.manual_seed(0)
        model = tiny_detector(aux_weight=weight)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
        ctx = StepContext(model=model, module=model, optimizer=opt, loss_fn=DetectionLoss(LossConfig()))
        ERM().step(batch, ctx)
        grads[weight] = (model.frontend.adapter.weight.grad.clone(), model.frontend.adapter.weight.detach().clone())
    # aux = 0.5 * ||W||^2  ->  its gradient is W
    (g0, w), (g1, _) = grads[0.0], grads[0.5]
    torch.testing.assert_close(g1 - g0, w, rtol=1e-5, atol=1e-6)


# --- schedules -------------------------------------------------------------------------------------------------
def _lrs(cfg: ScheduleConfig, steps: int, total: int, lr: float = 1e-3) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = build_scheduler(opt, cfg, total)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules():
    cyc = _lrs(ScheduleConfig(name="cyclic", base_lr=1e-7, max_lr=1e-5, step_size=4), 10, 100)
    assert cyc[0] == pytest.approx(1e-7) and cyc[4] == pytest.approx(1e-5) and cyc[8] == pytest.approx(1e-7)
    assert cyc[2] == pytest.approx(1e-7 + 0.5 * (1e-5 - 1e-7))
    cos = _lrs(ScheduleConfig(name="cosine", warmup_steps=2, min_lr_ratio=0.1), 12, 10)
    assert cos[0] == pytest.approx(0.5e-3) and cos[1] == pytest.approx(1e-3)
    assert cos[6] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert cos[10] == pytest.approx(1e-4) and cos[11] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(cos[1:], cos[2:]))
    assert _lrs(ScheduleConfig(name="constant"), 3, 3) == [1e-3] * 3
    with pytest.raises(ConfigError):
        build_optimizer([], from_dict(TrainRecipe, {"init_from": "x"}).optimizer)


# --- the trainer ------------------------------------------------------------------------------------------------
def test_mldg_refuses_domain_batches_too_few_to_split_before_training(tmp_path, monkeypatch):
    # batch 4 = 2 domain blocks, n_meta_test 2: every step fell back to a plain ERM step (a warning after 20)
    install_tiny(monkeypatch)
    r = _recipe(
        tmp_path,
        data={"batch_size": 4, "sampler": "domain_batch", "sampler_options": {"n_domains_per_step": 2}},
        strategy={"name": "mldg", "n_meta_test": 2},
    )
    trainer = Trainer(r, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9))
    with pytest.raises(ConfigError, match="n_meta_test 2 needs batches of at least 3 domain blocks.* gives 2"):
        trainer.fit()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_domain_batch_sampler_marks_domain_blocks_for_mldg(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    r = _recipe(
        tmp_path,
        data={"batch_size": 8, "sampler": "domain_batch", "sampler_options": {"bonafide_fraction": 0.5}},
        trainer={"epochs": 1},
        strategy={"name": "mldg", "n_meta_test": 1},
    )
    trainer = Trainer(r, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9))
    seen = []
    step = MLDG.step

    def spy(self, batch, ctx):
        seen.append({k: v.clone() for k, v in batch.items()})
        return step(self, batch, ctx)

    monkeypatch.setattr(MLDG, "step", spy)
    trainer.fit()
    assert seen
    for batch in seen:
        # 4 blocks of 2 rows (1 bona fide + 1 spoof of one attack), marked 0,0,1,1,2,2,3,3
        assert batch["domain_block"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
        for b in range(4):
            rows = batch["domain_block"] == b
            assert sorted(batch["label"][rows].tolist()) == [0, 1]


def test_trainer_end_to_end_artifacts(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    model_cfg = {
        "frontend": {"name": "tiny_test", "pretrained": "stands-for-a-pretrained-dir"},
        "backend": "tiny_test_head",
    }
    r = _recipe(tmp_path, model=model_cfg, trainer={"epochs": 3, "keep_top_k": 2}, strategy={"name": "mldg"})
    trainer = Trainer(r, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9))
    result = trainer.fit()
    out = tmp_path / "run"
    # 48 items / batch 8 = 6 steps per epoch; validation at every epoch end
    assert result.step == 18 and result.epoch == 3 and [h["step"] for h in result.history] == [6, 12, 18]
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [6, 12, 18]
    assert result.best_eer == min(h["val_eer"] for h in result.history)
    assert list((out / "tb").glob("events.out.tfevents.*"))
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 3 and run["recipe"]["strategy"]["name"] == "mldg"
    assert {"torch", "transformers", "numpy", "sddkit"} <= set(run["versions"]) and "git" in run
    # optimizer: trainable parameters only
    n_trainable = sum(1 for p in trainer.module.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == n_trainable == 4
    # checkpoints: the top 2 by EER plus the latest survive
    ranked = sorted(result.history, key=lambda h: (h["val_eer"], h["step"]))[:2]
    kept = {p.name for p in (out / "checkpoints").iterdir() if p.is_dir()}
    assert kept == {f"step-{h['step']:08d}" for h in ranked} | {"step-00000018"}
    assert ckpt.latest_checkpoint(out / "checkpoints").name == "step-00000018"
    # exports: loadable model dirs, trainable weights only (the frozen encoder comes from "pretrained")
    best = load_model_dir(out / "best")
    assert best.metadata["val_eer"] == result.best_eer and best.metadata["best_step"] == result.best_step
    stored = load_file(str(out / "best" / "model.safetensors"))
    assert "frontend.encoder.weight" not in stored and "frontend.adapter.weight" in stored
    best_ckpt = ckpt.load_checkpoint_tensors(out / "checkpoints" / f"step-{result.best_step:08d}", "model/")
    for k, v in best_ckpt.items():
        assert torch.equal(best.model.state_dict()[k], v), k
    final = load_model_dir(out / "final")
    assert final.metadata["selection"] == "last step" and final.metadata["val_eer"] == result.final_eer
    # the frozen encoder never moved
    assert torch.equal(final.model.frontend.encoder.weight, tiny_detector().frontend.encoder.weight)
    assert torch.equal(trainer.module.frontend.encoder.weight, tiny_detector().frontend.encoder.weight)


def test_final_model_averages_the_top_k_checkpoints(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    r = _recipe(tmp_path, trainer={"epochs": 4, "keep_top_k": 3, "average_top_k": 3})
    result = Trainer(r, train_data=SyntheticDataset(32), val_data=SyntheticDataset(24, seed=9)).fit()
    out = tmp_path / "run"
    final = load_model_dir(out / "final")
    names = final.metadata["checkpoints"]
    ranked = sorted(result.history, key=lambda h: (h["val_eer"], h["step"]))[:3]
    assert names == [f"step-{h['step']:08d}" for h in ranked]
    states = [ckpt.load_checkpoint(out / "checkpoints" / n)["model"] for n in names]
    stored = load_file(str(out / "final" / "model.safetensors"))  # no "pretrained": full weights
    assert "frontend.encoder.weight" in stored
    for key in ("frontend.adapter.weight", "backend.head.bias"):
        expected = sum(s[key].double() for s in states) / 3
        torch.testing.assert_close(stored[key].double(), expected, rtol=0, atol=1e-7)
        assert not torch.equal(stored[key], states[0][key])
    assert final.metadata["val_eer"] == result.final_eer


def test_early_stopping_on_validation_eer(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    # a learning rate this small leaves the scores' order, hence the EER, unchanged: never "better"
    r = _recipe(
        tmp_path, optimizer={"lr": 1e-12}, trainer={"epochs": 50, "val_every": 2, "patience": 3, "save_every": 5}
    )
    result = Trainer(r, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9)).fit()
    assert result.stopped_early
    assert [h["step"] for h in result.history] == [2, 4, 6, 8]  # best at the first, then 3 without improvement
    assert result.best_step == 2 and result.step == 8
    assert load_model_dir(tmp_path / "run" / "best").metadata["best_step"] == 2


def test_the_last_step_is_validated_when_val_every_does_not_divide_it(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    # 6 steps per epoch; max_steps 7 ends mid-epoch and after the last multiple of val_every
    r = _recipe(tmp_path, trainer={"epochs": 5, "max_steps": 7, "val_every": 3})
    result = Trainer(r, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9)).fit()
    assert [h["step"] for h in result.history] == [3, 6, 7]
    assert result.step == 7 and result.best_step in (3, 6, 7)
    r = _recipe(tmp_path / "epochs", trainer={"epochs": 2, "max_steps": 9})  # val_every None: each epoch's end
    result = Trainer(r, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9)).fit()
    assert [h["step"] for h in result.history] == [6, 9]


def test_training_without_validation_exports_the_last_weights(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    r = _recipe(tmp_path, trainer={"epochs": 5, "max_steps": 5})
    trainer = Trainer(r, train_data=SyntheticDataset(48))
    result = trainer.fit()
    assert result.step == 5 and result.best_eer is None and result.history == []
    for name in ("best", "final"):
        loaded = load_model_dir(tmp_path / "run" / name)
        for k, v in trainer.module.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[k], v)


def test_sdd_train_cli_with_overrides_and_resume(tmp_path, monkeypatch, capsys):
    from sddkit.cli.main import main

    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "corpus", n=12, samples=800)
    val = write_corpus(tmp_path / "corpus", n=9, samples=800, seed=1, partition="val")
    out = tmp_path / "run"
    recipe = write_tiny_recipe(tmp_path, train, val, out, sampler="class_balanced", epochs=5)
    assert main(["train", str(recipe), "trainer.max_steps=2", "--print-config"]) == 0
    assert '"max_steps": 2' in capsys.readouterr().out and not out.exists()
    # the flag may also sit between overrides (plain argparse refuses: the list positional is split)
    assert main(["train", str(recipe), "trainer.max_steps=3", "--print-config", "seed=7"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["trainer"]["max_steps"] == 3 and printed["seed"] == 7 and not out.exists()
    assert main(["train", str(recipe), "trainer.max_steps=2"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert main(["train", str(recipe), "trainer.max_steps=4", "--resume"]) == 0
    assert "trained 4 steps" in capsys.readouterr().out
    sessions = json.loads((out / "run.json").read_text())["sessions"]
    assert [s["resumed_from"] for s in sessions] == [None, "step-00000002"]
    assert load_model_dir(out / "final").metadata["steps"] == 4
    assert main(["train", str(recipe), "trainer.epoch=3"]) == 2
    assert "unknown key(s) 'epoch'" in capsys.readouterr().err


def test_training_dataset_applies_the_recipe_augmentation_deterministically(tmp_path):
    from sddkit.training.data import build_dataset, read_tables

    path = write_corpus(tmp_path, n=6, samples=800)
    cfg = from_dict(
        TrainRecipe,
        {"init_from": "x", "data": {"train": {"protocol": str(path)}, "crop_samples": 800, "augment": ["gain"]}},
    ).data
    table = read_tables(cfg.train)
    plain = build_dataset(table, from_dict(type(cfg), {"crop_samples": 800}), train=True, seed=1)
    augmented = build_dataset(table, cfg, train=True, seed=1)
    x, y = plain[1]["waveform"], augmented[1]["waveform"]
    ratio = float(y.abs().max() / x.abs().max())
    assert ratio != pytest.approx(1.0) and 10 ** (-12 / 20) - 1e-4 <= ratio <= 10 ** (6 / 20) + 1e-4  # a gain
    torch.testing.assert_close(y, x * ratio, rtol=1e-4, atol=1e-4)
    assert torch.equal(build_dataset(table, cfg, train=True, seed=1)[1]["waveform"], y)  # same (seed, epoch, item)
    augmented.set_epoch(1)
    assert not torch.equal(augmented[1]["waveform"], y)  # new draw next epoch
    evaluation = build_dataset(table, cfg, train=False, seed=1)  # never augmented
    assert torch.equal(evaluation[1]["waveform"], build_dataset(table, cfg, train=False, seed=2)[1]["waveform"])


def test_decode_cache_options_give_the_same_items(tmp_path, monkeypatch):
    from sddkit.data import dataset as dataset_module
    from sddkit.training.data import build_dataset, read_tables

    path = write_corpus(tmp_path, n=6, samples=800)

    def data_cfg(cache: str):
        recipe = {"init_from": "x", "data": {"train": {"protocol": str(path)}, "crop_samples": 400}}
        recipe["data"]["decode_cache"] = cache
        return from_dict(TrainRecipe, recipe).data

    table = read_tables(data_cfg("none").train)
    reference = [build_dataset(table, data_cfg("none"), train=True, seed=1)[i]["waveform"] for i in range(6)]
    preloaded = build_dataset(table, data_cfg("preload"), train=True, seed=1)
    lazy = build_dataset(table, data_cfg("lazy"), train=True, seed=1)
    assert preloaded.waveforms is not None and len(preloaded.waveforms.ids) == 6
    # once cached, no file is decoded again
    for i in range(6):
        lazy[i]
    calls = []
    monkeypatch.setattr(dataset_module, "load_table_audio", lambda *a, **k: calls.append(a) or None)
    for i in range(6):
        assert torch.equal(preloaded[i]["waveform"], reference[i])
        assert torch.equal(lazy[i]["waveform"], reference[i])
    assert calls == []
    with pytest.raises(ConfigError, match="decode_cache"):
        data_cfg("disk")


def test_protocol_folds_split_the_training_table_into_disjoint_group_folds(tmp_path):
    from sddkit.training.data import read_tables
    from sddkit.training.recipe import ProtocolSpec

    rows = ["utt_id,label,attack,speaker,pair_id"]
    rows += [
        f"u{i},{'spoof' if i % 2 else 'bonafide'},{'A01' if i % 2 else 'bonafide'},s{i // 6},p{i // 3}"
        for i in range(120)
    ]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")

    def spec(keep):
        return from_dict(
            ProtocolSpec,
            {"protocol": str(tmp_path / "p.csv"), "format": "utterance_table", "folds": {"n": 4, "keep": keep}},
        )

    experts, gate = read_tables(spec([0, 1, 2])), read_tables(spec([3]))
    ids_e, ids_g = set(experts.column("utt_id")), set(gate.column("utt_id"))
    assert ids_e.isdisjoint(ids_g) and len(ids_e | ids_g) == 120 and len(ids_g) > 0
    assert set(experts.column("pair_id")).isdisjoint(set(gate.column("pair_id")))  # groups never straddle
    with pytest.raises(ConfigError, match="folds.keep"):
        spec([4])
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(ProtocolSpec, {"protocol": "x", "folds": {"n": 4, "keep": [0], "shuffle": True}})


def test_resume_compares_the_recorded_model_in_todays_form():
    from sddkit.config import to_dict
    from sddkit.training.recipe import recipe_changes, recorded_recipe

    frontend = {"name": "ssl", "encoder": "hubert_tiny", "adapter": "lora"}
    today = to_dict(from_dict(TrainRecipe, {"model": {"frontend": frontend, "backend": "ssl_aasist"}}))
    # written before 2026-12-01: the unused MoLEx section was recorded too, at its defaults
    molex_defaults = get_registry("frontend").parse({**frontend, "adapter": "molex"}).to_dict()["molex"]
    old = {**today, "model": {**today["model"], "frontend": {**today["model"]["frontend"], "molex": molex_defaults}}}
    assert old["model"] != today["model"] and recorded_recipe(old)["model"] == today["model"]
    assert recipe_changes(old, today) == []  # so a resume reports no change
    broken = {"model": {"frontend": "no_such_frontend"}}
    # kept as recorded: the warning still fires
    assert recorded_recipe(broken)["model"] == {"frontend": "no_such_frontend"}
    assert any(c.startswith("model.frontend: no_such_frontend -> ") for c in recipe_changes(broken, today))


def test_one_class_training_or_validation_data_is_a_config_error(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    csv = str(write_corpus(tmp_path / "corpus"))
    spec = {"protocol": csv, "format": "utterance_table"}
    only_bona = {**spec, "where": {"label": "bonafide"}}
    with pytest.raises(ConfigError, match=r"data.train holds 8 bona fide and 0 spoof utterances"):
        Trainer(_recipe(tmp_path, data={"batch_size": 4, "train": [only_bona]})).fit()
    with pytest.raises(ConfigError, match=r"data.val holds 8 bona fide and 0 spoof"):
        Trainer(_recipe(tmp_path, data={"batch_size": 4, "train": [spec], "val": [only_bona]})).fit()


def test_sampler_argument_errors_name_the_recipe_keys(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    csv = str(write_corpus(tmp_path / "corpus"))
    data = {"batch_size": 4, "train": [{"protocol": csv, "format": "utterance_table"}], "sampler": "class_balanced"}
    trainer = Trainer(_recipe(tmp_path, data={**data, "sampler_options": {"num_samples": -3}}))
    with pytest.raises(ConfigError, match=r"data.sampler 'class_balanced' .*num_samples must be positive"):
        trainer.fit()


def test_a_crop_too_short_for_the_model_names_the_recipe_key(tmp_path):
    csv = str(write_corpus(tmp_path / "corpus"))
    spec = {"protocol": csv, "format": "utterance_table"}
    lcnn = {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 0}}
    data = {"batch_size": 4, "train": [spec], "val": [spec], "crop_samples": 100, "val_crop_samples": 4000}
    with pytest.raises(ConfigError, match=r"data.crop_samples=100 is too short for this model: LCNN needs"):
        Trainer(_recipe(tmp_path, model=lcnn, data=data)).fit()
    with pytest.raises(ConfigError, match=r"data.val_crop_samples=200 is too short"):
        Trainer(_recipe(tmp_path, model=lcnn, data={**data, "crop_samples": 4000, "val_crop_samples": 200})).fit()


def test_a_diverging_run_stops_with_the_step_and_its_last_checkpoint(tmp_path, monkeypatch):
    from sddkit.errors import TrainingDivergedError

    install_tiny(monkeypatch)
    # an absurd learning rate: the first step is finite, the weights it leaves give NaN/inf from then on
    r = _recipe(tmp_path, optimizer={"lr": 1e30}, trainer={"epochs": 3, "save_every": 1})
    trainer = Trainer(r, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9))
    with pytest.raises(
        TrainingDivergedError, match=r"step \d+: non-finite .*the last checkpoint is .*step-0+\d"
    ) as info:
        trainer.fit()
    assert isinstance(info.value, FloatingPointError)  # what the trainer raised before (catchers keep working)
    step = int(str(info.value).split(":")[0].removeprefix("step "))
    assert trainer.state.step == step - 1  # the failed step is not counted, its optimiser step was not taken
    named = str(info.value).split("the last checkpoint is ")[1].split(" (")[0]
    assert named == str(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))


def test_recipe_changes_name_the_list_item_that_changed(monkeypatch):
    # lists were compared whole and cut to 57 characters, so both sides of a change could print the same;
    # an empty mapping filled by an override was listed twice ("options: {} -> null", "options.corpus: ...")
    from sddkit.config import to_dict
    from sddkit.training.recipe import recipe_changes

    install_tiny(monkeypatch)
    base = {"model": TINY_MODEL, "data": {"augment": [{"name": "noise", "p": 0.2}] * 11}}
    before = to_dict(from_dict(TrainRecipe, base))
    augment = [{"name": "noise", "p": 0.2}] * 10 + [{"name": "noise", "p": 0.9}]
    after = to_dict(from_dict(TrainRecipe, {**base, "data": {"augment": augment}}))
    assert recipe_changes(before, after) == ["data.augment.10.p: 0.2 -> 0.9"]
    spec = {"protocol": "x.csv", "format": "labels_csv"}
    before = to_dict(from_dict(TrainRecipe, {"model": TINY_MODEL, "data": {"train": [spec]}}))
    after = to_dict(
        from_dict(TrainRecipe, {"model": TINY_MODEL, "data": {"train": [{**spec, "options": {"corpus": "mine"}}]}})
    )
    assert recipe_changes(before, after) == ["data.train.0.options.corpus: null -> mine"]
    assert recipe_changes(before, {**after, "trainer": {**after["trainer"], "out_dir": "elsewhere"}}) == [
        "data.train.0.options.corpus: null -> mine"
    ]


@pytest.mark.parametrize("decode_cache", ["none", "preload"])
def test_data_max_duration_s_bounds_the_files_training_reads(tmp_path, monkeypatch, decode_cache):
    install_tiny(monkeypatch)
    # training read at most 600 s per file, and no recipe key changed that (scoring has --max-duration-s)
    from sddkit.errors import AudioTooLongError
    from sddkit.training.data import build_dataset

    csv = str(write_corpus(tmp_path / "corpus", samples=4000))  # 0.25 s files
    table = read_tables([from_dict(ProtocolSpec, {"protocol": csv, "format": "utterance_table"})])
    bounded = _recipe(tmp_path, data={"max_duration_s": 0.2, "decode_cache": decode_cache}).data
    with pytest.raises(AudioTooLongError, match=r"train_0_0000.wav: .*max_duration 0.2 s"):
        build_dataset(table, bounded, train=True, seed=0)[0]
    free = _recipe(tmp_path, data={"max_duration_s": None, "decode_cache": decode_cache}).data
    assert build_dataset(table, free, train=True, seed=0)[0]["waveform"].shape[0] == free.crop_samples
    for bad in (0, -1, float("nan")):
        with pytest.raises(ConfigError, match="max_duration_s"):
            _recipe(tmp_path, data={"max_duration_s": bad})
