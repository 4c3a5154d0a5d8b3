"""Random streams of composed augmentations: what the output depends on."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.augment.pipeline import AugmentationPipeline

SR = 16000


def test_single_augmentation_is_a_function_of_the_generator_state():
    # A leaf augmentation draws everything from the generator it is given: restoring the state repeats it.
    pipe_leaf = AugmentationPipeline([{"name": "noise", "snr_db": [10, 10]}]).compose.augmentations[0]
    x = np.full(64, 0.1, dtype=np.float32)
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    first = pipe_leaf(x, SR, rng)
    rng.bit_generator.state = state
    np.testing.assert_array_equal(first, pipe_leaf(x, SR, rng))


@pytest.mark.xfail(
    strict=True,
    reason="Compose spawns its children from the generator's SeedSequence (and its spawn counter), not from "
    "its state; changing that changes every draw of the bundled model's recipe (reported, not fixed)",
)
def test_pipeline_is_a_function_of_the_generator_state():
    pipe = AugmentationPipeline([{"name": "noise", "snr_db": [10, 10]}])
    x = np.full(64, 0.1, dtype=np.float32)
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    first = pipe.apply(x, SR, rng)
    rng.bit_generator.state = state
    np.testing.assert_array_equal(first, pipe.apply(x, SR, rng))
