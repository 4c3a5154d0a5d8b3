"""Latency and throughput of ``sdd serve`` with concurrent clients on 127.0.0.1 (JSON on stdout).

    python benchmarks/bench_service.py --model DIR [--clients 8] [--requests 160] [--max-seconds 120]
                                       [--seconds 4] [--threads 2] [--allocator tuned|system]
    python benchmarks/bench_service.py --demo-model lcnn     # random-weight model, to check the script runs

Starts ``sdd serve`` in a subprocess on a free loopback port, waits for ``/healthz``, sends a few
warm-up requests, then ``--clients`` threads POST the same speech-like ``--seconds`` WAV to
``/v1/score`` until ``--requests`` requests are done or ``--max-seconds`` have passed (both bounds
always hold), and stops the server. Reports p50/p90/p99/max latency, throughput and errors.
Traffic only ever goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from sddkit.errors import SddkitError
from sddkit.scoring.allocator import ALLOCATORS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_score import SR, demo_model, speech_like  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(SddkitError):
    """``sdd serve`` did not start (its own message is on stderr above) or did not answer in time."""


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # e.g. --model is no model directory: sdd serve said why on stderr
            raise ServerError(f"sdd serve exited with code {proc.returncode} before it answered (its error above)")
        try:
            if httpx.get(url + "/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ServerError(f"sdd serve did not answer {url}/healthz within {timeout:g} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model directory")
    src.add_argument("--demo-model", choices=["lcnn", "aasist_l", "aasist"], help="random-weight model (smoke test)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=160, help="total requests (bound)")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="time bound of the measured phase")
    ap.add_argument("--seconds", type=float, default=4.0, help="duration of the uploaded audio")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--allocator", choices=ALLOCATORS, default="tuned", help="the server's --allocator")
    ap.add_argument("--max-concurrent", type=int, default=2, help="the server's --max-concurrent")
    args = ap.parse_args()
    from sddkit.cli.options import require_positive

    require_positive(ap, args, "clients", "requests", "max_seconds", "seconds", "threads", "max_concurrent")
    if args.warmup < 0:
        ap.error(f"--warmup must be 0 or more, got {args.warmup}")

    with tempfile.TemporaryDirectory(prefix="bench_service_") as tmp:
        model = Path(args.model) if args.model else demo_model(args.demo_model, Path(tmp))
        buf = io.BytesIO()
        sf.write(buf, speech_like(args.seconds, 0), SR, format="WAV", subtype="PCM_16")
        payload = buf.getvalue()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "sddkit.cli.main", "serve", "--model", str(model), "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--threads", str(args.threads), "--log-level", "warning"]
        cmd += ["--allocator", args.allocator, "--max-concurrent", str(args.max_concurrent)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen(cmd, env=env)
        try:
            wait_ready(url, proc)
            with httpx.Client(base_url=url, timeout=120.0) as c:
                for _ in range(args.warmup):
                    c.post("/v1/score", files={"file": ("w.wav", payload, "audio/wav")}).raise_for_status()
                info = c.get("/v1/model").json()
            result = run_clients(url, payload, args)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    result.update(
        model=str(args.model or f"demo:{args.demo_model}"),
        num_parameters=info.get("num_parameters"),
        audio_seconds=args.seconds,
        clients=args.clients,
        server_threads=args.threads,
        allocator=args.allocator,
        max_concurrent=args.max_concurrent,
    )
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 else 1


def run_clients(url: str, payload: bytes, args: argparse.Namespace) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    issued = {"n": 0}
    start = time.perf_counter()
    deadline = start + args.max_seconds

    def take() -> bool:
        with lock:
            if issued["n"] >= args.requests or time.perf_counter() >= deadline:
                return False
            issued["n"] += 1
            return True

    def client() -> None:
        with httpx.Client(base_url=url, timeout=max(30.0, args.max_seconds)) as c:
            while take():
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/score", files={"file": ("x.wav", payload, "audio/wav")})
                    ok = r.status_code == 200
                    detail = f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, f"{type(exc).__name__}: {exc}"
                dt = time.perf_counter() - t0
                with lock:
                    (latencies.append(dt) if ok else errors.append(detail))

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000.0
    pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if lat.size else (lambda q: None)
    return {
        "requests_ok": int(lat.size),
        "errors": len(errors),
        "first_errors": errors[:3],
        "wall_s": round(wall, 2),
        "throughput_rps": round(lat.size / wall, 2) if wall > 0 else None,
        "audio_x_real_time": round(lat.size * args.seconds / wall, 1) if wall > 0 else None,
        "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": pct(100)},
    }


if __name__ == "__main__":
    from sddkit.errors import run_script

    run_script(main, "bench_service")
