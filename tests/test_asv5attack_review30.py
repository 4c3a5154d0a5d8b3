"""Review 30 (asv5attack): per-attack and per-codec ASV rates of the min t-DCFs for ASVspoof 5.

The layouts are the published ones:

- ``ASVspoof5.<dev|eval>.track_1.tsv``, space-separated, ``SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q
  CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP``, and ``ASVspoof5.<dev|eval>.track_2.trial.tsv``, ``TARGET_SPEAKER_ID
  FLAC_FILE_NAME TARGET_GENDER ATTACK_LABEL ASV_KEY`` (the database README, ``jungjee/asvspoof5`` on Hugging Face,
  ``README.txt`` section 3: ATTACK_LABEL is ``A**`` or ``bonafide``; note c sends a trial's other information, e.g.
  its CODEC, to the track-1 line of its file);
- the evaluation package's SASV key ``spk filename cm-label asv-label``, its CM score file ``filename cm-score`` and
  the score table ``spk filename cm-score asv-score sasv-score`` (``asvspoof-challenge/asvspoof5``,
  ``evaluation-package/util.py``; ``-`` in a column a system does not fill, as the track-2 CodaLab page says), its
  full key tables read by the names ``util.py`` gives their columns (``attack_anon``, ``codec``, ``track_2_tag``).

Before: the ASV trials of a keyed table carried no attack, so every attack's min t-DCF took the pooled ASV rates
("the ASV scores' spoof lines name no attack"), though the track-2 list names each spoof trial's attack and the
CM protocol names each file's; and every codec's took the pooled ones too.
"""

from __future__ import annotations

import json

import pytest

from sddkit.cli.main import main
from sddkit.evaluation.asv import read_asv_key, read_asv_scores

# CM protocol rows: file, speaker, codec, attack, key, CM score. Bona fide at 3, 2, 1; A17's spoofs at 1.5 and -1,
# A18's at -2 and 0.5
_CM = [
    ("E_0000000001", "E_0001", "-", "bonafide", "bonafide", 3.0),
    ("E_0000000002", "E_0002", "-", "bonafide", "bonafide", 2.0),
    ("E_0000000003", "E_0003", "-", "bonafide", "bonafide", 1.0),
    ("E_0000000004", "E_0009", "-", "A17", "spoof", 1.5),
    ("E_0000000005", "E_0009", "-", "A17", "spoof", -1.0),
    ("E_0000000006", "E_0009", "-", "A18", "spoof", -2.0),
    ("E_0000000007", "E_0009", "-", "A18", "spoof", 0.5),
]
# ASV trials: target speaker, file, gender, ATTACK_LABEL, ASV_KEY, the organisers' ASV score. Targets 5, 4, 1 and
# non-targets 2, -1, -2: the official compute_eer's threshold is 1 (the candidates sorted -2 -1 1 2 4 5: after the
# third, one target and one of three non-targets on either side, |Pmiss - Pfa| = 0 first), so Pmiss = 0 (no target
# below 1) and Pfa = 1/3 (the non-target at 2). A17's ASV spoofs 3, 4.5: both accepted, Pfa_spoof 1; A18's -3, 2.5:
# one, 1/2; pooled 3/4
_TRIALS = [
    ("E_0001", "E_0000000001", "F", "bonafide", "target", 5.0),
    ("E_0002", "E_0000000002", "F", "bonafide", "target", 4.0),
    ("E_0003", "E_0000000003", "F", "bonafide", "target", 1.0),
    ("E_0002", "E_0000000001", "F", "bonafide", "nontarget", 2.0),
    ("E_0003", "E_0000000002", "F", "bonafide", "nontarget", -1.0),
    ("E_0001", "E_0000000003", "F", "bonafide", "nontarget", -2.0),
    ("E_0001", "E_0000000004", "F", "A17", "spoof", 3.0),
    ("E_0002", "E_0000000005", "F", "A17", "spoof", 4.5),
    ("E_0003", "E_0000000006", "F", "A18", "spoof", -3.0),
    ("E_0001", "E_0000000007", "F", "A18", "spoof", 2.5),
]

# the 2021 t-DCF's weights with the ASV rates above (defaults: P_tar 0.9405, P_non 0.0095, P_spoof 0.05, costs 1, 10,
# 10): C0 = 0.0095 * 10 * 1/3, C1 = 0.9405 - C0, C2 = 0.05 * 10 * Pfa_spoof
_C0 = 0.095 / 3
_C1 = 0.9405 - _C0


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _protocol(tmp_path, rows=_CM, name="ASVspoof5.eval.track_1.tsv"):
    lines = [f"{spk} {utt} F {codec} - - AC1 {attack} {key} -" for utt, spk, codec, attack, key, _ in rows]
    return _write(tmp_path / name, lines)


def _cm_scores(tmp_path, rows=_CM):
    return _write(tmp_path / "cm_scores.tsv", ["filename\tcm-score", *(f"{r[0]}\t{r[-1]}" for r in rows)])


def _asv_table(tmp_path, trials=_TRIALS):
    """The organisers' ASV scores as a track-2 score table: '-' in the cm-score and sasv-score columns."""
    header = "spk\tfilename\tcm-score\tasv-score\tsasv-score"
    return _write(tmp_path / "asv_scores.tsv", [header, *(f"{t[0]}\t{t[1]}\t-\t{t[5]}\t-" for t in trials)])


def _track2_list(tmp_path, trials=_TRIALS):
    return _write(tmp_path / "ASVspoof5.eval.track_2.trial.tsv", [" ".join(t[:5]) for t in trials])


def _sasv_key(tmp_path, trials=_TRIALS):
    rows = [f"{t[0]}\t{t[1]}\t{'spoof' if t[4] == 'spoof' else 'bonafide'}\t{t[4]}" for t in trials]
    return _write(tmp_path / "sasv_keys.tsv", ["spk\tfilename\tcm-label\tasv-label", *rows])


def _eval(tmp_path, protocol, scores, asv, key):
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "0"]
    code = main([*argv, "--asv-scores", str(asv), "--asv-key", str(key)])
    assert code == 0
    return json.loads((out / "report.json").read_text())


def _check_own_attack_rates(report):
    assert report["config"]["asv"] == pytest.approx({"pfa": 1 / 3, "pmiss": 0.0, "pfa_spoof": 0.75})
    rows = {r["attack"]: r for r in report["per_attack"]}
    assert {a: r["min_tdcf_asv"] for a, r in rows.items()} == {"A17": "attack", "A18": "attack"}
    assert {a: r["min_tdcf_asv_note"] for a, r in rows.items()} == {"A17": "", "A18": ""}
    assert rows["A17"]["min_tdcf_asv_pfa_spoof"] == pytest.approx(1.0)
    assert rows["A18"]["min_tdcf_asv_pfa_spoof"] == pytest.approx(0.5)
    # A17 (C2 = 0.5): CM Pmiss 0 and Pfa 1/2 at the threshold 1 is the minimum, (C0 + C2/2) / (C0 + min(C1, C2))
    assert rows["A17"]["min_tdcf"]["2021"] == pytest.approx((_C0 + 0.25) / (_C0 + 0.5))
    # A18 (C2 = 0.25): its spoofs (-2, 0.5) all below the bona fide (1, 2, 3): C0 / (C0 + C2); with the pooled
    # Pfa_spoof, 3/4 (C2 = 0.375), it was C0 / (C0 + 0.375)
    assert rows["A18"]["min_tdcf"]["2021"] == pytest.approx(_C0 / (_C0 + 0.25))


def test_the_track_2_lists_attack_label_gives_each_attack_its_own_asv_spoof_rate(tmp_path):
    report = _eval(tmp_path, _protocol(tmp_path), _cm_scores(tmp_path), _asv_table(tmp_path), _track2_list(tmp_path))
    _check_own_attack_rates(report)


def test_the_packages_sasv_key_takes_each_spoof_trials_attack_from_the_protocol_line_of_its_file(tmp_path):
    # the SASV key names no attack: the track-1 protocol's line of each spoof trial's file does
    asv, key = _asv_table(tmp_path), _sasv_key(tmp_path)
    assert read_asv_scores(asv, key).spoof_attacks is None
    joined = read_asv_scores(asv, key).with_protocol([r[0] for r in _CM], [r[3] for r in _CM])
    assert joined.spoof_attacks.tolist() == ["A17", "A17", "A18", "A18"]
    report = _eval(tmp_path, _protocol(tmp_path), _cm_scores(tmp_path), asv, key)
    _check_own_attack_rates(report)


def test_keyed_asv_trials_whose_attack_nothing_names_say_what_would(tmp_path):
    # the dev set's protocol and CM scores beside the eval set's ASV scores and SASV key: no spoof file of the ASV
    # trials is in the protocol, and the key names no attack
    dev = [(f"D_{r[0][2:]}", r[1].replace("E_", "D_"), *r[2:]) for r in _CM]
    report = _eval(
        tmp_path,
        _protocol(tmp_path, dev, "ASVspoof5.dev.track_1.tsv"),
        _cm_scores(tmp_path, dev),
        _asv_table(tmp_path),
        _sasv_key(tmp_path),
    )
    notes = {r["min_tdcf_asv_note"] for r in report["per_attack"]}
    assert len(notes) == 1
    note = notes.pop()
    assert "neither the ASV key nor the protocol names the attack" in note
    assert "track_2.trial.tsv" in note and "track_1.tsv" in note
    assert {r["min_tdcf_asv"] for r in report["per_attack"]} == {"pooled"}


def test_each_codec_row_takes_its_own_asv_trials_by_the_protocols_codec_of_their_files(tmp_path):
    # C05-coded copies of the seven files (E_0000000011..17), with their own ASV trials:
    # targets 5, 4, 3 and non-targets 3.5, -1, -2 set the threshold at 3 (sorted -2 -1 3 3.5 4 5: after the third,
    # |Pmiss - Pfa| = |1/3 - 1/3| = 0 first), Pmiss 0, Pfa 1/3 (3.5); spoofs 3.2 (A17, accepted) and -3 (A18): 1/2
    coded = [(f"E_00000000{10 + i}", r[1], "C05", *r[3:]) for i, r in enumerate(_CM, 1)]
    coded_trials = [
        ("E_0001", "E_0000000011", "F", "bonafide", "target", 5.0),
        ("E_0002", "E_0000000012", "F", "bonafide", "target", 4.0),
        ("E_0003", "E_0000000013", "F", "bonafide", "target", 3.0),
        ("E_0002", "E_0000000011", "F", "bonafide", "nontarget", 3.5),
        ("E_0003", "E_0000000012", "F", "bonafide", "nontarget", -1.0),
        ("E_0001", "E_0000000013", "F", "bonafide", "nontarget", -2.0),
        ("E_0001", "E_0000000014", "F", "A17", "spoof", 3.2),
        ("E_0003", "E_0000000016", "F", "A18", "spoof", -3.0),
    ]
    trials = _TRIALS + coded_trials
    report = _eval(
        tmp_path,
        _protocol(tmp_path, _CM + coded),
        _cm_scores(tmp_path, _CM + coded),
        _asv_table(tmp_path, trials),
        _track2_list(tmp_path, trials),
    )
    rows = {r["codec"]: r for r in report["per_codec"]}
    assert {c: r["min_tdcf_asv"] for c, r in rows.items()} == {"none": "codec", "C05": "codec"}
    taken = {c: (r["min_tdcf_asv_pfa"], r["min_tdcf_asv_pmiss"], r["min_tdcf_asv_pfa_spoof"]) for c, r in rows.items()}
    assert taken["none"] == pytest.approx((1 / 3, 0.0, 0.75))
    assert taken["C05"] == pytest.approx((1 / 3, 0.0, 0.5))


def test_a_full_key_tables_attack_and_codec_columns_are_read_by_their_names(tmp_path):
    # the package's full key tables are read by util.py's column names (their order is not published): the spoof
    # trials' attack_anon and every trial's codec ('-' = uncoded, 'none' as the protocol readers write it); the dummy
    # trial's are not kept
    header = "tar_spk_anon trial_anon cm-label asv-label attack_anon codec track_2_tag"
    lines = [
        header,
        "E_0001 E_0000000001 bonafide target bonafide - -",
        "E_0002 E_0000000001 bonafide nontarget bonafide C05 -",
        "E_0001 E_0000000004 spoof spoof A17 - -",
        "E_0002 E_0000000005 spoof spoof A18 C05 dummy",
    ]
    key = read_asv_key(_write(tmp_path / "full_key.txt", lines))
    assert key.attacks == {("E_0001", "E_0000000004"): "A17"}
    assert key.codecs == {
        ("E_0001", "E_0000000001"): "none",
        ("E_0002", "E_0000000001"): "C05",
        ("E_0001", "E_0000000004"): "none",
    }
