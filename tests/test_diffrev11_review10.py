"""Review 11 of this session's diff: progress lines without a standard error and at a run's end, and the codec
delays measured before the loader's workers start only where those workers are forked (and so inherit them)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from sddkit import progress
from sddkit.augment import codecs

SR = 16000

# --- progress in a log --------------------------------------------------------------------------------------------


def test_log_progress_without_a_stderr_writes_nothing_to_stdout(monkeypatch, capsys):
    # `sdd robustness ... 2>&- > table.txt`: Python sets sys.stderr to None, and print(file=None) writes to stdout,
    # so the progress lines went into the table (or a piped output) instead of nowhere
    monkeypatch.setattr(sys, "stderr", None)
    bar = progress.progress_bar(total=3, desc="sdd robustness", unit="file")
    assert isinstance(bar, progress.LogProgress)
    bar.interval = 0.0
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert capsys.readouterr().out == ""


def _clock(monkeypatch) -> None:
    """progress's own clock (only its module's) 7 s on at every reading."""
    from types import SimpleNamespace

    ticks = iter(range(0, 100_000, 7))
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: float(next(ticks))))


def test_log_progress_ends_with_a_line_where_the_run_ended(monkeypatch):
    # the last periodic line was up to a minute old when the run ended: a log of a finished training run ended at
    # "train: 880/900 it (98%)", one of a run stopped by an error said nothing of where it stopped
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    _clock(monkeypatch)
    bar = progress.LogProgress(total=10, desc="train", interval=20.0)
    for _ in range(10):
        bar.update(1)
    lines = log.getvalue().splitlines()
    assert lines and not lines[-1].startswith("train: 10/10 ")
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines[-1].startswith("train: 10/10 it (100%), ")
    bar.close()  # closed twice (as tqdm allows): no second copy
    assert log.getvalue().splitlines() == lines


def test_sdd_train_in_a_log_ends_its_progress_at_the_last_step(tmp_path, monkeypatch):
    # `sdd train recipe.yaml > train.log 2>&1` with trainer.progress: true; lines every 3 steps (7 s a step, 20 s apart)
    from test_train import _recipe
    from test_train_support import SyntheticDataset, install_tiny

    from sddkit.training.trainer import Trainer

    install_tiny(monkeypatch)
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 20.0)
    _clock(monkeypatch)
    recipe = _recipe(tmp_path, trainer={"epochs": 2, "progress": True})
    Trainer(recipe, train_data=SyntheticDataset(40), val_data=SyntheticDataset(24, seed=9)).fit()  # 5 steps an epoch
    lines = [ln for ln in log.getvalue().splitlines() if ln.startswith("train: ")]
    assert [ln.split(" ")[1] for ln in lines] == ["3/10", "6/10", "9/10", "10/10"]
    assert "\r" not in log.getvalue()
    assert lines[-1].startswith("train: 10/10 it (100%), ") and ", val_eer=" in lines[-1]


def test_log_progress_of_a_short_run_stays_silent_at_its_end(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress.LogProgress(total=10, desc="sdd score", unit="file", interval=3600.0)
    bar.update(10)
    bar.close()
    assert log.getvalue() == ""  # as documented: nothing for a run shorter than the interval


# --- codec delays measured ahead only for forked workers ----------------------------------------------------------


def _table(tmp_path):
    from sddkit.data.table import UtteranceTable

    records = []
    for i, label in enumerate(["bonafide", "spoof"]):
        path = tmp_path / f"{i}.wav"
        sf.write(path, (0.1 * np.random.default_rng(i).standard_normal(SR // 2)).astype(np.float32), SR)
        records.append({"utt_id": str(i), "path": str(path), "label": label, "attack": label, "source": "s"})
    return UtteranceTable.from_records(records)


def test_codec_delays_are_not_measured_ahead_for_spawned_loader_workers(tmp_path, monkeypatch):
    # a spawned worker (macOS's default start method) inherits nothing: measuring every drawable bit rate's delay
    # in the main process (15 s for the bundled recipe) only delayed the start of training, and each worker
    # measured the delays it drew again anyway
    import multiprocessing

    from sddkit.training import data
    from sddkit.training.recipe import DataConfig

    table = _table(tmp_path)
    augment = [{"name": "codec", "codec": "opus", "bitrate_kbps": [20, 22], "fast": True}]
    cfg = DataConfig(augment=augment, crop_samples=4000, num_workers=1)
    codecs.codec_delay.cache_clear()
    try:
        monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "spawn")
        assert not data.workers_are_forked()
        data.build_dataset(table, cfg, train=True, seed=0)
        assert codecs.codec_delay.cache_info().currsize == 0
        monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "fork")
        assert data.workers_are_forked()
        data.build_dataset(table, cfg, train=True, seed=0)
        assert codecs.codec_delay.cache_info().currsize == 3  # 20, 21 and 22 kb/s
    finally:
        codecs.codec_delay.cache_clear()


def test_the_start_method_is_not_fixed_by_asking_it():
    # multiprocessing.get_start_method() would fix the default context: a later set_start_method() then failed
    import multiprocessing

    from sddkit.training.data import workers_are_forked

    before = multiprocessing.get_start_method(allow_none=True)
    workers_are_forked()
    assert multiprocessing.get_start_method(allow_none=True) == before


# --- a killed export's partial files: only this machine's are looked up -------------------------------------------


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_export_leaves_the_partial_files_another_host_writes_into_a_shared_folder(tiny_stats, tmp_path, monkeypatch):
    # OUT.<pid>.partial named no machine: on a folder shared by two machines (an NFS home, a volume of two
    # containers) an export took the running export of the other for a dead one (its pid is no process here) and
    # removed its graph, which that export then failed to read back or move to OUT
    from sddkit.scoring import onnx_export

    monkeypatch.setattr("socket.gethostname", lambda: "node-a.cluster")
    out = tmp_path / "m.onnx"
    assert onnx_export.partial_path(out) == tmp_path / f"m.onnx.{os.getpid()}@node-a.cluster.partial"
    monkeypatch.setattr("socket.gethostname", lambda: "weird/host name")
    assert onnx_export.partial_path(out).name == f"m.onnx.{os.getpid()}@weird_host_name.partial"  # a file name

    monkeypatch.setattr("socket.gethostname", lambda: "node-a.cluster")
    dead = _dead_pid()
    mine = [tmp_path / f"m.onnx.{dead}@node-a.cluster.partial", tmp_path / f"m.onnx.{dead}@node-a.cluster.partial.tmp"]
    legacy = tmp_path / f"m.onnx.{dead}.partial"  # as earlier versions named it: removed as before
    theirs = [tmp_path / f"m.onnx.{dead}@node-b.partial", tmp_path / f"m.onnx.{dead}@node-a.partial"]
    for path in [*mine, legacy, *theirs]:
        path.write_bytes(b"a graph")
    report = onnx_export.export_onnx(tiny_stats(tmp_path / "m"), out)
    assert report["removed_partials"] == [str(p) for p in sorted([*mine, legacy])]
    assert all(p.read_bytes() == b"a graph" for p in theirs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m", "m.onnx", *(p.name for p in theirs)])


def test_an_export_writes_its_graph_under_its_host_and_pid(tiny_stats, tmp_path, monkeypatch):
    from sddkit.scoring import onnx_export

    seen = []
    export = onnx_export._export

    def spy(wrapper, example, path, *args, **kwargs):
        seen.append(Path(path).name)
        return export(wrapper, example, path, *args, **kwargs)

    monkeypatch.setattr(onnx_export, "_export", spy)
    monkeypatch.setattr("socket.gethostname", lambda: "node-a")
    report = onnx_export.export_onnx(tiny_stats(tmp_path / "m"), tmp_path / "m.onnx")
    assert seen == [f"m.onnx.{os.getpid()}@node-a.partial"]
    assert "removed_partials" not in report  # nothing was left to remove: no key
