"""Cross-area review 5 of the day's changes: defects found where one fix met another area's code."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sddkit.detectors.detector import feature_layout
from sddkit.detectors.outputs import FrontendOutput
from sddkit.errors import ConfigError
from sddkit.registry import get_registry


class MyCQT(nn.Module):
    """A front-end of a user's own (registered as the architecture notes allow) that gives spectral features
    (B, F, T) without subclassing SpectralFrontend: feature_layout() takes it for encoder frames."""

    output_dim = 64

    def forward(self, waveform):
        b, t = waveform.shape
        return FrontendOutput(features=waveform.new_zeros(b, self.output_dim, 1 + t // 160))


class MyDeclaredCQT(MyCQT):
    feature_layout = "spectral"


@pytest.mark.parametrize("backend", ["lcnn", "resnet18"])
def test_refusing_an_undeclared_front_end_of_ones_own_says_how_to_declare_its_layout(backend):
    """The layout check made lcnn/resnet refuse such a front-end (it built before) with 'use a logmel, lfcc or
    logspec front-end', which a user with a spectral front-end of their own cannot act on."""
    backends = get_registry("backend")
    with pytest.raises(ConfigError, match=r"class attribute feature_layout = 'spectral'"):
        backends.build(backend, in_dim=MyCQT.output_dim, feature_layout=feature_layout(MyCQT()))
    # declared as the message says, it builds and runs
    head = backends.build(backend, in_dim=64, feature_layout=feature_layout(MyDeclaredCQT()))
    front = MyDeclaredCQT()
    assert head(front(torch.zeros(1, 16000)).features).logits.shape == (1, 2)
