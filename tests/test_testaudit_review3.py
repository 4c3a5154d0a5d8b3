"""Behaviour the suite did not pin (found by breaking the code and seeing no test fail)."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.augment.pipeline import build_augmentation

SR = 16000


def _voice(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    phase = 2 * np.pi * np.cumsum(160 + 30 * np.sin(2 * np.pi * 1.1 * t)) / SR
    x = sum(np.sin(k * phase) * np.exp(-k / 6) for k in range(1, 16))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t) ** 2
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def _added_noise(
    name: str, key: str, snr_a: float, snr_b: float, x: np.ndarray, **spec
) -> tuple[np.ndarray, np.ndarray]:
    """(clean part, noise) of the chain's output at ``snr_a``, from two runs on the same draws.

    The chains end in ``y + k(snr) * n`` with ``k`` proportional to ``10 ** (-snr / 20)``: the two
    outputs differ by ``k_a * n * (1 - 10 ** ((snr_a - snr_b) / 20))``, which gives ``k_a * n``.
    """
    outs = []
    for snr in (snr_a, snr_b):
        aug = build_augmentation({"name": name, key: [snr, snr], **spec})
        outs.append(aug(x, SR, np.random.default_rng(11)).astype(np.float64))
    noise = (outs[0] - outs[1]) / (1.0 - 10.0 ** ((snr_a - snr_b) / 20.0))
    return outs[0] - noise, noise


def _snr_db(clean: np.ndarray, noise: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(clean**2) / np.mean(noise**2)))


def _band_density_db(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(10 * np.log10(spec[(f >= lo) & (f < hi)].mean()))


@pytest.mark.parametrize(("name", "key"), [("car_cabin", "snr_db"), ("rerecord", "noise_snr_db")])
@pytest.mark.parametrize("snr", [-3.0, 15.0])
def test_chain_noise_is_added_at_the_configured_snr(name, key, snr):
    # only "the output differs from the input" was checked: an inverted SNR passed every test
    clean, noise = _added_noise(name, key, snr, snr - 10.0, _voice())
    assert _snr_db(clean, noise) == pytest.approx(snr, abs=0.1)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_rerecord_self_noise_has_the_configured_spectral_slope(exponent):
    # PSD ~ 1/f^a: the mean density at 100-500 Hz over that at 4-7 kHz follows from the law (0 dB white,
    # ~13 dB pink, ~27.5 dB brown); a chain that ignored noise_exponent passed every test
    _, noise = _added_noise("rerecord", "noise_snr_db", 10.0, 0.0, _voice(), noise_exponent=[exponent, exponent])
    low, high = np.arange(100.0, 500.0), np.arange(4000.0, 7000.0)
    expected = 10 * np.log10(np.mean(low**-exponent) / np.mean(high**-exponent))
    low_over_high = _band_density_db(noise, 100, 500) - _band_density_db(noise, 4000, 7000)
    assert low_over_high == pytest.approx(expected, abs=2.0)


# --- the service stops reading a body without Content-Length at its cap ------------------------------


def test_service_stops_reading_a_chunked_upload_at_its_cap(tmp_path):
    # test_service's chunked-upload check could not fail on this: the TestClient reads the whole body
    # (4 MB here) before the app sees any of it, so a server that buffered everything passed too
    import asyncio

    from fastapi.testclient import TestClient
    from scoring_support import save_tiny_lcnn, score_post_scope

    from sddkit.service.app import create_app

    app = create_app(save_tiny_lcnn(tmp_path / "lcnn"), max_upload_mb=0.25, max_duration_s=2.0)
    boundary = "sddkitboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    parts = [head] + [b"\0" * 65536] * 64 + [f"\r\n--{boundary}--\r\n".encode()]
    pulled, sent = [], []

    async def receive():
        if len(pulled) < len(parts):
            pulled.append(parts[len(pulled)])
            return {"type": "http.request", "body": pulled[-1], "more_body": len(pulled) < len(parts)}
        await asyncio.sleep(3600)  # the body is over: nothing until the client goes

    async def send(message):
        sent.append(message)

    scope = score_post_scope(boundary)
    with TestClient(app):  # runs the lifespan: the detector is loaded
        asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    # refused within one chunk of the cap (0.25 MB + the envelope), not after the whole 4 MB
    assert sum(map(len, pulled)) < 0.25 * 1024 * 1024 + 2 * 65536 + len(head)


# --- SpecAugment: widths and the time cap ------------------------------------------------------------


def test_spec_augment_time_masks_respect_their_width_range_and_the_time_cap():
    # no test read back a mask's width: a cap of max_time_fraction that was never applied passed them all
    import torch

    from sddkit.features.specaugment import SpecAugment, SpecAugmentConfig

    feats = torch.ones(64, 10, 100)

    def masked_frames(**cfg) -> torch.Tensor:
        aug = SpecAugment(SpecAugmentConfig(freq_width=(0, 0), num_freq_masks=0, num_time_masks=1, **cfg))
        out = aug(feats, generator=torch.Generator().manual_seed(0))
        return (out[:, 0, :] == 0).sum(dim=-1)  # (B,) frames masked per item

    capped = masked_frames(time_width=(50, 60), max_time_fraction=0.2)  # cap int(0.2 * 100) = 20 frames
    assert torch.all(capped == 20)
    free = masked_frames(time_width=(3, 7), max_time_fraction=1.0)
    assert free.min() == 3 and free.max() == 7  # inclusive range, both ends drawn over 64 items
