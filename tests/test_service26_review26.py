"""Review 26 of the HTTP service: the upload limit's floor, and the schema of GET /healthz and GET /v1/model."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn

from sddkit.cli.main import main
from sddkit.errors import ConfigError
from sddkit.service.app import create_app


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("svc26") / "lcnn")


def _tiny_wav() -> bytes:
    """0.11 s of 8 kHz 8-bit PCM: 924 bytes, the kind of file a limit of 1 KiB still takes."""
    buf = io.BytesIO()
    x = 0.1 * np.random.default_rng(0).standard_normal(880)
    sf.write(buf, x, 8000, format="WAV", subtype="PCM_U8")
    return buf.getvalue()


@pytest.mark.parametrize(("value", "size"), [("1e-9", "1e-09 is 0 bytes"), ("0.0009", "0.0009 is 943 bytes")])
def test_serve_refuses_an_upload_limit_no_audio_file_fits(tmp_path, capsys, value, size):
    # was accepted: the service started, and answered every upload 413 "exceeds the limit of 1e-09 MB"; now refused
    # before the model loads (there is none here to load)
    assert main(["serve", "--model", str(tmp_path / "none"), "--max-upload-mb", value]) == 2
    err = capsys.readouterr().err
    assert f"--max-upload-mb {size}, under 1024 (1 KiB)" in err and "give at least 0.001" in err


def test_create_app_refuses_a_sub_kib_upload_limit_and_takes_the_floor(model_dir):
    with pytest.raises(ConfigError, match=r"max_upload_mb 1e-09 is 0 bytes.*every upload would be refused"):
        create_app(model_dir, max_upload_mb=1e-9)
    data = _tiny_wav()
    assert len(data) <= 1048  # 0.001 MB
    with TestClient(create_app(model_dir, max_upload_mb=0.001)) as c:
        resp = c.post("/v1/score", files={"file": ("tiny.wav", data, "audio/wav")})
        assert resp.status_code == 200, resp.text
        assert resp.json()["duration_s"] == pytest.approx(0.11)


def _resolve(spec: dict, schema: dict) -> dict:
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def _assert_described(spec: dict, schema: dict, value: dict, where: str) -> None:
    """Every key of ``value`` is a property of ``schema`` (and every required one is present), nested objects too."""
    schema = _resolve(spec, schema)
    props = schema.get("properties", {})
    assert set(value) <= set(props), f"{where}: undocumented {sorted(set(value) - set(props))}"
    assert set(schema.get("required", [])) <= set(value), where
    for key, item in value.items():
        sub = _resolve(spec, props[key])
        if isinstance(item, dict) and "properties" in sub:
            _assert_described(spec, sub, item, f"{where}.{key}")


def _json_schema(responses: dict, status: str) -> dict:
    schema = responses[status]["content"]["application/json"]["schema"]
    # /healthz's 503 is a HealthResponse or, from a server at its --limit-connections, the error body
    health = {"$ref": "#/components/schemas/HealthResponse"}
    return health if health in schema.get("anyOf", []) else schema


def test_openapi_describes_what_healthz_and_model_answer(model_dir):
    # both were a bare "object" (and /healthz's 503 had no body): a client generated from /openapi.json had no
    # threshold, calibration or limits to read
    app = create_app(model_dir, max_upload_mb=0.5, max_duration_s=3.0)
    with TestClient(app) as c:
        spec = c.get("/openapi.json").json()
        model = c.get("/v1/model").json()
        health = c.get("/healthz").json()
    answers = spec["paths"]["/v1/model"]["get"]["responses"]
    schema = _resolve(spec, _json_schema(answers, "200"))
    assert {"threshold", "calibration", "limits", "sample_rate", "min_duration_s", "outputs"} <= set(schema["required"])
    _assert_described(spec, schema, model, "/v1/model")
    limits = _resolve(spec, schema["properties"]["limits"])
    assert set(limits["required"]) == set(model["limits"]) == {"max_upload_mb", "max_duration_s", "max_concurrent"}
    assert model["calibration"]["prior"] is None  # an uncalibrated model: the identity, as the schema allows
    assert set(_resolve(spec, schema["properties"]["calibration"])["properties"]) >= set(model["calibration"])

    answers = spec["paths"]["/healthz"]["get"]["responses"]
    for status in ("200", "503"):
        _assert_described(spec, _json_schema(answers, status), health, f"/healthz {status}")
        assert set(_resolve(spec, _json_schema(answers, status))["required"]) == {"status", "model_loaded"}
    # the 503 body the schema describes is what an app outside its lifespan (starting or stopping) answers
    starting = TestClient(app).get("/healthz")
    assert starting.status_code == 503
    _assert_described(spec, _json_schema(answers, "503"), starting.json(), "/healthz 503 body")

    error = _resolve(spec, {"$ref": "#/components/schemas/ErrorBody"})
    assert "payload_too_large" in error["properties"]["type"]["description"]
