"""Review 4 of the scoring path's memory: windows of long inputs, and decoders left queued by Ctrl-C."""

from __future__ import annotations

import threading
import time
import tracemalloc

import numpy as np
import pytest
import soxr
import torch
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.audio.crop import fixed_windows
from sddkit.cli.main import main
from sddkit.scoring import batch
from sddkit.scoring.api import ScoringDetector, load_detector
from sddkit.scoring.inference import InferenceConfig

W, HOP = 4000, 2000


def _mean_runner(windows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    m = windows.mean(axis=1, dtype=np.float64)
    return np.stack([-m, m], axis=1), {}


def _noise(n: int, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _old_batches(inputs: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """The batches the model got before: every input's fixed_windows joined, cut every batch_size rows."""
    windows = np.concatenate([np.asarray(fixed_windows(x, W, HOP), dtype=np.float32) for x in inputs])
    return [windows[i : i + batch_size] for i in range(0, windows.shape[0], batch_size)]


def test_the_model_gets_the_same_batches_as_from_the_windows_built_in_full():
    """Windows are now cut batch by batch out of the signal: the same samples, in the same batches (across
    inputs too), for a last window aligned to the end, a repeat-padded short input and a resampled one."""
    seen: list[np.ndarray] = []

    def recording(windows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        seen.append(np.array(windows, copy=True))
        return _mean_runner(windows)

    det = ScoringDetector(recording, InferenceConfig(window_samples=W, hop_samples=HOP), batch_size=3)
    det.stat_widths()  # its probes first
    inputs = [_noise(5 * W + 123, 1), _noise(W - 1500, 2), _noise(W, 3), _noise(3 * W, 4), _noise(W + 1, 5)]
    seen.clear()
    results = det.score_many(inputs)
    expected = _old_batches(inputs, 3)
    assert [b.shape for b in seen] == [b.shape for b in expected]
    assert all(np.array_equal(a, b) and a.dtype == np.float32 for a, b in zip(seen, expected))
    assert [r.n_windows for r in results] == [fixed_windows(x, W, HOP).shape[0] for x in inputs]
    assert all(b.flags.c_contiguous and b.flags.writeable for b in seen)

    seen.clear()
    long = _noise(7 * 22050 + 17, 6)
    det.score(long, 22050)
    at_rate = soxr.resample(long, 22050, 16000, quality="HQ").astype(np.float32)
    expected = _old_batches([at_rate], 3)
    assert len(seen) == len(expected) and all(np.array_equal(a, b) for a, b in zip(seen, expected))
    # the windows, all of them, are still there for whoever asks
    prepared = det.prepare(at_rate)
    assert np.array_equal(prepared.windows, fixed_windows(at_rate, W, HOP))


def _raw(det: ScoringDetector, windows: np.ndarray) -> np.ndarray:
    logits = det.runner(windows)[0]
    return logits[:, 1].astype(np.float64) - logits[:, 0]


def test_scores_of_a_real_model_are_those_of_the_windows_built_in_full(tmp_path):
    torch.set_num_threads(1)
    det = load_detector(save_tiny_lcnn(tmp_path / "m", inference={"window_samples": W, "hop_samples": HOP}))
    det.batch_size = 4
    x = _noise(9 * W + 777, 7)
    result = det.score(x, 16000)
    # batch by batch as before (a forward's numbers may depend on its batch size)
    raw = np.concatenate([_raw(det, b) for b in _old_batches([x], 4)])
    cal = det.inference.calibration
    assert result.window_scores == [float(v) for v in cal.apply(raw)]
    assert result.score == float(cal.apply(float(np.mean(raw))))
    short = _noise(W // 2, 8)
    short_raw = _raw(det, _old_batches([short], 4)[0])
    assert det.score(short, 16000).window_scores == [float(v) for v in cal.apply(short_raw)]


@pytest.mark.parametrize("call", ["score", "score_many", "resampled"])
def test_a_long_input_is_not_copied_into_all_its_windows(call):
    """prepare() built every window of an input in one array, twice the input at a half-window hop (and
    score_many then joined those of all inputs in a third copy): peak memory was 2-4 times the input."""
    det = ScoringDetector(_mean_runner, InferenceConfig(window_samples=W, hop_samples=HOP), batch_size=4)
    det.stat_widths()
    x = _noise(30 * 16000, 9)
    tracemalloc.start()
    try:
        if call == "score":
            det.score(x, 16000)
        elif call == "score_many":
            det.score_many([x, x[: 12 * 16000]])
        else:
            det.score(x, 22050)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * x.nbytes  # what remains: validation's temporaries, a batch, the result


def _tiny_detector() -> ScoringDetector:
    return ScoringDetector(_mean_runner, InferenceConfig(window_samples=W, hop_samples=HOP), batch_size=4)


def _join_decoders(timeout: float = 3.0) -> None:
    for t in threading.enumerate():
        if t.name.startswith("sdd-decode"):
            t.join(timeout)


def test_an_interrupt_drops_the_queued_decodes(tmp_path, monkeypatch):
    """Ctrl-C while decoding workers ran: the decodes queued ahead (up to 2 per worker) were all run before
    the process could end. Now the queued ones are cancelled; only those already running finish."""
    paths = [str(tmp_path / f"f{i}.wav") for i in range(10)]
    release = threading.Event()
    started: list[str] = []
    lock = threading.Lock()

    def slow(detector, path, max_duration):  # type: ignore[no-untyped-def]
        with lock:
            started.append(path)
        if path != paths[0]:
            release.wait(10)  # a slow decode
        return f"{path}: cannot decode"

    class Interrupting:
        done: set[str] = set()

        def write(self, path, result, error=None):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt  # Ctrl-C while the first row is written

        def sync(self) -> None:
            pass

    monkeypatch.setattr(batch, "_decode", slow)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        batch.score_files(_tiny_detector(), paths, Interrupting(), workers=2, progress=False)  # type: ignore[arg-type]
    waited = time.monotonic() - t0
    release.set()
    _join_decoders()
    assert waited < 5  # not held by the two decodes still running
    # the first file, and at most the two decodes running when it was interrupted
    assert len(started) <= 3 and set(started) <= set(paths[:3])


def test_an_interrupt_while_waiting_for_a_decode_drops_the_queue(tmp_path, monkeypatch):
    """The same when Ctrl-C comes while the main thread waits for the next decoded file."""
    paths = [str(tmp_path / f"f{i}.wav") for i in range(10)]
    release = threading.Event()
    started: list[str] = []
    lock = threading.Lock()

    def slow(detector, path, max_duration):  # type: ignore[no-untyped-def]
        with lock:
            started.append(path)
        release.wait(10)
        return f"{path}: cannot decode"

    class Waiting:
        def result(self, timeout=None):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt

    monkeypatch.setattr(batch, "_decode", slow)
    from concurrent.futures import ThreadPoolExecutor  # the decoding pool's (sddkit.threads.in_order_ahead)

    real_submit = ThreadPoolExecutor.submit
    calls = []

    def submit(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        fut = real_submit(self, fn, *args, **kwargs)
        calls.append(fut)
        return Waiting() if len(calls) == 1 else fut  # the wait for the first file is interrupted

    monkeypatch.setattr(ThreadPoolExecutor, "submit", submit)
    writer = type("W", (), {"done": set(), "write": lambda *a, **k: None, "sync": lambda self: None})()
    with pytest.raises(KeyboardInterrupt):
        batch.score_files(_tiny_detector(), paths, writer, workers=2, progress=False)  # type: ignore[arg-type]
    cancelled = sum(f.cancelled() for f in calls)
    release.set()
    _join_decoders()
    assert cancelled >= len(calls) - 2 and len(started) + cancelled == len(calls)


def test_an_interrupted_run_leaves_whole_rows_and_resumes_to_the_full_output(tmp_path, monkeypatch):
    """Dropping the queued decodes changes nothing of what was written: whole rows, and a resume that
    scores the rest gives the rows of an uninterrupted run."""
    torch.set_num_threads(1)
    model = save_tiny_lcnn(tmp_path / "m", inference={"window_samples": W, "hop_samples": HOP})
    files = [str(write_noise_wav(tmp_path / "a" / f"f{i}.wav", 0.3 + 0.1 * i, seed=i)) for i in range(8)]
    args = ["score", *files, "--model", str(model), "--batch-size", "2", "--workers", "2", "--quiet", "--windows"]
    assert main([*args, "--out", str(tmp_path / "full.csv")]) == 0

    decode, real = batch._decode, ScoringDetector.score_prepared
    calls = {"n": 0}

    def slow(detector, path, max_duration):  # type: ignore[no-untyped-def]
        time.sleep(0.2)
        return decode(detector, path, max_duration)

    def interrupted(self, items, on_windows=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:  # Ctrl-C in the model's third batch
            raise KeyboardInterrupt
        return real(self, items, on_windows=on_windows)

    monkeypatch.setattr(batch, "_decode", slow)
    monkeypatch.setattr(ScoringDetector, "score_prepared", interrupted)
    out = tmp_path / "part.csv"
    assert main([*args, "--out", str(out)]) == 130
    _join_decoders()
    _, part = batch.read_rows(out)
    _, full = batch.read_rows(tmp_path / "full.csv")
    assert 0 < len(part) < len(files) and part == full[: len(part)]
    monkeypatch.setattr(ScoringDetector, "score_prepared", real)
    assert main([*args, "--out", str(out)]) == 0
    assert batch.read_rows(out) == batch.read_rows(tmp_path / "full.csv")
    assert batch.read_rows(batch.windows_path(out)) == batch.read_rows(batch.windows_path(tmp_path / "full.csv"))
