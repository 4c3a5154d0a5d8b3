"""Review 25 of the HTTP service (``sdd serve``): answers to well-formed forms the service will not take."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

SR = 16000


@pytest.fixture(scope="module")
def client():
    from sddkit.service.app import create_app

    with TestClient(create_app(None)) as c:
        yield c


def _wav(seconds: float = 0.5) -> bytes:
    t = np.arange(round(SR * seconds)) / SR
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_a_form_of_too_many_text_fields_is_not_called_malformed(client: TestClient) -> None:
    from sddkit.service import app as service

    limit = getattr(service, "_MAX_FIELDS", 16)  # Starlette's max_fields, as the service sets it
    fields = {f"f{i}": "x" for i in range(limit + 1)}
    res = client.post("/v1/score", files={"file": ("a.wav", _wav(), "audio/wav")}, data=fields)
    assert res.status_code == 400
    error = res.json()["error"]
    # a well-formed body: "malformed multipart body: Too many fields" sent the user looking for a broken upload
    assert error["type"] == "too_many_fields"
    assert "malformed" not in error["message"]
    assert f"more than {limit} text fields" in error["message"]
    # the limit is not reached by a form of the file and a few fields, which is scored
    res = client.post("/v1/score", files={"file": ("a.wav", _wav(), "audio/wav")}, data={"note": "x"})
    assert res.status_code == 200, res.text
