"""Recipe smoke review (session 46): what a user meets running the shipped recipes."""

from __future__ import annotations

import pytest

from sddkit.training.recipe import TrainerConfig


@pytest.mark.parametrize(("device", "wanted"), [("gpu", "cuda"), ("GPU", "cuda"), ("gpu:1", "cuda:1")])
def test_trainer_device_gpu_points_to_cuda_not_cpu(device: str, wanted: str) -> None:
    # `gpu` is one letter from `cpu`: the hint said "did you mean 'cpu'?", sending a GPU user to train on the CPU
    with pytest.raises(ValueError) as info:
        TrainerConfig(device=device)
    message = str(info.value)
    assert f"write {wanted})" in message
    assert "did you mean 'cpu'" not in message


def test_trainer_device_misspelt_cpu_still_suggested() -> None:
    with pytest.raises(ValueError, match="did you mean 'cpu'"):
        TrainerConfig(device="cpux")
