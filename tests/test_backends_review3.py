"""Third review of the back-ends: small AASIST filter banks with frequency masking, the cosine head's
scale, and empty time axes."""

from __future__ import annotations

import pytest
import torch

from sddkit.backends.aasist import SincConv
from sddkit.errors import ConfigError
from sddkit.registry import get_registry

BACKENDS = get_registry("backend")


def test_freq_mask_works_with_fewer_filters_than_the_widest_band():
    # The band width was drawn from [0, 20) whatever the filter count, so with 12 filters a width of 13..19
    # made the start's range empty and torch.randint raised in about a third of the training steps.
    torch.manual_seed(0)
    sinc = SincConv(12, 17, freq_mask=True).train()
    widths = []
    for _ in range(60):
        filters = sinc._masked_filters()
        zeroed = (filters.abs().sum(dim=(1, 2)) == 0).nonzero().flatten().tolist()
        if zeroed:  # one contiguous band
            assert zeroed == list(range(zeroed[0], zeroed[0] + len(zeroed)))
        widths.append(len(zeroed))
    assert 0 < max(widths) <= 12  # the mask is applied (at most every filter, by design)
    model = BACKENDS.build(
        {"name": "aasist_l", "filts": [12, [1, 4], [4, 4], [4, 4], [4, 4]], "gat_dims": [4, 4], "freq_mask": True}
    ).train()
    for _ in range(20):
        assert model(0.1 * torch.randn(2, model.min_samples)).logits.shape == (2, 2)


def test_freq_mask_draws_as_published_with_the_published_filter_count():
    # the cap must not change the random draws (hence the masks) of the published 70-filter bank
    sinc = SincConv(70, 128, freq_mask=True).train()
    torch.manual_seed(3)
    masks = [(sinc._masked_filters().abs().sum(dim=(1, 2)) == 0).tolist() for _ in range(10)]
    torch.manual_seed(3)
    for mask in masks:
        width = int(torch.randint(0, 20, ()))
        start = int(torch.randint(0, 70 - width + 1, ()))
        assert mask == [start <= i < start + width for i in range(70)]


@pytest.mark.parametrize("scale", [float("inf"), -float("inf")])
def test_cosine_head_scale_must_be_finite(scale):
    # an infinite scale was accepted and gave infinite logits, hence NaN scores and losses (inf - inf)
    with pytest.raises(ConfigError, match="head_scale"):
        BACKENDS.build({"name": "linear", "head": "cosine", "head_scale": scale}, in_dim=4)


def test_empty_time_axis_is_refused_clearly():
    linear = BACKENDS.build("linear", in_dim=8)
    with pytest.raises(ValueError, match="at least 1 frame"):  # was NaN logits without a word
        linear(torch.randn(2, 0, 8))
    resnet = BACKENDS.build({"name": "resnet18", "width": 4}, in_dim=8).eval()
    with pytest.raises(ValueError, match="at least 1 frame"):  # was a conv kernel-size error
        resnet(torch.randn(2, 8, 0))
    assert resnet(torch.randn(2, 8, 1)).logits.shape == (2, 2)  # one frame is enough (padded convolutions)
