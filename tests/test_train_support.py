"""Tiny detectors and synthetic data shared by the training tests (plus a check of the data itself).

The tiny front-end stands in for "a frozen pretrained encoder + a trainable adapter": its frozen
projection is drawn from a fixed generator (as if reloaded from a pretrained file, whatever the
global seed), so model directories that store the trainable weights only rebuild it exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from sddkit.detectors.outputs import BackendOutput, FrontendOutput
from sddkit.pretrained import mark_pretrained
from sddkit.registry import Entry, get_registry

FRAME = 16


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: extra intra-op threads only contend (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@dataclass
class TinyFrontendConfig:
    dim: int = 8
    pretrained: str | None = None  # any string: "the frozen projection comes from a pretrained file"
    aux_weight: float = 0.0
    dropout: float = 0.0


class TinyFrontend(nn.Module):
    """(B, T) -> frames (B, T/16, 16) -> frozen Linear -> trainable adapter -> (B, N, dim) (+ an aux loss)."""

    def __init__(self, cfg: TinyFrontendConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = nn.Linear(FRAME, cfg.dim)
        with torch.no_grad():
            g = torch.Generator().manual_seed(1234)
            self.encoder.weight.copy_(torch.randn(cfg.dim, FRAME, generator=g) * 0.3)
            self.encoder.bias.copy_(torch.randn(cfg.dim, generator=g) * 0.1)
        self.encoder.requires_grad_(False)
        if cfg.pretrained:  # what a real encoder does when it reads its weights from a file
            mark_pretrained(self.encoder)
        self.adapter = nn.Linear(cfg.dim, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.output_dim = cfg.dim

    def forward(self, waveform: Tensor) -> FrontendOutput:
        b, t = waveform.shape
        frames = waveform[:, : t - t % FRAME].reshape(b, -1, FRAME)
        h = torch.tanh(self.encoder(frames))
        h = h + self.drop(self.adapter(h))
        aux = {}
        if self.cfg.aux_weight:
            aux["adapter_l2"] = self.cfg.aux_weight * self.adapter.weight.pow(2).sum()
        return FrontendOutput(features=h, aux_losses=aux, stats={"mean_feature": h.mean(dim=1)})


@dataclass
class TinyBackendConfig:
    batch_norm: bool = False


class TinyBackend(nn.Module):
    """(B, N, D) -> mean over frames (-> BatchNorm) -> Linear(D, 2)."""

    def __init__(self, cfg: TinyBackendConfig, in_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_dim) if cfg.batch_norm else nn.Identity()
        self.head = nn.Linear(in_dim, 2)

    def forward(self, features: Tensor) -> BackendOutput:
        emb = self.norm(features.mean(dim=1))
        return BackendOutput(logits=self.head(emb), embedding=emb)


def build_tiny_frontend(cfg: TinyFrontendConfig, **_: object) -> TinyFrontend:
    return TinyFrontend(cfg)


def build_tiny_backend(cfg: TinyBackendConfig, *, in_dim: int | None = None, **_: object) -> TinyBackend:
    return TinyBackend(cfg, in_dim or 8)


def tiny_entries() -> dict[str, tuple[str, Entry]]:
    return {
        "tiny_test": ("frontend", Entry("tiny_test", build_tiny_frontend, TinyFrontendConfig, "test")),
        "tiny_test_head": ("backend", Entry("tiny_test_head", build_tiny_backend, TinyBackendConfig, "test")),
    }


def install_tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the tiny components for the duration of one test (no global side effect)."""
    for name, (family, entry) in tiny_entries().items():
        monkeypatch.setitem(get_registry(family)._entries, name, entry)


def register_tiny_for_good() -> None:
    """Register them permanently (for subprocesses that run the CLI)."""
    for name, (family, entry) in tiny_entries().items():
        get_registry(family).register(name, config=entry.config_cls)(entry.builder)


TINY_MODEL = {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head"}}


@contextlib.contextmanager
def crash_on_save(monkeypatch: pytest.MonkeyPatch, n: int) -> Iterator[None]:
    """A run in the block dies (KeyboardInterrupt) while writing the tensors of its ``n``-th checkpoint save, as a
    crash mid-save would; the block expects that crash, and saves work again after it."""
    from sddkit.training import checkpoint as ckpt

    real, calls = ckpt._write_tensors, []

    def crash_on_nth_save(tensors, path):
        calls.append(path)
        if len(calls) == n:
            raise KeyboardInterrupt("simulated crash")
        real(tensors, path)

    monkeypatch.setattr(ckpt, "_write_tensors", crash_on_nth_save)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(ckpt, "_write_tensors", real)


class SyntheticDataset(Dataset):
    """Deterministic items ``{"waveform", "label", "domain", "index"}``: domain 0 = bona fide, 1..D = attacks.

    Bona fide is low-level noise; attack d adds a sine at its own frequency, so the task is
    learnable and domains differ. An item depends on (seed, index) only.
    """

    def __init__(self, n: int = 48, samples: int = 256, n_attacks: int = 4, seed: int = 0):
        self.n, self.samples, self.n_attacks, self.seed = n, samples, n_attacks, seed
        self.labels = np.array([1 if i % 3 == 0 else 0 for i in range(n)], dtype=np.int64)
        self.domains = np.array(
            [0 if self.labels[i] == 1 else 1 + (i // 3) % n_attacks for i in range(n)], dtype=np.int64
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, index])
        x = 0.1 * rng.standard_normal(self.samples)
        d = int(self.domains[index])
        if d > 0:
            t = np.arange(self.samples) / 16000.0
            x = x + 0.3 * np.sin(2 * np.pi * (500.0 * d) * t)
        return {
            "waveform": torch.from_numpy(x.astype(np.float32)),
            "label": torch.tensor(int(self.labels[index])),
            "domain": torch.tensor(d),
            "index": torch.tensor(index),
        }


def write_corpus(
    folder: Path,
    *,
    n: int = 24,
    attacks: tuple[str, ...] = ("A01", "A02", "A03"),
    samples: int = 4000,
    seed: int = 0,
    partition: str = "train",
) -> Path:
    """Write ``n`` short 16 kHz WAV files (every 3rd bona fide) and an utterance table CSV naming them.

    Attacks add a tone of their own frequency, so models can learn and domains differ.
    Returns the CSV path (read it with ``read_protocol(path, "utterance_table")``).
    """
    import soundfile as sf

    from sddkit.data.table import UtteranceTable

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        bona = i % 3 == 0
        attack = "bonafide" if bona else attacks[(i // 3) % len(attacks)]
        x = 0.1 * rng.standard_normal(samples)
        if not bona:
            t = np.arange(samples) / 16000.0
            x += 0.3 * np.sin(2 * np.pi * (400.0 * (1 + attacks.index(attack))) * t)
        path = folder / f"{partition}_{seed}_{i:04d}.wav"
        sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
        rows.append(
            {
                "utt_id": path.stem,
                "path": str(path),
                "label": "bonafide" if bona else "spoof",
                "attack": attack,
                "source": "synthetic",
                "speaker": f"spk{i % 4}",
                "corpus": "synthetic",
                "duration_s": samples / 16000,
                "partition": partition,
            }
        )
    return UtteranceTable.from_records(rows).save(folder / f"{partition}_{seed}.csv")


def is_bn_stat(key: str) -> bool:
    """Whether a state-dict key is a batch norm's running statistic."""
    return key.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")


def hand_bn(model: nn.Module, batches: list[Tensor], seed: int) -> dict[str, Tensor]:
    """SWA's update_bn by hand, the reference the trainer's re-estimation is checked against: every batch norm of a
    copy of ``model`` reset, cumulative (momentum None), the batches forwarded in train mode without gradients
    (dropout drawing from the torch generator seeded with ``seed``) -> its running statistics."""
    import copy

    from torch.nn.modules.batchnorm import _BatchNorm

    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for x in batches:
            model(x)
    return {k: v for k, v in model.state_dict().items() if is_bn_stat(k)}


def tiny_bn_recipe(out: Path, *, seed: int, lr: float, ema_bn_batches: int, **trainer: object):
    """A TrainRecipe of the tiny model with batch norm: 8 steps, validated every 2, top-3 checkpoints kept and
    averaged into final/ (the set-up of the trainer's export tests)."""
    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe

    return from_dict(
        TrainRecipe,
        {
            "seed": seed,
            "model": {
                "frontend": {"name": "tiny_test", "dropout": 0.2},
                "backend": {"name": "tiny_test_head", "batch_norm": True},
            },
            "optimizer": {"lr": lr},
            "data": {"batch_size": 8},
            "trainer": {
                "epochs": 10,
                "max_steps": 8,
                "val_every": 2,
                "keep_top_k": 3,
                "average_top_k": 3,
                "ema_bn_batches": ema_bn_batches,
                "out_dir": str(out),
                "progress": False,
                **trainer,
            },
        },
    )


def fit_tiny(recipe, resume: bool = False):
    """Train ``recipe`` on synthetic data (40 training items of 4 attacks, 18 validation items); the Trainer."""
    from sddkit.training.trainer import Trainer

    t = Trainer(
        recipe, train_data=SyntheticDataset(40, n_attacks=4), val_data=SyntheticDataset(18, seed=9), resume=resume
    )
    t.fit()
    return t


def tiny_detector(**frontend_kwargs: object) -> nn.Module:
    from sddkit.detectors.detector import Detector

    cfg = TinyFrontendConfig(**frontend_kwargs)  # type: ignore[arg-type]
    return Detector(frontend=TinyFrontend(cfg), backend=TinyBackend(TinyBackendConfig(), cfg.dim))


def test_synthetic_dataset_is_deterministic_and_has_domains():
    ds = SyntheticDataset(n=30, n_attacks=3)
    a, b = ds[7], SyntheticDataset(n=30, n_attacks=3)[7]
    assert torch.equal(a["waveform"], b["waveform"]) and a["waveform"].shape == (256,)
    assert set(ds.domains[ds.labels == 1]) == {0}
    assert set(ds.domains[ds.labels == 0]) == {1, 2, 3}
    out = tiny_detector()(torch.stack([ds[i]["waveform"] for i in range(4)]))
    assert out.logits.shape == (4, 2) and out.score.shape == (4,)


def test_written_corpus_reads_back_through_the_data_pipeline(tmp_path):
    from sddkit.data.dataset import UtteranceDataset
    from sddkit.data.protocols import read_protocol

    table = read_protocol(write_corpus(tmp_path, n=9, samples=800), "utterance_table")
    assert len(table) == 9 and set(table.column("attack")) == {"bonafide", "A01", "A02", "A03"}
    item = UtteranceDataset(table, crop_samples=600, train=True, seed=1)[4]
    assert item["waveform"].shape == (600,) and int(item["label"]) == 0


def write_tiny_recipe(
    tmp_path: Path, train: object, val: object, out: object, *, sampler: str | None = None, epochs: int = 1
) -> str:
    """A recipe of ``epochs`` epochs (one by default) of the tiny test model over utterance tables ``train`` and
    ``val`` into ``out``, written as ``tmp_path/recipe.yaml`` for ``sdd train``; returns its path."""
    recipe = tmp_path / "recipe.yaml"
    sampling = f"\n  sampler: {sampler}" if sampler else ""
    recipe.write_text(
        f"""
model: {{frontend: tiny_test, backend: tiny_test_head}}
data:
  train: {{protocol: {train}, format: utterance_table}}
  val: {{protocol: {val}, format: utterance_table}}
  crop_samples: 640
  batch_size: 4{sampling}
trainer: {{epochs: {epochs}, out_dir: {out}, progress: false, device: cpu}}
"""
    )
    return str(recipe)
