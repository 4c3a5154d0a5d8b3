"""Review 7 of the metrics (sddkit.metrics): hand-built reference cases for what earlier reviews left open."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from sddkit.metrics import (
    ASVRates,
    CurveMetric,
    MetricError,
    TDCFCost,
    bootstrap_ci,
    eer,
    eer_from_curve,
    min_tdcf_2019,
    min_tdcf_2021,
    paired_bootstrap,
)


def _brute_force_eer(bona: np.ndarray, spoof: np.ndarray) -> Fraction:
    """EER in exact fractions: over every realisable threshold (accept iff score >= t), the first point of
    smallest |miss - fa|, and the mean of miss and fa there."""
    best = None
    for t in [*np.unique(np.r_[bona, spoof]), np.inf]:
        miss = Fraction(int((bona < t).sum()), bona.size)
        fa = Fraction(int((spoof >= t).sum()), spoof.size)
        if best is None or abs(miss - fa) < best[0]:
            best = (abs(miss - fa), (miss + fa) / 2)
    return best[1]


def test_eer_of_over_a_million_trials_per_class_takes_the_smallest_gap_not_one_a_hair_larger() -> None:
    # N + 1 bona fide and N spoof trials (N odd). Point A (threshold 1): miss = 1/2, fa = (N + 1) / 2N, gap 1/2N;
    # point B (threshold 2) rejects one more bona fide: gap smaller by exactly 1 / (N (N + 1)), 8.3e-13 here.
    # A fixed tie tolerance of 1e-12 took the two for a tie and returned A's EER; B is the one point of least gap.
    n = 1_100_001
    half = (n + 1) // 2
    bona = np.repeat([0.0, 1.0, 3.0], [half, 1, n + 1 - half - 1])
    spoof = np.repeat([0.0, 2.0], [n - half, half])
    labels = np.r_[np.ones(bona.size, dtype=np.int64), np.zeros(spoof.size, dtype=np.int64)]
    result = eer(labels, np.r_[bona, spoof])
    expected = (Fraction(half + 1, n + 1) + Fraction(half, n)) / 2  # point B
    assert expected == _brute_force_eer(bona, spoof)
    assert result.threshold == 2.0
    assert result.eer == pytest.approx(float(expected), abs=1e-15)
    assert result.eer != pytest.approx((0.5 + half / n) / 2, abs=1e-9)  # point A's EER, 1 / (2 (N + 1)) above


def test_eer_tie_rule_unchanged_on_small_sets_against_exact_brute_force() -> None:
    # exact ties in gap (1/4 - 3/14 = 4/14 - 1/4) still go to the first point, and random small sets agree with
    # the exact brute force: the scaled tolerance merges only gaps equal as fractions
    bona = np.array([0.5, 1.5, 2.5, *np.arange(3, 14)], dtype=np.float64)  # 14
    spoof = np.array([1.0, 2.0, 3.2, 20.0])  # 4
    labels = np.r_[np.ones(14, dtype=np.int64), np.zeros(4, dtype=np.int64)]
    assert eer(labels, np.r_[bona, spoof]).eer == pytest.approx(float(_brute_force_eer(bona, spoof)), abs=1e-15)
    rng = np.random.default_rng(7)
    for _ in range(300):
        nb, ns = rng.integers(1, 12, size=2)
        b, s = rng.integers(0, 6, size=nb).astype(float), rng.integers(0, 6, size=ns).astype(float)
        got = eer(np.r_[np.ones(nb), np.zeros(ns)].astype(int), np.r_[b, s]).eer
        assert got == pytest.approx(float(_brute_force_eer(b, s)), abs=1e-15)


_Y = np.array([1, 1, 1, 0, 0, 0])
_S = np.array([0.9, 0.2, 0.8, 0.1, 0.7, 0.3])


@pytest.mark.parametrize(
    "clusters",
    [
        np.array([1.0, 2.0, np.nan, 3.0, np.nan, 4.0]),  # NaN speakers: np.unique pooled them into one cluster
        np.array(["a", "b", None, "c", "d", "e"], dtype=object),  # None: a TypeError from the sort
        ["a", "b", float("nan"), "c", "d", "e"],  # pandas' missing value in a string column
    ],
)
def test_cluster_bootstrap_refuses_missing_cluster_labels(clusters) -> None:
    with pytest.raises(MetricError, match=r"no label \(NaN or None\) for \d trial"):
        bootstrap_ci(CurveMetric(eer_from_curve), _Y, _S, n=20, clusters=clusters)
    with pytest.raises(MetricError, match="no label"):
        paired_bootstrap(CurveMetric(eer_from_curve), _Y, _S, _S[::-1].copy(), n=20, clusters=clusters)


def test_cluster_bootstrap_names_a_mix_of_label_types() -> None:
    clusters = np.array(["a", 1, "b", "c", 2, "d"], dtype=object)
    with pytest.raises(MetricError, match=r"one type.*\['int', 'str'\]"):
        bootstrap_ci(CurveMetric(eer_from_curve), _Y, _S, n=20, clusters=clusters)


def test_cluster_bootstrap_with_complete_labels_is_unchanged() -> None:
    clusters = np.array(["a", "a", "b", "c", "d", "d"], dtype=object)
    fast = bootstrap_ci(CurveMetric(eer_from_curve), _Y, _S, n=50, clusters=clusters)
    slow = bootstrap_ci(lambda y, s: eer(y, s).eer, _Y, _S, n=50, clusters=clusters)
    assert fast == slow
    ints = bootstrap_ci(CurveMetric(eer_from_curve), _Y, _S, n=50, clusters=[0, 0, 1, 2, 3, 3])
    assert ints == fast


def test_tdcf_with_an_asv_that_accepts_no_spoof_says_why_it_is_undefined() -> None:
    # an ASV without errors that accepts no spoof (plausible on a small set): every weight is non-negative, yet the
    # old message said they must be ("C0=0, C1=0.9405, C2=0"); the normaliser is what is 0
    labels, scores = [1, 1, 0, 0], [1.0, 2.0, 0.0, 3.0]
    with pytest.raises(MetricError, match=r"normaliser C0 \+ min\(C1, C2\) is 0 \(C0=0, C1=0.9405, C2=0\)"):
        min_tdcf_2021(labels, scores, ASVRates(pfa=0.0, pmiss=0.0, pfa_spoof=0.0))
    # the legacy form blamed "the ASV error rates" also when a zero spoof prior or cost made C2 = 0
    with pytest.raises(MetricError, match=r"C2 = C_fa_spoof P_spoof Pfa_spoof_asv is 0 .*c_fa_spoof=0"):
        min_tdcf_2019(labels, scores, ASVRates(), TDCFCost(c_fa_spoof=0.0))
    with pytest.raises(MetricError, match=r"pfa_spoof=0\.0,"):
        min_tdcf_2019(labels, scores, ASVRates(pfa_spoof=0.0))
    # negative weights (an ASV missing every target) still name them and the ASV error rates
    with pytest.raises(MetricError, match=r"must be positive \(C1=-0.001787.*check the ASV error rates"):
        min_tdcf_2019(labels, scores, ASVRates(pmiss=1.0))
    with pytest.raises(MetricError, match=r"must be non-negative \(C0=0.9423, C1=-0.001787.*ASV error rates"):
        min_tdcf_2021(labels, scores, ASVRates(pmiss=1.0))
    # and a defined case is unchanged: the 2021 form with a zero spoof cost is the plain bona fide cost, floor 1
    assert min_tdcf_2021(labels, scores, ASVRates(), TDCFCost(c_fa_spoof=0.0)).tdcf == 1.0
