"""``sdd serve [--model DIR]``: run the HTTP scoring service (FastAPI + uvicorn) with its web page."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import re
import socket
import sys
import warnings
from collections.abc import Iterator


def register(sub: argparse._SubParsersAction) -> None:
    from sddkit.scoring.allocator import add_allocator_argument

    p = sub.add_parser("serve", help="run the HTTP scoring service and web page (POST /v1/score, GET /)")
    p.add_argument(
        "--model",
        default=None,
        help="model directory, or .onnx file with --backend onnx (default: the bundled default model)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; the service has no authentication, so "
        "a non-loopback address, e.g. 0.0.0.0, is warned about)",
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=20.0,
        help="largest accepted upload in MB of 1024*1024 bytes, at least 0.001 (default 20)",
    )
    p.add_argument("--max-duration-s", type=float, default=600.0, help="longest accepted audio (default 600 s)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="inference engine (default torch)")
    p.add_argument(
        "--device", default="cpu", help="torch device (cpu, cuda, ...; default cpu); --backend onnx runs on cpu"
    )
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass of one request (default 16)")
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=2,
        help="requests decoded and scored at once; more wait for a slot (default 2)",
    )
    p.add_argument(
        "--limit-connections",
        type=int,
        default=None,
        metavar="N",
        help="uvicorn's connection limit: with N - 1 connections open, a new one is answered 503 at once (default: "
        "no limit). Each waiting upload is held in memory, up to --max-upload-mb, so this bounds a burst's memory. "
        "Idle connections count too, until they are closed: one that sends no complete request head within 10 s, "
        "a kept-alive one 5 s after its last response",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages served from ORIGIN (scheme://host[:port], e.g. https://app.example.com) call the service "
        "from a browser (CORS, GET and POST); repeat it for more origins; '*' allows any (default: none, pages of "
        "the service's own origin only)",
    )
    p.add_argument(
        "--root-path",
        default="",
        metavar="PREFIX",
        help="the path a reverse proxy serves the service under and strips from the requests it passes on (e.g. "
        "/sdd for https://host/sdd/): /docs and /redoc load the schema and their scripts under it, and the schema "
        "names it as its server (default: none, the service at the root)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level of uvicorn's lines and of the service's own, one per scoring request (default info)",
    )
    add_allocator_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # the service's dependencies first: one missing is said (sdd's one line) before a port is bound or a model loaded
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401

    from sddkit.cli.options import check_minimums, check_paths_given, check_positive, set_torch_threads
    from sddkit.errors import ConfigError
    from sddkit.scoring.allocator import tune_malloc

    # Checked before the model loads: uvicorn would fail only at bind time, with a traceback.
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {args.port}")
    check_paths_given(args, "model")
    check_minimums(args, batch_size=1, threads=1, max_concurrent=1)
    if args.limit_connections is not None and args.limit_connections <= args.max_concurrent:
        # uvicorn counts the connection being answered: a limit of N serves N - 1 at once
        raise ConfigError(
            f"--limit-connections must exceed --max-concurrent ({args.max_concurrent}), got {args.limit_connections}"
        )
    check_positive(args, "max_upload_mb", "max_duration_s")
    for flag, value in (("--max-upload-mb", args.max_upload_mb), ("--max-duration-s", args.max_duration_s)):
        if value == float("inf"):  # 0 (no limit) is refused: so is inf, its other spelling
            raise ConfigError(
                f"{flag} must be finite: the service bounds every request (an upload is buffered, and its decoded "
                "audio held in memory: a few MB of Opus decode to hours)"
            )
    from sddkit.service.app import check_upload_limit, checked_cors_origins

    check_upload_limit(args.max_upload_mb, name="--max-upload-mb")  # 1e-9 MB: 0 bytes, every upload a 413
    root_path = checked_root_path(args.root_path)
    cors_origins = checked_cors_origins(args.cors_origin, name="--cors-origin")
    from sddkit.scoring.api import check_backend_device

    check_backend_device(args.backend, args.device)
    from sddkit.service.app import create_app
    from sddkit.service.server import ServiceServer, uvicorn_config

    tune_malloc(args.allocator)
    set_torch_threads(args.threads)

    from sddkit.scoring.onnx_export import StaleExportWarning

    # Bound (not yet listening: a client is refused until the model is loaded) before the model loads and the URL
    # is announced: a port in use is a one-line error at once (it came after the model's load, seconds later;
    # uvicorn printed the URL, then its own bind error, and exited 3), and --port 0 announces the port chosen.
    sock = listen_socket(args.host, args.port)
    with warnings.catch_warnings(), _closed_on_error(sock):
        # said below from the model's info (its source_changed, as sdd score and GET /v1/model read it), once
        warnings.simplefilter("ignore", StaleExportWarning)
        app = create_app(
            args.model,
            max_upload_mb=args.max_upload_mb,
            max_duration_s=args.max_duration_s,
            device=args.device,
            backend=args.backend,
            batch_size=args.batch_size,
            max_concurrent=args.max_concurrent,
            cors_origins=cors_origins,
        )
    stale = app.state.model_info.get("source_changed")
    if stale:  # an export whose model was recalibrated or retrained since: a line of our own
        print(f"sdd serve: warning: {stale}", file=sys.stderr)
    address, port = sock.getsockname()[:2]
    print(
        f"sdd serve: {service_url(local_host(args.host, address), port)} "
        "(OpenAPI schema at /openapi.json, Swagger UI at /docs)",
        file=sys.stderr,
    )
    exposed = exposure_warning(address)
    if exposed:
        print(f"sdd serve: warning: {exposed}", file=sys.stderr)
    config = uvicorn_config(
        app,
        host=args.host,
        port=port,
        log_level=args.log_level,
        limit_connections=args.limit_connections,
        root_path=root_path,
    )
    ServiceServer(config).run(sockets=[sock])
    return 0


def checked_root_path(prefix: str) -> str:
    """``--root-path`` without its trailing slashes ("/" is none); ConfigError for anything but an absolute URL
    path of RFC 3986 path characters (uvicorn encodes it as ASCII in every request: "/é" would fail each one)."""
    from sddkit.errors import ConfigError

    path_chars = r"[A-Za-z0-9/._~!$&'()*+,;=:@-]+"
    if prefix and not (prefix.startswith("/") and "//" not in prefix and re.fullmatch(path_chars, prefix)):
        raise ConfigError(
            "--root-path must be a URL path such as /sdd (a '/', then letters, digits, '/' and - . _ ~ ! $ & ' ( ) "
            f"* + , ; = : @), got {prefix!r}"
        )
    return prefix.rstrip("/")


def service_url(host: str, port: int) -> str:
    """The URL a client opens: an IPv6 address is bracketed (``http://[::1]:8000/``)."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def local_host(host: str, address: str) -> str:
    """The host of the announced URL: ``host``, but loopback for a wildcard address (``--host 0.0.0.0`` or ``::``,
    every interface), which is no address to connect to (Windows refuses it, and browsers block it)."""
    ip = _ip(address)
    if ip is None or not ip.is_unspecified:
        return host
    return "127.0.0.1" if ip.version == 4 else "::1"


def exposure_warning(address: str) -> str | None:
    """What to tell the user when the service listens beyond this machine (None on a loopback address): it has no
    authentication, so whoever reaches it can upload files to score and read ``/v1/model``, which names the
    model's path on this machine."""
    ip = _ip(address)
    if ip is not None and ip.is_loopback:
        return None
    where = "every network interface" if ip is not None and ip.is_unspecified else address
    return (
        f"listening on {where}: other machines can reach the service, which has no authentication (anyone "
        "can score files and read /v1/model, which names the model's path here); use --host 127.0.0.1 for this "
        "machine only"
    )


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is not part of it
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback (Python < 3.13 says it is not)
    return mapped if mapped is not None else ip


@contextlib.contextmanager
def _closed_on_error(sock: socket.socket) -> Iterator[None]:
    """Close ``sock`` when the block raises (a model that does not load leaves no bound port behind)."""
    try:
        yield
    except BaseException:
        sock.close()
        raise


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), as uvicorn binds it (SO_REUSEADDR); ConfigError when it cannot be."""
    from sddkit.errors import ConfigError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: {exc.strerror or exc}") from None
    # IPv4 when the host has such an address, as uvicorn binds (IPv6 only for an IPv6 host): a name with both
    # (localhost is ::1 too in Docker, Fedora, macOS, listed first) listened on [::1] only, refusing 127.0.0.1
    ipv4 = [info for info in infos if info[0] == socket.AF_INET]
    family, kind, proto, _, address = (ipv4 or infos)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock
