"""Linear score fusion of several systems (``sdd fuse``), as BOSARIS's linear fusion.

Each trial's fused score is ``llr = sum_k w_k * s_k + b`` over the systems' scores ``s_k``; the weights and the
bias are fitted by the prior-weighted logistic regression of :func:`~sddkit.scoring.calibration.fit_calibration`
(:func:`~sddkit.scoring.calibration.fit_linear_llr`, the same objective with one weight per system), on the
labelled trials of the development partitions that every system scored. Like a calibration's, the fused score is
a prior-free log-likelihood ratio (higher = more bona fide): the prior only chooses which operating region the fit
cares most about. One system's fusion is exactly its calibration.

The systems' score files are joined with the protocol as ``sdd eval`` and ``sdd compare`` join them
(:func:`~sddkit.evaluation.scores.common_trials`); a trial is fused when every system scored it. A fitted fusion's
record (:meth:`FusedTrials.to_dict`) is applied later to new score files by :func:`apply_fusion`, joined with a
protocol as the fit's were, or by path alone (:func:`join_by_path`), for files no protocol lists.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sddkit.data.table import UtteranceTable
from sddkit.documents import run_record
from sddkit.errors import ConfigError, ProtocolError
from sddkit.evaluation.scores import CommonTrials, ScoreFile, _norm_paths, _text, common_trials, match_scores
from sddkit.metrics import cllr, eer
from sddkit.scoring.calibration import _sigmoid, bonafide_mask, fit_linear_llr

# names the examples of files not fused give at most
_NAMED = 5


@dataclass(frozen=True)
class Fusion:
    """A fitted linear fusion: ``llr = scores @ weights + bias``, one weight per system (in ``names``' order).

    prior: the bona fide prior of the fit's objective; n_bonafide, n_spoof: the trials it was fitted on.
    """

    names: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    prior: float
    n_bonafide: int
    n_spoof: int

    def apply(self, scores) -> np.ndarray:
        """(N, D) scores, one column per system, -> (N,) fused LLRs: ``w_1 * s_1 + ... + w_D * s_D + b``, summed in
        that order, so that a file's fused score is the same float whichever other files are fused with it."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != len(self.weights):
            raise ProtocolError(f"fusion of {len(self.weights)} systems takes (N, {len(self.weights)}) scores")
        # not `scores @ weights`: a BLAS product's rounding depends on the rows beside a row, so a file fused with
        # other files (a later --apply) could differ from its fit-time score in the last bits
        llr = np.zeros(scores.shape[0], dtype=np.float64)
        for k, weight in enumerate(self.weights):
            llr += weight * scores[:, k]
        return llr + self.bias


def fit_fusion(scores, labels, *, names: Sequence[str] | None = None, prior: float = 0.5, l2: float = 1e-6) -> Fusion:
    """Fit the linear fusion of the systems' ``scores`` (N, D), one column per system, to ``labels`` (N,) (1/0 or
    'bonafide'/'spoof', as :func:`~sddkit.scoring.calibration.fit_calibration` takes them); ``names`` (D,) name the
    systems (default ``system0, ...``). ProtocolError when the trials lack a class or a system's scores are all
    equal (it cannot be weighed), naming it."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ProtocolError(f"fusion scores must be a (trials, systems) array, got shape {scores.shape}")
    names = tuple(f"system{k}" for k in range(scores.shape[1])) if names is None else tuple(names)
    if len(names) != scores.shape[1]:
        raise ProtocolError(f"{len(names)} names for {scores.shape[1]} systems")
    is_bona = bonafide_mask(labels)
    if is_bona.shape != (scores.shape[0],):
        raise ProtocolError(f"{scores.shape[0]} trials but {is_bona.size} labels")
    n_bona, n_spoof = int(is_bona.sum()), int((~is_bona).sum())
    if n_bona == 0 or n_spoof == 0:
        raise ProtocolError(f"fusion needs both classes to fit on; got {n_bona} bona fide and {n_spoof} spoof trials")
    for k, name in enumerate(names):
        column = scores[:, k]
        if not np.isfinite(column).all():
            raise ProtocolError(f"system {name!r}: its scores must be finite (NaN or inf among them)")
        if column.min() == column.max():
            raise ProtocolError(
                f"system {name!r}: its scores of the {len(column)} fit trials are all {column[0]:g}, so it cannot be "
                "weighed; leave it out"
            )
    weights, bias = fit_linear_llr(
        scores[is_bona],
        scores[~is_bona],
        prior=prior,
        l2=l2,
        labels=[f"system {n!r}'s fit scores" for n in names],
        task="fusion",
    )
    return Fusion(
        names=names,
        weights=tuple(float(w) for w in weights),
        bias=bias,
        prior=float(prior),
        n_bonafide=n_bona,
        n_spoof=n_spoof,
    )


@dataclass
class FusedTrials:
    """The trials every system scored, fused (:func:`fuse_score_files`).

    ids: (N,) each trial's id as the first score file writes it (a relative path joined with the folder its
    run record names, :func:`_under`); scores: (N, D) the systems' scores; llr: (N,) the
    fused scores; fit: (N,) which trials the fusion was fitted on; missing: the protocol files some systems scored
    but not all (a path, or the utt_id of a row without one), not fused; fit_eer (a fraction) and fit_cllr (bits)
    of the fused scores on the fit trials, system_fit_eers each system's EER there; notes: what the joins noted.
    """

    fusion: Fusion
    files: tuple[str, ...]
    columns: tuple[str, ...]
    fit_partitions: tuple[str, ...]
    ids: np.ndarray
    scores: np.ndarray
    llr: np.ndarray
    fit: np.ndarray
    missing: list[str]
    fit_eer: float
    fit_cllr: float
    system_fit_eers: tuple[float, ...]
    notes: list[str] = field(default_factory=list)
    # a fusion applied from a record (apply_fusion): the record as read, and its path; None for a fitted one
    applied: dict[str, Any] | None = None
    applied_from: str | None = None
    # (D,) the weights digest of the model that scored each system's file (its sdd score run record); None: unknown
    digests: tuple[str | None, ...] = ()
    # (D,) the calibration ({"a", "b"}) of that model when it scored the file (its run record); None: unknown
    calibrations: tuple[dict[str, float] | None, ...] = ()
    # the files some system could not score (its sdd score error row), so with no fused score: (id, message) each,
    # written as sdd score writes an error row (score empty, the message in `error`), so that sdd eval of the fused
    # file counts them as files that could not be scored, not as files no system was given
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def probability(self) -> np.ndarray:
        """sigmoid(llr): the bona fide posterior at prior 0.5, as ``sdd score``'s ``probability`` of its LLR."""
        return _sigmoid(self.llr)

    @property
    def decision(self) -> np.ndarray:
        """'bonafide' where ``llr >= 0`` (the Bayes decision at prior 0.5 with equal costs, as ``sdd score``'s default
        threshold), else 'spoof'."""
        return np.where(self.llr >= 0, "bonafide", "spoof").astype(object)

    def columns_out(self) -> list[str]:
        """The output's columns: path, score, probability, decision, then ``score_<name>`` per system, then
        ``error`` where some file could not be scored (:attr:`errors`)."""
        columns = ["path", "score", "probability", "decision", *(f"score_{n}" for n in self.fusion.names)]
        return [*columns, "error"] if self.errors else columns

    def rows(self) -> list[dict[str, Any]]:
        """One output row per fused trial, in protocol order (numbers as Python floats), then one error row per file
        some system could not score (:attr:`errors`): its cells empty (None) but ``path`` and ``error``."""
        probability, decision = self.probability, self.decision
        out = []
        for i in range(len(self.llr)):
            row: dict[str, Any] = {
                "path": str(self.ids[i]),
                "score": float(self.llr[i]),
                "probability": float(probability[i]),
                "decision": decision[i],
            }
            row.update({f"score_{n}": float(self.scores[i, k]) for k, n in enumerate(self.fusion.names)})
            if self.errors:
                row["error"] = ""  # as sdd score's rows that scored
            out.append(row)
        for path, message in self.errors:
            error_row: dict[str, Any] = dict.fromkeys(self.columns_out())
            error_row.update(path=path, error=message)
            out.append(error_row)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fusion's record (``<out>.fusion.json``), with the sddkit that fitted and fused (``sddkit_version``,
        and ``sddkit_git``: the git commit and dirty flag of its source, None outside a git checkout). An applied
        fusion's is the applied record's, its fit (and the code that fitted it) unchanged, with ``applied_from``, the
        files and columns this run read (``applied_files``, ``applied_column``), the sddkit that applied it
        (``applied_sddkit_version``, ``applied_sddkit_git``) and this run's ``n_fused`` and ``n_missing``."""
        from sddkit import __version__
        from sddkit.training.provenance import git_commit

        columns = list(self.columns)
        column = columns[0] if len(set(columns)) == 1 else columns
        if self.applied is not None:
            return {
                **self.applied,
                "applied_from": self.applied_from,
                "applied_files": list(self.files),
                "applied_column": column,
                # the code that fused these rows: the fit's (its sddkit_git) may be another commit's
                "applied_sddkit_version": __version__,
                "applied_sddkit_git": git_commit(),
                "n_fused": int(len(self.llr)),
                "n_missing": len(self.missing),
            }
        return {
            "systems": [
                {"name": n, "file": f, "column": c, "weight": w, "fit_eer": e, "weights_digest": d, "calibration": k}
                for n, f, c, w, e, d, k in zip(
                    self.fusion.names,
                    self.files,
                    columns,
                    self.fusion.weights,
                    self.system_fit_eers,
                    self.digests or (None,) * len(self.files),
                    self.calibrations or (None,) * len(self.files),
                )
            ],
            "bias": self.fusion.bias,
            "prior": self.fusion.prior,
            # one value when every system's scores are of the same column, else one per system
            "column": column,
            "fit_partitions": list(self.fit_partitions),
            "n_fit_bonafide": self.fusion.n_bonafide,
            "n_fit_spoof": self.fusion.n_spoof,
            "fit_eer": self.fit_eer,
            "fit_cllr": self.fit_cllr,
            "n_fused": int(len(self.llr)),
            "n_missing": len(self.missing),
            "sddkit_version": __version__,
            "sddkit_git": git_commit(),  # the code that fitted and fused: a version names many commits
        }

    def summary(self) -> str:
        """A short table: each system's weight and fit EER, the bias, the fused fit EER and Cllr; an applied
        fusion's is one line (its fit is the record's, printed when it was fitted)."""
        n = len(self.fusion.names)
        if self.applied is not None:
            systems = f"{n} system{'s' if n != 1 else ''}"
            return f"fused {systems} on {len(self.llr)} files with the fusion of {self.applied_from}"
        width = max(6, *(len(n) for n in self.fusion.names))
        lines = [
            f"fused {len(self.fusion.names)} system{'s' if len(self.fusion.names) != 1 else ''} on {len(self.llr)} "
            f"files; fitted on "
            f"{', '.join(self.fit_partitions)} ({self.fusion.n_bonafide} bona fide, {self.fusion.n_spoof} spoof, "
            f"prior {self.fusion.prior:g})",
            f"  {'system':<{width}}  {'weight':>10}  {'fit EER':>8}",
        ]
        for name, weight, e in zip(self.fusion.names, self.fusion.weights, self.system_fit_eers):
            lines.append(f"  {name:<{width}}  {weight:>10.4g}  {100 * e:>7.2f}%")
        lines.append(f"  {'bias':<{width}}  {self.fusion.bias:>10.4g}")
        fused = f"  {'fused':<{width}}  {'':>10}  {100 * self.fit_eer:>7.2f}%"
        lines.append(f"{fused}  (fit Cllr {self.fit_cllr:.4f} bits)")
        return "\n".join(lines)


def fuse_score_files(
    table: UtteranceTable,
    files: Sequence[ScoreFile],
    *,
    names: Sequence[str],
    fit_partitions: Sequence[str] = ("val",),
    columns: Sequence[str] | None = None,
    prior: float = 0.5,
    l2: float = 1e-6,
) -> FusedTrials:
    """Fit the fusion of ``files`` (one per system, named ``names``) on ``table``'s trials of ``fit_partitions``
    that every file scores, and apply it to every trial every file scores. ``columns`` record which column of each
    file its scores are (default ``score``). ProtocolError when the table has no such partition, or its fit trials
    lack a class, or a system's scores there are all equal."""
    if len(names) != len(files):
        raise ProtocolError(f"{len(names)} names for {len(files)} score files")
    columns = tuple(columns) if columns is not None else ("score",) * len(files)
    fit_partitions = tuple(dict.fromkeys(fit_partitions))
    if not table.has_column("partition"):
        raise ProtocolError(
            f"the protocol has no partition column, so no {', '.join(fit_partitions)} trials to fit the fusion on"
        )
    # a protocol read with others that has no partition column holds NaN there (pandas' concat): no partition
    partitions = np.array(["" if v is None or v != v else str(v) for v in table.column("partition")], dtype=object)
    present = set(partitions.tolist()) - {""}
    # every one named must be there: a typo next to a valid name (val vla) silently fitted on fewer trials, and the
    # record named both as fitted on
    absent = [p for p in fit_partitions if p not in present]
    if absent:
        raise ProtocolError(
            f"the protocol has no {', '.join(absent)} partition to fit the fusion on; its partitions: "
            f"{', '.join(sorted(present))}"
        )
    aligned, ids, missing, notes, failures = _join_protocol(table, files)
    wanted = np.isin(partitions, list(fit_partitions))
    fit = wanted[aligned.rows]
    scores = aligned.scores.T  # (N, D)
    labels = table.labels[aligned.rows]
    n_bona, n_spoof = int(labels[fit].sum()), int((1 - labels[fit]).sum())
    if n_bona == 0 or n_spoof == 0:
        raise ProtocolError(
            f"the fusion is fitted on the {', '.join(fit_partitions)} trials every system scored: there are "
            f"{n_bona} bona fide and {n_spoof} spoof among them ({int(wanted.sum())} in the protocol); it needs both"
            f"{_unfit_systems(table, files, wanted)}"
        )
    fusion = fit_fusion(scores[fit], labels[fit], names=names, prior=prior, l2=l2)
    llr = fusion.apply(scores)
    y = labels[fit]
    return FusedTrials(
        fusion=fusion,
        files=tuple(f.path for f in files),
        columns=columns,
        fit_partitions=tuple(fit_partitions),
        ids=ids,
        scores=scores,
        llr=llr,
        fit=fit,
        missing=missing,
        fit_eer=float(eer(y, llr[fit])),
        fit_cllr=float(cllr(y, llr[fit])),
        system_fit_eers=tuple(float(eer(y, scores[fit, k])) for k in range(scores.shape[1])),
        notes=notes,
        digests=tuple(scored_by(f) for f in files),
        calibrations=tuple(scored_calibration(f) for f in files),
        errors=_error_rows(failures, names, files),
    )


def _unfit_systems(table: UtteranceTable, files: Sequence[ScoreFile], wanted: np.ndarray) -> str:
    """Which of ``files`` score none of the fit trials (``wanted``: the protocol rows of the fit partitions), as the
    refusal of a fit without both classes words it: a system scored on the test files alone left every system
    without fit trials, and the refusal named none of them."""
    lacking = []
    for score_file in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # its notes were given by the join already
            rows = match_scores(table, score_file).protocol_rows
        if rows is not None and not wanted[rows].any():
            lacking.append(str(score_file.path))
    lacking = list(dict.fromkeys(lacking))  # one file read for two columns is named once
    if not lacking:
        return ""
    verb = "scores" if len(lacking) == 1 else "score"
    return f"; {', '.join(lacking)} {verb} none of them (fit on partitions every system scores)"


def _join_protocol(table: UtteranceTable, files: Sequence[ScoreFile]):
    """(the join of ``files`` with ``table``, :func:`~sddkit.evaluation.scores.common_trials`; each fused trial's
    id as the first file writes it, joined with the folder its run record names; the files some systems scored but
    not all, by path, else utt_id; the joins' notes; the files some system could not score, :func:`_failures`)."""
    aligned, notes = common_trials(table, list(files))
    ids = _written_ids(files[0], aligned.score_rows[0])
    missing_paths = table.column("path")[aligned.partial].astype(str)
    missing_ids = table.column("utt_id")[aligned.partial].astype(str)
    missing = [p or u for p, u in zip(missing_paths.tolist(), missing_ids.tolist())]
    return aligned, ids, missing, notes, _failures(table, files, aligned)


# a file some systems could not score: its id as the fused file writes it, and (system, message) per such system
Failure = tuple[str, list[tuple[int, str]]]


def _failures(table: UtteranceTable, files: Sequence[ScoreFile], aligned: CommonTrials) -> list[Failure]:
    """The protocol files some of ``files`` hold an error row for, in protocol order. Each is spelled as the fused
    rows are joined when the fused file is evaluated: by utt_id where the first file was joined by utt_id, else by
    its protocol path made absolute (matched by path, or by stem, alike), so that sdd eval counts it as failed."""
    by_row: dict[int, list[tuple[int, str]]] = {}
    for k, (rows, at) in enumerate(aligned.failed):
        for r, j in zip(rows.tolist(), at.tolist()):
            by_row.setdefault(r, []).append((k, _failure_message(files[k], j)))
    if not by_row:
        return []
    rows = np.array(sorted(by_row), dtype=np.int64)
    utt = _text(table.column("utt_id"))[rows]
    if aligned.matched_by[0] == "utt_id":
        spelled = utt
    else:
        paths = _text(table.column("path"))[rows]
        has = paths != ""
        spelled = utt.copy()
        spelled[has] = _norm_paths(paths[has])
    return [(str(i), by_row[r]) for i, r in zip(spelled.tolist(), rows.tolist())]


def _failure_message(score_file: ScoreFile, j: int) -> str:
    """The message of ``score_file``'s ``j``-th error row ('' when it keeps none: one built without them)."""
    errors = score_file.failed_errors
    return errors[j] if j < len(errors) else ""


def _error_rows(failures: Sequence[Failure], names: Sequence[str], files: Sequence[ScoreFile]) -> list[tuple[str, str]]:
    """(id, message) of each failed file: which systems (and their score files) could not score it, and why."""
    out = []
    for path, failed in failures:
        said = [f"system {names[k]!r} ({files[k].path}){': ' + m if m else ''}" for k, m in failed]
        out.append((path, f"not fused: could not be scored by {'; '.join(said)}"))
    return out


def join_by_path(files: Sequence[ScoreFile]) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Join score files of paths (``id_kind == 'path'``) by the files they name, with no protocol: a relative path
    is taken from the folder the file's run record names (else the current one), as
    :func:`~sddkit.evaluation.scores.match_scores` takes it. Returns (ids (N,) of the files every score file scores,
    in the first file's order and spelled as it writes them (joined with its recorded folder); their scores (N, F);
    the files some score files score but not all, as absolute paths; notes). ProtocolError when a file's ids are
    not paths, or it scores one file twice."""
    keys = []
    for score_file in files:
        if score_file.id_kind != "path":
            example = f" (e.g. {str(score_file.ids[0])!r})" if len(score_file) else ""
            raise ProtocolError(
                f"--scores {score_file.path}: its ids are not paths{example}, so the score files cannot be joined by "
                "path: give --protocol P, the protocol that lists them"
            )
        ids = _text(score_file.ids)
        if (ids == "").any():
            raise ProtocolError(f"{score_file.path}: a score row has an empty path; give every row the file it scored")
        key = _norm_paths(ids, score_file.base_dir)
        twice = pd.Series(key, dtype=object).duplicated(keep=False).to_numpy()
        if twice.any():
            spelled = " and ".join(repr(str(i)) for i in ids[twice][:2])
            raise ProtocolError(
                f"{score_file.path}: {spelled} are one file, scored more than once; keep one score per file"
            )
        keys.append(key)
    first = pd.Index(keys[0], dtype=object)
    where = np.stack([np.arange(len(first))] + [pd.Index(k, dtype=object).get_indexer(first) for k in keys[1:]])
    common = (where >= 0).all(axis=0)
    rows = where[:, common]  # (F, N): each file's row of each file every one scores
    scores = np.stack([f.scores[r] for f, r in zip(files, rows)], axis=1)
    ids = _written_ids(files[0], rows[0])
    every = pd.unique(np.concatenate(keys))
    missing = every[~pd.Index(every, dtype=object).isin(first[common])].tolist()
    notes = [
        f"{f.path}: {len(f.failed)} file(s) could not be scored (error rows, not fused), e.g. {list(f.failed[:3])}"
        for f in files
        if f.failed
    ]
    return ids, scores, missing, notes


def _path_failures(files: Sequence[ScoreFile]) -> list[Failure]:
    """The files some of ``files`` hold an error row for, joined by path as :func:`join_by_path` joins their
    scores: each as an absolute path (as its ``missing``), with the files that failed it and their messages."""
    by_path: dict[str, list[tuple[int, str]]] = {}
    for k, score_file in enumerate(files):
        if not score_file.failed:
            continue
        keys = _norm_paths(_text(np.array(score_file.failed, dtype=object)), score_file.base_dir).tolist()
        first: dict[str, int] = {}
        for j, key in enumerate(keys):  # a file failed twice in one score file is named once
            first.setdefault(key, j)
        for key, j in first.items():
            by_path.setdefault(key, []).append((k, _failure_message(score_file, j)))
    return list(by_path.items())


# the record beside a fused score file OUT: OUT.fusion.json (sdd fuse --out)
RECORD_SUFFIX = ".fusion.json"


def fitted_fusion(scores: str | os.PathLike, n_rows: int) -> dict[str, Any] | None:
    """What an evaluation of ``scores`` records of the fusion fitted to make it (``report.json``'s
    ``inputs.fusion``): ``{"record": its OUT.fusion.json (absolute), "fit_partitions": [...]}``, when ``scores`` is
    an ``sdd fuse`` output whose record says it fitted the fusion on trials it holds (its ``n_fused`` is the file's
    ``n_rows``), with the record's ``sddkit_version`` and ``sddkit_git`` (the code that fitted the fusion and wrote
    the file) where it has them. None for any other file: no record, an unreadable one, one of an earlier file of
    that name, or an ``--apply`` output (fitted on other files)."""
    found = _fusion_record(scores, n_rows)
    if found is None or "applied_from" in found[1]:
        return None
    path, record = found
    fitted = record.get("fit_partitions")
    if not isinstance(fitted, list) or not fitted or not all(isinstance(p, str) for p in fitted):
        return None
    # which code wrote these scores: the report's own sddkit_git is the evaluating code's, not the fusing code's
    provenance = {k: record[k] for k in ("sddkit_version", "sddkit_git") if k in record}
    return {"record": path, "fit_partitions": list(fitted), **provenance}


def applied_fusion(scores: str | os.PathLike, n_rows: int) -> dict[str, Any] | None:
    """What an evaluation of ``scores`` records of the fusion applied to make it (``report.json``'s
    ``inputs.fusion_applied``), when ``scores`` is an ``sdd fuse --apply`` output (its record names ``applied_from``
    and its ``n_fused`` is the file's ``n_rows``): ``{"record": its OUT.fusion.json (absolute), "applied_from": the
    fitted record applied, as --apply named it}``, with the ``sddkit_version`` and ``sddkit_git`` of the code that
    applied the fusion and wrote the file (the record's ``applied_sddkit_*``; ``fit_sddkit_version`` and
    ``fit_sddkit_git``: the code that fitted it) where the record has them. Apart from :func:`fitted_fusion`'s
    ``inputs.fusion``: its ``fit_partitions`` name trials of other files, no fit trials of these. None for any other
    file."""
    found = _fusion_record(scores, n_rows)
    if found is None or not isinstance(found[1].get("applied_from"), str):
        return None
    path, record = found
    # the report's own sddkit_git is the evaluating code's: these name the code that wrote the scores, and fitted them
    named = {"sddkit_version": "applied_sddkit_version", "sddkit_git": "applied_sddkit_git"}
    named |= {"fit_sddkit_version": "sddkit_version", "fit_sddkit_git": "sddkit_git"}
    provenance = {key: record[at] for key, at in named.items() if at in record}
    return {"record": path, "applied_from": record["applied_from"], **provenance}


def _fusion_record(scores: str | os.PathLike, n_rows: int) -> tuple[str, dict[str, Any]] | None:
    """(its absolute path, the record) of the ``OUT.fusion.json`` beside ``scores`` when it describes that file (its
    ``n_fused`` is the file's ``n_rows``); None without one, for an unreadable one or one of an earlier file of that
    name."""
    path = os.fspath(scores) + RECORD_SUFFIX
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("n_fused") != n_rows:
        return None
    return os.path.abspath(path), record


def fit_trials_note(fusion: dict[str, Any] | None, partitions: Sequence[object]) -> str | None:
    """The warning for an evaluation of an ``sdd fuse`` output (``fusion``: :func:`fitted_fusion`'s, None: not one)
    over ``partitions`` (the evaluated trials' partition names) that include one the fusion was fitted on: sdd fuse
    writes every trial, its fit trials too, whose figures are fit figures. None when there is nothing to say."""
    if not fusion:
        return None
    fitted = [str(p) for p in dict.fromkeys(partitions) if p in fusion["fit_partitions"]]
    if not fitted:
        return None
    return (
        f"these are sdd fuse scores whose fusion was fitted on the {', '.join(fitted)} trials ({fusion['record']}): "
        "their figures here, and the pooled ones, are fit figures, not held-out ones; evaluate the partitions it was "
        "not fitted on (--partitions)"
    )


# what the fitting mode records that applying a fusion needs: the record of sdd fuse (FusedTrials.to_dict)
_RECORD_KEYS = ("systems", "bias", "prior", "column")


def read_fusion_record(path: str | os.PathLike) -> tuple[Fusion, list[str], dict[str, Any]]:
    """The fusion ``sdd fuse`` recorded in ``path`` (``OUT.fusion.json``): (the fusion, each system's column, the
    record). ConfigError, naming the file and what is missing or wrong, when it is no such record."""
    where = f"--apply {path}"
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file; give the OUT.fusion.json sdd fuse wrote") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a folder; give the OUT.fusion.json sdd fuse wrote") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        raise ConfigError(f"{where}: not JSON ({why}); give the OUT.fusion.json sdd fuse wrote") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: not a fusion record (a JSON {type(record).__name__}, not an object)")
    absent = [k for k in _RECORD_KEYS if k not in record]
    if absent:
        raise ConfigError(
            f"{where}: not a fusion record of sdd fuse: it has no {', '.join(absent)}; give the OUT.fusion.json "
            "sdd fuse wrote"
        )
    systems = record["systems"]
    if not isinstance(systems, list) or not systems or not all(isinstance(s, dict) for s in systems):
        raise ConfigError(f"{where}: its systems are not a list of systems (each a name and a weight)")
    for k, system in enumerate(systems):
        lacking = [key for key in ("name", "weight") if key not in system]
        if lacking:
            raise ConfigError(f"{where}: systems[{k}] has no {' or '.join(lacking)}")
        if not isinstance(system["name"], str) or not system["name"].strip():
            raise ConfigError(f"{where}: systems[{k}]'s name is {system['name']!r}, not a name")
        if not _finite(system["weight"]):
            raise ConfigError(
                f"{where}: systems[{k}] ({system['name']!r}) has weight {system['weight']!r}, not a number"
            )
    names = [s["name"] for s in systems]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: its systems' names repeat ({names}); each weight belongs to one system")
    if not _finite(record["bias"]):
        raise ConfigError(f"{where}: its bias is {record['bias']!r}, not a number")
    prior = record["prior"]
    if not _finite(prior) or not 0.0 < prior < 1.0:
        raise ConfigError(f"{where}: its prior is {prior!r}, not a number in (0, 1)")
    column = record["column"]
    columns = [column] * len(systems) if isinstance(column, str) else column
    if not isinstance(columns, list) or len(columns) != len(systems) or not all(isinstance(c, str) for c in columns):
        raise ConfigError(f"{where}: its column is {column!r}: neither one column nor one per system")
    counts = [record.get(k, 0) for k in ("n_fit_bonafide", "n_fit_spoof")]
    fusion = Fusion(
        names=tuple(names),
        weights=tuple(float(s["weight"]) for s in systems),
        bias=float(record["bias"]),
        prior=float(prior),
        n_bonafide=counts[0] if isinstance(counts[0], int) else 0,
        n_spoof=counts[1] if isinstance(counts[1], int) else 0,
    )
    return fusion, columns, record


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def apply_fusion(
    fusion: Fusion,
    files: Sequence[ScoreFile],
    *,
    record: dict[str, Any],
    applied_from: str,
    columns: Sequence[str] | None = None,
    table: UtteranceTable | None = None,
) -> FusedTrials:
    """Apply a recorded ``fusion`` (:func:`read_fusion_record`) to ``files``, one per system in the fusion's order:
    joined with ``table`` as :func:`fuse_score_files` joins them, or, with no table, by path
    (:func:`join_by_path`). ``record`` and ``applied_from`` are what the new record is made of
    (:meth:`FusedTrials.to_dict`); ``columns``: which column of each file was read (default ``score``)."""
    if len(files) != len(fusion.names):
        raise ProtocolError(f"a fusion of {len(fusion.names)} systems applied to {len(files)} score files")
    columns = tuple(columns) if columns is not None else ("score",) * len(files)
    unchecked = _check_same_models(record, files, applied_from, columns)
    if table is None:
        ids, scores, missing, notes = join_by_path(files)
        failures = _path_failures(files)
    else:
        aligned, ids, missing, notes, failures = _join_protocol(table, files)
        scores = aligned.scores.T
    if unchecked:
        notes = [*notes, _unchecked_note(applied_from, unchecked)]
    if not len(ids):
        raise ProtocolError(
            f"no file is scored by all {len(files)} score files ({len(missing)} by some of them): nothing to fuse"
        )
    nan = float("nan")
    eers = [s.get("fit_eer") for s in record["systems"]]
    return FusedTrials(
        fusion=fusion,
        files=tuple(f.path for f in files),
        columns=columns,
        fit_partitions=tuple(record.get("fit_partitions") or ()),
        ids=ids,
        scores=scores,
        llr=fusion.apply(scores),
        fit=np.zeros(len(ids), dtype=bool),  # nothing here was fitted on
        missing=missing,
        fit_eer=record["fit_eer"] if _finite(record.get("fit_eer")) else nan,
        fit_cllr=record["fit_cllr"] if _finite(record.get("fit_cllr")) else nan,
        system_fit_eers=tuple(e if _finite(e) else nan for e in eers),
        notes=notes,
        applied=record,
        applied_from=applied_from,
        errors=_error_rows(failures, fusion.names, files),
    )


# the columns of an sdd score output that its model's calibration maps (a * raw + b, and its sigmoid); raw_score and
# a mixture's expert_score<k> are before it
CALIBRATED_COLUMNS = ("score", "probability")


def _own_run_record(score_file: ScoreFile) -> dict[str, Any] | None:
    """The ``sdd score`` run record of ``score_file``; None for a file from elsewhere, or one rewritten since (its
    columns are not the record's)."""
    record = run_record(score_file.path)
    if record is None:
        return None
    recorded = record.get("columns")
    if isinstance(recorded, list) and score_file.columns and not {str(c) for c in recorded} <= set(score_file.columns):
        return None  # another tool's file over an earlier run's record: that record is not of these scores
    return record


def scored_by(score_file: ScoreFile) -> str | None:
    """The weights digest of the model whose ``sdd score`` run wrote ``score_file`` (its run record's
    ``weights_digest``); None for a file from elsewhere, or one rewritten since (its columns are not the record's)."""
    return _record_digest(_own_run_record(score_file))


def scored_calibration(score_file: ScoreFile) -> dict[str, float] | None:
    """The calibration (``{"a": ..., "b": ...}``) of the model when its ``sdd score`` run wrote ``score_file`` (its
    run record's ``inference.calibration``); None where :func:`scored_by` knows no model, or the record has none."""
    return _record_calibration(_own_run_record(score_file))


def _record_digest(record: dict[str, Any] | None) -> str | None:
    """A run record's ``weights_digest``; None without a record or a digest."""
    digest = None if record is None else record.get("weights_digest")
    return digest if isinstance(digest, str) and digest else None


def _record_calibration(record: dict[str, Any] | None) -> dict[str, float] | None:
    """A run record's ``inference.calibration`` as ``{"a": ..., "b": ...}``; None without a record or finite a, b."""
    inference = None if record is None else record.get("inference")
    calibration = inference.get("calibration") if isinstance(inference, dict) else None
    if not isinstance(calibration, dict) or not all(_finite(calibration.get(k)) for k in ("a", "b")):
        return None
    return {"a": float(calibration["a"]), "b": float(calibration["b"])}


def _check_same_models(
    record: dict[str, Any], files: Sequence[ScoreFile], applied_from: str, columns: Sequence[str] | None = None
) -> list[str]:
    """Refuse to apply a fusion to a system's scores of another model than the one it was fitted on (both known):
    its weight is of that model's scale, as one retrained since, or the files given in another order, do not have.
    A calibrated column (:data:`CALIBRATED_COLUMNS`) of the same weights calibrated otherwise is refused too: the
    model calibrated again since (``sdd calibrate``) gives the same file another score, and the fused one moved.
    Returns the names of the systems of an older record (no ``weights_digest``, no ``calibration``) whose fit file's
    run record is not found either: nothing says which model they were fitted on."""
    columns = tuple(columns) if columns is not None else ("score",) * len(files)
    unchecked: list[str] = []
    for k, (system, score_file, column) in enumerate(zip(record["systems"], files, columns)):
        system = _with_fit_file_identity(system, applied_from)
        if "weights_digest" not in system and "calibration" not in system:  # an older record, its fit file gone
            unchecked.append(str(system["name"]))
        fitted = system.get("weights_digest")
        now = scored_by(score_file)
        if isinstance(fitted, str) and now is not None and now != fitted:
            raise ProtocolError(
                f"--scores {score_file.path} (system {k + 1}, {system['name']!r}) was scored by a model of weights "
                f"{now[:12]}..., not the one {applied_from} fitted {system['name']!r} on ({fitted[:12]}...): its "
                "weight is of that model's scores; give that model's scores in the record's order, or fit the "
                "fusion again"
            )
        fitted_cal, now_cal = system.get("calibration"), scored_calibration(score_file)
        if column not in CALIBRATED_COLUMNS or not isinstance(fitted_cal, dict) or now_cal is None:
            continue
        if (fitted_cal.get("a"), fitted_cal.get("b")) != (now_cal["a"], now_cal["b"]):
            raise ProtocolError(
                f"--scores {score_file.path} (system {k + 1}, {system['name']!r}): its {column} column is of its "
                f"model calibrated as a={now_cal['a']:.6g}, b={now_cal['b']:.6g}, not as when {applied_from} was "
                f"fitted on its scores (a={_number(fitted_cal.get('a'))}, b={_number(fitted_cal.get('b'))}): the "
                "same weights calibrated again since (sdd calibrate), or a copy calibrated otherwise, score a file "
                f"differently, and the weight of {system['name']!r} is of the earlier scores; score with the "
                "calibration it was fitted with, or fit the fusion again (on raw_score, --column raw_score, a fusion "
                "that no later calibration changes)"
            )
    return unchecked


def _with_fit_file_identity(system: dict[str, Any], applied_from: str) -> dict[str, Any]:
    """``system`` of a fusion record, with the model it was fitted on taken from its fit file's run record where the
    record lacks it: sddkit before 2026-12-06 wrote ``fusion.json`` without ``weights_digest`` and ``calibration``,
    and :func:`_check_same_models` then let scores of any model through (systems given in swapped order included).
    The fit file's relative name is tried beside the fusion record first (where ``sdd fuse --out`` wrote both)."""
    if "weights_digest" in system or "calibration" in system or not isinstance(system.get("file"), str):
        return system  # a record of today's layout: what it says (None included) is what was known at the fit
    fit_file = system["file"]
    candidates = [fit_file] if os.path.isabs(fit_file) else [os.path.join(os.path.dirname(applied_from), fit_file)]
    run = next((r for r in map(run_record, dict.fromkeys([*candidates, fit_file])) if r is not None), None)
    if run is None:
        return system
    return {**system, "weights_digest": _record_digest(run), "calibration": _record_calibration(run)}


def _unchecked_note(applied_from: str, names: Sequence[str]) -> str:
    """The warning that a fusion record names no model for ``names``: their scores were not checked against it."""
    return (
        f"{applied_from} does not record which model (weights, calibration) it fitted {', '.join(map(repr, names))} "
        "on (written by sddkit before 2026-12-06), and its fit score file's run record is not found: the scores "
        "given could not be checked to be of that model, in the record's order; if a model was retrained or "
        "calibrated since, fit the fusion again"
    )


def _number(value: Any) -> str:
    """A recorded value as a message gives it: a number to 6 digits, anything else as written."""
    return f"{value:.6g}" if _finite(value) else repr(value)


def _written_ids(score_file: ScoreFile, rows: np.ndarray) -> np.ndarray:
    """(N,) the ids of ``score_file``'s ``rows`` as the fused file writes them: a path joined with the folder the
    file's run record names (:func:`_under`), any other id as it is."""
    ids = score_file.ids[rows]
    if score_file.base_dir and score_file.id_kind == "path":
        # an sdd score output's relative paths are relative to the folder it ran in (its run record's cwd), which
        # the fused file does not record: written as given, they were read from the wrong folder (no match by path)
        ids = np.array([_under(score_file.base_dir, str(p)) for p in ids.tolist()], dtype=object)
    return ids


def _under(base: str, path: str) -> str:
    """``path`` joined with the folder ``base`` it is relative to; an absolute or empty one as it is."""
    if not path or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base, path))


def missing_note(missing: Sequence[str], n_systems: int) -> str:
    """The warning line on the files some systems scored but not all: how many, the first few named."""
    named = ", ".join(missing[:_NAMED]) + (f", ... ({len(missing) - _NAMED} more)" if len(missing) > _NAMED else "")
    return f"{len(missing)} file(s) scored by some of the {n_systems} systems but not by all are not fused: {named}"
