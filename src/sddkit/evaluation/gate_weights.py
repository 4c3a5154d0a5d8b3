"""Gate-weight analysis for detector mixtures: mean expert weight per source and per attack.

Input: the utterance table of the scored files and their gate weights ``(N, E)`` (from
``DetectorOutput.stats["gate_weights"]`` or the ``gate_w*`` columns of ``sdd score`` output).
Output: a table (rows = group values, columns = experts, plus the count), a CSV, and a heatmap PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError

# how far a row of gate weights may sum from 1: bfloat16 weights (8 significant bits) round each by up to 0.4 %
_SUM_TOLERANCE = 1e-2
# about the width, in inches, of one character of a tick label at matplotlib's default 10 pt font
_CHAR_IN = 0.07
# the most groups a heatmap draws (its total rows besides): a row is 0.4 in, so 1,500 sources drew a PNG 72,000 px
# tall (over a browser's limit, blank in report.md) in minutes of sdd eval; the CSV and report.md hold every group
HEATMAP_MAX_GROUPS = 60


def as_float64(values: object, what: str = "values") -> np.ndarray:
    """``values`` as a float64 numpy array; a torch tensor as it comes out of a model too (on any device, in any
    floating dtype, bfloat16 included, with or without autograd history), which ``np.asarray`` refuses.
    ``what``: their name in the ProtocolError raised for rows of different lengths or cells that are no numbers."""
    if hasattr(values, "detach"):  # a torch tensor: numpy knows neither bfloat16 nor autograd nor GPU memory
        values = values.detach().cpu().double().numpy()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        # numpy's bare "inhomogeneous shape" or "could not convert string to float" escaped sddkit's error handling:
        # e.g. gate weights gathered from the results of two mixtures with other expert counts
        rows = _row_kinds(values)
        if rows is not None and len(set(rows)) > 1:
            first = next(i for i, row in enumerate(rows) if row != rows[0])
            # weights are per expert: rows that differ most likely come from two models (or a model without them)
            hint = "" if what == "scores" else " (one value per expert: results of models with other experts mixed?)"
            raise ProtocolError(
                f"{what} must be rows of one length; row 0 holds {rows[0]} and row {first} {rows[first]}{hint}"
            ) from None
        raise ProtocolError(f"{what} must be numbers: {exc}") from None


def _row_kinds(values: Any) -> list[str] | None:
    """What each row of a list of rows holds (``2 value(s)``, ``a NoneType``); None when ``values`` is no list of rows
    (text, a number, rows of text)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        return None
    kinds = []
    for row in values:
        if isinstance(row, (str, bytes)):
            return None
        kinds.append(f"{len(row)} value(s)" if hasattr(row, "__len__") else f"a {type(row).__name__}")
    return kinds if any(k.endswith(" value(s)") for k in kinds) else None


def gate_weight_table(
    table: UtteranceTable,
    weights: np.ndarray,
    by: str = "source",
    expert_names: Sequence[str] | None = None,
    *,
    what: str = "gate weights",
) -> pd.DataFrame:
    """Mean gate weight of each expert for each value of column ``by`` (and an ``all`` row).

    weights: (N, E) array-like, or the tensor ``DetectorOutput.stats["gate_weights"]`` as it comes (on any
    device, in any floating dtype, bfloat16 included, with or without autograd history); N >= 1 files, each row
    its file's weights (>= 0, summing to 1 within 0.01), else ProtocolError. ``what``: the weights' name in those
    errors (e.g. a MoLEx model's router weights, tabulated alike)."""
    weights = as_float64(weights, what)
    if weights.ndim != 2 or weights.shape[0] != len(table):
        raise ProtocolError(f"{what} must be (N={len(table)}, E >= 1); got {weights.shape}")
    if not np.isfinite(weights).all():
        bad = int((~np.isfinite(weights).all(axis=1)).sum())
        raise ProtocolError(f"{what} must be finite; {bad} of {len(table)} rows hold NaN or inf")
    if weights.shape[1] == 0:
        raise ProtocolError(f"{what} have no experts (shape (N, 0))")
    names = list(expert_names) if expert_names is not None else [f"expert{i}" for i in range(weights.shape[1])]
    if len(names) != weights.shape[1]:
        raise ProtocolError(f"{len(names)} expert names for {weights.shape[1]} experts")
    names = [str(n) for n in names]
    if len(set(names)) != len(names) or {"n", by} & set(names):
        # a repeated name, or one equal to the count column or the group column, would merge columns
        raise ProtocolError(f"expert names must be distinct and differ from 'n' and {by!r}; got {names}")
    if weights.shape[0] == 0:  # the means of no files: a NaN `all` row (and numpy warnings), drawn as a blank heatmap
        raise ProtocolError(f"{what} of no files (shape (0, E)): nothing to tabulate")
    # each row is one file's distribution over the experts; anything else (a mixture's expert_scores, the gate's
    # logits) tabulated as weights gave means that are no weights, and a heatmap clipped to [0, 1]
    sums = weights.sum(axis=1)
    off = np.flatnonzero((weights < 0).any(axis=1) | (np.abs(sums - 1.0) > _SUM_TOLERANCE))
    if off.size:
        i = int(off[0])
        # the hint fits a mixture's score file, whose expert_score columns sit beside its gate_w ones
        hint = "; expert scores or gate logits are not gate weights" if what == "gate weights" else ""
        raise ProtocolError(
            f"{what} must be each file's weights over the experts (>= 0, summing to 1); {off.size} of "
            f"{len(weights)} rows are not, e.g. row {i}: {weights[i].tolist()} (sum {sums[i]:.6g}){hint}"
        )
    groups = table.column(by)
    if "all" in {str(g) for g in groups}:  # the total row is named `all`: two rows of that name would be ambiguous
        raise ProtocolError(f"column {by!r} has a group named 'all', the name of the table's total row; rename it")
    df = pd.DataFrame(weights, columns=names)
    df[by] = groups
    # dropna=False: a row whose group value is missing (NaN in a numeric column) gets a row of its own
    # instead of vanishing from the groups while the `all` row still counts it
    grouped = df.groupby(by, sort=True, dropna=False)
    out = grouped[names].mean()
    out["n"] = grouped.size()
    total = pd.DataFrame([[*weights.mean(axis=0), len(df)]], columns=[*names, "n"], index=["all"])
    return pd.concat([out, total]).rename_axis(by)


def is_total_row(label: object) -> bool:
    """Whether a gate-weight table's row label is a total: ``all``, or ``PARTITION / all`` as sdd eval's heatmaps
    label a partition's (a group itself named ``all`` is quoted, ``'all'``, or refused)."""
    text = str(label)
    return text == "all" or text.endswith(" / all")


def heatmap_rows(weights_table: pd.DataFrame, max_groups: int = HEATMAP_MAX_GROUPS) -> pd.DataFrame:
    """The rows a heatmap draws: every row when there are at most ``max_groups`` groups, else the ``max_groups``
    groups with the most files (the ``n`` column; the first ones without it) and every total row, in table order."""
    total = np.array([is_total_row(i) for i in weights_table.index], dtype=bool)
    if int((~total).sum()) <= max_groups:
        return weights_table
    groups = np.flatnonzero(~total)
    if "n" in weights_table.columns:  # a stable sort: of groups alike in size, the first in the table
        sizes = weights_table["n"].to_numpy()[groups]
        groups = groups[np.argsort(-sizes, kind="stable")]
    keep = total.copy()
    keep[groups[:max_groups]] = True
    return weights_table[keep]


def plot_gate_heatmap(weights_table: pd.DataFrame, path: str | Path, title: str = "mean gate weight") -> Path:
    """Heatmap PNG of a :func:`gate_weight_table` (the ``n`` column is left out).

    With more than :data:`HEATMAP_MAX_GROUPS` groups it draws those with the most files and the total rows
    (:func:`heatmap_rows`), and its title says so: every group's row would make a picture too tall to view.

    Drawn on matplotlib's Agg canvas without pyplot, so it neither needs a display nor switches the
    caller's backend (``matplotlib.use("Agg")`` did, e.g. turning off a notebook's inline plots).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sddkit.evaluation.plots import plain_text

    shown = heatmap_rows(weights_table)
    data = shown.drop(columns=["n"], errors="ignore")
    if data.size == 0:
        raise ProtocolError(f"nothing to draw: the gate-weight table is {data.shape[0]} x {data.shape[1]}")
    if len(shown) < len(weights_table):
        n_groups = sum(not is_total_row(i) for i in weights_table.index)
        drawn = sum(not is_total_row(i) for i in shown.index)
        title = f"{title}\n({drawn} of {n_groups} groups: those with the most files; the table holds all)"
    rows = [plain_text(i) for i in data.index]
    # the row labels and the title take room of their own: a width of the expert count alone squeezed two experts'
    # cells to slivers beside labels such as `YouTube-voice-clone-unknown` and cut the title off at the right edge
    longest = max(len(line) for line in title.splitlines())
    width = max(1.2 + 1.1 * data.shape[1] + _CHAR_IN * max(len(r) for r in rows), _CHAR_IN * 1.3 * longest + 1.5)
    height = 1.0 + 0.4 * data.shape[0] + 0.25 * (title.count("\n"))  # a line of title more: room for it
    fig = Figure(figsize=(width, height), layout="constrained")  # it leaves the colorbar room
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(data.to_numpy(), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(data.shape[1]), [plain_text(c) for c in data.columns], rotation=30, ha="right")
    ax.set_yticks(range(data.shape[0]), rows)
    for (r, c), v in np.ndenumerate(data.to_numpy()):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
