"""Cluster bootstrap (``clusters=`` of the bootstrap functions, ``sdd compare --cluster-by``): trials that share a
speaker are resampled together, so alike trials are not counted as independent evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sddkit.cli.main import main
from sddkit.data.protocols import read_protocol
from sddkit.errors import ProtocolError
from sddkit.evaluation.compare import compare_scores
from sddkit.evaluation.scores import read_scores
from sddkit.metrics import MetricError, bootstrap_ci, eer, paired_bootstrap


def _trials(seed: int = 0, n_bona: int = 30, n_spoof: int = 50):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_bona, dtype=np.int64), np.zeros(n_spoof, dtype=np.int64)]
    return y, rng.normal(0, 1, y.size) + 1.2 * y, rng.normal(0, 1, y.size) + 1.0 * y


def test_one_trial_per_cluster_is_the_plain_stratified_bootstrap_draw_for_draw():
    y, a, b = _trials()
    singletons = [f"spk{i}" for i in range(y.size)]
    assert bootstrap_ci(eer, y, a, n=300, seed=3, clusters=singletons) == bootstrap_ci(eer, y, a, n=300, seed=3)
    plain = paired_bootstrap(eer, y, a, b, n=300, seed=3)
    assert paired_bootstrap(eer, y, a, b, n=300, seed=3, clusters=singletons) == plain


def test_clusters_of_identical_copies_give_the_interval_of_the_unique_trials():
    """Every trial copied 4 times under one speaker: resampling speakers is resampling the unique trials (each
    count times 4, which leaves the EER unchanged); resampling the copies one by one treats them as 4 times the
    evidence and gives a narrower interval."""
    y, a, b = _trials(seed=1)
    copies = 4
    y4, a4, b4 = (np.repeat(v, copies) for v in (y, a, b))
    speakers = np.repeat(np.arange(y.size), copies)
    unique = bootstrap_ci(eer, y, a, n=400, seed=5)
    clustered = bootstrap_ci(eer, y4, a4, n=400, seed=5, clusters=speakers)
    assert clustered == pytest.approx(unique, abs=1e-12)
    naive = bootstrap_ci(eer, y4, a4, n=400, seed=5)
    assert naive[2] - naive[1] < 0.75 * (unique[2] - unique[1])

    unique_d = paired_bootstrap(eer, y, a, b, n=400, seed=5)
    clustered_d = paired_bootstrap(eer, y4, a4, b4, n=400, seed=5, clusters=speakers)
    assert (clustered_d.diff, clustered_d.low, clustered_d.high) == pytest.approx(
        (unique_d.diff, unique_d.low, unique_d.high), abs=1e-12
    )


def test_bad_clusters_are_refused():
    y, a, b = _trials()
    one_bona_speaker = np.where(y == 1, "s0", [f"x{i}" for i in range(y.size)])
    with pytest.raises(MetricError, match=r"at least 2 clusters per class; the bona fide trials form 1"):
        paired_bootstrap(eer, y, a, b, n=50, clusters=one_bona_speaker)
    with pytest.raises(MetricError, match=r"one label per trial: got shape \(3,\) for 80 trials"):
        bootstrap_ci(eer, y, a, n=50, clusters=["a", "b", "c"])
    with pytest.raises(MetricError, match="needs stratified=True"):
        bootstrap_ci(eer, y, a, n=50, clusters=np.arange(y.size), stratified=False)


N_BONA, N_SPOOF, SPEAKERS = 40, 80, 8


def _protocol(tmp_path, speakers: int = SPEAKERS):
    """ASVspoof 2019 LA protocol whose trials come from ``speakers`` speakers (both classes)."""
    lines = [
        f"LA_{i % speakers:04d} LA_E_{1000000 + i} - {'-' if i < N_BONA else 'A07'} "
        f"{'bonafide' if i < N_BONA else 'spoof'}"
        for i in range(N_BONA + N_SPOOF)
    ]
    path = tmp_path / "ASVspoof2019.LA.cm.eval.trl.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _scores(tmp_path, name: str, seed: int, separation: float):
    """Scores with a per-speaker offset: a speaker's trials are alike."""
    rng = np.random.default_rng(seed)
    i = np.arange(N_BONA + N_SPOOF)
    values = rng.normal(0, 0.3, i.size) + rng.normal(0, 1.0, SPEAKERS)[i % SPEAKERS] + separation * (i < N_BONA)
    path = tmp_path / f"{name}.txt"
    path.write_text("\n".join(f"LA_E_{1000000 + k} {v:.6f}" for k, v in zip(i, values)) + "\n")
    return path


def test_compare_cluster_by_speaker_resamples_speakers_and_says_so(tmp_path, capsys):
    table = read_protocol(_protocol(tmp_path))
    base, system = read_scores(_scores(tmp_path, "a", 0, 1.0)), read_scores(_scores(tmp_path, "b", 1, 1.5))
    plain = compare_scores(table, [base], [system], n_bootstrap=400)
    c = compare_scores(table, [base], [system], n_bootstrap=400, cluster_by="speaker")
    assert c.n_clusters == (SPEAKERS, SPEAKERS) and plain.n_clusters is None
    assert c.difference.diff == plain.difference.diff  # the point value does not depend on the resampling
    assert (c.difference.low, c.difference.high) != (plain.difference.low, plain.difference.high)
    d = c.to_dict()
    assert d["bootstrap"]["cluster_by"] == "speaker"
    assert d["bootstrap"]["clusters"] == {"bonafide": SPEAKERS, "spoof": SPEAKERS}
    assert f"paired bootstrap over speaker clusters ({SPEAKERS} bona fide, {SPEAKERS} spoof)" in c.summary()

    out = tmp_path / "c.json"
    argv = ["compare", "--protocol", str(_protocol(tmp_path)), "--baseline", str(tmp_path / "a.txt")]
    argv += ["--system", str(tmp_path / "b.txt"), "--cluster-by", "speaker", "--bootstrap", "400", "--json", str(out)]
    assert main(argv) == 0
    assert json.loads(out.read_text())["difference"] == d["difference"]
    assert "over speaker clusters" in capsys.readouterr().out


def test_a_class_of_one_cluster_gives_no_verdict_and_an_unknown_column_is_refused(tmp_path):
    table = read_protocol(_protocol(tmp_path, speakers=1))
    base, system = read_scores(_scores(tmp_path, "a", 0, 0.0)), read_scores(_scores(tmp_path, "b", 1, 3.0))
    c = compare_scores(table, [base], [system], n_bootstrap=400, cluster_by="speaker")
    assert c.n_clusters == (1, 1) and not c.measurable and c.verdict == "no difference shown"
    assert any("1 bona fide / 1 spoof speaker cluster(s)" in n and "no verdict" in n for n in c.notes)
    with pytest.raises(ProtocolError, match="spekaer"):
        compare_scores(table, [base], [system], n_bootstrap=50, cluster_by="spekaer")
