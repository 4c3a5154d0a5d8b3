"""Behaviour no test pinned: each test here was written after breaking the code (the mutation named in it) and
seeing every existing test of its area still pass."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from test_mldg import _adamw, _batch, _bn_detector, _ctx
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)

from sddkit.data.samplers import GroupBalancedSampler
from sddkit.frontends.routers import Router
from sddkit.registry import get_registry
from sddkit.scoring.calibration import fit_calibration, weighted_cllr
from sddkit.training.mldg import MLDG, MLDGConfig
from sddkit.training.strategy import subset

# --- the router's temperature -------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["token", "utterance"])
@pytest.mark.parametrize("top_k", [None, 2])
def test_router_gates_are_the_softmax_of_its_logits_over_the_temperature(level, top_k):
    # mutation: Router.route ignoring its temperature (logits not divided) passed every router and MoLEx test
    torch.manual_seed(0)
    router = Router(8, 4, level=level, temperature=0.25, top_k=top_k)
    with torch.no_grad():
        router.biases[0].copy_(torch.tensor([0.3, -0.2, 0.1, 0.0]))
    x = torch.randn(2, 5, 8)
    units = x.mean(dim=1, keepdim=True) if level == "utterance" else x
    weight, bias = router.logit_params()
    probs = torch.softmax((units @ weight.T + bias) / 0.25, dim=-1)  # by hand
    if top_k is None:
        gates = probs
    else:
        top, index = probs.topk(top_k, dim=-1)
        kept = torch.zeros_like(probs).scatter(-1, index, top)
        gates = kept / kept.sum(dim=-1, keepdim=True)
    with torch.no_grad():
        out = router(x)
    torch.testing.assert_close(out.probs, probs)
    torch.testing.assert_close(out.gates, gates)
    torch.testing.assert_close(out.gates.sum(-1), torch.ones(out.gates.shape[:-1]))
    # the temperature matters here: at temperature 1 the same router gives other probabilities
    assert (torch.softmax(units @ weight.T + bias, dim=-1) - probs).abs().max() > 0.05


# --- the classic gate's temperature -------------------------------------------------------------------


def test_classic_gate_weights_are_the_softmax_of_its_logits_over_the_temperature():
    # mutation: ClassicGate.forward ignoring its temperature passed every gate and mixture test (the one test
    # building a gate with temperature 0.5 checked only that its weights sum to one)
    torch.manual_seed(0)
    gates = get_registry("gate")
    plain = gates.build({"name": "classic", "temperature": 1.0}, num_experts=3, embedding_dims=[2, 2, 2]).eval()
    sharp = gates.build({"name": "classic", "temperature": 0.5}, num_experts=3, embedding_dims=[2, 2, 2]).eval()
    sharp.load_state_dict(plain.state_dict())
    wave = 0.1 * torch.randn(4, 8000)
    with torch.no_grad():
        w1, w_half = plain(wave, []), sharp(wave, [])
    # log w1 = z - logsumexp(z): dividing it by T and taking the softmax gives softmax(z / T)
    torch.testing.assert_close(w_half, torch.softmax(w1.log() / 0.5, dim=-1))
    torch.testing.assert_close(w_half.sum(-1), torch.ones(4))
    assert (w_half - w1).abs().max() > 1e-3  # the temperature changed the weights


# --- MLDG: the meta-test pass leaves the running statistics alone -------------------------------------


def test_mldg_meta_test_pass_does_not_move_batch_norm_statistics():
    # mutation: MLDG._meta_test not copying the buffers back after the meta-test pass passed every MLDG test
    # (only beta = 0, which skips that pass, compared the statistics). The module docstring promises running
    # statistics updated by the meta-train pass only, as in a pooled step on the meta-train rows.
    torch.manual_seed(0)
    model = _bn_detector()
    opt = _adamw(model)
    mldg = MLDG(MLDGConfig(beta=1.0, n_meta_test=1), seed=7)
    splitter = MLDG(MLDGConfig(), seed=7)  # the same split stream
    for step in range(3):
        batch = _batch(offset=12 * step)
        train_rows, test_rows = splitter.split(batch)
        assert len(test_rows) > 0
        # expected: the statistics one training-mode forward of the meta-train rows at θ leaves
        reference = copy.deepcopy(model).train()
        with torch.no_grad():
            reference(subset(batch, train_rows)["waveform"])
        before = {n: b.clone() for n, b in model.named_buffers()}
        result = mldg.step(batch, _ctx(model, opt))
        assert result.metrics["mldg/fallback"] == 0 and "meta_test/ce" in result.metrics
        expected = dict(reference.named_buffers())
        for name, b in model.named_buffers():
            assert torch.equal(b, expected[name]), (step, name)
        assert not torch.equal(before["backend.norm.running_mean"], expected["backend.norm.running_mean"])


# --- the prior-weighted Cllr away from prior 0.5 ------------------------------------------------------


def test_weighted_cllr_at_another_prior_matches_the_hand_computed_cost():
    # mutation: weighted_cllr weighting both classes by 1/2 whatever its prior passed every test (all checked
    # prior 0.5, where that is right)
    # prior 0.2: logit -log 4; posterior log-odds log 3 - log 4 (bona fide) and -log 3 - log 4 (spoof)
    expected = (0.2 * math.log1p(4 / 3) + 0.8 * math.log1p(1 / 12)) / math.log(2)
    assert weighted_cllr([math.log(3)], [-math.log(3)], 0.2) == pytest.approx(expected, rel=1e-12)
    # and the calibration fit (l2 = 0) minimises exactly this cost at its prior: any other (a, b) costs more
    rng = np.random.default_rng(0)
    bona, spoof = rng.normal(1.5, 1.0, 300), rng.normal(-1.0, 1.5, 200)
    scores, labels = np.r_[bona, spoof], np.r_[np.ones(300), np.zeros(200)]
    cal = fit_calibration(scores, labels, prior=0.1, l2=0.0)
    best = weighted_cllr(cal.apply(bona), cal.apply(spoof), 0.1)
    for da, db in [(0.05, 0.0), (-0.05, 0.0), (0.0, 0.1), (0.0, -0.1)]:
        worse = weighted_cllr((cal.a + da) * bona + cal.b + db, (cal.a + da) * spoof + cal.b + db, 0.1)
        assert worse > best


# --- the group-balanced sampler: the remainder goes to random groups ----------------------------------


def test_group_balanced_remainder_goes_to_a_different_group_from_epoch_to_epoch():
    # mutation: _split giving the remainder to the first parts always (the first group in sorted order got the
    # extra item every epoch, a standing bias) passed every sampler test; the docstring promises random parts
    groups = np.repeat(["a", "b", "c"], 10)
    sampler = GroupBalancedSampler(groups, num_samples=31, seed=0)  # 31 = 3 x 10 + 1
    extra = set()
    for epoch in range(30):  # P(a group never drawn in 30 fair epochs) ~ 3 (2/3)^30 < 1e-5
        sampler.set_epoch(epoch)
        order = sampler.global_order()
        counts = {g: int(np.sum(groups[order] == g)) for g in ("a", "b", "c")}
        assert sorted(counts.values()) == [10, 10, 11], counts
        extra.add(max(counts, key=counts.get))
    assert extra == {"a", "b", "c"}
