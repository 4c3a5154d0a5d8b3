"""The uvicorn configuration ``sdd serve`` runs the service with: ``uvicorn_config(app, ...)``, its logging
(``log_config``: the service's own lines beside uvicorn's) and its server (``ServiceServer``: a second Ctrl-C or
SIGTERM ends it at once).

uvicorn closes an idle kept-alive connection after ``timeout_keep_alive``, but has no deadline for the request head:
a connection that sends nothing, or half a request head, stays open (and counted against ``limit_concurrency``) until
the client closes it. The service runs on uvicorn's h11 protocol with such a deadline added
(:data:`sddkit.service.app.REQUEST_HEAD_TIMEOUT_S`); the body of a request is the app's to time out (its 408s).
A client gone is seen by the app's check for a disconnect even when uvicorn has stopped reading its connection
(:class:`PeerCheckingCycle`).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import signal
import socket
import sys
import types
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from sddkit.service.app import OVER_LIMIT_RETRY_AFTER_S, REQUEST_HEAD_TIMEOUT_S

# what a request past --limit-connections gets: uvicorn's own answer was a text/plain "Service Unavailable", while
# /openapi.json promises every error as JSON {"error": {"type", "message"}}, so a client generated from the schema
# failed to decode the 503 of a busy server instead of reading it as one and retrying
OVER_LIMIT_TYPE = "service_unavailable"
OVER_LIMIT_MESSAGE = (
    "the service has as many connections open as it takes (sdd serve --limit-connections): retry after "
    f"{OVER_LIMIT_RETRY_AFTER_S} s (the Retry-After header)"
)


async def json_service_unavailable(scope: Any, receive: Any, send: Any) -> None:
    """uvicorn's ``service_unavailable`` ASGI app, answering the service's JSON error body."""
    body = json.dumps({"error": {"type": OVER_LIMIT_TYPE, "message": OVER_LIMIT_MESSAGE}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(OVER_LIMIT_RETRY_AFTER_S).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def peer_closed(transport: asyncio.BaseTransport) -> bool:
    """Whether the client of ``transport`` has closed or reset its connection, read from its socket without taking
    anything off it: its end of stream (FIN) or reset is next in the socket's buffer. False when it is not (nothing
    pending, or data pending: what follows that data is unknown) or the socket cannot be asked."""
    raw = transport.get_extra_info("socket")
    dontwait = getattr(socket, "MSG_DONTWAIT", 0)
    if raw is None or not dontwait or transport.is_closing():
        return False
    try:
        with raw.dup() as sock:  # a copy of its descriptor: asyncio's TransportSocket reads nothing itself
            return sock.recv(1, socket.MSG_PEEK | dontwait) == b""
    except (BlockingIOError, InterruptedError):  # still open, nothing sent since
        return False
    except ConnectionError:  # reset by the client (a socket closed with SO_LINGER 0, a killed process's unread data)
        return True
    except OSError:  # out of descriptors, say: as uvicorn would, taken as still there
        return False


class PeerCheckingCycle(RequestResponseCycle):
    """uvicorn's request-response cycle, whose ``http.disconnect`` also comes when the client's end of stream or reset
    is waiting, unread, in the socket.

    uvicorn learns of a closed connection by reading it, and stops reading once a request is complete and a second
    one, pipelined, has come in behind it (it has nowhere to put more): a client that sent two requests and hung up
    while the first was scored was still connected for the app, which logged "200: scored" for an answer nobody
    received (its 499 client_closed_request). Once the request's body is all in, a check for a disconnect looks at
    the socket itself, and a client gone is treated as uvicorn treats one it reads the end of: its connection closed
    (the pipelined request is dropped, as it is when uvicorn reads the end of stream after the first answer)."""

    async def receive(self) -> Any:
        if not (self.disconnected or self.response_complete or self.more_body) and peer_closed(self.transport):
            self.disconnected = True
            self.transport.close()  # as uvicorn's eof_received does: connection_lost follows, and wakes any waiter
        return await super().receive()


def _with_json_over_limit(method: Any) -> Any:
    """``method`` (uvicorn's ``handle_events``) answering a request past the limit with
    :func:`json_service_unavailable`, and running each request in a :class:`PeerCheckingCycle`: uvicorn looks its
    ``service_unavailable`` and ``RequestResponseCycle`` up in its module's globals, so this copy gets its own globals
    rather than patching uvicorn's module for every server in the process. A name the method no longer uses is left
    out, and a method that uses neither is left as it is."""
    code = method.__code__
    ours = {"service_unavailable": json_service_unavailable, "RequestResponseCycle": PeerCheckingCycle}
    ours = {name: value for name, value in ours.items() if name in code.co_names}
    if not ours or code.co_freevars:
        return method
    scope = {**method.__globals__, **ours}
    copy = types.FunctionType(code, scope, method.__name__, method.__defaults__, method.__closure__)
    copy.__kwdefaults__ = method.__kwdefaults__
    copy.__qualname__, copy.__doc__ = method.__qualname__, method.__doc__
    return copy


class HeadDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection that has not sent a complete request head within
    ``head_timeout_s`` of its start or of the end of its last response, and answering a request past
    ``limit_concurrency`` with the service's JSON error body (:func:`json_service_unavailable`); its requests run in
    a :class:`PeerCheckingCycle`."""

    head_timeout_s: float = REQUEST_HEAD_TIMEOUT_S  # uvicorn_config sets it on a subclass: the value read then
    handle_events = _with_json_over_limit(H11Protocol.handle_events)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start the next, pipelined, request at once
        self._await_head()

    def _await_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_overdue, self.cycle)

    def _head_overdue(self, cycle: Any) -> None:
        self._head_timer = None
        # a new cycle is a head that came in time; an unfinished one (a pipelined request begun when the timer was
        # set) is the app's to time out, and arms a new deadline when it ends
        if self.cycle is not cycle or (cycle is not None and not cycle.response_complete):
            return
        if not self.transport.is_closing():
            self.transport.close()


class ServiceServer(uvicorn.Server):
    """uvicorn's server, ended at once by a second SIGTERM, as every sdd command is, or a second Ctrl-C.

    On a first SIGINT or SIGTERM uvicorn stops taking connections and waits for the requests in progress, an upload
    still arriving included (up to its 408: a minute for one that stalls, about 12 min for 20 MB trickled at the
    slowest rate allowed). A second SIGTERM was taken as the first one again, so ``kill`` could not end that wait;
    a second Ctrl-C (uvicorn's "force quit") cancelled the requests in progress, which logged a traceback each and
    answered a text/plain 500 rather than the service's JSON error. Both now end the process as the system's
    default action does, after one log line: the service writes nothing that could be left half-done (an upload is
    held in memory), and each client sees its connection closed, an answer it can retry on."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.should_exit and sig in (signal.SIGINT, signal.SIGTERM):
            logging.getLogger("uvicorn.error").warning(
                "stopped at once by a second %s: the requests in progress are dropped", signal.Signals(sig).name
            )
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)
        super().handle_exit(sig, frame)


class StderrHandler(logging.StreamHandler):
    """A handler writing to ``sys.stderr`` as it is when a line is written, as logging's last-resort handler does (a
    stream bound when logging is configured is gone once a test's captured stderr, say, has been closed)."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        logging.Handler.__init__(self, level)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr


def log_config(log_level: str = "info") -> dict[str, Any]:
    """uvicorn's logging configuration, with the service's own logger (``sddkit.service``: what came of each scoring
    request, see :func:`sddkit.service.app.log_outcome`) printed to stderr in uvicorn's format, at ``log_level``."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["sddkit"] = {"()": StderrHandler, "formatter": "default"}
    level = uvicorn.config.LOG_LEVELS.get(str(log_level).lower(), logging.INFO)
    config["loggers"]["sddkit.service"] = {"handlers": ["sddkit"], "level": level, "propagate": False}
    return config


def uvicorn_config(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    limit_connections: int | None = None,
    root_path: str = "",
    head_timeout_s: float | None = None,
    keep_alive_s: float | None = None,
) -> uvicorn.Config:
    """uvicorn's settings for ``app``: ``limit_connections`` is its ``limit_concurrency`` (recorded in the service's
    ``app.state.server`` for ``GET /v1/model``); a connection without a complete request head is closed after
    ``head_timeout_s``, a kept-alive idle one after ``keep_alive_s`` (None:
    :data:`~sddkit.service.app.REQUEST_HEAD_TIMEOUT_S` and :data:`~sddkit.service.app.KEEP_ALIVE_S`)."""
    from sddkit.errors import ConfigError
    from sddkit.service import app as service

    head = service.REQUEST_HEAD_TIMEOUT_S if head_timeout_s is None else head_timeout_s
    keep_alive = service.KEEP_ALIVE_S if keep_alive_s is None else keep_alive_s
    if not (head > 0 and keep_alive > 0):  # written so that NaN fails too
        raise ConfigError(f"head_timeout_s and keep_alive_s must be positive, got {head!r} and {keep_alive!r}")
    protocol = type("HeadDeadlineH11Protocol", (HeadDeadlineH11Protocol,), {"head_timeout_s": float(head)})
    server = getattr(getattr(app, "state", None), "server", None)
    if isinstance(server, dict):  # the service's GET /v1/model says the limit its server runs with
        server["limit_connections"] = limit_connections
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=log_config(log_level),
        limit_concurrency=limit_connections,
        root_path=root_path,
        http=protocol,
        timeout_keep_alive=keep_alive,  # type: ignore[arg-type]  # a float works: it goes to loop.call_later
    )
