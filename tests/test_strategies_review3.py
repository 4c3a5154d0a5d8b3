"""Third review of the training strategies: MLDG's meta-test gradient under gradient checkpointing."""

from __future__ import annotations

import copy

import torch
from test_mldg import _batch, _ctx
from test_train_support import (
    TinyBackend,
    TinyBackendConfig,
    TinyFrontend,
    TinyFrontendConfig,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from sddkit.detectors.detector import Detector
from sddkit.detectors.outputs import FrontendOutput
from sddkit.training.mldg import MLDG, MLDGConfig


class CheckpointedFrontend(TinyFrontend):
    """TinyFrontend whose trainable adapter is recomputed in backward (non-reentrant checkpointing, as the
    encoders' ``gradient_checkpointing`` option sets up), or not."""

    def __init__(self, cfg: TinyFrontendConfig, *, checkpointed: bool):
        super().__init__(cfg)
        self.checkpointed = checkpointed

    def _adapt(self, h: Tensor) -> Tensor:
        return h + torch.tanh(self.adapter(h))

    def forward(self, waveform: Tensor) -> FrontendOutput:
        b, t = waveform.shape
        h = torch.tanh(self.encoder(waveform[:, : t - t % 16].reshape(b, -1, 16)))
        h = checkpoint(self._adapt, h, use_reentrant=False) if self.checkpointed else self._adapt(h)
        return FrontendOutput(features=h)


def _detector(checkpointed: bool) -> Detector:
    torch.manual_seed(4)
    cfg = TinyFrontendConfig()
    frontend = CheckpointedFrontend(cfg, checkpointed=checkpointed)
    return Detector(frontend=frontend, backend=TinyBackend(TinyBackendConfig(batch_norm=True), cfg.dim))


def test_mldg_meta_test_gradient_is_the_same_with_gradient_checkpointing():
    # the meta-test forward ran on swapped-in adapted tensors (torch.func.functional_call), but checkpointing
    # recomputes the forward during backward, after the swap was undone: at θ, not θ'. The adapter's meta-test
    # gradient then silently mixed the two points
    plain, checkpointed = _detector(checkpointed=False), _detector(checkpointed=True)
    checkpointed.load_state_dict(plain.state_dict())
    batch = _batch(n=12)
    grads, states = [], []
    for model in (plain, checkpointed):
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
        result = MLDG(MLDGConfig(beta=1.0, inner_lr=0.5), seed=1).step(batch, _ctx(model, opt, clip=None))
        assert float(result.metrics["mldg/fallback"]) == 0.0
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        states.append(copy.deepcopy(model.state_dict()))
    assert set(grads[0]) == set(grads[1]) and "frontend.adapter.weight" in grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7, msg=name)
    # θ and the batch-norm statistics come back as they were (lr 0): only the meta-train pass moved the statistics
    for name in states[0]:
        torch.testing.assert_close(states[1][name], states[0][name], rtol=0, atol=0, msg=name)
