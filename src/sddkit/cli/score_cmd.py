"""``sdd score INPUTS... --out FILE.csv|FILE.jsonl``: score audio files with a model.

INPUTS are audio files, folders (searched recursively) and manifests (CSV with a ``path``
column, one path per line, or a protocol file). One row per file:
``path,score,probability,decision,duration_s,n_windows,raw_score[,<stat>...],error``, where a mixture adds
``gate_w0,...,expert_score0,...`` and a MoLEx model ``molex_gate_mean_0,...,molex_top1_count_0,...``.
Re-running with the same ``--out`` resumes (paths already written are skipped; with
``--retry-errors`` the files whose row holds an error are scored again; without it, those an earlier run refused as
longer than a lower ``--max-duration-s`` are). Under
torchrun (``WORLD_SIZE > 1``) each rank scores a shard and rank 0 merges them into ``--out``.

Exit status: 0 when every input has its row, error rows included (the summary line's ``failed`` counts them),
except that a one-process run whose files all failed (it read at least one and scored none) exits 1 after
writing their error rows, unless the output holds a score of one of its inputs that an earlier run wrote (a
resume, a ``--retry-errors`` rerun); a rerun skips those rows (exit 0) unless ``--retry-errors`` reads them again.
Under torchrun every rank exits 0 (one that exits non-zero makes torchrun stop the others); a rank stopped by an
error (its shard in use by another run, a model it cannot load) exits 2, and so do the others, each with one line
(:class:`~sddkit.training.distributed.PeerProcessError`) instead of waiting for it or a gloo traceback.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import sys
import warnings
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sddkit.scoring import batch
    from sddkit.scoring.api import ScoringDetector
    from sddkit.scoring.batch import ScoreWriter

# the exit status of a (one-process) run whose files all got an error row and whose output holds no score of them
ALL_FAILED = 1
# what follows the error row of a file over --max-duration-s
TOO_LONG_HINT = "; sdd score --max-duration-s sets the limit (0: none)"


def register(sub: argparse._SubParsersAction) -> None:
    from sddkit.scoring.allocator import add_allocator_argument

    p = sub.add_parser("score", help="score audio files/folders/manifests into a CSV or JSONL file")
    p.add_argument("inputs", nargs="*", help="audio files, folders, or manifests (CSV with 'path', list, protocol)")
    p.add_argument(
        "--model",
        default=None,
        help="model directory, or .onnx file with --backend onnx (default: the bundled default model)",
    )
    p.add_argument("--out", required=True, help="output file: .csv or .jsonl (resumed when it exists)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
    p.add_argument("--workers", type=int, default=2, help="decoding threads (0 = decode in the main thread; default 2)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: OMP_NUM_THREADS if set, else all cores, shared among torchrun's local ranks)",
    )
    p.add_argument("--windows", action="store_true", help="also write per-window scores (sidecar or JSON field)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="inference engine (default torch)")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device (cpu, cuda, cuda:1, ...; default cpu; under torchrun, cuda is each process's GPU "
        "LOCAL_RANK); --backend onnx runs on cpu",
    )
    p.add_argument(
        "--max-duration-s",
        type=float,
        default=600.0,
        help="files longer than this get an error row, scored by a rerun with a larger limit (0 = no limit; "
        "default 600)",
    )
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="on resume, score again the files whose earlier row holds an error (e.g. after mending them)",
    )
    p.add_argument("--merge", action="store_true", help="only merge finished shard files OUT.rank<r> into OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_allocator_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sddkit.cli.options import check_minimums, check_paths_given, check_rows_out
    from sddkit.errors import ConfigError
    from sddkit.scoring import batch

    check_paths_given(args, "model", "out")  # `--out ""` before check_rows_out, which called it a folder
    check_rows_out(args.out, "scores.csv")
    out = Path(args.out)
    if args.merge:
        # out= as for scoring: the glob that scored (clips/* with --out clips/scores.csv) names the shards and their
        # markers too, which read as manifests failed the merge
        order = batch.expand_inputs(args.inputs, out=out) if args.inputs else None
        rows = batch.merge_shards(out, order=order)
        print(f"merged {rows} rows into {out}", file=sys.stderr)
        _warn_unscored(out, order or [])
        return 0
    if not args.inputs:
        raise ConfigError("sdd score needs at least one input (file, folder or manifest)")
    _refuse_model_dirs_as_inputs(args.inputs)
    check_minimums(args, batch_size=1, workers=0, threads=1, max_duration_s=0)
    batch.check_writable(out)  # before the model loads and the inputs are listed
    _set_threads(args.threads)

    from sddkit.scoring.allocator import tune_malloc
    from sddkit.scoring.api import check_backend_device

    check_backend_device(args.backend, args.device)  # before reading a large manifest

    tune_malloc(args.allocator)

    from sddkit.training.distributed import dist_info_from_env, rank_device

    # torchrun's RANK / WORLD_SIZE, refused when not numbers, out of range, or WORLD_SIZE > 1 without RANK (every
    # process took rank 0's share, the others' files never scored)
    dist_info = dist_info_from_env()
    rank, world = dist_info.rank, dist_info.world_size
    if world > 1:  # a bare cuda: this process's GPU (LOCAL_RANK), not GPU 0 for every rank
        args.device = rank_device(args.device, dist_info)
    piped = [i for i in args.inputs if batch.is_pipe(Path(i))] if world > 1 else []
    if piped:  # each rank lists the inputs itself: from one pipe, each read a part of the list (or all, or none)
        # before the process group: every rank sees the same pipe and stops here alike, none waiting for another
        raise ConfigError(
            f"{piped[0]} is a pipe, which only one of torchrun's {world} ranks can read (each rank lists the inputs "
            "itself): write the list to a file and give that"
        )
    target = batch.shard_path(out, rank) if world > 1 else out
    # the process group first: a rank refused by the checks below (its shard in use by another run, an earlier
    # run's shards) stops the others at once; before it, they waited in init_process_group for its 12 hours
    # (torchrun ends them, another launcher did not)
    grouped = world > 1 and _init_process_group(rank, world)
    try:
        lock = _start_rank(args, out, target, rank, world)
        try:
            return _score(args, out, target, rank, world, lock)
        finally:
            lock.release()  # (released by the writer already when it was opened)
    except RuntimeError as exc:
        from sddkit.training.distributed import DistInfo, peer_lost

        # gloo's "Connection closed by peer" of a rank that stopped on an error of its own (printed by it): one line
        # that says so, not a traceback around that rank's error
        lost = peer_lost(exc, DistInfo(rank=rank, world_size=world, local_rank=rank))
        if lost is None:
            raise
        raise lost from None
    finally:
        if grouped:
            _leave_process_group()


def _start_rank(args: argparse.Namespace, out: Path, target: Path, rank: int, world: int) -> batch.OutputLock:
    """``target``'s lock, once the checks every rank makes before scoring passed on every rank (a collective under a
    process group: each rank's failure is raised on all, as a :class:`PeerProcessError` on the others)."""
    from sddkit.errors import SddkitError
    from sddkit.scoring import batch
    from sddkit.training.distributed import DistInfo, all_started

    lock: batch.OutputLock | None = None
    failure: Exception | None = None
    try:
        # taken now, not by the writer once the model has loaded: a second run into the same output loaded its
        # model (minutes for a large one) and listed its inputs, only to be refused then
        lock = batch.OutputLock(target)
        _check_earlier_shards(out, world)
    except SddkitError as exc:
        failure = exc
    if failure is not None and lock is not None:
        lock.release()
    all_started(failure, DistInfo(rank=rank, world_size=world, local_rank=rank))
    assert lock is not None  # (all_started raised otherwise)
    return lock


def _refuse_model_dirs_as_inputs(inputs: list[str]) -> None:
    """Refuse an input that is an sddkit model directory: ``sdd score run/best a.flac`` (``--model`` left out) scored
    a.flac with the bundled model, with no more than a note that run/best holds no audio. So is an ONNX export (an
    .onnx file, or a folder ``sdd export-onnx --out DIR`` wrote: its model.onnx without a config.json), which was
    scored as audio too (an error row) while the bundled model scored the rest, and the run exited 0. A path the OS
    refuses to look at (a name too long) is left to the scoring, whose error row names it."""
    from sddkit.errors import ConfigError

    for item in inputs:
        try:
            kind = _model_kind(Path(item))
        except OSError:
            continue
        if kind == "model":
            raise ConfigError(
                f"{item} is an sddkit model directory, not audio to score: give it as --model {item} (the inputs are "
                "audio files, folders of them, or manifests)"
            )
        if kind is not None:
            raise ConfigError(
                f"{item} is an ONNX export, not audio to score: give it as --backend onnx --model {kind} (the inputs "
                "are audio files, folders of them, or manifests)"
            )


def _model_kind(path: Path) -> str | None:
    """``"model"`` for an sddkit model directory (its config.json of format sddkit-model), the ONNX graph to give as
    ``--model`` for an ONNX export (an .onnx file, or a folder holding model.onnx, no config.json and no audio: a
    folder of audio beside a model.onnx is audio), else None."""
    import json

    from sddkit.detectors.model_dir import CONFIG_NAME, FORMAT
    from sddkit.scoring.onnx_export import ONNX_NAME

    if path.suffix.lower() == ".onnx" and path.is_file():
        return str(path)
    if not path.is_dir():
        return None
    config = path / CONFIG_NAME
    if not config.is_file():
        return str(path / ONNX_NAME) if (path / ONNX_NAME).is_file() and not _holds_audio(path) else None
    try:
        is_model = json.loads(config.read_text()).get("format") == FORMAT
    except (ValueError, AttributeError):  # not JSON, or not an object: not a model's
        return None
    return "model" if is_model else None


def _holds_audio(folder: Path) -> bool:
    """Whether ``folder`` or a folder below it holds an audio file (by extension; the walk stops at the first)."""
    from sddkit.audio.files import AUDIO_EXTENSIONS

    for _, _, names in os.walk(folder):
        if any(Path(n).suffix.lower() in AUDIO_EXTENSIONS for n in names):
            return True
    return False


def _leave_process_group() -> None:
    """Destroy the process group :func:`_init_process_group` created, where :func:`_merge_after_shards` did not (a
    rank stopped by an error): a caller of ``main`` in this process may start another group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _load_detector(args: argparse.Namespace, rank: int) -> ScoringDetector:
    """The model of ``--model``; an ONNX export whose model directory was recalibrated or retrained since it was
    exported (it scores as it is) is said in one warning line of rank 0, not as a Python warning with a source line."""
    from sddkit.scoring.api import load_detector
    from sddkit.scoring.onnx_export import StaleExportWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleExportWarning)  # said below, once
        detector = load_detector(args.model, device=args.device, backend=args.backend, batch_size=args.batch_size)
    stale = detector.info.get("source_changed")
    if rank == 0 and stale:
        print(f"sdd score: warning: {stale}", file=sys.stderr)
    return detector


def _score(args: argparse.Namespace, out: Path, target: Path, rank: int, world: int, lock: batch.OutputLock) -> int:
    """The run of :func:`run` once ``target``'s lock is held (``lock``, handed on to the writer)."""
    from sddkit.audio.files import AUDIO_EXTENSIONS
    from sddkit.cli.options import check_max_duration_fits
    from sddkit.scoring import batch

    if world > 1:
        # this rank scores again: a marker left by its earlier run must not let another rank merge meanwhile; so
        # cleared now, not once the model has loaded (a rank with nothing left to score merged before that, and
        # what this rank scored then was left in a shard no rank merged)
        batch.clear_shard_done(out, rank)
    empty: list[str] = []
    own: list[str] = []
    repeated: list[str] = []
    paths = batch.expand_inputs(args.inputs, out=out, empty_folders=empty, skipped=own, repeated=repeated)
    if world > 1:
        paths = _rank0_listing(paths)
    if rank == 0 and paths:  # with no paths at all the error below says it, in one line (was the note, then it)
        for folder in empty:  # else a mistyped folder, or one of .pcm/.dat files, "succeeds" with no rows
            print(
                f"sdd score: note: {folder} holds no audio file (names ending {' '.join(AUDIO_EXTENSIONS)}; "
                "a file under another name is scored when given directly or listed in a manifest)",
                file=sys.stderr,
            )
        if repeated:  # the summary's "files" counted each once, without a word on the inputs' other listings
            print(
                f"sdd score: note: {len(repeated)} input(s) name a file listed already (e.g. {repeated[0]}): each "
                "file is scored once, in one row",
                file=sys.stderr,
            )
    if not paths:  # only folders list nothing (a manifest that lists no path is refused): said, not an empty output
        from sddkit.errors import ProtocolError

        if own and len(own) == len(args.inputs):
            # else "no audio files in scores.csv (folders are searched for ...)" of an output that lists audio files
            raise ProtocolError(
                f"{', '.join(own)}: this run's own output file(s) (--out {out}), never read as inputs; name the audio "
                "files, folders or manifests to score (an output may be the manifest of a run with another --out)"
            )
        raise ProtocolError(
            f"no audio files in {', '.join(map(str, args.inputs))} (folders are searched for "
            f"{' '.join(AUDIO_EXTENSIONS)}; name files of other suffixes directly, or list them in a "
            "manifest)"
        )
    detector = _load_detector(args, rank)
    # a limit no file could pass
    check_max_duration_fits(args.max_duration_s, detector.inference.min_duration_s, "every file would get an error row")
    columns = batch.output_columns(detector.weight_columns())
    mine = batch.shard_of(paths, rank, world)
    run = batch.run_info(detector, windows=args.windows)

    wanted = {os.path.abspath(q) for q in paths}
    # files an earlier run refused as longer than a lower --max-duration-s are scored again, as their rows' hint says
    limit = args.max_duration_s or math.inf
    # a shard's relative paths are relative to the folder of the output it is merged into: rows merged by a run
    # started in another folder were otherwise scored again and the new rows, merged, named files not there
    base = batch.shard_base(out) if world > 1 else None
    with batch.ScoreWriter(
        target,
        columns,
        windows=args.windows,
        retry_errors=args.retry_errors,
        retry_inputs=paths,
        run=run,
        base=base,
        lock=lock,
        retry_below_limit=limit,
    ) as writer:
        # rows merged by an earlier run count as done too, and those in the other shards of an earlier run stopped
        # before it merged them: the other ranks' (a run of as many ranks, or of fewer, whose shards fall to this
        # run's ranks as they are numbered), and those of ranks beyond this run's (a run with more ranks). Their
        # shards are merged with this run's. (Each rank read only its own shard and those of ranks gone: a resume
        # with more ranks scored again every file of an earlier shard that fell to another rank now.)
        windowless: set[str] = set()  # rows of these inputs that lost their windows (below)
        for earlier in _earlier_outputs(out, rank, world):
            # whole rows only, the file left as it is: its rank may be appending to it (its own share, not this
            # rank's), or a rank stopped mid-row left a row cut short, which the merge cuts off
            checked = False
            # scored rows of these inputs whose windows its sidecar lacks (deleted or replaced since) are scored again,
            # as the writer does for its own file: counted as done, the merged output kept them without windows
            lacking = _windowless(writer, earlier, wanted) if args.windows else set()
            windowless |= lacking
            for r in batch.iter_whole_rows(earlier):
                if not checked:  # rows of another model or settings are not taken for this run's
                    if earlier == out:
                        batch.check_run_info(earlier, {**run, "columns": columns})
                    else:
                        batch.check_shard_run_info(earlier, {**run, "columns": columns}, target)
                    checked = True
                if r.get("path") and not batch.rescored(r, args.retry_errors, limit):
                    if writer.absolute(r.get("path")) not in lacking:
                        writer.done.add(writer.absolute(r.get("path")))
        _resume_notes(writer, target, args.max_duration_s)
        # those of this rank's share that no other file holds with windows: this rank scores them
        rescoring = len(({os.path.abspath(q) for q in mine} & windowless) - writer.done)
        if rescoring:
            print(
                f"sdd score: note: {rescoring} file(s) of {target}'s share scored by an earlier run have no windows "
                f"beside their rows ({batch.windows_path(out).name} or another shard's, deleted or replaced since?): "
                "they are scored again",
                file=sys.stderr,
            )
        # rows an earlier run wrote for files that are not among these inputs stay in the output: say so
        others = len(writer.done - wanted)
        if others:
            print(f"sdd score: note: {target} keeps {others} row(s) of files not among these inputs", file=sys.stderr)
        summary = batch.score_files(
            detector,
            mine,
            writer,
            workers=args.workers,
            max_duration=args.max_duration_s or None,
            progress=not args.quiet and rank == 0,
            # the decoder's "max_duration" is this command's option: say which, and how to lift it
            too_long_hint=TOO_LONG_HINT,
        )
    print(
        json.dumps(
            {
                "rank": rank,
                "out": str(target),
                "files": summary.total,
                "skipped": summary.skipped,
                "scored": summary.scored,
                "failed": summary.failed,
                "audio_s": round(summary.audio_s, 3),
                "other_rows": others,
            }
        ),
        file=sys.stderr,
    )
    if world > 1:
        batch.mark_shard_done(out, rank, world, summary.scored + summary.failed)
        _merge_after_shards(out, rank, world, paths)
        return 0  # a rank exiting non-zero makes torchrun stop the ranks still scoring: the summaries say it
    if summary.failed and not summary.scored and not _holds_a_score(writer, target, wanted):
        # a glob that did not expand, a manifest whose paths are relative to another folder, an unmounted disk, a
        # model answering NaN: exit 0 let a pipeline go on to evaluate a file of error rows
        print(
            f"sdd score: every one of the {summary.failed} file(s) this run read failed (see the error column of "
            f"{target}); exit status {ALL_FAILED}",
            file=sys.stderr,
        )
        return ALL_FAILED
    return 0


def _resume_notes(writer: ScoreWriter, target: Path, max_duration_s: float) -> None:
    """The notes of a resume on what the writer found in ``target``: rows it scores again, rows it cannot vouch for."""
    from sddkit.scoring import batch

    if writer.retried_too_long:
        print(
            f"sdd score: note: {writer.retried_too_long} file(s) an earlier run refused as longer than a lower "
            f"--max-duration-s are scored again (limit now {_limit_text(max_duration_s)})",
            file=sys.stderr,
        )
    if writer.windows_rescored:
        print(
            f"sdd score: note: {writer.windows_rescored} file(s) scored by an earlier run have no windows in "
            f"{batch.windows_path(target)} (deleted or replaced since?): they are scored again",
            file=sys.stderr,
        )
    if writer.windows_missing_kept:
        print(
            f"sdd score: note: {writer.windows_missing_kept} row(s) of files not among these inputs have no windows "
            f"in {batch.windows_path(target)}: name those files too to score them again",
            file=sys.stderr,
        )
    if writer.versions_changed:  # not refused (an upgrade between interruption and resume is fine): said
        print(
            f"sdd score: note: {target} holds rows scored under other package versions "
            f"({', '.join(writer.versions_changed)}); its run record keeps them as earlier_versions",
            file=sys.stderr,
        )
    if writer.git_changed:  # not refused (code changes between an interruption and its resume are normal): said
        print(
            f"sdd score: note: {target} holds rows scored by other code ({writer.git_changed}); its run record "
            "keeps it as earlier_git",
            file=sys.stderr,
        )
    if writer.unrecorded:  # not refused (an output of an earlier version has none): said
        print(
            f"sdd score: note: {target} holds rows without a run record ({batch.run_record_path(target).name}"
            " missing): which model scored them cannot be checked; delete the output to score every file with "
            "this model",
            file=sys.stderr,
        )


def _windowless(writer: ScoreWriter, earlier: Path, wanted: set[str]) -> set[str]:
    """The files of ``wanted`` (absolute paths) that hold a scored row in ``earlier`` (the merged output or another
    shard, CSV) but not one window in its sidecar: a ``--windows`` resume scores them again, as the writer does those
    of its own file. (A JSONL row holds its windows itself.) Whole rows only: the sidecar's rank may be appending to it,
    but a row is only ever written after its windows."""
    from sddkit.scoring import batch

    if batch.output_format(earlier) != "csv":
        return set()
    scored = {
        writer.absolute(r["path"])
        for r in batch.iter_whole_rows(earlier)
        if r.get("path") and not r.get("error") and writer.absolute(r["path"]) in wanted
    }
    sidecar = batch.windows_path(earlier)
    if not scored or not sidecar.is_file():
        return scored
    return scored - {writer.absolute(r.get("path")) for r in batch.iter_whole_rows(sidecar)}


def _earlier_outputs(out: Path, rank: int, world: int) -> list[Path]:
    """The files whose rows count as scored for rank ``rank`` of ``world`` besides its own shard: ``out`` (rows an
    earlier run merged) and every other shard ``out.rank<r>`` (none for one process, which is refused beside
    shards)."""
    from sddkit.scoring import batch

    if world == 1:
        return []
    others = [batch.shard_path(out, r) for r in range(world) if r != rank]
    return [p for p in ([out] + others) if p.is_file()] + batch.stale_shards(out, world, free_only=False)


def _limit_text(max_duration_s: float) -> str:
    """``--max-duration-s`` as a note says it: ``600 s``, or ``none`` for 0."""
    return f"{max_duration_s:g} s" if max_duration_s else "none"


def _holds_a_score(writer: ScoreWriter, target: Path, wanted: set[str]) -> bool:
    """Whether ``target`` holds a scored row (no error) of one of these inputs, written by an earlier run: a
    resume whose remaining files all failed, or a ``--retry-errors`` rerun whose mended files still fail, leaves
    an output of scores (exit 1 would have said otherwise of the very file a first run exited 0 for)."""
    from sddkit.scoring import batch

    return any(
        r.get("path") and not r.get("error") and writer.absolute(r["path"]) in wanted
        for r in batch.iter_rows(target)
        if isinstance(r, dict)
    )


def _check_earlier_shards(out: Path, world: int) -> None:
    """Refuse, before any scoring, shard markers an earlier run with another WORLD_SIZE left for ``out``:
    its shards would otherwise block (or be left out of) this run's merge after hours of work; and, for one
    process, any shards at all."""
    from sddkit.errors import ProtocolError
    from sddkit.scoring import batch

    if world == 1:
        # one process never reads the shards: it would score every file again beside them, and a later --merge
        # would add their rows to its own
        # a shard, its marker or its run record (its lock stays after a run: not one), not any file whose name
        # begins so (scores.csv.ranking.txt refused every run into scores.csv as "shards of an unfinished run")
        shard = re.compile(rf"{re.escape(out.name)}\.rank\d+(?:\.done|\.run\.json)?")
        shards = sorted(p.name for p in out.parent.glob(f"{glob.escape(out.name)}.rank*") if shard.fullmatch(p.name))
        if shards:
            raise ProtocolError(
                f"{out}: shards of an unfinished torchrun run are here ({', '.join(shards[:3])}): "
                f"{_how_to_finish(out)}, or remove its {out.name}.rank* files"
            )
        return
    try:
        recorded, _ = batch.complete_shards(out)
    except ProtocolError as exc:
        raise ProtocolError(f"{exc} (files {out.name}.rank*)") from None
    if recorded not in (0, world):
        raise ProtocolError(
            f"{out}: shards of an earlier run with WORLD_SIZE={recorded} are here ({out.name}.rank*.done), "
            f"this run has WORLD_SIZE={world}: {_how_to_finish(out)}, or remove its {out.name}.rank* files"
        )


def _how_to_finish(out: Path) -> str:
    """What finishes the torchrun run whose shards of ``out`` are there: ``--merge`` only when every rank marked its
    shard finished (it merges nothing else); else that run resumed under torchrun, with the number of processes
    its markers record, if any. ("merge what it wrote", said of the shards of a run stopped before its ranks
    finished, was refused: "no finished shards to merge"; and a one-process run, which is what torchrun starts with
    --nproc_per_node=1, is refused beside them.)"""
    from sddkit.errors import ProtocolError
    from sddkit.scoring import batch

    try:
        recorded, missing = batch.complete_shards(out)
    except ProtocolError:  # markers that disagree: said where they are read
        recorded, missing = 0, []
    if recorded and not missing:
        return f"every one of its {recorded} ranks finished, so merge them (sdd score --merge --out {out})"
    processes = f"--nproc_per_node={recorded}" if recorded else "2 or more processes"
    return (
        f"resume that run under torchrun ({processes}, the same inputs and --out: it scores what its shards lack, "
        "then merges)"
    )


def _set_threads(threads: int | None) -> None:
    """``threads`` (already checked >= 1 by ``run``); else ``OMP_NUM_THREADS`` when it is set (torchrun sets it to
    1 for each of its processes), else every core this process may use, shared among the processes torchrun
    started on this machine (``LOCAL_WORLD_SIZE``): all cores in each of them ran N times as many threads as
    there are cores."""
    import torch

    if threads is None:
        threads = _default_threads()
    torch.set_num_threads(threads)


def _default_threads() -> int:
    """The torch threads of a run without ``--threads`` (see :func:`_set_threads`)."""
    try:
        omp = int(os.environ.get("OMP_NUM_THREADS", "").strip())
    except ValueError:
        omp = 0  # unset, or not a number (then OpenMP ignores it too)
    if omp >= 1:
        return omp
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1").strip() or 1)
    except ValueError:
        local = 1
    return max(1, cores // max(1, local))


def _init_process_group(rank: int, world: int) -> bool:
    """A CPU (gloo) process group when torchrun's rendezvous variables are set; else file-based merging. Returns
    True when this call created it."""
    import torch.distributed as dist

    if not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")) or not dist.is_available():
        return False
    if dist.is_initialized():
        return False
    # long timeout: the final barrier waits for the slowest shard, which may take hours
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(hours=12))
    return True


def _rank0_listing(paths: list[str]) -> list[str]:
    """``paths`` as rank 0 listed them, for every rank of a ``torchrun`` process group (else as this process listed
    them): each rank scores every WORLD_SIZE-th input of one listing. Listed by each rank, a file added to a folder
    between two ranks' listings (a recorder writing into it, a manifest edited) shifted one rank's share, and a file
    fell to no rank (:func:`_warn_unscored` says so where there is no process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return paths
    listing = [paths]
    dist.broadcast_object_list(listing, src=0)
    return list(listing[0])


def _merge_after_shards(out: Path, rank: int, world: int, paths: list[str]) -> None:
    """Rank 0 merges after a gloo barrier; without a process group, the last rank to finish merges."""
    import torch.distributed as dist

    from sddkit.scoring import batch

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
            if rank == 0:
                rows = batch.merge_shards(out, order=paths)
                print(f"merged {rows} rows from {world} shards into {out}", file=sys.stderr)
                _warn_unscored(out, paths)
            dist.barrier()
        finally:
            dist.destroy_process_group()
        return
    from sddkit.errors import ProtocolError
    from sddkit.locks import ExclusiveLock

    _, missing = batch.complete_shards(out)
    if missing:
        return  # another rank is still scoring; the last one to finish merges
    try:
        # an flock, not a file that exists: a rank killed while merging leaves no lock that stops every later merge
        lock = ExclusiveLock(batch.merge_lock_path(out), ProtocolError(f"{out} is being merged by another rank"))
    except ProtocolError:
        return  # another rank finished at the same moment and is merging
    try:
        if batch.complete_shards(out)[0] == 0:
            return  # another rank saw every marker too and has merged (and removed them) already
        rows = batch.merge_shards(out, order=paths)
        print(f"merged {rows} rows from {world} shards into {out}", file=sys.stderr)
        _warn_unscored(out, paths)
    finally:
        lock.release()


def _warn_unscored(out: Path, paths: list[str]) -> None:
    """Say which inputs a merge of shards left without a row (:func:`batch.inputs_without_rows`): the output
    looked complete (exit 0, "merged N rows"), with files missing from it."""
    from sddkit.scoring import batch

    missing = batch.inputs_without_rows(out, paths)
    if missing:
        first = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        print(
            f"sdd score: warning: {len(missing)} of the {len(paths)} inputs have no row in {out} ({first}): no rank "
            "scored them (the ranks listed different files: files added or removed while they started?); run the "
            "scoring command again, which scores only what is missing",
            file=sys.stderr,
        )
