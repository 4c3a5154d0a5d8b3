"""The HTTP scoring service: ``create_app(model_dir)`` -> a FastAPI app (``sdd serve`` runs it).

Endpoints:

| method | path | what |
|---|---|---|
| POST | ``/v1/score`` | multipart upload (field ``file``) -> score, probability, decision, windows, weights |
| GET | ``/v1/model`` | the model, its inference settings, the limits, ``server`` and ``source_changed`` |
| GET | ``/healthz`` | liveness: ``{"status": "ok"}`` once the model is loaded (503: ``starting``, ``stopped``) |
| GET | ``/`` | a small offline web page to upload a file and see the result |
| GET | ``/openapi.json``, ``/docs``, ``/redoc`` | the API description; the two pages work offline |

The model is loaded once, by ``create_app`` (so a missing, corrupt or unloadable model is a clear
error before any server starts, not a traceback at start-up), and served from the lifespan on.
Uploads are bounded before they are read: a ``Content-Length`` over the limit is refused at once (a 413 that
closes the connection, as every answer sent before the body is read in full does: see ``CLOSE``), and the body is
streamed with a cap and a deadline (408 for an upload that stalls for ``UPLOAD_IDLE_S`` or comes slower than
``UPLOAD_MIN_RATE`` on average), so a client can never make the server buffer more than ``max_upload_mb`` (plus the
multipart envelope), and nothing of it is written to disk. Decoding stops as soon as the audio passes
``max_duration_s``. Every deliberate error is a JSON ``{"error": {"type": ..., "message": ...}}`` with a 4xx status
(413 too large, 415 not multipart, 400 malformed body or a form of over 16 text fields, 422 missing field, more than
one file or unusable audio), or a 500 when the model fails (``non_finite_score`` for NaN/inf rather than a score,
``checkpoint_error`` for a model that answers in the wrong shape), or a 503 ``not_ready`` while no model is loaded
(before the lifespan starts, or once it has ended); the server keeps serving.
Decoding and inference run in the thread pool, so concurrent requests do not block the event loop.
What came of each scoring request (its status, error type and message, upload size and time) is logged on ``LOG``
(``sddkit.service``): an ERROR for a 5xx, INFO else.
Pages of another origin may call the service from a browser only when ``cors_origins`` names their origin (CORS,
off by default). ``sdd serve`` runs it with uvicorn as ``sddkit.service.server`` configures it (idle connections are
closed: see ``REQUEST_HEAD_TIMEOUT_S``).

FastAPI's own ``/docs`` and ``/redoc`` pages load Swagger UI and ReDoc from a CDN, so on a machine
without internet access they stay blank. The service serves both scripts itself instead, from the
copies the ``fastapi-offline`` package ships (used as an asset source only), under ``/_docs/``.
"""

from __future__ import annotations

import asyncio
import html
import logging
import math
import re
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from sddkit import __version__
from sddkit.cli.options import check_max_duration_fits
from sddkit.documents import json_safe
from sddkit.errors import AudioError, AudioTooLongError, CheckpointError, ConfigError, SddkitError

STATIC_DIR = Path(__file__).resolve().parent / "static"
DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
DOCS_PREFIX = "/_docs"


def docs_assets_dir() -> Path | None:
    """The folder holding Swagger UI's and ReDoc's scripts (``DOCS_ASSETS``), from the ``fastapi-offline``
    package; None when it is not installed or lacks one of them (the pages then load from the CDN)."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).resolve().parent / "static"
    return folder if all((folder / name).is_file() for name in DOCS_ASSETS) else None


# room for the multipart envelope (boundaries, part headers, a few small fields) around the file
_ENVELOPE_BYTES = 64 * 1024
# longest wait for the next piece of an upload: a body shorter than its Content-Length held the request open
# (and its memory) for as long as the client kept the connection
UPLOAD_IDLE_S = 60.0
# slowest average rate an upload may come at: one must end within UPLOAD_IDLE_S plus its length at this rate (its
# Content-Length, else the limit), about 12 min for 20 MB; a client trickling a byte every minute held its
# connection (and what it had sent) for ever, and a few of them filled --limit-connections
UPLOAD_MIN_RATE = 32 * 1024
# Before a request there is nothing for the app to time out: uvicorn counts every open connection against
# --limit-connections, and closed a connection that never sent a complete request head (a bare connect, half a head)
# only when its client did, so N - 1 silent sockets answered every other client 503 for as long as they stayed open.
# sddkit.service.server closes such a connection after REQUEST_HEAD_TIMEOUT_S (from its start, or from the end of its
# last response, so a head trickled a byte at a time gets no more), and a kept-alive one KEEP_ALIVE_S after its last
# response (uvicorn's own default, set here so that the README's figure stays true)
REQUEST_HEAD_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5.0
# when a request past --limit-connections (sddkit.service.server answers it 503 service_unavailable) may be tried
# again, in whole seconds (its Retry-After, RFC 9110 10.2.3): by then every connection that was idle when it was
# refused has been closed (a kept-alive one KEEP_ALIVE_S after its last answer), and a request that was being scored
# has most likely been answered. The 503 had no Retry-After, so a client's retry loop, given no delay, tried again at
# once and over again, finding the same connections open and adding to the load it was refused for.
OVER_LIMIT_RETRY_AFTER_S = math.ceil(KEEP_ALIVE_S)
# what every answer sent before the request's body is read in full carries (a 413 over the limit, a 415, a 408, a 404
# or 405 to a request with a body, a not_ready 503 to one): the connection is closed once the answer is written (as
# nginx does for a 413 or a 408; RFC 9110 15.5.14 allows it, 15.5.9 asks it of a 408, and 10.1.1 asks a server that
# answers before reading the content to say whether it closes or reads on). Without it the server read on, to discard
# the refused body: a client that sends its whole body before reading the answer uploaded all of it for nothing (a 404
# or 415 to a 256 MB body read all of it), and the connection stayed taken (and counted against --limit-connections)
# for as long as that lasted, then was closed all the same REQUEST_HEAD_TIMEOUT_S after the answer; a client that had
# sent "Expect: 100-continue" and then, as it may, sent no body had its next request on that connection read as the
# refused body's bytes (and never answered); a 408's client, whose body had stalled, had its connection held open.
# Now an upload stops at its first write after the answer (a reset): curl, httpx and urllib3 (requests) read the
# answer then; Python's bare http.client (urllib) raises the reset instead. An answer sent once the body was read in
# full (a 400 malformed form, a 422, a 413 for a file over the limit within the envelope's room) keeps the connection.
# Any other answer given mid-body, a 500 above all (a reader that fails), closes it too (_closing): it kept it, with
# the rest of the body still due.
CLOSE = {"Connection": "close"}
_TOO_LARGE_MSG = "upload exceeds the limit of {mb:g} MB"
# files parsed from one upload at most (one is scored; more are refused as too_many_files)
_MAX_FILES = 4
# text (non-file) fields parsed from one upload at most (they are ignored; more are refused as too_many_fields)
_MAX_FIELDS = 16
# the smallest upload limit: no audio file fits in less (a WAV header alone is 44 bytes, 0.1 s of 8 kHz 8-bit PCM 800);
# a limit such as 1e-9 MB (0 bytes) was taken, and the service then answered every upload 413 "exceeds the limit"
MIN_UPLOAD_BYTES = 1024
# The service's own log lines (sddkit.service.server.uvicorn_config prints them to stderr, in uvicorn's format and at
# its log level). uvicorn's access line names the method, path and status only: a 500 non_finite_score or
# checkpoint_error left the operator no reason (the client's JSON had it, the server's log did not), and a client
# gone before its answer left no line at all.
LOG = logging.getLogger("sddkit.service")
# the longest message logged, in characters (a client's file name, which messages quote, may be kilobytes)
_LOG_MESSAGE_CHARS = 500


class ApiError(Exception):
    """An error answered as ``{"error": {"type", "message"}}`` with ``status``."""

    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message
        self.headers = headers


class WindowOut(BaseModel):
    start_s: float
    end_s: float
    score: float


class ScoreResponse(BaseModel):
    """The score of one uploaded file (``score`` is the model's calibrated LLR, or its raw score when the model
    carries no calibration, as ``GET /v1/model`` says; higher = more bona fide)."""

    filename: str | None = None
    score: float = Field(
        description="calibrated log-likelihood ratio, bona fide vs spoof (a raw score for a model without a "
        "calibration: GET /v1/model's calibration is then the identity)"
    )
    probability: float = Field(description="posterior probability of bona fide at prior 0.5 (sigmoid of score)")
    decision: str = Field(description="'bonafide' if score >= threshold else 'spoof'")
    threshold: float
    duration_s: float
    raw_score: float
    n_windows: int
    windows: list[WindowOut]
    weights: dict[str, list[float]] = Field(
        description="model statistics averaged over the windows, e.g. a mixture's gate weights and expert scores "
        "(sdd score's gate_w*/expert_score* columns)"
    )


class ErrorBody(BaseModel):
    type: str = Field(
        description="stable and machine-readable, e.g. payload_too_large, missing_field, too_many_files, "
        "audio_decode_error, audio_too_short_error, audio_too_long_error, silent_audio_error, request_timeout, "
        "non_finite_score, not_ready, service_unavailable, internal_error"
    )
    message: str = Field(description="what is wrong, and what to do about it, for a person to read")


class ErrorResponse(BaseModel):
    error: ErrorBody


# GET /healthz and GET /v1/model are described by these in the schema only (the answers are the dicts the endpoints
# build, never filtered through them): both were a bare "object", so a client generated from /openapi.json had no
# threshold, calibration or limits to read, and /healthz's 503 had no body at all
class HealthResponse(BaseModel):
    status: str = Field(
        description="'ok' once the model is loaded; with a 503, 'starting' before the app's lifespan has started "
        "and 'stopped' once it has ended"
    )
    model_loaded: bool


class CalibrationOut(BaseModel):
    """The affine map ``score = a * raw_score + b``; the identity (a=1, b=0, prior null) for a model without one."""

    model_config = ConfigDict(extra="allow")
    a: float
    b: float
    prior: float | None = Field(description="the prior it was fitted at; null for the identity (no calibration)")
    n_bonafide: int
    n_spoof: int


class LimitsOut(BaseModel):
    max_upload_mb: float = Field(description="largest accepted upload, in MB of 1024*1024 bytes (413 above it)")
    max_duration_s: float = Field(description="longest accepted audio (422 audio_too_long_error above it)")
    max_concurrent: int = Field(description="requests decoded and scored at once; the others wait for a slot")


class ServerOut(BaseModel):
    """How the server runs the model (``sdd serve``'s flags): what its throughput and its 503s depend on."""

    device: str = Field(description="where the model runs: 'cpu', 'cuda', 'cuda:N' or 'mps' (sdd serve --device)")
    batch_size: int = Field(description="windows per forward pass of one request (sdd serve --batch-size)")
    threads: int = Field(
        description="torch's CPU threads (sdd serve --threads; onnxruntime's for --backend onnx, set at load)"
    )
    limit_connections: int | None = Field(
        description="connections open at once before a new one is answered 503 service_unavailable (sdd serve "
        "--limit-connections); null: no limit, or a server other than sdd serve's"
    )


class ModelResponse(BaseModel):
    """The served model and every setting of its ``inference`` section (more keys may follow)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())
    name: str | None
    path: str | None = Field(description="the model's path on the server")
    backend: str | None = Field(description="'torch' or 'onnx'")
    architecture: str | None
    components: dict[str, Any] | None = Field(
        description="frontend and backend names, or a mixture's experts (name, frontend, backend) and gate; a "
        "front-end with a frequency band adds band_hz, [f_min, f_max] in Hz (defaults and a null f_max resolved)"
    )
    num_parameters: int | None
    weights_digest: str | None
    sample_rate: int = Field(description="the rate every upload is resampled to, Hz")
    window_samples: int
    hop_samples: int
    aggregation: str = Field(description="how window scores make the file's score: mean, min, max, median or first")
    threshold: float = Field(description="decision threshold on score: 'bonafide' at or above it")
    calibration: CalibrationOut
    min_duration_s: float = Field(description="shortest accepted audio (422 audio_too_short_error below it)")
    window_s: float
    outputs: dict[str, int] = Field(description="the statistics in POST /v1/score's weights, and their widths")
    limits: LimitsOut
    server: ServerOut
    source_changed: str | None = Field(
        description="for an ONNX export: what changed in the model directory it was exported from since (it scores "
        "as that model did at export; sdd serve prints it at start), and the command that exports it again; null "
        "when nothing changed, and for --backend torch"
    )
    model: dict[str, Any] | None = Field(description="the model's configuration")
    metadata: dict[str, Any]
    sddkit_version: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, f"malformed request body, or a form of over {_MAX_FIELDS} text fields"),
        (
            408,
            f"the upload stalled (no data for {UPLOAD_IDLE_S:g} s) or came too slowly (it must end within "
            f"{UPLOAD_IDLE_S:g} s plus its length at {UPLOAD_MIN_RATE // 1024} KiB/s)",
        ),
        (413, "upload too large"),
        (415, "not a multipart/form-data request"),
        (
            422,
            "missing 'file' field or more than one file, or audio that cannot be scored "
            "(undecodable, empty, silent or a bare DC offset, too short or too long)",
        ),
        (
            500,
            "the model failed on this audio: a non-finite (NaN/inf) score, or output of the wrong shape; or "
            "internal_error, an unexpected server error (with Connection: close, as every answer sent before the "
            "body is read in full)",
        ),
        (
            503,
            "the model is not loaded (not_ready: the app's lifespan has not run, or has ended), or the server has "
            "as many connections open as sdd serve --limit-connections allows (service_unavailable, with a "
            f"Retry-After header of {OVER_LIMIT_RETRY_AFTER_S} s: retry then)",
        ),
    )
}
_NOT_READY = {503: _ERRORS[503]}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "description": "an audio file"}},
                }
            }
        },
    }
}


_HTTP_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_type(exc: BaseException) -> str:
    """``AudioTooLongError`` -> ``audio_too_long_error``: stable, machine-readable error types."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def create_app(
    model_dir: str | Path | None = None,
    *,
    max_upload_mb: float = 20.0,
    max_duration_s: float = 600.0,
    device: str = "cpu",
    backend: str = "torch",
    batch_size: int = 16,
    max_concurrent: int = 2,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """The scoring service for ``model_dir`` (None = the bundled default model).

    The model is loaded now (a clear ``CheckpointError`` before any server starts, for a wrong path,
    corrupt weights or a folder without ``model.onnx`` alike) and served once the app starts.
    max_upload_mb bounds the uploaded file, max_duration_s the decoded audio. At most
    ``max_concurrent`` requests decode and score at once; the others wait for a slot (holding only
    their bounded upload), so a burst of clients cannot each hold a decoded 600 s file in memory and
    start their own torch threads on the same cores. ``cors_origins`` are the other origins (``https://host[:port]``,
    or ``*`` for any) whose pages may call the service from a browser (none: same-origin pages only).
    """
    from sddkit.scoring.api import load_detector, resolve_model_path

    if not (max_upload_mb > 0 and max_duration_s > 0):  # written so that NaN fails too
        raise CheckpointError("max_upload_mb and max_duration_s must be positive")
    if not (isinstance(max_concurrent, int) and max_concurrent >= 1):
        raise CheckpointError(f"max_concurrent must be an integer >= 1, got {max_concurrent!r}")
    if max_upload_mb == float("inf"):  # a limit is needed: the body is buffered up to it
        raise CheckpointError("max_upload_mb must be finite")
    if max_duration_s == float("inf"):  # a few MB of Opus decode to hours: the decoded audio is held in memory
        raise CheckpointError("max_duration_s must be finite")
    check_upload_limit(max_upload_mb)
    origins = checked_cors_origins(cors_origins)
    path = resolve_model_path(model_dir)
    max_bytes = int(max_upload_mb * 1024 * 1024)
    # Loaded here, not in the lifespan: a model that fails to load (corrupt weights, a folder without
    # model.onnx) used to surface as uvicorn's start-up traceback after `sdd serve` had announced its URL.
    # load_detector checks the path itself, as for sdd score: an .onnx file served without --backend onnx is named
    # as one (a check of its own here said "not a model directory (a file)")
    detector = load_detector(path, device, backend=backend, batch_size=batch_size)
    check_max_duration_fits(  # a limit no upload could pass
        max_duration_s,
        detector.inference.min_duration_s,
        "every upload would be refused",
        name="max_duration_s",
        note=" (sdd serve --max-duration-s)",
    )
    detector.stat_widths()  # probe once now, not on the first request

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # made here, in the serving event loop: an asyncio primitive belongs to the loop that waits on it
        app.state.slots = asyncio.Semaphore(max_concurrent)
        app.state.detector, app.state.stopped = detector, False
        yield
        app.state.detector = None
        app.state.stopped = True  # not_ready says so, rather than "not loaded"

    assets = docs_assets_dir()
    offline_docs = {"docs_url": None, "redoc_url": None} if assets is not None else {}
    app = FastAPI(
        title="sddkit scoring service",
        version=__version__,
        description="Speech deepfake detection: upload audio, get a calibrated score (higher = more bona fide).",
        lifespan=lifespan,
        **offline_docs,
    )
    if assets is not None:
        _install_offline_docs(app, assets)
    if origins:
        # no credentials: the service has no cookies or authentication to share; the content types a form upload
        # and a JSON read send (multipart/form-data, Accept) are CORS-safelisted headers, allowed without a list
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"])
    app.state.detector = None
    app.state.stopped = False
    app.state.limits = {
        "max_upload_mb": max_upload_mb,
        "max_duration_s": max_duration_s,
        "max_concurrent": max_concurrent,
    }
    # what GET /v1/model's "server" cannot read from the detector: sddkit.service.server.uvicorn_config records the
    # connection limit it gives uvicorn here (None: no limit, or another server)
    app.state.server = {"limit_connections": None}
    # the loaded model's own description: GET /v1/model answers from it, and sdd serve prints its source_changed (the
    # one record of a stale export, as sdd score reads it) rather than catching the loader's warning for itself
    app.state.model_info = detector.info
    app.state.cors_origins = origins
    _install_error_handlers(app)

    def detector_or_503(request: Request, body_unread: bool = False):
        """The served detector, else a 503 not_ready (``body_unread``: sent before the request's body is read,
        so it closes the connection, as it does once the service has stopped)."""
        det = request.app.state.detector
        if det is None:
            stopped = request.app.state.stopped
            raise ApiError(
                503, "not_ready", not_ready_message(stopped), headers=CLOSE if body_unread or stopped else None
            )
        return det

    @app.get(
        "/healthz",
        summary="liveness and readiness",
        response_model=None,
        responses={
            200: {
                "model": HealthResponse,
                "description": 'the model is loaded: {"status": "ok", "model_loaded": true}',
            },
            # either body: a server at its --limit-connections answers every request, this one too, before the
            # app sees it (sddkit.service.server), with the error body; the schema said a HealthResponse only
            503: {
                "description": 'the model is not loaded: {"status": "starting", "model_loaded": false} before the '
                'app\'s lifespan has started, {"status": "stopped", "model_loaded": false} (with Connection: close) '
                "once it has ended; or the server is at its connection limit (sdd serve --limit-connections): an "
                "error body of type service_unavailable",
                "content": {
                    "application/json": {
                        "schema": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/HealthResponse"},
                                {"$ref": "#/components/schemas/ErrorResponse"},
                            ]
                        }
                    }
                },
            },
        },
    )
    async def healthz(request: Request) -> dict[str, Any]:
        ready = request.app.state.detector is not None
        if not ready:
            # once the lifespan has ended the model is gone for good: "starting" told a monitor to wait for it; the
            # connection is closed, as not_ready closes it then (detector_or_503)
            stopped = request.app.state.stopped
            status, headers = ("stopped", CLOSE) if stopped else ("starting", None)
            return JSONResponse({"status": status, "model_loaded": False}, status_code=503, headers=headers)
        return {"status": "ok", "model_loaded": True}

    @app.get(
        "/v1/model",
        summary="the served model: components, windows, threshold, calibration",
        response_model=None,
        responses={200: {"model": ModelResponse, "description": "the served model"}, **_NOT_READY},
    )
    async def model(request: Request) -> dict[str, Any]:
        det = detector_or_503(request)
        return model_summary(det, request.app.state.limits, request.app.state.server)

    @app.post(
        "/v1/score",
        summary="score one uploaded audio file",
        response_model=ScoreResponse,
        responses=_ERRORS,
        openapi_extra=_UPLOAD_BODY,
    )
    async def score(request: Request) -> ScoreResponse:
        request.state.started = time.perf_counter()  # for the log line of its outcome (log_outcome)
        det = detector_or_503(request, body_unread=True)
        upload_name, data = await _read_upload(request, max_bytes, max_upload_mb)
        request.state.upload_bytes = len(data)
        async with request.app.state.slots:
            # a client that gave up while waiting for a slot must not hold one for a decode nobody reads
            if await request.is_disconnected():
                raise ApiError(499, "client_closed_request", "the client disconnected before its file was scored")
            result = await run_in_threadpool(_score_bytes, det, data, upload_name, max_duration_s)
        scored = f"{result.duration_s:.2f} s of audio: {result.decision}"
        # A client gone while its file was scored gets no answer, and uvicorn writes no access line for it: this line
        # said "200 scored" all the same. uvicorn marks the request disconnected as soon as it reads the connection's
        # end (sddkit.service.server's cycle also looks for one unread, behind a pipelined request), so the check
        # costs no wait (a client still connected is answered as before).
        if await request.is_disconnected():
            raise ApiError(
                499, "client_closed_request", f"the client disconnected while its file was scored ({scored}, not sent)"
            )
        log_outcome(request, 200, f"scored {scored}")
        return ScoreResponse(
            filename=upload_name,
            score=result.score,
            probability=result.probability,
            decision=result.decision,
            threshold=result.threshold,
            duration_s=result.duration_s,
            raw_score=result.raw_score,
            n_windows=result.n_windows,
            windows=[
                WindowOut(start_s=s, end_s=e, score=v)
                for s, e, v in zip(result.window_starts_s, result.window_ends_s, result.window_scores)
            ],
            weights=result.weights,
        )

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")
        if not root:
            return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=dict(PAGE_CACHE))
        # behind a proxy serving the service under a prefix, the page's relative URLs (static/app.js, v1/score)
        # resolved against /prefix (no trailing slash, which a stripping proxy hands on as /) missed the prefix
        page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        base = f'<base href="{html.escape(root, quote=True)}/">'
        return HTMLResponse(page.replace("<head>", f"<head>\n  {base}", 1), headers=dict(PAGE_CACHE))

    app.mount("/static", PageFiles(directory=STATIC_DIR), name="static")
    _answer_head(app)
    return app


def not_ready_message(stopped: bool) -> str:
    """What a 503 not_ready says. Neither state is transient for a client of ``sdd serve`` (uvicorn runs the lifespan
    before it takes a connection, and ends it once every connection is closed), so it has no Retry-After: before the
    lifespan start-up the model is missing where a server never runs it (uvicorn --lifespan off, the app mounted
    inside another app, whose lifespan alone runs), where "not loaded yet" invited a client to wait for good."""
    if stopped:
        return "the service has stopped (its lifespan has ended): it takes no more requests; retry once it runs again"
    return (
        "the model is not loaded: the app's lifespan start-up, which hands it over, has not run (sdd serve runs it "
        "before it takes a connection; a server run with lifespan off, or a parent app the service is mounted in, "
        "never runs it): serve the app with its lifespan on, or enter it from the parent's lifespan with "
        "'async with app.router.lifespan_context(app)'"
    )


def check_upload_limit(max_upload_mb: float, name: str = "max_upload_mb") -> None:
    """ConfigError for an upload limit (positive and finite, in MB of 1024*1024 bytes) under
    :data:`MIN_UPLOAD_BYTES`: every upload would be refused as too large."""
    limit = int(max_upload_mb * 1024 * 1024)
    if limit < MIN_UPLOAD_BYTES:
        raise ConfigError(
            f"{name} {max_upload_mb:g} is {limit} bytes, under {MIN_UPLOAD_BYTES} (1 KiB): no audio file fits, so "
            "every upload would be refused as too large; give at least 0.001 (MB of 1024*1024 bytes; default 20)"
        )


_ORIGIN = re.compile(r"https?://(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


def checked_cors_origins(origins: Sequence[str], name: str = "cors_origins") -> list[str]:
    """``origins`` as CORS allows them: each an exact origin, ``http(s)://host[:port]`` in lower case without a path,
    as a browser sends it in its ``Origin`` header, or ``*`` (any); ConfigError for anything else, which could never
    match (``https://app.example/``, with its trailing slash, allowed no page at all)."""
    if isinstance(origins, str):  # one origin given bare would be taken as its characters
        origins = [origins]
    for origin in origins:
        if origin != "*" and not (isinstance(origin, str) and _ORIGIN.fullmatch(origin)):
            raise ConfigError(
                f"{name} {origin!r} is not an origin: give scheme://host[:port] exactly as the browser sends "
                "it, in lower case and without a path or trailing slash (e.g. https://app.example.com or "
                "http://localhost:3000), or '*' for any origin"
            )
    return list(dict.fromkeys(origins))


def _answer_head(app: FastAPI) -> None:
    """Give every GET route a HEAD route: uptime checks (``curl -I``) ask with it, and a 405 read as "service
    down". Out of the schema, where a second operation of the same endpoint would repeat its operation id."""
    from fastapi.routing import APIRoute

    for route in list(app.routes):
        if isinstance(route, APIRoute) and "GET" in route.methods and "HEAD" not in route.methods:
            app.add_api_route(route.path, route.endpoint, methods=["HEAD"], include_in_schema=False)


# The page and its script and style sheet are revalidated on every load (a cheap 304 by ETag): without it,
# browsers cached them heuristically (for a tenth of their age since Last-Modified), so after an upgrade a
# reload could pair the new page with the old app.js.
PAGE_CACHE = {"Cache-Control": "no-cache"}


class PageFiles(StaticFiles):
    """The web page's static files, sent with :data:`PAGE_CACHE`."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(PAGE_CACHE)
        return response


def _allowed_methods(request: Request) -> list[str]:
    """The methods of every route of the app at the request's path (GET and HEAD under a static files mount,
    which takes no other method)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] == Match.NONE:
            continue
        if getattr(route, "methods", None):
            methods |= route.methods
        elif isinstance(getattr(route, "app", None), StaticFiles):
            methods |= {"GET", "HEAD"}
    return sorted(methods)


def model_summary(det: Any, limits: dict[str, float], server: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``GET /v1/model`` answers: the model's info, every setting of its ``inference`` section, the service's
    limits and how the server runs the model (device, batch size and threads read from it and from torch now, then
    ``server``: what the server recorded, its connection limit)."""
    import torch

    cfg = det.inference
    info = det.info
    server = {
        "device": str(getattr(det.runner, "device", "cpu")),  # an ONNX runner has none: onnxruntime's CPU provider
        "batch_size": det.batch_size,
        "threads": torch.get_num_threads(),  # process-wide, and what an ONNX session was opened with
        "limit_connections": None,
        **(server or {}),
    }
    # finite numbers only: a checkpoint's meta.json may hold NaN (Python's json writes and reads it), and Starlette's
    # strict JSON encoder then failed the whole answer, a 500 internal_error on every GET /v1/model
    return json_safe(
        {
            "name": info.get("name"),
            "path": info.get("path"),
            "backend": info.get("backend"),
            "architecture": info.get("architecture"),
            "components": info.get("components"),
            "num_parameters": info.get("num_parameters"),
            "weights_digest": info.get("weights_digest"),
            # all of them, not a chosen few: min_duration_s (why a short upload is refused) was left out
            **cfg.to_dict(),
            "window_s": cfg.window_s,
            "outputs": det.stat_widths(),
            "limits": dict(limits),
            "server": server,
            # an ONNX export whose model directory changed since it was exported (the loader's record of it)
            "source_changed": info.get("source_changed"),
            "model": info.get("model"),
            "metadata": info.get("metadata", {}),
            "sddkit_version": __version__,
        }
    )


def _install_offline_docs(app: FastAPI, assets: Path) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their scripts served from ``assets``, not from a CDN."""
    app.mount(DOCS_PREFIX, StaticFiles(directory=assets), name="docs-assets")

    def urls(request: Request) -> tuple[str, str]:
        root = request.scope.get("root_path", "")  # behind a proxy that mounts the service under a prefix
        return f"{root}{app.openapi_url}", f"{root}{DOCS_PREFIX}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        openapi, static = urls(request)
        return get_swagger_ui_html(
            openapi_url=openapi,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{static}/swagger-ui.css",
            swagger_favicon_url=f"{static}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        openapi, static = urls(request)
        return get_redoc_html(
            openapi_url=openapi,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{static}/redoc.standalone.js",
            redoc_favicon_url=f"{static}/favicon.png",
            with_google_fonts=False,
        )


async def _read_upload(request: Request, max_bytes: int, max_upload_mb: float) -> tuple[str | None, bytes]:
    """The uploaded ``file`` part, never buffering more than the limit (plus the envelope)."""
    content_type = request.headers.get("content-type", "")
    # the media type itself, not a prefix: "multipart/form-dataX" would parse as an empty form
    if content_type.split(";", 1)[0].strip().lower() != "multipart/form-data":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the audio as multipart/form-data with a 'file' field (got {content_type or 'no content type'!r})",
            headers=CLOSE,  # answered before the body is read
        )
    cap = max_bytes + _ENVELOPE_BYTES
    too_large = ApiError(413, "payload_too_large", _TOO_LARGE_MSG.format(mb=max_upload_mb), headers=CLOSE)
    declared = request.headers.get("content-length")
    length = cap  # what the upload may take the time of (a chunked body: the limit)
    if declared is not None:
        digits = declared.strip()
        if not re.fullmatch(r"[0-9]+", digits):  # ASCII digits only: str.isdigit() also takes "²"
            raise ApiError(400, "bad_request", f"invalid Content-Length {declared[:40]!r}")
        digits = digits.lstrip("0") or "0"
        # compared by length first: int() refuses strings of over 4300 digits (a ValueError, a 500)
        if len(digits) > len(str(cap)) or int(digits) > cap:
            raise too_large  # refused before reading a byte of the body
        length = int(digits)
    chunks, total = [], 0
    async for chunk in _until_disconnect(request.stream(), total_s=upload_time_limit(length)):
        total += len(chunk)
        if total > cap:
            raise too_large
        chunks.append(chunk)
    request.state.body_read = True  # an answer from here on keeps the connection (_closing)
    body = b"".join(chunks)
    del chunks  # not held twice while it is parsed
    _check_closed(content_type, body)
    parser = _FormParser(request.headers, _once(body), max_files=_MAX_FILES, max_fields=_MAX_FIELDS)
    # The body is in memory already: its file part stays there. Starlette spools a part over 1 MB to a temporary
    # file, so with a full (or read-only) temporary folder every upload over 1 MB was a 500 internal_error, and
    # each one was written to disk and read back for nothing.
    parser.spool_max_size = parser.max_file_size = cap  # (named max_file_size before Starlette 0.40)
    del body  # only the stream holds it now: freed once parsed
    try:
        form = await parser.parse()
    except MultiPartException as exc:  # e.g. no boundary in the content type
        if exc.message.startswith("Too many files"):  # a well-formed body: refused as two files are, not "malformed"
            raise ApiError(
                422, "too_many_files", f"send one file per request; the form holds more than {_MAX_FILES} files"
            ) from None
        if exc.message.startswith("Too many fields"):  # well-formed too: "malformed multipart body" misled
            raise ApiError(
                400,
                "too_many_fields",
                f"the form holds more than {_MAX_FIELDS} text fields; send the audio as a file in the field 'file' "
                "(other fields are ignored)",
            ) from None
        raise ApiError(400, "bad_request", f"malformed multipart body: {_parse_failure(exc, exc.message)}") from None
    try:
        sent = form.getlist("file")
        if len(sent) > 1:  # form.get would silently score the last one
            raise ApiError(422, "too_many_files", f"send one file per request; the field 'file' holds {len(sent)}")
        upload = sent[0] if sent else None
        if not isinstance(upload, UploadFile):
            fields = ", ".join(sorted(set(form.keys()))) or "none"
            if sent:
                # a part without filename= is a text field: what curl -F 'file=<a.wav' sends (-F file=@a.wav a file)
                raise ApiError(
                    422,
                    "missing_field",
                    f"the form field 'file' holds a text value, not a file upload (fields sent: {fields}): "
                    f"{_text_part_reason(parser.text_headers.get('file', {}))}",
                )
            # e.g. curl -F audio=@a.wav: "the form field 'file' holds nothing" did not say that the file was there,
            # under another name
            elsewhere = sorted(set(_file_fields(form)))
            hint = (
                f": the file was sent in the field {', '.join(repr(k) for k in elsewhere)}; name the field 'file' "
                "(e.g. curl -F file=@a.wav)"
                if elsewhere
                else ": send the audio as a file in the field 'file' (e.g. curl -F file=@a.wav)"
            )
            raise ApiError(422, "missing_field", f"the form has no field 'file' (fields sent: {fields}){hint}")
        # a second file under another field name (file2=@b.wav) was dropped without a word: 200 with one score
        files = _file_fields(form)
        if not (upload.filename or upload.size):
            # what a browser sends for a file input named 'file' left empty: a part with filename="" and no bytes,
            # which read as "file is empty (0 bytes)", as if an empty audio file had been chosen
            elsewhere = f"; a file was sent in the field {', '.join(repr(k) for k in files)}" if files else ""
            raise ApiError(
                422,
                "missing_field",
                "no file was chosen: the form field 'file' holds a part with an empty file name (filename=\"\") and "
                f"no bytes, as a browser sends a form submitted without choosing a file{elsewhere}; choose the audio "
                "file (or send it with curl -F file=@a.wav)",
            )
        if len(files) > 1:
            raise ApiError(
                422,
                "too_many_files",
                f"send one file per request, in the field 'file'; the form holds {len(files)} files "
                f"(fields: {', '.join(files)})",
            )
        data = await upload.read()
        if len(data) > max_bytes:  # the body is read in full: the connection may serve the client's next request
            raise ApiError(413, "payload_too_large", too_large.message)
        return upload.filename, data
    finally:
        await form.close()


class _FormParser(MultiPartParser):
    """Starlette's multipart parser, keeping the headers of each text part by field name (the first of a name): a text
    part in the field 'file' with a Content-Type or a ``filename*=`` was meant as a file, and its 422 says why it was
    not read as one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.text_headers: dict[str, dict[bytes, bytes]] = {}

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = getattr(self, "_current_part", None)  # Starlette's own: absent, the 422 says what it says without it
        if part is not None and getattr(part, "file", True) is None:
            self.text_headers.setdefault(part.field_name, dict(getattr(part, "item_headers", [])))


def _text_part_reason(headers: dict[bytes, bytes]) -> str:
    """Why a part of the field 'file' with these (lower-cased) headers was read as a text field, and what to do.

    A part is a file when its Content-Disposition has a ``filename=``. httpx leaves out a file name that is empty
    (``files={"file": ("", data)}``), so that file came as a text part with a Content-Type of its own, which the
    message "its part has no filename=" did not explain; a name given as ``filename*=`` alone (RFC 8187's form,
    which RFC 7578 rules out for forms) is not read either."""
    disposition = headers.get(b"content-disposition", b"").decode("latin-1").lower()
    if "filename*" in disposition:
        return (
            "its part names its file with filename*= only, which form parsers do not read (RFC 7578 4.2); give "
            'the file name as filename="a.wav" (curl -F file=@a.wav does)'
        )
    if b"content-type" in headers:
        kind = _printable(headers[b"content-type"].decode("latin-1"))[:80]
        return (
            f"its part has a Content-Type ({kind}), as a file has, but no file name: an empty file name is left out "
            "by clients such as httpx (files={'file': ('', data)}), and a part without filename= is a text field; "
            "give the file a name, e.g. files={'file': ('a.wav', data)} or curl -F file=@a.wav"
        )
    return "its part has no filename=; send the audio as a file (e.g. curl -F file=@a.wav)"


def _file_fields(form) -> list[str]:
    """The field names of the form's parts that hold a file, once per file: a file input left empty in an HTML form
    sends a part without a name or bytes, which holds none."""
    return [
        key for key, value in form.multi_items() if isinstance(value, UploadFile) and (value.filename or value.size)
    ]


async def _once(body: bytes):
    """``body`` as a stream of one chunk (for Starlette's multipart parser)."""
    yield body


def _parse_failure(exc: BaseException, fallback: str) -> str:
    """What is wrong with a multipart body. Starlette answers "Invalid multipart data." for every error of
    python-multipart's parser, whose own message is further down the exception's chain; a file name of over
    4 KB (a part header line over the parser's limit) read as that vague 400 without a hint of what to change, and
    audio sent as a text part (no filename=) over 1 MB as Starlette's bare "Part exceeded maximum size"."""
    from starlette.formparsers import FormParserError  # python-multipart's, whatever its module name

    link: BaseException | None = exc
    seen: set[int] = set()
    while link is not None and not isinstance(link, FormParserError) and id(link) not in seen:
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    link = link if isinstance(link, FormParserError) else None
    reason = str(link) if link is not None and str(link) else fallback
    if reason == "Maximum header size exceeded":
        limit = _multipart_default("DEFAULT_MAX_HEADER_SIZE")
        size = f"{limit} bytes" if limit else "the parser's limit"
        return (
            f"a part's header line is longer than {size} (python-multipart's limit): "
            "a file name that long? send the file under a shorter name"
        )
    if reason.startswith("Part exceeded maximum size"):  # Starlette's limit on a text (non-file) part
        return (
            f"{reason} A part without a filename= is a text field, not a file: send the audio as a file upload "
            "(e.g. curl -F file=@a.wav)"
        )
    if reason == "Maximum header count exceeded":
        limit = _multipart_default("DEFAULT_MAX_HEADER_COUNT")
        return f"a part has more header lines than {limit or 'the parser allows'} (python-multipart's limit)"
    return reason


def _multipart_default(name: str) -> int | None:
    """A default limit of python-multipart's parser (which Starlette uses unchanged), None if not found."""
    try:
        from python_multipart import multipart
    except ImportError:
        return None
    value = getattr(multipart, name, None)
    return value if isinstance(value, int) else None


def _check_closed(content_type: str, body: bytes) -> None:
    """A 400 for a multipart body without its closing delimiter (``--boundary--``): cut short; or without
    the boundary of its Content-Type at all (a Content-Type set by hand, with another boundary than the body's).

    Starlette's parser drops a part that never ends without a word, so a truncated upload read as
    "the form field 'file' holds nothing", as if the client had named the field wrongly.
    """
    from starlette.formparsers import parse_options_header  # python-multipart's, whatever its module name

    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if boundary and body and b"--" + boundary not in body:
        raise ApiError(
            400,
            "bad_request",
            f"malformed multipart body: no part of it starts with the boundary "
            f"{boundary.decode('latin-1')!r} its Content-Type names (a Content-Type header set by hand, "
            "while the body was written with another boundary?)",
        )
    if boundary and body and b"--" + boundary + b"--" not in body:
        raise ApiError(
            400, "bad_request", "malformed multipart body: it ends before its closing boundary (a cut-off upload?)"
        )


def _score_bytes(det: Any, data: bytes, name: str | None, max_duration_s: float):
    """Decode (bounded) and score in a worker thread."""
    from sddkit.audio.io import decode_audio_bytes
    from sddkit.scoring.api import non_finite_reason

    try:
        x = decode_audio_bytes(data, sample_rate=det.sample_rate, max_duration=max_duration_s, name=name)
    except AudioTooLongError as exc:
        # "over max_duration 600.0 s" named the decoder's keyword, which a client never sees, and no remedy; sdd
        # score and score_file name their own option there, as this names the service's
        longer = AudioTooLongError(f"{exc}{too_long_hint(max_duration_s)}")
        longer.path = exc.path
        raise longer from None
    result = det.score_prepared([det.prepare(x, path=name)])[0]
    reason = non_finite_reason(result)
    if reason is not None:  # the model failed, not the upload: a server error, never a NaN "spoof"
        raise ApiError(500, "non_finite_score", f"{name}: {reason}" if name else reason)
    return result


def too_long_hint(max_duration_s: float) -> str:
    """What the 422 of an upload over ``max_duration_s`` adds: the service's limit, and who sets it."""
    return (
        f"; this service scores at most {max_duration_s:g} s of audio (sdd serve --max-duration-s sets it): "
        "send a shorter file, or cut it into parts"
    )


def upload_time_limit(length: int) -> float:
    """The seconds an upload of ``length`` bytes may take in all: :data:`UPLOAD_IDLE_S` plus its length at
    :data:`UPLOAD_MIN_RATE`."""
    return UPLOAD_IDLE_S + length / UPLOAD_MIN_RATE


async def _until_disconnect(chunks, idle_s: float | None = None, total_s: float | None = None):
    """The body's chunks; a client gone mid-upload ends the request quietly (499) instead of Starlette's
    ClientDisconnect, which uvicorn logged as a full "Exception in ASGI application" traceback, and one whose
    upload stalls for ``idle_s`` (default :data:`UPLOAD_IDLE_S`), or is not over after ``total_s`` (None: no
    limit), gets a 408."""
    idle_s = UPLOAD_IDLE_S if idle_s is None else idle_s
    loop = asyncio.get_running_loop()
    deadline = None if total_s is None else loop.time() + total_s
    pending = chunks.__aiter__()
    while True:
        wait = idle_s if deadline is None else min(idle_s, max(0.0, deadline - loop.time()))
        try:
            chunk = await asyncio.wait_for(pending.__anext__(), wait)
        except StopAsyncIteration:
            return
        except ClientDisconnect:
            raise ApiError(499, "client_closed_request", "the client disconnected during the upload") from None
        except TimeoutError:
            if wait < idle_s:
                raise ApiError(
                    408,
                    "request_timeout",
                    f"the upload was not over after {total_s:.0f} s (an upload may take {UPLOAD_IDLE_S:g} s plus 1 s "
                    f"per {UPLOAD_MIN_RATE // 1024} KiB of its length): too slow a connection",
                    headers=CLOSE,  # the rest of the body is not waited for (RFC 9110 15.5.9)
                ) from None
            raise ApiError(
                408,
                "request_timeout",
                f"no upload data for {idle_s:g} s (a body shorter than its Content-Length?)",
                headers=CLOSE,
            ) from None
        yield chunk


def _error(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        log_outcome(request, exc.status, f"{exc.type}: {exc.message}")
        return _error(exc.status, exc.type, exc.message, headers=_closing(request, exc.headers))

    @app.exception_handler(AudioError)
    async def audio_error(request: Request, exc: AudioError) -> JSONResponse:
        log_outcome(request, 422, f"{error_type(exc)}: {exc}")
        return _error(422, error_type(exc), str(exc), headers=_closing(request))

    @app.exception_handler(SddkitError)
    async def sddkit_error(request: Request, exc: SddkitError) -> JSONResponse:
        # audio errors have their own 422 handler: any other (a CheckpointError from a model that
        # answers in the wrong shape, say) is the server's failure, not the upload's
        log_outcome(request, 500, f"{error_type(exc)}: {exc}")
        return _error(500, error_type(exc), str(exc), headers=_closing(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _HTTP_TYPES.get(exc.status_code, f"http_{exc.status_code}")
        # the exception's headers too: a 405's Allow (RFC 9110 requires it), of every route at that path (the
        # router names the first one's only, and HEAD has routes of its own)
        headers = dict(getattr(exc, "headers", None) or {})
        allowed = _allowed_methods(request) if exc.status_code == 405 else []
        if allowed:  # none found: the exception's own Allow (if any), never an empty one that allows nothing
            headers["Allow"] = ", ".join(allowed)
        # raised before any endpoint read the body (a 404 or 405 to an upload): see CLOSE
        return _error(exc.status_code, type_, str(exc.detail), headers=_closing(request, headers))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "validation_error", str(exc.errors()))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # the type only: an exception's text can name the server's files (an OSError's path) or a library's
        # internals; Starlette re-raises the exception after this answer, so the server's log has its traceback
        message = f"internal server error ({type(exc).__name__}); see the server's log"
        # Always with Connection: close: Starlette re-raises the exception to the server after this answer, and
        # uvicorn then closes the connection whatever the answer said. One raised while the body was being read
        # came without the header (RFC 9110 10.1.1 asks an answer sent before the body is read to say whether the
        # server reads on), as did one sent after it, so a keep-alive client could send its next request on a
        # connection being closed. See CLOSE.
        return _error(500, "internal_error", message, headers={**_cors_headers(request), **CLOSE})


def _has_body(request: Request) -> bool:
    """Whether ``request`` comes with a body (a Content-Length other than 0, or a chunked one)."""
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length.strip().lstrip("0") != "")


def _body_unread(request: Request) -> bool:
    """Whether ``request`` has a body that was not read in full (``_read_upload`` marks one read in
    ``request.state``, which the scope shares with the ``Request`` an error handler is given)."""
    return _has_body(request) and not getattr(request.state, "body_read", False)


def _closing(request: Request, headers: dict[str, str] | None = None) -> dict[str, str] | None:
    """``headers`` (None if empty) with :data:`CLOSE` added when the answer to ``request`` is sent before its body
    was read in full, whatever raised it."""
    merged = {**(headers or {}), **(CLOSE if _body_unread(request) else {})}
    return merged or None


def log_outcome(request: Request, status: int, what: str) -> None:
    """Log what came of ``request`` (answered ``status``) on :data:`LOG`, with its upload's size and the time it took
    where known: an ERROR for a 5xx (the server's failure), INFO else. ``what`` is made one line of printable
    characters: it may quote the client's file name, which can hold a terminal escape sequence (ESC passes multipart
    parsing) that would act on the operator's terminal or log viewer."""
    client = request.client
    line = f"{client.host}:{client.port} - " if client is not None else ""
    line += f"{request.method} {request.url.path} {status}: {_printable(what)}"
    size = getattr(request.state, "upload_bytes", None)
    started = getattr(request.state, "started", None)
    details = ([f"upload of {size} bytes"] if size is not None else []) + (
        [f"{time.perf_counter() - started:.3f} s"] if started is not None else []
    )
    if details:
        line += f" ({', '.join(details)})"
    LOG.log(logging.ERROR if status >= 500 else logging.INFO, "%s", line)


def _printable(text: str) -> str:
    """``text`` with every non-printable character (newline, carriage return, escape, ...) escaped as Python writes
    it, cut to :data:`_LOG_MESSAGE_CHARS`."""
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text if len(text) <= _LOG_MESSAGE_CHARS else text[: _LOG_MESSAGE_CHARS - 3] + "..."


def _cors_headers(request: Request) -> dict[str, str]:
    """The CORS headers of an answer to ``request`` made outside CORSMiddleware: Starlette answers an unhandled
    exception from the outermost middleware, so a page of an allowed origin read the 500 as a network error."""
    allowed = getattr(request.app.state, "cors_origins", None) or []
    origin = request.headers.get("origin")
    if "*" in allowed:
        return {"Access-Control-Allow-Origin": "*"}
    if origin is not None and origin in allowed:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}
