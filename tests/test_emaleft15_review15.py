"""trainer.ema_decay's re-estimation covers every normalisation layer with running statistics (an instance norm with
track_running_stats too, which eval mode normalises with), not only batch norms."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)
from torch import Tensor, nn
from torch.utils.data import default_collate

from sddkit.config import from_dict
from sddkit.detectors.model_dir import load_model_dir
from sddkit.detectors.outputs import BackendOutput
from sddkit.registry import Entry, get_registry
from sddkit.training import checkpoint as ckpt
from sddkit.training.data import EMA_BN_EPOCH, epoch_batches
from sddkit.training.distributed import DistInfo
from sddkit.training.ema import BatchNormEstimate, updated_batch_norms
from sddkit.training.evaluate import evaluate
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer

_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _instance_stats(inputs: list[Tensor]) -> tuple[Tensor, Tensor]:
    """By hand, the cumulative average over ``inputs`` (B, C, L) of what an instance norm's running statistics take
    from one batch: the mean over the batch of each utterance's channel mean and unbiased variance over time."""
    means = [x.mean(dim=2).mean(dim=0) for x in inputs]
    variances = [x.var(dim=2, unbiased=True).mean(dim=0) for x in inputs]
    return torch.stack(means).mean(dim=0), torch.stack(variances).mean(dim=0)


class _Norms(nn.Module):
    """conv -> instance norm with running statistics -> batch norm -> instance norm without; one more aside."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(2, 3, 1),
            nn.InstanceNorm1d(3, affine=True, track_running_stats=True, momentum=0.3),
            nn.BatchNorm1d(3),
            nn.InstanceNorm1d(3),  # no running statistics: nothing to re-estimate
        )
        self.unused = nn.InstanceNorm1d(3, track_running_stats=True)  # no batch reaches it

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def test_an_instance_norm_with_running_stats_is_re_estimated_like_a_batch_norm():
    torch.manual_seed(0)
    model = _Norms()
    model.train()
    with torch.no_grad():  # statistics of a model that trained a while
        for _ in range(3):
            model(torch.randn(4, 2, 7))
            model.unused(torch.randn(4, 3, 7))
    model.eval()
    norms = updated_batch_norms(model)
    assert [n for n, _ in norms] == ["body.1", "body.2", "unused"]
    batches = [torch.randn(5, 2, 9) * (k + 1) + k for k in range(3)]
    before = copy.deepcopy(model.state_dict())
    stats = BatchNormEstimate(model, norms, batches, seed=3).estimate()
    for key, value in model.state_dict().items():  # the model as it was, momenta and modes too
        assert torch.equal(value, before[key]), key
    body = model.body
    assert body[1].momentum == 0.3 and body[2].momentum == 0.1 and not model.training and not body[1].training
    with torch.no_grad():
        mean, var = _instance_stats([body[0](x) for x in batches])
    assert not torch.allclose(before["body.1.running_mean"], mean)  # there is something to re-estimate
    torch.testing.assert_close(stats["body.1.running_mean"], mean)
    torch.testing.assert_close(stats["body.1.running_var"], var)
    assert int(stats["body.1.num_batches_tracked"]) == 0  # an instance norm never counts
    # the batch norm after it: torch's own update_bn still (train mode: the instance norm normalises with each
    # utterance's own statistics, whatever its running ones)
    reference = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn(batches, reference)
    torch.testing.assert_close(stats["body.2.running_mean"], reference.body[2].running_mean)
    torch.testing.assert_close(stats["body.2.running_var"], reference.body[2].running_var)
    assert int(stats["body.2.num_batches_tracked"]) == 3
    for stat in _STATS:  # not reached: it keeps its statistics
        assert torch.equal(stats[f"unused.{stat}"], before[f"unused.{stat}"])


@dataclass
class _InstanceNormHeadConfig:
    pass


class _InstanceNormHead(nn.Module):
    """(B, N, D) -> instance norm over the frames with running statistics -> tanh -> mean over frames -> Linear."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm1d(in_dim, affine=True, track_running_stats=True)
        self.head = nn.Linear(in_dim, 2)

    def forward(self, features: Tensor) -> BackendOutput:
        emb = torch.tanh(self.norm(features.transpose(1, 2))).mean(dim=2)
        return BackendOutput(logits=self.head(emb), embedding=emb)


def _build_head(cfg: _InstanceNormHeadConfig, *, in_dim: int | None = None, **_: object) -> _InstanceNormHead:
    return _InstanceNormHead(in_dim or 8)


def test_the_averaged_model_validated_and_exported_has_its_instance_norm_statistics_re_estimated(
    tmp_path: Path, monkeypatch
):
    install_tiny(monkeypatch)
    entry = Entry("tiny_instnorm_head", _build_head, _InstanceNormHeadConfig, "test")
    monkeypatch.setitem(get_registry("backend")._entries, "tiny_instnorm_head", entry)
    out = tmp_path / "run"
    recipe = {
        "seed": 5,
        "model": {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_instnorm_head"}},
        "optimizer": {"lr": 5e-2},
        "data": {"batch_size": 8},
        "trainer": {
            "epochs": 10,
            "max_steps": 4,
            "val_every": 4,
            "ema_decay": 0.8,
            "ema_bn_batches": 3,
            "out_dir": str(out),
            "progress": False,
        },
    }
    trainer = Trainer(
        from_dict(TrainRecipe, recipe),
        train_data=SyntheticDataset(40, n_attacks=4),
        val_data=SyntheticDataset(18, seed=9),
    )
    trainer.fit()
    assert trainer.bn_estimate is not None and [n for n, _ in trainer.bn_estimate.norms] == ["backend.norm"]
    # the fixed batches, drawn again here from the recipe seed
    data = trainer.recipe.data
    keys = list(epoch_batches(trainer.train_data, data, seed=5, epoch=EMA_BN_EPOCH, info=DistInfo()))[:3]
    batches = [default_collate([trainer.train_data[k] for k in ks])["waveform"] for ks in keys]
    best = load_model_dir(out / "best").model
    inputs: list[Tensor] = []
    probe = copy.deepcopy(best).train()  # the tiny front-end has no dropout here: train mode draws nothing
    probe.backend.norm.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach().clone()))
    with torch.no_grad():
        for x in batches:
            probe(x)
    mean, var = _instance_stats(inputs)
    exported = best.state_dict()
    torch.testing.assert_close(exported["backend.norm.running_mean"], mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(exported["backend.norm.running_var"], var, rtol=1e-5, atol=1e-6)
    # the checkpoint validated at step 4: its measured model holds them, its raw model training's own statistics
    state = ckpt.load_checkpoint(out / "checkpoints" / "step-00000004")
    assert torch.equal(state["model"]["backend.norm.running_mean"], exported["backend.norm.running_mean"])
    assert not torch.allclose(state["raw_model"]["backend.norm.running_mean"], mean, rtol=1e-3, atol=1e-4)
    assert torch.equal(trainer.module.backend.norm.running_mean, exported["backend.norm.running_mean"])
    # the val EER recorded at step 4 is the one best/ scores, with those statistics
    recorded = next(h for h in trainer.history if h["step"] == 4)
    result = evaluate(
        load_model_dir(out / "best").model,
        SyntheticDataset(18, seed=9),
        batch_size=8,
        device=torch.device("cpu"),
        loss_fn=trainer.loss_fn,
    )
    assert result.eer == recorded["val_eer"]
    assert json.loads((out / "best" / "config.json").read_text())["metadata"]["ema_bn_batches"] == 3


def test_a_resume_with_another_ema_bn_batches_warns_and_re_estimates_on_that_many_of_the_same_batches(
    tmp_path: Path, monkeypatch, caplog
):
    # like any recipe key the checkpoint can go on under (another lr, seed or data.batch_size, which also change
    # the fixed batches): named in the warning, in force from the restored step on, each session's value in run.json
    install_tiny(monkeypatch)
    out = tmp_path / "run"

    def fit(max_steps: int, bn_batches: int, resume: bool) -> Trainer:
        recipe = {
            "seed": 5,
            "model": {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head", "batch_norm": True}},
            "optimizer": {"lr": 5e-2},
            "data": {"batch_size": 8},
            "trainer": {
                "epochs": 10,
                "max_steps": max_steps,
                "val_every": 2,
                "ema_decay": 0.8,
                "ema_bn_batches": bn_batches,
                "out_dir": str(out),
                "progress": False,
            },
        }
        t = Trainer(
            from_dict(TrainRecipe, recipe),
            train_data=SyntheticDataset(40, n_attacks=4),
            val_data=SyntheticDataset(18, seed=9),
            resume=resume,
        )
        t.fit()
        return t

    first = fit(2, 4, resume=False)
    with caplog.at_level("WARNING", logger="sddkit.training"):
        resumed = fit(4, 2, resume=True)
    assert "trainer.ema_bn_batches: 4 -> 2" in caplog.text
    assert first.bn_estimate is not None and resumed.bn_estimate is not None
    assert len(resumed.bn_estimate.batches) == 2
    assert all(torch.equal(a, b) for a, b in zip(resumed.bn_estimate.batches, first.bn_estimate.batches))
    assert json.loads((out / "final" / "config.json").read_text())["metadata"]["ema_bn_batches"] == 2
    sessions = json.loads((out / "run.json").read_text())["sessions"]
    assert [s["recipe"]["trainer"]["ema_bn_batches"] for s in sessions] == [4, 2]
