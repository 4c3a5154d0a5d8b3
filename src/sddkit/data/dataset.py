"""Torch datasets over an :class:`UtteranceTable`: decoded, cropped, optionally augmented waveforms.

Each item is ``{"waveform": (crop_samples,) float32, "label": () int64 (1 = bona fide),
"domain": () int64, "index": () int64}``.

Determinism: a training item's crop and augmentation draw from
``numpy.random.default_rng([seed, epoch, index])``, so an item depends only on (seed, epoch,
index): not on the worker that loads it, the loading order or what ran before; resuming at an
epoch reproduces it exactly. :meth:`UtteranceDataset.set_epoch` writes the epoch into a
shared-memory tensor, so it also reaches DataLoader workers that are already running
(``persistent_workers=True``) before the next ``iter(loader)``. Evaluation items are fixed: the
first ``crop_samples`` samples (repeat-padded when shorter) or, with ``crop_samples=None``, the
whole file (batch those with :func:`collate_pad`).

Caching: ``cache=True`` keeps each decoded file in a per-process dict (each DataLoader worker
fills its own); :class:`CachedWaveforms` decodes a whole small table once into one flat float32
buffer that forked workers share copy-free (sddbench: 1,683 files, ~3.3 h -> ~0.8 GB at 16 kHz), and refuses a
table whose audio would not fit in the memory left (:func:`available_memory`) with a ConfigError, before decoding
when the table gives every file's ``duration_s``, else after its first block of decoded files.
Audio errors are never skipped: they raise with the file's path (a preload decodes on past one, then names every
file that failed in one error).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.context
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sddkit.audio.crop import random_crop, repeat_pad
from sddkit.audio.io import check_max_duration, load_audio
from sddkit.data.table import UtteranceTable
from sddkit.errors import AudioDecodeError, AudioError, ConfigError, ProtocolError
from sddkit.scoring.inference import InferenceConfig
from sddkit.threads import in_order_ahead

__all__ = [
    "CachedWaveforms",
    "UtteranceDataset",
    "available_memory",
    "collate_pad",
    "load_table_audio",
    "undecodable_files",
]

log = logging.getLogger("sddkit.data")

# the shortest input sddkit scores: the default of a model's inference.min_duration_s, read from it (not a copy)
SHORTEST_SCORED_S: float = InferenceConfig.min_duration_s

# Decoded files are packed into blocks of this many samples (64 MB of float32) as they are decoded: an allocation
# this large is mapped on its own by the C library and given back to the system when freed, where a decoded
# file's (a few hundred kB) memory stays with the process once freed, only to be reused.
_PACK_SAMPLES = 1 << 24


def _pack(
    arrays: Iterator[np.ndarray], n: int, on_block: Callable[[int, int], None] | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """The ``n`` decoded arrays, in order, copied into float32 blocks of about :data:`_PACK_SAMPLES` samples as they
    come, each let go once copied (its memory reused by the next files decoded); and their (n,) lengths.
    ``on_block(samples, files)`` is called after each full block with the samples and files packed so far.

    Holding every decoded array until the buffer was filled (np.concatenate, or a copy that frees each one only
    then) kept the corpus twice in memory at the peak: the freed arrays' memory is not given back to the system.
    """
    blocks: list[np.ndarray] = []
    lengths = np.zeros(n, dtype=np.int64)
    pending: list[np.ndarray] = []
    size = 0

    def flush() -> None:
        block = np.empty(size, dtype=np.float32)
        start = 0
        for a in pending:
            block[start : start + len(a)] = a
            start += len(a)
        blocks.append(block)
        pending.clear()

    for i, a in enumerate(arrays):
        lengths[i] = len(a)
        pending.append(a)
        size += len(a)
        if size >= _PACK_SAMPLES:
            flush()
            size = 0
            if on_block is not None:
                on_block(int(lengths[: i + 1].sum()), i + 1)
    if pending or not blocks:
        flush()
    return blocks, lengths


Augment = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def load_table_audio(path: str, utt_id: str, *, sample_rate: int, max_duration: float | None) -> np.ndarray:
    """Decode one utterance; every failure is an AudioError that names the file (never skipped)."""
    if not path:
        raise ProtocolError(f"utterance {utt_id!r} has no audio path (was the protocol read without an audio root?)")
    try:
        return load_audio(path, sample_rate=sample_rate, max_duration=max_duration)
    except AudioError:
        raise
    except Exception as exc:  # a decoder bug must still say which file triggered it
        raise AudioDecodeError(f"{type(exc).__name__}: {exc}", path=path) from exc


class CachedWaveforms:
    """Decoded waveforms of a whole table, held once: a flat float32 buffer plus offsets per utt_id.

    One buffer (rather than one array per file) keeps forked DataLoader workers from touching
    per-object reference counts, so the pages stay shared instead of being copied per worker.
    ``stats``: (N, 2) int64 size in bytes and modification time (ns) of each file when it was decoded (-1:
    unknown), so that a cache saved to disk and read back later is refused for a file changed since
    (:meth:`check_paths`).
    """

    def __init__(
        self,
        ids: Sequence[str],
        buffer: np.ndarray,
        offsets: np.ndarray,
        sample_rate: int,
        paths: Sequence[str] | None = None,
        stats: np.ndarray | None = None,
    ):
        offsets = np.asarray(offsets, dtype=np.int64)
        if len(offsets) != len(ids) + 1 or offsets[0] != 0 or offsets[-1] != len(buffer):
            raise ValueError("offsets must be (N+1,) from 0 to len(buffer)")
        if (np.diff(offsets) < 0).any():  # a file's slice would end before it starts: served as empty audio
            k = int(np.flatnonzero(np.diff(offsets) < 0)[0])
            raise ValueError(f"offsets must not decrease: {ids[k]!r} runs from {offsets[k]} to {offsets[k + 1]}")
        twice = [u for u, n in Counter(ids).items() if n > 1]
        if twice:  # looked up by utt_id: all but the last waveform of such an id were unreachable, unsaid
            raise ValueError(
                f"{len(twice)} utt_id(s) listed twice, e.g. {twice[:3]}: a waveform is found by its utt_id"
            )
        if paths is not None and len(paths) != len(ids):
            raise ValueError(f"{len(paths)} paths for {len(ids)} ids")
        if stats is not None:
            stats = np.asarray(stats, dtype=np.int64)
            if paths is None or stats.shape != (len(ids), 2):
                raise ValueError(f"stats must be ({len(ids)}, 2) with the paths they describe, got {stats.shape}")
        self.ids = list(ids)
        # the file each id was decoded from (None: a cache saved before they were kept)
        self.paths = None if paths is None else [str(p) for p in paths]
        self.stats = stats  # (size, mtime_ns) of each file as decoded (None: a cache saved before they were kept)
        self.buffer = np.ascontiguousarray(buffer, dtype=np.float32)
        self.offsets = offsets
        self.sample_rate = int(sample_rate)
        self._pos = {u: i for i, u in enumerate(self.ids)}

    @classmethod
    def from_table(
        cls,
        table: UtteranceTable,
        *,
        sample_rate: int = 16000,
        max_duration: float | None = 600.0,
        num_threads: int = 0,
    ) -> CachedWaveforms:
        """Decode every file of ``table`` (``num_threads`` > 0 decodes in a thread pool).

        A file that fails to decode (an :class:`AudioError`: corrupt, header only, silent, too long) does not stop
        the decoding: the others are decoded on, then one error of the first failure's type names every such file
        (its utt_id, path and why) and the ``exclude`` that leaves them out. Stopping at the first meant one rerun,
        and one whole preload, per bad file of a corpus."""
        ids = [str(u) for u in table.column("utt_id")]
        paths = [str(p) for p in table.column("path")]
        # every file's before any is decoded: a change made meanwhile shows as a later one
        stats = np.array([_file_stat(p) for p in paths], dtype=np.int64).reshape(len(ids), 2)
        budget = _PreloadBudget.start(table, stats[:, 0], sample_rate=sample_rate, max_duration=max_duration)
        failed: dict[int, AudioError] = {}

        def load(i: int) -> np.ndarray:
            try:
                return load_table_audio(paths[i], ids[i], sample_rate=sample_rate, max_duration=max_duration)
            except AudioError as exc:  # said with the others once all are decoded; held as no samples meanwhile
                failed[i] = exc
                return np.zeros(0, dtype=np.float32)

        # a bounded number of files decoded ahead of the packing: all at once, they pile up faster than packed
        decoded = in_order_ahead(load, range(len(ids)), num_threads, thread_name="sdd-preload")
        with contextlib.closing(decoded):
            blocks, lengths = _pack((array for _, array in decoded), len(ids), on_block=budget.check)
        if failed:
            rows = sorted(failed)
            raise undecodable_files([ids[i] for i in rows], [failed[i] for i in rows], total=len(ids))
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if len(blocks) == 1:
            buffer = blocks[0]
        else:
            # the blocks copied in one by one, each let go (returned to the system) once copied: the buffer's pages
            # are only committed as they are written, so the peak is about the corpus once, plus a block
            buffer = np.empty(int(offsets[-1]), dtype=np.float32)
            start = 0
            for k in range(len(blocks)):
                buffer[start : start + len(blocks[k])] = blocks[k]
                start += len(blocks[k])
                blocks[k] = None  # type: ignore[call-overload]
        return cls(ids, buffer, offsets, sample_rate, paths=paths, stats=stats)

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (no pickles) that :meth:`load` reads back."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez(
                fh,
                buffer=self.buffer,
                offsets=self.offsets,
                ids=np.array(self.ids, dtype=str),
                sample_rate=self.sample_rate,
                **({} if self.paths is None else {"paths": np.array(self.paths, dtype=str)}),
                **({} if self.stats is None else {"stats": self.stats}),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> CachedWaveforms:
        with np.load(Path(path), allow_pickle=False) as z:
            paths = z["paths"].tolist() if "paths" in z.files else None
            stats = z["stats"] if "stats" in z.files else None
            return cls(z["ids"].tolist(), z["buffer"], z["offsets"], int(z["sample_rate"]), paths=paths, stats=stats)

    def check_paths(self, ids: Sequence[str], paths: Sequence[str]) -> None:
        """Refuse a table that lists a cached id with another file than the one decoded for it, or with
        a file that changed on disk (size or modification time) since it was decoded.

        The cache is looked up by utt_id: two corpora (or two versions of one) that reuse ids would
        otherwise train on the cached audio of the other file, without a word; a cache saved to disk
        and read back would serve the old audio of a file re-encoded or replaced since. A file that
        cannot be examined now (no longer there) keeps its cached audio.
        """
        if self.paths is None:
            return
        for utt, path in zip(ids, paths):
            i = self._pos.get(utt)
            if i is not None and os.path.normpath(self.paths[i]) != os.path.normpath(str(path)):
                raise ValueError(
                    f"the waveform cache holds {utt!r} decoded from {self.paths[i]}, the table lists it at {path}: "
                    "build the cache from this table"
                )
            if i is not None and self.stats is not None and self.stats[i, 0] >= 0:
                now = _file_stat(self.paths[i])
                if now[0] >= 0 and now != tuple(int(v) for v in self.stats[i]):
                    raise ValueError(
                        f"the waveform cache holds {utt!r} decoded from {self.paths[i]}, which has changed on disk "
                        f"since (size, mtime_ns {tuple(int(v) for v in self.stats[i])} then, {now} now): rebuild "
                        "the cache"
                    )

    def __getstate__(self) -> dict[str, Any]:
        """What pickling sends. To a process being spawned (a DataLoader's workers where they are not forked: macOS'
        and Windows' default, ``set_start_method("spawn")``), the buffer goes as a handle to shared memory, moved
        there on the first such pickling: it was copied whole into every worker, anew every epoch (a 0.8 GB
        buffer: 3.2 GB more memory with 4 workers, and its copies' time at each epoch's start)."""
        state = self.__dict__.copy()
        state.pop("_shared", None)
        if multiprocessing.context.get_spawning_popen() is not None:
            state["buffer"] = self._shared_buffer()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        buffer = state["buffer"]
        if isinstance(buffer, torch.Tensor):  # shared memory: the tensor keeps it mapped
            state["_shared"] = buffer
            state["buffer"] = buffer.numpy()
        self.__dict__.update(state)

    def _shared_buffer(self) -> torch.Tensor:
        """(T,) float32 tensor in shared memory holding the buffer; ``buffer`` becomes a view of it."""
        shared = self.__dict__.get("_shared")
        if shared is None:
            shared = torch.from_numpy(self.buffer).share_memory_()  # a copy: the private one is let go
            self.buffer = shared.numpy()
            self._shared = shared
        return shared

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._pos

    def get(self, utt_id: str) -> np.ndarray | None:
        """(T,) float32 view of ``utt_id``'s waveform, or None when it is not cached."""
        i = self._pos.get(utt_id)
        if i is None:
            return None
        return self.buffer[self.offsets[i] : self.offsets[i + 1]]

    def __getitem__(self, utt_id: str) -> np.ndarray:
        x = self.get(utt_id)
        if x is None:
            raise KeyError(utt_id)
        return x

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes)


_SHOWN_FAILURES = 3  # undecodable files named with their reason (the exclude lists more of them)
_LISTED_IDS = 20  # utt_ids written out in the exclude a message suggests


def _exclude_of(ids: Sequence[str]) -> str:
    """The data spec's ``exclude`` that leaves the utterances ``ids`` out, as a message suggests it (the first
    :data:`_LISTED_IDS` written out)."""
    listed = ", ".join(map(repr, ids[:_LISTED_IDS])) + (", ..." if len(ids) > _LISTED_IDS else "")
    return f"the data spec's exclude: {{utt_id: [{listed}]}}"


def undecodable_files(ids: Sequence[str], errors: Sequence[AudioError], *, total: int) -> AudioError:
    """One error (of the first failure's type) for the utterances ``ids`` (of a table of ``total``) whose files failed
    to decode with ``errors``: how many, the first few with why, and the data spec's ``exclude`` that leaves them
    all out."""
    shown = "; ".join(f"{u!r} ({e})" for u, e in list(zip(ids, errors))[:_SHOWN_FAILURES])
    more = f"; and {len(ids) - _SHOWN_FAILURES} more" if len(ids) > _SHOWN_FAILURES else ""
    return type(errors[0])(
        f"{len(ids)} of the {total} audio files fail to load: {shown}{more}; re-encode or restore "
        f"{'it' if len(ids) == 1 else 'them'}, or leave {'it' if len(ids) == 1 else 'them'} out with "
        f"{_exclude_of(ids)}"
    )


def _file_stat(path: str) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of ``path``; (-1, -1) when it cannot be examined."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (-1, -1)
    return (int(st.st_size), int(st.st_mtime_ns))


# cgroup v1's "no limit" is a huge number (the largest page-aligned int64), v2's is the word "max"
_NO_CGROUP_LIMIT = 1 << 60


def available_memory() -> int | None:
    """Bytes of memory this process can still take: Linux's ``MemAvailable``, bounded by the limit of each cgroup
    the process is in (a container's, a job scheduler's) less what the cgroup uses apart from file cache the kernel
    can drop; None where neither can be read (not Linux)."""
    values = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(values) if values else None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except (OSError, ValueError):
        return None


def _meminfo_available() -> int | None:
    for line in (_read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            return int(parts[1]) * 1024 if len(parts) >= 2 and parts[1].isdigit() else None
    return None


def _stat_value(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _cgroup_available(proc_file: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """The least room under a memory limit among the process's cgroup and its parents (v2), or its v1 memory cgroup
    (seen from inside a container, its own cgroup is the hierarchy's root)."""
    folders: list[tuple[str, str, str, str]] = []  # (limit file, usage file, stat file, inactive file key)
    for line in (_read_text(proc_file) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # v2: the limit of every level above applies too
            parts = [p for p in path.strip().split("/") if p]
            for k in range(len(parts), -1, -1):
                d = os.path.join(root, *parts[:k])
                folders.append((f"{d}/memory.max", f"{d}/memory.current", f"{d}/memory.stat", "inactive_file"))
        elif "memory" in controllers.split(","):
            v1 = os.path.join(root, "memory")
            for d in (os.path.join(v1, path.strip().lstrip("/")), v1):
                folders.append(
                    (
                        f"{d}/memory.limit_in_bytes",
                        f"{d}/memory.usage_in_bytes",
                        f"{d}/memory.stat",
                        "total_inactive_file",
                    )
                )
    room: list[int] = []
    for limit_file, usage_file, stat_file, inactive in folders:
        limit, usage = (_read_text(limit_file) or "").strip(), (_read_text(usage_file) or "").strip()
        if not (limit.isdigit() and usage.isdigit()) or int(limit) >= _NO_CGROUP_LIMIT:
            continue
        used = int(usage) - _stat_value(_read_text(stat_file), inactive)
        room.append(max(0, int(limit) - max(0, used)))
    return min(room) if room else None


def _files(n: int) -> str:
    return f"{n} file{'' if n == 1 else 's'}"


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB"


class _PreloadBudget:
    """Refuses to decode a table whole when its audio would not fit in the memory left: before decoding, from the
    table's ``duration_s`` when it gives every file's; else after each block of :data:`_PACK_SAMPLES` samples,
    extrapolated from the files decoded so far to the rest (by count and by file size, the lower of the two).

    Decoded regardless, a corpus larger than the memory was killed by the system (no error, nothing saying which
    option to change) after decoding for as long as it took to fill it, or pushed the machine into swap."""

    def __init__(self, sizes: np.ndarray):
        self.sizes = np.asarray(sizes, dtype=np.int64)  # (N,) bytes of each file; -1: unknown
        # the processes torchrun started on this machine: each preloads its own copy, all at the same time
        local = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
        self.copies = max(1, int(local)) if local.isdigit() else 1

    @classmethod
    def start(
        cls, table: UtteranceTable, sizes: np.ndarray, *, sample_rate: int, max_duration: float | None
    ) -> _PreloadBudget:
        budget = cls(sizes)
        durations = np.asarray(table.column("duration_s"), dtype=np.float64)
        if len(durations) and np.isfinite(durations).all() and (durations >= 0).all():
            if max_duration is not None:  # a longer file is refused when read
                durations = np.minimum(durations, max_duration)
            total = 4 * float(np.ceil(durations * sample_rate).sum())
            budget.refuse_over(total, held=0.0, how="from the table's duration_s", available=available_memory())
        return budget

    def check(self, samples: int, files: int) -> None:
        """After a full block: ``samples`` of the table's first ``files`` files are decoded and held."""
        n = len(self.sizes)
        if files >= n:
            return  # all decoded: nothing more to refuse (the blocks are assembled one by one, each freed)
        # by count, and by file size where every size is known; the lower: either alone overestimates some corpora
        # (long files listed last; compressed files decoded first and PCM ones after), and a refusal must be sure
        total = samples * n / files
        done = float(self.sizes[:files].sum())
        if (self.sizes >= 0).all() and done > 0:
            total = min(total, samples * float(self.sizes.sum()) / done)
        how = f"extrapolated from the {_files(files)} decoded first, by count and by file size"
        self.refuse_over(4.0 * total, held=4.0 * samples, how=how, available=available_memory())

    def refuse_over(self, total: float, *, held: float, how: str, available: int | None) -> None:
        """A ConfigError when the ``total`` bytes (``held`` of them already taken) exceed what is ``available``."""
        # assembling the blocks into one buffer takes one block more at its peak
        if available is None or self.copies * (total - held + 4 * _PACK_SAMPLES) <= available:
            return
        n = len(self.sizes)
        so_far = f", {_gb(held)} of it decoded so far" if held else ""
        each = (
            f" in each of the {self.copies} processes of this machine (torchrun's LOCAL_WORLD_SIZE)"
            if self.copies > 1
            else ""
        )
        raise ConfigError(
            f"decoding the {_files(n)} of the table whole (decode_cache: preload) takes about {_gb(total)} of memory"
            f"{each} ({how}{so_far}), and only {_gb(available + self.copies * held)} is available: use decode_cache: "
            "none (each file decoded when drawn), fewer files, or a machine with more memory"
        )


def _positive_count(value: object) -> bool:
    """Whether ``value`` is a positive whole number (an int, or a float such as ``64600.0``); not a bool or text."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return float(value).is_integer() and value > 0


class UtteranceDataset(Dataset):
    """Waveform items of an UtteranceTable for training (random crops) or evaluation (fixed crops).

    crop_samples: crop length (64600 = 4.04 s at 16 kHz, as in AASIST); None = whole files.
    train: random crops + ``augment`` (called ``augment(x, sample_rate, rng) -> x`` on the crop)
        vs. deterministic first-``crop_samples`` crops and no augmentation.
    domain_column: table column whose value becomes the item's ``domain`` index, through
        ``domain_to_index`` (default: the column's sorted distinct values); a value missing
        from a given mapping (an attack unseen in training) gives -1.
    cache / waveforms: per-process decode cache / a preloaded :class:`CachedWaveforms`
        (looked up by utt_id; utterances not in it are decoded from disk).
    short_file_s: a file shorter than this (seconds; 0: no check) is logged as a warning the first time it is read,
        once per file over all loader workers and epochs, naming it and how to leave it out: tiled to the crop, a
        5 ms file is a buzz, not speech, and ``sdd score`` refuses inputs under a model's
        ``inference.min_duration_s`` (0.1 s by default). It is still used (repeat-padded), as every shorter file is.
    """

    def __init__(
        self,
        table: UtteranceTable,
        *,
        crop_samples: int | None = 64600,
        train: bool,
        seed: int = 0,
        augment: Augment | None = None,
        domain_column: str = "attack",
        domain_to_index: Mapping[str, int] | None = None,
        sample_rate: int = 16000,
        max_duration: float | None = 600.0,
        cache: bool = False,
        waveforms: CachedWaveforms | None = None,
        short_file_s: float = SHORTEST_SCORED_S,
    ):
        if not 0.0 <= float(short_file_s) < float("inf"):
            raise ValueError(f"short_file_s must be a number of seconds >= 0, got {short_file_s!r}")
        if crop_samples is not None and not _positive_count(crop_samples):  # 1.7 became 1, '100' 100, unsaid
            raise ValueError(f"crop_samples must be a positive integer or None, got {crop_samples!r}")
        if int(seed) < 0:  # numpy's generators refuse it, inside a DataLoader worker
            raise ValueError(f"seed must be non-negative, got {seed}")
        if waveforms is not None and waveforms.sample_rate != sample_rate:
            raise ValueError(f"cached waveforms are at {waveforms.sample_rate} Hz, dataset wants {sample_rate} Hz")
        self.table = table
        self.crop_samples = None if crop_samples is None else int(crop_samples)
        self.train = bool(train)
        self.seed = int(seed)
        self.augment = augment
        self.sample_rate = int(sample_rate)
        self.max_duration = max_duration
        self.domain_column = domain_column
        self._ids = [str(u) for u in table.column("utt_id")]
        self._paths = [str(p) for p in table.column("path")]
        self.labels = table.labels
        values = [str(v) for v in table.column(domain_column)]
        if domain_to_index is None:
            domain_to_index = {v: i for i, v in enumerate(sorted(set(values)))}
        self.domain_to_index = dict(domain_to_index)
        self.domains = np.array([self.domain_to_index.get(v, -1) for v in values], dtype=np.int64)
        if waveforms is not None:
            waveforms.check_paths(self._ids, self._paths)
        self.waveforms = waveforms
        self._cache: dict[int, np.ndarray] | None = {} if cache else None
        # shared memory: set_epoch in the main process is seen by already-running workers
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.short_file_s = float(short_file_s)
        # which short files were named already, in shared memory too: a worker's own record went with it at the end
        # of each epoch, and every epoch named them again
        self._short_named = torch.zeros(len(self._ids), dtype=torch.bool).share_memory_()

    @property
    def accepts_draws(self) -> bool:
        """Whether items may be keyed ``(index, draw)`` with a draw above 0 (see :meth:`__getitem__`): a training
        dataset's only. An evaluation dataset (``train=False``) has one fixed crop per item, so
        :class:`~sddkit.training.data.DistinctDraws` leaves its keys plain: under DDP every first draw of rank 1 or
        above is a draw above 0, and such a dataset given to the trainer stopped those ranks at their first item."""
        return self.train

    # --- epoch ------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    @property
    def domain_names(self) -> list[str]:
        """Domain value of each index 0..D-1."""
        return [v for v, _ in sorted(self.domain_to_index.items(), key=lambda kv: kv[1])]

    def __len__(self) -> int:
        return len(self._ids)

    # --- items ------------------------------------------------------------------------------
    def rng(self, index: int, epoch: int | None = None, draw: int = 0) -> np.random.Generator:
        """The generator of item ``index`` at ``epoch`` (default: the current epoch), for its ``draw``-th draw.

        ``draw`` numbers the repeats of one item within an epoch (an oversampling sampler draws a file
        twice): each repeat gets its own crop and augmentation. Draw 0 keeps the generator of the
        plain ``(seed, epoch, index)`` key, so a run without repeats is unchanged.
        """
        key = [self.seed, self.epoch if epoch is None else int(epoch), int(index)]
        if draw:
            key.append(int(draw))
        return np.random.default_rng(key)

    def load(self, index: int) -> np.ndarray:
        """The whole decoded waveform of row ``index``: (T,) float32 (a cached array: do not modify)."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        x = self.waveforms.get(self._ids[index]) if self.waveforms is not None else None
        if x is not None:
            # the file read from disk would be refused: so is its cached copy (built under a higher limit)
            check_max_duration(x.shape[0], self.sample_rate, self.max_duration, path=self._paths[index])
        else:
            x = load_table_audio(
                self._paths[index], self._ids[index], sample_rate=self.sample_rate, max_duration=self.max_duration
            )
            if self._cache is not None:
                self._cache[index] = x
        return x

    def short_files(self, seconds: Sequence[float] | np.ndarray) -> np.ndarray:
        """The rows whose duration (``seconds``: (N,) of every row, NaN where unknown) is under ``short_file_s``;
        they are not named again when read (the caller names them, with :meth:`short_file_note`)."""
        seconds = np.asarray(seconds, dtype=np.float64)
        rows = np.flatnonzero(seconds < self.short_file_s)  # NaN compares false: unknown lengths are checked when read
        self._short_named[torch.from_numpy(rows)] = True
        return rows

    def short_file_note(self, rows: Sequence[int], seconds: Sequence[float]) -> str:
        """What a warning says of the short files ``rows`` (their durations ``seconds``): the first few by path and
        duration, what training makes of them, and the ``exclude`` that leaves them all out."""
        shown = ", ".join(f"{self._paths[i]} ({1000 * t:.1f} ms)" for i, t in list(zip(rows, seconds))[:3])
        more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
        if self.crop_samples is None:
            made = "used whole, too short to hold speech"
        else:
            made = f"tiled (repeat-padded) to the {self.crop_samples / self.sample_rate:g} s crop, a buzz, not speech"
        each, them = ("it is", "it") if len(rows) == 1 else ("each is", "them")
        return (
            f"{_files(len(rows))} under {self.short_file_s:g} s: {shown}{more}; {each} {made}, "
            f"where sdd score refuses inputs under a model's inference.min_duration_s ({SHORTEST_SCORED_S:g} s by "
            f"default): leave {them} out with {_exclude_of([self._ids[i] for i in rows])}"
        )

    def _check_short(self, index: int, n_samples: int) -> None:
        """Warn once (over all workers and epochs) of row ``index`` when its file is under ``short_file_s``."""
        if n_samples >= self.short_file_s * self.sample_rate or bool(self._short_named[index]):
            return
        self._short_named[index] = True
        role = "training" if self.train else "evaluation"
        log.warning("%s data: %s", role, self.short_file_note([index], [n_samples / self.sample_rate]))

    def waveform(self, index: int, draw: int = 0) -> np.ndarray:
        """The model input of row ``index``: (crop_samples,) or (T,) float32, a fresh array.

        draw: which draw of the item this is in the current epoch (training; see :meth:`rng`).
        """
        x = self.load(index)
        self._check_short(index, int(x.shape[0]))
        crop = self.crop_samples
        if not self.train:
            return np.array(x if crop is None else repeat_pad(x, crop), dtype=np.float32)
        rng = self.rng(index, draw=draw)
        x = np.array(x if crop is None else random_crop(x, crop, rng), dtype=np.float32)
        if self.augment is not None:
            x = np.asarray(self.augment(x, self.sample_rate, rng), dtype=np.float32)
            if crop is not None and x.shape[-1] != crop:  # e.g. a codec that adds priming samples
                x = np.array(repeat_pad(x, crop), dtype=np.float32)
        return x

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Item ``key``: a row index, or ``(index, draw)`` for the ``draw``-th draw of a row in this epoch
        (:class:`sddkit.training.data.DistinctDraws`; training only, evaluation crops are fixed)."""
        index, draw = (key, 0) if np.ndim(key) == 0 else key  # type: ignore[misc]
        index, draw = int(index), int(draw)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} utterances")
        if draw < 0 or (draw and not self.train):
            raise ValueError(
                f"draw {draw} of item {index}: draws number the repeats of a training item (>= 0); an evaluation "
                "dataset has one fixed crop per item"
            )
        return {
            "waveform": torch.from_numpy(self.waveform(index, draw)),
            "label": torch.tensor(int(self.labels[index]), dtype=torch.int64),
            "domain": torch.tensor(int(self.domains[index]), dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }


def collate_pad(items: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch items of different lengths: waveform (B, T_max) zero-padded at the end, lengths (B,).

    The other keys (label, domain, index) are stacked to (B,). No model takes ``lengths`` yet: the
    front-ends (the SSL encoders and their MoLEx statistics included) would treat the padding as audio,
    so training, validation and scoring all use fixed-length crops or windows instead.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    lengths = torch.tensor([int(it["waveform"].shape[-1]) for it in items], dtype=torch.int64)
    wave = torch.zeros(len(items), int(lengths.max()), dtype=torch.float32)
    for i, it in enumerate(items):
        wave[i, : lengths[i]] = it["waveform"]
    out = {"waveform": wave, "lengths": lengths}
    for key in items[0]:
        if key != "waveform":
            out[key] = torch.stack([it[key] for it in items])
    return out
