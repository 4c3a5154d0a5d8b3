"""Review of session 29's new code: the gmm back-end's logits keep float32 precision for half-precision features;
the ONNX parity check's relative tolerance does not pass an infinite logit."""

from __future__ import annotations

import numpy as np
import torch

from sddkit.backends.gmm import GMMBackend, GMMConfig
from sddkit.scoring.onnx_export import _abs_diff


def _fitted_gmm() -> GMMBackend:
    gen = torch.Generator().manual_seed(0)
    gmm = GMMBackend(8, GMMConfig(components=2, layout="frames", em_iterations=3), time_axis=1)
    spoof = torch.randn(400, 8, generator=gen)
    bonafide = torch.randn(400, 8, generator=gen) * 0.2 + 3.0
    gmm.fit((spoof, bonafide), seed=0)
    return gmm


def test_gmm_logits_of_bfloat16_features_are_float32() -> None:
    # an SSL encoder under bfloat16 autocast gives bfloat16 frames: the log-likelihood ratio (here near -100) was
    # rounded to bfloat16 (steps of 0.5), so distinct trials tied
    gmm = _fitted_gmm()
    gen = torch.Generator().manual_seed(1)
    features = (torch.randn(6, 20, 8, generator=gen) + torch.linspace(0, 0.05, 6)[:, None, None]).bfloat16()
    logits = gmm(features).logits
    assert logits.dtype == torch.float32
    reference = gmm(features.float()).logits  # the same (bfloat16-valued) frames in float32
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-5)
    scores = logits[:, 1] - logits[:, 0]
    assert scores.abs().min() > 10  # a ratio large enough for bfloat16 to round it coarsely
    assert len(set(scores.tolist())) == 6


def test_gmm_logits_keep_float64() -> None:
    gmm = _fitted_gmm()
    assert gmm(torch.randn(2, 5, 8, dtype=torch.float64)).logits.dtype == torch.float64


def test_onnx_parity_relative_tolerance_does_not_pass_an_infinite_logit() -> None:
    # the 1e-5 relative tolerance of the parity check is 1e-5 * inf = inf for an infinite PyTorch value: a graph giving
    # a finite logit, or the opposite infinity, there was taken as agreeing (difference 0)
    ref = np.array([np.inf, -np.inf, 2000.0, 1.0, np.nan])
    assert _abs_diff(ref[:1], np.array([5.0])) == np.inf
    assert _abs_diff(ref[1:2], np.array([np.inf])) == np.inf
    # what the tolerance is there for is kept: large finite values equal to 1e-5 of themselves, equal infinities, NaNs
    assert _abs_diff(ref, np.array([np.inf, -np.inf, 2000.001, 1.0, np.nan])) == 0.0
    assert _abs_diff(np.array([1.0]), np.array([1.5])) == 0.5
