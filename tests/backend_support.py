"""Shared set-up of the back-end tests: batch norms holding statistics of their own."""

from __future__ import annotations

import torch
from torch import nn


def with_batch_norm_statistics(model: nn.Module) -> nn.Module:
    """``model`` with every batch norm given random running statistics and, where it has them, affine parameters, as
    a trained model has: with the initial ones (mean 0, variance 1, scale 1, shift 0) eval mode and a norm folded into
    its convolution are nearly the identity, and a test of either would prove little."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.3, 0.3)
    return model
