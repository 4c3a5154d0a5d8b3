"""ONNX export of a model directory, and scoring with ONNX Runtime.

``export_onnx(model_dir, out)`` exports the detector's forward on one fixed window with a
dynamic batch axis::

    input  "waveform"  (batch, window_samples) float32 at the model's sample rate
    output "logits"    (batch, 2)              (spoof, bona fide)
    output "stat:<name>" (batch, K)            per-window statistics, e.g. "stat:gate_weights"

Everything needed to score like the PyTorch model travels *inside* the .onnx file as metadata
(``sddkit.inference``: windows, aggregation, threshold, calibration; ``sddkit.info``: what the
model is), so ``sdd score --backend onnx --model FILE.onnx`` windows, aggregates and calibrates
exactly as ``--backend torch`` does, from the one file.

The TorchScript-based exporter (opset 17) is used first; the spectral front-ends trace their STFT as a real
matrix product with a windowed DFT basis (not ONNX Runtime's STFT operator, imprecise for an n_fft not a power of
two), so those models, the bundled one included, export through it in a second or two. When it cannot export a
model (e.g. a plug-in's complex-valued STFT) and ``onnxscript`` is installed, the ``torch.export``-based exporter is
tried (without onnxscript's graph optimiser: its "x + 0 -> x" rule deletes any constant within 1e-8 of zero, such as
the 1e-10 log floors of LFCC and log spectrograms, so digital silence gave NaN). The result is always checked
against PyTorch, at batch 1 and 3, on noise and on the windows recordings really contain (digital silence, a tone,
a DC offset, near silence).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sddkit.errors import CheckpointError, ConfigError, SddkitError
from sddkit.outputs import fsync_dir, fsync_file, host_name, process_alive
from sddkit.scoring.api import (
    DEFAULT_BATCH_SIZE,
    ScoringDetector,
    check_batch_size,
    merge_lora_for_inference,
    model_info,
    per_window_stats,
)
from sddkit.scoring.calibrate import folders_to_make, remove_made
from sddkit.scoring.inference import check_model_rate, parse_inference

INPUT_NAME = "waveform"
LOGITS_NAME = "logits"
STAT_PREFIX = "stat:"
META_INFERENCE = "sddkit.inference"
META_INFO = "sddkit.info"
DEFAULT_OPSET = 17
ONNX_NAME = "model.onnx"


class StaleExportWarning(UserWarning):
    """An export scored while the model directory it was exported from has changed since (:func:`source_changed`);
    the commands say it as a line of their own."""


class _ExportWrapper(nn.Module):
    """detector -> (logits (B, 2), *per-window stats (B, K)) with a fixed stat order (ONNX needs tuples)."""

    def __init__(self, model: nn.Module, stat_names: list[str]):
        super().__init__()
        self.model = model
        self.stat_names = stat_names

    def forward(self, waveform: Tensor) -> tuple[Tensor, ...]:
        out = self.model(waveform)
        # only the exported ones: per_window_stats compares each statistic's first axis with the batch, and for a
        # batch-level (E,) vector with E = the example's batch torch.export took that for "batch is always E"
        stats = per_window_stats({n: out.stats[n] for n in self.stat_names}, waveform.shape[0])
        return (out.logits, *[stats[n] for n in self.stat_names])


def export_onnx(
    model_dir: str | Path,
    out: str | Path,
    *,
    opset: int | None = None,
    check_atol: float = 1e-4,
) -> dict[str, Any]:
    """Export ``model_dir`` to ``out`` (.onnx); returns a report (exporter, outputs, max |diff| vs torch).

    ``out`` may be an existing directory: the graph is then written to ``out/model.onnx`` (where
    ``sdd score --backend onnx --model DIR`` looks for it).

    Raises CheckpointError when the model cannot be exported or the exported graph disagrees
    with PyTorch by more than ``check_atol`` (and by more than 1e-5 of the PyTorch value) on the
    logits (on the windows of :func:`_check_windows`). A per-window statistic the graph does not reproduce (e.g. MoLEx
    routing statistics through the torch.export exporter) is left out of the graph, which is
    exported again without it, and named in the report's ``dropped_stats`` with its difference:
    its columns are then missing from ``sdd score --backend onnx`` rather than wrong. The graph is
    written next to ``out`` (``OUT.<pid>@<host>.partial``) and moved there only once it passes that check, so ``out``
    never holds a graph that failed it (or half a file after a crash); the temporary files a killed export left
    there are removed by the next export to ``out`` (:func:`remove_stale_partials`) and named in the report's
    ``removed_partials``. The graph is fsynced before that move (and the folder after it); an export that fails
    removes the folders it made for ``out``. A model whose weights pass the 2 GiB one ONNX file holds is
    refused.

    ``opset`` None is :data:`DEFAULT_OPSET`. A model only the torch.export exporter handles is written at opset 18 or
    later, the oldest that exporter writes; where that is above an ``opset`` given, the report's ``requested_opset``
    holds the one asked for (a runtime limited to it cannot load the graph).
    """
    from sddkit.detectors.model_dir import load_model_dir

    asked = opset
    opset = DEFAULT_OPSET if opset is None else opset
    check_opset(opset)
    if not check_atol >= 0:  # NaN or negative: no graph could pass
        raise ConfigError(f"check_atol must be >= 0, got {check_atol}")
    model_dir, out = Path(model_dir), Path(out)
    if out.is_dir():
        out = out / ONNX_NAME
    if out.suffix.lower() != ".onnx":  # `out` is replaced: never a config.json, weights or score file by mistake
        raise ConfigError(f"out must name a .onnx file or an existing folder, got {out}")
    _refuse_an_export_as_the_model(model_dir)
    with torch.random.fork_rng(devices=[]):  # its layers' initialisation draws leave the caller's stream as it was
        md = load_model_dir(model_dir)
    inference = parse_inference(md.inference, f"{model_dir}: inference")
    check_model_rate(inference, str(model_dir))
    model = md.model.eval()
    _check_fits_one_file(model, model_dir)
    merged = merge_lora_for_inference(model)  # one matmul per projection in the graph, as in torch scoring
    example = _example(inference.window_samples, batch=2, seed=0)
    try:
        stat_names = _per_window_stat_names(model, inference.window_samples)
    except Exception as exc:  # the model's own refusal (too few frames for its strides, ...) as one line
        raise CheckpointError(
            f"{model_dir}: the model fails on windows of {inference.window_samples} samples (its "
            f"inference.window_samples), so it cannot be exported: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    recorded = {"weights_digest": md.weights_digest, "architecture": md.architecture, "model": md.model_config}
    differs = _differs_from_folder(out.parent, recorded, inference)
    if differs:  # the load refuses an export beside another model's config: it could never be scored there
        raise CheckpointError(
            f"{out}: {out.parent} holds another model (its {' and '.join(differs)} differ from those of "
            f"{model_dir}), where the export could not be loaded; write it to another folder"
        )
    # this process's own: two exports to one `out` at once each wrote (and removed) the other's temporary graph
    partial = partial_path(out)
    requested_opset, dropped, removed = opset, {}, []
    # the folders of out's path this export makes: an export that fails (the exporter's refusal, a parity failure,
    # Ctrl-C) removes them again, as sdd calibrate does, rather than leave an empty folder tree behind
    made, written = folders_to_make(out.parent), False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_partials(out)
        while True:
            wrapper = _ExportWrapper(model, stat_names).eval()
            output_names = [LOGITS_NAME, *[STAT_PREFIX + n for n in stat_names]]
            exporter, opset = _export(wrapper, example, partial, output_names, requested_opset)
            info = model_info(model, architecture=md.architecture, model_config=md.model_config, path=model_dir)
            # absolute: the advice that names it (sdd describe, sdd calibrate, a load beside another model) is read
            # from other folders than the one the export ran in, where a relative path named another folder or none
            info.update(backend="onnx", exported_from=os.path.abspath(model_dir), exporter=exporter, opset=opset)
            # as the torch backend reports them; the digest names the weights the graph was exported from
            info.update(metadata=md.metadata, merged_lora_layers=merged, weights_digest=md.weights_digest)
            _add_metadata(partial, {META_INFERENCE: inference.to_dict(), META_INFO: info})

            diff, stat_diffs = 0.0, dict.fromkeys(stat_names, 0.0)
            runner = OnnxRunner(partial)  # one session for every check batch
            for labels, batch in _check_windows(inference.window_samples):
                try:
                    diffs = _output_diffs(wrapper, runner, batch)
                except CheckpointError as exc:  # e.g. a batch size baked into the graph by the tracer
                    raise CheckpointError(
                        f"{out}: the exported graph fails on {_describe(labels)}: {exc}; not written"
                    ) from None
                d = diffs.pop(LOGITS_NAME)
                diff = d if not d <= diff else diff  # NaN included: it must fail the check, not hide behind a max
                if not diff <= check_atol:  # the earlier batches passed: this one failed
                    where = _worst_window(wrapper, runner, batch, labels)
                    raise CheckpointError(
                        f"{out}: ONNX logits differ from PyTorch by {diff:.3g} (> {check_atol}) on {where}; not written"
                    )
                for stat, d in diffs.items():
                    stat_diffs[stat] = d if not d <= stat_diffs[stat] else stat_diffs[stat]
            bad = {k: v for k, v in stat_diffs.items() if not v <= check_atol}
            if not bad:
                break
            dropped.update(bad)  # export again without them: missing columns rather than wrong ones
            stat_names = [n for n in stat_names if n not in bad]
        # on disk before the rename publishes it, and the rename durable after: a power loss must not leave an empty
        # or truncated graph under `out` (or the earlier export back), as for a model directory's weights
        fsync_file(partial)
        partial.replace(out)
        written = True
        fsync_dir(out.parent)
    except OSError as exc:
        if not _is_write_error(exc):
            raise
        # a full disk, no permission: one line naming `out` (not the temporary file, not a traceback)
        raise CheckpointError(f"{out}: cannot write the ONNX model: {exc.strerror or exc}; not written") from None
    finally:
        with contextlib.suppress(NotADirectoryError):  # no folder was made for it: nothing to remove
            partial.unlink(missing_ok=True)
        if not written:
            remove_made(made)
    report = {"out": str(out), "exporter": exporter, "opset": opset, "outputs": output_names, "max_abs_diff": diff}
    report.update(_raised_opset(asked, opset))
    if removed:
        report["removed_partials"] = [str(p) for p in removed]
    if dropped:
        report["dropped_stats"] = {k: v if np.isfinite(v) else None for k, v in dropped.items()}  # None: NaN
    return report


def _refuse_an_export_as_the_model(model_dir: Path) -> None:
    """Refuse an ONNX export given where export-onnx needs a model directory, naming the one it was exported from:
    an .onnx file (else "not a model directory (a file)"), or a folder ``--out DIR`` wrote, holding ``model.onnx``
    and no config (else the load's "load it with backend='onnx'", an answer to scoring, not to exporting)."""
    from sddkit.detectors.model_dir import CONFIG_NAME

    if model_dir.suffix.lower() == ".onnx" and model_dir.is_file():
        source = exported_from(model_dir)
        raise CheckpointError(
            f"{model_dir} is an ONNX export, not a model directory: export-onnx needs the model directory it was "
            f"exported from{f', {source}' if source else ''}"
        )
    if model_dir.is_dir() and (model_dir / ONNX_NAME).is_file() and not (model_dir / CONFIG_NAME).is_file():
        source = exported_from(model_dir / ONNX_NAME)
        raise CheckpointError(
            f"{model_dir} holds an ONNX export ({ONNX_NAME}) and no {CONFIG_NAME}, not a model directory: export-onnx "
            f"needs the model directory it was exported from{f', {source}' if source else ''}"
        )


# protobuf's limit on one serialised message: a larger graph needs external data files, which sddkit does not write
MAX_ONNX_BYTES = 2**31 - 1


def _check_fits_one_file(model: nn.Module, model_dir: Path) -> None:
    """Refuse, before exporting, a model whose weights alone pass the 2 GiB limit of one ONNX file (XLS-R 1B/2B,
    Whisper large-v3): the TorchScript exporter then spilt its weights into files named after the tensors beside
    ``out`` and the metadata step failed with protobuf's bare "Failed to serialize proto"."""
    tensors = {t.data_ptr(): t for t in [*model.parameters(), *model.buffers()] if t.numel()}
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    if size > MAX_ONNX_BYTES:
        raise CheckpointError(
            f"{model_dir}: its weights take {size / 2**30:.2f} GiB, more than the 2 GiB one ONNX file can hold "
            "(protobuf's limit), so it cannot be exported; score it with the torch backend"
        )


def partial_path(out: Path) -> Path:
    """Where this process writes its graph before it is checked and moved to ``out``: ``OUT.<pid>@<host>.partial``.
    The host name tells another machine (or container) writing to a shared folder that the process id is not one of
    its own, to be looked up there."""
    return out.with_name(f"{out.name}.{os.getpid()}@{host_name()}.partial")


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove the temporary graphs (``OUT.<pid>@<host>.partial``, and the ``.partial.tmp`` of its metadata step)
    that exports to ``out`` killed before their end (a crash, SIGKILL, a power cut) left beside it, which no later
    export removed, and return them. Only those of this machine (``host``; also ``OUT.<pid>.partial``, the name
    earlier versions gave) whose process is gone: the files of an export to ``out`` still running are kept, and so
    are those another machine or container wrote into a shared folder (their process ids are not this machine's:
    one of a live export was taken for a dead one's). Where a process cannot be looked up (not POSIX), nothing is
    removed."""
    if os.name != "posix":  # os.kill(pid, 0) would end the process there
        return []
    removed = []
    prefix = glob.escape(out.name)
    for path in sorted([*out.parent.glob(f"{prefix}.*.partial"), *out.parent.glob(f"{prefix}.*.partial.tmp")]):
        pid, at, host = path.name[len(out.name) + 1 :].removesuffix(".tmp").removesuffix(".partial").partition("@")
        if at and host != host_name():  # another machine's export: its process cannot be looked up here
            continue
        if not (pid.isascii() and pid.isdigit()) or process_alive(int(pid)):
            continue
        try:
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
        except OSError:  # removed by another export at the same moment, or a folder we may not write in
            pass
    return removed


def supported_opsets() -> tuple[int, int]:
    """(lowest, highest) ONNX opset the installed torch exporters accept (TorchScript, then torch.export)."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_MIN_OPSET), int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):  # private module: fall back to what every supported torch has
        return 7, 18


def check_opset(opset: int, name: str = "opset") -> None:
    """Refuse an opset outside :func:`supported_opsets` (ConfigError naming ``name``), before any export.

    Without this an opset the TorchScript exporter refuses (0, -1, 99) fell through to the
    torch.export exporter, which silently used opset 18 instead.
    """
    low, high = supported_opsets()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not low <= opset <= high:
        raise ConfigError(
            f"{name} must be an integer from {low} to {high} (the installed torch exporter), got {opset!r}"
        )


def _example(window: int, batch: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, window, generator=g)


def _per_window_stat_names(model: nn.Module, window: int) -> list[str]:
    """The statistics ``model`` reports per window, decided as :meth:`ScoringDetector.stat_widths` decides
    them: on batches of 2 and 3 windows, so that a batch-level (E,) vector that matches one batch size by
    chance (E = 2, the export example's batch) is not taken for a per-window statistic."""
    widths = []
    with torch.inference_mode():
        for batch in (2, 3):
            stats = per_window_stats(model(_example(window, batch=batch, seed=0)).stats, batch)
            widths.append({k: int(v.shape[1]) for k, v in stats.items()})
    return [k for k, w in widths[0].items() if widths[1].get(k) == w]


def _describe(labels: list[str]) -> str:
    """``["noise", "noise", "a tone"]`` -> ``"noise (2 windows), a tone"``: what a check batch holds."""
    counts = {label: labels.count(label) for label in labels}
    return ", ".join(label if n == 1 else f"{label} ({n} windows)" for label, n in counts.items())


def _worst_window(wrapper: nn.Module, runner: OnnxRunner, batch: Tensor, labels: list[str]) -> str:
    """The label of the window of ``batch`` whose logits differ most when run alone (``batch``'s description
    when it is one window, or when no window differs alone: the graph then depends on the batch)."""
    if len(set(labels)) == 1:
        return _describe(labels)
    alone = [_output_diffs(wrapper, runner, batch[i : i + 1])[LOGITS_NAME] for i in range(batch.shape[0])]
    worst = max(range(len(alone)), key=lambda i: np.inf if np.isnan(alone[i]) else alone[i])
    return labels[worst] if not alone[worst] <= 0 else _describe(labels)


def _check_windows(window: int) -> list[tuple[list[str], Tensor]]:
    """(a label per window, (N, window) batch) pairs the exported graph must reproduce.

    Random noise at batch 3 (another batch size than the export's 2) and at batch 1 (one short file),
    then windows of real recordings that noise never exercises: digital silence (log floors, variance
    floors, level normalisation of silence), half silence, two pure tones (spectral bins at the floor; the
    second between the bins of n_fft 320 to 2048), a DC offset, near silence, and full-scale clipped noise.
    """
    rng = np.random.default_rng(1)
    t = np.arange(window) / 16000.0
    half = window // 2
    structured = np.stack(
        [
            np.zeros(window),
            np.concatenate([np.zeros(half), 0.1 * rng.standard_normal(window - half)]),
            0.5 * np.sin(2 * np.pi * 440.0 * t),
            # between the bins of n_fft 320, 400, 401, 512, 1024 and 2048 (440 Hz falls on one at n_fft 400): its
            # leakage into the other bins is where an imprecise DFT shows (ONNX Runtime's STFT op for an n_fft not a
            # power of two moved an LCNN's logits by 6e-4 there)
            0.5 * np.sin(2 * np.pi * 1111.1 * t),
            0.3 + 0.01 * rng.standard_normal(window),
            1e-5 * rng.standard_normal(window),
            np.clip(rng.standard_normal(window), -1.0, 1.0),
        ]
    )
    kinds = [
        "digital silence",
        "half silence",
        "a 440 Hz tone",
        "a 1111.1 Hz tone",
        "a DC offset",
        "near silence",
        "clipped noise",
    ]
    return [
        (["random noise"] * 3, _example(window, batch=3, seed=1)),
        (["random noise (a batch of 1)"], _example(window, batch=1, seed=2)),
        (kinds, torch.from_numpy(structured.astype(np.float32))),
    ]


@contextlib.contextmanager
def _quiet_output():
    """Silence file descriptors 1 and 2 while exporting: the exporters print graph dumps and C++ logs
    (on failure too, e.g. before falling back to the other exporter); the outcome is reported instead."""
    libc = ctypes.CDLL(None)
    saved = []
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    libc.fflush(None)  # C stdio buffers (the C++ logs write through them) go out before the switch
    try:
        with open(os.devnull, "wb") as devnull:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull.fileno(), fd)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                libc.fflush(None)
                for fd, copy in saved:
                    os.dup2(copy, fd)
    finally:
        for _, copy in saved:
            os.close(copy)


def _raised_opset(asked: int | None, used: int) -> dict[str, int]:
    """The report's ``requested_opset``: the opset asked for, where the exporter wrote another."""
    return {"requested_opset": asked} if asked is not None and asked != used else {}


def _export(wrapper: nn.Module, example: Tensor, out: Path, output_names: list[str], opset: int) -> tuple[str, int]:
    """Export with the TorchScript exporter, falling back to torch.export (dynamo).

    Returns (the exporter that worked, the opset used: the dynamo exporter needs 18 or later).
    """
    dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME, *output_names]}
    errors = []
    try:
        with _quiet_output(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation and tracer warnings: the result is checked below
            torch.onnx.export(
                wrapper,
                (example,),
                str(out),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        _check_reads_waveform(out)
        return "torchscript", opset
    except Exception as exc:  # the exporter raises many types for unsupported operators
        if _is_write_error(exc):  # a full disk is not a model the exporter cannot handle: no fallback
            raise
        errors.append(f"torchscript exporter: {type(exc).__name__}: {_first_line(exc)}")
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        errors.append("torch.export exporter: needs the 'onnxscript' package (pip install onnxscript)")
        raise CheckpointError("cannot export this model to ONNX: " + "; ".join(errors)) from None
    try:
        batch = torch.export.Dim("batch", min=1)
        dynamo_opset = max(opset, 18)
        with _quiet_output(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper,
                (example,),
                dynamo=True,
                verbose=False,
                input_names=[INPUT_NAME],
                output_names=output_names,
                dynamic_shapes=({0: batch},),
                opset_version=dynamo_opset,
                optimize=False,  # onnxscript's "x + 0 -> x" rule deletes log floors below 1e-8 (NaN on silence)
            )
        program.save(str(out), external_data=False)
        _check_reads_waveform(out)
        return "dynamo", dynamo_opset
    except Exception as exc:
        if _is_write_error(exc):
            raise
        errors.append(f"torch.export exporter: {type(exc).__name__}: {_first_line(exc)}")
        raise CheckpointError("cannot export this model to ONNX: " + "; ".join(errors)) from None


def _is_write_error(exc: BaseException) -> bool:
    """An operating-system error writing the file (ENOSPC, EACCES, ...), as opposed to an exporter's own
    refusal; OSErrors without an errno (e.g. ``inspect`` finding no source code) are the exporter's."""
    return isinstance(exc, OSError) and exc.errno is not None


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message (exporters and onnxruntime add pages of detail)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__


def _check_reads_waveform(path: Path) -> None:
    """Refuse a graph without the waveform input: the tracer folded the whole forward into constants (it
    leaves torch, e.g. through numpy, ``.item()`` or ``.tolist()``), so every input would get one score."""
    import onnx

    inputs = [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]
    if INPUT_NAME not in inputs:
        raise ValueError(
            "the exported graph does not read the waveform (the forward leaves torch, e.g. through numpy, "
            ".item() or .tolist(), and was frozen to the export example)"
        )


def _add_metadata(path: Path, meta: dict[str, Any]) -> None:
    import onnx

    proto = onnx.load(str(path))
    keep = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    tmp = path.with_name(path.name + ".tmp")
    try:
        onnx.save(proto, str(tmp))
        tmp.replace(path)
    finally:  # a save cut short (a full disk) leaves no half file beside the export
        tmp.unlink(missing_ok=True)


def _output_diffs(wrapper: nn.Module, runner: OnnxRunner, x: Tensor) -> dict[str, float]:
    """Largest |ONNX - PyTorch| on ``x`` per output: ``{"logits": d, stat name: d, ...}``.

    NaN when one side is not finite where the other is (a NaN score through onnxruntime is a
    parity failure, not a value to skip); 0 where both give the same non-finite value.
    """
    with torch.inference_mode():
        ref = [r.numpy() for r in wrapper(x)]
    logits, stats = runner(x.numpy())
    got = [logits, *[stats.get(n) for n in wrapper.stat_names]]
    return {name: _abs_diff(r, g) for name, r, g in zip([LOGITS_NAME, *wrapper.stat_names], ref, got)}


PARITY_RTOL = 1e-5  # differences within this fraction of the PyTorch value pass the parity check whatever check_atol


def _abs_diff(ref: np.ndarray, got: np.ndarray | None) -> float:
    if got is None:
        return float("nan")
    r, g = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    if r.shape != g.shape:
        return float("nan")
    same = (r == g) | (np.isnan(r) & np.isnan(g))  # equal infinities and NaN on both sides agree
    with np.errstate(invalid="ignore"):
        diff = np.abs(r - g)  # NaN where only one side is NaN, or inf - inf
        # large values agree to a relative tolerance: float32 logits of magnitude 2000 (a GMM's log-likelihood ratio
        # on digital silence) are stored in steps of 1.2e-4, and the float32 rounding of the features moved them by
        # a few steps, which failed a check_atol of 1e-4 with the graph right to 3e-7. Finite values only: against an
        # infinite PyTorch value any difference, even infinite (a finite or the opposite infinity), was within it
        same |= np.isfinite(r) & (diff <= PARITY_RTOL * np.abs(r))
        d = np.where(same, 0.0, diff)
    return float("nan") if np.isnan(d).any() else float(d.max(initial=0.0))


class OnnxRunner:
    """ONNX Runtime session: (N, W) windows -> ((N, 2) logits, {name: (N, K)} stats); thread-safe."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self._source = (os.path.abspath(path), threads)  # what __setstate__ opens the session again from
        opts = ort.SessionOptions()
        # warnings about unused initialisers are noise here, and a failed run raises its error (below)
        opts.log_severity_level = 4
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for invalid files
            raise CheckpointError(f"{path}: not a loadable ONNX model: {exc}") from None
        self.output_names = [o.name for o in self.session.get_outputs()]
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME]:
            raise CheckpointError(f"{path}: the ONNX model's inputs are not ['{INPUT_NAME}'] (not exported by sddkit?)")
        shape = inputs[0].shape
        # the exported window length (None when the axis is symbolic)
        self.window_samples = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        if LOGITS_NAME not in self.output_names:
            raise CheckpointError(f"{path}: the ONNX model has no '{LOGITS_NAME}' output (not exported by sddkit?)")

    def __getstate__(self) -> dict[str, Any]:
        # an InferenceSession cannot be pickled ("cannot pickle 'InferenceSession' object"): a detector sent to
        # another process (multiprocessing under spawn, joblib's workers) opens the file again there
        return {"source": self._source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(*state["source"])

    def __call__(self, windows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        width = self.window_samples if self.window_samples is not None else "W"
        if windows.ndim != 2:
            raise CheckpointError(f"the ONNX model takes (N, {width}) windows, got an array of shape {windows.shape}")
        if self.window_samples is not None and windows.shape[1] != self.window_samples:
            raise CheckpointError(
                f"the ONNX model takes windows of {self.window_samples} samples (its export length), "
                f"got {windows.shape[1]}; score through load_detector(..., backend='onnx'), which windows the audio"
            )
        try:
            outs = self.session.run(None, {INPUT_NAME: windows})
        except Exception as exc:  # onnxruntime's own exception types, with multi-line C++ messages
            raise CheckpointError(
                f"onnxruntime failed on a batch of {windows.shape[0]} window(s): {_first_line(exc)}"
            ) from None
        named = dict(zip(self.output_names, outs))
        stats = {k[len(STAT_PREFIX) :]: v for k, v in named.items() if k.startswith(STAT_PREFIX)}
        return named[LOGITS_NAME], stats

    def metadata(self) -> dict[str, Any]:
        """The sddkit metadata entries present, each a JSON object (a CheckpointError naming the entry that is not)."""
        raw = self.session.get_modelmeta().custom_metadata_map
        out = {}
        for key in (META_INFERENCE, META_INFO):
            if key in raw:
                try:
                    value = json.loads(raw[key])
                except ValueError as exc:  # a hand-edited or damaged entry: one line, not a JSONDecodeError traceback
                    raise CheckpointError(f"metadata entry '{key}' is not valid JSON: {exc}") from None
                if not isinstance(value, dict):
                    raise CheckpointError(f"metadata entry '{key}' must be a JSON object, got {type(value).__name__}")
                out[key] = value
        return out


def exported_from(path: str | Path) -> str | None:
    """The model directory the ONNX export ``path`` records as its origin; None when it records none (not an
    sddkit export, damaged, or no onnx package)."""
    try:
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        source = json.loads(meta[META_INFO])["exported_from"]
    except Exception:  # the advice that names it stands without the name
        return None
    return source if isinstance(source, str) else None


def resolve_onnx_path(path: str | Path) -> Path:
    """An .onnx file, or a folder holding ``model.onnx``."""
    path = Path(path)
    folder = path.is_dir()
    if folder:
        path = path / ONNX_NAME
    if not path.is_file():
        # a folder is read as FOLDER/model.onnx, which `--out FILE.onnx` elsewhere does not write
        how = "export one with `sdd export-onnx --model DIR --out FILE.onnx`"
        if folder:
            others = sorted(p.name for p in path.parent.glob("*.onnx") if p.is_file())
            if others:  # e.g. `--out onnx/default_model.onnx` then `--model onnx`: the export is there, named
                shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
                how = f"the folder holds {shown}: give the .onnx file itself, e.g. {path.parent / others[0]}"
            elif (path.parent / "config.json").is_file():  # a model directory: its own export goes there
                how = (
                    f"export one there with `sdd export-onnx --model {path.parent} --out {path.parent}`, or give an "
                    "exported .onnx file itself"
                )
            else:  # `sdd export-onnx --model FOLDER` would fail too: FOLDER is no model directory
                how = f"give an exported .onnx file itself, or {how}"
        raise CheckpointError(f"{path}: no such ONNX model ({how})")
    return path


def _differs_from_folder(folder: Path, info: dict, inference) -> list[str]:
    """What of the model directory ``folder`` (its weights digest, its model config, its inference settings) an
    export with ``info`` and ``inference`` does not match; ``[]`` when ``folder`` holds no config sddkit reads."""
    from sddkit.detectors.model_dir import CONFIG_NAME, read_model_config

    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        return []
    try:
        config = read_model_config(folder)
    except SddkitError:
        return []  # not a model directory sddkit reads: nothing to compare with
    folder_inference = parse_inference(config.get("inference") or {}, str(config_path))
    differs = []
    digest = config.get("weights_digest")
    if digest is not None and info.get("weights_digest") not in (None, digest):
        differs.append("weights")
    # the config's model section with the same weights: a front-end setting that has no weights (pre-emphasis,
    # level_db, the window, log_floor, a head's scale) edited since the export changes every torch score, where the
    # graph kept the old one without a word. Exports that record no model config are not compared.
    recorded = (info.get("architecture"), info.get("model"))
    if recorded[1] is not None and recorded != (config.get("architecture"), config.get("model")):
        differs.append("model config (architecture, front-end, back-end settings)")
    if folder_inference.to_dict() != inference.to_dict():
        differs.append("inference settings (calibration, threshold, windows)")
    return differs


def _check_beside_its_model(path: Path, info: dict, inference) -> None:
    """An export that sits in a model directory (``sdd export-onnx --out DIR``) must still be that model:
    retrained weights, an edited model config or a new calibration in the directory would otherwise be scored with
    the old graph and settings, without a word. An export elsewhere, or beside no config, is taken as it is."""
    from sddkit.detectors.model_dir import CONFIG_NAME

    differs = _differs_from_folder(path.parent, info, inference)
    if not differs:
        return
    config_path = path.parent / CONFIG_NAME
    source = info.get("exported_from")
    # another model's export (exports before 2026-12-06 recorded the path as given: a relative one says where from
    # only in the shell that exported it)
    if isinstance(source, str) and Path(source).is_absolute() and Path(source).resolve() != path.parent.resolve():
        said = f"{path} was exported from {source}, whose {' and '.join(differs)} differ from those in {config_path}"
    else:
        said = f"{path} was exported before its {' and its '.join(differs)} in {config_path} changed"
    # --out the file itself: `--out DIR` writes DIR/model.onnx, which left another name (DIR/x.onnx) as it was
    out = path.parent if path.name == ONNX_NAME else path
    raise CheckpointError(f"{said}: export it again (sdd export-onnx --model {path.parent} --out {out} --force)")


def source_changed(path: Path, info: dict, inference) -> str | None:
    """A warning when the model directory an export elsewhere was exported from (``exported_from``, still on this
    machine) now holds other weights, another model config or other inference settings: the graph scores with those
    of the export (the file is self-contained, and is scored as it is), where ``--backend torch`` on that directory
    scores with the new ones, e.g. a calibration ``sdd calibrate`` fitted in place since. None when nothing changed,
    the directory is gone, or the export sits in it (:func:`_check_beside_its_model` refuses that one)."""
    source = info.get("exported_from")
    if not isinstance(source, str) or not Path(source).is_absolute():
        return None
    folder = Path(source)
    with contextlib.suppress(OSError):  # a path this machine cannot resolve: nothing to compare with
        if folder.resolve() == path.parent.resolve():
            return None
    try:
        differs = _differs_from_folder(folder, info, inference)
    except (SddkitError, OSError):  # a folder that no longer reads as a model: the export stands on its own
        return None
    if not differs:
        return None
    return (
        f"{path} was exported from {source}, whose {' and '.join(differs)} have changed since: it scores as that "
        f"model did at export, not as `--backend torch --model {source}` now does; export it again to score the "
        f"model as it is now (sdd export-onnx --model {source} --out {path} --force)"
    )


def load_onnx_detector(path: str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE) -> ScoringDetector:
    """A ScoringDetector running an sddkit-exported ONNX file with ONNX Runtime."""
    check_batch_size(batch_size)  # before the graph is read
    path = resolve_onnx_path(path)
    runner = OnnxRunner(path, threads=torch.get_num_threads())
    try:
        meta = runner.metadata()
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}; export it again with `sdd export-onnx`") from None
    if META_INFERENCE not in meta:
        raise CheckpointError(f"{path}: no '{META_INFERENCE}' metadata; export it with `sdd export-onnx`")
    inference = parse_inference(meta[META_INFERENCE], f"{path}: {META_INFERENCE}")
    # as load_detector checks a model directory: the rate the front-end takes, and windows the graph takes (else
    # every score failed at its first batch, with advice to score through load_detector, which it was doing)
    check_model_rate(inference, str(path))
    if runner.window_samples is not None and runner.window_samples != inference.window_samples:
        raise CheckpointError(
            f"{path}: its '{META_INFERENCE}' metadata has window_samples {inference.window_samples}, but the graph "
            f"takes windows of {runner.window_samples} samples: export it again with `sdd export-onnx`"
        )
    info = dict(meta.get(META_INFO, {}))
    _check_beside_its_model(path, info, inference)
    # an export elsewhere is taken as it is (it may be deployed without its source), but its source recalibrated or
    # retrained since on this machine left the graph scoring with the old settings without a word
    stale = source_changed(path, info, inference)
    if stale:
        info["source_changed"] = stale
        warnings.warn(stale, StaleExportWarning, stacklevel=2)
    # named as the torch backend names a model directory: DIR/model.onnx is DIR's model
    name = path.parent.name if path.name == ONNX_NAME else path.stem
    info.update(path=str(path), name=name, backend="onnx")
    return ScoringDetector(runner, inference, batch_size=batch_size, info=info)
