"""Input checks shared by every metric.

Convention: ``labels`` are class ids, 1 = bona fide (the positive / target class) and
0 = spoof; ``scores`` are real numbers where higher means more bona fide. Every metric
validates its inputs here so that a NaN score or a one-class subset fails loudly instead of
producing a silently meaningless number.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from sddkit.errors import SddkitError


class MetricError(SddkitError, ValueError):
    """A metric cannot be computed from the given labels/scores (one class, NaN, bad shape)."""


_Settings = TypeVar("_Settings")


def settings(value: object, kind: type[_Settings], name: str) -> _Settings:
    """``value``, or ``kind()`` (the defaults) when it is None; a MetricError naming ``name`` when it is anything
    else but a ``kind``. ``value or kind()`` let a threshold given in the place of the costs (``a_dcf(tar, non, spf,
    0.0)``) go unseen, as the defaults, and the minimum over all thresholds was returned for the a-DCF at 0; another
    number, or the costs of another metric, failed deep inside with "'float' object has no attribute 'c_miss'"."""
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise MetricError(f"{name} must be {kind.__name__}(...) (or None for the defaults), got {value!r}")
    return value


def host_values(values: object) -> object:
    """``values`` as numpy can read them: a torch tensor as a numpy array (detached, on the CPU, bfloat16 in
    float32); anything else as given. A plain training loop hands the metrics ``output.score`` as it is, which
    numpy refused with torch's "Can't call numpy() on Tensor that requires grad" (or, on a GPU, "scores are not
    numbers: can't convert cuda:0 device type tensor"); torch is not imported here: the metrics stay torch-free."""
    if type(values).__module__.partition(".")[0] != "torch" or not hasattr(values, "detach"):
        return values
    tensor = values.detach().cpu()
    # numpy has no bfloat16: float32 holds every bfloat16 value exactly
    return (tensor.float() if str(tensor.dtype) == "torch.bfloat16" else tensor).numpy()


def as_scores(scores: object, name: str = "scores") -> np.ndarray:
    """(N,) float64 copy of ``scores`` (a sequence, numpy array or torch tensor on any device); raises MetricError
    if not 1-D or not finite."""
    try:
        arr = np.asarray(host_values(scores), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{name} are not numbers: {exc}") from None
    if arr.ndim != 1:
        raise MetricError(f"{name} must be a 1-D array, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        # say where and what to do: "e.g. [nan]" alone left a user of a million trials to hunt for them
        first = int(np.flatnonzero(bad)[0])
        raise MetricError(
            f"{name} contain {int(bad.sum())} non-finite value(s) (NaN or inf), e.g. {arr[bad][:3]} (first at index "
            f"{first}); every metric needs finite scores: drop or rescore a trial whose score is NaN, and give an "
            "infinite one a finite value beyond every finite score (e.g. np.clip(scores, -1e6, 1e6) for log-odds of a "
            "probability of 0 or 1), which leaves the ranking metrics (EER, minDCF, AUC) as they were"
        )
    return arr


def check_binary(labels: object, scores: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate a labelled score set: ``(labels (N,) bool, scores (N,) float64)``.

    Either may be a sequence, a numpy array or a torch tensor (on any device, with or without a graph). Raises
    MetricError on a length mismatch, labels other than 0/1, non-finite scores, or when either class is missing
    (every metric here needs both).
    """
    y = np.asarray(host_values(labels))
    s = as_scores(scores)
    if y.ndim != 1 or y.shape != s.shape:
        raise MetricError(
            f"labels {y.shape} and scores {s.shape} must be 1-D arrays of the same length{_class_scores_hint(y)}"
        )
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            try:
                found = np.unique(y)[:5].tolist()
            except TypeError:  # an object array mixing types (e.g. None among ints) cannot be sorted
                found = list(dict.fromkeys(map(repr, y.tolist())))[:5]
            text = [v for v in found if isinstance(v, str)]
            hint = ""
            if text and set(text) <= {"0", "1"}:  # e.g. a CSV column read as text: "found ['0', '1']" read as a riddle
                hint = " (text, not numbers: convert them, e.g. np.asarray(labels, dtype=int))"
            hint = hint or _class_scores_hint(y)
            raise MetricError(f"labels must be 0 (spoof) or 1 (bona fide); found {found}{hint}")
        y = y.astype(bool)
    if y.size == 0:
        raise MetricError("no trials: labels and scores are empty")
    n_bona = int(y.sum())
    if n_bona == 0 or n_bona == len(y):
        present = "bona fide" if n_bona else "spoof"
        raise MetricError(f"need both bona fide and spoof trials; only {present} given ({len(y)} trials)")
    return y, s


def _class_scores_hint(y: np.ndarray) -> str:
    """A hint when ``labels`` look like scores: the ASVspoof packages' ``compute_eer(target_scores,
    nontarget_scores)`` takes the two classes' scores, and ``eer(bona, spoof)`` called the same way was answered
    only with "labels must be 0 (spoof) or 1 (bona fide); found [-3.1, ...]" or a length mismatch."""
    if y.ndim != 1 or y.dtype.kind != "f":
        return ""
    finite = y[np.isfinite(y)]  # NaN labels are missing labels, not scores
    if not np.isin(finite, (0, 1), invert=True).any():
        return ""
    return (
        " (these labels look like scores: the metrics take (labels, scores), not (bona fide scores, spoof scores) as "
        "the ASVspoof compute_eer; build them with sddkit.metrics.inputs.from_classes(bona, spoof))"
    )


def split_classes(labels: object, scores: object) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(bona fide scores, spoof scores)``."""
    y, s = check_binary(labels, scores)
    return s[y], s[~y]


def from_classes(bona: object, spoof: object) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`split_classes`: ``(labels (N,) int64, scores (N,) float64)``."""
    b = as_scores(bona, "bona fide scores")
    f = as_scores(spoof, "spoof scores")
    labels = np.concatenate([np.ones(b.size, dtype=np.int64), np.zeros(f.size, dtype=np.int64)])
    return labels, np.concatenate([b, f])
