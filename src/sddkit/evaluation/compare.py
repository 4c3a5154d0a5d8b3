"""Paired comparison of two systems scored on the same trials (``sdd compare``).

Two detectors' separate EER intervals overlap even when one is clearly better, because most of an
interval's width is *which files* happen to be in the evaluation set, and both systems share that.
The paired bootstrap resamples the trials once per replicate and measures both systems on that same
resample, so file difficulty cancels out of the difference. Several runs per system (e.g. seeds) are
paired run by run (run r of the baseline with run r of the system) and their differences averaged
inside every replicate, so a multi-seed claim is tested as one statistic.

What the interval covers: a percentile interval of ``metric(system) - metric(baseline)`` over replicates that
resample the trials with replacement within each class (the bona fide and spoof counts are kept), each trial
independently of the others. It is the sampling error of the *trials*, given these runs: seed-to-seed variation
is not in it (the std over runs is shown beside it), and trials that share a speaker, a text or a source are
treated as independent, so where they are strongly alike the interval is too narrow (``by`` shows each
group on its own). ``cluster_by`` (e.g. ``speaker``) resamples each class's clusters whole instead (a cluster
bootstrap): its interval counts a speaker's trials as one unit of evidence, and is wider where they are alike;
a trial without a value in that column is a cluster of its own. ``p_system_not_better`` is the share of
replicates where the difference is ``>= 0`` (ties count as not better). With ``by``, every group's interval is
at the same level, unadjusted for the number of groups (a note says so).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation.groups import attack_groups, markdown_cell, names_spoofs_only, partition_groups
from sddkit.evaluation.groups import groups as value_groups
from sddkit.evaluation.scores import OUTSIDE_PARTITIONS, CommonTrials, ScoreFile, common_trials
from sddkit.metrics import CurveMetric, PairedDifference, eer_from_curve, min_dcf_from_curve, paired_bootstrap, roc_auc
from sddkit.metrics.bootstrap import MIN_UNITS_PER_CLASS

# Lower is better for every metric here: the verdict below relies on it. Their results convert with float()
# (EERResult, DCFResult), as paired_bootstrap expects; min_dcf takes the report's default cost (p_spoof 0.05,
# c_miss 1, c_fa 10). Both are functions of the DET curve (CurveMetric): the bootstrap then sorts each run once.
COMPARE_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], object]] = {
    "eer": CurveMetric(eer_from_curve),
    "min_dcf": CurveMetric(min_dcf_from_curve),
}


@dataclass(frozen=True)
class SystemRuns:
    """One system's runs: their score files and the metric of each on the common trials."""

    name: str
    files: tuple[str, ...]
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float | None:
        """Sample standard deviation over runs; None for a single run."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "files": list(self.files),
            "values": list(self.values),
            "mean": self.mean,
            "std": self.std,
        }


# columns that describe how a spoof was made (empty, '-' or 'bonafide' on real speech): `by` one of them compares
# each value's spoofs against the bona fide trials
SPOOF_COLUMNS = ("attack", "attack_type", "vocoder")
MIN_TRIALS_PER_CLASS = MIN_UNITS_PER_CLASS  # trials or clusters, as sdd eval's confidence intervals and the bootstrap
_THIN_NOTE = (
    "{what}: {n_bona} bona fide / {n_spoof} spoof; with fewer than "
    f"{MIN_TRIALS_PER_CLASS} trials of a class the bootstrap cannot measure its sampling error: no verdict"
)


def min_replicates(alpha: float) -> int:
    """The fewest replicates whose percentile interval has at least one replicate in each ``alpha / 2`` tail."""
    return math.ceil(2 / alpha - 1e-9)


@dataclass(frozen=True)
class Comparison:
    """``metric(system) - metric(baseline)`` on the trials every score file covers.

    difference: the paired bootstrap (point value = mean over runs of the per-run differences;
    ``p_b_not_better`` = share of replicates where the system is not better).
    by, groups: with ``by`` (a protocol column such as ``source``), the same comparison on each
    group's trials, as ``(value, Comparison)`` pairs; groups without both classes are left out
    (a note names them).
    cluster_by, n_clusters: the column whose values the bootstrap resampled whole, and how many clusters the
    bona fide and the spoof trials form (None: trials resampled one by one).
    partitions: the partitions the compared trials are of (empty without a partition column).
    """

    metric: str
    n_trials: int
    n_bonafide: int
    n_spoof: int
    baseline: SystemRuns
    system: SystemRuns
    difference: PairedDifference
    n_bootstrap: int
    alpha: float
    seed: int
    notes: tuple[str, ...] = ()
    by: str | None = None
    groups: tuple[tuple[str, Comparison], ...] = ()
    cluster_by: str | None = None
    n_clusters: tuple[int, int] | None = None
    # the partitions of the compared trials, in protocol order (empty: the protocol has no partition column): the
    # trials every file scores, which may leave out partitions the protocol and some of the files hold
    partitions: tuple[str, ...] = ()

    @property
    def measurable(self) -> bool:
        """Whether both classes have the trials (clusters, with ``cluster_by``) a bootstrap needs to see their
        sampling error: a class of one trial comes back identical in every (stratified) replicate, and its
        interval would look certain."""
        units = (self.n_bonafide, self.n_spoof) if self.n_clusters is None else self.n_clusters
        return min(units) >= MIN_TRIALS_PER_CLASS

    @property
    def resolved(self) -> bool:
        """Whether there are replicates enough (:func:`min_replicates`) for a ``1 - alpha`` percentile interval:
        with fewer, its ends lie inside the extreme replicates (with one replicate, the interval is that replicate,
        which may not even hold the point value), and a verdict would rest on a handful of resamples."""
        return self.n_bootstrap >= min_replicates(self.alpha)

    @property
    def verdict(self) -> str:
        """``system better`` / ``baseline better`` when the interval excludes zero, else ``no difference shown``
        (also whenever a class has fewer than ``MIN_TRIALS_PER_CLASS`` trials, or the interval is not
        :attr:`resolved`)."""
        if not (self.measurable and self.resolved):
            return "no difference shown"
        if self.difference.high < 0:
            return "system better"
        if self.difference.low > 0:
            return "baseline better"
        return "no difference shown"

    def to_dict(self) -> dict[str, Any]:
        d = self.difference
        out = {
            "metric": self.metric,
            "n_trials": self.n_trials,
            "n_bonafide": self.n_bonafide,
            "n_spoof": self.n_spoof,
            "baseline": self.baseline.to_dict(),
            "system": self.system.to_dict(),
            "difference": {"value": d.diff, "low": d.low, "high": d.high, "p_system_not_better": d.p_b_not_better},
            "verdict": self.verdict,
            "bootstrap": {
                "replicates": self.n_bootstrap,
                "alpha": self.alpha,
                "seed": self.seed,
                "cluster_by": self.cluster_by,
                "clusters": None if self.n_clusters is None else dict(zip(("bonafide", "spoof"), self.n_clusters)),
            },
            "units": {"eer": "fraction", "min_dcf": "normalised"},  # the printed table gives EER in percent
            "notes": list(self.notes),
        }
        if self.by is not None:
            out["by"] = self.by
            out["groups"] = [{"group": value, **_group_dict(c)} for value, c in self.groups]
        return out

    def summary(self) -> str:
        """Markdown: one row per system, the paired difference and the verdict, then one row per group."""
        fmt, unit = _formatter(self.metric)
        level = f"{100 * (1 - self.alpha):g} %"
        lines = [
            f"{self.metric}{unit} on {self.n_trials} trials ({self.n_bonafide} bona fide, {self.n_spoof} spoof)",
            "",
            "| system | runs | mean | std | per run |",
            "|---|---|---|---|---|",
        ]
        for runs in (self.baseline, self.system):
            per_run = ", ".join(fmt(v) for v in runs.values)
            std = "-" if runs.std is None else fmt(runs.std)
            # a name with a `|` (--names "wav2vec|lora" ...) split its row into more cells than the header's
            lines.append(f"| {markdown_cell(runs.name)} | {len(runs.values)} | {fmt(runs.mean)} | {std} | {per_run} |")
        d = self.difference
        clustered = ""
        if self.n_clusters is not None:
            clustered = f" over {self.cluster_by} clusters ({self.n_clusters[0]} bona fide, {self.n_clusters[1]} spoof)"
            if min(self.n_clusters) < MIN_TRIALS_PER_CLASS:  # _compare resampled the trials instead (a note says so)
                clustered = (
                    f" of trials, not of {self.cluster_by} clusters ({self.n_clusters[0]} bona fide, "
                    f"{self.n_clusters[1]} spoof: too few)"
                )
        lines += [
            "",
            f"{self.system.name} minus {self.baseline.name}: {fmt(d.diff)} [{fmt(d.low)}, {fmt(d.high)}] "
            f"({level} paired bootstrap{clustered}, {self.n_bootstrap} replicates; P(not better) "
            f"{d.p_b_not_better:.3f}): {self.verdict}",
        ]
        if self.groups:
            lines += [
                "",
                f"| {markdown_cell(self.by)} | bona fide / spoof | {markdown_cell(self.baseline.name)} | "
                f"{markdown_cell(self.system.name)} | difference [{level}] "
                "| verdict |",
                "|---|---|---|---|---|---|",
            ]
            for value, c in self.groups:
                g = c.difference
                lines.append(
                    f"| {markdown_cell(value)} | {c.n_bonafide} / {c.n_spoof} | {fmt(c.baseline.mean)} "
                    f"| {fmt(c.system.mean)} | {fmt(g.diff)} [{fmt(g.low)}, {fmt(g.high)}] | {c.verdict} |"
                )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _formatter(metric: str) -> tuple[Callable[[float], str], str]:
    if metric == "eer":  # a fraction, shown in percent as the field reports it
        return (lambda x: f"{100 * x:.2f}"), " %"
    return (lambda x: f"{x:.4f}"), ""


def _group_dict(c: Comparison) -> dict[str, Any]:
    d = c.to_dict()
    clusters = d["bootstrap"]["clusters"]  # the group's own cluster counts
    for key in ("metric", "bootstrap", "notes"):  # the same as the whole comparison's
        d.pop(key)
    if clusters is not None:
        d["clusters"] = clusters
    for side in ("baseline", "system"):
        d[side].pop("files")
    return d


def compare_scores(
    table: UtteranceTable,
    baseline: Sequence[ScoreFile],
    system: Sequence[ScoreFile],
    *,
    metric: str = "eer",
    n_bootstrap: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    names: tuple[str, str] = ("baseline", "system"),
    by: str | None = None,
    cluster_by: str | None = None,
    outside: UtteranceTable | None = None,
    selection: str = OUTSIDE_PARTITIONS,
) -> Comparison:
    """Compare ``system`` with ``baseline``: R score files each (runs paired in the given order).

    Only the protocol rows that every score file scores are used (a note says how many were
    dropped), so both systems and all runs see exactly the same trials. ``by`` also compares
    within each value of that protocol column (e.g. ``source``; ``attack``, ``attack_type``, ``vocoder``: each
    value's spoofs against the bona fide trials, see :func:`_group_masks`). ``cluster_by``: a protocol column
    (e.g. ``speaker``) whose values the bootstrap resamples whole (see the module docstring). Raises
    ``ProtocolError`` on unequal run counts, an unknown metric or column, or common trials without both classes.
    ``outside``: the protocol's rows left out (other partitions), whose scores are noted as such, not as strays;
    ``selection``: what left them out, as the note words it.
    """
    if metric not in COMPARE_METRICS:
        raise ProtocolError(f"unknown metric {metric!r}; known: {', '.join(COMPARE_METRICS)}")
    if not baseline or len(baseline) != len(system):
        raise ProtocolError(
            f"compare needs the same number (>= 1) of baseline and system score files, paired run by run; "
            f"got {len(baseline)} and {len(system)}{_one_run_hint(baseline, system)}"
        )
    group_of = None if by is None else table.column(by).astype(str)  # unknown column: ProtocolError
    if by is not None and not table.has_column(by):
        raise ProtocolError(f"the protocol's {by!r} column is empty: nothing to group by")
    cluster_of = None if cluster_by is None else table.column(cluster_by).astype(str)  # unknown: ProtocolError
    if cluster_by is not None and not table.has_column(cluster_by):
        raise ProtocolError(f"the protocol's {cluster_by!r} column is empty: nothing to cluster by")
    aligned, notes = _common_trials(table, [*baseline, *system], outside, selection)
    labels = table.labels[aligned.rows]
    n_bona = int(labels.sum())
    if n_bona < 1 or n_bona == labels.size:
        raise ProtocolError(
            f"the {labels.size} trials every score file covers hold {n_bona} bona fide and {labels.size - n_bona} "
            "spoof: a comparison needs both classes"
        )
    notes += _inverted_notes(labels, aligned.scores, [*baseline, *system])
    pooled = _pooled_partitions(table, aligned.rows)
    of_trials = _trial_partitions(table, aligned.rows)
    partitions = () if of_trials is None else tuple(dict.fromkeys(of_trials.tolist()))
    if pooled:
        # the headline pools them, e.g. ASVspoof 2021's eval/progress/hidden phases or sddbench's val and tests
        notes.append(f"trials of {len(pooled)} partitions pooled ({', '.join(pooled)}); --partitions selects some")
    clusters = None
    if cluster_of is not None:
        clusters = cluster_of[aligned.rows].astype(object)
        alone = np.flatnonzero(clusters == "")
        clusters[alone] = [f"\x00{i}" for i in alone]  # no value: a cluster of its own, never one with the others
        if alone.size:
            notes.append(f"{alone.size} trial(s) without a {cluster_by} value are resampled one by one")
    runs = len(baseline)
    compare = functools.partial(
        _compare,
        names=names,
        files=(tuple(str(f.path) for f in baseline), tuple(str(f.path) for f in system)),
        metric=metric,
        n_bootstrap=n_bootstrap,
        alpha=alpha,
        seed=seed,
        cluster_by=cluster_by,
    )
    whole = compare(labels, aligned.scores[:runs], aligned.scores[runs:], clusters)
    if not whole.resolved:
        notes.append(
            f"{n_bootstrap} bootstrap replicate(s) leave fewer than one in each {alpha / 2:g} tail of the "
            f"{100 * (1 - alpha):g} % interval: no verdict; use --bootstrap {min_replicates(alpha)} or more "
            "(2000 by default)"
        )
    if not whole.measurable:
        notes.append(_thin_note("the trials", whole))
    whole = dataclasses.replace(whole, partitions=partitions)
    if group_of is None:
        return dataclasses.replace(whole, notes=tuple(notes))
    groups, one_class = [], []
    for value, keep in _group_masks(table, group_of, aligned.rows, labels, by):
        y = labels[keep]
        if 0 < int(y.sum()) < y.size:
            group_clusters = None if clusters is None else clusters[keep]
            groups.append((value, compare(y, aligned.scores[:runs, keep], aligned.scores[runs:, keep], group_clusters)))
        else:
            one_class.append(value)
    if one_class:
        notes.append(f"{by} group(s) with one class only, not compared on their own: {', '.join(one_class)}")
    for value, c in groups:
        if not c.measurable:
            notes.append(_thin_note(f"{by} {value}", c))
    if len(groups) > 1:  # k verdicts at alpha each: about k * alpha of them wrong by chance when nothing differs
        notes.append(
            f"each of the {len(groups)} {by} groups has its own {100 * (1 - alpha):g} % interval, not adjusted for "
            f"{len(groups)} comparisons (Bonferroni: --alpha {alpha / len(groups):.3g})"
        )
    return dataclasses.replace(whole, notes=tuple(notes), by=by, groups=tuple(groups))


def _inverted_notes(labels: np.ndarray, scores: np.ndarray, files: Sequence[ScoreFile]) -> list[str]:
    """A note on each score file whose scores rank spoof above bona fide on the compared trials (ROC AUC below 0.5),
    as ``sdd eval`` warns of one: most often another tool's spoofness scores, whose EER above 50 % was compared as
    given and handed the other side a verdict without a word. ``scores``: (F, N) the files' scores of the trials."""
    notes, seen = [], set()
    for score_file, values in zip(files, scores):
        auc = roc_auc(labels, values)
        if auc >= 0.5 or str(score_file.path) in seen:  # a file given once per run of the other side: said once
            continue
        seen.add(str(score_file.path))
        notes.append(
            f"{score_file.path}: ROC AUC {auc:.4f} on the compared trials is below 0.5: its scores rank spoof above "
            "bona fide more often than not; sddkit expects higher = more bona fide (negate the scores of a tool that "
            "scores spoofness): the comparison is of the scores as given"
        )
    return notes


def _one_run_hint(baseline: Sequence[ScoreFile], system: Sequence[ScoreFile]) -> str:
    """What to do when one side has a single score file and the other several: a deterministic model (a bundled or
    published one) has one run, and repeating its file pairs it with each of the other side's runs, whose mean
    difference is then the other side's mean against it. The bare count error left that unsaid."""
    if min(len(baseline), len(system)) != 1 or max(len(baseline), len(system)) < 2:
        return ""
    one, side, other, runs = (
        (baseline[0], "--baseline", "--system", len(system))
        if len(baseline) == 1
        else (system[0], "--system", "--baseline", len(baseline))
    )
    return (
        f" (a {side} of one run, e.g. a deterministic model, can be given once per {other} run: {side} "
        f"{' '.join([str(one.path)] * runs)})"
    )


def _trial_partitions(table: UtteranceTable, rows: np.ndarray) -> np.ndarray | None:
    """The partition of each compared trial (None: the protocol has no partition column)."""
    return table.column("partition").astype(str)[rows] if table.has_column("partition") else None


def _pooled_partitions(table: UtteranceTable, rows: np.ndarray) -> list[str]:
    """The partitions of the compared trials when there are several (none: one partition, or no column)."""
    return [name for name, _ in partition_groups(_trial_partitions(table, rows)) or []]


def _group_masks(
    table: UtteranceTable, group_of: np.ndarray, rows: np.ndarray, labels: np.ndarray, by: str
) -> list[tuple[str, np.ndarray]]:
    """(group value, mask over the compared trials) for each group of column ``by``.

    A column of :data:`SPOOF_COLUMNS`, or one naming nothing for any bona fide trial (MLAAD's ``architecture``,
    :func:`~sddkit.evaluation.groups.names_spoofs_only`), follows the field's per-attack convention, as ``sdd
    eval``'s per-attack table: each value's spoof trials together with the bona fide trials (whose value, e.g.
    ``bonafide``, ``-`` or empty, names no group), those of its own partition when the trials span several (the
    group is then named ``partition/value``). Grouped by value alone, every group would hold one class and none
    could be compared.
    Any other column: the trials of each value.
    """
    values = group_of[rows]
    if by not in SPOOF_COLUMNS and not names_spoofs_only(values, labels):
        return value_groups(values)  # an empty value is the group `unknown`, as in sdd eval's tables
    partitions = _trial_partitions(table, rows)
    return [
        (attack if partition is None else f"{partition}/{attack}", mask)
        for partition, attack, mask in attack_groups(values, labels, partitions)
    ]


def _thin_note(what: str, c: Comparison) -> str:
    if c.n_clusters is None or min(c.n_bonafide, c.n_spoof) < MIN_TRIALS_PER_CLASS:
        return _THIN_NOTE.format(what=what, n_bona=c.n_bonafide, n_spoof=c.n_spoof)
    return (
        f"{what}: {c.n_clusters[0]} bona fide / {c.n_clusters[1]} spoof {c.cluster_by} cluster(s); with fewer than "
        f"{MIN_TRIALS_PER_CLASS} clusters of a class the cluster bootstrap cannot measure its sampling error (the "
        "interval shown resamples its trials one by one): no verdict"
    )


def _compare(
    labels: np.ndarray,
    base: np.ndarray,
    system: np.ndarray,
    clusters: np.ndarray | None = None,
    *,
    names: tuple[str, str],
    files: tuple[tuple[str, ...], tuple[str, ...]],
    metric: str,
    n_bootstrap: int,
    alpha: float,
    seed: int,
    cluster_by: str | None = None,
) -> Comparison:
    """base, system: (R, N) scores of the R paired runs on the N trials of ``labels``; clusters: (N,) labels
    for a cluster bootstrap (None: trials resampled one by one)."""
    fn = COMPARE_METRICS[metric]
    n_bona = int(labels.sum())
    n_clusters = None
    if clusters is not None:
        bona = labels.astype(bool)
        n_clusters = (len(set(clusters[bona])), len(set(clusters[~bona])))
    # a class of fewer than 2 clusters cannot be cluster-resampled: its trials are, and the verdict is withheld
    usable = n_clusters is not None and min(n_clusters) >= MIN_TRIALS_PER_CLASS
    return Comparison(
        metric=metric,
        n_trials=int(labels.size),
        n_bonafide=n_bona,
        n_spoof=int(labels.size - n_bona),
        baseline=SystemRuns(names[0], files[0], tuple(float(fn(labels, s)) for s in base)),
        system=SystemRuns(names[1], files[1], tuple(float(fn(labels, s)) for s in system)),
        difference=paired_bootstrap(
            fn, labels, base, system, n=n_bootstrap, alpha=alpha, seed=seed, clusters=clusters if usable else None
        ),
        n_bootstrap=n_bootstrap,
        alpha=alpha,
        seed=seed,
        cluster_by=cluster_by,
        n_clusters=n_clusters,
    )


def _common_trials(
    table: UtteranceTable,
    files: Sequence[ScoreFile],
    outside: UtteranceTable | None = None,
    selection: str = OUTSIDE_PARTITIONS,
) -> tuple[CommonTrials, list[str]]:
    """:func:`~sddkit.evaluation.scores.common_trials`, with a note on the trials some runs lack: they are left out."""
    aligned, notes = common_trials(table, list(files), outside, selection)
    if len(aligned.partial) and not len(aligned.rows):
        # was "the 0 trials every score file covers hold 0 bona fide and 0 spoof: a comparison needs both classes"
        raise ProtocolError(
            f"no protocol trial is scored by every score file ({len(aligned.partial)} are scored by some of "
            f"{', '.join(str(f.path) for f in files)}, none by all); a comparison needs score files of the same "
            "audio files"
        )
    if len(aligned.partial):
        n_common = len(aligned.rows)
        notes.append(
            f"{len(aligned.partial)} scored trial(s) are missing from at least one score file and are left out, "
            f"so that every run is measured on the same {n_common} trials"
        )
    return aligned, notes
