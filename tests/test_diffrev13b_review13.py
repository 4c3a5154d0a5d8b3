"""Review of the session's later change (13b): ``MaxFeatureMap(channels)`` cut its halves at the count it was built
with, so an input of another channel count (a custom back-end's) gave a wrong result without a word; the protocol
benchmark did not say which sddkit its reads measured."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from script_support import load_script

from sddkit.backends.lcnn import MaxFeatureMap

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("channels", [10, 6, 9])
def test_max_feature_map_with_a_channel_count_refuses_an_input_of_another(channels: int) -> None:
    # 10 channels: narrow(1, 4, 4) left channels 8 and 9 out, a (B, 4, ...) result; 6: narrow's own error
    x = torch.randn(2, channels, 3, 5)
    with pytest.raises(ValueError, match=r"MaxFeatureMap\(4\) takes 8 channels, got " + str(channels)):
        MaxFeatureMap(4)(x)
    if channels % 2 == 0:  # without a count, the halves are the input's, as before
        assert MaxFeatureMap()(x).shape == (2, channels // 2, 3, 5)


@pytest.mark.parametrize("channels", [0, -2])
def test_max_feature_map_refuses_a_count_that_is_not_positive(channels: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        MaxFeatureMap(channels)


def test_max_feature_map_with_its_count_traces_without_a_warning_and_keeps_its_values() -> None:
    mfm = MaxFeatureMap(4)
    x = torch.randn(3, 8, 5, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # the check would make the trace input-specific
        traced = torch.jit.trace(mfm, x)
    y = torch.randn(2, 8, 4, 6)
    assert torch.equal(traced(y), MaxFeatureMap()(y))
    with pytest.raises(ValueError, match="takes 8 channels, got 10"):  # traced on an input of another count
        torch.jit.trace(mfm, torch.randn(3, 10, 5, 7))


def test_bench_protocols_names_the_sddkit_its_reads_imported(tmp_path, capsys) -> None:
    # without --src the reads import whichever sddkit the environment installed, which need not be this checkout
    # (a clone using another checkout's editable install): the header said only "the installed package"
    bench = load_script("benchmarks/bench_protocols.py")
    assert bench.main(["--lines", "50", "--repeats", "1", "--src", str(REPO)]) == 0
    out = capsys.readouterr().out
    assert f"sddkit read from {REPO / 'src' / 'sddkit'}\n" in out
    assert "| 1 |" in out and "| 50 |" in out  # the one read's row, all 50 lines read
