"""Review 16: trainer.average_bn, the batch-norm statistics of final/'s average of the top-k checkpoints: averaged
like the weights (``mean``, the default) or re-estimated for the averaged weights (``reestimate``), also by a
``--resume`` of a finished run, which takes no step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_support import (
    fit_tiny,
    hand_bn,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
    tiny_bn_recipe,
    write_corpus,
)
from torch.utils.data import default_collate

from sddkit.detectors.model_dir import load_model_dir
from sddkit.errors import ConfigError
from sddkit.training import checkpoint as ckpt
from sddkit.training.data import EMA_BN_EPOCH, epoch_batches
from sddkit.training.distributed import DistInfo
from sddkit.training.erm import ERM
from sddkit.training.recipe import TrainerConfig, TrainRecipe
from sddkit.training.trainer import Trainer

STATS = ("running_mean", "running_var", "num_batches_tracked")


def _recipe(out: Path, **trainer: object) -> TrainRecipe:
    return tiny_bn_recipe(out, seed=4, lr=5e-2, ema_bn_batches=3, **trainer)


def _fit(out: Path, resume: bool = False, **trainer: object) -> Trainer:
    return fit_tiny(_recipe(out, **trainer), resume=resume)


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_model_dir(model_dir).model.state_dict()


def _metadata(model_dir: Path) -> dict:
    return json.loads((model_dir / "config.json").read_text())["metadata"]


def _is_stat(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in STATS


def _mean_of_checkpoints(out: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the checkpoints' tensors (integer ones from the first), statistics included."""
    states = [ckpt.load_checkpoint_tensors(out / "checkpoints" / n, "model/") for n in names]
    return {
        k: torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
        for k, v in states[0].items()
    }


def _hand_bn(model: torch.nn.Module, trainer: Trainer, n: int) -> dict[str, torch.Tensor]:
    """SWA's update_bn by hand on the recipe's reserved pseudo-epoch's first ``n`` batches, drawn here again: every
    batch norm reset, cumulative, the batches forwarded in train mode (dropout from the recipe-seeded generator)."""
    r = trainer.recipe
    keys = list(epoch_batches(trainer.train_data, r.data, seed=r.seed, epoch=EMA_BN_EPOCH, info=DistInfo()))[:n]
    batches = [default_collate([trainer.train_data[k] for k in ks])["waveform"] for ks in keys]
    seed = int(np.random.SeedSequence([r.seed, EMA_BN_EPOCH]).generate_state(1, np.uint64)[0] >> np.uint64(1))
    return hand_bn(model, batches, seed)


def test_mean_the_default_keeps_the_checkpoints_averaged_statistics(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    _fit(tmp_path / "default")
    _fit(tmp_path / "mean", average_bn="mean")
    for name in ("best", "final"):
        got = (tmp_path / "mean" / name / "model.safetensors").read_bytes()
        assert got == (tmp_path / "default" / name / "model.safetensors").read_bytes(), name
    final = _metadata(tmp_path / "default" / "final")
    assert final["average_bn"] == "mean" and "bn_batches" not in final
    assert final["train_recipe"]["trainer"]["average_bn"] == "mean"
    averaged = _mean_of_checkpoints(tmp_path / "default", final["checkpoints"])
    exported = _weights(tmp_path / "default" / "final")
    assert any(_is_stat(k) for k in averaged)
    for key, value in averaged.items():
        assert torch.equal(exported[key], value), key  # the statistics too: the mean of the checkpoints'


def test_reestimate_gives_the_averaged_weights_statistics_of_their_own(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    _fit(tmp_path / "mean")
    trainer = _fit(tmp_path / "re", average_bn="reestimate")
    assert trainer.bn_estimate is None  # without ema_decay nothing is drawn while training
    # training and best/ are untouched; only final/'s statistics differ
    assert (tmp_path / "re" / "metrics.jsonl").read_text() == (tmp_path / "mean" / "metrics.jsonl").read_text()
    best = (tmp_path / "re" / "best" / "model.safetensors").read_bytes()
    assert best == (tmp_path / "mean" / "best" / "model.safetensors").read_bytes()
    mean, re = _weights(tmp_path / "mean" / "final"), _weights(tmp_path / "re" / "final")
    stats = [k for k in mean if _is_stat(k)]
    assert stats == [f"backend.norm.{s}" for s in STATS]
    for key in mean:
        if not _is_stat(key):
            assert torch.equal(re[key], mean[key]), key
    assert not torch.allclose(re["backend.norm.running_mean"], mean["backend.norm.running_mean"])
    assert not torch.allclose(re["backend.norm.running_var"], mean["backend.norm.running_var"])
    hand = _hand_bn(load_model_dir(tmp_path / "mean" / "final").model, trainer, 3)  # the averaged weights
    for key, value in hand.items():
        torch.testing.assert_close(re[key], value, rtol=1e-6, atol=1e-7)
    assert int(re["backend.norm.num_batches_tracked"]) == 3
    final = _metadata(tmp_path / "re" / "final")
    assert (final["average_bn"], final["bn_batches"]) == ("reestimate", 3)
    assert final["val_eer"] is not None  # measured with those statistics
    assert "average_bn" not in _metadata(tmp_path / "re" / "best")


def test_with_ema_decay_final_records_its_average_re_estimated_whatever_average_bn(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    _fit(tmp_path / "ema", ema_decay=0.5)  # average_bn left at mean: it does not apply, and does not switch it off
    final = _metadata(tmp_path / "ema" / "final")
    assert (final["average_bn"], final["bn_batches"], final["ema_bn_batches"]) == ("reestimate", 3, 3)


def test_a_finished_run_resumed_with_reestimate_exports_final_again_without_a_step(tmp_path, monkeypatch, capsys):
    from sddkit.cli.main import main

    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "corpus", n=24, samples=800)
    val = write_corpus(tmp_path / "corpus", n=9, samples=800, seed=1, partition="val")
    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""
seed: 2
model: {{frontend: {{name: tiny_test, dropout: 0.2}}, backend: {{name: tiny_test_head, batch_norm: true}}}}
optimizer: {{lr: 0.05}}
data:
  train: {{protocol: {train}, format: utterance_table}}
  val: {{protocol: {val}, format: utterance_table}}
  crop_samples: 640
  batch_size: 4
trainer: {{epochs: 10, max_steps: 6, val_every: 2, keep_top_k: 3, average_top_k: 3, ema_bn_batches: 2,
           out_dir: {out}, progress: false}}
"""
    )
    # the key, and an override of it, in --print-config
    assert main(["train", str(recipe), "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["trainer"]["average_bn"] == "mean"
    assert main(["train", str(recipe), "--print-config", "trainer.average_bn=reestimate"]) == 0
    assert json.loads(capsys.readouterr().out)["trainer"]["average_bn"] == "reestimate"
    assert main(["train", str(recipe)]) == 0

    def kept() -> dict[Path, bytes]:
        return {p: p.read_bytes() for d in ("best", "checkpoints") for p in sorted((out / d).rglob("*")) if p.is_file()}

    files = kept()
    mean = _weights(out / "final")

    def no_step(self, batch, ctx):
        raise AssertionError("a finished run took a training step")

    monkeypatch.setattr(ERM, "step", no_step)
    finals = []
    for _ in range(2):
        assert main(["train", str(recipe), "--resume", "trainer.average_bn=reestimate"]) == 0
        finals.append({f: (out / "final" / f).read_bytes() for f in ("model.safetensors", "config.json")})
        # best/ and the checkpoints byte-identical: nothing trained, nothing saved
        assert kept() == files
    assert finals[0] == finals[1]  # deterministic
    final = _metadata(out / "final")
    assert (final["average_bn"], final["bn_batches"], final["steps"]) == ("reestimate", 2, 6)
    assert final["resumes"] == [
        {"step": 6, "checkpoint": "step-00000006", "changes": ["trainer.average_bn: mean -> reestimate"]}
    ]
    re = _weights(out / "final")
    assert not torch.allclose(re["backend.norm.running_mean"], mean["backend.norm.running_mean"])
    for key in mean:
        if not _is_stat(key):
            assert torch.equal(re[key], mean[key]), key
    # and back: mean again exports the checkpoints' averaged statistics
    assert main(["train", str(recipe), "--resume"]) == 0
    again = _weights(out / "final")
    for key in mean:
        assert torch.equal(again[key], mean[key]), key


def test_an_unknown_average_bn_is_refused_naming_the_key(monkeypatch):
    install_tiny(monkeypatch)
    with pytest.raises(ConfigError, match=r"trainer\.average_bn: 'median' is not one of \['mean', 'reestimate'\]"):
        _recipe(Path("unused"), average_bn="median")
    with pytest.raises(ValueError, match="average_bn must be 'mean' or 'reestimate'"):
        TrainerConfig(average_bn="median")  # type: ignore[arg-type]
    # final/ holds the last weights: no average to re-estimate for, which the recipe says rather than ignores
    with pytest.raises(ConfigError, match=r"average_bn: reestimate applies to .*average_top_k >= 2") as caught:
        _recipe(Path("unused"), average_bn="reestimate", keep_top_k=1, average_top_k=1)
    assert "\n" not in str(caught.value)


def test_reestimating_a_finished_run_gives_the_final_of_a_run_trained_with_reestimate(tmp_path, monkeypatch):
    """The post-hoc route (train with mean, then --resume with reestimate) is the recipe's: the same final/ weights
    and statistics as a run trained with average_bn: reestimate from its start, so a model finalized the first way
    is rebuilt by the recipe that names the key."""
    install_tiny(monkeypatch)
    _fit(tmp_path / "from_start", average_bn="reestimate")
    _fit(tmp_path / "post_hoc")
    _fit(tmp_path / "post_hoc", resume=True, average_bn="reestimate")
    a, b = _weights(tmp_path / "from_start" / "final"), _weights(tmp_path / "post_hoc" / "final")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    _fit(tmp_path / "mean")
    mean = _weights(tmp_path / "mean" / "final")  # what post_hoc's final/ held before its resume
    assert any(not torch.equal(a[k], mean[k]) for k in a if k.endswith("running_mean"))
