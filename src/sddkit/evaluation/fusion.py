"""Linear score fusion of several systems (``sdd fuse``), as BOSARIS's linear fusion.

Each trial's fused score is ``llr = sum_k w_k * s_k + b`` over the systems' scores ``s_k``; the weights and the
bias are fitted by the prior-weighted logistic regression of :func:`~sddkit.scoring.calibration.fit_calibration`
(:func:`~sddkit.scoring.calibration.fit_linear_llr`, the same objective with one weight per system), on the
labelled trials of the development partitions that every system scored. Like a calibration's, the fused score is
a prior-free log-likelihood ratio (higher = more bona fide): the prior only chooses which operating region the fit
cares most about. One system's fusion is exactly its calibration.

The systems' score files are joined with the protocol as ``sdd eval`` and ``sdd compare`` join them
(:func:`~sddkit.evaluation.scores.common_trials`); a trial is fused when every system scored it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation.scores import ScoreFile, common_trials
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
        """(N, D) scores, one column per system, -> (N,) fused LLRs."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != len(self.weights):
            raise ProtocolError(f"fusion of {len(self.weights)} systems takes (N, {len(self.weights)}) scores")
        return scores @ np.asarray(self.weights) + self.bias


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
        """The output's columns: path, score, probability, decision, then ``score_<name>`` per system."""
        return ["path", "score", "probability", "decision", *(f"score_{n}" for n in self.fusion.names)]

    def rows(self) -> list[dict[str, Any]]:
        """One output row per fused trial, in protocol order (numbers as Python floats)."""
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
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fusion's record (``<out>.fusion.json``)."""
        columns = list(self.columns)
        return {
            "systems": [
                {"name": n, "file": f, "column": c, "weight": w, "fit_eer": e}
                for n, f, c, w, e in zip(
                    self.fusion.names, self.files, columns, self.fusion.weights, self.system_fit_eers
                )
            ],
            "bias": self.fusion.bias,
            "prior": self.fusion.prior,
            # one value when every system's scores are of the same column, else one per system
            "column": columns[0] if len(set(columns)) == 1 else columns,
            "fit_partitions": list(self.fit_partitions),
            "n_fit_bonafide": self.fusion.n_bonafide,
            "n_fit_spoof": self.fusion.n_spoof,
            "fit_eer": self.fit_eer,
            "fit_cllr": self.fit_cllr,
            "n_fused": int(len(self.llr)),
            "n_missing": len(self.missing),
        }

    def summary(self) -> str:
        """A short table: each system's weight and fit EER, the bias, the fused fit EER and Cllr."""
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
    aligned, notes = common_trials(table, list(files))
    wanted = np.isin(partitions, list(fit_partitions))
    fit = wanted[aligned.rows]
    scores = aligned.scores.T  # (N, D)
    labels = table.labels[aligned.rows]
    n_bona, n_spoof = int(labels[fit].sum()), int((1 - labels[fit]).sum())
    if n_bona == 0 or n_spoof == 0:
        raise ProtocolError(
            f"the fusion is fitted on the {', '.join(fit_partitions)} trials every system scored: there are "
            f"{n_bona} bona fide and {n_spoof} spoof among them ({int(wanted.sum())} in the protocol); it needs both"
        )
    fusion = fit_fusion(scores[fit], labels[fit], names=names, prior=prior, l2=l2)
    llr = fusion.apply(scores)
    y = labels[fit]
    first = files[0]
    ids = first.ids[aligned.score_rows[0]]
    if first.base_dir and first.id_kind == "path":
        # an sdd score output's relative paths are relative to the folder it ran in (its run record's cwd), which
        # the fused file does not record: written as given, they were read from the wrong folder (no match by path)
        ids = np.array([_under(first.base_dir, str(p)) for p in ids.tolist()], dtype=object)
    missing_paths = table.column("path")[aligned.partial].astype(str)
    missing_ids = table.column("utt_id")[aligned.partial].astype(str)
    return FusedTrials(
        fusion=fusion,
        files=tuple(f.path for f in files),
        columns=columns,
        fit_partitions=tuple(fit_partitions),
        ids=ids,
        scores=scores,
        llr=llr,
        fit=fit,
        missing=[p or u for p, u in zip(missing_paths.tolist(), missing_ids.tolist())],
        fit_eer=float(eer(y, llr[fit])),
        fit_cllr=float(cllr(y, llr[fit])),
        system_fit_eers=tuple(float(eer(y, scores[fit, k])) for k in range(scores.shape[1])),
        notes=notes,
    )


def _under(base: str, path: str) -> str:
    """``path`` joined with the folder ``base`` it is relative to; an absolute or empty one as it is."""
    if not path or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base, path))


def missing_note(missing: Sequence[str], n_systems: int) -> str:
    """The warning line on the files some systems scored but not all: how many, the first few named."""
    named = ", ".join(missing[:_NAMED]) + (f", ... ({len(missing) - _NAMED} more)" if len(missing) > _NAMED else "")
    return f"{len(missing)} file(s) scored by some of the {n_systems} systems but not by all are not fused: {named}"
