"""``sdd compare`` / ``sddkit.evaluation.compare``: paired comparison of two systems' score files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sddkit.cli.main import main
from sddkit.data.protocols import read_protocol
from sddkit.errors import ProtocolError
from sddkit.evaluation.compare import compare_scores
from sddkit.evaluation.scores import read_scores
from sddkit.metrics import eer, min_dcf

N_BONA, N_SPOOF = 40, 80


def _protocol(tmp_path, n_bona=N_BONA, n_spoof=N_SPOOF):
    """An ASVspoof 2019 LA protocol: LA_E_1000000.. , the first ``n_bona`` bona fide, then ``n_spoof`` spoof."""
    lines = [
        f"LA_0010 LA_E_{1000000 + i} - {'-' if i < n_bona else 'A07'} {'bonafide' if i < n_bona else 'spoof'}"
        for i in range(n_bona + n_spoof)
    ]
    path = tmp_path / "ASVspoof2019.LA.cm.eval.trl.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _labels() -> np.ndarray:
    return np.r_[np.ones(N_BONA, dtype=np.int64), np.zeros(N_SPOOF, dtype=np.int64)]


def _scores(tmp_path, name: str, values: np.ndarray, drop: int | None = None):
    rows = [f"LA_E_{1000000 + i} {v:.6f}" for i, v in enumerate(values) if i != drop]
    path = tmp_path / f"{name}.txt"
    path.write_text("\n".join(rows[::-1]) + "\n")  # order must not matter
    return path


def _noisy(seed: int, separation: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, 1, N_BONA + N_SPOOF) + separation * _labels(), 6)


def test_a_system_against_itself_differs_by_exactly_nothing(tmp_path):
    table = read_protocol(_protocol(tmp_path))
    s = read_scores(_scores(tmp_path, "a", _noisy(0, 1.0)))
    c = compare_scores(table, [s], [s], n_bootstrap=200)
    assert (c.difference.diff, c.difference.low, c.difference.high) == (0.0, 0.0, 0.0)
    assert c.difference.p_b_not_better == 1.0 and c.verdict == "no difference shown"
    assert c.baseline.values == c.system.values and c.system.std is None
    assert (c.n_trials, c.n_bonafide, c.n_spoof) == (N_BONA + N_SPOOF, N_BONA, N_SPOOF)


def test_runs_are_paired_in_order_and_the_difference_is_their_mean(tmp_path):
    table = read_protocol(_protocol(tmp_path))
    y = _labels()
    base = [_noisy(s, 0.3) for s in (1, 2)]
    good = [_noisy(s, 3.0) for s in (3, 4)]
    files = {n: read_scores(_scores(tmp_path, n, v)) for n, v in zip(("b1", "b2", "s1", "s2"), (*base, *good))}
    c = compare_scores(table, [files["b1"], files["b2"]], [files["s1"], files["s2"]], n_bootstrap=300)
    per_run_base = [eer(y, v).eer for v in base]
    per_run_sys = [eer(y, v).eer for v in good]
    assert c.baseline.values == pytest.approx(per_run_base) and c.system.values == pytest.approx(per_run_sys)
    assert c.difference.diff == pytest.approx(np.mean(np.subtract(per_run_sys, per_run_base)))
    assert c.system.std == pytest.approx(np.std(per_run_sys, ddof=1))
    # a clearly better system: the whole interval is below zero, and swapping the sides mirrors it
    assert c.difference.high < 0 and c.verdict == "system better" and c.difference.p_b_not_better == 0.0
    swapped = compare_scores(table, [files["s1"], files["s2"]], [files["b1"], files["b2"]], n_bootstrap=300)
    assert swapped.verdict == "baseline better"
    assert swapped.difference.diff == pytest.approx(-c.difference.diff)


def test_min_dcf_metric(tmp_path):
    table = read_protocol(_protocol(tmp_path))
    a, b = _noisy(5, 0.5), _noisy(6, 1.5)
    c = compare_scores(
        table,
        [read_scores(_scores(tmp_path, "a", a))],
        [read_scores(_scores(tmp_path, "b", b))],
        metric="min_dcf",
        n_bootstrap=50,
    )
    y = _labels()
    assert c.difference.diff == pytest.approx(min_dcf(y, b).dcf - min_dcf(y, a).dcf)


def test_only_trials_every_file_scores_are_compared(tmp_path):
    table = read_protocol(_protocol(tmp_path))
    y = _labels()
    a, b = _noisy(7, 1.0), _noisy(8, 1.0)
    # the baseline lacks one bona fide trial: the system is measured without it too
    c = compare_scores(
        table,
        [read_scores(_scores(tmp_path, "a", a, drop=3))],
        [read_scores(_scores(tmp_path, "b", b))],
        n_bootstrap=50,
    )
    keep = np.arange(y.size) != 3
    assert c.n_trials == y.size - 1 and c.n_bonafide == N_BONA - 1
    assert c.system.values[0] == pytest.approx(eer(y[keep], b[keep]).eer)
    assert any("1 scored trial(s) are missing" in n for n in c.notes)
    assert any("protocol utterances have no score" in n for n in c.notes)


def test_bad_inputs_are_refused(tmp_path):
    table = read_protocol(_protocol(tmp_path))
    s = read_scores(_scores(tmp_path, "a", _noisy(0, 1.0)))
    with pytest.raises(ProtocolError, match="same number"):
        compare_scores(table, [s, s], [s])
    with pytest.raises(ProtocolError, match="same number"):
        compare_scores(table, [], [])
    with pytest.raises(ProtocolError, match="unknown metric"):
        compare_scores(table, [s], [s], metric="accuracy")
    spoof_only = tmp_path / "spoof_only.txt"
    spoof_only.write_text("".join(f"LA_E_{1000000 + i} 0.5\n" for i in range(N_BONA, N_BONA + N_SPOOF)))
    with pytest.raises(ProtocolError, match="needs both classes"):
        compare_scores(table, [read_scores(spoof_only)], [s])


def test_sdd_compare_prints_the_table_and_writes_json(tmp_path, capsys):
    protocol = _protocol(tmp_path)
    y = _labels()
    base, good = _noisy(1, 0.3), _noisy(2, 3.0)
    out = tmp_path / "cmp" / "c.json"
    argv = ["compare", "--protocol", str(protocol), "--baseline", str(_scores(tmp_path, "base", base))]
    argv += ["--system", str(_scores(tmp_path, "good", good)), "--names", "old", "new", "--bootstrap", "100"]
    assert main([*argv, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| old | 1 |" in text and "| new | 1 |" in text and "new minus old" in text and "system better" in text
    data = json.loads(out.read_text())
    assert data["system"]["values"][0] == pytest.approx(eer(y, good).eer)
    assert data["difference"]["value"] == pytest.approx(eer(y, good).eer - eer(y, base).eer)
    assert data["verdict"] == "system better" and data["bootstrap"]["replicates"] == 100
    assert data["baseline"]["std"] is None


def test_sdd_compare_errors_exit_2(tmp_path, capsys):
    protocol = _protocol(tmp_path)
    a = _scores(tmp_path, "a", _noisy(0, 1.0))
    argv = ["compare", "--protocol", str(protocol), "--baseline", str(a), str(a), "--system", str(a)]
    assert main(argv) == 2
    assert "same number" in capsys.readouterr().err
    assert main(["compare", "--protocol", str(protocol), "--baseline", str(a), "--system", str(a), "--alpha", "1"]) == 2
    assert "--alpha" in capsys.readouterr().err
    assert (
        main(["compare", "--protocol", str(protocol), "--baseline", str(a), "--system", str(a), "--bootstrap", "0"])
        == 2
    )
    assert "--bootstrap" in capsys.readouterr().err


def test_by_column_compares_within_each_group(tmp_path):
    # two sources: source "a" holds bona fide 0-19 and spoofs 40-79, source "b" bona fide 20-39 and no spoof
    rows = ["path,label,source"]
    rows += [
        f"f{i}.wav,{'bonafide' if i < N_BONA else 'spoof'},{'a' if i < 20 or i >= N_BONA else 'b'}" for i in range(120)
    ]
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    table = read_protocol(tmp_path / "meta.csv")
    y = _labels()
    a, b = _noisy(9, 0.5), _noisy(10, 2.0)

    def csv(name, values):
        path = tmp_path / f"{name}.csv"
        path.write_text("path,score\n" + "".join(f"f{i}.wav,{v}\n" for i, v in enumerate(values)))
        return read_scores(path)

    c = compare_scores(table, [csv("a", a)], [csv("b", b)], by="source", n_bootstrap=100)
    assert [value for value, _ in c.groups] == ["a"]  # "b" has one class only
    assert any("one class only" in n and "b" in n for n in c.notes)
    in_a = np.r_[np.arange(20), np.arange(N_BONA, 120)]
    group = c.groups[0][1]
    assert group.n_trials == 100 and group.n_bonafide == 20
    assert group.difference.diff == pytest.approx(eer(y[in_a], b[in_a]).eer - eer(y[in_a], a[in_a]).eer)
    d = c.to_dict()
    assert d["by"] == "source" and d["groups"][0]["group"] == "a" and "files" not in d["groups"][0]["system"]
    assert "| a | 20 / 80 |" in c.summary()
    with pytest.raises(ProtocolError, match="no column"):
        compare_scores(table, [csv("a", a)], [csv("b", b)], by="speaker_age")
    with pytest.raises(ProtocolError, match="column is empty"):  # labels_csv fills a missing speaker column with ""
        compare_scores(table, [csv("a", a)], [csv("b", b)], by="speaker")


def test_a_class_of_one_trial_gives_no_verdict(tmp_path):
    # a one-trial class is the same in every stratified replicate: 2 trials gave "system better" [-100, -100]
    protocol = tmp_path / "p.csv"
    protocol.write_text("path,label\nb.wav,bonafide\n" + "".join(f"s{i}.wav,spoof\n" for i in range(50)))
    table = read_protocol(protocol, "labels_csv")

    def scores(name, bona, spoof):
        path = tmp_path / f"{name}.csv"
        path.write_text(f"path,score\nb.wav,{bona}\n" + "".join(f"s{i}.wav,{v}\n" for i, v in enumerate(spoof)))
        return read_scores(path)

    rng = np.random.default_rng(0)
    base = scores("base", 0.0, rng.normal(1.0, 1.0, 50))  # the bona fide file below most spoofs
    system = scores("sys", 5.0, rng.normal(0.0, 1.0, 50))  # above all of them
    c = compare_scores(table, [base], [system], n_bootstrap=200)
    assert c.difference.high < 0 and not c.measurable  # the interval alone would call it
    assert c.verdict == "no difference shown"
    assert any("1 bona fide / 50 spoof" in n and "no verdict" in n for n in c.notes)
    assert c.to_dict()["units"]["eer"] == "fraction"


def test_an_unwritable_json_is_refused_before_the_bootstrap(tmp_path, capsys, monkeypatch):
    from sddkit.evaluation import compare

    monkeypatch.setattr(compare, "paired_bootstrap", lambda *a, **k: pytest.fail("bootstrapped first"))
    a = _scores(tmp_path, "a", _noisy(0, 1.0))
    (tmp_path / "taken").mkdir()
    argv = ["compare", "--protocol", str(_protocol(tmp_path)), "--baseline", str(a), "--system", str(a)]
    assert main([*argv, "--json", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "cannot write it (Is a directory)" in err and "Traceback" not in err
