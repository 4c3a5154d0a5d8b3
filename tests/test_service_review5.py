"""Fifth review of the HTTP service: what a malformed multipart body is told, and `sdd serve --host 0.0.0.0`."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn

from sddkit.service.app import create_app

SR = 16000
BOUNDARY = "r5boundary"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("svc5") / "lcnn")


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(create_app(model_dir, max_upload_mb=0.25, max_duration_s=2.0)) as c:
        yield c


def _wav(seconds: float = 0.5) -> bytes:
    buf = io.BytesIO()
    x = 0.1 * np.random.default_rng(0).standard_normal(int(seconds * SR))
    sf.write(buf, x.astype(np.float32), SR, format="WAV")
    return buf.getvalue()


def _body(filename: str = "a.wav", extra_headers: str = "", preamble: bytes = b"") -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n{extra_headers}'
    return preamble + (head + "\r\n").encode() + _wav() + f"\r\n--{BOUNDARY}--\r\n".encode()


def _post(client, body: bytes, boundary: str = BOUNDARY):
    return client.post("/v1/score", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})


def _message(resp, status: int = 400, type_: str = "bad_request") -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["type"] == type_
    return body["error"]["message"]


def test_a_file_name_over_4_kb_is_told_as_such_not_invalid_multipart_data(client):
    """python-multipart refuses a part header line over 4224 bytes; Starlette turns any parser error into
    "Invalid multipart data.", so a long file name got a 400 that did not say what to change."""
    assert _post(client, _body("b" * 3000 + ".wav")).status_code == 200  # a long name within the limit scores
    message = _message(_post(client, _body("b" * 5000 + ".wav")))
    assert "Invalid multipart data" not in message
    assert "header line is longer than 4224 bytes" in message and "file name" in message
    assert client.get("/healthz").status_code == 200


def test_other_parser_errors_say_what_the_parser_found(client):
    """Too many header lines in a part, or bytes before the first boundary: the parser's own reason, not the
    same "Invalid multipart data." for all."""
    many = "".join(f"X-Extra-{i}: v\r\n" for i in range(10))
    message = _message(_post(client, _body(extra_headers=many)))
    assert "more header lines than 8" in message
    message = _message(_post(client, _body(preamble=b"junk")))
    assert "Invalid multipart data" not in message and "boundary" in message


def test_a_content_type_with_another_boundary_than_the_body_is_not_called_a_cut_off_upload(client):
    """A Content-Type header set by hand (its boundary not the one the body was written with) was answered "it
    ends before its closing boundary (a cut-off upload?)", sending the client after a network fault."""
    message = _message(_post(client, _body(), boundary="someotherboundary"))
    assert "'someotherboundary'" in message and "cut-off" not in message
    # a body really cut short still says so
    message = _message(_post(client, _body()[:-40]))
    assert "cut-off" in message


def test_serve_on_every_interface_warns_and_announces_a_loopback_url(model_dir, monkeypatch, capsys):
    """`sdd serve --host 0.0.0.0` announced http://0.0.0.0:PORT/, which browsers block and Windows refuses, and
    said nothing about exposing a service without authentication to the network."""
    import uvicorn

    from sddkit.cli.main import main

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.append(sockets[0].getsockname()))
    assert main(["serve", "--model", str(model_dir), "--host", "0.0.0.0", "--port", "0"]) == 0
    port = served[-1][1]
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{port}/" in err and "0.0.0.0:" not in err
    assert "warning" in err and "every network interface" in err and "no authentication" in err
    assert main(["serve", "--model", str(model_dir), "--host", "127.0.0.1", "--port", "0"]) == 0
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{served[-1][1]}/" in err and "warning" not in err


def test_the_exposure_warning_and_announced_host_by_address():
    from sddkit.cli.serve_cmd import exposure_warning, local_host, service_url

    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert exposure_warning("::ffff:127.0.0.1") is None and exposure_warning("fe80::1%eth0") is not None
    assert "every network interface" in exposure_warning("::")
    assert "192.168.1.5" in exposure_warning("192.168.1.5")
    assert service_url(local_host("::", "::"), 8000) == "http://[::1]:8000/"
    assert local_host("myhost.lan", "192.168.1.5") == "myhost.lan"


def test_audio_sent_as_a_text_field_is_told_to_send_a_file(model_dir):
    """A part without filename= is a text field (what `curl -F 'file=<a.wav'` sends): under 1 MB it was "holds a
    text value" with no word of what makes a file; over 1 MB only Starlette's "Part exceeded maximum size of
    1024KB.", which does not say the limit is on text fields, nor how to send a file instead."""
    with TestClient(create_app(model_dir, max_upload_mb=4)) as client:
        for size, status, type_ in ((1000, 422, "missing_field"), (2_000_000, 400, "bad_request")):
            head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.encode()
            body = head + b"\x01" * size + f"\r\n--{BOUNDARY}--\r\n".encode()
            message = _message(_post(client, body), status, type_)
            assert "filename=" in message and "curl -F file=@a.wav" in message
