"""The service's answers keep to the OpenAPI schema it publishes: strict JSON, and one error body shape."""

from __future__ import annotations

import json

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from scoring_support import TINY_LCNN, save_tiny_lcnn
from test_service import start_uvicorn

from sddkit.config import from_dict, to_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.model_dir import save_model_dir
from sddkit.service.app import create_app


def _strict_json(text: str):
    """``text`` as a strict JSON reader (a generated client, a browser) reads it: NaN and Infinity are refused."""

    def refuse(token: str):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_model_answer_is_strict_json_when_the_model_metadata_holds_nan(tmp_path):
    """A meta.json may hold NaN (Python's json writes and reads it): GET /v1/model answered every such model with a
    500 internal_error (Starlette's encoder refuses NaN), a status its schema does not even list."""
    cfg = from_dict(DetectorConfig, TINY_LCNN)
    torch.manual_seed(0)
    model = save_model_dir(
        tmp_path / "m",
        build_detector(cfg).eval(),
        model_config=to_dict(cfg),
        inference={"window_samples": 8000},
        metadata={"val_eer": float("nan"), "curve": [0.5, float("inf")], "note": "kept"},
    )
    app = create_app(model)
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/v1/model")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    metadata = _strict_json(answer.text)["metadata"]
    assert metadata["val_eer"] is None
    assert metadata["curve"] == [0.5, None]
    assert metadata["note"] == "kept"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("apicontract") / "lcnn")


def test_healthz_503_schema_admits_the_error_body_of_a_busy_server(model_dir):
    """/healthz's 503 was documented as a HealthResponse only, while past --limit-connections the server answers it
    (as every other request) with the error body."""
    schema = create_app(model_dir).openapi()
    body = schema["paths"]["/healthz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]
    refs = [option.get("$ref") for option in body.get("anyOf", [body])]
    assert "#/components/schemas/ErrorResponse" in refs
    assert "#/components/schemas/HealthResponse" in refs


def test_a_request_past_limit_connections_gets_the_json_error_body(model_dir):
    """uvicorn answered a request past its connection limit with text/plain "Service Unavailable": a client generated
    from /openapi.json (which lists 503 as JSON {"error": {"type", "message"}}) failed to decode it."""
    from sddkit.service.server import uvicorn_config

    app = create_app(model_dir)
    # a limit of 1: the request's own connection reaches it, so every request is past it
    server, thread, port = start_uvicorn(
        app, lambda port: uvicorn_config(app, port=port, log_level="error", limit_connections=1)
    )
    try:
        url = f"http://127.0.0.1:{port}"
        answers = [
            httpx.get(f"{url}/healthz", timeout=30),
            httpx.post(f"{url}/v1/score", files={"file": ("a.wav", b"RIFF", "audio/wav")}, timeout=30),
        ]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    for answer in answers:
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/json"
        body = _strict_json(answer.text)
        assert set(body) == {"error"}
        assert body["error"]["type"] == "service_unavailable"
        assert "--limit-connections" in body["error"]["message"]
