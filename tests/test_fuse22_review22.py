"""Review fuse22: ``sdd fuse``, the linear logistic-regression fusion of several systems' scores (BOSARIS's).

The fit is ``fit_calibration``'s prior-weighted logistic regression with one weight per system (one shared solver:
a one-system fusion is exactly the calibration); the systems' files are joined with the protocol as ``sdd eval``
and ``sdd compare`` join them; the fusion is fitted on the fit partitions' trials every system scored and applied
to every trial every system scored.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_support import one_line_error
from scipy.optimize import minimize

from sddkit.cli.main import main
from sddkit.errors import ProtocolError
from sddkit.evaluation.fusion import fit_fusion
from sddkit.evaluation.scores import read_scores
from sddkit.metrics import eer
from sddkit.scoring.calibration import fit_calibration, fit_linear_llr, logit


def _systems(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(2n, 3) scores and (2n,) labels: two informative systems whose errors are independent (on different
    scales and offsets) and one of pure noise."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)]
    a = 1.5 * y + rng.normal(size=2 * n)
    b = 10 * (1.5 * y + rng.normal(size=2 * n)) - 4
    noise = rng.normal(size=2 * n) * 3 + 1
    return np.c_[a, b, noise], y


def _objective(w: np.ndarray, b: float, scores: np.ndarray, y: np.ndarray, prior: float, l2: float) -> float:
    """The documented objective, written out here: the prior-weighted logistic cost of ``llr = scores @ w + b``
    (nats), plus ``l2`` times the prior's entropy (bits) times the squared weights of the standardised scores."""
    lo = logit(prior)
    llr = scores @ w + b
    cost = prior * np.mean(np.logaddexp(0.0, -(llr[y == 1] + lo))) + (1 - prior) * np.mean(
        np.logaddexp(0.0, llr[y == 0] + lo)
    )
    entropy = -(prior * np.log2(prior) + (1 - prior) * np.log2(1 - prior))
    return float(cost + l2 * entropy * np.sum((w * scores.std(axis=0)) ** 2))


def test_a_noise_system_gets_no_weight_and_the_fusion_beats_each_system():
    scores, y = _systems(n=2000)  # enough trials that the noise's chance correlation with the labels is small
    fusion = fit_fusion(scores, y, names=["a", "b", "noise"])
    fused = fusion.apply(scores)
    # standardised weights: how much each system's spread moves the LLR
    effect = np.abs(np.asarray(fusion.weights) * scores.std(axis=0))
    assert effect[2] < 0.1 * min(effect[0], effect[1])
    # two systems with independent errors: their fusion ranks the trials better than either
    singles = [eer(y, scores[:, k]).eer for k in range(3)]
    assert eer(y, fused).eer <= min(singles) - 0.02
    assert singles[2] > 0.4  # the noise system is noise
    assert (fusion.n_bonafide, fusion.n_spoof) == (2000, 2000) and fusion.names == ("a", "b", "noise")


@pytest.mark.parametrize("prior", [0.5, 0.05, 0.9])
def test_a_one_system_fusion_is_exactly_fit_calibration(prior):
    scores, y = _systems(seed=1)
    calibration = fit_calibration(scores[:, 1], y, prior=prior)
    fusion = fit_fusion(scores[:, 1:2], y, prior=prior)
    assert fusion.weights == (calibration.a,) and fusion.bias == calibration.b  # exactly: one solver
    weights, bias = fit_linear_llr(scores[y == 1, 1:2], scores[y == 0, 1:2], prior=prior)
    assert (float(weights[0]), bias) == (calibration.a, calibration.b)


@pytest.mark.parametrize("prior", [0.5, 0.2])
def test_the_fitted_weights_minimise_the_objective(prior):
    scores, y = _systems(n=150, seed=2)
    l2 = 1e-3  # large enough to matter, so that a penalty on the wrong (unstandardised) weights would show
    fusion = fit_fusion(scores, y, prior=prior, l2=l2)
    theta = np.r_[fusion.weights, fusion.bias]

    def f(t: np.ndarray) -> float:
        return _objective(t[:-1], t[-1], scores, y, prior, l2)

    # the gradient there is ~0 (central differences)
    step = 1e-6
    grad = [(f(theta + step * e) - f(theta - step * e)) / (2 * step) for e in np.eye(len(theta))]
    assert np.max(np.abs(grad)) < 1e-6, grad
    # and scipy, minimising the same objective from elsewhere, finds the same point
    ref = minimize(f, x0=np.zeros(len(theta)), method="BFGS", options={"gtol": 1e-10})
    assert f(theta) <= ref.fun + 1e-12
    np.testing.assert_allclose(theta, ref.x, rtol=1e-4, atol=1e-5)


def test_fit_fusion_refuses_one_class_and_a_constant_system():
    scores, y = _systems(n=20)
    with pytest.raises(ProtocolError, match="needs both classes.*0 bona fide and 20 spoof"):
        fit_fusion(scores[y == 0], y[y == 0])
    constant = scores.copy()
    constant[:, 1] = 2.5
    with pytest.raises(ProtocolError, match=r"system 'b': its scores of the 40 fit trials are all 2\.5"):
        fit_fusion(constant, y, names=["a", "b", "c"])


def test_read_scores_reads_another_column_where_the_format_names_them(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("path,score,raw_score,error\na.wav,1.5,0.25,\nb.wav,,,cannot decode\nc.wav,-2,-0.5,\n")
    read = read_scores(csv, column="raw_score")
    assert read.ids.tolist() == ["a.wav", "c.wav"] and read.scores.tolist() == [0.25, -0.5]
    assert read.failed == ("b.wav",)  # an error row, as for the score column
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text(
        '{"path": "a.wav", "score": 1, "expert_score0": 3}\n{"path": "b.wav", "score": null, '
        '"expert_score0": null, "error": "x"}\n'
    )
    read = read_scores(jsonl, column="expert_score0")
    assert read.scores.tolist() == [3.0] and read.failed == ("b.wav",)
    with pytest.raises(ProtocolError, match=r"score column \(expert_score1\)"):
        read_scores(csv, column="expert_score1")
    with pytest.raises(ProtocolError, match="and a expert_score1"):
        read_scores(jsonl, column="expert_score1")
    txt = tmp_path / "s.txt"
    txt.write_text("a 1.0\nb 2.0\n")
    with pytest.raises(ProtocolError, match="no named columns"):
        read_scores(txt, column="raw_score")


# --- the command -----------------------------------------------------------------------------------------------


def _files(tmp_path, drop_from_b: str | None = None):
    """A labels protocol (val and test, both classes; dev_spoof: spoof only), system a as a CSV, system b as a
    JSONL whose raw_score is its informative column."""
    rng = np.random.default_rng(3)
    rows, a_rows, b_rows = ["path,label,partition"], ["path,score"], []
    plan = [("val", 30), ("test", 20)]
    k = 0
    for partition, n in plan:
        for label in ("bonafide", "spoof"):
            for _ in range(n):
                path = f"clips/{k:03d}.wav"
                k += 1
                rows.append(f"{path},{label},{partition}")
                y = label == "bonafide"
                a_rows.append(f"{path},{1.2 * y + rng.normal():.6f}")
                if path != drop_from_b:
                    b_rows.append(
                        json.dumps({"path": path, "score": 0.0, "raw_score": round(2 * y + rng.normal() * 2, 6)})
                    )
    for _ in range(5):
        path = f"clips/{k:03d}.wav"
        k += 1
        rows.append(f"{path},spoof,dev_spoof")
        a_rows.append(f"{path},{rng.normal():.6f}")
        b_rows.append(json.dumps({"path": path, "score": 0.0, "raw_score": rng.normal()}))
    (tmp_path / "protocol.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "a.csv").write_text("\n".join(a_rows) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(b_rows) + "\n")
    return tmp_path / "protocol.csv", tmp_path / "a.csv", tmp_path / "b.jsonl"


def test_sdd_fuse_end_to_end(tmp_path, capsys):
    protocol, a, b = _files(tmp_path, drop_from_b="clips/070.wav")  # a test trial system b did not score
    out = tmp_path / "out" / "fused.csv"
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--column", "score", "raw_score"]
    assert main([*argv, "--names", "a", "b", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "sdd fuse: warning: 1 file(s) scored by some of the 2 systems but not by all are not fused: " in (
        captured.err
    )
    assert "clips/070.wav" in captured.err
    assert "fit EER" in captured.out and "fit Cllr" in captured.out

    lines = out.read_text().splitlines()
    assert lines[0] == "path,score,probability,decision,score_a,score_b"
    assert len(lines) - 1 == 104  # 60 val + 40 test + 5 dev_spoof trials, less the one b did not score
    record = json.loads((tmp_path / "out" / "fused.csv.fusion.json").read_text())
    assert set(record) == {
        "systems", "bias", "prior", "column", "fit_partitions", "n_fit_bonafide", "n_fit_spoof",
        "fit_eer", "fit_cllr", "n_fused", "n_missing", "sddkit_version", "sddkit_git",
    }  # fmt: skip
    assert [s["name"] for s in record["systems"]] == ["a", "b"]
    assert {"name", "file", "weight"} <= set(record["systems"][0])
    assert record["column"] == ["score", "raw_score"] and record["fit_partitions"] == ["val"]
    assert (record["n_fit_bonafide"], record["n_fit_spoof"], record["n_fused"], record["n_missing"]) == (30, 30, 104, 1)

    # the rows: the fused LLR from the weights, probability its sigmoid, decision at 0, the inputs as read
    fused = read_scores(out)  # and a score file sdd eval / sdd compare / sdd fuse read
    table = [line.split(",") for line in lines[1:]]
    w = [s["weight"] for s in record["systems"]]
    for _path, score, probability, decision, sa, sb in table:
        llr = float(score)
        assert llr == pytest.approx(w[0] * float(sa) + w[1] * float(sb) + record["bias"], abs=1e-12)
        assert float(probability) == pytest.approx(1 / (1 + np.exp(-llr)))
        assert decision == ("bonafide" if llr >= 0 else "spoof")
    assert "clips/070.wav" not in fused.ids.tolist() and len(fused) == 104
    # the fit matches the library's on the same trials
    y = np.r_[np.ones(30), np.zeros(30)]
    fit_rows = [row for row in table if int(row[0][6:9]) < 60]
    refit = fit_fusion([[float(r[4]), float(r[5])] for r in fit_rows], y, names=["a", "b"])
    assert list(refit.weights) == pytest.approx(w, rel=1e-9) and refit.bias == pytest.approx(record["bias"], rel=1e-9)


def test_sdd_fuse_jsonl_output_and_one_column_for_all(tmp_path, capsys):
    protocol, a, _ = _files(tmp_path)
    out = tmp_path / "f.jsonl"
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(a), "--column", "score", "--out", str(out)]
    assert main([*argv, "--names", "one", "two", "--fit-partitions", "val,test"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert list(rows[0]) == ["path", "score", "probability", "decision", "score_one", "score_two"]
    record = json.loads((tmp_path / "f.jsonl.fusion.json").read_text())
    assert record["column"] == "score" and record["fit_partitions"] == ["val", "test"]
    assert (record["n_fit_bonafide"], record["n_fit_spoof"]) == (50, 50)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fit-partitions", "dev_spoof"], "there are 0 bona fide and 5 spoof among them"),
        (["--fit-partitions", "nosuch"], "no nosuch partition to fit the fusion on; its partitions: dev_spoof, test"),
        (["--names", "a"], "--names gives 1 names for 2 score files"),
        (["--names", "x", "x"], "--names repeats 'x'"),
        (["--column", "score", "raw_score", "score"], "--column gives 3 columns for 2 score files"),
        (["--out", "fused.json"], "--out must name a .csv or .jsonl file"),
        (["--prior", "1"], "--prior must be in (0, 1)"),
        (["--fit-partitions", ","], "--fit-partitions names no partition"),
    ],
)
def test_sdd_fuse_refuses_in_one_line_with_exit_2(tmp_path, capsys, extra, message):
    protocol, a, b = _files(tmp_path)
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--column", "score", "raw_score"]
    if "--column" in extra:
        argv = argv[:-3]
    if "--out" not in extra:
        extra = [*extra, "--out", str(tmp_path / "f.csv")]
    assert main([*argv, *extra]) == 2
    assert message in one_line_error(capsys, "fuse")
    assert not (tmp_path / "f.csv").exists()


def test_sdd_fuse_refuses_a_system_constant_on_the_fit_trials(tmp_path, capsys):
    protocol, a, b = _files(tmp_path)
    # system b's scores column is 0.0 everywhere: fused by its score, not its raw_score, it cannot be weighed
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--names", "a", "b"]
    assert main([*argv, "--out", str(tmp_path / "f.csv")]) == 2
    assert "system 'b': its scores of the 60 fit trials are all 0, so it cannot be weighed" in one_line_error(
        capsys, "fuse"
    )


def test_sdd_fuse_default_names_are_the_stems_and_tell_columns_of_one_file_apart(tmp_path, capsys):
    protocol, _, b = _files(tmp_path)
    out = tmp_path / "f.csv"
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(b), str(b), "--column", "raw_score", "score"]
    # b's score column is constant: refused, naming the default name of that system
    assert main([*argv, "--out", str(out)]) == 2
    assert "system 'b_score'" in one_line_error(capsys, "fuse")


def test_sdd_fuse_refuses_to_write_over_an_input(tmp_path, capsys):
    protocol, a, b = _files(tmp_path)
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--column", "score", "raw_score"]
    before = a.read_text()
    assert main([*argv, "--out", str(a)]) == 2
    assert "is one of the inputs: it would be overwritten" in one_line_error(capsys, "fuse")
    assert a.read_text() == before


def test_sdd_fuse_asks_for_names_where_the_files_stems_repeat(tmp_path, capsys):
    protocol, a, _ = _files(tmp_path)
    (tmp_path / "other").mkdir()
    copy = tmp_path / "other" / "a.csv"
    copy.write_text(a.read_text())
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(copy), "--out", str(tmp_path / "f.csv")]
    assert main(argv) == 2
    assert "default names repeat ('a_score'): name each system with --names" in one_line_error(capsys, "fuse")
