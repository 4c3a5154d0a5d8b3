"""Training randomness that must not repeat: draws of one item within an epoch, shuffles across seeds, rank streams.

The class-balanced sampler draws the smaller class more than once per epoch; before DistinctDraws, the item's
generator was keyed by (seed, epoch, index) only, so a repeat was an exact copy of the first draw.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from torch.utils.data import DataLoader

from sddkit.config import from_dict
from sddkit.data.dataset import UtteranceDataset
from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError
from sddkit.training.data import DistinctDraws, SkipBatches, epoch_batches
from sddkit.training.distributed import DistInfo
from sddkit.training.recipe import DataConfig

SR = 16000


@pytest.fixture()
def table(tmp_path):
    """2 bona fide and 6 spoof files of 1 s, each a different noise: a 0.1 s crop locates its offset."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(8):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(SR)).astype(np.float32), SR, subtype="FLOAT")
        label = "bonafide" if i < 2 else "spoof"
        records.append({"utt_id": f"u{i}", "path": str(path), "label": label, "attack": label, "source": "s"})
    return UtteranceTable.from_records(records)


def test_draws_number_the_repeats_on_one_rank():
    batches = [[0, 1], [0, 2], [0, 1]]
    assert list(DistinctDraws(batches)) == [[0, 1], [(0, 1), 2], [(0, 2), (1, 1)]]
    assert len(DistinctDraws(batches)) == 3
    # every iteration is one epoch: the counts start again
    assert list(DistinctDraws(batches)) == list(DistinctDraws(batches))


def test_draws_differ_across_ranks_and_rank0_first_draws_are_plain():
    batches = [[3, 4], [3]]
    rank0 = list(DistinctDraws(batches, rank=0, world_size=2))
    rank1 = list(DistinctDraws(batches, rank=1, world_size=2))
    assert rank0 == [[3, 4], [(3, 2)]]
    assert rank1 == [[(3, 1), (4, 1)], [(3, 3)]]


def test_resume_skips_to_the_same_draws():
    batches = [[0, 1], [0, 1], [2, 0], [1, 0]]
    full = list(DistinctDraws(batches))
    assert list(SkipBatches(DistinctDraws(batches), 2)) == full[2:]


def test_wrapper_forwards_sampler_attributes():
    class Blocks(list):
        per_domain = 4

    assert DistinctDraws(Blocks([[0]])).per_domain == 4


def test_a_repeat_gets_its_own_crop_and_draw_zero_is_unchanged(table):
    ds = UtteranceDataset(table, crop_samples=1600, train=True, seed=7)
    ds.set_epoch(3)
    first = ds[0]["waveform"].numpy()
    np.testing.assert_array_equal(ds[(0, 0)]["waveform"].numpy(), first)
    # the generator of draw 0 is the one keyed by (seed, epoch, index) alone, as before draws existed
    before = np.random.default_rng([7, 3, 0]).integers(0, 2**31)
    assert ds.rng(0).integers(0, 2**31) == before
    repeats = [ds[(0, d)]["waveform"].numpy() for d in (1, 2, 3)]
    for x in repeats:
        assert not np.array_equal(x, first)
    assert len({x.tobytes() for x in repeats}) == 3
    np.testing.assert_array_equal(ds[(0, 2)]["waveform"].numpy(), repeats[1])  # reproducible
    item = ds[(0, 2)]
    assert int(item["index"]) == 0 and int(item["label"]) == 1


def test_evaluation_items_refuse_draws(table):
    ds = UtteranceDataset(table, crop_samples=1600, train=False)
    np.testing.assert_array_equal(ds[(1, 0)]["waveform"].numpy(), ds[1]["waveform"].numpy())
    with pytest.raises(ValueError, match="draw 1 of item 1"):
        ds[(1, 1)]
    with pytest.raises(ValueError, match="draw -1"):
        UtteranceDataset(table, crop_samples=1600, train=True)[(1, -1)]


def _epoch_crops(table, *, distinct: bool) -> tuple[list, list]:
    cfg = DataConfig(batch_size=4, crop_samples=1600, sampler="class_balanced", distinct_draws=distinct)
    ds = UtteranceDataset(table, crop_samples=1600, train=True, seed=1)
    batches = epoch_batches(ds, cfg, seed=1, epoch=0, info=DistInfo())
    keys = [k for b in batches for k in b]
    loader = DataLoader(ds, batch_sampler=batches)
    crops = [(int(i), w.numpy().tobytes()) for b in loader for i, w in zip(b["index"], b["waveform"])]
    return keys, crops


def test_class_balanced_epoch_gets_distinct_bonafide_crops(table):
    keys, crops = _epoch_crops(table, distinct=True)
    bonafide = [c for i, c in crops if i < 2]
    assert len(bonafide) > 2  # 2 bona fide files, half of every epoch: they repeat
    assert len(set(bonafide)) == len(bonafide)
    assert any(isinstance(k, tuple) for k in keys)

    old_keys, old_crops = _epoch_crops(table, distinct=False)
    assert [k[0] if isinstance(k, tuple) else k for k in keys] == old_keys  # same items, same order
    old_bonafide = [c for i, c in old_crops if i < 2]
    assert len(set(old_bonafide)) == 2  # the old behaviour: repeats were copies
    # first draws are bit-identical to the old ones
    first = {}
    for i, c in crops:
        first.setdefault(i, c)
    old_first = {}
    for i, c in old_crops:
        old_first.setdefault(i, c)
    assert first == old_first


def test_recipe_key_defaults_on_and_is_typed():
    assert from_dict(DataConfig, {}).distinct_draws is True
    assert from_dict(DataConfig, {"distinct_draws": False}).distinct_draws is False
    with pytest.raises(ConfigError, match="distinct_draws"):
        from_dict(DataConfig, {"distinct_draws": "sometimes"})


def test_random_sampler_orders_are_not_shifted_copies_across_seeds(table):
    """DistributedSampler seeds its shuffle with seed + epoch; the trainer spreads the seeds apart."""
    ds = UtteranceDataset(table, crop_samples=1600, train=True)
    cfg = DataConfig(batch_size=2, crop_samples=1600)

    def order(seed: int, epoch: int) -> list:
        return [k for b in epoch_batches(ds, cfg, seed=seed, epoch=epoch, info=DistInfo()) for k in b]

    orders = {(s, e): order(s, e) for s in range(4) for e in range(4)}
    shifted = [(s, e) for s in range(3) for e in range(1, 4) if orders[(s, e)] == orders[(s + 1, e - 1)]]
    assert shifted == []
    assert order(2, 3) == orders[(2, 3)]  # still a function of (seed, epoch) alone


def test_rank_streams_of_one_seed_are_not_another_seeds_streams():
    from sddkit.training.provenance import rank_seed

    assert rank_seed(7, 0) == 7  # a single-process run keeps its seed (earlier runs reproduce)
    seeds = {(s, r): rank_seed(s, r) for s in range(8) for r in range(4)}
    assert len(set(seeds.values())) == len(seeds)  # with seed + rank, (1, 1) and (2, 0) collided
    assert rank_seed(3, 0, restart_step=10) not in seeds.values()
    assert rank_seed(3, 0, restart_step=10) != rank_seed(3, 0, restart_step=11)
    assert all(0 <= v < 2**63 for v in seeds.values())
