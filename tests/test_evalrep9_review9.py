"""Review 9 of the evaluation area: scores near the float limits, reports replaced by a rerun into the same
folder, tab- and space-separated score headers, and the bootstraps' argument errors."""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pytest
import soundfile as sf
from eval_support import gaussian_trials, keep_drawn_figures, labelled_table
from scoring_support import save_tiny_lcnn

from sddkit.cli.main import main
from sddkit.errors import ProtocolError
from sddkit.evaluation import EvalConfig, evaluate, read_scores, render_markdown, write_report
from sddkit.evaluation import plots as plots_module
from sddkit.metrics import (
    CurveMetric,
    MetricError,
    bootstrap_ci,
    cllr,
    det_curve,
    eer,
    eer_from_curve,
    paired_bootstrap,
)

FLOAT_MAX = float(np.finfo(np.float64).max)


def _files(tmp_path, labels: np.ndarray, scores: np.ndarray) -> tuple[str, str]:
    protocol = tmp_path / "protocol.txt"
    protocol.write_text(
        "".join(f"S u{i} - {'-' if y else 'A01'} {'bonafide' if y else 'spoof'}\n" for i, y in enumerate(labels))
    )
    score_file = tmp_path / "scores.txt"
    score_file.write_text("".join(f"u{i} {s!r}\n" for i, s in enumerate(map(float, scores))))
    return str(score_file), str(protocol)


# --- scores near the float limits ---------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e307, None])
def test_scores_near_the_float_limit_are_evaluated_and_plotted(tmp_path, monkeypatch, scale):
    # +-1.8e308 (a tool's "certain" sentinel) made the score histogram crash write_report: the span of its axis
    # overflowed to inf ("`bins` must increase monotonically"), and so did matplotlib's transforms once that was
    # mended; det_curve's threshold above the highest score warned "overflow encountered in nextafter"
    labels, scores = gaussian_trials(40)
    scores = np.where(labels == 1, FLOAT_MAX, -FLOAT_MAX) if scale is None else scores * scale
    drawn = keep_drawn_figures(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=50))
        paths = write_report(report, tmp_path / "report")
    assert paths["scores.png"].stat().st_size > 0
    ax = drawn["fig"].axes[0]
    exponent = 308 if scale is None else 307
    assert ax.get_xlabel().startswith(f"score / 1e{exponent} (higher = more bona fide)")
    assert all(math.isfinite(v) for v in ax.get_xlim())
    # every score is in a bin: each class's bars add up to all of its trials
    for patch in ax.patches[:2]:
        assert patch.get_data().values.sum() == pytest.approx(1.0)
    assert report.pooled["eer"] == pytest.approx(100 * eer(labels, scores).eer)
    assert json.loads(paths["report.json"].read_text())["pooled"]["score_range"] == [
        pytest.approx(scores.min()),
        pytest.approx(scores.max()),
    ]


def test_scores_of_ordinary_magnitude_keep_their_histogram_axis(tmp_path, monkeypatch):
    drawn = keep_drawn_figures(monkeypatch)
    labels, scores = gaussian_trials(200)
    plots_module.plot_score_histogram(det_curve(labels, scores), tmp_path / "s.png", threshold=0.3)
    ax = drawn["fig"].axes[0]
    assert ax.get_xlabel() == "score (higher = more bona fide)"
    assert ax.patches[0].get_data().edges[0] == pytest.approx(scores.min())


def test_tied_scores_of_large_magnitude_are_drawn_not_an_empty_histogram(tmp_path, monkeypatch):
    # every score 1e20: the unit-wide axis around them rounded to zero width (1e20 +- 0.5 == 1e20), so every bin
    # edge was 1e20 and the plot came out empty, with nothing said
    drawn = keep_drawn_figures(monkeypatch)
    labels = np.arange(20) % 2
    for value in (1e20, FLOAT_MAX, -FLOAT_MAX):
        plots_module.plot_score_histogram(det_curve(labels, np.full(20, value)), tmp_path / "s.png")
        data = drawn["fig"].axes[0].patches[0].get_data()
        assert data.values.sum() == pytest.approx(1.0) and np.all(np.diff(data.edges) > 0)


def test_cllr_of_scores_near_the_float_limit_is_a_number_not_inf():
    # the mean cost of a class of huge wrong-sided scores overflowed in its sum: Cllr inf (null in report.json,
    # "inf" in report.md) with numpy's overflow warning, where the value is finite
    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([-1.5e308, -1.5e308, 1.0, -1.0, 1.5e308, 1.5e308])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        value = cllr(labels, scores)
    # each class's mean cost is (2 * 1.5e308 + log1p(e^-1)) / 3 = 1e308 (the small term is below its float step)
    assert value == pytest.approx(1e308 / math.log(2), rel=1e-12)  # (1e308 + 1e308) / (2 ln 2)
    # ordinary scores: the value as before, to the bit
    labels, scores = gaussian_trials(101)
    bona, spoof = scores[labels == 1], scores[labels == 0]
    old = (np.logaddexp(0.0, -bona).mean() + np.logaddexp(0.0, spoof).mean()) / (2.0 * math.log(2.0))
    assert cllr(labels, scores) == float(old)


def test_markdown_writes_huge_values_in_exponent_form():
    # a threshold or Cllr near 1e308 filled its table cell with 300 digits
    labels = np.arange(40) % 2
    scores = np.where(labels == 1, 1.0, -1.0) * np.linspace(1e307, 1.5e308, 40)
    scores[:4] = -scores[:4]  # some errors: a Cllr near the float limit
    text = render_markdown(evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=0)))
    assert not re.search(r"\d{20}", text)
    assert re.search(r"\| Cllr \(bits\) \| \d(\.\d+)?e\+30\d \|", text)
    assert re.search(r"\| EER threshold \| -?\d(\.\d+)?e\+30\d \|", text)
    # ordinary values keep their fixed decimals
    labels, scores = gaussian_trials(40)
    assert re.search(
        r"\| Cllr \(bits\) \| \d\.\d{4} \|",
        render_markdown(evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=0))),
    )


# --- a rerun into the same folder ---------------------------------------------------------------


def test_sdd_eval_says_when_it_replaces_an_earlier_report(tmp_path, capsys):
    # a second sdd eval into the same --out replaced report.json and the tables without a word
    labels, scores = gaussian_trials(40)
    score_file, protocol = _files(tmp_path, labels, scores)
    out = tmp_path / "report"
    argv = ["eval", "--scores", score_file, "--protocol", protocol, "--out", str(out), "--bootstrap", "0"]
    assert main(argv) == 0
    assert "replaced" not in capsys.readouterr().err  # nothing there before
    other = tmp_path / "other.txt"
    other.write_text("".join(f"u{i} {-s!r}\n" for i, s in enumerate(map(float, scores))))
    assert main([*argv[:2], str(other), *argv[3:]]) == 0
    err = capsys.readouterr().err
    assert f"sdd eval: note: replaced the earlier report in {out}" in err
    assert "report.json, written " in err and f"scores {score_file}" in err  # which report it was
    assert json.loads((out / "report.json").read_text())["inputs"]["scores"] == str(other)


def test_sdd_eval_names_an_earlier_report_it_cannot_parse_by_its_file(tmp_path, capsys):
    labels, scores = gaussian_trials(40)
    score_file, protocol = _files(tmp_path, labels, scores)
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.json").write_text("{not json")
    assert main(["eval", "--scores", score_file, "--protocol", protocol, "--out", str(out), "--bootstrap", "0"]) == 0
    err = capsys.readouterr().err
    assert f"replaced the earlier report in {out} ({out / 'report.json'}, written " in err


def test_sdd_robustness_says_at_the_start_that_it_will_replace_an_earlier_report(tmp_path, capsys):
    rng = np.random.default_rng(9)
    for label in ("bonafide", "spoof"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(3):
            x = ((0.02 if label == "spoof" else 0.1) * rng.standard_normal(6000 + 900 * i)).astype(np.float32)
            sf.write(tmp_path / "data" / label / f"u{i}.wav", x, 16000)
    model = save_tiny_lcnn(tmp_path / "model")
    out = tmp_path / "rob"
    argv = [
        "robustness",
        *("--model", str(model), "--protocol", str(tmp_path / "data"), "--out", str(out)),
        *("--conditions", "mulaw", "--workers", "0", "--batch-size", "4", "--quiet", "--mode", "all"),
    ]
    assert main(argv) == 0
    assert "earlier run" not in capsys.readouterr().err
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"sdd robustness: note: {out} holds the report of an earlier run ({out / 'robustness.json'}, written " in err
    assert f"model {model}" in err and "this run replaces it" in err
    assert err.index("earlier run") < err.index("files x")  # said before the scoring, not after


# --- tab- and space-separated headers -----------------------------------------------------------


@pytest.mark.parametrize("id_column", ["utt_id", "path", "filename"])
def test_a_tab_separated_score_file_with_a_header_is_read(tmp_path, id_column):
    # `utt_id<TAB>score` was "cannot tell the score format" (only ASVspoof 5's filename<TAB>cm-score was read)
    path = tmp_path / "scores.tsv"
    path.write_text(f"# a comment\n{id_column}\tscore\tlabel\nLA_E_1\t1.5\tbonafide\nLA_E 2\t-0.25\tspoof\n")
    sf_ = read_scores(path)
    assert sf_.format == ("asvspoof5" if id_column == "filename" else "tsv")
    assert list(sf_.ids) == ["LA_E_1", "LA_E 2"] and sf_.scores.tolist() == [1.5, -0.25]
    assert sf_.id_kind == ("path" if id_column == "path" else "utt_id")
    assert list(sf_.keys) == ["bonafide", "spoof"]
    assert read_scores(path, format="tsv").scores.tolist() == [1.5, -0.25]


def test_a_tab_separated_header_without_a_score_column_names_what_it_needs(tmp_path):
    path = tmp_path / "scores.tsv"
    path.write_text("utt_id\tlogit\nLA_E_1\t1.5\n")
    with pytest.raises(ProtocolError, match=r"scores.tsv:1: header \['utt_id', 'logit'\] needs an id column .* score"):
        read_scores(path)


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("utt_id score", "space"),
        ("filename cm-score", "space"),
        ("SPEAKER UTT_ID SCORE KEY", "space"),
        ("utt_id;score", "semicolon"),  # a spreadsheet's CSV in a decimal-comma locale
    ],
)
def test_a_space_or_semicolon_separated_header_is_refused_saying_so(tmp_path, header, kind):
    # was "cannot tell the score format from 'utt_id score'", not saying that the header was the trouble
    path = tmp_path / "scores.txt"
    path.write_text(f"{header}\nLA_E_1 1.5\n")
    with pytest.raises(ProtocolError, match=f"is a header of {kind}-separated columns.*tabs or commas"):
        read_scores(path)


def test_headerless_whitespace_files_are_read_as_before(tmp_path):
    path = tmp_path / "scores.txt"
    path.write_text("LA_E_1\t1.5\nLA_E_2 -0.5\n")
    assert read_scores(path).format == "asvspoof2021"


# --- the bootstraps' argument errors ------------------------------------------------------------


_Y, _S = gaussian_trials(20)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: bootstrap_ci(eer, _Y, _S, n=2.5), r"whole number n >= 1 of replicates, got 2\.5"),
        (lambda: bootstrap_ci(eer, _Y, _S, n="100"), r"n >= 1 of replicates, got '100'"),
        (lambda: bootstrap_ci(eer, _Y, _S, n=10, seed=-1), r"seed must be a whole number >= 0 \(or None\), got -1"),
        (lambda: bootstrap_ci(eer, _Y, _S, n=10, seed=1.5), r"seed .* got 1\.5"),
        (lambda: bootstrap_ci(eer, _Y, _S, n=10, alpha="0.05"), r"alpha must be a number in \(0, 1\), got '0\.05'"),
        (lambda: bootstrap_ci(_Y, _S, eer), r"metric_fn must be a function \(labels, scores\) -> number.*ndarray"),
        (lambda: bootstrap_ci(lambda y, s: None, _Y, _S, n=10), "metric_fn must return a number"),
        (lambda: paired_bootstrap(eer, _Y, _S, _S, n=2.5), r"n >= 1 of replicates, got 2\.5"),
        (lambda: paired_bootstrap(eer, _Y, _S, _S, n=10, seed=-1), "seed must be a whole number"),
        (lambda: paired_bootstrap(eer, _Y, ["a"] * 20, _S, n=10), "scores_a are not numbers"),
        (lambda: paired_bootstrap(eer, _Y, np.empty((0, 20)), np.empty((0, 20)), n=10), r"shape \(0, 20\)"),
        (lambda: paired_bootstrap(eer, _Y, _S[None, None], _S[None, None], n=10), r"\(R, N\).*\(1, 1, 20\)"),
        (
            lambda: paired_bootstrap(eer, _Y, np.stack([_S, _S]).T, np.stack([_S, _S]).T, n=10),
            r"scores_a of shape \(20, 2\) hold a column per run.*transpose",
        ),
    ],
)
def test_bootstrap_argument_errors_name_the_argument(call, match):
    with pytest.raises(MetricError, match=match):
        call()


def test_bootstraps_draw_as_before():
    # the seed's generator is made first now: the same draws, the same intervals
    y, s = gaussian_trials(60, seed=3)
    rng = np.random.default_rng(5)
    other = s + rng.normal(size=60)
    assert bootstrap_ci(CurveMetric(eer_from_curve), y, s, n=30, seed=7) == bootstrap_ci(eer, y, s, n=30, seed=7)
    runs = paired_bootstrap(eer, y, np.stack([s, s]), np.stack([other, other]), n=30, seed=7)
    single = paired_bootstrap(eer, y, s, other, n=30, seed=7)
    assert runs == single
    assert bootstrap_ci(eer, y, s, n=30, seed=None)[0] == eer(y, s).eer
