"""A back-end is built only on the feature layout it reads: an encoder front-end under an LCNN or ResNet, or a
spectral front-end under SSL-AASIST, built and then failed at the first forward (the trainer's crop-length check
called it a crop too short)."""

from __future__ import annotations

import pytest

from sddkit.cli.main import main
from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.errors import ConfigError

SSL = {"name": "ssl", "encoder": {"name": "wav2vec2_tiny"}}


def _build(frontend, backend):
    return build_detector(from_dict(DetectorConfig, {"frontend": frontend, "backend": backend}))


@pytest.mark.parametrize("backend", ["lcnn", "resnet18", "resnet34"])
def test_spectral_backends_refuse_encoder_frames(backend):
    with pytest.raises(ConfigError, match=rf"backend '{backend}' reads spectral features .* encoder frames"):
        _build(SSL, backend)


def test_ssl_aasist_refuses_spectral_features():
    with pytest.raises(ConfigError, match=r"backend 'ssl_aasist' reads encoder frames .* spectral features"):
        _build("logmel", "ssl_aasist")


@pytest.mark.parametrize(
    ("frontend", "backend"), [("logmel", "lcnn"), ("lfcc", "resnet18"), (SSL, "ssl_aasist"), (SSL, "linear")]
)
def test_matching_pairs_build(frontend, backend):
    assert build_detector(from_dict(DetectorConfig, {"frontend": frontend, "backend": backend})) is not None


def test_sdd_describe_names_the_mismatch(tmp_path, capsys):
    recipe = tmp_path / "m.yaml"
    recipe.write_text("model:\n  frontend: {name: ssl, encoder: {name: wav2vec2_tiny}}\n  backend: lcnn\n")
    assert main(["describe", str(recipe)]) != 0
    assert "reads spectral features" in capsys.readouterr().err
