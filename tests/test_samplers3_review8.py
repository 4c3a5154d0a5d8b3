"""Samplers and training data (review 8): an evaluation dataset under DDP, crop lengths, grouping cost, caches."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from sddkit.data import samplers
from sddkit.data.dataset import CachedWaveforms, UtteranceDataset
from sddkit.data.table import UtteranceTable
from sddkit.training.data import epoch_batches, loader_generator
from sddkit.training.distributed import DistInfo
from sddkit.training.recipe import DataConfig

SR = 16000
TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture()
def table(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for i in range(8):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(SR // 4)).astype(np.float32), SR, subtype="FLOAT")
        label = "bonafide" if i < 2 else "spoof"
        records.append({"utt_id": f"u{i}", "path": str(path), "label": label, "attack": label, "source": "s"})
    return UtteranceTable.from_records(records)


@pytest.mark.parametrize("sampler", ["random", "class_balanced"])
def test_an_evaluation_dataset_given_to_training_loads_on_every_rank(table, sampler):
    """DistinctDraws keyed rank 1's first draws (index, 1), which a fixed-crop dataset refuses: rank 1 stopped at
    its first item while rank 0 trained (a single process never met it)."""
    cfg = DataConfig(batch_size=2, crop_samples=800, sampler=sampler)
    fixed = UtteranceDataset(table, crop_samples=800, train=False)
    assert not fixed.accepts_draws
    for rank in range(2):
        batches = epoch_batches(fixed, cfg, seed=0, epoch=0, info=DistInfo(rank=rank, world_size=2))
        assert all(isinstance(k, int) for b in batches for k in b)
        items = [int(i) for b in DataLoader(fixed, batch_sampler=batches) for i in b["index"]]
        assert items == [k for b in batches for k in b]
    # a training dataset still gets its own draw per rank and per repeat
    train = UtteranceDataset(table, crop_samples=800, train=True)
    assert train.accepts_draws
    keys = [k for b in epoch_batches(train, cfg, seed=0, epoch=0, info=DistInfo(rank=1, world_size=2)) for k in b]
    assert keys and all(isinstance(k, tuple) and k[1] % 2 == 1 for k in keys)


@pytest.mark.parametrize("crop", [1.7, "100", True, 0, -5, float("nan")])
def test_a_crop_length_that_is_no_positive_whole_number_is_refused_not_truncated(table, crop):
    with pytest.raises(ValueError, match="crop_samples must be a positive integer"):
        UtteranceDataset(table, crop_samples=crop, train=True)


@pytest.mark.parametrize("crop", [800, 800.0, np.int64(800)])
def test_whole_number_crop_lengths_are_taken(table, crop):
    ds = UtteranceDataset(table, crop_samples=crop, train=True)
    assert ds.crop_samples == 800 and type(ds.crop_samples) is int
    assert ds[0]["waveform"].shape == (800,)


def _groups_one_pass_per_value(values):
    keys = np.array([str(v) for v in values])
    names = sorted(set(keys.tolist()))
    return names, [np.flatnonzero(keys == n) for n in names]


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).integers(0, 50, 1000),
        ["b", "a", "é", "Z", "z", "a", "10", "9", "ä"],
        [1, "1", 1.0, None, "None"],
        [True, False, True],
        ["x"],
    ],
)
def test_grouping_gives_the_groups_of_a_pass_per_value(values):
    names, pools = samplers._groups(values)
    ref_names, ref_pools = _groups_one_pass_per_value(values)
    assert names == ref_names
    assert len(pools) == len(ref_pools)
    for pool, ref in zip(pools, ref_pools):
        np.testing.assert_array_equal(pool, ref)
        assert pool.dtype == np.int64


def test_many_groups_make_an_epoch_of_equal_group_shares():
    """Speakers as domains (data.domain_column: speaker): a pass over the items per group, every epoch, took
    seconds for 100k items of 10k speakers (1.9 s for 200k of 1,000, over a minute for 200k of 20,000); one sort
    now (the time is a benchmark's matter, not a unit test's)."""
    groups = np.random.default_rng(0).integers(0, 10_000, 100_000)
    sampler = samplers.GroupBalancedSampler(groups, seed=0)
    order = sampler.global_order()
    assert len(order) == 100_000
    # the same epoch as before: an equal share per group, each item drawn at most (share / group size) rounded up
    counts = np.bincount(groups[order], minlength=10_000)
    assert counts.max() - counts.min() <= 1


def test_cached_waveforms_refuse_decreasing_offsets_and_ids_listed_twice():
    buffer = np.ones(10, dtype=np.float32)
    with pytest.raises(ValueError, match="offsets must not decrease: 'b' runs from 12 to 10"):
        CachedWaveforms(["a", "b"], buffer, [0, 12, 10], SR)  # 'b' was served as empty audio
    with pytest.raises(ValueError, match=r"utt_id\(s\) listed twice, e.g. \['a'\]"):
        CachedWaveforms(["a", "a"], buffer, [0, 4, 10], SR)  # the first 'a' could never be read
    ok = CachedWaveforms(["a", "b"], buffer, [0, 4, 10], SR)
    assert len(ok["a"]) == 4 and len(ok["b"]) == 6


def test_loader_generators_keep_rank_0_and_differ_across_ranks_and_epochs():
    # rank 0 draws the base seed of its loader workers as before (runs of a single process reproduce)
    old = torch.Generator().manual_seed(7 * 100_003 + 3)
    assert torch.equal(loader_generator(7, 3, 0).get_state(), old.get_state())
    seeds = {
        (e, r): int(torch.empty((), dtype=torch.int64).random_(generator=loader_generator(7, e, r)))
        for e in range(3)
        for r in range(4)
    }
    assert len(set(seeds.values())) == len(seeds)
    assert seeds[(1, 2)] == int(torch.empty((), dtype=torch.int64).random_(generator=loader_generator(7, 1, 2)))


class _GlobalNoise(Dataset):
    """Items of a dataset of one's own that draws from numpy's global generator (as in a DataLoader worker)."""

    def __init__(self, n: int = 24):
        self.labels = np.array([i % 2 for i in range(n)], dtype=np.int64)
        self.domains = np.zeros(n, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "waveform": torch.from_numpy(np.random.standard_normal(256).astype(np.float32)),
            "label": torch.tensor(int(self.labels[index])),
            "domain": torch.tensor(0),
            "index": torch.tensor(index),
        }


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    sys.path.insert(0, TESTS)
    from test_train_support import register_tiny_for_good

    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    register_tiny_for_good()
    seen: list[list[float]] = []

    class Recording(Trainer):
        def _one_step(self, batch):
            seen.append(batch["waveform"][:, 0].tolist())
            super()._one_step(batch)

        def _finish(self):  # no export: the batches are what this test looks at
            return None

    recipe = from_dict(
        TrainRecipe,
        {
            "seed": 2,
            "model": {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head"}},
            "data": {"batch_size": 4, "num_workers": 1},
            "trainer": {"epochs": 1, "max_steps": 2, "device": "cpu", "out_dir": f"{out}/run", "progress": False},
        },
    )
    Recording(recipe, train_data=_GlobalNoise(), val_data=_GlobalNoise(8)).fit()
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(seen, f)


@pytest.mark.slow
def test_loader_workers_of_two_ranks_draw_different_random_numbers(tmp_path):
    """Both ranks seeded their loader workers from (seed, epoch): worker 0 of rank 1 drew what worker 0 of rank 0
    drew, so a dataset drawing noise from numpy's global generator gave both ranks' items the same noise."""
    from test_ddp import FreePorts, run_ranks

    run_ranks(_ddp_worker, (2, FreePorts(), str(tmp_path)), 240, out=tmp_path)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert len(seen[0]) == len(seen[1]) == 2
    assert seen[0] != seen[1]
