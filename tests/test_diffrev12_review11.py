"""Review 11 of this session's changes (diffrev12): a recipe printed as JSON read back (sampler options)."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.config import from_dict
from sddkit.data.samplers import DomainBatchSampler
from sddkit.training.recipe import DataConfig


# --- a recipe printed as JSON (`Infinity`) read back: sampler options ---------------------------------------------
def test_a_sampler_option_written_infinity_reaches_the_sampler_as_the_number_it_was_checked_as():
    # `sdd train --print-config` writes a YAML .inf as Infinity; the recipe check read it as a number (this session's
    # change) but left the text in sampler_options, and the sampler compared a string with numbers: a TypeError
    data = from_dict(DataConfig, {"sampler": "domain_batch", "sampler_options": {"bonafide_fraction": "Infinity"}})
    assert data.sampler_options == {"bonafide_fraction": float("inf")}
    domains = np.array(["bonafide"] * 8 + [f"A{i % 2}" for i in range(16)])
    labels = np.array([1] * 8 + [0] * 16)
    with pytest.raises(ValueError, match=r"bonafide_fraction must be in \[0, 1\), got inf"):
        DomainBatchSampler(domains, labels, batch_size=8, seed=0, **data.sampler_options)
