"""Review 28 of sddkit used as a library (libhygiene): what a call leaves behind in the caller's process.

``Trainer(recipe).fit()`` from Python left the global generators seeded as its run left them (a random search in a
notebook drew the same "random" learning rate after every run of the same seed) and torch's determinism switches as
the recipe set them (a caller's ``use_deterministic_algorithms(True)`` switched off, ``CUBLAS_WORKSPACE_CONFIG``
added to its environment). ``load_detector`` and ``export_onnx`` moved the caller's torch generator (the model's
layers are initialised before its weights replace them): a notebook's ``torch.randn`` after a load drew other
numbers than without it."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from scoring_support import save_tiny_lcnn
from test_train_support import (
    TINY_MODEL,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
    write_corpus,
)

import sddkit
from sddkit.config import from_dict
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _recipe(tmp_path: Path, out: str, **trainer: object) -> TrainRecipe:
    """One epoch of the tiny model over 12 short files (3 steps), validated on 6."""
    train, val = tmp_path / "train" / "train_0.csv", tmp_path / "val" / "val_1.csv"
    if not train.exists():
        assert write_corpus(train.parent, n=12, samples=1600, seed=0) == train
        assert write_corpus(val.parent, n=6, samples=1600, seed=1, partition="val") == val
    return from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": TINY_MODEL,
            "data": {
                "train": {"protocol": str(train), "format": "utterance_table"},
                "val": {"protocol": str(val), "format": "utterance_table"},
                "crop_samples": 640,
                "batch_size": 4,
            },
            "trainer": {"epochs": 1, "out_dir": str(tmp_path / out), "progress": False, "device": "cpu", **trainer},
        },
    )


@pytest.fixture
def callers_switches(monkeypatch):
    """The caller's own determinism settings (as a notebook may set them), put back after the test whatever it did."""
    saved = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])


def _generators() -> tuple:
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _assert_same_generators(before: tuple) -> None:
    py, (_, keys, pos, *_), torch_state = before
    now_py, (_, now_keys, now_pos, *_), now_torch = _generators()
    assert now_py == py
    assert np.array_equal(now_keys, keys) and now_pos == pos
    assert torch.equal(now_torch, torch_state)


def test_a_random_search_over_fits_of_one_seed_draws_new_values_after_each(tmp_path, monkeypatch, callers_switches):
    install_tiny(monkeypatch)
    np.random.seed(123)
    drawn = []
    for i in range(3):
        lr = float(np.random.uniform(1e-4, 1e-2))  # a notebook's random search around fits of one recipe seed
        Trainer(_recipe(tmp_path, f"run{i}")).fit()
        drawn.append((lr, random.random(), float(torch.rand(1))))
    # each fit re-seeded the generators with the recipe's seed and left them so: the 2nd and 3rd draws were equal
    assert len({d[0] for d in drawn}) == 3 and len({d[1] for d in drawn}) == 3 and len({d[2] for d in drawn}) == 3
    np.random.seed(123)
    assert [d[0] for d in drawn] == [float(np.random.uniform(1e-4, 1e-2)) for _ in range(3)]  # as without the fits


@pytest.mark.parametrize("deterministic", [False, True])
def test_fit_gives_back_the_callers_generators_and_determinism_switches(
    tmp_path, monkeypatch, callers_switches, deterministic
):
    install_tiny(monkeypatch)
    # the caller's own: deterministic kernels on (warnings), cuDNN autotuning on, no cuBLAS workspace setting
    torch.use_deterministic_algorithms(True, warn_only=False)
    np.random.seed(7)
    random.seed(7)
    torch.manual_seed(7)
    before = _generators()
    result = Trainer(_recipe(tmp_path, "run", deterministic=deterministic)).fit()
    assert result.step == 3  # it trained
    _assert_same_generators(before)
    assert torch.are_deterministic_algorithms_enabled()  # switched off by a recipe without trainer.deterministic
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_a_fit_stopped_by_ctrl_c_gives_them_back_too(tmp_path, monkeypatch, callers_switches):
    install_tiny(monkeypatch)
    real = Trainer._one_step

    def interrupted_at_second(self, batch):
        if self.state.step == 1:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(Trainer, "_one_step", interrupted_at_second)
    np.random.seed(11)
    torch.manual_seed(11)
    before = _generators()
    with pytest.raises(KeyboardInterrupt):
        Trainer(_recipe(tmp_path, "run", deterministic=True)).fit()
    _assert_same_generators(before)
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark


def test_load_detector_leaves_the_callers_torch_generator_where_it_was(tmp_path):
    model = save_tiny_lcnn(tmp_path / "m")
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    detector = sddkit.load_detector(model)
    assert torch.equal(torch.rand(4), expected)  # the model's layer initialisation drew from it before
    # and its weights are the saved ones, whatever the generator's state at the load
    x = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    torch.manual_seed(1)
    again = sddkit.load_detector(model)
    assert detector.score(x, 16000).score == again.score(x, 16000).score


def test_export_onnx_leaves_the_callers_torch_generator_where_it_was(tmp_path):
    from sddkit.scoring.onnx_export import export_onnx

    model = save_tiny_lcnn(tmp_path / "m")
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    export_onnx(model, tmp_path / "m.onnx")
    assert torch.equal(torch.rand(4), expected)
