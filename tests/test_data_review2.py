"""Data pipeline review (second pass): sampler options that crashed or were silently changed, and
errors that pointed at the wrong cause or hid which recipe entry caused them."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.data.samplers import ClassBalancedSampler, DomainBatchSampler
from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError
from sddkit.training.data import epoch_batches, read_train_table
from sddkit.training.distributed import DistInfo
from sddkit.training.recipe import DataConfig, ProtocolSpec


def _mldg_data():
    # 4 attack domains of 6 spoofs each + 12 bona fide
    attacks = np.array([f"A0{d}" for d in range(1, 5) for _ in range(6)] + ["bonafide"] * 12)
    labels = np.array([0] * 24 + [1] * 12)
    return attacks, labels


class _Indexed:
    """The attributes epoch_batches reads from an UtteranceDataset, without audio."""

    def __init__(self, attacks, labels):
        self.domain_names = sorted(set(attacks.tolist()))
        self.domains = np.array([self.domain_names.index(a) for a in attacks], dtype=np.int64)
        self.labels = labels

    def __len__(self):
        return len(self.labels)


def test_n_domains_per_step_zero_with_a_batch_size_is_a_value_error():
    """``n_domains_per_step: 0`` next to ``batch_size`` divided by zero (ZeroDivisionError) before the range
    check; the trainer only turns ValueError/TypeError into a ConfigError, so a recipe typo was a traceback."""
    attacks, labels = _mldg_data()
    with pytest.raises(ValueError, match=r"n_domains_per_step must be in \[2, 4\], got 0"):
        DomainBatchSampler(attacks, labels, batch_size=8, n_domains_per_step=0)
    cfg = DataConfig(batch_size=8, sampler="domain_batch", sampler_options={"n_domains_per_step": 0})
    with pytest.raises(ConfigError, match=r"data.sampler 'domain_batch' .*n_domains_per_step must be in"):
        epoch_batches(_Indexed(attacks, labels), cfg, seed=0, epoch=0, info=DistInfo())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"per_domain": 2.5}, "per_domain"),
        ({"per_domain": 2, "steps_per_epoch": 2.7}, "steps_per_epoch"),
        ({"batch_size": 8, "n_domains_per_step": 2.5}, "n_domains_per_step"),
    ],
)
def test_fractional_domain_batch_sizes_are_refused_not_truncated(kwargs, name):
    """``per_domain: 2.5`` silently became 2 (and ``steps_per_epoch: 2.7`` became 2): a batch or an epoch
    of another size than the recipe says. Integral floats (``4.0``) are still accepted."""
    attacks, labels = _mldg_data()
    with pytest.raises(ValueError, match=f"{name} must be an integer"):
        DomainBatchSampler(attacks, labels, **kwargs)
    s = DomainBatchSampler(attacks, labels, per_domain=4.0, steps_per_epoch=3.0)
    assert (s.per_domain, s.steps_per_epoch, len(list(s))) == (4, 3, 3)


def test_fractional_num_samples_is_refused_not_truncated():
    """``num_samples: 10.5`` silently became an epoch of 10 positions."""
    with pytest.raises(ValueError, match="num_samples must be an integer"):
        ClassBalancedSampler([0, 1] * 5, num_samples=10.5)
    assert len(ClassBalancedSampler([0, 1] * 5, num_samples=12.0)) == 12


def test_bonafide_by_domain_names_the_domain_without_bona_fide():
    """With ``bonafide_by_domain`` a domain (source) holding only fakes, and no bona fide item outside the
    spoof domains to share out, was reported as "8 bona fide items cannot be split among 2 domains:
    share_bonafide", which blames the count. The error now names the domain and the way out."""
    sources = np.array(["demo1"] * 6 + ["demo2"] * 6 + ["demo1"] * 8)
    labels = np.array([0] * 12 + [1] * 8)
    with pytest.raises(ValueError, match=r"bonafide_by_domain: 1 domain\(s\) \(e.g. \['demo2'\]\) have no bona fide"):
        DomainBatchSampler(sources, labels, per_domain=4, bonafide_by_domain=True)
    # without bona fide in the blocks the empty share is fine
    s = DomainBatchSampler(sources, labels, per_domain=4, bonafide_by_domain=True, bonafide_fraction=0.0)
    assert all(labels[i] == 0 for b in s for i in b)


def test_share_bonafide_and_bonafide_by_domain_are_exclusive():
    """Both options set: ``bonafide_by_domain`` was silently ignored (every domain drew from all bona fide
    items, a source's own real recordings no longer stayed with its fakes)."""
    sources = np.array(["demo1"] * 6 + ["demo2"] * 6 + ["demo1"] * 4 + ["demo2"] * 4)
    labels = np.array([0] * 12 + [1] * 8)
    with pytest.raises(ValueError, match="exclude each other"):
        DomainBatchSampler(sources, labels, per_domain=4, bonafide_by_domain=True, share_bonafide=True)


def _write_table(path, ids):
    records = [
        {"utt_id": u, "path": f"{u}.wav", "label": "bonafide" if k % 2 else "spoof", "attack": "A01"}
        for k, u in enumerate(ids)
    ]
    return str(UtteranceTable.from_records(records).save(path))


def test_train_specs_sharing_utt_ids_are_named(tmp_path):
    """Two data.train protocols with the same utt_ids (the same corpus listed twice, or In-the-Wild's
    numeric stems next to another corpus's) failed with "duplicate utt_id(s): [...]" from the table, which
    does not say which entries collide. The ConfigError names both specs; distinct ids still concatenate."""
    a = _write_table(tmp_path / "a.csv", ["0", "1", "2", "3"])
    b = _write_table(tmp_path / "b.csv", ["x0", "x1"])
    c = _write_table(tmp_path / "c.csv", ["x2", "2", "3"])
    spec = lambda p: ProtocolSpec(protocol=p, format="utterance_table")  # noqa: E731
    assert len(read_train_table(DataConfig(train=[spec(a), spec(b)]))) == 6
    with pytest.raises(ConfigError, match=r"data.train\[2\] \(.*c.csv\) and data.train\[0\] \(.*a.csv\) share 2"):
        read_train_table(DataConfig(train=[spec(a), spec(b), spec(c)]))


@pytest.mark.parametrize(
    "kwargs, name",
    [({"per_domain": -2}, "per_domain"), ({"per_domain": 0}, "per_domain"), ({"batch_size": -8}, "batch_size")],
)
def test_non_positive_domain_batch_sizes_are_refused_by_name(kwargs, name):
    """``per_domain: -2`` was refused as "leaves no spoof item" (bonafide_fraction's rounding), not for its sign."""
    attacks, labels = _mldg_data()
    with pytest.raises(ValueError, match=f"{name} must be a positive integer, got {list(kwargs.values())[0]}"):
        DomainBatchSampler(attacks, labels, **kwargs)
