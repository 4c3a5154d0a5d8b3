"""Review 11 of the training strategies and their objective: MLDG's share_bonafide over domain blocks that share
the bona fide files, class weights that are not one per class, and a domain-alignment penalty on an embedding no
trainable parameter computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_mldg import FrozenProjection, LinearHead, _batch
from test_train_support import (
    TinyBackend,
    TinyBackendConfig,
    TinyFrontend,
    TinyFrontendConfig,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.data.samplers import DomainBatchSampler
from sddkit.detectors.detector import Detector
from sddkit.errors import ConfigError
from sddkit.registry import get_registry
from sddkit.training.erm import ERM
from sddkit.training.losses import DetectionLoss
from sddkit.training.mldg import MLDG, MLDGConfig
from sddkit.training.recipe import LossConfig
from sddkit.training.strategy import StepContext


# --- MLDG's share_bonafide with domain blocks ------------------------------------------------------------------
def _sampler(share: bool) -> DomainBatchSampler:
    attacks = np.array(["bonafide"] * 12 + [f"A{i % 4}" for i in range(24)])
    labels = np.array([1] * 12 + [0] * 24)
    return DomainBatchSampler(attacks, labels, batch_size=8, share_bonafide=share, seed=0)


def test_share_bonafide_false_over_blocks_that_share_them_is_refused():
    # with domain_batch the sampler decides: `strategy.share_bonafide: false` over `sampler_options.share_bonafide:
    # true` trained with every domain drawing from all bona fide files, while the recipe said they were dealt
    strategy = get_registry("strategy").build({"name": "mldg", "share_bonafide": False}, seed=0)
    with pytest.raises(ConfigError, match=r"strategy.share_bonafide false is not read .*share_bonafide true"):
        strategy.check_batches(_sampler(share=True))
    strategy.check_batches(_sampler(share=False))  # the shipped MLDG recipes: both false, as they mean
    MLDG(MLDGConfig(), seed=0).check_batches(_sampler(share=True))  # the default says nothing: the sampler decides
    MLDG(MLDGConfig(), seed=0).check_batches(_sampler(share=False))


# --- class weights: one per class -------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [(0.1, 0.9, 5.0), (0.9,)], ids=str)
def test_class_weights_other_than_two_are_refused_when_built(weights):
    # a recipe's list was checked when read, LossConfig(...) was not: with oc_softmax a third weight was ignored
    # without a word (and one weight failed at the first bona fide item, deep in torch)
    with pytest.raises(ValueError, match=r"class_weights must be 2 numbers \(spoof, bona fide\)"):
        LossConfig(class_weights=weights, kind="oc_softmax")
    with pytest.raises(ValueError, match="class_weights must be 2 numbers"):
        LossConfig(class_weights=weights)
    assert LossConfig(class_weights=[0.1, 0.9]).class_weights == [0.1, 0.9]


# --- domain alignment on an embedding nothing trains ------------------------------------------------------------
def _ctx(model: torch.nn.Module, weight: float) -> StepContext:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    return StepContext(
        model=model, module=model, optimizer=opt, loss_fn=DetectionLoss(LossConfig(domain_alignment=weight))
    )


def test_alignment_of_an_embedding_no_trainable_parameter_computes_is_refused_at_the_first_step():
    # a linear probe: frozen encoder, parameter-free pooling, a trainable classifier. The penalty was a constant:
    # the logged loss moved, the step was the plain step
    torch.manual_seed(0)
    probe = Detector(frontend=FrozenProjection(32, 4), backend=LinearHead(4))
    before = probe.backend.head.weight.detach().clone()
    batch = _batch()
    batch["waveform"] = batch["waveform"][:, :32]
    for strategy in (ERM(), MLDG(MLDGConfig(), seed=0)):
        with pytest.raises(ConfigError, match=r"loss.domain_alignment=0.5 aligns .* no trainable parameter computes"):
            strategy.step(batch, _ctx(probe, 0.5))
    assert torch.equal(probe.backend.head.weight, before)  # refused before any update
    ERM().step(batch, _ctx(probe, 0.0))  # without the penalty the probe trains
    # an embedding a trainable adapter computes, and scoring without autograd, are as before
    cfg = TinyFrontendConfig()
    model = Detector(frontend=TinyFrontend(cfg), backend=TinyBackend(TinyBackendConfig(), cfg.dim))
    result = ERM().step(_batch(), _ctx(model, 0.5))
    assert float(result.metrics["aux/domain_alignment"]) > 0
    with torch.no_grad():
        out = probe(batch["waveform"])
        parts = DetectionLoss(LossConfig(domain_alignment=0.5))(out, batch["label"], domains=batch["domain"])
    assert float(parts.aux["domain_alignment"]) >= 0


# --- domain_batch without bona fide --------------------------------------------------------------------------------
def test_domain_batch_blocks_of_spoofs_only_are_refused_when_the_recipe_is_read():
    # bonafide_fraction 0 (which the sampler's own error once suggested) trained on spoofs only: the model never saw
    # a bona fide item, and nothing said so
    from sddkit.config import from_dict
    from sddkit.training.recipe import DataConfig

    with pytest.raises(ConfigError, match=r"data.sampler_options.bonafide_fraction: 0 .* never see a bona fide item"):
        from_dict(DataConfig, {"sampler": "domain_batch", "sampler_options": {"bonafide_fraction": 0}}, path="data")
    ok = from_dict(DataConfig, {"sampler": "domain_batch", "sampler_options": {"bonafide_fraction": 0.25}})
    assert ok.sampler_options == {"bonafide_fraction": 0.25}
    attacks = np.array(["d1"] * 6 + ["d2"] * 6 + ["d1"] * 8)
    labels = np.array([0] * 12 + [1] * 8)
    with pytest.raises(ValueError, match="bonafide_by_domain: 1 domain") as error:
        DomainBatchSampler(attacks, labels, per_domain=4, bonafide_by_domain=True)
    assert "bonafide_fraction: 0" not in str(error.value)
