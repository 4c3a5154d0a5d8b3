"""Review 8 of the training strategies: SAM's two passes share numpy's and Python's draws too (transformers'
SpecAugment masks), and a failed second pass never leaves the model at θ + e."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from test_sam import _batch, _ctx, _trainable
from test_train_support import (
    TinyBackend,
    TinyBackendConfig,
    TinyFrontend,
    TinyFrontendConfig,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)
from torch import Tensor
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

from sddkit.detectors.detector import Detector
from sddkit.detectors.outputs import FrontendOutput
from sddkit.training.erm import ERM
from sddkit.training.sam import SAM, SAMConfig


class SpecAugmentFrontend(TinyFrontend):
    """TinyFrontend whose frames are time-masked in training as transformers' wav2vec2 SpecAugment does
    (``encoder.spec_augment: true``): with ``_compute_mask_indices``, which draws from numpy's global generator.
    Records each forward's mask and a draw from Python's generator."""

    def __init__(self, cfg: TinyFrontendConfig):
        super().__init__(cfg)
        self.masks: list[np.ndarray] = []
        self.python_draws: list[float] = []

    def forward(self, waveform: Tensor) -> FrontendOutput:
        out = super().forward(waveform)
        if self.training:
            mask = _compute_mask_indices(tuple(out.features.shape[:2]), mask_prob=0.3, mask_length=2, min_masks=1)
            self.masks.append(mask)
            self.python_draws.append(random.random())
            out.features = out.features.masked_fill(torch.from_numpy(mask)[..., None], 0.0)
        return out


def _masked_detector() -> Detector:
    cfg = TinyFrontendConfig(aux_weight=0.01)
    return Detector(frontend=SpecAugmentFrontend(cfg), backend=TinyBackend(TinyBackendConfig(batch_norm=True), cfg.dim))


def test_sam_passes_share_numpy_draws_and_rho_zero_is_erm_with_spec_augment():
    # numpy's generator was not forked: the perturbed pass drew other SpecAugment masks than the first (g' was the
    # gradient of another loss), and with rho 0 the step applied the second mask's gradient: not the ERM step
    torch.manual_seed(0)
    model_s = _masked_detector()
    model_e = copy.deepcopy(model_s)
    opt_s = torch.optim.AdamW(_trainable(model_s), lr=1e-2)
    opt_e = torch.optim.AdamW(_trainable(model_e), lr=1e-2)
    after = []
    for strategy, model, opt in ((SAM(SAMConfig(rho=0.0)), model_s, opt_s), (ERM(), model_e, opt_e)):
        np.random.seed(3)
        random.seed(3)
        for step in range(3):
            strategy.step(_batch(offset=12 * step), _ctx(model, opt, clip=1.0))
        after.append((np.random.rand(), random.random()))  # the generators advanced once per step, as in ERM
    assert after[0] == after[1]
    for (name, a), b in zip(model_s.state_dict().items(), model_e.state_dict().values()):
        assert torch.equal(a, b), name
    # and with rho > 0 the two passes of a step mask the very same frames
    front = model_s.frontend
    front.masks.clear()
    front.python_draws.clear()
    SAM(SAMConfig(rho=0.5)).step(_batch(offset=36), _ctx(model_s, opt_s))
    assert len(front.masks) == 2 and np.array_equal(front.masks[0], front.masks[1])
    assert front.python_draws[0] == front.python_draws[1]


class FailingSecondPass(TinyFrontend):
    """Raises in the forward after ``fail_after`` calls (e.g. out of memory at the perturbed point)."""

    def __init__(self, cfg: TinyFrontendConfig, fail_after: int):
        super().__init__(cfg)
        self.calls, self.fail_after = 0, fail_after

    def forward(self, waveform: Tensor) -> FrontendOutput:
        self.calls += 1
        if self.calls > self.fail_after:
            raise RuntimeError("CUDA out of memory (simulated)")
        return super().forward(waveform)


def test_a_failed_second_pass_leaves_the_weights_at_theta_not_theta_plus_e():
    torch.manual_seed(1)
    cfg = TinyFrontendConfig()
    model = Detector(frontend=FailingSecondPass(cfg, fail_after=1), backend=TinyBackend(TinyBackendConfig(True), 8))
    erm_model = copy.deepcopy(model)
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(_trainable(model), lr=0.1)
    batch = _batch()
    with pytest.raises(RuntimeError, match="out of memory"):
        SAM(SAMConfig(rho=0.5)).step(batch, _ctx(model, opt))
    assert model.frontend.calls == 2  # it failed in the perturbed pass
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name  # θ, not θ + e (and no optimiser step)
    # the running statistics hold the first pass's update only, as one ERM forward leaves them
    erm_model.frontend.fail_after = 10
    ERM().step(batch, _ctx(erm_model, torch.optim.SGD(_trainable(erm_model), lr=0.0)))
    for (name, a), b in zip(model.named_buffers(), erm_model.buffers()):
        assert torch.equal(a, b), name
