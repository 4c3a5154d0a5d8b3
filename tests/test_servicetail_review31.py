"""Review 31: leftovers of the HTTP service's early answers and of MLDG under torchrun.

- A 500 raised while an upload's body was being read said nothing of the connection: a handled one (a
  ``checkpoint_error``, any sddkit error) kept it open with the rest of the body still due, and an unexpected one
  (``internal_error``, which uvicorn follows by closing the connection) came without ``Connection: close``. Both now
  say ``Connection: close`` and close it, as the 413/415/408/404/405 and not_ready answers sent before the body do.
- ``GET /healthz`` once the app's lifespan had ended answered ``{"status": "starting"}``, inviting a monitor to wait
  for a model that is gone; it says ``stopped`` now (still ``starting`` before the lifespan has started).
- MLDG's "none of the first 20 batches ..." warning was printed by every rank of a torchrun job; rank 0 alone says it.
"""

from __future__ import annotations

import socket

import pytest
import torch
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn
from test_mldg import _adamw, _batch, _bn_detector, _ctx
from test_service import _wav_bytes
from test_servicelimits_review30 import _BOUNDARY, _HANG_GUARD_S, _head, _read_to_close, _served, _split

import sddkit.service.app as service
from sddkit.errors import CheckpointError
from sddkit.service.app import create_app
from sddkit.training import distributed
from sddkit.training.mldg import MLDG, MLDGConfig


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("servicetail") / "lcnn")


def _failing_reader(error: type[Exception]):
    """``_until_disconnect`` that hands on the first piece of the body, then raises ``error``: a reader failing
    mid-body."""
    reader = service._until_disconnect

    async def failing(chunks, idle_s=None, total_s=None):
        async for chunk in reader(chunks, idle_s, total_s):
            yield chunk
            raise error("the reader failed")

    return failing


@pytest.mark.parametrize(("error", "type_"), [(RuntimeError, "internal_error"), (CheckpointError, "checkpoint_error")])
def test_a_500_raised_while_the_body_is_read_closes_the_connection(model_dir, monkeypatch, error, type_):
    monkeypatch.setattr(service, "_until_disconnect", _failing_reader(error))
    app = create_app(model_dir)
    with _served(app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=_HANG_GUARD_S) as sock:
            # 100 000 bytes announced, a few sent: the rest is still due when the server answers
            sock.sendall(_head(100_000) + f"--{_BOUNDARY}\r\n".encode())
            answer, closed = _read_to_close(sock)
        # before: no Connection: close, and a handled 500 (checkpoint_error) left the connection open for the rest
        assert closed
        status, headers, body = _split(answer)
        assert status.startswith("HTTP/1.1 500") and headers["connection"] == "close"
        assert body["error"]["type"] == type_
        # the server serves on, on other connections
        with socket.create_connection(("127.0.0.1", port), timeout=_HANG_GUARD_S) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer, closed = _read_to_close(sock)
        status, _, health = _split(answer)
        assert closed and status.startswith("HTTP/1.1 200") and health["status"] == "ok"


def test_a_handled_500_once_the_body_is_read_keeps_the_connection_and_an_internal_error_closes_it(
    model_dir, monkeypatch
):
    files = {"file": ("a.wav", _wav_bytes(1.0), "audio/wav")}

    def model_fails(*_args, **_kwargs):
        raise CheckpointError("the model answered in the wrong shape")

    monkeypatch.setattr(service, "_score_bytes", model_fails)
    with TestClient(create_app(model_dir), raise_server_exceptions=False) as client:
        answer = client.post("/v1/score", files=files)
        # the body was read in full: the connection may serve the client's next request
        assert answer.status_code == 500 and answer.json()["error"]["type"] == "checkpoint_error"
        assert "connection" not in answer.headers

        def bug(*_args, **_kwargs):
            raise RuntimeError("a bug")

        monkeypatch.setattr(service, "_score_bytes", bug)
        answer = client.post("/v1/score", files=files)
        # uvicorn closes the connection after an unexpected error whatever the answer says: the answer says so
        assert answer.status_code == 500 and answer.json()["error"]["type"] == "internal_error"
        assert answer.headers["connection"] == "close"


def test_healthz_says_stopped_once_the_lifespan_has_ended_and_starting_before(model_dir):
    app = create_app(model_dir)
    before = TestClient(app).get("/healthz")  # no `with`: the lifespan has not run
    assert before.status_code == 503 and before.json() == {"status": "starting", "model_loaded": False}
    assert "connection" not in before.headers
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok", "model_loaded": True}
    after = client.get("/healthz")
    # before: {"status": "starting"}, as if the model were on its way
    assert after.status_code == 503 and after.json() == {"status": "stopped", "model_loaded": False}
    assert after.headers["connection"] == "close"  # as not_ready closes it once the service has stopped
    schema = app.openapi()
    assert "'stopped'" in schema["components"]["schemas"]["HealthResponse"]["properties"]["status"]["description"]
    assert '"stopped"' in schema["paths"]["/healthz"]["get"]["responses"]["503"]["description"]


def _simulate_rank(monkeypatch, rank: int) -> None:
    """This process as rank ``rank`` of a joined process group (of one process's gradients: world_size 1 in the
    step's context, so no collective runs)."""
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *_a, **_k: rank)


@pytest.mark.parametrize("rank", [0, 1, 3])
def test_mldg_warns_of_batches_that_never_split_on_rank_0_only(monkeypatch, caplog, rank):
    torch.manual_seed(3)
    model = _bn_detector()
    strategy, ctx = MLDG(MLDGConfig(), seed=0), _ctx(model, _adamw(model))
    _simulate_rank(monkeypatch, rank)
    with caplog.at_level("WARNING", logger="sddkit.training.mldg"):
        for _ in range(MLDG.WARN_AFTER + 2):
            strategy.step(_batch(n=12, n_attacks=1), ctx)  # bona fide and a single attack: nothing to hold out
    monkeypatch.undo()
    # before: every rank printed it, once each
    warned = [r for r in caplog.records if "every step was a plain step" in r.getMessage()]
    assert len(warned) == (1 if rank == 0 else 0)


def test_is_main_process_reads_the_rank_of_the_joined_process_group(monkeypatch):
    assert not torch.distributed.is_initialized()
    assert distributed.is_main_process()  # a single process: its own rank 0
    for rank in (0, 1, 3):
        _simulate_rank(monkeypatch, rank)
        assert distributed.is_main_process() is (rank == 0)
