"""Review 24 of the training data items: a preload that would not fit in memory is refused with a clear error."""

from __future__ import annotations

import contextlib
import os
import signal

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

import sddkit.data.dataset as dataset_mod
from sddkit.data.dataset import CachedWaveforms, available_memory
from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError, SddkitError
from sddkit.training.data import build_dataset, worker_errors
from sddkit.training.recipe import DataConfig

SR = 16000
N_FILES = 10
FILE_SAMPLES = 4000


def _table(tmp_path, *, durations: bool) -> UtteranceTable:
    records = []
    for i in range(N_FILES):
        x = np.random.default_rng(i).uniform(-0.5, 0.5, FILE_SAMPLES).astype(np.float32)
        path = tmp_path / f"u{i}.wav"
        sf.write(path, x, SR, subtype="FLOAT")
        records.append(
            {
                "utt_id": f"u{i}",
                "path": str(path),
                "label": "bonafide" if i % 2 else "spoof",
                "attack": "bonafide" if i % 2 else "A01",
                "duration_s": FILE_SAMPLES / SR if durations else float("nan"),
            }
        )
    return UtteranceTable.from_records(records)


@pytest.fixture()
def small_blocks(monkeypatch):
    """Blocks of one file's samples, so the check runs after every file; the decoded files counted."""
    monkeypatch.setattr(dataset_mod, "_PACK_SAMPLES", FILE_SAMPLES)
    decoded: list[str] = []
    real = dataset_mod.load_table_audio

    def counting(path, utt_id, **kw):
        decoded.append(utt_id)
        return real(path, utt_id, **kw)

    monkeypatch.setattr(dataset_mod, "load_table_audio", counting)
    return decoded


def test_a_preload_larger_than_the_memory_is_refused_before_decoding_when_durations_are_known(
    tmp_path, monkeypatch, small_blocks
):
    table = _table(tmp_path, durations=True)
    monkeypatch.setattr(dataset_mod, "available_memory", lambda: 3 * 4 * FILE_SAMPLES)  # room for 3 files
    with pytest.raises(ConfigError) as err:
        CachedWaveforms.from_table(table)
    message = str(err.value)
    assert f"the {N_FILES} files" in message and "duration_s" in message and "decode_cache: none" in message
    assert small_blocks == []  # refused before any file was decoded


def test_a_preload_larger_than_the_memory_is_refused_after_its_first_block_without_durations(
    tmp_path, monkeypatch, small_blocks
):
    table = _table(tmp_path, durations=False)
    monkeypatch.setattr(dataset_mod, "available_memory", lambda: 3 * 4 * FILE_SAMPLES)
    with pytest.raises(ConfigError, match="extrapolated from the 1 file decoded first"):
        CachedWaveforms.from_table(table, num_threads=0)
    assert len(small_blocks) == 1  # not after decoding the whole table (or being killed by the system)


def test_a_preload_that_fits_is_decoded_whole_as_before(tmp_path, monkeypatch, small_blocks):
    table = _table(tmp_path, durations=False)
    # room for the whole table and one block more, no more: the block check must not refuse it
    monkeypatch.setattr(dataset_mod, "available_memory", lambda: (N_FILES + 1) * 4 * FILE_SAMPLES)
    cache = CachedWaveforms.from_table(table, num_threads=2)
    assert len(cache) == N_FILES and cache.nbytes == N_FILES * 4 * FILE_SAMPLES
    monkeypatch.setattr(dataset_mod, "available_memory", lambda: None)  # unknown (not Linux): never refused
    assert len(CachedWaveforms.from_table(_table(tmp_path, durations=True))) == N_FILES


def test_build_dataset_names_the_recipe_key_of_a_preload_that_does_not_fit(tmp_path, monkeypatch, small_blocks):
    table = _table(tmp_path, durations=True)
    monkeypatch.setattr(dataset_mod, "available_memory", lambda: 4 * FILE_SAMPLES)
    cfg = DataConfig(crop_samples=1000, decode_cache="preload")
    with pytest.raises(ConfigError, match=r"^data\.decode_cache=preload, training data: decoding the 10 files"):
        build_dataset(table, cfg, train=True, seed=0)
    with pytest.raises(ConfigError, match=r"^data\.decode_cache=preload, evaluation data"):
        build_dataset(table, cfg, train=False, seed=0)


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="reads Linux's /proc/meminfo")
def test_available_memory_is_a_positive_amount_under_the_machines_total():
    available = available_memory()
    with open("/proc/meminfo") as fh:
        total = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemTotal:"))
    assert available is not None and 0 < available <= total


class _PassedFd:
    """A file descriptor passed to a child (here: this process), as multiprocessing's spawning Popen passes them."""

    def __init__(self, fd: int):
        self.fd = fd

    def detach(self) -> int:
        return self.fd


class _FakeSpawningPopen:
    """What multiprocessing's spawning Popen offers the pickling of a child's arguments: file descriptors to pass."""

    def duplicate_for_child(self, fd: int) -> int:
        return os.dup(fd)

    def DupFd(self, fd: int) -> _PassedFd:  # noqa: N802 (multiprocessing's name)
        return _PassedFd(fd)


def test_a_preloaded_buffer_goes_to_spawned_workers_as_shared_memory_not_a_copy(tmp_path):
    import pickle
    from multiprocessing.context import set_spawning_popen
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # noqa: F401 (registers the reductions of tensors to shared memory)

    cache = CachedWaveforms.from_table(_table(tmp_path, durations=True))
    expected = {u: cache[u].copy() for u in cache.ids}
    assert len(pickle.dumps(cache)) > cache.nbytes  # pickled elsewhere (saved, sent to a thread): the data itself
    set_spawning_popen(_FakeSpawningPopen())
    try:
        data = ForkingPickler.dumps(cache)  # as a DataLoader sends its dataset to a worker it spawns
    finally:
        set_spawning_popen(None)
    assert len(data) < cache.nbytes / 4  # a handle to the shared buffer, where the whole buffer was copied
    child = pickle.loads(data)
    for u, x in expected.items():
        np.testing.assert_array_equal(child[u], x)
        np.testing.assert_array_equal(cache[u], x)  # the parent's copy moved to shared memory, unchanged
    assert np.shares_memory(cache.buffer, cache._shared.numpy())


class _DiesInItsWorker(Dataset):
    """Item 5 kills the worker process loading it, as the system's out-of-memory killer does."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return torch.zeros(3)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kills a worker with SIGKILL")
def test_a_loader_worker_killed_by_the_system_is_a_clear_error_naming_the_options():
    batches = iter(DataLoader(_DiesInItsWorker(), batch_size=2, num_workers=2, multiprocessing_context="fork"))
    try:
        # torch finds the worker gone (a RuntimeError), or the main process loses the link to it while it passes
        # a batch (a ConnectionResetError), as the timing falls: both were a traceback saying nothing of memory
        with pytest.raises(SddkitError) as err:
            for _ in worker_errors(batches):
                pass
    finally:
        for _ in range(3):  # the other worker now, not when the iterator is collected in some later test
            with contextlib.suppress(RuntimeError):  # torch's SIGCHLD handler may report the death once more
                batches._shutdown_workers()
                break
    message = str(err.value)
    assert "DataLoader worker" in message and "lack of memory" in message
    assert "data.num_workers" in message and "data.decode_cache" in message
    assert isinstance(err.value.__cause__, (RuntimeError, ConnectionError, EOFError))  # torch's kept as the cause


def test_other_runtime_and_connection_errors_of_a_loader_pass_unchanged():
    def batches(exc: Exception):
        yield 1
        raise exc

    with pytest.raises(RuntimeError, match="^something else$"):
        list(worker_errors(batches(RuntimeError("something else"))))
    with pytest.raises(ConnectionResetError):  # no loader workers: not theirs
        list(worker_errors(batches(ConnectionResetError(104, "reset"))))


def test_every_torchrun_process_of_the_machine_counts_in_the_preloads_memory(tmp_path, monkeypatch, small_blocks):
    table = _table(tmp_path, durations=True)
    room = (N_FILES + 2) * 4 * FILE_SAMPLES  # one copy of the table fits, and its block
    monkeypatch.setattr(dataset_mod, "available_memory", lambda: room)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert len(CachedWaveforms.from_table(table)) == N_FILES
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four ranks each preloading their own copy at once
    with pytest.raises(ConfigError, match="in each of the 4 processes of this machine"):
        CachedWaveforms.from_table(table)


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_memory_left_under_a_cgroup_limit_counts_file_cache_as_free(tmp_path):
    proc = tmp_path / "cgroup"
    # v2: the process's cgroup and a parent both limit it; file cache the kernel can drop is not in use
    _write(proc, "0::/jobs/mine\n")
    _write(tmp_path / "fs/jobs/mine/memory.max", "1000000\n")
    _write(tmp_path / "fs/jobs/mine/memory.current", "600000\n")
    _write(tmp_path / "fs/jobs/mine/memory.stat", "anon 400000\ninactive_file 200000\nactive_file 1\n")
    _write(tmp_path / "fs/jobs/memory.max", "max\n")  # no limit there
    _write(tmp_path / "fs/jobs/memory.current", "900000\n")
    assert dataset_mod._cgroup_available(str(proc), str(tmp_path / "fs")) == 1000000 - (600000 - 200000)
    _write(tmp_path / "fs/jobs/memory.max", "700000\n")  # a tighter parent
    assert dataset_mod._cgroup_available(str(proc), str(tmp_path / "fs")) == 0  # its usage is over: none left
    # v1, as seen from a container: the path of /proc/self/cgroup is the host's, the container's cgroup the root
    _write(proc, "4:memory:/docker/abc\n3:cpu:/docker/abc\n0::/\n")
    v1 = tmp_path / "v1"
    _write(v1 / "memory/memory.limit_in_bytes", "2000000\n")
    _write(v1 / "memory/memory.usage_in_bytes", "500000\n")
    _write(v1 / "memory/memory.stat", "cache 300000\ntotal_inactive_file 100000\n")
    assert dataset_mod._cgroup_available(str(proc), str(v1)) == 2000000 - (500000 - 100000)
    _write(v1 / "memory/memory.limit_in_bytes", "9223372036854771712\n")  # v1's "no limit"
    assert dataset_mod._cgroup_available(str(proc), str(v1)) is None
