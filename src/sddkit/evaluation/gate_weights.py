"""Gate-weight analysis for detector mixtures: mean expert weight per source and per attack.

Input: the utterance table of the scored files and their gate weights ``(N, E)`` (from
``DetectorOutput.stats["gate_weights"]`` or the ``gate_w*`` columns of ``sdd score`` output).
Output: a table (rows = group values, columns = experts, plus the count), a CSV, and a heatmap PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError

# how far a row of gate weights may sum from 1: bfloat16 weights (8 significant bits) round each by up to 0.4 %
_SUM_TOLERANCE = 1e-2
# about the width, in inches, of one character of a tick label at matplotlib's default 10 pt font
_CHAR_IN = 0.07


def as_float64(values: object) -> np.ndarray:
    """``values`` as a float64 numpy array; a torch tensor as it comes out of a model too (on any device, in any
    floating dtype, bfloat16 included, with or without autograd history), which ``np.asarray`` refuses."""
    if hasattr(values, "detach"):  # a torch tensor: numpy knows neither bfloat16 nor autograd nor GPU memory
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


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
    weights = as_float64(weights)
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


def plot_gate_heatmap(weights_table: pd.DataFrame, path: str | Path, title: str = "mean gate weight") -> Path:
    """Heatmap PNG of a :func:`gate_weight_table` (the ``n`` column is left out).

    Drawn on matplotlib's Agg canvas without pyplot, so it neither needs a display nor switches the
    caller's backend (``matplotlib.use("Agg")`` did, e.g. turning off a notebook's inline plots).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sddkit.evaluation.plots import plain_text

    data = weights_table.drop(columns=["n"], errors="ignore")
    if data.size == 0:
        raise ProtocolError(f"nothing to draw: the gate-weight table is {data.shape[0]} x {data.shape[1]}")
    rows = [plain_text(i) for i in data.index]
    # the row labels and the title take room of their own: a width of the expert count alone squeezed two experts'
    # cells to slivers beside labels such as `YouTube-voice-clone-unknown` and cut the title off at the right edge
    width = max(1.2 + 1.1 * data.shape[1] + _CHAR_IN * max(len(r) for r in rows), _CHAR_IN * 1.3 * len(title) + 1.5)
    fig = Figure(figsize=(width, 1.0 + 0.4 * data.shape[0]), layout="constrained")  # it leaves the colorbar room
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
