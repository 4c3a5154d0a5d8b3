"""Balanced samplers: exact class/domain shares, determinism under (seed, epoch), DDP sharding, MLDG batches."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from sddkit.data.samplers import (
    ClassBalancedSampler,
    DomainBalancedSampler,
    DomainBatchSampler,
    GroupBalancedSampler,
    split_domain_batch,
)


def test_class_balanced_epoch_and_batches():
    labels = np.array([1] * 10 + [0] * 90)
    s = ClassBalancedSampler(labels, seed=0)
    order = list(s)
    assert len(order) == len(s) == 100
    assert sum(labels[order]) == 50  # exactly half bona fide over the epoch
    counts = Counter(order)
    assert all(counts[i] == 5 for i in range(10))  # the 10 bona fide files cycled 5 times each
    assert all(counts[i] <= 1 for i in range(10, 100))  # spoof drawn without replacement
    # per batch of 20: equal in expectation, so the mean over the batches is exactly 10
    per_batch = [int(labels[order[k : k + 20]].sum()) for k in range(0, 100, 20)]
    assert np.mean(per_batch) == 10 and all(3 <= b <= 17 for b in per_batch)


def test_balance_holds_per_batch_on_average_over_epochs():
    labels = np.array([1] * 30 + [0] * 270)
    s = ClassBalancedSampler(labels, num_samples=320, seed=7)
    fractions = []
    for epoch in range(20):
        s.set_epoch(epoch)
        order = np.array(list(s))
        fractions.extend(labels[order].reshape(-1, 32).mean(axis=1))
    assert abs(np.mean(fractions) - 0.5) < 1e-9  # exact halves per epoch -> batches balanced on average
    # a batch is a random draw from a 50/50 epoch: sd of its share ~ 0.5 / sqrt(32) ~ 0.09
    assert 0.2 < np.min(fractions) and np.max(fractions) < 0.8
    assert abs(np.std(fractions) - 0.5 / np.sqrt(32)) < 0.03


def test_determinism_and_epochs():
    labels = np.array([0, 1] * 25)
    a, b = ClassBalancedSampler(labels, seed=3), ClassBalancedSampler(labels, seed=3)
    assert list(a) == list(b) == list(a)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(ClassBalancedSampler(labels, seed=4)) != list(b)


def test_domain_balanced_shares():
    domains = ["A01"] * 5 + ["A02"] * 20 + ["bonafide"] * 75
    s = DomainBalancedSampler(domains, num_samples=90, seed=1)
    got = Counter(domains[i] for i in s)
    assert got == {"A01": 30, "A02": 30, "bonafide": 30}
    s = DomainBalancedSampler(domains, num_samples=100, seed=1)  # 100 = 33 + 33 + 34
    assert sorted(Counter(domains[i] for i in s).values()) == [33, 33, 34]


def test_domain_balanced_with_labels_halves_then_domains():
    # attack domains: 4 + 16 spoofs of two attacks, 80 bona fide
    domains = ["A01"] * 4 + ["A02"] * 16 + ["bonafide"] * 80
    labels = [0] * 20 + [1] * 80
    got = Counter(domains[i] for i in DomainBalancedSampler(domains, labels, num_samples=100, seed=2))
    assert got == {"bonafide": 50, "A01": 25, "A02": 25}


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ddp_shards_are_disjoint_and_cover_the_epoch(world_size):
    labels = np.array([1] * 60 + [0] * 60)  # balanced: every index once per epoch
    shards = [list(ClassBalancedSampler(labels, seed=5, rank=r, world_size=world_size)) for r in range(world_size)]
    assert all(len(sh) == -(-120 // world_size) for sh in shards)
    assert len({len(sh) for sh in shards}) == 1  # equal length on every rank (DDP would hang otherwise)
    flat = [i for sh in shards for i in sh]
    if 120 % world_size == 0:
        assert sorted(flat) == list(range(120))  # disjoint and complete
    # the shards interleave one global order, identical on every rank
    whole = list(ClassBalancedSampler(labels, seed=5, rank=0, world_size=1))
    for r, sh in enumerate(shards):
        assert sh[: 120 // world_size] == whole[r::world_size][: 120 // world_size]


def test_sampler_errors():
    with pytest.raises(ValueError, match="both bona fide"):
        ClassBalancedSampler([0, 0, 0])
    with pytest.raises(ValueError, match="rank"):
        GroupBalancedSampler([0, 1], rank=2, world_size=2)
    with pytest.raises(ValueError, match="empty"):
        GroupBalancedSampler([])


def _mldg_data():
    # 4 attack domains of 12 spoofs each + 40 bona fide (attack 'bonafide')
    attacks = [f"A0{d}" for d in range(1, 5) for _ in range(12)] + ["bonafide"] * 40
    labels = [0] * 48 + [1] * 40
    return np.array(attacks), np.array(labels)


def test_domain_batch_format_and_bonafide_partition():
    attacks, labels = _mldg_data()
    s = DomainBatchSampler(attacks, labels, per_domain=6, n_domains_per_step=3, seed=0)
    assert s.domain_names == ["A01", "A02", "A03", "A04"]
    assert len(s) == s.steps_per_epoch == -(-88 // 18)
    # the bona fide files are split into 4 disjoint shares of 10 that cover them all
    shares = [set(p.tolist()) for p in s.bonafide_pools]
    assert [len(p) for p in shares] == [10, 10, 10, 10]
    assert set().union(*shares) == set(range(48, 88)) and sum(len(p) for p in shares) == 40
    for domain_ids, batch in s.global_steps():
        assert len(batch) == 18 and len(set(domain_ids.tolist())) == 3
        for k, d in enumerate(domain_ids):
            block = batch[k * 6 : (k + 1) * 6]
            spoof = [i for i in block if labels[i] == 0]
            bona = [i for i in block if labels[i] == 1]
            assert len(spoof) == 3 and len(bona) == 3
            assert {attacks[i] for i in spoof} == {s.domain_names[d]}  # a block is one domain
            assert set(bona) <= shares[d]  # with that domain's own bona fide share
    # the partition does not change with the epoch (domains keep their bona fide files)
    s.set_epoch(3)
    assert [set(p.tolist()) for p in s.bonafide_pools] == shares
    fresh = DomainBatchSampler(attacks, labels, per_domain=6, n_domains_per_step=3, seed=0)
    fresh.set_epoch(3)  # a resumed run reproduces the epoch's batches
    assert list(s) == list(fresh)


def test_domain_batch_bonafide_by_domain():
    # domains = sources: each source has its own real and fake files, plus a bona fide-only corpus
    sources = np.array(["demo1"] * 6 + ["demo2"] * 6 + ["demo1"] * 4 + ["demo2"] * 4 + ["librispeech"] * 6)
    labels = np.array([0] * 12 + [1] * 14)
    s = DomainBatchSampler(sources, labels, per_domain=4, bonafide_by_domain=True, seed=1)
    pools = [set(p.tolist()) for p in s.bonafide_pools]
    assert set(range(12, 16)) <= pools[0] and set(range(16, 20)) <= pools[1]  # own real files stay
    assert pools[0].isdisjoint(pools[1]) and pools[0] | pools[1] == set(range(12, 26))
    assert [len(p) for p in pools] == [7, 7]  # the 6 librispeech files are split 3 / 3


def test_domain_batch_share_bonafide_and_determinism():
    attacks, labels = _mldg_data()
    kw = {"per_domain": 4, "n_domains_per_step": 4, "share_bonafide": True, "steps_per_epoch": 20, "seed": 2}
    s = DomainBatchSampler(attacks, labels, **kw)
    batches = list(s)
    assert batches == list(DomainBatchSampler(attacks, labels, **kw))
    bona_seen = set()
    for batch in batches:
        bona = [i for i in batch if labels[i] == 1]
        assert len(bona) == 8 and len(set(bona)) == 8  # shared pool: no repeat inside a step
        bona_seen.update(bona)
    assert bona_seen == set(range(48, 88))  # every domain draws from all bona fide files
    s.set_epoch(1)
    assert list(s) != batches


def test_domain_batch_ddp_ranks_draw_disjoint_items():
    attacks, labels = _mldg_data()
    kw = {"per_domain": 2, "n_domains_per_step": 2, "steps_per_epoch": 2, "seed": 9, "world_size": 2}
    r0 = list(DomainBatchSampler(attacks, labels, rank=0, **kw))
    r1 = list(DomainBatchSampler(attacks, labels, rank=1, **kw))
    assert len(r0) == len(r1) == 2
    flat0, flat1 = [i for b in r0 for i in b], [i for b in r1 for i in b]
    assert not set(flat0) & set(flat1)


def test_split_domain_batch():
    batch = {
        "waveform": torch.arange(12.0).reshape(6, 2),
        "label": torch.tensor([1, 0, 1, 0, 1, 0]),
        "scale": torch.tensor(2.0),
    }
    blocks = split_domain_batch(batch, 3)
    assert [b["label"].tolist() for b in blocks] == [[1, 0], [1, 0], [1, 0]]
    assert blocks[2]["waveform"].tolist() == [[8.0, 9.0], [10.0, 11.0]]
    assert all(b["scale"] is batch["scale"] for b in blocks)
    with pytest.raises(ValueError, match="equal domain blocks"):
        split_domain_batch(batch, 4)


def test_domain_batch_from_batch_size():
    attacks, labels = _mldg_data()
    s = DomainBatchSampler(attacks, labels, batch_size=8, seed=0)  # 4 domains x 2 items
    assert (s.n_domains_per_step, s.per_domain, s.batch_size) == (4, 2, 8)
    assert all(len(b) == 8 for b in s)
    s = DomainBatchSampler(attacks, labels, batch_size=6, seed=0)  # 4 does not divide 6: 3 x 2
    assert (s.n_domains_per_step, s.per_domain) == (3, 2)
    s = DomainBatchSampler(attacks, labels, batch_size=12, n_domains_per_step=2)
    assert s.per_domain == 6
    with pytest.raises(ValueError, match=r"give per_domain \(items per domain block\) or batch_size"):
        DomainBatchSampler(attacks, labels)
    with pytest.raises(ValueError, match="cannot hold blocks"):
        DomainBatchSampler(attacks, labels, batch_size=3)
    with pytest.raises(ValueError, match="not a multiple"):
        DomainBatchSampler(attacks, labels, batch_size=9, n_domains_per_step=2)


def test_domain_batch_errors():
    attacks, labels = _mldg_data()
    with pytest.raises(ValueError, match="at least 2 spoof domains"):
        DomainBatchSampler(["A01"] * 4 + ["bonafide"] * 4, [0] * 4 + [1] * 4, per_domain=2)
    with pytest.raises(ValueError, match="n_domains_per_step"):
        DomainBatchSampler(attacks, labels, per_domain=2, n_domains_per_step=5)
    with pytest.raises(ValueError, match="cannot be split"):
        DomainBatchSampler(attacks[:50], labels[:50], per_domain=2)  # 2 bona fide for 4 domains
    with pytest.raises(ValueError, match="no spoof item"):
        DomainBatchSampler(attacks, labels, per_domain=1, bonafide_fraction=0.9)
    only_spoof = DomainBatchSampler(attacks[:48], labels[:48], per_domain=3, bonafide_fraction=0.0)
    assert all(labels[i] == 0 for b in only_spoof for i in b)


@pytest.mark.parametrize(
    ("per_domain", "fraction", "bona", "warns"), [(2, 0.25, 1, True), (4, 0.125, 1, True), (5, 0.5, 3, False)]
)
def test_domain_batch_blocks_hold_the_bona_fide_asked_for(per_domain, fraction, bona, warns):
    # round() rounds halves to even: 2 x 0.25 = 0.5 gave blocks without any bona fide, an epoch of spoofs only
    # (and 5 x 0.5 gave 2); a share far from the one asked for is said
    attacks, labels = _mldg_data()
    with pytest.warns(UserWarning, match="hold 1 bona fide") if warns else _no_warning():
        s = DomainBatchSampler(attacks, labels, per_domain=per_domain, bonafide_fraction=fraction, seed=0)
    assert s.n_bonafide == bona
    assert sum(labels[i] for b in s for i in b) == bona * s.n_domains_per_step * len(s)


def _no_warning():
    import contextlib
    import warnings

    @contextlib.contextmanager
    def strict():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield

    return strict()


def test_domain_batch_bonafide_by_domain_gives_the_unclaimed_to_domains_without_their_own():
    # three unclaimed (librispeech) files were spread over both domains: demo1 (4 of its own) got 2 more and
    # demo2 (none of its own) 1, repeated in every one of its blocks; one unclaimed file raised "none left"
    sources = np.array(["demo1"] * 6 + ["demo2"] * 6 + ["demo1"] * 4 + ["librispeech"] * 3)
    labels = np.array([0] * 12 + [1] * 7)
    s = DomainBatchSampler(sources, labels, per_domain=4, bonafide_by_domain=True, seed=1)
    assert [sorted(p.tolist()) for p in s.bonafide_pools] == [[12, 13, 14, 15], [16, 17, 18]]
    one = np.array(["demo1"] * 6 + ["demo2"] * 6 + ["demo1"] * 4 + ["librispeech"])
    s = DomainBatchSampler(one, labels[:17], per_domain=4, bonafide_by_domain=True, seed=1)
    assert [sorted(p.tolist()) for p in s.bonafide_pools] == [[12, 13, 14, 15], [16]]
    with pytest.raises(ValueError, match="1 domain.*no bona fide item of their own, and too few"):
        DomainBatchSampler(sources[:16], labels[:16], per_domain=4, bonafide_by_domain=True, seed=1)
