"""launder_chain: a partial bitrate_kbps mapping changes only the codecs it names."""

from __future__ import annotations

import numpy as np

from sddkit.augment.chains import LaunderChain, LaunderChainConfig, _default_launder_bitrates


def test_partial_bitrate_mapping_keeps_the_chain_defaults_of_other_codecs():
    cfg = LaunderChainConfig(bitrate_kbps={"mp3": (32.0, 32.0)})
    defaults = _default_launder_bitrates()
    assert cfg.bitrate_kbps["mp3"] == (32.0, 32.0)
    for codec in ("aac", "opus", "amrnb"):
        # before: these fell back to each codec's own default rate (aac 64-ish, opus 32-ish, fixed)
        assert cfg.bitrate_kbps[codec] == defaults[codec]


def test_chain_draws_its_rate_from_the_merged_mapping(monkeypatch):
    import sddkit.augment.chains as chains

    seen: list[tuple[str, float | None]] = []

    def fake_roundtrip(y, sr, codec, kbps, fast=False):
        seen.append((codec, kbps))
        return y

    monkeypatch.setattr(chains, "codec_roundtrip", fake_roundtrip)
    aug = LaunderChain(LaunderChainConfig(codecs=["opus"], bitrate_kbps={"mp3": (32.0, 32.0)}))
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    for seed in range(5):
        aug.apply(x, 16000, np.random.default_rng(seed))
    lo, hi = _default_launder_bitrates()["opus"]
    assert all(codec == "opus" and kbps is not None and lo <= kbps <= hi for codec, kbps in seen)
