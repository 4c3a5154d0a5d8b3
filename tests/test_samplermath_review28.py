"""Review 28 of the training samplers, recomputed by counting: the ``domain_batch`` sampler as the trainer builds it
names its domains in its warnings and errors (not by the dataset's indices), and its draws do not depend on that."""

from __future__ import annotations

import warnings

import pytest

from sddkit.data.dataset import UtteranceDataset
from sddkit.data.samplers import DomainBatchSampler
from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError
from sddkit.training.data import epoch_batches
from sddkit.training.distributed import DistInfo
from sddkit.training.recipe import DataConfig

# 12 attacks: their indices ("0", "1", "10", "11", "2", ...) sort otherwise than their names
ATTACKS = [f"attack_{chr(ord('a') + k)}" for k in range(12)]


def _dataset(spoofs: dict[str, int], bona: dict[str, int]) -> UtteranceDataset:
    records = []
    for label, counts in (("spoof", spoofs), ("bonafide", bona)):
        for attack, n in counts.items():
            for i in range(n):
                u = f"{label}_{attack}_{i}"
                records.append({"utt_id": u, "path": f"/nowhere/{u}.wav", "label": label, "attack": attack})
    return UtteranceDataset(UtteranceTable.from_records(records), crop_samples=800, train=True)


def test_domain_batch_warning_names_the_small_domain_not_its_index():
    """The trainer gives the sampler the dataset's domain indices: the warning for a domain too small for its blocks
    said "fewer for '5' (4 spoof)" on sddbench (Tacotron2+WaveGlow), leaving the user to work out which attack that
    was. It names the attack now; the batches drawn are those of the same sampler without names."""
    spoofs = {a: 8 for a in ATTACKS}
    spoofs["attack_f"] = 2  # blocks of 4 + 4 take 4 spoofs of their attack: this one has 2
    ds = _dataset(spoofs, {"-": 96})
    options = {"n_domains_per_step": 2}
    cfg = DataConfig(batch_size=16, sampler="domain_batch", crop_samples=800, sampler_options=options)
    with pytest.warns(UserWarning, match="fewer for") as record:
        batches = epoch_batches(ds, cfg, seed=3, epoch=2, info=DistInfo())
    message = " ".join(str(w.message) for w in record)
    assert "'attack_f' (2 spoof)" in message and f"'{ds.domain_to_index['attack_f']}'" not in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = DomainBatchSampler(ds.domains, ds.labels, batch_size=16, seed=3, **options)
    plain.set_epoch(2)
    drawn = [[k if isinstance(k, int) else k[0] for k in b] for b in batches]  # (index, draw) keys of repeats
    assert drawn == [list(b) for b in plain]
    assert batches.domain_names == plain.domain_names  # the indices, as before, set the domains' order


def test_domain_batch_errors_name_the_domains_and_the_way_out():
    """``bonafide_by_domain`` with an attack that has no bona fide item of its own named it by index ("e.g.
    ['3']"); too few bona fide items to give every attack a share said only "...: share_bonafide"."""
    spoofs = {"attack_a": 4, "attack_b": 4, "attack_c": 4}
    cfg = DataConfig(
        batch_size=8,
        sampler="domain_batch",
        crop_samples=800,
        sampler_options={"bonafide_by_domain": True, "n_domains_per_step": 2},
    )
    ds = _dataset(spoofs, {"attack_a": 2, "attack_b": 2})
    with pytest.raises(ConfigError, match=r"e\.g\. \['attack_c'\]\) have no bona fide item of their own"):
        epoch_batches(ds, cfg, seed=0, epoch=0, info=DistInfo())
    cfg = DataConfig(batch_size=8, sampler="domain_batch", crop_samples=800, sampler_options={"n_domains_per_step": 2})
    ds = _dataset(spoofs, {"-": 2})
    with pytest.raises(ConfigError, match=r"cannot be split among 3 domains .*: set share_bonafide: true"):
        epoch_batches(ds, cfg, seed=0, epoch=0, info=DistInfo())
    # the names are the trainer's to give, not a recipe option
    with pytest.raises(ValueError, match="unknown key"):
        DataConfig(batch_size=8, sampler="domain_batch", sampler_options={"names": ["x"]})
