"""Inputs the Python API's score() refused only with numpy's or torch's own errors, or scored wrongly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sddkit.errors import AudioError
from sddkit.scoring.api import _as_numpy


def test_a_masked_array_with_masked_samples_is_refused_not_scored_whole():
    x = np.ma.masked_array(np.sin(np.arange(16000) / 5.0), mask=np.zeros(16000, dtype=bool))
    assert _as_numpy(x).shape == (16000,)  # nothing masked: its samples
    x[100:200] = np.ma.masked
    with pytest.raises(AudioError, match=r"masks 100 sample\(s\), which would be scored as audio: fill them"):
        _as_numpy(x)


def test_sparse_and_meta_tensors_get_a_clear_error():
    dense = torch.sin(torch.arange(16000) / 5.0)
    with pytest.raises(AudioError, match="got a torch.sparse_coo tensor: pass a dense tensor"):
        _as_numpy(dense.to_sparse())
    with pytest.raises(AudioError, match=r"got a meta tensor \(no data\)"):
        _as_numpy(torch.empty(16000, device="meta"))
    assert np.allclose(_as_numpy(dense), dense.numpy())
