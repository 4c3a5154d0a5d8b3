"""Logistic score calibration: ``llr = a * raw + b``.

A detector's raw score (``logits[:, 1] - logits[:, 0]``) ranks well but its scale is arbitrary.
Calibration maps it affinely to a log-likelihood ratio ``log p(x | bona fide) / p(x | spoof)``
so that thresholds and probabilities mean something, and Cllr / actDCF are good.

The map is fitted on validation scores by *prior-weighted* logistic regression, as in the
BOSARIS toolkit and the ASVspoof 5 evaluation practice. For a target (bona fide) prior ``P``
with ``lo = logit(P)`` the objective is

    C(a, b) = P     * mean_bonafide[ log(1 + exp(-(llr + lo))) ]
            + (1-P) * mean_spoof   [ log(1 + exp(  llr + lo )) ]     (divided by log 2)

i.e. the posterior log-odds at prior ``P`` is ``llr + lo``. Weighting each class by its prior
(not its count) makes the fit independent of the class balance of the validation set, and
because ``logit(P)`` is added inside the loss (equivalently: subtracted from the fitted
intercept) the returned ``a, b`` give a **prior-free** LLR: the prior only chooses which
operating region the fit cares most about. At ``P = 0.5`` the objective is exactly Cllr.

A small L2 penalty on the slope keeps the fit finite when the validation scores separate the
classes perfectly (the unpenalised optimum is then at ``a -> inf``). It is scaled by the cost of an
uninformative system at ``P`` (the prior's entropy in bits, 1 at ``P = 0.5``), as the objective itself
shrinks with it: an unscaled penalty would outweigh the data at priors far from 0.5 (at ``P = 1e-4`` it
pulled the slope ~10 % and the offset ~0.5 nats off the unpenalised fit of overlapping scores).

The same objective with several scores per trial, ``llr = w . s + b`` (one weight per system, the penalty on
each weight of a standardised score), is the linear score fusion of BOSARIS (:func:`fit_linear_llr`, ``sdd fuse``);
:func:`fit_calibration` is its one-system case and shares its solver.
"""

from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from sddkit.errors import ProtocolError

if TYPE_CHECKING:
    import torch

_LOG2 = float(np.log(2.0))
# what Calibration.apply maps, each to its own kind (torch named as a string: this module does not import it)
_Scores = TypeVar("_Scores", float, np.ndarray, "torch.Tensor")


@dataclass
class Calibration:
    """An affine map from raw detector scores to calibrated LLRs (higher = more bona fide).

    ``prior``, ``n_bonafide`` and ``n_spoof`` record how the map was fitted (``prior`` is None
    for the identity map that an uncalibrated model carries).
    """

    a: float = 1.0
    b: float = 0.0
    prior: float | None = None
    n_bonafide: int = 0
    n_spoof: int = 0

    def __post_init__(self):
        # plain Python numbers: a numpy scalar (a prior of np.float32(0.1)) is no JSON number, and the model
        # directory the calibration is written to could not be written, or read back
        for name in ("a", "b", "prior"):
            value = getattr(self, name)
            if value is None and name == "prior":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"calibration {name} must be a number, got {value!r}")
            setattr(self, name, float(value))
        for name in ("n_bonafide", "n_spoof"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # not 5.0, '5' or True
                raise TypeError(f"calibration {name} must be a whole number of scores, got {value!r}")
            setattr(self, name, operator.index(value))
        if not (np.isfinite(self.a) and np.isfinite(self.b)):
            raise ValueError(f"calibration a, b must be finite, got a={self.a}, b={self.b}")
        if self.a <= 0:
            # a non-positive slope would flip the score convention (higher = more bona fide)
            raise ValueError(f"calibration slope a must be positive, got {self.a}")
        if self.prior is not None and not 0.0 < self.prior < 1.0:
            raise ValueError(f"calibration prior must be in (0, 1), got {self.prior}")
        if self.n_bonafide < 0 or self.n_spoof < 0:
            raise ValueError(
                f"calibration n_bonafide and n_spoof count scores (>= 0), got {self.n_bonafide} and {self.n_spoof}"
            )

    @property
    def is_identity(self) -> bool:
        return self.a == 1.0 and self.b == 0.0

    def apply(self, raw: _Scores) -> _Scores:
        """raw score(s) -> calibrated LLR(s); works on floats, numpy arrays and torch tensors (of the same kind out:
        a float of a float or an int)."""
        return raw * self.a + self.b


def logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def _split(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    try:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"calibration scores are not numbers: {exc}") from None
    n_labels = np.asarray(labels).size
    if scores.size != n_labels:
        raise ProtocolError(f"{scores.size} scores but {n_labels} labels")
    bad = ~np.isfinite(scores)
    if bad.any():
        # e.g. the empty score of an error row of `sdd score` output, read as NaN: say how many and where
        where = np.flatnonzero(bad)
        raise ProtocolError(
            f"calibration scores must be finite: {where.size} of {scores.size} are NaN or inf (at index "
            f"{', '.join(map(str, where[:5].tolist()))}{', ...' if where.size > 5 else ''}); leave out the files "
            "that were not scored"
        )
    is_bona = bonafide_mask(labels)
    tar, non = scores[is_bona], scores[~is_bona]
    if tar.size == 0 or non.size == 0:
        raise ProtocolError(f"calibration needs both classes; got {tar.size} bona fide and {non.size} spoof scores")
    return tar, non


def bonafide_mask(labels) -> np.ndarray:
    """(N,) bool: which of ``labels`` are bona fide, of 1/0 or 'bonafide'/'spoof' (or any word of
    :data:`sddkit.data.table.BONAFIDE_SPOOF_WORDS`: real/fake, ..., in any case); ProtocolError naming the others."""
    given = labels
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype == object and any(isinstance(v, str) for v in labels.tolist()):
        # e.g. a pandas column of 'bonafide'/'spoof' (object dtype): compare as strings, not numbers
        labels = labels.astype(str)
    if labels.dtype.kind in "US":
        # the words a labels CSV, a labelled folder and an utterance table take (real/fake, bona-fide, any case):
        # a labels column read from such a file was refused here for its "fake"
        from sddkit.data.table import OTHER_LABEL_WORDS, label_word

        words, at = np.unique(labels, return_inverse=True)
        read = np.array([label_word(w) or "" for w in words.tolist()], dtype=object)
        read = read[at.reshape(-1)]
        bad = read == ""
        if bad.any():
            found = np.unique(labels[bad])[:5].tolist()
            hint = ""
            not_text = _not_text(given)
            if not_text:  # converted to text with the text ones: a 1 read '1', a missing label (NaN) 'nan'
                hint = (
                    f" (labels that are not text among text ones: {', '.join(not_text)}; give every label as "
                    "'bonafide'/'spoof', or every one as a number 1/0)"
                )
            elif set(found) <= {"0", "1"}:  # a CSV column read as text: "or 1/0; found ['0' '1']" read as a riddle
                hint = " (text, not numbers: give 1/0 as numbers)"
            raise ProtocolError(
                f"labels must be 'bonafide'/'spoof' (or {OTHER_LABEL_WORDS}, in any case) or 1/0; found {found}{hint}"
            )
        is_bona = read == "bonafide"
    else:
        bad = ~np.isin(labels, [0, 1])
        if bad.any():
            found = list(dict.fromkeys(map(repr, labels[bad].tolist())))[:5]  # repr: also a None, which sorts with none
            raise ProtocolError(f"numeric labels must be 1 (bona fide) or 0 (spoof); found {', '.join(found)}")
        is_bona = labels == 1
    return is_bona


def _not_text(labels: object) -> list[str]:
    """The distinct labels (at most 5, as written) that are not text, of labels that numpy converts to text whole
    (``np.asarray(['spoof', nan])`` is ``['spoof', 'nan']``)."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "US":
        return []
    values = np.asarray(labels, dtype=object).reshape(-1).tolist()
    return list(dict.fromkeys(repr(v) for v in values if not isinstance(v, str)))[:5]


def weighted_cllr(llr_bonafide, llr_spoof, prior: float = 0.5) -> float:
    """Prior-weighted logistic cost (bits) of LLRs; equals Cllr at ``prior = 0.5``."""
    if not 0.0 < prior < 1.0:
        raise ProtocolError(f"prior must be in (0, 1), got {prior}")
    lo = logit(prior)
    tar = np.asarray(llr_bonafide, dtype=np.float64) + lo
    non = np.asarray(llr_spoof, dtype=np.float64) + lo
    if tar.size == 0 or non.size == 0:
        raise ProtocolError(f"weighted Cllr needs both classes; got {tar.size} bona fide and {non.size} spoof LLRs")
    if np.isnan(tar).any() or np.isnan(non).any():
        # a NaN LLR has no cost: the mean would be NaN, a number that reads like a result
        raise ProtocolError("weighted Cllr of NaN LLRs: the LLRs must be numbers")
    cost = prior * np.mean(np.logaddexp(0.0, -tar)) + (1 - prior) * np.mean(np.logaddexp(0.0, non))
    return float(cost / _LOG2)


def fit_calibration(scores, labels, *, prior: float = 0.5, l2: float = 1e-6) -> Calibration:
    """Fit ``llr = a * raw + b`` by prior-weighted logistic regression (see module docstring).

    scores: (N,) raw scores; labels: (N,) 1/0 or 'bonafide'/'spoof' (or any word of
    :data:`sddkit.data.table.BONAFIDE_SPOOF_WORDS`: real/fake, ..., in any case); prior: target (bona fide)
    prior of the objective, in (0, 1); l2: penalty (>= 0) on the slope of the standardised score,
    relative to the objective normalised by the prior's entropy (see module docstring); with ``l2=0``
    scores that separate the classes are refused, as their fit has no finite optimum. Scores all the same but for
    float rounding (:data:`ROUNDING_SPREAD`: a model trained to a constant) are refused, as all equal ones are.
    Returns a prior-free :class:`Calibration`.
    """
    if not 0.0 < prior < 1.0:
        raise ProtocolError(f"calibration prior must be in (0, 1), got {prior}")
    if not (np.isfinite(l2) and l2 >= 0):
        raise ProtocolError(f"calibration l2 must be finite and >= 0, got {l2}")
    tar, non = _split(scores, labels)
    _refuse_rounding_spread(tar, non)
    if l2 == 0 and non.max() <= tar.min():
        # (quasi-)complete separation: the loss keeps falling as the slope grows, and the optimiser would stop
        # wherever it underflows, at an arbitrary slope
        raise ProtocolError(
            f"calibration scores separate the classes (every spoof score <= {non.max():.6g} <= every bona fide "
            "score): with l2=0 the fit has no finite optimum (the slope grows without bound); use l2 > 0"
        )
    (w,), c, (mu,), (sigma,) = _fit_standardised(
        tar[:, None], non[:, None], prior=prior, l2=l2, labels=("calibration scores",), task="calibration"
    )
    if w <= 0:
        med_tar, med_non = float(np.median(tar)), float(np.median(non))
        if med_tar > med_non:
            # the logistic loss grows linearly with a score's distance: one far score on the wrong side outweighs
            # many well-ranked ones, and "not higher for bona fide" would send the reader after the labels
            raise ProtocolError(
                f"calibration fit gives a non-positive slope ({w:.4g}) although bona fide scores are higher in the "
                f"median ({med_tar:.4g} vs {med_non:.4g} for spoof): a few extreme scores on the wrong side (scores "
                f"span [{min(tar.min(), non.min()):.4g}, {max(tar.max(), non.max()):.4g}]) outweigh the rest; look "
                "for outliers (e.g. files the model fails on) in the validation scores"
            )
        raise ProtocolError(
            f"calibration fit gives a non-positive slope ({w:.4g}): the raw scores are not higher for bona fide "
            "speech on this validation set (wrong labels, or an untrained/inverted model)"
        )
    w, c = float(w), float(c)
    return Calibration(a=w / sigma, b=c - w * mu / sigma, prior=prior, n_bonafide=int(tar.size), n_spoof=int(non.size))


# a spread of raw scores at most this fraction of their size is float rounding, not a ranking: a float32 model that
# scores every file alike (trained to a constant) still gives scores that differ in their 5th-7th digit
ROUNDING_SPREAD = 1e-4


def _refuse_rounding_spread(tar: np.ndarray, non: np.ndarray) -> None:
    """Refuse calibration scores that differ only by float rounding (a spread of at most :data:`ROUNDING_SPREAD` of
    their size). Their fit is of noise: the slope of the standardised scores maps a spread of ~1e-7 to whole LLR units,
    so that another machine's or the ONNX export's rounding of the same file moves its LLR, and a decision; a fit whose
    slope came out negative was refused as "a few extreme scores ... outweigh the rest", sending the reader after
    outliers among scores that all read the same."""
    low, high = min(tar.min(), non.min()), max(tar.max(), non.max())
    with np.errstate(over="ignore"):  # scores near the float limit: their spread is no rounding
        span, size = float(high - low), float(max(abs(low), abs(high)))
    if not 0.0 < span <= ROUNDING_SPREAD * size:  # all equal (0) is refused by the fit, naming the scores
        return
    raise ProtocolError(
        f"calibration scores are all the same but for float rounding: they span [{low:.9g}, {high:.9g}], "
        f"{span / size:.2g} of their size: the model scores every file alike (trained to a constant), and a "
        "calibration would map rounding noise to LLRs; train it again (its val EER tells whether it "
        "learnt anything) and calibrate the new model"
    )


def fit_linear_llr(
    bonafide, spoof, *, prior: float = 0.5, l2: float = 1e-6, labels=None, task: str = "fusion"
) -> tuple[np.ndarray, float]:
    """Fit ``llr = scores @ weights + bias`` to several scores per trial by the prior-weighted logistic regression of
    :func:`fit_calibration` (its objective, its penalty, on every weight, each of a standardised input; the module
    docstring): the linear fusion of BOSARIS. ``fit_calibration`` is its one-input case.

    bonafide: (Nt, D) and spoof: (Nn, D) finite scores, one column per input; labels: D noun phrases naming the
    inputs in messages (default "input k scores"); task: the word messages start with. Returns ((D,) weights on the
    scores as given, bias). Raises ProtocolError when an input's scores are all equal or too widely spread for
    float64, or when the fit diverges. Weights may be negative or 0: an input that adds nothing, given the others,
    earns none.
    """
    tar = np.asarray(bonafide, dtype=np.float64)
    non = np.asarray(spoof, dtype=np.float64)
    if tar.ndim != 2 or non.ndim != 2 or tar.shape[1] != non.shape[1] or tar.shape[1] == 0:
        raise ProtocolError(
            f"{task} scores must be (trials, inputs) arrays of one width, got {tar.shape} and {non.shape}"
        )
    if tar.shape[0] == 0 or non.shape[0] == 0:
        raise ProtocolError(f"{task} needs both classes; got {tar.shape[0]} bona fide and {non.shape[0]} spoof trials")
    if not 0.0 < prior < 1.0:
        raise ProtocolError(f"{task} prior must be in (0, 1), got {prior}")
    if not (np.isfinite(l2) and l2 > 0):
        # l2 = 0 and inputs that separate the classes: no finite optimum (fit_calibration checks its one input)
        raise ProtocolError(f"{task} l2 must be finite and > 0, got {l2}")
    if not (np.isfinite(tar).all() and np.isfinite(non).all()):
        raise ProtocolError(f"{task} scores must be finite (NaN or inf among them)")
    labels = tuple(labels) if labels is not None else tuple(f"input {k} scores" for k in range(tar.shape[1]))
    weights, c, mu, sigma = _fit_standardised(tar, non, prior=prior, l2=l2, labels=labels, task=task)
    return weights / sigma, float(c - (weights * mu / sigma).sum())


def _fit_standardised(
    tar: np.ndarray, non: np.ndarray, *, prior: float, l2: float, labels: tuple[str, ...], task: str
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The solver of :func:`fit_calibration` and :func:`fit_linear_llr`: (weights, bias) fitted on the inputs
    standardised (each column of ``tar`` (Nt, D) and ``non`` (Nn, D) by its pooled mean and std), with those (D,)
    means and stds, for the caller to map back to the scores as given."""
    # standardise for conditioning; the fitted (w, c) on z are mapped back by the caller
    pooled = np.concatenate([tar, non])
    mu, sigma = np.empty(pooled.shape[1]), np.empty(pooled.shape[1])
    for k, label in enumerate(labels):
        column = pooled[:, k]
        # all-equal is tested on the values: the rounded mean of equal values can differ from them, which
        # leaves a std of ~1e-17 instead of 0 and would turn the fitted slope into ~1e16
        if column.min() == column.max():
            raise ProtocolError(f"{label} are all equal; cannot fit a slope")
        with np.errstate(over="ignore", under="ignore"):  # checked below, with a message, not a RuntimeWarning
            mu[k], sigma[k] = float(column.mean()), float(column.std())
        if not (np.isfinite(mu[k]) and np.isfinite(sigma[k]) and sigma[k] > 0):
            # the squares of the deviations over- or underflow float64 (scores beyond ~1e150 or within ~1e-160):
            # z would be all 0 (a "non-positive slope") or a division by zero
            raise ProtocolError(
                f"{label} span [{column.min():.6g}, {column.max():.6g}]: too wide or too narrow a spread to "
                "fit in float64 (their standard deviation is not a positive finite number); rescale them"
            )
    # (D, N): each input's scores contiguous, so that the sums over trials are numpy's pairwise ones, as for one input
    zt = np.ascontiguousarray(((tar - mu) / sigma).T)
    zn = np.ascontiguousarray(((non - mu) / sigma).T)
    lo = logit(prior)
    # the objective of an uninformative system is the prior's entropy (bits): the objective is divided by it, which
    # gives the penalty its weight against the data at any prior, and keeps the gradients the optimiser stops on
    # of order 1 (at P = 1e-12 they were below its tolerance at the start, and the fit returned its starting point)
    entropy = float(-(prior * np.log2(prior) + (1 - prior) * np.log1p(-prior) / _LOG2))
    wt, wn = prior / (tar.shape[0] * entropy), (1 - prior) / (non.shape[0] * entropy)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, c = theta[:-1], theta[-1]
        st = w @ zt + c + lo  # posterior log-odds at the chosen prior
        sn = w @ zn + c + lo
        loss = wt * np.logaddexp(0.0, -st).sum() + wn * np.logaddexp(0.0, sn).sum() + (l2 * w * w).sum()
        # d/ds softplus(-s) = -sigmoid(-s); d/ds softplus(s) = sigmoid(s)
        gt = -wt * _sigmoid(-st)
        gn = wn * _sigmoid(sn)
        grad = np.append((gt * zt).sum(axis=1) + (gn * zn).sum(axis=1) + 2 * l2 * w, gt.sum() + gn.sum())
        return float(loss), grad

    from scipy.optimize import minimize  # fitting only: scoring with a stored calibration needs no scipy

    # tolerances far below scipy's defaults (gtol 1e-5): those stop up to ~0.03 nats of LLR away from
    # the minimum when the objective is flat (priors far from 0.5); a few parameters make this cheap
    x0 = np.append(np.full(zt.shape[0], 1.0 / zt.shape[0]), 0.0)
    res = minimize(objective, x0=x0, jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15})
    if not np.isfinite(res.x).all():
        raise ProtocolError(f"{task} fit diverged: {res.message}")
    return res.x[:-1].copy(), float(res.x[-1]), mu, sigma


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))
