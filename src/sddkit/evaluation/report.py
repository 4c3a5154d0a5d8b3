"""Evaluation reports: pooled metrics, breakdowns per attack/source/corpus/codec, files and plots.

``evaluate(table, scores) -> Report`` computes everything; ``write_report(report, out_dir)``
writes::

    report.json     machine-readable; pooled EER in PERCENT at pooled.eer (CI at pooled.eer_ci; null,
                    with the reason at pooled.eer_ci_note, when a class has fewer than 2 trials; from fewer
                    bootstrap replicates than 2 / alpha, the note and a warning say it is not of its level);
                    pooled.score_range: the lowest and highest score; pooled.at_threshold: accuracy, TPR, TNR
                    at EvalConfig.decision_threshold (sdd eval: the threshold of the model that wrote the scores,
                    from their run record, as its ``decision`` column; 0 without one); pooled.act_dcf is at the
                    Bayes threshold of the DCF costs, as the ASVspoof 5 package's; warnings: partial matches,
                    trials of the SASV key of keyed ASV scores that hold no score (``asv_scores.n_unscored``),
                    ASV or SASV scores that look inverted (target trials ranked below the others),
                    scores that look inverted (ROC AUC below 0.5) or like probabilities (all in [0, 1], in a score file
                    without the run record of sdd score or without the columns it lists: actDCF and Cllr read
                    scores as log-likelihood ratios), scores of a model with no calibration (its
                    ``inference.calibration`` the identity, as ``sdd score``'s run record has it), bona fide and spoof
                    scores that tie where that puts the pooled EER apart from the ASVspoof packages' ``compute_eer``
                    (with its figure)
    report.md       the same as readable tables; with ``evaluate(..., by=[COLUMN, ...])`` (sdd eval --by) also a
                    table per value of each COLUMN, at report.json's per_column.COLUMN (no CSV)
    per_attack.csv  each spoof attack/system against all bona fide trials
    per_source.csv  each source (domain) on its own trials
    per_corpus.csv  each corpus (only when there is more than one)
    per_partition.csv  each partition, e.g. ASVspoof 2021's eval/progress/hidden phases (``hidden_track`` in
                    its stage-1 keys) (only when there is more than one: the pooled figures then mix them;
                    `sdd eval --partitions` selects)
    per_codec.csv   each codec condition, with its min t-DCFs (only when the protocol has a codec column)
    per_vocoder.csv each vocoder's spoofs against the bona fide trials, as per_attack.csv (only when the protocol
                    names spoofs' vocoders: the full ASVspoof 2021 DF key, whose official breakdown is per vocoder)
    per_attack_type.csv  each attack type's spoofs (tts, vc, ...) against the bona fide trials, as per_attack.csv
                    (only when the protocol names spoofs' attack types: ASVspoof 2019/2021, sddbench, a labels CSV's
                    ``attack_type`` column)
    det.png         DET curves, pooled + per source
    roc.png         ROC curves, pooled + per source
    scores.png      histograms of the pooled bona fide and spoof scores, with the EER threshold
    gate_weights_by_source.csv/.png, gate_weights_by_attack.csv/.png
                    a mixture's mean gate weight per expert for each source and each attack (bona fide files
                    as ``bonafide``), as tables and heatmaps (only when the scores carry gate weights, e.g.
                    ``sdd score`` output of a MELE/MILE model: columns ``gate_w0, gate_w1, ...``); with several
                    partitions a row per partition and group (a ``partition`` column, each partition's ``all``
                    row its mean), as per_attack.csv, then the ``all`` row of every file; a heatmap of more than
                    HEATMAP_MAX_GROUPS (60) groups draws those with the most files, as its title says
    expert_use_by_source.csv/.png, expert_use_by_attack.csv/.png
                    a MoLEx model's mean router weight per expert for each source and each attack, from
                    ``sdd score``'s ``molex_gate_mean_0, ...`` columns (each file's weights averaged over the
                    adapted layers: expert k of one layer is unrelated to expert k of another, so this is a
                    summary; the training run's ``molex_report.json`` has them per layer); per partition likewise

Units: every EER in the report is in percent; DCFs are normalised (1 = no better than a
trivial system); Cllr is in bits; thresholds follow "bona fide iff score >= threshold".

The min t-DCFs (2019 legacy and 2021 revised forms) take the ASV error rates of ``EvalConfig.asv``, by default the
ASVspoof 5 organisers' pooled ones (:class:`sddkit.metrics.ASVRates`), whatever the corpus: on ASVspoof 2019/2021 data
they are therefore not the official figures of those challenges, which used their own ASV systems' scores (``sdd eval
--asv-scores``, :mod:`sddkit.evaluation.asv`, obtains the rates from such scores as the official scripts do; so does
``evaluate(..., asv_scores=...)`` while ``EvalConfig.asv`` is left at its default); ``report.md`` names the rates and
where they come from next to the values. Each per-attack row holds that attack's min t-DCFs (``min_tdcf``, as the
pooled): with ASV scores whose spoof lines name their attack (ASVspoof 2019's ``A07 spoof -2.90``; an ASVspoof 5 table
read with its key, each spoof trial's attack the key's or the protocol's line of its file:
:meth:`~sddkit.evaluation.asv.ASVScores.with_protocol`) the Pfa_spoof of its own ASV spoof trials, as the ASVspoof
2019 per-attack figures take it, else the pooled rates (``min_tdcf_asv``, ``min_tdcf_asv_note`` say which and why;
:class:`_AttackASV`): the pooled figure's, or, for an attack the ASV trials of its partition's ASVspoof 2021 phase
lack, that phase's. The per-vocoder, per-attack-type and spoof ``by`` rows hold theirs likewise, each with the
Pfa_spoof of the ASV spoof trials of the attacks its spoofs are of (the protocol's ``attack`` column), pooled. Each
per-codec row (``--by codec`` gives the same rows) holds its condition's min t-DCFs: with ASV scores whose lines name
their codec (the ASVspoof 2021 LA ASV key's lines with their scores appended) the ASV rates of that condition's own
target, non-target and spoof trials, as the official 2021 LA per-condition figures (LA-C1..C7) take them (an ASVspoof
5 table read with its key: each trial's codec the protocol's line of its file names, as the ASVspoof 5 package's full
evaluation takes each codec's ASV trials), else the pooled rates, said as for an attack (:func:`_per_codec`;
``min_tdcf_asv_pfa`` and ``min_tdcf_asv_pmiss`` give the Pfa and Pmiss taken too).

Given the ASV scores themselves (``evaluate(..., asv_scores=...)``, ``sdd eval --asv-scores``), ``pooled.t_eer`` is
the concurrent t-EER (:func:`sddkit.metrics.t_eer`, in percent) of the pooled bona fide and spoof scores before that
ASV system, with its CM and ASV thresholds; null without them (and, with the reason at ``pooled.t_eer_note``, when the
t-EER is undefined). ``pooled.t_eer_cm_counting`` says how the CM scores entered it: ``per_trial`` where the ASV
trials name their files (ASVspoof 5's layouts: a keyed table, ``sdd eval --asv-key``; a table with ``asv-label``
and ``filename`` columns; ``SPEAKER UTT SCORE KIND`` lines) and some are among the evaluated utterances: each trial
with the CM score of its file, so a file in several trials counts once per trial, as the ASVspoof 5 package joins
them (:func:`_join_trials`; trials whose file has no CM score among the evaluated utterances left out, with a
warning); ``per_utterance`` where they name none (ASVspoof 2019's and 2021's layouts, whose official scripts count
each CM utterance once in their t-DCFs and have no t-EER) or none of the evaluated utterances (with a warning): each
protocol utterance once, the ASV scores by trial kind. ``pooled.min_tdcf_cm_counting`` (with ASV scores) is
``per_utterance``: the min t-DCFs count each utterance once, as the 2019/2021 scripts. Each per-attack and
per-codec row holds the t-EER of its group's bona fide and spoof trials before its group's ASV trials too, as the
ASVspoof 5 package's full evaluation takes them (:func:`_group_teer`, the trials of :func:`_group_trials`, as the
groups' min a-DCFs). Given an SASV system's
scores too (``evaluate(..., sasv_scores=...)``; ``sdd eval --asv-scores`` of a table with a ``sasv-score`` column, an
ASVspoof 5 track-2 submission), ``pooled.min_a_dcf`` is their min a-DCF (normalised, :func:`sddkit.metrics.a_dcf`
under ``EvalConfig.adcf``) and ``pooled.a_dcf_threshold`` its threshold; each per-attack and per-codec row holds the
min a-DCF of its group's SASV trials too, as the ASVspoof 5 package's full evaluation takes them
(:func:`_group_sasv_dcf`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sddkit.config import to_dict
from sddkit.data.table import UtteranceTable
from sddkit.documents import json_safe
from sddkit.errors import ProtocolError
from sddkit.evaluation.asv import ASV_KEYS, ASVScores, protocol_disagreement_notes
from sddkit.evaluation.compare import SPOOF_COLUMNS, min_replicates
from sddkit.evaluation.gate_weights import HEATMAP_MAX_GROUPS, as_float64, gate_weight_table
from sddkit.evaluation.groups import (
    attack_groups,
    groups,
    markdown_cell,
    named,
    names_spoofs_only,
    partition_groups,
)
from sddkit.evaluation.scores import EXPERT_USE_PREFIX, OUTSIDE_PARTITIONS, ScoreFile, match_scores
from sddkit.metrics import (
    ADCFCost,
    ASVRates,
    CurveMetric,
    DCFCost,
    DetCurve,
    MetricError,
    TDCFCost,
    a_dcf,
    act_dcf,
    bootstrap_ci,
    cllr,
    det_curve,
    eer_from_curve,
    min_cllr,
    min_dcf_from_curve,
    roc_auc,
    t_eer,
    tdcf_2019_from_curve,
    tdcf_2021_from_curve,
    threshold_metrics,
)
from sddkit.outputs import publish_staged

if TYPE_CHECKING:
    import torch  # named for the annotation of evaluate's scores alone

SCHEMA = "sddkit.report/1"
# an SASV system's scores evaluated alone (`sdd eval --asv-scores FILE` without --scores): its min a-DCF only
SASV_SCHEMA = "sddkit.sasv_report/1"
GROUP_METRICS = ("eer", "threshold", "auc", "min_dcf", "act_dcf", "cllr")


@dataclass
class EvalConfig:
    """What ``evaluate`` computes. Costs default to the ASVspoof 5 constants."""

    bootstrap: int = 200  # replicates for the pooled-EER confidence interval; 0 = no CI
    alpha: float = 0.05  # CI level is 1 - alpha
    seed: int = 0
    # for accuracy/TPR/TNR (0 = even odds on log-odds scores); sdd eval sets the threshold of the model that wrote
    # the scores, from their run record, so that the rates are those of its decisions
    decision_threshold: float = 0.0
    max_plot_sources: int = 10  # DET/ROC plots show the pooled curve and up to this many sources
    dcf: DCFCost = field(default_factory=DCFCost)
    tdcf: TDCFCost = field(default_factory=TDCFCost)
    asv: ASVRates = field(default_factory=ASVRates)
    adcf: ADCFCost = field(default_factory=ADCFCost)  # of SASV scores (sdd eval --asv-scores with a sasv-score column)

    def __post_init__(self) -> None:
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0, got {self.bootstrap}")
        if self.seed < 0:  # numpy's generators refuse it, inside the bootstrap
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")


def _uncalibrated(calibration: object) -> bool:
    """Whether ``calibration`` (a model's recorded ``inference.calibration``) is the identity map of a model
    never calibrated (no prior; a hand-set ``a``, ``b`` carries none either but is not the identity)."""
    if not isinstance(calibration, dict):
        return False
    return calibration.get("a") == 1 and calibration.get("b") == 0 and calibration.get("prior") is None


@dataclass
class Report:
    """Results of one evaluation; ``to_dict()`` is what ``report.json`` holds."""

    pooled: dict[str, Any]
    per_attack: list[dict[str, Any]]
    per_source: list[dict[str, Any]]
    per_corpus: list[dict[str, Any]]
    per_codec: list[dict[str, Any]] | None
    mean_over_sources: dict[str, Any]
    matching: dict[str, Any] | None
    config: EvalConfig
    curves: dict[str, DetCurve] = field(default_factory=dict, repr=False)
    aucs: dict[str, float] = field(default_factory=dict, repr=False)
    per_partition: list[dict[str, Any]] | None = None  # None: the protocol has no partition column
    per_vocoder: list[dict[str, Any]] | None = None  # None: the protocol has no vocoder column
    per_attack_type: list[dict[str, Any]] | None = None  # None: the protocol names no spoof's attack type
    # a mixture's mean gate weights: {"experts": [names], "by_source": rows, "by_attack": rows}; None without them
    gate_weights: dict[str, Any] | None = None
    # a MoLEx model's mean router weights, as gate_weights: {"experts", "by_source", "by_attack"}; None without them
    expert_use: dict[str, Any] | None = None
    # what was evaluated: the score file, the protocol (absolute paths, SHA-256s) and the model that scored, when
    # sdd score recorded it (see sddkit.cli.eval_cmd.evaluated_inputs); None: not known (an array of scores)
    inputs: dict[str, Any] | None = None
    # notes on the ASV/SASV scores given (trials of their key they hold no score of, scores that look inverted)
    asv_warnings: list[str] = field(default_factory=list)
    # whether config.asv holds the rates of the ASV scores given (at their EER threshold), for report.md to say so
    asv_rates_from_scores: bool = False
    # a note when tied scores put the pooled EER apart from the ASVspoof packages' compute_eer (:func:`_tie_note`)
    eer_notes: list[str] = field(default_factory=list)
    # `evaluate(..., by=[...])` (sdd eval --by): {column: rows}, each row as the fixed tables' (per_source, ...)
    per_column: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # the by columns grouped as the attack column (each value's spoofs with the bona fide trials), for report.md
    per_column_spoofs: tuple[str, ...] = ()
    # notes on what the evaluated trials mix (the two official ASVspoof 2021 PA hidden tracks: :func:`_pa_hidden_note`)
    protocol_notes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        notes = list(self.matching["warnings"]) if self.matching else []
        notes += self.asv_warnings
        notes += self.eer_notes
        notes += self.protocol_notes
        if self.pooled.get("eer_ci") and self.pooled.get("eer_ci_note"):  # an interval of too few replicates
            notes.append(self.pooled["eer_ci_note"])
        low, high = self.pooled.get("score_range") or (None, None)
        # a score file sdd score wrote (its run record names the model) holds the model's log-odds in its `score`
        # column, whatever their range: a raw model's scores of a few tenths are not probabilities
        from_sddkit_model = bool((self.inputs or {}).get("model"))
        if low is not None and 0.0 <= low < high <= 1.0 and not from_sddkit_model:  # (all equal: no scale to tell)
            # most often a tool's bona fide probabilities: read as log-likelihood ratios, all of them accept
            notes.append(
                f"every score lies in [0, 1] ({low:.4g} to {high:.4g}), as probabilities do: actDCF and Cllr read "
                "scores as log-likelihood ratios (EER, minDCF and AUC do not depend on the scale); give "
                "probabilities p as log(p / (1 - p))"
            )
        calibration = ((self.inputs or {}).get("model") or {}).get("calibration")
        if _uncalibrated(calibration):
            # a model fresh from `sdd train` scores raw logit differences: actDCF (at its Bayes threshold) and Cllr
            # read them as LLRs and measure an arbitrary scale, not the model
            notes.append(
                "the model that wrote these scores carries no calibration (inference.calibration is the identity "
                "map): its scores are raw logit differences, not log-likelihood ratios, so actDCF and Cllr say "
                "little (EER, minDCF and AUC do not depend on the scale); calibrate it on validation scores "
                "(sdd calibrate --model DIR --protocol VAL) and score again"
            )
        if self.per_partition:
            from sddkit.evaluation.fusion import fit_trials_note

            # sdd fuse writes every trial, its fit trials too: evaluated, they make a fit figure look held-out
            fused = fit_trials_note((self.inputs or {}).get("fusion"), [r.get("partition") for r in self.per_partition])
            if fused is not None:
                notes.append(fused)
        auc = self.pooled.get("auc")
        if auc is not None and auc < 0.5:
            # most often a score file of another tool whose scores grow with "spoof": every metric is then reversed
            notes.append(
                f"pooled ROC AUC {auc:.4f} is below 0.5: these scores rank spoof above bona fide more often than "
                "not; sddkit expects higher = more bona fide (negate the scores of a tool that scores spoofness)"
            )
        return notes

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "schema": SCHEMA,
                "units": {"eer": "percent", "dcf": "normalised", "cllr": "bits", "decision": "score >= threshold"},
                "pooled": self.pooled,
                "mean_over_sources": self.mean_over_sources,
                "per_attack": self.per_attack,
                "per_source": self.per_source,
                "per_corpus": self.per_corpus,
                "per_partition": self.per_partition,
                "per_codec": self.per_codec,
                "per_vocoder": self.per_vocoder,
                "per_attack_type": self.per_attack_type,
                "per_column": self.per_column,
                "gate_weights": self.gate_weights,
                "molex_expert_use": self.expert_use,
                "matching": self.matching,
                "warnings": self.warnings,
                "inputs": self.inputs,
                "config": to_dict(self.config),
            }
        )

    def summary(self) -> str:
        """One line: pooled EER (with CI), minDCF, actDCF, AUC and the trial counts."""
        p = self.pooled
        ci_text = _ci_text(p, 2)
        return (
            f"pooled EER {p['eer']:.2f}%{ci_text}  minDCF {p['min_dcf']:.4f}  actDCF {p['act_dcf']:.4f}  "
            f"AUC {p['auc']:.4f}  ({p['n_bonafide']} bona fide, {p['n_spoof']} spoof)"
        )


# --- computing --------------------------------------------------------------------------------


def _group_metrics(
    labels: np.ndarray, scores: np.ndarray, cfg: EvalConfig, tdcf_asv: ASVRates | None = None
) -> dict[str, Any]:
    """A group's metrics; ``tdcf_asv``: with these ASV rates, its min t-DCFs too (``min_tdcf``, as the pooled)."""
    n_bona = int(labels.sum())
    row: dict[str, Any] = {"n": int(labels.size), "n_bonafide": n_bona, "n_spoof": int(labels.size - n_bona)}
    if n_bona == 0 or n_bona == labels.size:
        row.update({name: None for name in GROUP_METRICS})
        row["note"] = "needs both bona fide and spoof trials"
        if tdcf_asv is not None:
            row["min_tdcf"] = {"2019": None, "2021": None}
        return row
    curve = det_curve(labels, scores)
    point = eer_from_curve(curve)
    row.update(
        eer=100.0 * point.eer,
        threshold=point.threshold,
        auc=roc_auc(labels, scores),
        min_dcf=min_dcf_from_curve(curve, cfg.dcf).dcf,
        act_dcf=act_dcf(labels, scores, cfg.dcf).dcf,
        cllr=cllr(labels, scores),
        note="",
    )
    if tdcf_asv is not None:
        row.update(_min_tdcfs(curve, dataclasses.replace(cfg, asv=tdcf_asv)))
    return row


def _pooled(labels: np.ndarray, scores: np.ndarray, cfg: EvalConfig) -> tuple[dict[str, Any], DetCurve]:
    curve = det_curve(labels, scores)  # raises MetricError when a class is missing
    point = eer_from_curve(curve)
    mindcf = min_dcf_from_curve(curve, cfg.dcf)
    actdcf = act_dcf(labels, scores, cfg.dcf)
    decisions = threshold_metrics(labels, scores, cfg.decision_threshold)
    pooled: dict[str, Any] = {
        "n": int(labels.size),
        "n_bonafide": int(labels.sum()),
        "n_spoof": int(labels.size - labels.sum()),
        "score_range": [float(curve.thresholds[0]), float(curve.thresholds[-2])],  # lowest and highest score
        "eer": 100.0 * point.eer,
        "eer_ci": None,
        "eer_ci_level": None,
        "eer_ci_note": "",
        "threshold": point.threshold,
        "auc": roc_auc(labels, scores),
        "min_dcf": mindcf.dcf,
        "min_dcf_threshold": mindcf.threshold,
        "act_dcf": actdcf.dcf,
        "act_dcf_threshold": actdcf.threshold,
        "cllr": cllr(labels, scores),
        "min_cllr": min_cllr(labels, scores),
        **_min_tdcfs(curve, cfg),
        "at_threshold": {
            "threshold": decisions.threshold,
            "accuracy": decisions.accuracy,
            "tpr": decisions.tpr,
            "tnr": decisions.tnr,
            "balanced_accuracy": decisions.balanced_accuracy,
        },
    }
    if cfg.bootstrap > 0 and min(pooled["n_bonafide"], pooled["n_spoof"]) < 2:
        # the stratified bootstrap redraws a one-trial class as itself in every replicate: the interval
        # would leave that class's sampling error out (zero width for 1 + 1 trials), so none is given
        pooled["eer_ci_note"] = "no CI: the bootstrap needs at least 2 trials of each class"
    elif cfg.bootstrap > 0:
        _, low, high = bootstrap_ci(
            CurveMetric(eer_from_curve), labels, scores, n=cfg.bootstrap, alpha=cfg.alpha, seed=cfg.seed
        )
        pooled["eer_ci"] = [100.0 * low, 100.0 * high]
        pooled["eer_ci_level"] = 1.0 - cfg.alpha
        needed = min_replicates(cfg.alpha)
        if cfg.bootstrap < needed:
            # a percentile interval of fewer replicates has its ends inside the extreme replicates (one replicate:
            # the interval is that replicate): it is not the interval of the level it is labelled with
            pooled["eer_ci_note"] = (
                f"the {_level(1.0 - cfg.alpha)} EER interval rests on {cfg.bootstrap} bootstrap replicate(s), fewer "
                f"than the {needed} that leave one in each {cfg.alpha / 2:g} tail: it is not a "
                f"{_level(1.0 - cfg.alpha)} interval; use {needed} or more replicates (sdd eval --bootstrap)"
            )
    return pooled, curve


def _per_trial_eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """The EER as the ASVspoof packages' ``compute_eer`` computes it: one operating point per *trial* of the sorted
    scores (bona fide before spoof on ties, as their stable sort of the bona fide scores followed by the spoof ones),
    the first point where ``|miss - fa|`` is smallest, with the same floating-point operations."""
    order = np.lexsort((~labels, scores))  # by score, then bona fide (False) first
    bona_sums = np.cumsum(labels[order].astype(np.float64))
    n_bona, n_spoof = int(labels.sum()), int(labels.size - labels.sum())
    miss = np.concatenate((np.atleast_1d(0), bona_sums / n_bona))
    fa = np.concatenate((np.atleast_1d(1), (n_spoof - (np.arange(1, labels.size + 1) - bona_sums)) / n_spoof))
    idx = int(np.argmin(np.abs(miss - fa)))
    return float(np.mean((miss[idx], fa[idx])))


def _tie_note(labels: np.ndarray, scores: np.ndarray, eer_percent: float) -> str | None:
    """A warning when bona fide and spoof trials share scores and the pooled EER differs from what the ASVspoof
    evaluation packages' ``compute_eer`` gives on them; None otherwise. sddkit takes one operating point per distinct
    score (a threshold accepts or rejects tied trials together); the packages step through tied trials one by one,
    through operating points no threshold realises (e.g. 23.17 % where sddkit has 22.17 % on ASVspoof 2019 scores
    written to one decimal). The two differed silently: a report compared with the official figure did not say why."""
    bona, spoof = np.unique(scores[labels]), np.unique(scores[~labels])
    if np.intersect1d(bona, spoof, assume_unique=True).size == 0:
        return None  # no tie across the classes: one per-trial point per distinct score, the same curve
    if bona.size == spoof.size == 1:
        return None  # one score for every trial (an untrained model's 0): it ranks nothing, 100 % there says nothing
    official = 100.0 * _per_trial_eer(labels, scores)
    if abs(official - eer_percent) <= 1e-9:
        return None
    shared = int(np.isin(scores, np.intersect1d(bona, spoof, assume_unique=True)).sum())
    return (
        f"{shared} trials share their score with a trial of the other class: the pooled EER, {eer_percent:.3f} %, "
        "takes one operating point per distinct score (a threshold accepts tied trials together), where the ASVspoof "
        f"evaluation packages' compute_eer steps through tied trials one by one and gives {official:.3f} % on these "
        "scores (per-group EERs of tied scores may differ from it likewise; minDCF, actDCF and the t-DCFs do not); "
        "scores written with more digits tie less"
    )


def _min_tdcfs(curve: Any, cfg: EvalConfig) -> dict[str, Any]:
    """``pooled``'s ``min_tdcf`` (``{"2019": .., "2021": ..}``): a form the ASV error rates leave undefined (an ASV
    system that accepts no spoof at its threshold: the 2019 form's normaliser is 0) is null, its reason in
    ``min_tdcf_notes``; the rest of the report stands (it was refused whole)."""
    values: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    for form, fn in (("2019", tdcf_2019_from_curve), ("2021", tdcf_2021_from_curve)):
        try:
            values[form] = fn(curve, cfg.asv, cfg.tdcf).tdcf
        except MetricError as exc:
            values[form], notes[form] = None, str(exc)
    return {"min_tdcf": values, **({"min_tdcf_notes": notes} if notes else {})}


@dataclass(frozen=True)
class _TrialJoin:
    """The trials of keyed ASV scores joined with the CM scores of their files (:func:`_join_trials`)."""

    cm_bonafide: np.ndarray  # the CM score of each target and non-target trial's file
    cm_spoof: np.ndarray  # the CM score of each spoof trial's file
    asv: ASVScores  # the ASV scores of the same trials, by kind
    n_left_out: int  # trials whose file has no CM score among the utterances given


def _join_trials(asv: ASVScores, ids: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> _TrialJoin | str:
    """Each trial of keyed ASV scores (``asv.files`` named) with the CM score of its file, as the ASVspoof 5 package
    joins them (``evaluation-package/util.py``, ``load_sasv_scores_keys``: one CM score per SASV trial, so a file in
    several trials counts once per trial; ``calculate_metrics.py``, ``calculate_aDCF_tdcf_tEER``: the CM scores of the
    target and non-target trials the bona fide set, those of the spoof trials the spoof set). ``ids``, ``labels``
    (bona fide), ``scores``: the CM utterances evaluated; a trial of a file not among them is left out on both sides
    (the package has a CM score of every trial). The reason, a string, where the trials' kinds contradict the
    protocol's labels of their files (another set's key or protocol)."""
    assert asv.files is not None
    # the first row of an id (the evaluated ids are unique: match_scores refuses a repeated one)
    position = pd.Series(np.arange(ids.size), index=pd.Index(ids, dtype=object))
    position = position[~position.index.duplicated()]
    kinds: list[np.ndarray] = []
    cm: list[np.ndarray] = []
    n_left_out, wrong = 0, []
    for kind, files, values in zip(ASV_KEYS, asv.files, (asv.target, asv.nontarget, asv.spoof)):
        at = position.reindex(pd.Index(files, dtype=object)).to_numpy()
        found = ~pd.isna(at)
        n_left_out += int((~found).sum())
        rows = at[found].astype(np.int64)
        bona = kind != "spoof"
        wrong += [
            f"{f} ({kind} trial, {'spoof' if bona else 'bonafide'} in the protocol)"
            for f in files[found][labels[rows] != bona]
        ]
        kinds.append(values[found])
        cm.append(scores[rows])
    if wrong:
        return (
            f"the ASV key's trial kinds contradict the protocol's labels of {len(wrong)} trial(s) (e.g. "
            f"{', '.join(wrong[:3])}): give the key and the protocol of the same set"
        )
    return _TrialJoin(np.concatenate(cm[:2]), cm[2], ASVScores(*kinds), n_left_out)


def _tandem_eer(
    labels: np.ndarray, scores: np.ndarray, asv: ASVScores | None, ids: np.ndarray | None = None
) -> dict[str, Any]:
    """``pooled``'s t-EER entries: null without ASV scores; null with the reason when the t-EER is undefined.
    ``t_eer_cm_counting`` says how the CM scores entered: ``per_trial`` where the ASV trials name their files (a keyed
    table, ASVspoof 5's) and ``ids`` names the utterances (each trial with its file's CM score, :func:`_join_trials`,
    the ASVspoof 5 package's figure), ``per_utterance`` otherwise (each utterance once: the trials name no file)."""
    out: dict[str, Any] = {"t_eer": None, "t_eer_cm_threshold": None, "t_eer_asv_threshold": None}
    if asv is None:
        return out
    bona, spoof, kinds = scores[labels], scores[~labels], asv
    out["t_eer_cm_counting"] = "per_utterance"
    if asv.files is not None and ids is not None:
        joined = _join_trials(asv, ids, labels, scores)
        if isinstance(joined, str):
            return out | {"t_eer_cm_counting": "per_trial", "t_eer_note": joined}
        # a trial file of none of the utterances (another naming of the files): each utterance once, as recorded (and
        # warned of: :func:`_unjoined_warnings`)
        if joined.n_left_out < asv.target.size + asv.nontarget.size + asv.spoof.size:
            bona, spoof, kinds = joined.cm_bonafide, joined.cm_spoof, joined.asv
            out["t_eer_cm_counting"] = "per_trial"
    try:
        result = t_eer(bona, spoof, kinds.target, kinds.nontarget, kinds.spoof)
    except MetricError as exc:  # a secondary figure: the rest of the report stands
        return out | {"t_eer_note": str(exc)}
    return out | {
        "t_eer": 100.0 * result.teer,
        "t_eer_cm_threshold": result.cm_threshold,
        "t_eer_asv_threshold": result.asv_threshold,
    }


def sasv_dcf(sasv: ASVScores | None, cost: ADCFCost) -> dict[str, Any]:
    """``pooled``'s a-DCF entries: the min a-DCF (normalised) of an SASV system's scores and its threshold (accept iff
    score >= threshold); none without SASV scores."""
    if sasv is None:
        return {}
    result = a_dcf(sasv.target, sasv.nontarget, sasv.spoof, cost)
    return {"min_a_dcf": result.a_dcf, "a_dcf_threshold": result.threshold}


def _group_trials(
    trials: ASVScores, name: str, *, attack: str | None = None, codec: str | None = None
) -> tuple[ASVScores | None, str]:
    """The trials of ``trials`` (an SASV system's scores, ``name`` ``SASV``, or an ASV system's, ``ASV``) that a
    per-attack or per-codec row's figure takes, as the ASVspoof 5 package's full evaluation
    (``evaluation-package/calculate_metrics_full.py``, ``calculate_aDCF_tdcf_tEER_full``) takes each group's for its
    min a-DCF and its t-EER alike: an ``attack``'s row every target and non-target trial with that attack's spoof
    trials alone; a ``codec``'s row that condition's own target, non-target and spoof trials. None with the reason
    where the scores name no attack (codec) or hold no trials of the group (the package leaves its cell NaN)."""
    what = "spoof trials' attacks" if attack is not None else "trials' codecs"
    names = trials.spoof_attacks if attack is not None else trials.codecs
    if names is None:
        return None, (
            f"the {name} scores name no {what} (an ASVspoof 5 table read with --asv-key takes them from the key or "
            "the protocol's line of each trial's file)"
        )
    if attack is not None:
        return trials.of_attack(attack), f"the {name} scores hold no spoof trial of attack {attack}"
    why = f"the {name} scores hold no target, non-target and spoof trials of codec {codec}"
    return trials.of_codec(str(codec)), why


def _group_sasv_dcf(
    sasv: ASVScores | None, cost: ADCFCost, *, attack: str | None = None, codec: str | None = None
) -> dict[str, Any]:
    """A per-attack or per-codec row's min a-DCF entries, of the group's SASV trials (:func:`_group_trials`). None
    with the reason (``min_a_dcf_note``) where the SASV scores name no attack (codec) or hold no trials of the group;
    no entries without SASV scores, as ``pooled``."""
    if sasv is None:
        return {}
    group, why = _group_trials(sasv, "SASV", attack=attack, codec=codec)
    if group is None:
        return {"min_a_dcf": None, "a_dcf_threshold": None, "min_a_dcf_note": why}
    result = a_dcf(group.target, group.nontarget, group.spoof, cost)
    return {"min_a_dcf": result.a_dcf, "a_dcf_threshold": result.threshold, "min_a_dcf_note": ""}


def sasv_group_rows(sasv: ASVScores, cost: ADCFCost) -> dict[str, list[dict[str, Any]] | None]:
    """An SASV system's scores evaluated alone (``sdd eval --asv-scores`` without ``--scores``), broken down as the
    ASVspoof 5 package's full evaluation (``calculate_metrics_full.py``, ``calculate_aDCF_tdcf_tEER_full`` with
    ``flag_sasv_only``) breaks down its min a-DCF: ``{"per_attack": rows, "per_codec": rows}``, a row per attack the
    spoof trials name and per codec condition the trials name, in sorted order as the package lists them; each row
    its group's trial counts (``n_target``, ``n_nontarget``, ``n_spoof``: every target and non-target trial with the
    attack's spoof trials; the condition's own trials) and the entries of a countermeasure report's rows
    (:func:`_group_sasv_dcf`: ``min_a_dcf``, ``a_dcf_threshold``, ``min_a_dcf_note``). None where no trial names
    one (a layout or key that names no attack or codec, and no ``--protocol`` that does)."""
    found: dict[str, list[dict[str, Any]] | None] = {"per_attack": None, "per_codec": None}
    if sasv.spoof_attacks is not None:
        rows = []
        for attack in sorted(set(sasv.spoof_attacks.tolist()) - {""}):
            n_spoof = int(np.sum(sasv.spoof_attacks == attack))
            counts = {"n_target": sasv.target.size, "n_nontarget": sasv.nontarget.size, "n_spoof": n_spoof}
            rows.append({"attack": attack, **counts, **_group_sasv_dcf(sasv, cost, attack=attack)})
        found["per_attack"] = rows or None
    if sasv.codecs is not None:
        rows = []
        for codec in sorted(set().union(*(set(c.tolist()) for c in sasv.codecs)) - {""}):
            n = [int(np.sum(c == codec)) for c in sasv.codecs]
            counts = dict(zip(("n_target", "n_nontarget", "n_spoof"), n))
            rows.append({"codec": codec, **counts, **_group_sasv_dcf(sasv, cost, codec=codec)})
        found["per_codec"] = rows or None
    return found


def _group_teer(
    labels: np.ndarray,
    scores: np.ndarray,
    asv: ASVScores | None,
    *,
    attack: str | None = None,
    codec: str | None = None,
    why: str = "",
    ids: np.ndarray | None = None,
) -> dict[str, Any]:
    """A per-attack or per-codec row's t-EER entries (``t_eer`` in percent, its thresholds, ``t_eer_note``,
    ``t_eer_cm_counting``): the row's bona fide and spoof trials (``labels``, ``scores``, ``ids``: the group's, as its
    EER takes them) before the group's ASV trials (:func:`_group_trials`, as the package's full evaluation takes
    them), counted as in the pooled t-EER (:func:`_tandem_eer`: per trial where the trials name their files, of the
    group's utterances). ``asv`` None with ``why``: the group has no ASV trials (a partition of an ASVspoof 2021 phase
    the ASV scores lack); none with neither, as ``pooled`` without ASV scores."""
    empty = {"t_eer": None, "t_eer_cm_threshold": None, "t_eer_asv_threshold": None}
    if asv is None:  # (the ASV trials of an ASVspoof 2021 phase: no file named)
        return empty | {"t_eer_note": why, "t_eer_cm_counting": "per_utterance"} if why else {}
    group, why = _group_trials(asv, "ASV", attack=attack, codec=codec)
    if group is None:
        return empty | {"t_eer_note": why, "t_eer_cm_counting": "per_utterance"}
    found = _tandem_eer(labels.astype(bool), scores, group, ids)
    return found | {"t_eer_note": found.get("t_eer_note", "")}


def _asv_warnings(asv: ASVScores | None, sasv: ASVScores | None) -> list[str]:
    """The report's warnings on the ASV (and SASV) scores given: trials of their SASV key they hold no score of, and
    scores that rank target trials below the others (a distance, or another tool's reversed scores: the t-DCFs, the
    t-EER and the a-DCF are then those of a system that reverses its decisions)."""
    if asv is None:
        return []
    notes = []
    if asv.n_unscored:
        n_scored = asv.target.size + asv.nontarget.size + asv.spoof.size
        figures = (
            "the t-DCFs' ASV error rates, the t-EER and the a-DCF are"
            if sasv is not None
            else "the t-DCFs' ASV error rates and the t-EER are"
        )
        notes.append(
            f"the ASV score table scores {n_scored} of the {n_scored + asv.n_unscored} trials of its key "
            f"({asv.n_unscored} without a score): {figures} those of the scored trials alone (the ASVspoof 5 package "
            "refuses a score file that does not cover its SASV key)"
        )
    notes += [note for note in (inverted_note(asv, sasv=False), inverted_note(sasv, sasv=True)) if note]
    return notes


def _unjoined_warnings(asv: ASVScores | None, ids: np.ndarray) -> list[str]:
    """A warning when trials of keyed ASV scores name files without a CM score among the evaluated utterances: the
    t-EER, counted per trial (:func:`_join_trials`), leaves them out, where the ASVspoof 5 package has a CM score of
    every trial (another partition evaluated, or CM scores missing)."""
    if asv is None or asv.files is None:
        return []
    files = np.concatenate(asv.files)
    left_out = int((~pd.Index(files, dtype=object).isin(pd.Index(ids, dtype=object))).sum())
    if not left_out:
        return []
    if left_out == files.size:
        return [
            f"none of the {files.size} ASV trials names a file among the evaluated utterances (their protocol ids): "
            "the t-EER counts each utterance once (t_eer_cm_counting per_utterance), not once per trial as the "
            "ASVspoof 5 package does; give the protocol of the ASV trials' set"
        ]
    return [
        f"{left_out} of the {files.size} ASV trials name a file without a CM score among the evaluated utterances: "
        "the t-EER (counted per trial, as the ASVspoof 5 package counts it) takes the other trials alone; the "
        "package's figure needs a CM score of every trial's file"
    ]


# the note of an attack whose t-DCFs take the pooled ASV rates because the ASV file holds none of its spoofs (the
# warning lists those attacks)
_NO_ATTACK_TRIALS = "the ASV scores hold no spoof trial of attack"


def _attack_asv_warnings(per_attack: Sequence[dict[str, Any]], asv: ASVScores | None) -> list[str]:
    """A warning when ASV scores name their spoof trials' attacks but none of some evaluated attack (most often the
    ASV scores of another set: ASVspoof 2019's dev file, A01-A06, beside its eval protocol, A07-A19): those attacks'
    min t-DCFs take the pooled ASV rates, not their own."""
    if asv is None or asv.spoof_attacks is None:
        return []
    # an attack of a phase whose ASV trials lack it is named with that phase: the file may hold it in another one
    lacking = [
        f"{r['attack']} in phase {r['partition']}" if _OF_PHASE in r["min_tdcf_asv_note"] else r["attack"]
        for r in per_attack
        if r.get("min_tdcf_asv_note", "").startswith(_NO_ATTACK_TRIALS)
    ]
    if not lacking:
        return []
    named = sorted(set(asv.spoof_attacks.tolist()) - {""})
    of_phase = any(_OF_PHASE in r.get("min_tdcf_asv_note", "") for r in per_attack)
    return [
        f"the ASV scores hold no spoof trial of attack(s) {', '.join(dict.fromkeys(lacking))} (theirs are of "
        f"{', '.join(named[:20])}{', ...' if len(named) > 20 else ''}): those attacks' t-DCFs take the pooled ASV "
        + ("rates (of their phase's ASV trials, where a phase is named)" if of_phase else "rates")
        + ", not their own Pfa_spoof; give the ASV scores of the set evaluated"
    ]


def _codec_asv_warnings(per_codec: Sequence[dict[str, Any]] | None, asv: ASVScores | None) -> list[str]:
    """A warning when ASV scores name their trials' codecs but hold no target, non-target and spoof trials of some
    evaluated codec condition: its min t-DCFs take the pooled ASV rates, not its own (as :func:`_attack_asv_warnings`
    for attacks)."""
    if asv is None or asv.codecs is None or not per_codec:
        return []
    lacking = [r["codec"] for r in per_codec if r.get("min_tdcf_asv_note", "").startswith(_NO_CODEC_TRIALS)]
    if not lacking:
        return []
    return [
        f"the ASV scores hold no target, non-target and spoof trials of codec(s) {', '.join(lacking)}: those "
        "conditions' t-DCFs take the pooled ASV rates, not their own; give the ASV key's lines of every condition"
    ]


def inverted_note(scores: ASVScores | None, *, sasv: bool) -> str | None:
    """A warning when ASV (or, ``sasv``, SASV) ``scores`` rank target trials below the others (non-target ones; SASV:
    non-target and spoof ones) more often than not: a distance, or another tool's reversed scores, whose figures are
    those of a system reversing its decisions. None for scores the right way round (or none given)."""
    if scores is None:
        return None
    versus = np.concatenate([scores.nontarget, scores.spoof]) if sasv else scores.nontarget
    labels = np.r_[np.ones(scores.target.size, dtype=np.int64), np.zeros(versus.size, dtype=np.int64)]
    auc = roc_auc(labels, np.r_[scores.target, versus])
    if auc >= 0.5:
        return None
    name, others, speaker = (
        ("SASV", "non-target and spoof", "claimed, bona fide") if sasv else ("ASV", "non-target", "claimed")
    )
    figures = "the a-DCF is that" if sasv else "the t-DCFs' ASV error rates and the t-EER are those"
    return (
        f"the {name} scores rank {others} trials above target trials more often than not (ROC AUC {auc:.4f}): sddkit "
        f"reads them as higher = more likely the {speaker} speaker (negate distance-like scores); {figures} of the "
        "scores as given"
    )


def _per_group(
    column: str, values: np.ndarray, labels: np.ndarray, scores: np.ndarray, cfg: EvalConfig
) -> list[dict[str, Any]]:
    return [{column: name, **_group_metrics(labels[m], scores[m], cfg)} for name, m in groups(values)]


def _per_attack(
    table: UtteranceTable,
    labels: np.ndarray,
    scores: np.ndarray,
    cfg: EvalConfig,
    column: str = "attack",
    tdcf_asv: _AttackASV | None = None,
    sasv: ASVScores | None = None,
    asv: ASVScores | None = None,
) -> list[dict]:
    """Each spoof attack's trials together with the bona fide trials, per partition when the table holds several
    (:func:`sddkit.evaluation.groups.attack_groups`); ``column``: another column that names what made a spoof
    (``vocoder``, ``attack_type``), grouped the same way. ``tdcf_asv``: the ASV rates of each group's min t-DCFs,
    none without it. A group of another column takes the ASV spoof trials of the attacks its spoofs are of (the
    ``attack`` column of its rows): a vocoder's or an attack type's t-DCF is defined as an attack's is, the ASV's
    Pfa_spoof that of those spoofs the ASV system met. ``sasv``: an SASV system's scores, whose min a-DCF each
    attack's row holds (:func:`_group_sasv_dcf`; the package's full evaluation has it per attack, not per vocoder or
    attack type); ``asv``: an ASV system's scores, before which each attack's row holds the t-EER of its trials
    (:func:`_group_teer`; of its partition's ASVspoof 2021 phase's ASV trials where their lines carry phases, as its
    min t-DCFs)."""
    partitions = table.column("partition") if table.has_column("partition") else None
    attacks = named(table.column("attack"))
    ids = table.column("utt_id")
    spoof = labels == 0
    # each partition's ASV trials, taken once for all of its attacks (:meth:`_AttackASV._phase`)
    of_phase = _AttackASV(cfg.asv, asv) if asv is not None and asv.phases is not None else None
    rows = []
    for partition, value, m in attack_groups(table.column(column), labels, partitions):
        row = {**({"partition": partition} if partition is not None else {}), column: value}
        of = [value] if column == "attack" else sorted(set(attacks[m & spoof].tolist()))
        rates, why = tdcf_asv.rates(partition, of) if tdcf_asv is not None else (None, "")
        row |= _group_metrics(labels[m], scores[m], cfg, rates)
        if rates is not None:
            row |= _tdcf_asv_entries(rates, why, "attack")
        if column == "attack":
            own, lacking = asv, ""
            if of_phase is not None and partition is not None:
                own = of_phase._phase(partition)[0]
                lacking = f"the ASV scores hold no target, non-target and spoof trials of phase {partition}"
            row |= _group_teer(labels[m], scores[m], own, attack=value, why=lacking, ids=ids[m])
            row |= _group_sasv_dcf(sasv, cfg.adcf, attack=value)
        rows.append(row)
    return rows


def _tdcf_asv_entries(rates: ASVRates, why: str, own: str, every_rate: bool = False) -> dict[str, Any]:
    """A row's entries saying which ASV rates its min t-DCFs took: ``min_tdcf_asv`` ``own`` (the group's own ASV
    trials: ``attack``, ``codec``) or ``pooled`` (``why``, ``min_tdcf_asv_note``, says why: '' for the group's own),
    the Pfa_spoof taken, and with ``every_rate`` the Pfa and Pmiss too (a condition's own differ from the pooled)."""
    taken = {"min_tdcf_asv_pfa": rates.pfa, "min_tdcf_asv_pmiss": rates.pmiss} if every_rate else {}
    return {
        "min_tdcf_asv": "pooled" if why else own,
        **taken,
        "min_tdcf_asv_pfa_spoof": rates.pfa_spoof,
        "min_tdcf_asv_note": why,
    }


def _per_codec(
    table: UtteranceTable,
    labels: np.ndarray,
    scores: np.ndarray,
    cfg: EvalConfig,
    tdcf_asv: _AttackASV,
    sasv: ASVScores | None = None,
    asv: ASVScores | None = None,
) -> list[dict[str, Any]]:
    """Each codec condition's trials (bona fide and spoof, as per_source), with its min t-DCFs: the ASV rates of that
    condition's own ASV target, non-target and spoof trials where the ASV scores' lines name their codec (the
    ASVspoof 2021 LA ASV key's, whose official per-condition figures LA-C1..C7 take them so), else the pooled figure's
    (:meth:`_AttackASV.codec_rates`). Each row holds the ASV Pfa and Pmiss taken too: a condition's own differ from
    the pooled ones, where an attack's differ in their Pfa_spoof alone. ``sasv``: an SASV system's scores, whose
    min a-DCF of the condition's own SASV trials each row holds (:func:`_group_sasv_dcf`); ``asv``: an ASV system's,
    before whose trials of the condition each row holds the t-EER of the condition's trials (:func:`_group_teer`)."""
    rows = []
    ids = table.column("utt_id")
    for name, m in groups(table.column("codec")):
        rates, why = tdcf_asv.codec_rates(name)
        row = {"codec": name, **_group_metrics(labels[m], scores[m], cfg, rates)}
        row |= _tdcf_asv_entries(rates, why, "codec", every_rate=True)
        row |= _group_teer(labels[m], scores[m], asv, codec=name, ids=ids[m])
        row |= _group_sasv_dcf(sasv, cfg.adcf, codec=name)
        rows.append(row)
    return rows


# what a per-attack row's note adds when its attack's t-DCF takes the pooled rates of its ASVspoof 2021 phase
_OF_PHASE = "the pooled ASV rates of that phase's trials are taken"
# the notes of a codec condition whose t-DCFs take the pooled ASV rates: the ASV lines name no codec (an ASV file of
# another layout than the 2021 LA ASV key's lines with their scores), or none of the condition's trials
_NO_CODECS = (
    "the ASV scores' lines name no codec (the ASVspoof 2021 LA ASV key's lines with their scores appended do: "
    "SPEAKER UTT CODEC TRANSMISSION ATTACK KEY TRIM PHASE SCORE)"
)
_NO_CODEC_TRIALS = "the ASV scores hold no target, non-target and spoof trials of codec"
# the notes of the same for an --asv-scores table read with --asv-key (ASVspoof 5): neither the key nor the protocol's
# rows of the trials' files name them (another set's key or protocol, the package's SASV key beside a protocol without
# those files), said with what names them
_NO_ATTACKS = "the ASV scores' spoof lines name no attack"
_NO_KEYED_ATTACKS = (
    "neither the ASV key nor the protocol names the attack of any of its spoof trials (ASVspoof 5: the database's "
    "ASVspoof5.<dev|eval>.track_2.trial.tsv names it, ATTACK_LABEL; the package's SASV key does not, and then the "
    "protocol's line of each spoof file, ASVspoof5.<dev|eval>.track_1.tsv, is read: give the key or the protocol of "
    "the ASV trials' set; In-the-Wild names no spoof's attack)"
)
_NO_KEYED_CODECS = (
    "neither the ASV key nor the protocol names the codec of the ASV trials (the protocol's CODEC of each trial's "
    "file, ASVspoof5.<dev|eval>.track_1.tsv, or a full key table's codec column is read: give the protocol of the ASV "
    "trials' set)"
)


@dataclass
class _AttackASV:
    """The ASV error rates of each attack's min t-DCFs. The ASVspoof 2019 per-attack t-DCFs take the ASV's Pfa and
    Pmiss at its EER threshold and the Pfa_spoof of that attack's ASV spoof trials alone: given ASV scores whose
    spoof lines name their attack (ASVspoof 2019's ``A07 spoof -2.90``), so are they here (``"attack"``); else
    (no ASV scores, lines without attacks, an attack the ASV file lacks, rates set in ``EvalConfig.asv``) pooled
    rates are taken (``"pooled"``), as report.md and the row's ``min_tdcf_asv`` say: the pooled figure's, or, for a
    partition of an ASVspoof 2021 phase (its ASV trials one phase's among several), that phase's pooled rates.

    The official 2021 package (``eval-package/main.py``: ``compute_tDCF_C012`` over the ASV trials of the phase
    evaluated, the attack a factor of the spoof trials alone) has no figure where the phase holds none of an
    attack's ASV spoof trials (its C0, C1, C2 are NaN). sddkit gives the pooled rates' figure with a note rather
    than none, as for an attack the ASVspoof 2019 ASV file lacks; of that phase, since its rates are the ones every
    other figure of the phase takes there: those of every phase evaluated mixed another phase's ASV trials in. A
    phase the ASV scores hold no trials of (of each kind) takes the pooled figure's rates, said so: its attacks'
    spoofs in another phase's ASV trials were taken as their own."""

    pooled: ASVRates
    scores: ASVScores | None  # None: the pooled rates for every attack, for the reason ``without``
    without: str = ""
    # each partition's ASV trials (ASVScores.of_phases), taken once for all of its attacks, and their pooled rates
    # (None: no ASV trials of that phase, or rates they leave undefined)
    of_partition: dict[str, tuple[ASVScores | None, ASVRates | None]] = field(default_factory=dict, repr=False)

    def rates(self, partition: str | None, attacks: Sequence[str]) -> tuple[ASVRates, str]:
        """The ASV rates of a group of the spoofs of ``attacks`` (an attack's row: that attack) and, when they are
        pooled ones, why ('' for the attacks' own)."""
        asv = self.scores
        if asv is None:
            return self.pooled, self.without
        if asv.spoof_attacks is None:
            # a keyed table (ASVspoof 5's) says what names its spoofs' attacks: its lines name none of any table's
            return self.pooled, _NO_ATTACKS if asv.files is None else _NO_KEYED_ATTACKS
        pooled, of_phase = self.pooled, ""
        if partition is not None and asv.phases is not None:
            # per partition of ASVspoof 2021's phases: the ASV trials of that phase, as its official scripts take them
            phase_asv, phase_rates = self._phase(partition)
            if phase_asv is None:
                # its spoofs' ASV rates would be another phase's, said as the attack's own (the official package has
                # no figure without the phase's ASV trials)
                return self.pooled, f"the ASV scores hold no target, non-target and spoof trials of phase {partition}"
            asv = phase_asv
            if phase_rates is not None:
                pooled, of_phase = phase_rates, f" in phase {partition} ({_OF_PHASE})"
        try:
            found = asv.spoof_rates(attacks)
        except MetricError:
            found = None
        if found is not None:
            return found, ""
        held = set() if asv.spoof_attacks is None else set(asv.spoof_attacks.tolist())  # (a phase's lines name none)
        missing = [a for a in attacks if a not in held] or list(attacks)
        return pooled, f"{_NO_ATTACK_TRIALS} {', '.join(missing)}{of_phase}"

    def codec_rates(self, codec: str) -> tuple[ASVRates, str]:
        """The ASV rates of a codec condition's min t-DCFs (a per-codec row) and, when they are pooled ones, why ('' for
        the condition's own): the ASV's Pfa, Pmiss and Pfa_spoof at the EER threshold of that condition's own ASV
        target, non-target and spoof trials, as the official 2021 LA package's per-condition figures take them
        (``eval-package/main.py``, ``compute_tDCF_C012``, the codec a factor of every trial kind), of the evaluated
        phases' ASV trials (``scores`` is restricted to them)."""
        asv = self.scores
        if asv is None:
            return self.pooled, self.without
        if asv.codecs is None:
            return self.pooled, _NO_KEYED_CODECS if asv.files is not None else _NO_CODECS
        own = asv.of_codec(codec)
        rates = None if own is None else _asv_rates(own)
        if rates is None:
            return self.pooled, f"{_NO_CODEC_TRIALS} {codec}"
        return rates, ""

    def _phase(self, partition: str) -> tuple[ASVScores | None, ASVRates | None]:
        """The ASV trials of ``partition``'s phase and their pooled rates (None where they leave them undefined, or
        where the trials are every phase's: a partition of no 2021 phase); (None, None) when the ASV scores hold no
        trials of that phase, or not of each kind."""
        if partition not in self.of_partition:
            try:
                asv = self.scores.of_phases([partition])[0]
            except ProtocolError:
                self.of_partition[partition] = None, None
            else:
                self.of_partition[partition] = asv, None if asv is self.scores else _asv_rates(asv)
        return self.of_partition[partition]


# a row's own keys: a protocol column so named would have its group's value overwritten by a metric in the row
_ROW_KEYS = ("n", "n_bonafide", "n_spoof", *GROUP_METRICS, "note")
_ALWAYS_TABULATED = ("attack", "source", "corpus")  # per_attack, per_source, per_corpus: in every report


def by_problem(table: UtteranceTable, column: str) -> str | None:
    """Why ``column`` cannot be a breakdown of ``table`` (``evaluate(..., by=...)``, ``sdd eval --by``), worded to
    follow the protocol's name: it has no such column (the columns listed), the column is empty, or it bears the name
    of a row's own key; None when it can."""
    from sddkit.config import did_you_mean

    if column not in table.columns:
        close = did_you_mean([column], table.columns)
        # "as read": a reader keeps the columns it knows (a labels CSV's), not every column of the file
        return f"has no column {column!r}{close}; columns as read: {', '.join(table.columns)}"
    if not table.has_column(column) and column not in _ALWAYS_TABULATED:
        # one group, `unknown`, of every trial: the pooled figures again (as sdd compare --by refuses it); a column of
        # a table every report has gives that table's rows, empty or not
        return f"has an empty {column!r} column: nothing to group by"
    if column in _ROW_KEYS:
        return f"has a column {column!r}, which is also a key of every row of the table: it cannot be a breakdown"
    return None


def by_columns(table: UtteranceTable, by: str | Sequence[str] | None) -> tuple[str, ...]:
    """The breakdown columns ``by`` asks for, each once, in the order given (a single name is one column); raises
    ``ProtocolError`` for one :func:`by_problem` refuses."""
    columns = tuple(dict.fromkeys([by] if isinstance(by, str) else list(by or ())))
    for column in columns:
        problem = by_problem(table, column)
        if problem is not None:
            raise ProtocolError(f"by={column!r}: the protocol {problem}")
    return columns


def _per_column(
    table: UtteranceTable,
    column: str,
    labels: np.ndarray,
    scores: np.ndarray,
    cfg: EvalConfig,
    spoofs: bool,
    tdcf_asv: _AttackASV | None = None,
) -> list[dict[str, Any]]:
    """The rows of a ``by`` column, grouped as ``sdd compare --by`` groups it (``spoofs``, :func:`_spoof_column`:
    each value's spoofs against its partition's bona fide, as per_attack; any other column: the trials of each
    value, as per_source), by the fixed tables' own code, so ``by=["source"]`` gives per_source's rows."""
    if spoofs:
        return _per_attack(table, labels, scores, cfg, column, tdcf_asv)
    return _per_group(column, table.column(column), labels, scores, cfg)


def _spoof_column(table: UtteranceTable, column: str, labels: np.ndarray) -> bool:
    """Whether a ``by`` column is grouped as the attack column (each value's spoofs with the bona fide trials):
    one of :data:`SPOOF_COLUMNS`, or one naming nothing for any bona fide trial (MLAAD's ``architecture``), whose
    groups by value alone would each hold spoofs only (:func:`~sddkit.evaluation.groups.names_spoofs_only`)."""
    return column in SPOOF_COLUMNS or names_spoofs_only(table.column(column), labels)


def _names_any(table: UtteranceTable, column: str, labels: np.ndarray) -> bool:
    """Whether ``column`` names something for a spoof trial: the stage-1 DF keys leave every vocoder '' (unknown),
    and a table of that one group would pose as a breakdown."""
    return table.has_column(column) and bool(np.any(table.column(column)[labels == 0].astype(str) != ""))


def _splits_spoofs(table: UtteranceTable, column: str, labels: np.ndarray) -> bool:
    """Whether ``column`` names something for a spoof and puts the spoofs in two groups or more: one type for every
    spoof (ASVspoof 2019 PA's replay, MLAAD's tts) would make a table of one row, the pooled figures again."""
    if not _names_any(table, column, labels):
        return False
    return len(set(table.column(column)[labels == 0].astype(str).tolist())) > 1


def _mean_over(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    usable = [r for r in rows if r.get("eer") is not None]
    out: dict[str, Any] = {"n_groups": len(usable), "n_skipped": len(rows) - len(usable)}
    for name in ("eer", "auc", "min_dcf", "act_dcf", "cllr"):
        out[name] = float(np.mean([r[name] for r in usable])) if usable else None
    return out


@dataclass
class _Aligned:
    """Scores lined up with the protocol rows they score."""

    table: UtteranceTable
    scores: np.ndarray  # (N,)
    matching: dict[str, Any] | None  # how a score file matched the protocol; None for an array
    gate_weights: np.ndarray | None  # (N, E)
    expert_names: Sequence[str] | None  # E names, or None for expert0..
    expert_use: np.ndarray | None = None  # (N, E) a MoLEx model's mean router weights (score files only)


def _aligned_scores(
    table: UtteranceTable,
    scores: ScoreFile | Sequence[float] | np.ndarray,
    gate_weights: object | None,
    expert_names: Sequence[str] | None,
    outside: UtteranceTable | None = None,
    selection: str = OUTSIDE_PARTITIONS,
) -> _Aligned:
    if isinstance(scores, ScoreFile):
        if gate_weights is not None or expert_names is not None:
            raise ProtocolError(
                "gate weights and their experts' names come from the score file; pass gate_weights and "
                "expert_names only with a score array"
            )
        match = match_scores(table, scores, outside=outside, selection=selection)
        return _Aligned(
            match.table, match.scores, match.to_dict(), match.gate_weights, match.expert_names, match.expert_use
        )
    if outside is not None:
        raise ProtocolError("outside names protocol rows a score file may score: pass it only with a score file")
    # a model's outputs as they come (DetectorOutput.score and .stats["gate_weights"]: tensors with autograd history,
    # bfloat16 under autocast, on the GPU) made np.asarray raise a RuntimeError or TypeError
    arr = as_float64(scores, "scores")
    if arr.shape != (len(table),):
        # the shape, not only a count: a (N, 1) column of N scores read "got N scores for N protocol rows"
        raise ProtocolError(
            f"scores must be one number per protocol row, shape ({len(table)},), for {len(table)} protocol rows; "
            f"got shape {arr.shape}"
        )
    gates = None if gate_weights is None else as_float64(gate_weights, "gate weights")
    if expert_names is not None and gates is None:
        raise ProtocolError("expert_names name the columns of gate_weights: give both")
    return _Aligned(table, arr, None, gates, expert_names)


def _gate_tables(
    table: UtteranceTable,
    labels: np.ndarray,
    weights: np.ndarray,
    names: Sequence[str] | None,
    what: str = "gate weights",
) -> dict[str, Any]:
    """Mean gate weight per expert for each source and each attack (bona fide files as ``bonafide``); ``what``:
    the weights' name in gate_weight_table's errors."""
    attack = np.where(labels == 1, "bonafide", table.column("attack").astype(str))

    def quoted_all(values: np.ndarray) -> np.ndarray:  # the tables' total row is `all`: a group so named is quoted
        return np.where(values == "all", "'all'", values)

    grouped = UtteranceTable(
        table.df.assign(source=quoted_all(named(table.column("source"))), attack=quoted_all(named(attack))),
        validate=False,
    )
    # a source or attack met in several partitions (sddbench's resemblyzer in train, val and test_wild) is a row per
    # partition, as per_attack.csv's rows are: its pooled mean mixed seen and unseen conditions under one name
    parts = partition_groups(table.column("partition")) if table.has_column("partition") else None
    if parts is not None and names is not None and "partition" in map(str, names):
        names = None  # an expert so named would overwrite the rows' partition: expert0.., as for a reserved name
    out: dict[str, Any] = {}
    for key in ("source", "attack"):
        # gate_weight_table checks the shape (and the names), naming the experts expert0.. when names is None
        frame = gate_weight_table(grouped, weights, by=key, expert_names=names, what=what)
        experts = out.setdefault("experts", [c for c in frame.columns if c != "n"])
        if parts is None:
            out[f"by_{key}"] = _weight_rows(frame, key, experts)
            continue
        # each partition's rows and its own `all` row, then the `all` row of every file, last as without partitions
        out[f"by_{key}"] = [
            row
            for partition, m in parts
            for row in _weight_rows(
                gate_weight_table(grouped.subset(m), weights[m], by=key, expert_names=names, what=what),
                key,
                experts,
                str(quoted_all(np.array([partition]))[0]),
            )
        ] + _weight_rows(frame.loc[["all"]], key, experts, "all")
    return out


def _weight_rows(
    frame: pd.DataFrame, key: str, experts: Sequence[str], partition: str | None = None
) -> list[dict[str, Any]]:
    """The rows of a :func:`gate_weight_table` as report.json holds them, led by their partition when given."""
    first = {} if partition is None else {"partition": partition}
    return [
        {**first, key: str(group), **{e: float(row[e]) for e in experts}, "n": int(row["n"])}
        for group, row in frame.iterrows()
    ]


def _spoof_only_hint(table: UtteranceTable, labels: np.ndarray) -> str:
    """How to add the bona fide side of a corpus that ships only spoofs (MLAAD: M-AILABS; WaveFake: LJSpeech and
    JSUT), '' for any other."""
    if int(labels.sum()) != 0 or not table.has_column("corpus"):
        return ""
    corpora = set(table.column("corpus").tolist())
    if corpora == {"mlaad"}:
        return (
            "; MLAAD holds only spoofs: read its bona fide counterpart, M-AILABS, with it (sdd eval --protocol-option "
            "bonafide_root=DIR, the folder holding de_DE/, en_US/, ...)"
        )
    if corpora == {"wavefake"}:
        return (
            "; WaveFake holds only spoofs: read its bona fide counterparts with it (sdd eval --protocol-option "
            "ljspeech_root=DIR, the LJSpeech-1.1 folder, and/or --protocol-option jsut_root=DIR, jsut_ver1.1)"
        )
    return ""


def evaluate(
    table: UtteranceTable,
    scores: ScoreFile | Sequence[float] | np.ndarray | torch.Tensor,
    config: EvalConfig | None = None,
    gate_weights: object | None = None,
    expert_names: Sequence[str] | None = None,
    outside: UtteranceTable | None = None,
    asv_scores: ASVScores | None = None,
    selection: str = OUTSIDE_PARTITIONS,
    sasv_scores: ASVScores | None = None,
    by: str | Sequence[str] | None = None,
) -> Report:
    """Evaluate ``scores`` (a read score file, or an array aligned with ``table``) against ``table``.

    A mixture's per-file gate weights (N, E) are tabulated per source and per attack: read from the score
    file's ``gate_w*`` columns (experts named as ``sdd score`` recorded them beside the file), or given as
    ``gate_weights`` (and optionally their ``expert_names``) with a score array. The scores (N,) and the gate
    weights (N, E) may be torch tensors as a model returns them (``DetectorOutput.score``,
    ``.stats["gate_weights"]``: on the GPU, bfloat16, with autograd history).

    ``outside``: with a score file, the protocol's rows left out of ``table`` (its other partitions): their
    scores are reported as such, not as scores without a protocol entry (see :func:`match_scores`); ``selection``:
    what left them out, as the note words it (other partitions, a reader's ``codecs=[...]``).

    ``asv_scores``: an ASV system's scores (:func:`sddkit.evaluation.asv.read_asv_scores`); the pooled entries
    then hold the t-EER of the scores before it (module docstring), and the t-DCFs take its error rates at its EER
    threshold (``asv_scores.rates()``, as ``sdd eval --asv-scores``) unless ``config.asv`` names other rates than the
    default ones; of its trials of the evaluated ASVspoof 2021 phases alone where its lines carry a phase
    (:meth:`~sddkit.evaluation.asv.ASVScores.of_phases`, by the table's ``partition``), and of the table's codec
    conditions alone where its lines name their codec (:func:`_of_evaluated_codecs`); each per-attack row's min
    t-DCFs with the Pfa_spoof of that attack's ASV spoof trials where its lines name attacks (:class:`_AttackASV`).
    ``sasv_scores``: an SASV system's scores by trial kind (:func:`sddkit.evaluation.asv.read_sasv_scores`: an
    ASVspoof 5 track-2 submission's ``sasv-score``); ``pooled.min_a_dcf`` and ``pooled.a_dcf_threshold`` then hold
    their min a-DCF under ``config.adcf``, a figure of that system, which the CM scores enter only if it fused them.
    ``by``: protocol columns (e.g. ``["speaker"]``), each broken down as ``sdd compare --by`` does (``attack``,
    ``attack_type``, ``vocoder``: each value's spoofs against the bona fide trials, as per_attack; any other: the
    trials of each value, as per_source) into ``Report.per_column[column]``; an unknown or empty column raises
    ``ProtocolError`` before anything is computed.
    """
    columns = by_columns(table, by)  # first: a misspelt column is said before the scores are matched
    cfg = config or EvalConfig()
    # where the key and the protocol name a file's attack (codec) otherwise, the key's are kept: said once (the ASV
    # and SASV scores share their key)
    key_notes = key_protocol_warnings([asv_scores, sasv_scores], table, outside)
    asv_scores = _asv_of_evaluated_phases(asv_scores, table, outside)
    # the SASV scores' (the same keyed table's sasv-score column) attacks and codecs from the protocol too: their
    # per-attack and per-codec min a-DCFs
    sasv_scores = _asv_with_protocol(sasv_scores, table, outside)
    # said of the scores as given: the key's unscored trials, scores the wrong way round
    given_notes = _asv_warnings(asv_scores, sasv_scores)
    all_codecs_rates = _asv_rates(asv_scores)
    # the ASV and SASV trials of the evaluated codec conditions alone (a reader's codecs=[...] narrowed the CM
    # trials): the pooled t-DCFs, t-EER and a-DCF mixed the narrowed CM trials with every condition's ASV trials
    asv_scores, sasv_scores, codec_notes = _of_evaluated_codecs_both(asv_scores, sasv_scores, table, outside)
    asv_rates = _asv_rates(asv_scores)
    if asv_rates is not None and cfg.asv in (ASVRates(), all_codecs_rates):
        # (the rates sdd eval took of every condition's trials are replaced by those of the evaluated conditions)
        # the ASV system given is the one the CM protects: its rates, not the ASVspoof 5 organisers' defaults (the
        # t-EER took the scores given and the t-DCFs those defaults, two ASV systems in one report, where sdd eval
        # --asv-scores took its rates for both)
        cfg = dataclasses.replace(cfg, asv=asv_rates)
    aligned = _aligned_scores(table, scores, gate_weights, expert_names, outside, selection)
    table, s, matching, gates = aligned.table, aligned.scores, aligned.matching, aligned.gate_weights
    y = table.labels
    if matching is not None and int(y.sum()) in (0, y.size):
        # say why (e.g. every spoof file was an error row of `sdd score`), not only that a class is missing
        only = "spoof" if int(y.sum()) == 0 else "bona fide"
        notes = "; ".join(matching["warnings"])
        raise ProtocolError(
            f"{scores.path}: the {y.size} protocol utterance(s) with a score are all {only}; the metrics need "
            f"both bona fide and spoof trials" + (f" ({notes})" if notes else "") + _spoof_only_hint(table, y)
        )
    pooled, pooled_curve = _pooled(y, s, cfg)
    pooled.update(_tandem_eer(y.astype(bool), s, asv_scores, table.column("utt_id")))
    if asv_scores is not None:
        # beside a t-EER counted per trial: the min t-DCFs count each utterance once, as the ASVspoof 2019/2021 scripts
        # (the ASVspoof 5 package's track-2 min t-DCF takes every SASV trial's CM score, with its own ASV rates)
        pooled["min_tdcf_cm_counting"] = "per_utterance"
    pooled.update(sasv_dcf(sasv_scores, cfg.adcf))
    per_source = _per_group("source", table.column("source"), y, s, cfg)
    per_corpus = _per_group("corpus", table.column("corpus"), y, s, cfg)
    per_partition = (
        _per_group("partition", table.column("partition"), y, s, cfg) if table.has_column("partition") else None
    )

    curves = {"pooled": pooled_curve}
    aucs = {"pooled": pooled["auc"]}
    if len(per_source) > 1:
        usable = sorted((r for r in per_source if r["eer"] is not None), key=lambda r: -r["n"])
        sources = named(table.column("source"))
        for row in usable[: cfg.max_plot_sources]:
            m = sources == row["source"]
            # a source named "pooled" must not replace the pooled curve: its legend entry says what it is
            name = row["source"] if row["source"] not in curves else f"source {row['source']}"
            curves[name] = det_curve(y[m], s[m])
            aucs[name] = row["auc"]
    # the ASV rates of the pooled t-DCFs are the given ASV scores': each attack's take its own spoof trials' Pfa_spoof
    from_scores = asv_rates is not None and cfg.asv == asv_rates
    # the per-vocoder, per-attack-type and spoof --by rows take theirs as the per-attack rows do: a group of spoofs
    # has a t-DCF as an attack has, its ASV Pfa_spoof that of its attacks' ASV spoof trials
    tdcf_asv = _attack_asv(cfg, asv_scores, from_scores)
    per_attack = _per_attack(table, y, s, cfg, tdcf_asv=tdcf_asv, sasv=sasv_scores, asv=asv_scores)
    # each codec condition's min t-DCFs of its own ASV trials where the ASV lines name codecs (ASVspoof 2021 LA-C1..C7)
    per_codec = _per_codec(table, y, s, cfg, tdcf_asv, sasv_scores, asv_scores) if table.has_column("codec") else None
    spoof_columns = tuple(c for c in columns if _spoof_column(table, c, y))  # the by columns grouped as attack
    # the readers fill it (ASVspoof 2019's A01-A19 as tts/vc, sddbench's tts/vc/vocoder): the breakdown papers give
    by_type = _splits_spoofs(table, "attack_type", y)
    per_attack_type = _per_attack(table, y, s, cfg, "attack_type", tdcf_asv) if by_type else None
    return Report(
        pooled=pooled,
        per_attack=per_attack,
        per_source=per_source,
        per_corpus=per_corpus,
        per_codec=per_codec,
        mean_over_sources=_mean_over(per_source),
        matching=matching,
        config=cfg,
        curves=curves,
        aucs=aucs,
        per_partition=per_partition,
        # the 2021 DF key's vocoder: its official breakdown, each vocoder's spoofs against the bona fide, as attacks
        per_vocoder=_per_attack(table, y, s, cfg, "vocoder", tdcf_asv) if _names_any(table, "vocoder", y) else None,
        per_attack_type=per_attack_type,
        asv_warnings=given_notes
        + key_notes
        + codec_notes
        + _unjoined_warnings(asv_scores, table.column("utt_id"))
        + _attack_asv_warnings(per_attack, asv_scores)
        + _codec_asv_warnings(per_codec, asv_scores),
        asv_rates_from_scores=from_scores,
        eer_notes=[note for note in (_tie_note(y.astype(bool), s, pooled["eer"]),) if note],
        gate_weights=None if gates is None else _gate_tables(table, y, gates, aligned.expert_names),
        expert_use=None if aligned.expert_use is None else _expert_use_tables(table, y, aligned.expert_use, scores),
        # --by attack is per_attack itself (its rows carry the per-attack min t-DCFs too), --by codec per_codec (its
        # condition t-DCFs); a codec column naming spoofs alone is grouped as the attacks are
        per_column={
            c: per_attack
            if c == "attack"
            else per_codec
            if c == "codec" and per_codec is not None and c not in spoof_columns
            else _per_column(table, c, y, s, cfg, c in spoof_columns, tdcf_asv)
            for c in columns
        },
        per_column_spoofs=spoof_columns,
        protocol_notes=[note for note in (_pa_hidden_note(table),) if note],
    )


def evaluated_asv_trials(
    asv: ASVScores, table: UtteranceTable, outside: UtteranceTable | None = None
) -> tuple[ASVScores, list[str] | None]:
    """The ASV trials whose error rates :func:`evaluate` gives the pooled t-DCFs (``asv`` given, with ``config.asv``
    left at its default or those trials' rates), and the codec conditions they were narrowed to (None: not narrowed):
    each trial's attack and codec the key leaves unnamed from the protocol's line of its file, of the evaluated
    ASVspoof 2021 phases and codec conditions alone, as :func:`evaluate` takes them; for ``sdd eval``'s notes on
    the ASV rates, said before the report, to describe the trials the figures take."""
    asv = _asv_of_evaluated_phases(asv, table, outside)
    narrowed = _of_evaluated_codecs(asv, "ASV", table, outside)[0]
    if narrowed is None or narrowed is asv:
        return asv, None
    return narrowed, sorted(set(table.column("codec").tolist()))


def _of_evaluated_codecs_both(
    asv: ASVScores | None, sasv: ASVScores | None, table: UtteranceTable, outside: UtteranceTable | None
) -> tuple[ASVScores | None, ASVScores | None, list[str]]:
    """The ASV and SASV scores of the evaluated codec conditions alone (:func:`_of_evaluated_codecs`), with the notes:
    one naming both where the two would say the same of their trials (an ASVspoof 5 track-2 submission's
    ``asv-score`` and ``sasv-score`` columns, the trials of one table narrowed alike), not a note of each."""
    narrowed_asv, asv_notes = _of_evaluated_codecs(asv, "ASV", table, outside)
    narrowed_sasv, sasv_notes = _of_evaluated_codecs(sasv, "SASV", table, outside)
    if asv_notes and sasv_notes:
        joint = [_of_evaluated_codecs(scores, "ASV and SASV", table, outside)[1] for scores in (asv, sasv)]
        if joint[0] == joint[1]:
            asv_notes, sasv_notes = joint[0], []
    return narrowed_asv, narrowed_sasv, asv_notes + [note for note in sasv_notes if note not in asv_notes]


# the figures the ASV side, the SASV side or both enter (a codec narrowing's notes name them), and whose trials the
# official packages take for a condition's figure
_CODEC_SIDES = {
    "ASV": ("min t-DCFs and t-EER", "CM and ASV"),
    "SASV": ("min a-DCF", "CM and SASV"),
    "ASV and SASV": ("min t-DCFs, t-EER and min a-DCF", "CM, ASV and SASV"),
}


def _of_evaluated_codecs(
    scores: ASVScores | None, name: str, table: UtteranceTable, outside: UtteranceTable | None
) -> tuple[ASVScores | None, list[str]]:
    """``scores`` (the ASV or SASV ones, ``name``) of the codec conditions of the evaluated CM trials alone
    (:meth:`~sddkit.evaluation.asv.ASVScores.of_codecs`), with a note saying which trials were left out, where their
    lines name their codec (the ASVspoof 2021 LA ASV key's lines with their scores appended; an ASVspoof 5 table read
    with a key or protocol naming codecs) and some name a condition the evaluated trials lack. The official packages
    compute a condition's figure from its CM and ASV trials: the pooled figures of ``--protocol-option
    codecs=[...]`` took every condition's ASV trials. Where the lines name no codec and the protocol's rows left out
    of the evaluation (``outside``) are of other conditions, the scores are kept with a warning that says so."""
    if scores is None or not table.has_column("codec"):
        return scores, []
    evaluated = sorted(set(table.column("codec").tolist()))
    figures, own = _CODEC_SIDES[name]
    if scores.codecs is None:
        left_out = set() if outside is None or not outside.has_column("codec") else set(outside.column("codec"))
        left_out -= set(evaluated)
        if not left_out:
            return scores, []
        return scores, [
            f"the evaluated CM trials are of codec condition(s) {', '.join(evaluated)} (the protocol's "
            f"{', '.join(sorted(left_out))} left out), but the {name} scores' lines name no codec: the {name} side "
            f"could not be narrowed, and the pooled {figures} take the {name} trials of every condition (the "
            f"official packages take a condition's {name} trials alone); give the ASVspoof 2021 LA ASV key's lines "
            "with their scores appended, or an ASVspoof 5 score table with --asv-key or --protocol naming each trial's "
            "codec"
        ]
    narrowed = scores.of_codecs(evaluated)
    if narrowed is scores:
        return scores, []
    kinds = list(zip(("target", "non-target", "spoof"), (scores.target, scores.nontarget, scores.spoof)))
    kept = (narrowed.target.size, narrowed.nontarget.size, narrowed.spoof.size)
    named = set().union(*(set(c.tolist()) for c in scores.codecs)) - {""}
    dropped = ", ".join(sorted(named - set(evaluated)))
    if 0 in kept:  # rates of no trial of a kind: kept as they were, said
        return scores, [
            f"the {name} scores hold no {kinds[kept.index(0)][0]} trial of the evaluated codec condition(s) "
            f"{', '.join(evaluated)}: the pooled {figures} take the {name} trials of every condition, {dropped} "
            "included"
        ]
    counts = ", ".join(f"{n} of {trials.size} {kind}" for (kind, trials), n in zip(kinds, kept))
    return narrowed, [
        f"the evaluated CM trials are of codec condition(s) {', '.join(evaluated)}: the pooled {figures} "
        f"take the {name} trials of those conditions alone ({counts}; those of "
        f"{dropped} left out), as the official packages take a condition's figure from its own {own} trials"
    ]


def _pa_hidden_note(table: UtteranceTable) -> str | None:
    """A note when the evaluated trials hold both official hidden tracks of the ASVspoof 2021 PA keys' hidden phase
    (TRIM ``notrim`` and ``trim``, partition ``hidden``): the official evaluation scores them apart, each with the
    ASV rates of its own ASV trials (``eval-package/config.py``: ``hidden1_PA``, ``hidden2_PA``); a figure of both
    together is no official one. None otherwise."""
    if not all(table.has_column(c) for c in ("partition", "trim", "corpus")):
        return None
    hidden = (table.column("partition") == "hidden") & (table.column("corpus") == "asvspoof2021_pa")
    trims = set(table.column("trim")[hidden].tolist())
    if not {"notrim", "trim"} <= trims:
        return None
    return (
        "the ASVspoof 2021 PA hidden phase holds two official tracks, scored apart (TRIM notrim: hidden track 1, "
        "trim: hidden track 2), each with the ASV rates of its own ASV trials; the figures of partition hidden mix "
        "them: evaluate one with --protocol-option phases=[hidden_track_1] (or hidden_track_2)"
    )


def _asv_of_evaluated_phases(
    asv: ASVScores | None, table: UtteranceTable, outside: UtteranceTable | None
) -> ASVScores | None:
    """``asv`` as :func:`evaluate` takes it before the codec narrowing: a keyed table's spoof attacks and codecs the
    key leaves unnamed from the protocol (:func:`_asv_with_protocol`; before the phase selection, which keeps what
    the trials carry), then its trials of the evaluated ASVspoof 2021 phases alone (``ASVScores.of_phases``, by the
    table's ``partition``), as the official scripts take them."""
    asv = _asv_with_protocol(asv, table, outside)
    if asv is None or not table.has_column("partition"):
        return asv
    return asv.of_phases(table.column("partition"))[0]


def _asv_with_protocol(
    asv: ASVScores | None, table: UtteranceTable, outside: UtteranceTable | None
) -> ASVScores | None:
    """``asv`` with each spoof trial's attack and each trial's codec that the ASV key leaves unnamed taken from the
    protocol's rows of its file (:meth:`~sddkit.evaluation.asv.ASVScores.with_protocol`: ASVspoof 5's SASV key names
    neither), of the evaluated rows and those left out of them (``outside``)."""
    if asv is None or asv.files is None:
        return asv
    return asv.with_protocol(*protocol_by_file(table, outside))


def protocol_by_file(
    table: UtteranceTable, outside: UtteranceTable | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(utt_id, attack, codec) of the protocol's rows, the evaluated ones and those left out of them (``outside``),
    as :meth:`~sddkit.evaluation.asv.ASVScores.with_protocol` takes them; codec None without a codec column."""
    tables = [t for t in (table, outside) if t is not None]
    ids, attacks = (np.concatenate([t.column(c) for t in tables]) for c in ("utt_id", "attack"))
    has_codec = all(t.has_column("codec") for t in tables)
    codecs = np.concatenate([t.column("codec") for t in tables]) if has_codec else None
    return ids, attacks, codecs


def key_protocol_warnings(
    scores: Sequence[ASVScores | None], table: UtteranceTable, outside: UtteranceTable | None = None
) -> list[str]:
    """The warnings on the attacks and codecs the ASV key of ``scores`` (the ASV and the SASV scores of one table:
    said once) names otherwise than the protocol's line of the same file (:func:`protocol_disagreement_notes`): the
    key's are taken, as before, and the per-attack and per-codec figures group those trials by them."""
    notes: list[str] = []
    for found in scores:
        if found is None or found.files is None:
            continue
        for note in protocol_disagreement_notes(found.protocol_disagreements(*protocol_by_file(table, outside))):
            if note not in notes:
                notes.append(note)
    return notes


def _attack_asv(cfg: EvalConfig, asv: ASVScores | None, from_scores: bool) -> _AttackASV:
    """The ASV rates of the per-attack min t-DCFs: each attack's own from ``asv`` when the pooled ones are theirs."""
    if from_scores:
        return _AttackASV(cfg.asv, asv)
    if asv is not None and cfg.asv != ASVRates():
        why = "the ASV rates are set in EvalConfig.asv (not taken from the ASV scores given)"
    elif asv is not None:
        why = "the ASV scores leave the ASV error rates undefined"
    else:
        why = (
            "no ASV scores were given (sdd eval --asv-scores)"
            if cfg.asv == ASVRates()
            else "the ASV rates are set in EvalConfig.asv"
        )
    return _AttackASV(cfg.asv, None, why)


def _asv_rates(asv: ASVScores | None) -> ASVRates | None:
    """The error rates of the ASV ``asv`` at its EER threshold; None without ASV scores, or when they leave the rates
    undefined (a kind of trial without scores: the t-EER's note says so, and the t-DCFs keep ``config.asv``)."""
    if asv is None:
        return None
    try:
        return asv.rates()
    except MetricError:
        return None


def _expert_use_tables(
    table: UtteranceTable, labels: np.ndarray, weights: np.ndarray, scores: object
) -> dict[str, Any]:
    """:func:`_gate_tables` of a MoLEx model's router weights (read from a score file, ``scores``); an error names
    them and the file, not "gate weights" of a mixture (the columns and the fix differ)."""
    where = f"{scores.path}: " if isinstance(scores, ScoreFile) else ""
    what = f"{where}MoLEx expert use ({EXPERT_USE_PREFIX}<k> columns, each file's mean router weights)"
    return _gate_tables(table, labels, weights, None, what=what)


# --- writing ----------------------------------------------------------------------------------


def _ci_text(pooled: dict[str, Any], digits: int) -> str:
    """`` (95% CI a to b)`` for the pooled EER's interval, ``""`` without one. An interval of fewer bootstrap
    replicates than its level needs (it carries an ``eer_ci_note``) is not called a CI of that level."""
    ci = pooled.get("eer_ci")
    if not ci:
        return ""
    span = f"{ci[0]:.{digits}f} to {ci[1]:.{digits}f}"
    if pooled.get("eer_ci_note"):
        return f" (bootstrap interval {span}, too few replicates for a {_level(pooled['eer_ci_level'])} CI)"
    return f" ({_level(pooled['eer_ci_level'])} CI {span})"


def _bootstrap_text(report: Report) -> str:
    """`` The EER interval: N bootstrap replicates, seed S.`` where the report has one: report.md stated a CI with
    neither (report.json beside it holds both), so an interval could not be recomputed from the Markdown alone."""
    if not report.pooled.get("eer_ci"):
        return ""
    return f" The EER interval: {report.config.bootstrap} bootstrap replicates, seed {report.config.seed}."


def _level(level: float) -> str:
    """A confidence level as a percentage: 0.95 -> "95%", 0.999 -> "99.9%" (not rounded up to "100%")."""
    return f"{100 * level:.4g}%"


_FIXED_BELOW = 1e9  # a magnitude from which a value is written in exponent form, not as hundreds of digits


def _fixed(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals; from 1e9 up (a threshold or Cllr of scores near the float limit)
    with ``digits`` significant ones (1.798e+308), not as a row of 300 digits."""
    return f"{value:.{digits}f}" if abs(value) < _FIXED_BELOW else f"{value:.{digits}g}"


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return _fixed(value, digits)
    return markdown_cell(value)


_MD_COLUMNS = (  # (key, header, digits)
    ("n_bonafide", "bona fide", 0),
    ("n_spoof", "spoof", 0),
    ("eer", "EER %", 3),
    ("min_dcf", "minDCF", 4),
    ("act_dcf", "actDCF", 4),
    ("auc", "AUC", 4),
    ("cllr", "Cllr", 4),
)


def _md_table(rows: Sequence[dict[str, Any]], key: str) -> list[str]:
    keys = ["partition", key] if rows and "partition" in rows[0] and key != "partition" else [key]
    headers = keys + [h for _, h, _ in _MD_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = [markdown_cell(r[k]) for k in keys] + [_fmt(r.get(k), d) for k, _, d in _MD_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _attack_tdcf_section(rows: Sequence[dict[str, Any]], asv_note: str, key: str = "attack") -> list[str]:
    """report.md's per-attack min t-DCFs: a table under the per-attack one, with the ASV Pfa_spoof each takes and
    whose it is, and a line saying where the rates come from. A subsection of its own ("min-tDCF", as the ASVspoof
    2019 tables write it): the per-attack table and the pooled table's two "min t-DCF" rows stay as they were.
    ``key``: another column whose groups of spoofs carry min t-DCFs too (``vocoder``, ``attack_type``, a spoof
    ``--by`` column), each of the ASV spoof trials of its attacks; or ``codec``, whose conditions' rows (each of its
    trials, :func:`_per_codec`) carry the ASV Pfa and Pmiss they took too, a condition's own ASV trials giving all
    three rates."""
    if not rows or "min_tdcf_asv" not in rows[0]:
        return []
    keys = ["partition", key] if "partition" in rows[0] else [key]
    attack = key == "attack"
    condition = "min_tdcf_asv_pfa" in rows[0]  # per codec condition: its own Pfa and Pmiss too
    rates_headers = ["ASV Pfa", "ASV Pmiss", "ASV Pfa_spoof"] if condition else ["ASV Pfa_spoof"]
    headers = [*keys, "min-tDCF 2019", "min-tDCF 2021", *rates_headers, "ASV rates"]
    title = "### Per-attack min-tDCF" if attack else f"### Per-{markdown_cell(key)} min-tDCF"
    lines = [title, "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    owner = "the condition's own" if condition else "the attack's own" if attack else "its attacks' own"
    for r in rows:
        cells = [markdown_cell(r[k]) for k in keys] + [_fmt(r["min_tdcf"][form], 4) for form in ("2019", "2021")]
        taken = [r["min_tdcf_asv_pfa"], r["min_tdcf_asv_pmiss"]] if condition else []
        taken = [f"{rate:.4g}" for rate in [*taken, r["min_tdcf_asv_pfa_spoof"]]]
        whose = "pooled" if r["min_tdcf_asv"] == "pooled" else owner
        lines.append("| " + " | ".join([*cells, *taken, whose]) + " |")
    own = [str(r[key]) for r in rows if r["min_tdcf_asv"] != "pooled"]
    pooled: dict[str, list[str]] = {}  # why -> the groups whose t-DCFs take pooled rates for that reason
    for r in rows:
        if r["min_tdcf_asv"] == "pooled":
            pooled.setdefault(r["min_tdcf_asv_note"], []).append(str(r[key]))
    parts = []
    if own and condition:
        parts.append(
            f"{', '.join(dict.fromkeys(own))}: the ASV's Pfa, Pmiss and Pfa_spoof at the EER threshold of that "
            "condition's own ASV target, non-target and spoof trials, as the official ASVspoof 2021 LA per-condition "
            "figures (LA-C1..C7) take them"
        )
    elif own:
        spoofs = (
            "that attack's ASV spoof trials alone, as the ASVspoof 2019 per-attack figures take them"
            if attack
            else "the ASV spoof trials of the attacks its spoofs are of (the protocol's attack column), pooled, as "
            "the pooled figure pools every attack's"
        )
        parts.append(
            f"{', '.join(dict.fromkeys(own))}: the ASV's Pfa and Pmiss at its EER threshold with the Pfa_spoof of "
            + spoofs
        )
    for why, names in pooled.items():
        rates = (
            "the pooled ASV rates of its partition's ASVspoof 2021 phase (the official 2021 package gives no figure "
            "there)"
            if _OF_PHASE in why
            else f"the pooled figure's ASV rates ({asv_note.removeprefix('; ')})"
        )
        official = (
            "the official ASVspoof 2021 LA per-condition figures take each condition's own ASV trials"
            if condition
            else "the official per-attack figures take each attack's own Pfa_spoof, from ASV scores whose spoof lines "
            "name their attack (ASVspoof 2019's 'A07 spoof -2.90')"
        )
        parts.append(
            f"{', '.join(dict.fromkeys(names))}: {rates}, since {why.replace(f' ({_OF_PHASE})', '')}; {official}"
        )
    undefined = sorted({note for r in rows for note in (r.get("min_tdcf_notes") or {}).values()})
    each = (
        f"each {markdown_cell(key)}'s bona fide and spoof trials"
        if condition
        else "each attack's spoofs against the bona fide trials"
        if attack
        else f"each {markdown_cell(key)}'s spoofs against the bona fide trials"
    )
    text = f"Normalised, {each}; ASV rates: " + "; ".join(parts) + "."
    return [*lines, "", markdown_cell(text), *(f"Undefined (-): {markdown_cell(note)}." for note in undefined), ""]


def _group_table(
    rows: Sequence[dict[str, Any]],
    key: str,
    title: str,
    headers: Sequence[str],
    cells: Callable[[dict[str, Any]], list[str]],
) -> list[str]:
    """A per-attack (``key`` ``attack``) or per-``key`` subsection's heading and table: the rows' partition (where the
    table has several) and group, then ``cells(row)`` under ``headers``."""
    keys = ["partition", key] if "partition" in rows[0] else [key]
    lines = [
        f"### Per-{'attack' if key == 'attack' else markdown_cell(key)} {title}",
        "",
        "| " + " | ".join([*keys, *headers]) + " |",
        "|" + "---|" * (len(keys) + len(headers)),
    ]
    lines += ["| " + " | ".join([*(markdown_cell(r[k]) for k in keys), *cells(r)]) + " |" for r in rows]
    return lines


def adcf_cells(row: Mapping[str, Any]) -> list[str]:
    """report.md's min a-DCF and threshold cells of a per-attack or per-codec row (``min_a_dcf``,
    ``a_dcf_threshold``; ``-`` with the row's ``min_a_dcf_note`` where the figure is undefined)."""
    value = _fmt(row["min_a_dcf"], 4) if row["min_a_dcf"] is not None else f"- ({markdown_cell(row['min_a_dcf_note'])})"
    return [value, _fmt(row["a_dcf_threshold"], 4)]


def _group_adcf_section(rows: Sequence[dict[str, Any]], key: str, asv_file: str | None) -> list[str]:
    """report.md's per-attack (``key`` ``attack``) or per-codec min a-DCFs of the SASV scores, a subsection under its
    table, with the trials each takes; none without SASV scores."""
    if not rows or "min_a_dcf" not in rows[0]:
        return []
    where = markdown_cell(Path(asv_file).name) if asv_file else "the given SASV scores"
    lines = _group_table(rows, key, f"min a-DCF (the sasv-score of {where})", ["min a-DCF", "threshold"], adcf_cells)
    trials = (
        "every target and non-target SASV trial with that attack's spoof trials alone"
        if key == "attack"
        else "that condition's own target, non-target and spoof SASV trials"
    )
    text = (
        f"Normalised, as the pooled min a-DCF; each row takes {trials}, as the ASVspoof 5 package's full evaluation "
        "(calculate_metrics_full.py) does."
    )
    return [*lines, "", text, ""]


def _group_teer_section(rows: Sequence[dict[str, Any]], key: str, asv_file: str | None) -> list[str]:
    """report.md's per-attack (``key`` ``attack``) or per-codec t-EERs before the ASV scores, a subsection under its
    table, with the trials each takes; none without ASV scores."""
    if not rows or "t_eer_note" not in rows[0]:
        return []
    where = markdown_cell(Path(asv_file).name) if asv_file else "the given ASV scores"

    def cells(r: dict[str, Any]) -> list[str]:
        value = _fmt(r["t_eer"], 3) if r["t_eer"] is not None else f"- ({markdown_cell(r['t_eer_note'])})"
        return [value, _fmt(r["t_eer_cm_threshold"], 4), _fmt(r["t_eer_asv_threshold"], 4)]

    headers = ["t-EER %", "CM threshold", "ASV threshold"]
    lines = _group_table(rows, key, f"t-EER (concurrent, before the ASV of {where})", headers, cells)
    trials = (
        "that attack's spoofs and the bona fide trials (of its partition, where the table has several) before every "
        "ASV target and non-target trial with that attack's ASV spoof trials alone"
        if key == "attack"
        else "that condition's own bona fide and spoof trials before its own ASV target, non-target and spoof trials"
    )
    per_trial = any(r.get("t_eer_cm_counting") == "per_trial" for r in rows)
    counting = (
        "each CM score once per ASV trial of its file, as the package joins them and as in the pooled t-EER"
        if per_trial
        else "each protocol utterance once, as in the pooled t-EER (the ASV trials name no file to join a CM score "
        "with; the ASVspoof 5 package counts a CM score once per SASV trial)"
    )
    text = (
        f"Each row takes {trials}, as the ASVspoof 5 package's full evaluation (calculate_metrics_full.py) does; "
        f"{counting}."
    )
    return [*lines, "", text, ""]


def _teer_rows(pooled: dict[str, Any], asv_file: str | None) -> list[str]:
    """The t-EER row of the pooled table: none without ASV scores."""
    if pooled.get("t_eer") is None and not pooled.get("t_eer_note"):
        return []
    # the file's name sits in a table cell: a `|` in it split the row
    asv = markdown_cell(Path(asv_file).name) if asv_file else "the given ASV scores"
    label = f"t-EER % (concurrent, before the ASV of {asv})"
    if pooled.get("t_eer_cm_counting") == "per_trial":  # the ASVspoof 5 package's count (:func:`_join_trials`)
        label += "; each CM score once per ASV trial of its file"
    if pooled.get("t_eer") is None:
        return [f"| {label} | - ({markdown_cell(pooled['t_eer_note'])}) |"]
    return [
        f"| {label}; CM threshold {_fixed(pooled['t_eer_cm_threshold'], 4)}, ASV threshold "
        f"{_fixed(pooled['t_eer_asv_threshold'], 4)} | {pooled['t_eer']:.3f} |"
    ]


def _tdcf_cell(pooled: dict[str, Any], form: str) -> str:
    value = pooled["min_tdcf"][form]
    if value is not None:
        return f"{value:.4f}"
    return f"- ({markdown_cell((pooled.get('min_tdcf_notes') or {}).get(form, 'undefined'))})"


def _adcf_rows(pooled: dict[str, Any], asv_file: str | None) -> list[str]:
    """The min a-DCF row of the pooled table: none without SASV scores."""
    if pooled.get("min_a_dcf") is None:
        return []
    where = markdown_cell(Path(asv_file).name) if asv_file else "the given SASV scores"
    return [
        f"| min a-DCF (the sasv-score of {where}); threshold {_fixed(pooled['a_dcf_threshold'], 4)} | "
        f"{pooled['min_a_dcf']:.4f} |"
    ]


def _decision_label(report: Report) -> str:
    """The threshold of the pooled thresholded rates, and whose it is: the model's that wrote the scores (``sdd
    eval`` takes it from their run record) or the configured one."""
    threshold = report.pooled["at_threshold"]["threshold"]
    model = (report.inputs or {}).get("model") or {}
    if model.get("threshold") == threshold:
        return f"{threshold:g} (the threshold of the model that scored)"
    return f"{threshold:g}"


def render_markdown(report: Report) -> str:
    p = report.pooled
    ci_text = _ci_text(p, 3)
    if not p["eer_ci"] and p.get("eer_ci_note"):
        ci_text = f" ({p['eer_ci_note']})"
    asv = report.config.asv
    asv_file = (report.inputs or {}).get("asv_scores")
    asv_phases = (report.inputs or {}).get("asv_phases")  # sdd eval: the ASVspoof 2021 phases of the ASV trials taken
    of_phases = f" (its trials of phase {markdown_cell('/'.join(asv_phases))})" if asv_phases else ""
    origin = (
        f"at the EER threshold of {markdown_cell(Path(asv_file).name)}{of_phases}"  # in the t-DCF rows' cells
        if asv_file
        else "at the EER threshold of the given ASV scores"
        if report.asv_rates_from_scores
        else "the ASVspoof 5 organisers' pooled rates"
        if asv == ASVRates()
        else "as given"
    )
    asv_note = f"; ASV Pfa {asv.pfa:.4g}, Pmiss {asv.pmiss:.4g}, Pfa_spoof {asv.pfa_spoof:.4g}, {origin}"
    lines = [
        "# sddkit evaluation report",
        "",
        f"{p['n']} trials: {p['n_bonafide']} bona fide, {p['n_spoof']} spoof. "
        f"Higher score = more bona fide; EER in percent; DCFs normalised.{_bootstrap_text(report)}",
        "",
        "## Pooled",
        "",
        "| metric | value |",
        "|---|---|",
        f"| EER % | {p['eer']:.3f}{ci_text} |",
        f"| EER threshold | {_fixed(p['threshold'], 4)} |",
        f"| ROC AUC | {p['auc']:.4f} |",
        f"| minDCF (P_spoof {report.config.dcf.p_spoof}, C_miss {report.config.dcf.c_miss}, "
        f"C_fa {report.config.dcf.c_fa}) | {p['min_dcf']:.4f} |",
        f"| actDCF (threshold {p['act_dcf_threshold']:.4f}) | {p['act_dcf']:.4f} |",
        f"| Cllr (bits) | {_fixed(p['cllr'], 4)} |",
        f"| minCllr (bits) | {p['min_cllr']:.4f} |",
        f"| min t-DCF (ASVspoof 2019 form{asv_note}) | {_tdcf_cell(p, '2019')} |",
        f"| min t-DCF (ASVspoof 2021 form{asv_note}) | {_tdcf_cell(p, '2021')} |",
        *_teer_rows(p, asv_file),
        *_adcf_rows(p, asv_file),
        f"| balanced accuracy at {_decision_label(report)} | {p['at_threshold']['balanced_accuracy']:.4f} |",
        "",
    ]
    m = report.mean_over_sources
    if m["n_groups"]:
        # a source without both classes has no EER: say that the mean leaves it out, not only "over N"
        skipped = f" ({m['n_skipped']} more left out: one class only)" if m["n_skipped"] else ""
        lines += [
            f"Mean over {m['n_groups']} source(s){skipped}: EER {m['eer']:.3f}%, minDCF {m['min_dcf']:.4f}, "
            f"AUC {m['auc']:.4f}.",
            "",
        ]
    sections = [
        (
            "Per attack (each attack vs its partition's bona fide)"
            if report.per_attack and "partition" in report.per_attack[0]
            else "Per attack (each attack vs all bona fide)",
            report.per_attack,
            "attack",
        ),
        ("Per source", report.per_source, "source"),
    ]
    if len(report.per_corpus) > 1:
        sections.append(("Per corpus", report.per_corpus, "corpus"))
    if report.per_partition is not None and len(report.per_partition) > 1:
        sections.append(("Per partition (the pooled figures above mix these)", report.per_partition, "partition"))
    if report.per_codec is not None:
        sections.append(("Per codec condition", report.per_codec, "codec"))
    if report.per_vocoder is not None:
        versus = "its partition's" if report.per_vocoder and "partition" in report.per_vocoder[0] else "all"
        sections.append((f"Per vocoder (each vocoder's spoofs vs {versus} bona fide)", report.per_vocoder, "vocoder"))
    if report.per_attack_type is not None:
        versus = "its partition's" if report.per_attack_type and "partition" in report.per_attack_type[0] else "all"
        title = f"Per attack type (each type's spoofs vs {versus} bona fide)"
        sections.append((title, report.per_attack_type, "attack_type"))
    for column, rows in report.per_column.items():
        sections.append((_by_title(column, rows, column in report.per_column_spoofs), rows, column))
    shown: set[int] = set()  # the row lists whose min t-DCFs are given already
    for title, rows, key in sections:
        lines += [f"## {title}", "", *_md_table(rows, key), ""]
        # under the per-attack table, not again under `--by attack`'s (the same list), and likewise per codec and
        # `--by codec`; under each table of groups of spoofs (per vocoder, per attack type, a spoof --by column) its
        # own: the rows of any other carry none
        if id(rows) not in shown:
            shown.add(id(rows))
            lines += _attack_tdcf_section(rows, asv_note, key)
            lines += _group_teer_section(rows, key, asv_file)
            lines += _group_adcf_section(rows, key, asv_file)
    if report.gate_weights is not None:
        experts = report.gate_weights["experts"]
        lines += [
            "## Mean gate weight",
            "",
            f"{len(experts)} experts, in the order of the mixture's experts (`gate_w0` .. in the scores): "
            + ", ".join(f"`{e}`" for e in experts)
            + ".",
            "",
        ]
        lines += _mean_weight_tables(report.gate_weights, "gate_weights", "gate weights")
    if report.expert_use is not None:
        experts = report.expert_use["experts"]
        lines += [
            "## MoLEx expert use (mean router weight)",
            "",
            f"{len(experts)} experts per adapted layer (`molex_gate_mean_0` .. in the scores), each file's router "
            "weights averaged over the layers: expert k of one layer is unrelated to expert k of another, so this "
            "is a summary (the training run's `molex_report.json` has them per layer).",
            "",
        ]
        lines += _mean_weight_tables(report.expert_use, "expert_use", "expert use")
    if report.warnings:
        lines += ["## Warnings", "", *[f"- {w}" for w in report.warnings], ""]
    lines += ["## Plots", "", "![DET](det.png)", "", "![ROC](roc.png)", "", "![scores per class](scores.png)", ""]
    return "\n".join(lines)


def _by_title(column: str, rows: Sequence[dict[str, Any]], spoofs: bool) -> str:
    """The heading of a ``by`` column's table: what its groups hold, as the fixed tables' headings say (``spoofs``:
    grouped as the attack column)."""
    name = markdown_cell(column)
    if spoofs:
        versus = "its partition's" if rows and "partition" in rows[0] else "all"
        return f"Per {name} (--by {name}: each value's spoofs vs {versus} bona fide)"
    return f"Per {name} (--by {name}: the trials of each value)"


def _mean_weight_tables(table: dict[str, Any], stem: str, what: str) -> list[str]:
    """Markdown per source and per attack of a mean-weight table (gate weights, MoLEx expert use) + its plots."""
    experts = table["experts"]
    lines: list[str] = []
    for key in ("source", "attack"):
        rows = table[f"by_{key}"]
        # several partitions: a row per partition and group, each partition's `all` its mean (_gate_tables)
        keys = ["partition", key] if rows and "partition" in rows[0] else [key]
        lines += [
            f"Per {key}" + (" and partition (the last row pools them all)" if len(keys) > 1 else "") + ":",
            "",
            "| " + " | ".join([*keys, *map(markdown_cell, experts), "n"]) + " |",
            "|" + "---|" * (len(experts) + len(keys) + 1),
        ]
        lines += [
            "| "
            + " | ".join([*(markdown_cell(r[k]) for k in keys), *(f"{r[e]:.3f}" for e in experts), str(r["n"])])
            + " |"
            for r in rows
        ]
        lines += ["", f"![{what} per {key}]({stem}_by_{key}.png)", ""]
        n_groups = sum(r[key] != "all" for r in rows)  # a group named `all` is `'all'`: these are the totals
        if n_groups > HEATMAP_MAX_GROUPS:  # plot_gate_heatmap draws only some: say which, or it reads as all of them
            lines += [
                f"The heatmap shows the {HEATMAP_MAX_GROUPS} of these {n_groups} groups with the most files (and the "
                f"`all` rows); the table above and `{stem}_by_{key}.csv` hold every group.",
                "",
            ]
    return lines


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """A table's rows as CSV text, as the report's CSV files hold them (the SASV-alone report's too)."""
    # a row's dict (the per-attack rows' min_tdcf: {"2019": .., "2021": ..}) as columns of its own, min_tdcf_2019 ..:
    # a cell holding "{'2019': 0.1, ...}" is no number a spreadsheet or pandas reads
    flat = [
        {
            f"{key}_{inner}" if isinstance(value, dict) else key: item
            for key, value in row.items()
            for inner, item in (value.items() if isinstance(value, dict) else [(None, value)])
        }
        for row in rows
    ]
    return pd.DataFrame(flat).to_csv(index=False)


# the mean-weight tables' file stems and what their heatmaps show: a mixture's gate, a MoLEx model's routers
_WEIGHT_TABLES = (("gate_weights", "gate weight"), ("expert_use", "MoLEx router weight"))
# written only when the evaluation has them; a rerun into the same folder removes the previous run's copy
_GATE_OUTPUTS = tuple(
    f"{stem}_by_{key}.{ext}" for stem, _ in _WEIGHT_TABLES for key in ("source", "attack") for ext in ("csv", "png")
)
# the tables and plots every countermeasure report writes beside report.json and report.md
REPORT_OUTPUTS = ("per_attack.csv", "per_source.csv", "det.png", "roc.png", "scores.png")
OPTIONAL_OUTPUTS = (
    "per_corpus.csv",
    "per_partition.csv",
    "per_codec.csv",
    "per_vocoder.csv",
    "per_attack_type.csv",
    *_GATE_OUTPUTS,
)


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md, the CSV tables and det.png/roc.png/scores.png; returns name -> path.

    Every file is first written complete into a hidden staging folder inside ``out_dir`` and then moved
    in place (``report.json`` last), so a crash or Ctrl-C leaves no half-written file and no new
    report.json beside an older run's tables; a table of an earlier run that this report lacks
    (per_corpus.csv, per_partition.csv, per_codec.csv, per_vocoder.csv, per_attack_type.csv, the gate-weight and
    expert-use tables and heatmaps) is removed rather than left to pass for this run's.
    """
    from sddkit.evaluation.gate_weights import plot_gate_heatmap
    from sddkit.evaluation.plots import plot_det, plot_roc, plot_score_histogram

    texts = {"report.md": render_markdown(report)}
    texts["per_attack.csv"] = csv_text(report.per_attack)
    texts["per_source.csv"] = csv_text(report.per_source)
    if len(report.per_corpus) > 1:
        texts["per_corpus.csv"] = csv_text(report.per_corpus)
    if report.per_partition is not None and len(report.per_partition) > 1:
        texts["per_partition.csv"] = csv_text(report.per_partition)
    if report.per_codec is not None:
        texts["per_codec.csv"] = csv_text(report.per_codec)
    if report.per_vocoder is not None:
        texts["per_vocoder.csv"] = csv_text(report.per_vocoder)
    if report.per_attack_type is not None:
        texts["per_attack_type.csv"] = csv_text(report.per_attack_type)
    heatmaps: dict[str, tuple[pd.DataFrame, str]] = {}  # file name -> (table indexed by its key, title)
    tables = {"gate_weights": report.gate_weights, "expert_use": report.expert_use}
    for stem, what in _WEIGHT_TABLES:
        if tables[stem] is None:
            continue
        for key in ("source", "attack"):
            frame = pd.DataFrame(tables[stem][f"by_{key}"])
            texts[f"{stem}_by_{key}.csv"] = frame.to_csv(index=False)
            if "partition" in frame.columns:  # a row per partition and group: each heatmap row says which, as the CSV
                frame = frame.assign(**{key: frame["partition"] + " / " + frame[key]}).drop(columns="partition")
            heatmaps[f"{stem}_by_{key}.png"] = (frame.set_index(key), f"mean {what} per {key}")
    texts["report.json"] = json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"

    def write(staging: Path) -> list[str]:
        for name, text in texts.items():
            (staging / name).write_text(text, encoding="utf-8")
        plot_det(report.curves, staging / "det.png")
        plot_roc(report.curves, staging / "roc.png", aucs=report.aucs)
        plot_score_histogram(report.curves["pooled"], staging / "scores.png", threshold=report.pooled["threshold"])
        for name, (frame, title) in heatmaps.items():
            plot_gate_heatmap(frame, staging / name, title=title)
        plots = ["det.png", "roc.png", "scores.png", *heatmaps]
        return [n for n in texts if n != "report.json"] + [*plots, "report.json"]

    out = Path(out_dir)
    names = publish_staged(out, "report", write, stale=OPTIONAL_OUTPUTS)
    return {name: out / name for name in ["report.json", *names[:-1]]}
