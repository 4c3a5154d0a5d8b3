"""The Python training API as a researcher composes it (review 28): a model and data given to ``Trainer``, a
strategy's step in a loop of one's own, and a model directory saved from a config dataclass."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file
from test_train_support import (
    TINY_MODEL,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
    tiny_detector,
    write_corpus,
)
from torch.utils.data import DataLoader

from sddkit.config import from_dict
from sddkit.data.table import UtteranceTable
from sddkit.detectors.detector import DetectorConfig
from sddkit.detectors.model_dir import load_model_dir, save_model_dir
from sddkit.errors import ConfigError
from sddkit.registry import get_registry
from sddkit.training.data import build_dataset, epoch_batches
from sddkit.training.distributed import DistInfo
from sddkit.training.losses import DetectionLoss
from sddkit.training.recipe import LossConfig, TrainRecipe
from sddkit.training.schedules import build_optimizer
from sddkit.training.strategy import StepContext
from sddkit.training.trainer import Trainer


def _recipe(tmp_path, name: str = "run", **sections) -> TrainRecipe:
    data = {
        "seed": 5,
        "model": TINY_MODEL,
        "optimizer": {"lr": 1e-2},
        "data": {"batch_size": 6, "crop_samples": 1600},
        "trainer": {"epochs": 1, "out_dir": str(tmp_path / name), "progress": False},
    }
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return from_dict(TrainRecipe, data)


def _tables(tmp_path) -> tuple[UtteranceTable, UtteranceTable]:
    train = UtteranceTable.load(write_corpus(tmp_path / "audio", n=18, samples=1600))
    val = UtteranceTable.load(write_corpus(tmp_path / "audio", n=6, samples=1600, seed=1, partition="val"))
    return train, val


def test_a_model_given_to_the_trainer_that_its_config_does_not_build_is_refused_before_any_step(tmp_path, monkeypatch):
    """Trainer(recipe, model=...) records the recipe's model config in best/ and final/: a model of another width
    trained the whole run, then neither export loaded ("config.json describes another model ...")."""
    install_tiny(monkeypatch)
    train, val = _tables(tmp_path)
    recipe = _recipe(tmp_path)
    data = {
        "train_data": build_dataset(train, recipe.data, train=True, seed=recipe.seed),
        "val_data": build_dataset(val, recipe.data, train=False, seed=recipe.seed),
    }
    with pytest.raises(ConfigError, match=r"frontend\.encoder\.weight has shape \(12, 16\) in the model given"):
        Trainer(recipe, model=tiny_detector(dim=12), **data).fit()
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "best").exists()

    # the model the config builds (or its config given as model_config) trains, and its exports load
    result = Trainer(_recipe(tmp_path, "ok"), model=tiny_detector(), **data).fit()
    assert load_model_dir(result.best_dir).model.frontend.cfg.dim == 8
    config = from_dict(DetectorConfig, {**TINY_MODEL, "frontend": {"name": "tiny_test", "dim": 12}})
    result = Trainer(_recipe(tmp_path, "wide"), model=tiny_detector(dim=12), model_config=config, **data).fit()
    assert load_model_dir(result.final_dir).model.frontend.cfg.dim == 12


def test_train_table_given_with_train_data_is_taken_as_documented(tmp_path, monkeypatch, caplog):
    """The trainer's docstring named train_table beside train_data; passing it was a TypeError. Given, run.json
    counts its classes and the files validated and trained on are warned of, as for a recipe's protocols."""
    install_tiny(monkeypatch)
    train, val = _tables(tmp_path)
    shared = UtteranceTable.concat([val, train.subset(train.labels == 1)])  # the bona fide training files in val too
    recipe = _recipe(tmp_path)
    caplog.set_level(logging.WARNING, logger="sddkit.training")
    Trainer(
        recipe,
        train_data=build_dataset(train, recipe.data, train=True, seed=recipe.seed),
        train_table=train,
        val_data=build_dataset(shared, recipe.data, train=False, seed=recipe.seed),
        val_table=shared,
    ).fit()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["sessions"][-1]["utterances"]["train"] == {"n": 18, "bonafide": 6, "spoof": 12}
    assert "data.val lists 6 of its 12 audio files in data.train too" in caplog.text


def test_a_loop_of_ones_own_takes_the_trainers_mldg_steps_with_with_domain_blocks(tmp_path, monkeypatch):
    """MLDG holds out whole domain blocks only where the batch says which rows form them (``domain_block``), which
    the trainer added inside its loop: a loop of one's own over the same domain_batch batches trained another MLDG
    (rows split by spoof domain, bona fide rows in both halves). ``with_domain_blocks`` is the public way, and the
    loop the strategy module's docstring shows then ends on the trainer's weights, bit for bit."""
    from sddkit.training.strategy import with_domain_blocks

    install_tiny(monkeypatch)
    train, _ = _tables(tmp_path)
    recipe = _recipe(tmp_path, data={"sampler": "domain_batch"}, strategy={"name": "mldg"}, trainer={"max_steps": 3})
    result = Trainer(recipe, train_data=build_dataset(train, recipe.data, train=True, seed=recipe.seed)).fit()
    assert result.step == 3
    trained = load_file(str(result.final_dir / "model.safetensors"))

    def own_loop(blocks: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(recipe.seed)
        model = tiny_detector()
        optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], recipe.optimizer)
        ctx = StepContext(
            model=model,
            module=model,
            optimizer=optimizer,
            loss_fn=DetectionLoss.for_model(recipe.loss, model),
            grad_clip=recipe.trainer.grad_clip,
        )
        strategy = get_registry("strategy").build(recipe.strategy, seed=recipe.seed)
        dataset = build_dataset(train, recipe.data, train=True, seed=recipe.seed)
        batches = epoch_batches(dataset, recipe.data, seed=recipe.seed, epoch=0, info=DistInfo())
        model.train()
        for step, batch in enumerate(DataLoader(dataset, batch_sampler=batches)):
            if step == 3:
                break
            strategy.step(with_domain_blocks(batch, batches) if blocks else batch, ctx)
        return model.state_dict()

    mine = own_loop(blocks=True)
    assert all(torch.equal(mine[k], trained[k]) for k in trained)
    unmarked = own_loop(blocks=False)
    assert not all(torch.equal(unmarked[k], trained[k]) for k in trained)


def test_a_model_directory_saves_from_the_config_dataclass(tmp_path, monkeypatch):
    """save_model_dir(model_config=DetectorConfig) failed with "Object of type DetectorConfig is not JSON
    serializable"; it records the config's dict, and the directory loads and scores as the model."""
    install_tiny(monkeypatch)
    config = from_dict(DetectorConfig, {**TINY_MODEL, "frontend": {"name": "tiny_test", "dim": 6}})
    model = tiny_detector(dim=6).eval()
    save_model_dir(tmp_path / "m", model, model_config=config)
    loaded = load_model_dir(tmp_path / "m")
    assert loaded.model_config["frontend"] == {
        "name": "tiny_test",
        "dim": 6,
        "pretrained": None,
        "aux_weight": 0.0,
        "dropout": 0.0,
    }
    x = torch.randn(2, 1600)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(x).score, model(x).score)


def test_mldg_says_what_a_batch_without_domains_lacks():
    """A batch of one's own of waveforms and labels met a bare KeyError 'domain' in MLDG's split."""
    from sddkit.training.mldg import MLDG, MLDGConfig

    model = tiny_detector()
    ctx = StepContext(
        model=model,
        module=model,
        optimizer=torch.optim.AdamW(model.parameters()),
        loss_fn=DetectionLoss(LossConfig(), oc_scale=None),
    )
    batch = {"waveform": torch.randn(4, 320), "label": torch.tensor([1, 0, 1, 0])}
    with pytest.raises(ValueError, match=r"no 'domain' \(\(B,\) int64.*with_domain_blocks"):
        MLDG(MLDGConfig()).step(batch, ctx)
