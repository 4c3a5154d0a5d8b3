"""Device choice for training (review devicepath28): ``trainer.device=cuda:N`` as ``sdd score --device`` takes it,
and GPUs a machine lacks (an index, or more torchrun processes than GPUs) refused in one line before anything is read.
CPU-only: CUDA is faked by monkeypatching ``torch.cuda`` where a GPU is needed."""

from __future__ import annotations

import pytest
import torch

from sddkit.config import from_dict
from sddkit.errors import ConfigError
from sddkit.training.distributed import DistInfo, select_device
from sddkit.training.recipe import TrainerConfig, TrainRecipe


@pytest.fixture
def two_gpus(monkeypatch) -> list[int]:
    """A machine with two CUDA devices, as torch.cuda sees it; returns the indices set_device was called with."""
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    return chosen


def test_trainer_device_takes_a_gpu_index_and_still_refuses_typos() -> None:
    # `trainer.device=cuda:1` was refused "(did you mean 'cuda'?)", and cuda trained on GPU 0, perhaps another job's
    assert from_dict(TrainerConfig, {"device": "cuda:1"}, "trainer").device == "cuda:1"
    for value in ("auto", "cpu", "cuda"):
        assert from_dict(TrainerConfig, {"device": value}, "trainer").device == value
    with pytest.raises(ConfigError, match=r"trainer.device: 'cdua' is not one of .*did you mean 'cuda'\?.* or cuda:N"):
        from_dict(TrainerConfig, {"device": "cdua"}, "trainer")
    with pytest.raises(ConfigError, match=r"trainer.device: 'cuda:x' is not one of"):
        from_dict(TrainerConfig, {"device": "cuda:x"}, "trainer")
    with pytest.raises(ConfigError, match=r"'mps' is not one of .*MPS is not supported for training"):
        from_dict(TrainerConfig, {"device": "mps"}, "trainer")
    with pytest.raises(ConfigError, match="expected a string"):  # YAML's `device: off`
        from_dict(TrainerConfig, {"device": False}, "trainer")


def test_cuda_index_trains_on_that_gpu(two_gpus) -> None:
    # before, select_device took only the exact string "cuda": any other value ran on the CPU without a word
    assert select_device("cuda:1", DistInfo()) == torch.device("cuda", 1)
    assert two_gpus == [1]
    assert select_device("cuda", DistInfo()) == torch.device("cuda", 0)
    assert select_device("cpu", DistInfo()) == torch.device("cpu")


def test_gpu_index_this_machine_lacks_is_refused(two_gpus) -> None:
    with pytest.raises(
        ConfigError, match=r"trainer.device=cuda:2: this machine has 2 CUDA device\(s\) \(cuda:0..cuda:1\)"
    ):
        select_device("cuda:2", DistInfo())
    assert two_gpus == []


def test_cuda_index_under_torchrun_is_refused(two_gpus) -> None:
    # every rank on GPU 1: NCCL refuses two ranks on one GPU, in DDP's first broadcast, after the data was read
    with pytest.raises(ConfigError, match=r"cuda:1 names one GPU, but torchrun started 2 processes.*CUDA_VISIBLE"):
        select_device("cuda:1", DistInfo(rank=1, world_size=2, local_rank=1))
    # a bare cuda (or auto) is each rank's own GPU, as before
    assert select_device("cuda", DistInfo(rank=1, world_size=2, local_rank=1)) == torch.device("cuda", 1)
    assert select_device("auto", DistInfo(rank=0, world_size=2, local_rank=0)) == torch.device("cuda", 0)


@pytest.mark.parametrize("preference", ["cuda", "auto"])
def test_more_torchrun_processes_than_gpus_are_refused(two_gpus, monkeypatch, preference) -> None:
    # torchrun --nproc_per_node=4 on a 2-GPU machine: ranks 2 and 3 took GPUs 0 and 1 again (local_rank % count),
    # and NCCL failed with "Duplicate GPU detected" once DDP wrapped the model, after the data had been read
    with pytest.raises(
        ConfigError, match=r"3 processes on this machine but it has 2 CUDA device\(s\).*nproc_per_node=2"
    ):
        select_device(preference, DistInfo(rank=2, world_size=4, local_rank=2))
    # torchrun's LOCAL_WORLD_SIZE: rank 0, whose own GPU exists, refuses alike instead of waiting for the others
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match=r"4 processes on this machine but it has 2 CUDA device\(s\)"):
        select_device(preference, DistInfo(rank=0, world_size=4, local_rank=0))
    assert two_gpus == []


def test_train_refuses_a_missing_gpu_before_reading_any_data(tmp_path) -> None:
    # on this (CPU-only or not) machine a GPU index beyond the last is refused in one line; the data files, which do
    # not exist, are never looked at
    from sddkit.training.trainer import Trainer

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    recipe = from_dict(
        TrainRecipe,
        {
            "model": {"frontend": {"name": "logmel"}, "backend": {"name": "lcnn", "channels": 4}},
            "data": {"train": {"protocol": str(tmp_path / "absent.csv")}, "batch_size": 2},
            "trainer": {"device": f"cuda:{count}", "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )
    with pytest.raises(ConfigError, match=r"trainer.device.*cuda:" if count else "no CUDA device is available"):
        Trainer(recipe).fit()
    assert not (tmp_path / "run").exists()
