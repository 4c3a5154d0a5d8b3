"""Review 3 of the samplers, datasets and loader plumbing: errors that name their real cause."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.errors import ConfigError
from sddkit.training.data import epoch_batches
from sddkit.training.distributed import DistInfo
from sddkit.training.recipe import DataConfig


class _Labels:
    """A dataset stand-in: the balanced samplers read only labels and domains."""

    labels = np.array([1] * 50 + [0] * 50)
    domains = np.zeros(100, dtype=np.int64)

    def __len__(self) -> int:
        return 100


def test_a_short_num_samples_is_named_not_the_training_set():
    cfg = DataConfig(sampler="class_balanced", batch_size=16, sampler_options={"num_samples": 10})
    with pytest.raises(ConfigError, match=r"num_samples=10") as info:
        epoch_batches(_Labels(), cfg, seed=0, epoch=0, info=DistInfo())
    assert "training set" not in str(info.value)


def test_a_training_set_too_small_for_a_batch_is_still_named():
    cfg = DataConfig(sampler="class_balanced", batch_size=16)
    with pytest.raises(ConfigError, match=r"training set \(100 utterances\)"):
        epoch_batches(_Labels(), cfg, seed=0, epoch=0, info=DistInfo(rank=0, world_size=8))


def test_domain_balanced_labels_of_one_class_are_refused_not_a_whole_epoch_of_it():
    from sddkit.data.samplers import DomainBalancedSampler

    with pytest.raises(ValueError, match=r"both bona fide \(1\) and spoof \(0\).*found \[0\]"):
        DomainBalancedSampler(["a", "b", "a", "b"], [0, 0, 0, 0], seed=0, rank=0, world_size=1)


def test_domain_balanced_with_both_classes_still_halves_the_epoch():
    from sddkit.data.samplers import DomainBalancedSampler

    labels = np.array([1, 1, 0, 0, 0, 0])
    order = list(DomainBalancedSampler(["a", "b", "a", "b", "a", "b"], labels, seed=0, rank=0, world_size=1))
    assert int(labels[order].sum()) == 3


def test_domain_batch_refuses_labels_of_neither_class():
    from sddkit.data.samplers import DomainBatchSampler

    domains = ["a", "a", "b", "b", "x", "x"]
    with pytest.raises(ValueError, match=r"found \[2\]"):
        DomainBatchSampler(domains, [0, 0, 0, 0, 1, 2], batch_size=4, seed=0, rank=0, world_size=1)
