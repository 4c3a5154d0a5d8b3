"""Review of the review-6 changes (diffrev6): what the new checks say to a user whose own component they refuse."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sddkit.backends.linear import LinearHeadConfig, build_linear
from sddkit.detectors.detector import feature_layout
from sddkit.errors import ConfigError


class _OwnSpectral(nn.Module):
    """A front-end of the user's own giving (B, F, T) features without declaring its layout."""

    output_dim = 20

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unfold(-1, 40, 20).transpose(1, 2)[:, :20]


def test_linear_layout_refusal_says_how_an_own_spectral_frontend_declares_its_layout():
    """An undeclared front-end is taken to give frames, so `layout: spectral` (the way such a spectral front-end
    worked with the linear head) is now refused at build; the refusal advised only `auto` or `frames`, both wrong
    for it. It names the class attribute that declares the layout, as the other back-ends' refusals do."""
    frontend = _OwnSpectral()
    assert feature_layout(frontend) == "frames"
    with pytest.raises(ConfigError, match=r"class attribute feature_layout = 'spectral'"):
        build_linear(LinearHeadConfig(layout="spectral"), in_dim=20, feature_layout=feature_layout(frontend))

    class Declared(_OwnSpectral):
        feature_layout = "spectral"

    head = build_linear(LinearHeadConfig(layout="spectral"), in_dim=20, feature_layout=feature_layout(Declared()))
    features = Declared()(torch.randn(2, 1000))
    assert features.shape[1] == 20 and head(features).logits.shape == (2, 2)


_PRELOAD_PEAK = r"""
import sys

import numpy as np

import sddkit.data.dataset as ds
from sddkit.data.table import UtteranceTable

n = 1500
sizes = np.random.default_rng(0).integers(16000, 13 * 16000, n)  # 1 to 13 s at 16 kHz, as ASVspoof 2019 LA's files
ds.load_table_audio = lambda path, utt_id, **_: np.full(sizes[int(utt_id[1:])], 0.25, dtype=np.float32)
ds._file_stat = lambda path: (0, 0)
table = UtteranceTable.from_records([{"utt_id": f"u{i}", "label": "spoof", "path": f"/x/{i}.wav"} for i in range(n)])


def rss(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM, the peak resident size, to the current one
    f.write("5")
before = rss("VmRSS:")
cache = ds.CachedWaveforms.from_table(table, num_threads=int(sys.argv[1]))
assert cache.buffer.shape == (sizes.sum(),) and float(cache.buffer[-1]) == 0.25
assert [len(cache.get(f"u{i}")) for i in (0, n // 2, n - 1)] == [sizes[0], sizes[n // 2], sizes[n - 1]]
print((rss("VmHWM:") - before) / (sizes.sum() * 4))
"""


@pytest.mark.parametrize("threads", [0, 2])
def test_preloading_files_of_ordinary_length_holds_the_corpus_about_once(tmp_path, threads):
    """The preload fix freed each decoded array after copying it into the buffer, but only once every file had been
    decoded: a freed array of a few hundred kB stays with the process (the C library keeps it for reuse), so with
    files of ordinary length the peak was still twice the corpus (its test used 50 MB files, which are mapped and
    given back one by one). Files are now packed into large blocks as they are decoded."""
    import subprocess
    import sys

    if not __import__("os").path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux /proc to measure the peak resident size")
    script = tmp_path / "peak.py"
    script.write_text(_PRELOAD_PEAK)
    run = subprocess.run([sys.executable, str(script), str(threads)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    ratio = float(run.stdout.strip().splitlines()[-1])
    assert 0.9 < ratio < 1.4, ratio  # the corpus, a block and the decoding threads' memory; it was 2.0


def test_compare_headline_does_not_call_a_trial_bootstrap_a_cluster_one(tmp_path):
    """With fewer than 2 clusters in a class, sdd compare resamples the trials one by one (and gives no verdict),
    but its headline still read "paired bootstrap over speaker clusters (1 bona fide, 1 spoof)"."""
    from test_compare_cluster import _protocol, _scores

    from sddkit.data.protocols import read_protocol
    from sddkit.evaluation.compare import compare_scores
    from sddkit.evaluation.scores import read_scores

    table = read_protocol(_protocol(tmp_path, speakers=1))
    base, system = read_scores(_scores(tmp_path, "a", 0, 0.0)), read_scores(_scores(tmp_path, "b", 1, 3.0))
    c = compare_scores(table, [base], [system], n_bootstrap=100, cluster_by="speaker")
    headline = next(line for line in c.summary().splitlines() if "paired bootstrap" in line)
    assert "over speaker clusters" not in headline
    assert "paired bootstrap of trials, not of speaker clusters (1 bona fide, 1 spoof: too few)" in headline
    usable = compare_scores(read_protocol(_protocol(tmp_path)), [base], [system], n_bootstrap=100, cluster_by="speaker")
    assert "paired bootstrap over speaker clusters (8 bona fide, 8 spoof)" in usable.summary()
