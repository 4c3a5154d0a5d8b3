"""Review 26 of the training data sampling: MLDG blocks without needless repeats, warnings for domains too small for
their blocks and for files too short to hold speech."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import soundfile as sf

from sddkit.data.dataset import UtteranceDataset
from sddkit.data.samplers import DomainBatchSampler
from sddkit.data.table import UtteranceTable
from sddkit.training.data import build_dataset, spec_table
from sddkit.training.recipe import DataConfig, ProtocolSpec

SR = 16000

# 3 spoof domains of 5 items each, 15 bona fide items (5 per domain once partitioned)
LABELS = np.array([1] * 15 + [0] * 15)
DOMAINS = np.array(["-"] * 15 + ["A"] * 5 + ["B"] * 5 + ["C"] * 5)


@pytest.mark.parametrize("share", [False, True])
def test_domain_batch_blocks_repeat_no_item_their_pools_hold_enough_of(share):
    """Blocks of 4 (2 bona fide + 2 spoof) from pools of 5: where one pass over a pool ended inside a block, the
    next pass (a fresh random order) could start with an item the block already held, so 7 % of blocks held an item
    twice (and 14 % of share_bonafide steps a bona fide item twice, though the shared pool of 15 has 6 per step).
    The composition stays as documented: each block its domain's spoofs and bona fide share, every pool cycled."""
    for seed in range(20):
        s = DomainBatchSampler(DOMAINS, LABELS, per_domain=4, seed=seed, steps_per_epoch=20, share_bonafide=share)
        drawn = {d: [] for d in range(3)}
        for domain_ids, idx in s.global_steps():
            blocks = idx.reshape(3, 4)
            if share:
                step_bona = blocks[LABELS[blocks] == 1]
                assert len(set(step_bona.tolist())) == len(step_bona), (seed, blocks)
            for d, block in zip(domain_ids.tolist(), blocks):
                assert len(set(block.tolist())) == 4, (seed, block)
                spoof = block[LABELS[block] == 0]
                assert len(spoof) == 2 and set(DOMAINS[spoof]) == {s.domain_names[d]}
                assert set(block[LABELS[block] == 1]) <= set(s.bonafide_pools[d].tolist())
                drawn[d] += spoof.tolist()
        for d, items in drawn.items():  # 40 draws from a pool of 5: each item 8 times (whole passes)
            counts = np.bincount(np.asarray(items) - 15 - 5 * d, minlength=5)
            assert counts.tolist() == [len(items) // 5] * 5


def test_domain_batch_warns_naming_domains_smaller_than_a_block():
    """A batch larger than a domain's data repeated its items in every block of that domain without a word."""
    labels = np.array([1] * 10 + [0] * 30)
    domains = np.array(["-"] * 10 + ["A"] * 20 + ["B"] * 8 + ["C"] * 2)
    with pytest.warns(UserWarning, match=r"take 4 bona fide and 4 spoof items") as record:
        DomainBatchSampler(domains, labels, batch_size=24, seed=0)
    message = str(record[0].message)
    assert "'C' (2 spoof)" in message and "'B' (3 bona fide)" in message and "'A'" not in message
    with pytest.warns(UserWarning, match=r"the shared bona fide items \(10, 12 per step\)"):
        DomainBatchSampler(domains, labels, batch_size=24, seed=0, share_bonafide=True)
    with warnings.catch_warnings():  # blocks of 2 + 2: every pool is large enough, nothing to say
        warnings.simplefilter("error")
        DomainBatchSampler(domains[:38], labels[:38], per_domain=4, n_domains_per_step=2, seed=0)


def _table(tmp_path, lengths: list[int], *, durations: bool) -> UtteranceTable:
    records = []
    for i, n in enumerate(lengths):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, np.random.default_rng(i).uniform(-0.5, 0.5, n).astype(np.float32), SR, subtype="FLOAT")
        records.append(
            {
                "utt_id": f"u{i}",
                "path": str(path),
                "label": "bonafide" if i % 2 else "spoof",
                "duration_s": n / SR if durations else float("nan"),
            }
        )
    return UtteranceTable.from_records(records)


def test_a_training_file_under_a_tenth_of_a_second_is_warned_once_with_its_exclude(tmp_path, caplog):
    """A 5 ms training file was tiled into a 2 s buzz labelled as speech without a word, while sdd score refuses
    inputs under 0.1 s. It is still used, but named once (not again every draw or epoch), with the exclude that
    leaves it out; files of 0.1 s or more are not named."""
    table = _table(tmp_path, [8000, 80, 1600, 8000], durations=False)
    ds = UtteranceDataset(table, crop_samples=2 * SR, train=True, seed=0)
    with caplog.at_level(logging.WARNING, logger="sddkit.data"):
        for epoch in range(2):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                assert ds[i]["waveform"].shape == (2 * SR,)  # still used, repeat-padded
    assert len(caplog.records) == 1, caplog.text
    assert "u1.wav (5.0 ms)" in caplog.text and "2 s crop" in caplog.text and "min_duration_s" in caplog.text
    assert "exclude: {utt_id: ['u1']}" in caplog.text
    # the exclude named leaves it out of the data spec
    saved = table.save(tmp_path / "table.csv")
    spec = ProtocolSpec(protocol=str(saved), format="utterance_table", exclude={"utt_id": ["u1"]})
    assert "u1" not in set(spec_table(spec).column("utt_id"))


@pytest.mark.parametrize(("cache", "durations"), [("preload", False), ("none", True)])
def test_short_files_of_known_length_are_named_before_the_first_step(tmp_path, caplog, cache, durations):
    """With the lengths known (a preload, or the table's duration_s), the short files are named when the dataset is
    built, under the recipe key, and not again when read."""
    table = _table(tmp_path, [8000, 80, 160, 8000], durations=durations)
    cfg = DataConfig(crop_samples=SR, batch_size=2, decode_cache=cache)
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(table, cfg, train=True, seed=0)
        assert "data.train lists 2 files under 0.1 s" in caplog.text
        assert "u1.wav (5.0 ms), " in caplog.text and "u2.wav (10.0 ms)" in caplog.text
        assert "exclude: {utt_id: ['u1', 'u2']}" in caplog.text
        caplog.clear()
        for i in range(len(ds)):
            ds[i]
    assert not caplog.records, caplog.text


def test_a_short_file_named_in_a_loader_worker_is_not_named_again_by_the_next_epochs(tmp_path):
    """Loader workers (started anew each epoch) share what was named: the warning is once per file, not once per
    worker and epoch."""
    from torch.utils.data import DataLoader

    table = _table(tmp_path, [8000, 80, 1600, 8000], durations=False)
    ds = UtteranceDataset(table, crop_samples=SR, train=True, seed=0)
    logger = logging.getLogger("sddkit.data")
    handler = logging.FileHandler(tmp_path / "log.txt")  # forked workers inherit it: their records land there too
    logger.addHandler(handler)
    try:
        for epoch in range(2):
            ds.set_epoch(epoch)
            for _ in DataLoader(ds, batch_size=2, num_workers=2):
                pass
        for i in range(len(ds)):
            ds[i]
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert len(lines) == 1 and "u1.wav (5.0 ms)" in lines[0], lines
