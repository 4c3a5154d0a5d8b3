from __future__ import annotations

import pytest
import torch

from sddkit.backends.lcnn import MaxFeatureMap
from sddkit.backends.ssl_aasist import SSLAASISTConfig, SSLAASISTHead
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.errors import ConfigError
from sddkit.registry import get_registry

BACKENDS = get_registry("backend")

# every registered back-end with the input it takes at its defaults: (in_dim, example features)
DEFAULT_INPUTS = {
    "aasist": (None, (2, 6000)),
    "aasist_l": (None, (2, 6000)),
    "ssl_aasist": (48, (2, 30, 48)),
    "lcnn": (60, (2, 60, 40)),
    "resnet18": (60, (2, 60, 20)),
    "resnet34": (60, (2, 60, 20)),
    "linear": (32, (2, 25, 32)),
    "gmm": (60, (2, 60, 40)),
}


def test_every_backend_is_covered():
    assert set(BACKENDS.names()) == set(DEFAULT_INPUTS)


@pytest.mark.parametrize("name", sorted(DEFAULT_INPUTS))
def test_every_backend_builds_from_the_registry_with_defaults(name):
    in_dim, shape = DEFAULT_INPUTS[name]
    # gmm reads frames of either layout, so it needs the one a Detector passes from its front-end
    context = {"feature_layout": "spectral"} if name == "gmm" else {}
    model = BACKENDS.build(name, in_dim=in_dim, **context).eval()
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.logits.shape == (2, 2) and out.embedding.shape == (2, model.embedding_dim)
    assert torch.isfinite(out.logits).all()
    assert BACKENDS.entries()[BACKENDS.names().index(name)].description  # listed by `sdd list`


@pytest.mark.parametrize("name", ["ssl_aasist", "lcnn", "resnet18", "linear"])
def test_feature_backends_refuse_the_raw_waveform(name):
    with pytest.raises(ConfigError, match="raw waveform|spectral features"):
        BACKENDS.build(name, in_dim=None)


def _assert_all_parameters_get_gradients(model: torch.nn.Module, features: torch.Tensor) -> None:
    model.train()
    out = model(features)
    (out.logits.sum() + out.embedding.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_ssl_aasist_head_size_and_shapes():
    head = BACKENDS.build("ssl_aasist", in_dim=1024)
    # 447,242 = the reference head's non-SSL modules, the 1024 -> 128 projection (131,200) included
    assert sum(p.numel() for p in head.parameters() if p.requires_grad) == 447_242
    assert head.proj.weight.shape == (128, 1024)
    assert head.graph.spectral_pos.shape == (1, 42, 64)  # 128 projected dims pooled by 3
    small = BACKENDS.build("ssl_aasist", in_dim=40).eval()
    with torch.no_grad():
        for frames in (3, 50, 201):
            assert small(torch.randn(2, frames, 40)).logits.shape == (2, 2)
    with pytest.raises(ValueError, match="at least 3 frames"):
        small(torch.randn(1, 2, 40))
    with pytest.raises(ValueError, match=r"\(B, N, 40\)"):
        small(torch.randn(1, 40, 30))
    _assert_all_parameters_get_gradients(small, torch.randn(3, 30, 40))


def test_ssl_aasist_compat_mode_changes_only_the_residual_pre_activation():
    compat = SSLAASISTHead(16, SSLAASISTConfig(reference_compat=True))
    fixed = SSLAASISTHead(16, SSLAASISTConfig())
    fixed.load_state_dict(compat.state_dict())
    for m in (compat, fixed):
        m.encoder[1].bn1.running_mean.fill_(2.0)
        m.eval()
    x = torch.randn(2, 24, 16)
    with torch.no_grad():
        assert not torch.allclose(compat(x).logits, fixed(x).logits, atol=1e-5)
        before = compat(x).logits
        compat.encoder[1].bn1.running_mean.fill_(-3.0)
        assert torch.equal(compat(x).logits, before)


def test_max_feature_map_by_hand():
    x = torch.tensor([[[[1.0]], [[5.0]], [[4.0]], [[2.0]]]])  # (1, 4, 1, 1): halves (1, 5) and (4, 2)
    assert MaxFeatureMap()(x).flatten().tolist() == [4.0, 5.0]


def test_lcnn_shapes_lengths_and_gradients():
    model = BACKENDS.build("lcnn", in_dim=60)
    assert model.embedding_dim == 32 * (60 // 16)  # baseline LFCC: 96
    model.eval()
    with torch.no_grad():
        for frames in (16, 37, 101):
            out = model(torch.randn(2, 60, frames))
            assert out.logits.shape == (2, 2) and out.embedding.shape == (2, 96)
    with pytest.raises(ValueError, match="at least 16 frames"):
        model(torch.randn(1, 60, 15))
    with pytest.raises(ValueError, match=r"\(B, 60, T\)"):
        model(torch.randn(1, 61, 40))
    _assert_all_parameters_get_gradients(model, torch.randn(2, 60, 40))
    plain = BACKENDS.build({"name": "lcnn", "channels": 16, "lstm_layers": 0, "dropout": 0.0}, in_dim=80)
    assert plain.embedding_dim == 16 * 5 and not any("lstm" in n for n, _ in plain.named_parameters())
    _assert_all_parameters_get_gradients(plain, torch.randn(2, 80, 33))
    with pytest.raises(ConfigError, match="even"):
        BACKENDS.parse({"name": "lcnn", "channels": 15})


def test_resnet_variants_shapes_and_gradients():
    r18 = BACKENDS.build({"name": "resnet18", "width": 8, "dropout": 0.3}, in_dim=40)
    r34 = BACKENDS.build({"name": "resnet34", "width": 8}, in_dim=40)
    assert type(r18) is type(r34)
    assert [len(s) for s in r18.stages] == [2, 2, 2, 2] and [len(s) for s in r34.stages] == [3, 4, 6, 3]
    assert r18.embedding_dim == r34.embedding_dim == 64
    r18.eval()
    with torch.no_grad():
        for frames in (1, 9, 64):  # adaptive pooling: any number of frames
            out = r18(torch.randn(2, 40, frames))
            assert out.logits.shape == (2, 2) and out.embedding.shape == (2, 64)
    _assert_all_parameters_get_gradients(r34, torch.randn(2, 40, 12))
    assert BACKENDS.build("resnet34", in_dim=60).embedding_dim == 256  # default width 32 -> 8 * 32


def test_linear_head_pools_mean_and_std_over_time():
    head = BACKENDS.build("linear", in_dim=3).eval()
    frames = torch.tensor([[[1.0, 2.0, 0.0], [3.0, 2.0, 0.0], [5.0, 2.0, 0.0], [7.0, 2.0, 0.0]]])  # (1, N=4, D=3)
    emb = head(frames).embedding
    expected_std = 5.0**0.5  # population std of (1, 3, 5, 7)
    torch.testing.assert_close(emb[0, :3], torch.tensor([4.0, 2.0, 0.0]))
    torch.testing.assert_close(emb[0, 3:], torch.tensor([expected_std, 1e-4, 1e-4]))  # floor: sqrt(1e-8)
    spectral = frames[:, :2].transpose(1, 2)  # (1, F=3, T=2)
    torch.testing.assert_close(head(spectral).embedding[0, :3], torch.tensor([2.0, 2.0, 0.0]))
    logits = head(frames).logits
    torch.testing.assert_close(logits, head.classifier(emb))
    with pytest.raises(ValueError, match="ambiguous"):
        head(torch.randn(1, 3, 3))
    square = BACKENDS.build({"name": "linear", "layout": "spectral"}, in_dim=3)
    x = torch.randn(1, 3, 3)
    torch.testing.assert_close(square(x).embedding[0, :3], x.mean(dim=2)[0])
    with pytest.raises(ValueError, match="no axis of size 3"):
        head(torch.randn(1, 4, 5))
    _assert_all_parameters_get_gradients(BACKENDS.build("linear", in_dim=8), torch.randn(2, 8, 1))


def test_backends_compose_with_front_ends_through_detector_config():
    from sddkit.config import from_dict

    cfg = from_dict(DetectorConfig, {"frontend": {"name": "lfcc"}, "backend": {"name": "lcnn", "lstm_layers": 1}})
    detector = build_detector(cfg).eval()
    with torch.no_grad():
        out = detector(torch.randn(2, 8000))
    assert out.logits.shape == (2, 2) and out.score.shape == (2,)
