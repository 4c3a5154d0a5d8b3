"""min t-DCF per ASVspoof 2021 LA codec condition, and --partitions of a PA hidden track (codectdcf review, session 47).

1. The official 2021 LA evaluation package (``eval-package/main.py``: ``compute_tDCF_C012`` with the codec a factor of
   every trial kind, ``config.py``'s ``factor_name_2 = 'codec'``, LA-C1..C7) reports each codec condition's min t-DCF
   with the ASV error rates of that condition's own ASV target, non-target and spoof trials. sddkit's per-codec rows
   (``per_codec``, ``per_codec.csv``, ``--by codec``) carried no t-DCF at all; they now do, with the condition's own
   ASV trials when the ASV lines name their codec (the 2021 LA ASV key's lines with their scores appended), else the
   pooled rates with a note saying why, as the per-attack rows do.
2. ``sdd eval --partitions hidden_track_1`` of a full 2021 PA key (whose hidden phase holds both official tracks, as
   partition ``hidden``) was refused as "no partitions ['hidden_track_1']", without saying that the reader's
   ``phases`` option selects one track.

Every expected t-DCF is computed here by an independent transcription of the official formulas (``compute_eer``'s
threshold, ``obtain_asv_error_rates``, ``compute_tDCF`` and ``compute_tDCF_legacy``) on a tiny key built here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from sddkit.cli.main import main

P_SPOOF = 0.05
P_TAR, P_NON = (1 - P_SPOOF) * 0.99, (1 - P_SPOOF) * 0.01
C_MISS, C_FA, C_FA_SPOOF = 1.0, 10.0, 10.0


# --- the official formulas, transcribed independently ------------------------------------------------------------


def _rates(x_pos: np.ndarray, x_neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The miss and false-alarm rates of ``compute_det_curve`` (positives sorted first on ties) and its thresholds."""
    scores = np.concatenate((x_pos, x_neg))
    order = np.argsort(scores, kind="mergesort")
    is_pos = np.concatenate((np.ones(x_pos.size), np.zeros(x_neg.size)))[order]
    below = np.cumsum(is_pos)
    miss = np.concatenate(([0.0], below / x_pos.size))
    fa = np.concatenate(([1.0], (x_neg.size - (np.arange(1, scores.size + 1) - below)) / x_neg.size))
    return miss, fa, np.concatenate(([scores[order[0]] - 0.001], scores[order]))


def official_asv_rates(tar, non, spoof) -> tuple[float, float, float]:
    """(Pfa, Pmiss, Pfa_spoof) of the ASV at its ``compute_eer`` threshold, counted as ``obtain_asv_error_rates``."""
    miss, fa, thresholds = _rates(np.asarray(tar, float), np.asarray(non, float))
    t = thresholds[np.argmin(np.abs(miss - fa))]
    return float(np.mean(non >= t)), float(np.mean(tar < t)), float(np.mean(spoof >= t))


def official_min_tdcf(bona, spoof, tar, non, spoof_asv) -> dict[str, float | None]:
    pfa, pmiss, pfa_spoof = official_asv_rates(tar, non, spoof_asv)
    pmiss_cm, pfa_cm, _ = _rates(np.asarray(bona, float), np.asarray(spoof, float))
    # 2021 (compute_tDCF): C0 + C1 Pmiss_cm + C2 Pfa_cm, normalised by C0 + min(C1, C2)
    c0 = P_TAR * C_MISS * pmiss + P_NON * C_FA * pfa
    c1, c2 = P_TAR * C_MISS - c0, P_SPOOF * C_FA_SPOOF * pfa_spoof
    revised = float(np.min((c0 + c1 * pmiss_cm + c2 * pfa_cm) / (c0 + min(c1, c2))))
    # 2019 (compute_tDCF_legacy)
    l1 = P_TAR * (C_MISS - C_MISS * pmiss) - P_NON * C_FA * pfa
    l2 = C_FA_SPOOF * P_SPOOF * pfa_spoof
    legacy = None if l2 == 0 else float(np.min((l1 * pmiss_cm + l2 * pfa_cm) / min(l1, l2)))
    return {"2019": legacy, "2021": revised, "pfa": pfa, "pmiss": pmiss, "pfa_spoof": pfa_spoof}


def _check(row: dict, expected: dict) -> None:
    for form in ("2019", "2021"):
        if expected[form] is None:
            assert row["min_tdcf"][form] is None
        else:
            assert row["min_tdcf"][form] == pytest.approx(expected[form], abs=1e-12), (form, row)
    got = (row["min_tdcf_asv_pfa"], row["min_tdcf_asv_pmiss"], row["min_tdcf_asv_pfa_spoof"])
    assert got == pytest.approx((expected["pfa"], expected["pmiss"], expected["pfa_spoof"]), abs=1e-12)


# --- a tiny 2021 LA key, its CM scores and ASV key with scores --------------------------------------------------

CODECS = {"none": "-", "alaw": "ita_tx"}  # LA-C1 and LA-C2: CODEC, TRANSMISSION


def _write_la(tmp_path: Path) -> tuple[Path, Path, Path, dict]:
    """The CM key (eval and progress phases, both conditions, bona fide + A07/A08), its CM scores, and the ASV key's
    lines with their scores appended. Each condition's ASV differs (alaw's ASV accepts far more spoofs and errs more),
    and progress's ASV trials differ from eval's: the condition's own ASV trials of the phase evaluated give other
    rates than the pooled ones, or than those of every phase."""
    rng = np.random.default_rng(29)
    cm, scores, asv = [], [], []
    cm_scores: dict = {}
    asv_scores: dict = {}
    n = 0
    for phase in ("eval", "progress"):
        for codec, tx in CODECS.items():
            shift = {"none": 0.0, "alaw": 0.6}[codec]
            for kind, attack, mean, count in (
                ("bonafide", "bonafide", 0.6, 6),
                ("spoof", "A07", -0.2 + shift, 5),
                ("spoof", "A08", 0.2 + shift, 5),
            ):
                for _ in range(count):
                    utt = f"LA_E_{1000000 + n}"
                    n += 1
                    value = round(float(rng.normal(mean, 1.0)), 4)
                    cm.append(f"LA_00{n % 7:02d} {utt} {codec} {tx} {attack} {kind} notrim {phase}")
                    scores.append(f"{utt} {value}")
                    cm_scores.setdefault((phase, codec, kind), []).append(value)
            weak = {"none": 0.0, "alaw": 1.5}[codec] + {"eval": 0.0, "progress": 2.0}[phase]
            for kind, attack, mean, count in (
                ("target", "bonafide", 3.0 - weak, 12),
                ("nontarget", "bonafide", -3.0 + weak, 14),
                ("spoof", "A07", -0.5 + weak, 8),
                ("spoof", "A08", 0.5 + weak, 8),
            ):
                for _ in range(count):
                    trial = f"LA_E_{5000000 + n}"
                    n += 1
                    value = round(float(rng.normal(mean, 1.0)), 4)
                    spk = f"LA_0007-{codec}-{tx}"
                    asv.append(f"{spk} {trial}-{codec}-{tx} {codec} {tx} {attack} {kind} notrim {phase} {value}")
                    asv_scores.setdefault((phase, codec, kind), []).append(value)
    key, score_file, asv_file = tmp_path / "key.txt", tmp_path / "scores.txt", tmp_path / "asv.txt"
    key.write_text("\n".join(cm) + "\n")
    score_file.write_text("\n".join(scores) + "\n")
    asv_file.write_text("\n".join(asv) + "\n")
    arrays = {
        "cm": {k: np.array(v) for k, v in cm_scores.items()},
        "asv": {k: np.array(v) for k, v in asv_scores.items()},
    }
    return key, score_file, asv_file, arrays


def _eval(tmp_path: Path, key: Path, scores: Path, *extra: str, name: str = "out") -> tuple[dict, Path]:
    out = tmp_path / name
    argv = ["eval", "--scores", str(scores), "--protocol", str(key), "--bootstrap", "0", "--out", str(out), *extra]
    assert main(argv) == 0
    return json.loads((out / "report.json").read_text()), out


def _expected(arrays: dict, codec: str, asv_of: tuple[str, str] | None = None, phase: str = "eval") -> dict:
    """The official min t-DCF of ``codec``'s CM trials of ``phase``, before the ASV trials of ``asv_of`` (phase,
    codec: one condition's own; codec None: the phase's pooled)."""
    bona, spoof = arrays["cm"][phase, codec, "bonafide"], arrays["cm"][phase, codec, "spoof"]
    asv_phase, asv_codec = asv_of or (phase, codec)
    codecs = list(CODECS) if asv_codec is None else [asv_codec]
    tar, non, spf = (np.concatenate([arrays["asv"][asv_phase, c, k] for c in codecs]) for k in CODECS_KINDS)
    return official_min_tdcf(bona, spoof, tar, non, spf)


CODECS_KINDS = ("target", "nontarget", "spoof")


# --- 1. per-codec min t-DCF ----------------------------------------------------------------------------------------


def test_each_codec_conditions_min_tdcf_takes_its_own_asv_trials_of_the_phase_evaluated(tmp_path):
    key, scores, asv, arrays = _write_la(tmp_path)
    report, out = _eval(tmp_path, key, scores, "--partitions", "eval", "--asv-scores", str(asv), "--by", "codec")
    rows = {r["codec"]: r for r in report["per_codec"]}
    assert set(rows) == set(CODECS)
    for codec, row in rows.items():
        expected = _expected(arrays, codec)  # the eval phase's ASV trials of this condition alone
        _check(row, expected)
        assert (row["min_tdcf_asv"], row["min_tdcf_asv_note"]) == ("codec", "")
        # not the pooled figure's rates: the condition's own differ
        assert row["min_tdcf_asv_pfa_spoof"] != pytest.approx(report["config"]["asv"]["pfa_spoof"], abs=1e-3)
    # --by codec gives the same rows
    assert report["per_column"]["codec"] == report["per_codec"]
    # the CSV holds them as numbers, as per_attack.csv does
    with open(out / "per_codec.csv", newline="") as fh:
        csv_rows = {r["codec"]: r for r in csv.DictReader(fh)}
    for codec, row in rows.items():
        assert float(csv_rows[codec]["min_tdcf_2021"]) == pytest.approx(row["min_tdcf"]["2021"])
        assert float(csv_rows[codec]["min_tdcf_2019"]) == pytest.approx(row["min_tdcf"]["2019"])
        assert csv_rows[codec]["min_tdcf_asv"] == "codec"
        assert float(csv_rows[codec]["min_tdcf_asv_pmiss"]) == pytest.approx(row["min_tdcf_asv_pmiss"])
    md = (out / "report.md").read_text()
    section = md.split("### Per-codec min-tDCF", 1)[1].split("\n## ", 1)[0]
    assert md.count("### Per-codec min-tDCF") == 1  # not again under --by codec's table
    for codec, row in rows.items():
        assert f"| {codec} | {row['min_tdcf']['2019']:.4f} | {row['min_tdcf']['2021']:.4f} |" in section
        assert "the condition's own" in section
    assert "own ASV target, non-target and spoof trials" in section


def test_a_condition_without_own_asv_trials_takes_the_pooled_rates_with_a_note(tmp_path):
    key, scores, asv, arrays = _write_la(tmp_path)
    # ASV lines of the none condition alone: alaw's t-DCF takes the pooled rates (of none's trials), said so
    only_none = tmp_path / "asv_none.txt"
    only_none.write_text("".join(f"{line}\n" for line in asv.read_text().splitlines() if " none - " in line))
    report, out = _eval(tmp_path, key, scores, "--partitions", "eval", "--asv-scores", str(only_none))
    rows = {r["codec"]: r for r in report["per_codec"]}
    _check(rows["none"], _expected(arrays, "none"))
    assert rows["none"]["min_tdcf_asv"] == "codec"
    _check(rows["alaw"], _expected(arrays, "alaw", asv_of=("eval", "none")))
    assert rows["alaw"]["min_tdcf_asv"] == "pooled"
    assert "no target, non-target and spoof trials of codec alaw" in rows["alaw"]["min_tdcf_asv_note"]
    assert any("codec(s) alaw" in w for w in report["warnings"])
    assert "alaw: the pooled figure's ASV rates" in (out / "report.md").read_text()


def test_asv_lines_without_codecs_or_no_asv_scores_take_the_pooled_rates_said_so(tmp_path):
    key, scores, asv, arrays = _write_la(tmp_path)
    # ASVspoof 2019's layout (KEY-side fields and the score): no codec to take a condition's trials by
    plain = tmp_path / "asv19.txt"
    plain.write_text(
        "".join(
            f"{f[4]} {f[5]} {f[8]}\n" for f in (line.split() for line in asv.read_text().splitlines()) if f[7] == "eval"
        )
    )
    report, out = _eval(tmp_path, key, scores, "--partitions", "eval", "--asv-scores", str(plain))
    for row in report["per_codec"]:
        _check(row, _expected(arrays, row["codec"], asv_of=("eval", None)))  # the eval phase's pooled ASV trials
        assert row["min_tdcf_asv"] == "pooled"
        assert row["min_tdcf_asv_note"].startswith("the ASV scores' lines name no codec")
    assert "since the ASV scores' lines name no codec" in (out / "report.md").read_text()
    # no ASV scores at all: the default (ASVspoof 5 organisers') rates, said so
    report, _ = _eval(tmp_path, key, scores, "--partitions", "eval", name="out_default")
    for row in report["per_codec"]:
        assert row["min_tdcf"]["2021"] is not None
        assert row["min_tdcf_asv"] == "pooled"
        assert row["min_tdcf_asv_note"] == "no ASV scores were given (sdd eval --asv-scores)"
        assert row["min_tdcf_asv_pfa_spoof"] == pytest.approx(0.4607082907604729)


# --- 2. --partitions hidden_track_1 of a full PA key -----------------------------------------------------------------


def test_partitions_of_a_pa_hidden_track_point_to_the_phases_option(tmp_path, capsys):
    lines, scores = [], []
    for n, (phase, trim, kind) in enumerate(
        [
            (p, t, k)
            for p, t in (("eval", "notrim"), ("hidden", "notrim"), ("hidden", "trim"))
            for k in ("bonafide", "spoof") * 2
        ]
    ):
        factors = "R1 M1 D1 - - - -" if kind == "bonafide" else "R1 M1 d1 r1 m1 s4 c4"
        lines.append(f"PA_0010 PA_E_{1000000 + n} {factors} {kind} {trim} {phase}")
        scores.append(f"PA_E_{1000000 + n} {n % 5 * (1 if kind == 'bonafide' else -1)}")
    key, score_file = tmp_path / "pa_key.txt", tmp_path / "pa_scores.txt"
    key.write_text("\n".join(lines) + "\n")
    score_file.write_text("\n".join(scores) + "\n")
    argv = [
        "eval",
        "--scores",
        str(score_file),
        "--protocol",
        str(key),
        "--bootstrap",
        "0",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--partitions", "hidden_track_1"]) != 0
    err = capsys.readouterr().err
    assert "no partitions ['hidden_track_1']" in err
    assert "--protocol-option phases=[hidden_track_1]" in err
    # the stage-1 keys' phase name, hidden_track, is hidden in the full keys: said so
    assert main([*argv, "--partitions", "hidden_track"]) != 0
    assert "name the stage-1 keys' phase hidden_track hidden: --partitions hidden" in capsys.readouterr().err
    # the option it points to evaluates that track
    assert main([*argv, "--protocol-option", "phases=[hidden_track_1]"]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["pooled"]["n"] == 4
