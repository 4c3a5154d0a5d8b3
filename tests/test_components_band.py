"""``components`` of a model's info (``GET /v1/model``, the web page's "architecture" row) name each front-end's
frequency band: two experts of one front-end on different bands read as the same ``lfb`` before."""

from __future__ import annotations

import torch
from fastapi.testclient import TestClient
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)

from sddkit.config import from_dict, to_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.mixture import MixtureConfig, build_mixture
from sddkit.detectors.model_dir import save_model_dir
from sddkit.scoring.api import _component_names, load_detector
from sddkit.service.app import create_app

BACKEND = {"name": "lcnn", "channels": 4, "lstm_layers": 1}
INFERENCE = {"sample_rate": 16000, "window_samples": 8000}


def _expert(path, frontend: dict, seed: int) -> str:
    torch.manual_seed(seed)
    spec = {"frontend": frontend, "backend": BACKEND}
    return str(save_model_dir(path, build_detector(from_dict(DetectorConfig, spec)), model_config=spec))


def test_a_mixture_of_one_front_end_on_two_bands_tells_them_apart(tmp_path):
    dirs = [
        _expert(tmp_path / "full", {"name": "lfb", "n_filters": 24}, 0),
        _expert(tmp_path / "hi", {"name": "lfb", "n_filters": 16, "f_min": 4000.0}, 1),
    ]
    cfg = from_dict(MixtureConfig, {"expert_dirs": dirs, "expert_names": ["lfb", "hi"], "gate": "average"})
    d = save_model_dir(
        tmp_path / "mix", build_mixture(cfg), model_config=to_dict(cfg), architecture="mixture", inference=INFERENCE
    )
    experts = load_detector(d).info["components"]["experts"]
    # the null f_max is Nyquist; the frontend name alone is the same for both
    assert [(e["name"], e["frontend"], e["band_hz"]) for e in experts] == [
        ("lfb", "lfb", [0.0, 8000.0]),
        ("hi", "lfb", [4000.0, 8000.0]),
    ]
    with TestClient(create_app(d)) as client:
        served = client.get("/v1/model").json()["components"]["experts"]
    assert [e["band_hz"] for e in served] == [[0.0, 8000.0], [4000.0, 8000.0]]


def test_band_defaults_are_resolved_and_band_less_front_ends_carry_none():
    def band(frontend):
        return _component_names({"frontend": frontend, "backend": "lcnn"}).get("band_hz")

    assert band("logmel") == [20.0, 7600.0]  # LogMelConfig's defaults, the spec giving none
    assert band({"name": "logmel", "f_max": None}) == [20.0, 8000.0]
    assert band({"name": "lfcc", "f_max": 4000.0}) == [0.0, 4000.0]
    assert band({"name": "mgd", "f_min": 300.0}) == [300.0, 8000.0]
    assert band("cqt") == [15.625, 8000.0]  # the CQCC baseline's f_min, whole octaves below f_max
    assert band("logspec") is None  # no band of its own: every bin
    # a front-end the registry does not know (a plugin not imported here) is described by name, not refused
    assert _component_names({"frontend": {"name": "not_registered"}, "backend": "lcnn"}) == {
        "frontend": "not_registered",
        "backend": "lcnn",
    }


def test_every_front_end_config_with_a_band_resolves_it_as_its_checks_do():
    # band_hz is what the description reads: a front-end with f_min/f_max but no band_hz would lose its band there
    import dataclasses

    from sddkit.registry import get_registry

    banded = []
    for entry in get_registry("frontend").entries():
        if entry.config_cls is None or not dataclasses.is_dataclass(entry.config_cls):
            continue
        names = {f.name for f in dataclasses.fields(entry.config_cls)}
        if {"f_min", "f_max"} <= names:
            banded.append(entry.name)
            cfg = entry.config_cls(f_max=4000.0)
            assert cfg.band_hz[1] == 4000.0
            nyquist = entry.config_cls(f_max=None)
            assert nyquist.band_hz[1] == nyquist.sample_rate / 2.0
    assert {"logmel", "lfb", "lfcc", "mgd", "cqt"} <= set(banded)
