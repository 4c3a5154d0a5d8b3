"""DET plot geometry: the drawn curve passes through the operating points it is built from."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from test_evalplots_review4 import _capture_figures

import sddkit.evaluation.plots as plots_module
from sddkit.metrics.det import det_curve, eer_from_curve


def _drawn_lines(tmp_path, monkeypatch, curves) -> list:
    figures = _capture_figures(monkeypatch)
    plots_module.plot_det(curves, tmp_path / "det.png")
    return [line for line in figures[0].axes[0].lines if not line.get_label().startswith("_")]


def _crossing(x: np.ndarray, y: np.ndarray) -> float:
    """The rate at which a drawn probit polyline first crosses miss = fa."""
    d = y - x
    i = int(np.flatnonzero(np.sign(d[1:]) != np.sign(d[:-1]))[0])
    t = d[i] / (d[i] - d[i + 1])
    return float(norm.cdf(x[i] + t * (x[i + 1] - x[i])))


def test_a_det_curve_of_tied_scores_crosses_miss_equals_fa_at_its_eer(tmp_path, monkeypatch):
    # every score tied: the operating points between accept-all and reject-all (ties broken at random) run along
    # miss = 1 - fa, which meets miss = fa at 50 %, the reported EER; a straight probit segment met it at ~20 %
    y = np.array([1] * 5 + [0] * 5)
    curve = det_curve(y, np.zeros(10))
    assert eer_from_curve(curve).eer == 0.5
    (line,) = _drawn_lines(tmp_path, monkeypatch, {"tied": curve})
    x, yv = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    assert np.isfinite(x).all() and np.isfinite(yv).all()
    assert abs(_crossing(x, yv) - 0.5) < 0.01
    # inside the axes every drawn point lies on the rate-space line miss = 1 - fa
    inside = (np.abs(x) < 1.6) & (np.abs(yv) < 1.6)
    assert inside.sum() > 10
    np.testing.assert_allclose(norm.cdf(x[inside]) + norm.cdf(yv[inside]), 1.0, atol=1e-9)


def test_a_partly_tied_run_is_drawn_along_its_rate_space_chord(tmp_path, monkeypatch):
    # two bona fide and two spoof trials tied at 0 between clean ones: the run's segment goes from
    # (fa 0.5, miss 0) to (fa 0, miss 0.5) in a straight line in rates
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    scores = np.array([3.0, 2.0, 0.0, 0.0, 0.0, 0.0, -2.0, -3.0])
    curve = det_curve(y, scores)
    (line,) = _drawn_lines(tmp_path, monkeypatch, {"sys": curve})
    fa, miss = norm.cdf(line.get_xdata()), norm.cdf(line.get_ydata())
    run = (fa > 0.01) & (fa < 0.49)
    assert run.sum() > 3
    np.testing.assert_allclose(fa[run] + miss[run], 0.5, atol=1e-9)
    # the segments of single trials (one rate changes) are drawn as they were: straight between operating points
    x, yv = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    np.testing.assert_allclose(x[:3], norm.ppf([0.95, 0.75, 0.5]))
    np.testing.assert_allclose(yv[-3:], norm.ppf([0.5, 0.75, 0.95]))
