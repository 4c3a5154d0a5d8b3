"""Review 5 of ``sdd compare``: the paired bootstrap checked against an exact enumeration, and its verdicts."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from sddkit.cli.main import main
from sddkit.data.protocols import read_protocol
from sddkit.evaluation.compare import compare_scores, min_replicates
from sddkit.evaluation.scores import read_scores


def _files(tmp_path, labels, systems: dict[str, np.ndarray], source=None):
    """A path,label[,source] protocol and one path,score CSV per system."""
    header = "path,label" + (",source" if source is not None else "")
    rows = [
        f"f{i}.wav,{'bonafide' if y else 'spoof'}" + (f",{source[i]}" if source is not None else "")
        for i, y in enumerate(labels)
    ]
    (tmp_path / "p.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    paths = {}
    for name, values in systems.items():
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text("path,score\n" + "".join(f"f{i}.wav,{float(v)!r}\n" for i, v in enumerate(values)))
    return tmp_path / "p.csv", paths


def _naive_eer(y: np.ndarray, s: np.ndarray) -> float:
    """EER written out: accept iff score >= t, t over the distinct scores and above them; the first t (lowest)
    whose |miss - fa| is smallest (the library's documented rule), EER = (miss + fa) / 2."""
    bona, spoof = s[y == 1], s[y == 0]
    best = None
    for t in [*sorted(set(s.tolist())), np.inf]:
        miss, fa = np.mean(bona < t), np.mean(spoof >= t)
        if best is None or abs(miss - fa) < best[0] - 1e-12:
            best = (abs(miss - fa), (miss + fa) / 2)
    return float(best[1])


def test_the_paired_stratified_bootstrap_matches_an_exact_enumeration(tmp_path):
    # 3 bona fide + 3 spoof trials: a class-stratified resample draws 3 of each with replacement, so the 27 x 27
    # ordered draws are equally likely and the bootstrap distribution of system - baseline is known exactly
    y = np.array([1, 1, 1, 0, 0, 0])
    base = np.array([0.2, 0.9, 0.4, 0.5, 0.1, 0.3])
    system = np.array([0.8, 0.6, 0.35, 0.7, 0.2, 0.0])
    protocol, paths = _files(tmp_path, y, {"base": base, "sys": system})
    exact = []
    for bona in itertools.product(range(3), repeat=3):
        for spoof in itertools.product(range(3, 6), repeat=3):
            idx = np.array([*bona, *spoof])
            exact.append(_naive_eer(y[idx], system[idx]) - _naive_eer(y[idx], base[idx]))
    exact = np.array(exact)
    p_exact = float(np.mean(exact >= 0))
    assert 0.2 < p_exact < 0.8  # a case where the answer is not trivially 0 or 1

    table = read_protocol(protocol)
    a, b = read_scores(paths["base"]), read_scores(paths["sys"])
    c = compare_scores(table, [a], [b], n_bootstrap=10000, seed=3)
    # point value: system minus baseline, on all trials, with higher score = bona fide
    assert c.difference.diff == pytest.approx(_naive_eer(y, system) - _naive_eer(y, base))
    assert c.baseline.values[0] == pytest.approx(_naive_eer(y, base))
    # P(not better): the share of replicates with a difference >= 0 (ties included); 10000 replicates: SE 0.005
    assert c.difference.p_b_not_better == pytest.approx(p_exact, abs=0.02)
    # percentile ends: where the exact distribution function crosses alpha / 2 and 1 - alpha / 2
    for end, q in ((c.difference.low, 0.025), (c.difference.high, 0.975)):
        assert np.mean(exact < end - 1e-12) <= q + 0.01 and np.mean(exact <= end + 1e-12) >= q - 0.01
    # the other way round, the difference is baseline - system: its distribution is -exact
    swapped = compare_scores(table, [b], [a], n_bootstrap=10000, seed=3)  # the same resamples, mirrored
    assert swapped.difference.p_b_not_better == pytest.approx(float(np.mean(exact <= 0)), abs=0.02)
    assert swapped.difference.high == pytest.approx(-c.difference.low, abs=1e-9)
    # the same seed gives the same answer; the seed is recorded
    again = [compare_scores(table, [a], [b], n_bootstrap=300, seed=7).difference for _ in range(2)]
    assert again[0] == again[1] and c.to_dict()["bootstrap"]["seed"] == 3


def _separated(n_bona: int, n_spoof: int, seed: int, separation: float) -> tuple[np.ndarray, np.ndarray]:
    y = np.r_[np.ones(n_bona, dtype=np.int64), np.zeros(n_spoof, dtype=np.int64)]
    return y, np.round(np.random.default_rng(seed).normal(0, 1, y.size) + separation * y, 6)


def test_too_few_replicates_give_no_verdict(tmp_path):
    # --bootstrap 1 made the interval one replicate's difference: [d, d], and a verdict from it
    y, base = _separated(40, 80, 1, 0.3)
    _, good = _separated(40, 80, 2, 3.0)
    protocol, paths = _files(tmp_path, y, {"base": base, "good": good})
    table = read_protocol(protocol)
    few = compare_scores(table, [read_scores(paths["base"])], [read_scores(paths["good"])], n_bootstrap=1)
    assert few.difference.low == few.difference.high < 0  # the interval alone would call it
    assert few.verdict == "no difference shown" and not few.resolved
    assert any("1 bootstrap replicate(s)" in n and "no verdict" in n and "--bootstrap 40" in n for n in few.notes)
    assert min_replicates(0.05) == 40 and min_replicates(0.1) == 20 and min_replicates(0.01) == 200
    enough = compare_scores(table, [read_scores(paths["base"])], [read_scores(paths["good"])], n_bootstrap=40)
    assert enough.resolved and enough.verdict == "system better"
    assert not any("bootstrap replicate" in n for n in enough.notes)
    # alpha 0.1 needs 20
    loose = compare_scores(table, [read_scores(paths["base"])], [read_scores(paths["good"])], n_bootstrap=20, alpha=0.1)
    assert loose.verdict == "system better"
    out = tmp_path / "c.json"
    argv = ["compare", "--protocol", str(protocol), "--baseline", str(paths["base"]), "--system", str(paths["good"])]
    assert main([*argv, "--bootstrap", "5", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["verdict"] == "no difference shown" and any("no verdict" in n for n in data["notes"])


def test_group_intervals_say_they_are_not_adjusted_for_multiple_comparisons(tmp_path):
    y, base = _separated(40, 80, 3, 0.5)
    _, system = _separated(40, 80, 4, 1.5)
    source = ["a" if i % 3 == 0 else "b" if i % 3 == 1 else "c" for i in range(y.size)]
    protocol, paths = _files(tmp_path, y, {"base": base, "sys": system}, source)
    table = read_protocol(protocol)
    c = compare_scores(table, [read_scores(paths["base"])], [read_scores(paths["sys"])], by="source", n_bootstrap=50)
    assert [v for v, _ in c.groups] == ["a", "b", "c"]
    note = next(n for n in c.notes if "not adjusted" in n)
    assert "3 source groups" in note and "95 %" in note and "--alpha 0.0167" in note
    assert "not adjusted" in c.summary()
    whole = compare_scores(table, [read_scores(paths["base"])], [read_scores(paths["sys"])], n_bootstrap=50)
    assert not any("not adjusted" in n for n in whole.notes)  # one comparison: nothing to adjust
