"""Third review of MLDG and its samplers."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.data.samplers import DomainBatchSampler


def _data(n_attacks: int = 14, per_attack: int = 5, n_bona: int = 40) -> tuple[np.ndarray, np.ndarray]:
    attacks = np.array(["bonafide"] * n_bona + [f"A{i:02d}" for i in range(n_attacks) for _ in range(per_attack)])
    return attacks, np.array([1] * n_bona + [0] * n_attacks * per_attack)


@pytest.mark.parametrize(("fraction", "domains", "per", "bona"), [(0.75, 4, 4, 3), (0.8, 4, 4, 3), (0.5, 8, 2, 1)])
def test_domain_batch_from_batch_size_picks_blocks_that_keep_a_spoof_item(fraction, domains, per, bona):
    # batch 16, 14 attacks: blocks of 2 hold 2 x 0.75 -> 2 bona fide and no spoof; the sampler chose them anyway
    # and refused with "per_domain=2 ... leaves no spoof item", a per_domain the recipe never gave
    attacks, labels = _data()
    s = DomainBatchSampler(attacks, labels, batch_size=16, bonafide_fraction=fraction, seed=0)
    assert (s.n_domains_per_step, s.per_domain, s.n_bonafide) == (domains, per, bona)
    for batch in s:
        blocks = np.asarray(batch).reshape(domains, per)
        assert (labels[blocks].sum(axis=1) == bona).all()  # every block keeps bona and per - bona spoofs


def test_domain_batch_too_small_for_such_blocks_names_the_block_size_it_needs():
    attacks, labels = _data()
    with pytest.raises(ValueError, match="cannot hold blocks of >= 3 items"):
        DomainBatchSampler(attacks, labels, batch_size=5, bonafide_fraction=0.75)
