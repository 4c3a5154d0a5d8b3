"""MLDG logs how many rows its meta-test gradient came from (``mldg/meta_test_rows``): the held-out domain's rows of
the batch, which a sampler other than ``domain_batch`` leaves to chance (a small domain gives a handful)."""

from __future__ import annotations

import torch
from test_mldg import _adamw, _batch, _bn_detector, _ctx
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)

from sddkit.training.mldg import MLDG, MLDGConfig, split_domains


def test_meta_test_rows_is_the_held_out_domains_rows():
    torch.manual_seed(3)
    model = _bn_detector()
    batch = _batch(n=24, n_attacks=4)
    strategy = MLDG(MLDGConfig(n_meta_test=1, share_bonafide=False), seed=5)
    # the split the step will draw: the same generator state, replayed on a copy
    replay = torch.Generator().manual_seed(5)
    _, test_rows = split_domains(batch["label"], batch["domain"], n_meta_test=1, share_bonafide=False, generator=replay)
    result = strategy.step(batch, _ctx(model, _adamw(model)))
    rows = float(result.metrics["mldg/meta_test_rows"])
    assert rows == test_rows.numel() and 0 < rows < 24
    held_out = set(batch["domain"][test_rows][batch["label"][test_rows] == 0].tolist())
    assert len(held_out) == 1  # one whole spoof domain, its rows counted


def test_meta_test_rows_is_zero_without_a_meta_test_pass():
    torch.manual_seed(3)
    model = _bn_detector()
    fell_back = MLDG(MLDGConfig(), seed=0).step(_batch(n=12, n_attacks=1), _ctx(model, _adamw(model)))
    assert float(fell_back.metrics["mldg/fallback"]) == 1.0 and float(fell_back.metrics["mldg/meta_test_rows"]) == 0
    beta0 = MLDG(MLDGConfig(beta=0.0), seed=0).step(_batch(n=12, n_attacks=4), _ctx(model, _adamw(model)))
    assert float(beta0.metrics["mldg/fallback"]) == 0.0 and float(beta0.metrics["mldg/meta_test_rows"]) == 0
