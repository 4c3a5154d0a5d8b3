"""Training data plumbing: protocol specs -> tables -> datasets -> per-epoch, per-rank batch samplers.

Batches are fixed per ``(seed, epoch, rank)``: the sampler is rebuilt for every epoch from those
numbers only, so a resumed run skips the batches it already took (indices only, no audio is
loaded) and then sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, DistributedSampler

from sddkit.data.table import UtteranceTable
from sddkit.errors import AudioError, ConfigError, ProtocolError, SddkitError
from sddkit.training.distributed import DistInfo
from sddkit.training.recipe import DataConfig, ProtocolSpec, as_specs

log = logging.getLogger("sddkit.training")


def read_tables(specs: ProtocolSpec | Sequence[ProtocolSpec] | None, what: str = "data") -> UtteranceTable | None:
    """Read and concatenate the protocols of ``specs`` (``None`` when there are none).

    Errors name a spec by its key as the recipe holds it: ``data.train[1]`` in a list, ``data.train`` for a single
    spec (the key an override of it takes: ``data.train[0].where=...`` is refused where train is no list)."""
    tables = [table for _, _, table in _read_each(specs, what)]
    if not tables:
        return None
    if len(tables) == 1:
        return tables[0]
    _check_distinct_ids(tables, as_specs(specs), what)  # type: ignore[arg-type]
    _check_distinct_files(tables, as_specs(specs), what)  # type: ignore[arg-type]
    return UtteranceTable.concat(tables)


def _read_each(
    specs: ProtocolSpec | Sequence[ProtocolSpec] | None, what: str
) -> Iterator[tuple[str, ProtocolSpec, UtteranceTable]]:
    """Each spec of ``specs`` with its key (see :func:`read_tables`) and its rows, read and checked alone."""
    single = isinstance(specs, ProtocolSpec)
    for i, spec in enumerate(as_specs(specs)):  # type: ignore[arg-type]
        key = what if single else f"{what}[{i}]"
        try:
            table = spec_table(spec)
        except ConfigError as exc:  # which of the recipe's specs
            raise ConfigError(f"{key}: {exc}") from None
        except ProtocolError as exc:  # e.g. no such file: which spec, and where a relative path was looked for
            from sddkit.config import missing_relative_hint

            raise ProtocolError(f"{key}: {exc}{missing_relative_hint(spec.protocol)}") from None
        if len(table) == 0:
            raise ConfigError(
                f"{key}: {spec.protocol} has no utterances (after where={spec.where}, exclude={spec.exclude}, "
                f"folds={spec.folds})"
            )
        _check_one_label_per_file(table, f"{key}: {spec.protocol}")
        yield key, spec, table


def spec_table(spec: ProtocolSpec) -> UtteranceTable:
    """The rows of one data spec: its protocol after ``where`` (each value it lists must occur), ``exclude`` and
    ``folds`` (possibly none)."""
    from sddkit.data.protocols import read_protocol

    return select_rows(read_protocol(spec.protocol, spec.format, **spec.options), spec)


def select_rows(table: UtteranceTable, spec: ProtocolSpec) -> UtteranceTable:
    """The rows of ``table`` (``spec``'s protocol as read) that ``spec`` keeps: see :func:`spec_table`."""
    # both checked on the protocol as read, before any row is dropped (sdd cv's exclusions included)
    _check_listed_values(table, spec, "where", spec.where)
    _check_listed_values(table, spec, "exclude", spec.exclude)
    if spec.where:
        table = table.where(**spec.where)
    if spec.exclude:
        table = table.exclude(**spec.exclude)
    if spec.folds is not None:
        by = list(spec.folds.by)
        if by and not any(c in table.columns for c in by):  # group_folds' own error named neither spec nor key
            from sddkit.config import did_you_mean

            raise ConfigError(
                f"{spec.protocol}: folds.by {by}: the protocol has none of these columns"
                f"{did_you_mean(by, table.columns)} (options {spec.options}); columns: {', '.join(table.columns)}"
            )
        table = table.subset(np.isin(table.group_folds(spec.folds.by, spec.folds.n), spec.folds.keep))
    return table


def _check_listed_values(
    table: UtteranceTable,
    spec: ProtocolSpec,
    key: str,
    listed: Mapping[str, str | list[str]],
) -> None:
    """A ConfigError when ``where`` or ``exclude`` (``key``) names a column the protocol lacks, or lists a value no
    row of the protocol has: a misspelt source next to a valid one in ``where`` (``{source: [tortoise,
    yourts_demo]}``) silently trained on the valid one only, and in ``exclude`` (``{source: [resemblyzr]}``) it
    excluded nothing (as ``partitions`` checks its names). ``sdd cv`` adds to a spec's ``exclude`` only the fold
    values its protocol holds, so a fold's recorded recipe passes this check when ``sdd train`` runs it alone."""
    import difflib

    from sddkit.config import did_you_mean

    for col, value in listed.items():
        if col not in table.columns:
            raise ConfigError(
                f"{spec.protocol}: {key} {{{col}: ...}}: the protocol has no column {col!r}"
                f"{did_you_mean([col], table.columns)} (options {spec.options}); columns: {', '.join(table.columns)}"
            )
        missing = table.absent_values(col, value)
        if not missing:
            continue
        known = sorted({str(v) for v in table.column(col)})
        shown = ", ".join(map(repr, known[:20])) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
        close = []
        for v in missing:
            matches = difflib.get_close_matches(str(v), known, n=3)
            if matches:
                close.append(f"{', '.join(map(repr, matches))} for {v!r}")
        closest = f"; closest: {'; '.join(close)}" if close else ""
        effect = "" if key == "where" else ", so it excludes nothing"
        # a recipe run on a subset of its protocol (no such row left) had no word on how to drop the exclusion:
        # exclude=null is refused, an empty mapping is what lists nothing
        drop = "" if key == "where" else f"; on a protocol without them, drop them or the whole {key} ({key}: {{}})"
        raise ConfigError(
            f"{spec.protocol}: {key} {{{col}: {missing}}}: no row has {'it' if len(missing) == 1 else 'them'}"
            f"{effect} (options {spec.options}){closest}; {col} values there: {shown}{drop}"
        )


def _check_distinct_ids(tables: Sequence[UtteranceTable], specs: Sequence[ProtocolSpec], what: str) -> None:
    """Name the two specs that share utt_ids (concat's own error lists the ids but not where they come from)."""
    clash = UtteranceTable.first_shared_ids(tables)
    if clash is not None:
        i, j, shared = clash
        raise ConfigError(
            f"{what}[{j}] ({specs[j].protocol}) and {what}[{i}] ({specs[i].protocol}) share {len(shared)} "
            f"utt_id(s), e.g. {shared[:3]}: every utterance must appear once (rows listed twice: drop them "
            "with where/exclude/folds; two corpora whose ids collide: save one as an utterance table with "
            "prefixed utt_ids)"
        )


def file_key(path: str) -> str:
    """What tells two rows' audio files apart: the normalised absolute path ('' for a row without audio)."""
    return os.path.normpath(os.path.abspath(path)) if path else ""


def file_keys(table: UtteranceTable) -> list[str]:
    """Each row's :func:`file_key`, each folder made absolute once: ``os.path.abspath`` and ``normpath`` per row
    took nearly a second per pass over the 200k rows of an ASVspoof 5 protocol, and ``sdd train`` and ``sdd cv``
    make several passes."""
    folders: dict[str, str] = {}  # a row's folder as written (with its final separator) -> its key and a separator
    keys = []
    for path in map(str, table.column("path")):
        cut = path.rfind(os.sep)
        head, tail = path[: cut + 1], path[cut + 1 :]
        if not path or tail in ("", os.curdir, os.pardir) or os.altsep is not None:  # Windows: drives, two separators
            keys.append(file_key(path))
            continue
        folder = folders.get(head)
        if folder is None:
            folder = file_key(head or os.curdir)
            folder = folders[head] = folder if folder.endswith(os.sep) else folder + os.sep
        keys.append(folder + tail)
    return keys


def _check_distinct_files(tables: Sequence[UtteranceTable], specs: Sequence[ProtocolSpec], what: str) -> None:
    """Two specs that list one audio file under different utt_ids (two readers of one corpus, one keyed by file stem
    and one by relative path): a ConfigError naming both when they label it differently (the model was pushed
    towards both labels on the same audio), else a warning naming both (the file weighs twice as much as the others
    in training, or counts twice in validation)."""
    first: dict[str, tuple[int, str, int]] = {}
    for j, table in enumerate(tables):
        ids = [str(u) for u in table.column("utt_id")]
        labels = table.labels.tolist()
        keys = file_keys(table)
        shared = [(f, u, y) for f, u, y in zip(keys, ids, labels) if f and f in first]
        if shared:
            conflict = [(f, u, y) for f, u, y in shared if first[f][2] != y]
            f, u, y = (conflict or shared)[0]
            i, u0, y0 = first[f]
            pair = f"{what}[{j}] ({specs[j].protocol}) and {what}[{i}] ({specs[i].protocol})"
            if conflict:
                name = {1: "bona fide", 0: "spoof"}
                raise ConfigError(
                    f"{pair} label {len(conflict)} audio file(s) differently, e.g. {f}: {name[y]} as {u!r}, "
                    f"{name[y0]} as {u0!r}: a file has one label"
                )
            _warn_once(
                f"{pair} both list {len(shared)} audio file(s), e.g. {f} as {u!r} and {u0!r}: each weighs twice "
                "(drop the rows listed twice with where/exclude/folds)"
            )
        first.update({f: (j, u, y) for f, u, y in zip(keys, ids, labels) if f and f not in first})


def _check_one_label_per_file(table: UtteranceTable, where: str) -> None:
    """A ConfigError when one audio file is listed (under two utt_ids) both as bona fide and as spoof: the model
    was trained towards both labels on the same audio, and a validation or held-out score counted it in both
    classes. A file listed again with its label is a warning (it weighs as often as it is listed)."""
    first: dict[str, tuple[int, str]] = {}
    repeated: list[tuple[str, str, str]] = []
    for f, y, u in zip(file_keys(table), table.labels.tolist(), table.column("utt_id")):
        if not f:
            continue
        y0, u0 = first.setdefault(f, (y, str(u)))
        if y0 != y:
            bona, spoof = (u0, str(u)) if y0 == 1 else (str(u), u0)
            raise ConfigError(
                f"{where} lists {f} both as bona fide ({bona!r}) and as spoof ({spoof!r}): a file has one label"
            )
        if u0 != str(u):
            repeated.append((f, u0, str(u)))
    if repeated:  # as two specs listing one file are warned of (_check_distinct_files): never silent
        f, u0, u = repeated[0]
        _warn_once(
            f"{where} lists {len(repeated)} audio file(s) again under another utt_id, e.g. {f} as {u0!r} and {u!r}: "
            "each weighs as often as it is listed (drop the rows listed twice with where/exclude/folds)"
        )


def warn_shared_files(train: UtteranceTable, val: UtteranceTable) -> int:
    """Warn when ``data.val`` lists audio files that ``data.train`` trains on; returns how many it does.

    Accepted (a whole protocol as val is a legitimate check of fit, and ``sdd cv`` scores such files once), but
    never silent: a validation EER over training files rewards memorising them, so checkpoint selection, early
    stopping and the thresholds calibrated on val then favour the most overfit model.
    """
    seen = {f for f in file_keys(train) if f}
    shared = [(f, str(u)) for f, u in zip(file_keys(val), val.column("utt_id")) if f and f in seen]
    if shared:
        _warn_once(
            f"data.val lists {len(shared)} of its {len(val)} audio files in data.train too (e.g. {shared[0][0]} as "
            f"{shared[0][1]!r}): the validation EER, and the checkpoint selected and early stopping on it, then "
            "reward memorising them"
        )
    return len(shared)


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Log a warning about the data once per process: ``sdd cv`` reads a recipe's tables several times per fold
    (checking every fold first, the held-out rows, the fold's own run) and said the same thing each time."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("%s", message)


def require_both_classes(table: UtteranceTable, what: str) -> None:
    """Training and model selection need bona fide and spoof utterances; say which is missing and why."""
    n_bonafide = int((table.labels == 1).sum())
    n_spoof = len(table) - n_bonafide
    if n_bonafide == 0 or n_spoof == 0:
        raise ConfigError(
            f"{what} holds {n_bonafide} bona fide and {n_spoof} spoof utterances: a detector needs both classes "
            "(check the protocols' partitions, where and exclude)"
        )


def read_train_table(cfg: DataConfig) -> UtteranceTable:
    """``data.train`` read and checked: at least one protocol, both classes."""
    table = read_tables(cfg.train, "data.train")
    if table is None:
        raise ConfigError("data.train is empty: give at least one protocol to train on")
    require_both_classes(table, "data.train")
    return table


def read_val_table(cfg: DataConfig) -> UtteranceTable | None:
    """``data.val`` read and checked (both classes), or None when the recipe has none."""
    table = read_tables(cfg.val, "data.val")
    if table is not None:
        require_both_classes(table, "data.val")
    return table


# --- the audio files a run reads, checked before its first step ---------------------------------------------------

_SHOWN_PER_SPEC = 3  # unusable files named per spec in the refusal (its count says how many there are)
NO_AUDIO_PATH = "no audio path"


def unusable_audio(path: str) -> str | None:
    """Why ``path`` cannot be an utterance's audio, from one ``os.stat`` (links followed), an open and no decoding: no
    path, no such file, a broken link, a directory or other non-regular file, an empty or unreadable file; None when
    it may be audio (whether it decodes is found when it is read). Worded as ``load_audio`` refuses the file."""
    from sddkit.audio.io import file_problem

    if not path:
        return NO_AUDIO_PATH
    problem = file_problem(path)
    return None if problem is None else problem.reason


def check_audio_files(lists: Sequence[tuple[str, ProtocolSpec | Sequence[ProtocolSpec] | None]]) -> int:
    """Refuse a run whose data lists (``[("data.train", recipe.data.train), ("data.val", ...)]``) name audio files
    that are not there, before its first step; returns how many files were checked.

    Without it a missing, empty or broken file stopped the run only when the sampler first drew it, possibly epochs
    in, and a class-balanced run that never drew it finished without a word. A stat and an open per row, no decoding
    (0.74 s for 182k files on tmpfs, 1.5 s with the protocol read; docs/benchmarks.md); one error lists every spec's
    unusable files (how many, the first few with why) and what to do. A file that is there but does not decode is
    still found when read: by ``decode_cache: preload`` before the first step, else when first drawn."""
    started = time.monotonic()
    found: list[str] = []
    n_checked = n_bad = 0
    for what, specs in lists:
        for key, spec, table in _read_each(specs, what):
            shown: list[str] = []
            n = pathless = 0
            for path, utt in zip(map(str, table.column("path")), table.column("utt_id")):
                reason = unusable_audio(path)
                if reason is not None:
                    n += 1
                    pathless += not path
                    if len(shown) < _SHOWN_PER_SPEC:  # a wrong root makes every file missing: count those after
                        shown.append(f"{path or f'utterance {utt!r}'} ({reason})")
            n_checked += len(table)
            if n:
                n_bad += n
                more = f" and {n - len(shown)} more" if n > len(shown) else ""
                # a reader that found no audio folder beside its protocol (ASVspoof's) leaves the paths empty
                why = f" ({pathless} without a path: the reader found no audio folder, give it its root option)"
                found.append(
                    f"{key} ({spec.protocol}): {n} of its {len(table)} files, e.g. {', '.join(shown)}{more}"
                    + (why if pathless else "")
                )
    if found:
        names = [what for what, specs in lists if as_specs(specs)]  # type: ignore[arg-type]
        listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise ProtocolError(
            f"{n_bad} of the {n_checked} audio files listed in {listed} are missing or unusable (checked before the "
            f"first step): {'; '.join(found)}; restore them, point the protocol at where they are (a reader's root "
            "option, a labels CSV's paths), or leave their rows out with where/exclude"
        )
    log.info("the %d audio files of the data are there (checked in %.1f s)", n_checked, time.monotonic() - started)
    return n_checked


def build_dataset(table: UtteranceTable, cfg: DataConfig, *, train: bool, seed: int) -> Dataset:
    """An ``UtteranceDataset``: random crops + augmentation for training, fixed crops for evaluation."""
    from sddkit.data.dataset import CachedWaveforms, UtteranceDataset

    if cfg.domain_column not in table.columns:
        # refused by the dataset itself only after a preload had decoded the whole set, in words naming no option
        from sddkit.config import did_you_mean

        raise ConfigError(
            f"data.domain_column: the {'training' if train else 'evaluation'} data has no column "
            f"{cfg.domain_column!r}{did_you_mean([cfg.domain_column], table.columns)}; columns: "
            f"{', '.join(table.columns)}"
        )
    crop = cfg.crop_samples if train else (cfg.val_crop_samples or cfg.crop_samples)
    augment = pipeline = None
    if train and cfg.augment:
        from sddkit.augment.pipeline import AugmentationPipeline

        # the dataset calls augment(x, sr, rng) with its own per-(seed, epoch, item) generator
        pipeline = AugmentationPipeline(cfg.augment_specs, seed=seed, key="data.augment")
        augment = pipeline.apply
    waveforms = None
    if cfg.decode_cache == "preload":
        try:
            waveforms = CachedWaveforms.from_table(
                table, num_threads=max(1, cfg.num_workers), max_duration=cfg.max_duration_s
            )
        except ConfigError as exc:  # the preload would not fit in memory: which data, and the recipe key
            raise ConfigError(
                f"data.decode_cache=preload, {'training' if train else 'evaluation'} data: {exc}"
            ) from None
        except AudioError as exc:  # the files that fail to load, all of them: which data, and the recipe key
            raise type(exc)(f"data.decode_cache=preload, {'training' if train else 'evaluation'} data: {exc}") from None
    dataset = UtteranceDataset(
        table,
        crop_samples=crop,
        train=train,
        seed=seed,
        augment=augment,
        domain_column=cfg.domain_column,
        cache=cfg.decode_cache == "lazy",
        waveforms=waveforms,
        max_duration=cfg.max_duration_s,
    )
    _warn_short_files(dataset, table, waveforms)
    if pipeline is not None and cfg.num_workers > 0 and workers_are_forked():
        # the loader's workers are forked anew every epoch from this process: what it has measured (the codec
        # delays) they inherit, where each measured it again before (a third more CPU time, bundled recipe)
        pipeline.prepare(dataset.sample_rate)
    return dataset


def _warn_short_files(dataset: Any, table: UtteranceTable, waveforms: Any) -> None:
    """One warning, before the first step, naming the files under 0.1 s whose length is known: from the preload,
    else from the table's ``duration_s``. The dataset names the others when it first reads them. A 5 ms training
    file was tiled to the crop (a 2 s buzz labelled as speech) without a word, while ``sdd score`` refuses it."""
    if waveforms is not None:
        seconds = np.diff(waveforms.offsets) / waveforms.sample_rate
    else:
        seconds = np.asarray(table.column("duration_s"), dtype=np.float64)
    rows = dataset.short_files(seconds)
    if len(rows):
        what = "data.train" if dataset.train else "the evaluation data (data.val, molex.old_eval)"
        _warn_once(f"{what} lists {dataset.short_file_note(rows, seconds[rows])}")


def workers_are_forked() -> bool:
    """Whether a DataLoader's workers (started by the default multiprocessing context, as the trainer's are) are
    forked from this process, and so inherit what it holds in memory. Spawned ones (macOS's and Windows' default,
    or a ``set_start_method("spawn")``) start afresh: measuring the codec delays here first (every bit rate a
    recipe can draw: 15 s for the bundled one, a minute for wide ranges) only delayed the training's start."""
    import multiprocessing

    # the method set, or else the platform's default (the first listed), without fixing it as get_start_method() does
    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    return method == "fork"


def worker_errors(loader: Iterable[Any]) -> Iterator[Any]:
    """``loader``'s batches; a deliberate sddkit error raised in a DataLoader worker (a missing or empty
    audio file) keeps its own one-line message. The DataLoader re-raises it as the same type, but with
    "Caught X in DataLoader worker process N. Original Traceback ..." and the worker's traceback as message.
    A worker that ended without an error (killed by the system, out of memory) is an SddkitError saying so."""
    try:
        yield from loader
    except SddkitError as exc:
        text = str(exc)
        marker = f"{type(exc).__module__}.{type(exc).__qualname__}: "
        if text.startswith("Caught ") and "Original Traceback" in text and marker in text:
            exc.args = (text[text.rfind(marker) + len(marker) :].rstrip("\n"),)
        raise
    except (RuntimeError, ConnectionError, EOFError) as exc:
        # a worker killed without a Python error (the system's out-of-memory killer, most often): torch's
        # "DataLoader worker (pid(s) N) exited unexpectedly", or a ConnectionResetError when it died while passing
        # a batch, came with a traceback and no word of what to change
        if isinstance(exc, RuntimeError):
            if not str(exc).startswith(_WORKER_DIED):
                raise
            what = str(exc).strip()
        elif _loader_workers(loader) > 0:
            what = f"a DataLoader worker's batch could not be received ({type(exc).__name__}: {exc})"
        else:
            raise
        raise SddkitError(
            f"{what}: a data loader worker process stopped without an error, most often killed by the system for "
            "lack of memory (its log, e.g. `dmesg`, says so); each of the data.num_workers processes holds its own "
            "decoded files (all it has read with data.decode_cache=lazy): lower data.num_workers, use "
            "data.decode_cache=none or preload (one buffer the workers share), or data.num_workers=0"
        ) from exc


# how torch's DataLoader words a worker process that ended without raising (exited, or killed by a signal)
_WORKER_DIED = "DataLoader worker (pid"


def _loader_workers(loader: Iterable[Any]) -> int:
    """The worker processes of a DataLoader or of its iterator (0 for anything else)."""
    value = getattr(loader, "num_workers", getattr(loader, "_num_workers", 0))
    return value if isinstance(value, int) else 0


RANDOM_SAMPLER_SEED_STRIDE = 1_000_003
LOADER_SEED_STRIDE = 100_003
# the pseudo-epoch whose batches re-estimate the batch-norm statistics of trainer.ema_decay's averaged weights: no
# run reaches it, and with the random sampler's stride its order is no other seed's epoch
EMA_BN_EPOCH = RANDOM_SAMPLER_SEED_STRIDE - 1


def loader_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """The generator of a training DataLoader: it draws the base seed of the loader's workers (each worker seeds
    ``random``, numpy's global generator and torch's from it and its worker id), from ``(seed, epoch, rank)`` only,
    never from the global generator. The built-in dataset keys its crops by item and draw; this is for a dataset
    of one's own that draws from the global generators in its workers.

    Rank 0 keeps ``seed * 100_003 + epoch``; every other rank gets a value mixed from all three numbers. With
    ``(seed, epoch)`` alone, worker k of every rank drew the same random numbers (while with ``num_workers: 0``
    each rank's items draw from its own main-process streams).
    """
    if rank == 0:
        value = int(seed) * LOADER_SEED_STRIDE + int(epoch)
    else:
        key = [int(seed), int(epoch), int(rank)]
        value = int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> np.uint64(1))
    return torch.Generator().manual_seed(value)


class SkipBatches:
    """A batch sampler without its first ``skip`` batches (resuming mid-epoch; indices only)."""

    def __init__(self, batches: Iterable[list[int]], skip: int = 0):
        self.batches = batches
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(iter(self.batches), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.skip)  # type: ignore[arg-type]


class DistinctDraws:
    """A batch sampler whose repeated items become ``(index, draw)`` pairs, so each repeat is a new draw.

    An oversampling sampler (``class_balanced`` on a corpus with fewer bona fide files than spoofs)
    draws some items twice in one epoch; the dataset keys an item's crop and augmentation by
    ``(seed, epoch, index)``, so without this the repeat would be an exact copy. The ``k``-th
    earlier occurrence of an index on this rank gets ``draw = k * world_size + rank``: distinct
    across repeats and across ranks, and 0 for first draws on rank 0 (whose items are unchanged).
    Counts start at every ``iter()`` (one epoch), so a resumed run (:class:`SkipBatches` on top)
    sees the draws an uninterrupted run would. Used for datasets that declare ``accepts_draws``
    (:class:`sddkit.data.dataset.UtteranceDataset`); other datasets get plain indices.
    """

    def __init__(self, batches: Iterable[list[int]], *, rank: int = 0, world_size: int = 1):
        self.batches = batches
        self.rank = int(rank)
        self.world_size = int(world_size)

    def __iter__(self) -> Iterator[list[Any]]:
        seen: dict[int, int] = {}
        for batch in self.batches:
            out: list[Any] = []
            for index in batch:
                index = int(index)
                k = seen.get(index, 0)
                seen[index] = k + 1
                draw = k * self.world_size + self.rank
                out.append((index, draw) if draw else index)
            yield out

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # per_domain and the like of the wrapped sampler
        if name == "batches":  # not set yet (copy/unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.batches, name)


def _set_epoch(obj: Any, epoch: int) -> None:
    if hasattr(obj, "set_epoch"):
        obj.set_epoch(epoch)


def _set_dataset_epoch(dataset: Any, epoch: int) -> None:
    """``set_epoch`` of ``dataset``, or of the datasets it wraps (torch's ``Subset``, ``ConcatDataset``, a wrapper of
    one's own holding ``dataset`` or ``datasets``) when it has none itself: a wrapped ``UtteranceDataset`` stayed
    at epoch 0, and drew the same crops and augmentations every epoch without a word."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
        return
    inner = getattr(dataset, "dataset", None)
    wrapped = [inner] if isinstance(inner, Dataset) else []
    several = getattr(dataset, "datasets", None)
    if isinstance(several, (list, tuple)):
        wrapped += [d for d in several if isinstance(d, Dataset)]
    for d in wrapped:
        if d is not dataset:
            _set_dataset_epoch(d, epoch)


def epoch_batches(dataset: Dataset, cfg: DataConfig, *, seed: int, epoch: int, info: DistInfo) -> Iterable[list[int]]:
    """This rank's batches (lists of dataset indices) for ``epoch``; every rank gets the same number.

    ``random``, ``class_balanced`` and ``domain_balanced`` drop each rank's last partial batch (fewer than
    ``batch_size`` of its items; others each epoch, as the order is drawn anew; ``random`` also drops up to
    ``world_size - 1`` items so that the ranks' shares are equal, where the balanced samplers repeat a few);
    ``domain_batch`` yields whole batches only."""
    _set_dataset_epoch(dataset, epoch)
    if cfg.sampler == "random":
        # DistributedSampler shuffles with seed + epoch: seed 1's epoch 1 would be seed 2's epoch 0. Spreading the
        # seeds apart keeps every (seed, epoch) order distinct (for fewer than a million epochs)
        sampler = DistributedSampler(
            dataset,
            num_replicas=info.world_size,
            rank=info.rank,
            shuffle=True,
            seed=seed * RANDOM_SAMPLER_SEED_STRIDE,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        batches: Iterable[list[int]] = BatchSampler(sampler, cfg.batch_size, drop_last=True)
    else:
        batches = _library_batch_sampler(dataset, cfg, seed=seed, epoch=epoch, info=info)
    if cfg.distinct_draws and getattr(dataset, "accepts_draws", False):  # a dataset that reads (index, draw) keys
        batches = DistinctDraws(batches, rank=info.rank, world_size=info.world_size)
    if len(batches) == 0:  # type: ignore[arg-type]
        raise ConfigError(
            f"{_epoch_source(dataset, cfg)} gives no full batch of {cfg.batch_size} "
            f"per process over {info.world_size} process(es)"
        )
    return batches


def _epoch_source(dataset: Dataset, cfg: DataConfig) -> str:
    """What sets the epoch's length, for the error of an epoch too short for one batch: the training set, or the
    balanced samplers' ``num_samples`` option when it is given."""
    num_samples = cfg.sampler_options.get("num_samples") if cfg.sampler != "random" else None
    if num_samples is not None:
        return f"data.sampler_options.num_samples={num_samples} (an epoch's draws, all processes together)"
    return f"the training set ({len(dataset)} utterances)"  # type: ignore[arg-type]


def _library_batch_sampler(
    dataset: Dataset, cfg: DataConfig, *, seed: int, epoch: int, info: DistInfo
) -> Iterable[list[int]]:
    """The class-/domain-balanced samplers of ``sddkit.data.samplers``, sharded by rank."""
    from sddkit.data import samplers

    labels = getattr(dataset, "labels", None)
    domains = getattr(dataset, "domains", None)
    if labels is None or domains is None:
        raise ConfigError(f"data.sampler {cfg.sampler!r} needs a dataset exposing 'labels' and 'domains'")
    options = dict(cfg.sampler_options)
    common = {"seed": seed, "rank": info.rank, "world_size": info.world_size}
    names = getattr(dataset, "domain_names", None)
    if cfg.sampler == "domain_batch":  # checked here, where the domains' names are known (the sampler sees indices)
        spoof = sorted({names[int(d)] if names else str(d) for d, y in zip(domains, labels) if int(y) == 0})
        if len(spoof) < 2:
            raise ConfigError(
                f"data.sampler 'domain_batch' needs spoofs of at least 2 domains (data.domain_column "
                f"{cfg.domain_column!r}); found {spoof}"
            )
    try:
        if cfg.sampler == "domain_batch":
            # the domains are the dataset's indices (their order fixes the draws); its names are for the messages
            batches = samplers.DomainBatchSampler(
                domains, labels, batch_size=cfg.batch_size, names=names, **common, **options
            )
        elif cfg.sampler == "class_balanced":
            sampler = samplers.ClassBalancedSampler(labels, **common, **options)
            batches = BatchSampler(sampler, cfg.batch_size, drop_last=True)
        else:
            sampler = samplers.DomainBalancedSampler(domains, labels, **common, **options)
            batches = BatchSampler(sampler, cfg.batch_size, drop_last=True)
    except (ValueError, TypeError) as exc:  # the samplers check their arguments; name the recipe key
        raise ConfigError(f"data.sampler {cfg.sampler!r} (data.sampler_options {options}): {exc}") from None
    _set_epoch(batches, epoch)
    _set_epoch(getattr(batches, "sampler", None), epoch)
    return batches


def eval_batches(n: int, batch_size: int, info: DistInfo) -> list[list[int]]:
    """This rank's share (every ``world_size``-th item) of ``range(n)``, in order, in batches."""
    mine = list(range(info.rank, n, info.world_size))
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
