"""Review 31 (evalcodecs): the pooled ASV side of ``sdd eval`` follows a narrowing of the CM trials to some codecs.

The official packages compute a codec condition's figures from that condition's CM and ASV trials (ASVspoof 2021
``eval-package/main.py``, ``compute_tDCF_C012``: the codec a factor of every trial kind). Before: with the CM trials
narrowed to some conditions (``--protocol-option codecs=[...]`` of an ASVspoof 5 protocol, or a 2021 LA key of some
conditions), the pooled min t-DCFs, t-EER, min a-DCF and ASV rates still took every ASV trial of every condition.
Now the ASV (and SASV) trials whose lines name their codec are narrowed the same way, said in the report's warnings;
ASV lines that name no codec are kept, with a warning that the ASV side could not be narrowed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

# the official formulas' costs and ASV rates, transcribed independently of sddkit there
from test_codectdcf_review29 import C_FA, C_FA_SPOOF, C_MISS, P_NON, P_SPOOF, P_TAR, _rates
from test_codectdcf_review29 import official_asv_rates as _asv_rates

from sddkit.cli.main import main


def _min_tdcf_2021(bona, spoof, asv):
    pfa, pmiss, pfa_spoof = asv
    pmiss_cm, pfa_cm, _ = _rates(np.asarray(bona, float), np.asarray(spoof, float))
    c0 = P_TAR * C_MISS * pmiss + P_NON * C_FA * pfa
    c1, c2 = P_TAR * C_MISS - c0, P_SPOOF * C_FA_SPOOF * pfa_spoof
    return float(np.min((c0 + c1 * pmiss_cm + c2 * pfa_cm) / (c0 + min(c1, c2))))


def _eval(tmp_path, protocol, scores, *extra):
    out = tmp_path / "out"
    argv = ["eval", "--scores", str(scores), "--protocol", str(protocol), "--bootstrap", "0", "--out", str(out)]
    assert main([*argv, *extra]) == 0
    return json.loads((out / "report.json").read_text())


# --- ASVspoof 2021 LA: a key of one condition, the ASV key's lines of both with their scores appended -------------


def _write_la(tmp_path):
    """A CM key of condition alaw alone (as a user cuts the full key to LA-C2), its CM scores, and the ASV key's lines
    of both conditions with their scores appended: alaw's ASV errs far more than none's."""
    rng = np.random.default_rng(31)
    cm, scores, asv, cm_of, asv_of = [], [], [], {}, {}
    n = 0
    for codec, tx in (("none", "-"), ("alaw", "ita_tx")):
        for kind, attack, mean in (("bonafide", "bonafide", 0.6), ("spoof", "A07", -0.4), ("spoof", "A08", 0.2)):
            for _ in range(6):
                n += 1
                utt, value = f"LA_E_{1000000 + n}", round(float(rng.normal(mean, 1.0)), 4)
                if codec == "alaw":
                    cm.append(f"LA_0001 {utt} {codec} {tx} {attack} {kind} notrim eval")
                    scores.append(f"{utt} {value}")
                    cm_of.setdefault(kind, []).append(value)
        weak = {"none": 0.0, "alaw": 1.8}[codec]
        for kind, attack, mean in (("target", "bonafide", 3.0 - weak), ("nontarget", "bonafide", -3.0 + weak)) + (
            ("spoof", "A07", -0.5 + weak),
            ("spoof", "A08", 0.5 + weak),
        ):
            for _ in range(10):
                n += 1
                value = round(float(rng.normal(mean, 1.0)), 4)
                asv.append(f"LA_0007 LA_E_{5000000 + n} {codec} {tx} {attack} {kind} notrim eval {value}")
                asv_of.setdefault((codec, kind), []).append(value)
    key, score_file, asv_file = tmp_path / "key.txt", tmp_path / "scores.txt", tmp_path / "asv.txt"
    for path, lines in ((key, cm), (score_file, scores), (asv_file, asv)):
        path.write_text("\n".join(lines) + "\n")
    return key, score_file, asv_file, cm_of, asv_of


def test_a_2021_la_key_of_one_condition_takes_that_conditions_asv_trials_for_its_pooled_figures(tmp_path):
    key, scores, asv, cm_of, asv_of = _write_la(tmp_path)
    report = _eval(tmp_path, key, scores, "--asv-scores", str(asv))
    own = _asv_rates(*(asv_of["alaw", k] for k in ("target", "nontarget", "spoof")))
    every = _asv_rates(*(asv_of["none", k] + asv_of["alaw", k] for k in ("target", "nontarget", "spoof")))
    assert own != pytest.approx(every, abs=1e-3)  # the two differ: the test tells them apart
    got = report["config"]["asv"]
    assert (got["pfa"], got["pmiss"], got["pfa_spoof"]) == pytest.approx(own, abs=1e-12)
    expected = _min_tdcf_2021(cm_of["bonafide"], cm_of["spoof"], own)
    assert report["pooled"]["min_tdcf"]["2021"] == pytest.approx(expected, abs=1e-12)
    # the pooled figure is the condition's own one, as its per-codec row has it
    (row,) = report["per_codec"]
    assert row["min_tdcf"]["2021"] == pytest.approx(report["pooled"]["min_tdcf"]["2021"], abs=1e-12)
    note = next(w for w in report["warnings"] if "evaluated CM trials are of codec condition(s) alaw" in w)
    assert "10 of 20 target, 10 of 20 non-target, 20 of 40 spoof" in note and "none left out" in note


# --- ASVspoof 5: codecs=[C01] of a track-1 protocol, the package's SASV key naming no codec -----------------------

# file, speaker, codec, attack, key, CM score
_CM5 = [
    ("E_0000000001", "E_0001", "C01", "bonafide", "bonafide", 3.0),
    ("E_0000000002", "E_0002", "C01", "bonafide", "bonafide", 2.0),
    ("E_0000000003", "E_0003", "C01", "bonafide", "bonafide", 1.0),
    ("E_0000000004", "E_0009", "C01", "A17", "spoof", 1.5),
    ("E_0000000005", "E_0009", "C01", "A18", "spoof", -1.0),
    ("E_0000000011", "E_0001", "C02", "bonafide", "bonafide", 2.5),
    ("E_0000000012", "E_0002", "C02", "bonafide", "bonafide", 0.5),
    ("E_0000000013", "E_0003", "C02", "bonafide", "bonafide", -0.5),
    ("E_0000000014", "E_0009", "C02", "A17", "spoof", 0.0),
    ("E_0000000015", "E_0009", "C02", "A18", "spoof", 1.0),
]
# target speaker, file, kind, ASV score. C01: targets 5 4 1, non-targets 2 -1 -2 (threshold 1: Pmiss 0, Pfa 1/3),
# spoofs 3 -3 (Pfa_spoof 1/2). C02's ASV is poorer: targets 0 -1 2.5, non-targets 1.5 3 -2, spoofs 4 3.5
_TRIALS5 = [
    ("E_0001", "E_0000000001", "target", 5.0),
    ("E_0002", "E_0000000002", "target", 4.0),
    ("E_0003", "E_0000000003", "target", 1.0),
    ("E_0002", "E_0000000001", "nontarget", 2.0),
    ("E_0003", "E_0000000002", "nontarget", -1.0),
    ("E_0001", "E_0000000003", "nontarget", -2.0),
    ("E_0001", "E_0000000004", "spoof", 3.0),
    ("E_0002", "E_0000000005", "spoof", -3.0),
    ("E_0001", "E_0000000011", "target", 0.0),
    ("E_0002", "E_0000000012", "target", -1.0),
    ("E_0003", "E_0000000013", "target", 2.5),
    ("E_0002", "E_0000000011", "nontarget", 1.5),
    ("E_0003", "E_0000000012", "nontarget", 3.0),
    ("E_0001", "E_0000000013", "nontarget", -2.0),
    ("E_0001", "E_0000000014", "spoof", 4.0),
    ("E_0002", "E_0000000015", "spoof", 3.5),
]


def _write5(tmp_path):
    protocol = tmp_path / "ASVspoof5.eval.track_1.tsv"
    protocol.write_text("".join(f"{s} {u} F {c} - - AC1 {a} {k} -\n" for u, s, c, a, k, _ in _CM5))
    scores = tmp_path / "cm_scores.tsv"
    scores.write_text("filename\tcm-score\n" + "".join(f"{r[0]}\t{r[-1]}\n" for r in _CM5))
    asv = tmp_path / "asv_scores.tsv"
    asv.write_text(
        "spk\tfilename\tcm-score\tasv-score\tsasv-score\n"
        + "".join(f"{t[0]}\t{t[1]}\t-\t{t[3]}\t-\n" for t in _TRIALS5)
    )
    key = tmp_path / "sasv_keys.tsv"
    rows = "".join(f"{t[0]}\t{t[1]}\t{'spoof' if t[2] == 'spoof' else 'bonafide'}\t{t[2]}\n" for t in _TRIALS5)
    key.write_text("spk\tfilename\tcm-label\tasv-label\n" + rows)
    return protocol, scores, asv, key


def test_asvspoof5_codecs_selection_narrows_the_keyed_asv_trials_by_the_protocol_line_of_their_file(tmp_path):
    protocol, scores, asv, key = _write5(tmp_path)
    report = _eval(
        tmp_path, protocol, scores, "--protocol-option", "codecs=[C01]", "--asv-scores", str(asv), "--asv-key", str(key)
    )
    c01 = [t for t in _TRIALS5 if t[1] < "E_0000000010"]
    own = _asv_rates(*([t[3] for t in c01 if t[2] == kind] for kind in ("target", "nontarget", "spoof")))
    assert own == pytest.approx((1 / 3, 0.0, 0.5))
    got = report["config"]["asv"]
    assert (got["pfa"], got["pmiss"], got["pfa_spoof"]) == pytest.approx(own, abs=1e-12)
    bona = [r[-1] for r in _CM5[:3]]
    spoof = [r[-1] for r in _CM5[3:5]]
    assert report["pooled"]["min_tdcf"]["2021"] == pytest.approx(_min_tdcf_2021(bona, spoof, own), abs=1e-12)
    # every ASV trial now has its file's CM score among the evaluated ones: none unjoined
    assert not any("without a CM score" in w for w in report["warnings"])
    assert any(
        "3 of 6 target, 3 of 6 non-target, 2 of 4 spoof" in w and "C02 left out" in w for w in report["warnings"]
    )


def test_asv_lines_naming_no_codec_are_kept_with_a_warning(tmp_path):
    protocol, scores, _, _ = _write5(tmp_path)
    plain = tmp_path / "asv_plain.txt"
    plain.write_text("".join(f"{t[0]} {'A17' if t[2] == 'spoof' else 'bonafide'} {t[2]} {t[3]}\n" for t in _TRIALS5))
    report = _eval(tmp_path, protocol, scores, "--protocol-option", "codecs=[C01]", "--asv-scores", str(plain))
    every = _asv_rates(*([t[3] for t in _TRIALS5 if t[2] == kind] for kind in ("target", "nontarget", "spoof")))
    got = report["config"]["asv"]
    assert (got["pfa"], got["pmiss"], got["pfa_spoof"]) == pytest.approx(every, abs=1e-12)
    assert any("could not be narrowed" in w and "C02 left out" in w for w in report["warnings"])


def test_asvspoof5_codecs_selection_narrows_the_sasv_trials_of_the_min_a_dcf(tmp_path):
    from sddkit.metrics.adcf import a_dcf

    protocol, scores, _, key = _write5(tmp_path)
    # a track-2 submission: its sasv-score column filled (C02's trials the ASV's scores reversed)
    sasv_of = {t[1] + t[0]: (t[3] if t[1] < "E_0000000010" else -t[3]) for t in _TRIALS5}
    table = tmp_path / "submission.tsv"
    rows = "".join(f"{t[0]}\t{t[1]}\t-\t{t[3]}\t{sasv_of[t[1] + t[0]]}\n" for t in _TRIALS5)
    table.write_text("spk\tfilename\tcm-score\tasv-score\tsasv-score\n" + rows)
    report = _eval(
        tmp_path,
        protocol,
        scores,
        "--protocol-option",
        "codecs=[C01]",
        "--asv-scores",
        str(table),
        "--asv-key",
        str(key),
    )

    def of(trials, kind):
        return [sasv_of[t[1] + t[0]] for t in trials if t[2] == kind]

    c01 = [t for t in _TRIALS5 if t[1] < "E_0000000010"]
    own = a_dcf(of(c01, "target"), of(c01, "nontarget"), of(c01, "spoof")).a_dcf
    every = a_dcf(of(_TRIALS5, "target"), of(_TRIALS5, "nontarget"), of(_TRIALS5, "spoof")).a_dcf
    assert own != pytest.approx(every, abs=1e-6)
    assert report["pooled"]["min_a_dcf"] == pytest.approx(own, abs=1e-12)
