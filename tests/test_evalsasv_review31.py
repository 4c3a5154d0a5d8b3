"""Review 31 (evalsasv): `sdd eval` of ASVspoof 5 track-2 scores.

- An SASV system's scores evaluated alone (``sdd eval --asv-scores FILE [--asv-key KEY]`` without ``--scores``, the
  ASVspoof 5 package's ``t2_single`` mode) gave the pooled min a-DCF alone, where the package's full evaluation
  (``asvspoof-challenge/asvspoof5``, ``evaluation-package/calculate_metrics_full.py``,
  ``calculate_aDCF_tdcf_tEER_full(..., flag_sasv_only=True)``) gives it per attack (every target and non-target trial
  with that attack's spoof trials) and per codec (the condition's own trials), each list sorted; and the track-1
  protocol, which names the files' attacks and codecs that the package's SASV key does not, could not be given.
- An ASV key naming a file's attack (or codec) otherwise than the protocol's line of that file was overruled silently.
- ``inputs.fusion`` of the report of an ``sdd fuse`` output named the fusion's record but not the code that fused.

The layouts are those of tests/test_asv5attack_review30.py: the database's ``ASVspoof5.<dev|eval>.track_1.tsv``
(``SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP``) and
``track_2.trial.tsv`` (``TARGET_SPEAKER FLAC_FILE_NAME TARGET_GENDER ATTACK_LABEL ASV_KEY``), the package's SASV key
``spk filename cm-label asv-label``, its full key tables (``attack_anon``, ``codec``) and its score table
``spk filename cm-score asv-score sasv-score``. The expected a-DCFs are worked out by hand below.
"""

from __future__ import annotations

import json

import pytest
from source_checkout_support import Source

from sddkit.cli.main import main

# a-DCF with the package's costs: (0.9405 Pmiss_tar + 10 * 0.0095 Pfa_non + 10 * 0.05 Pfa_spoof) / 0.595
_NORM = 0.595
# SASV trials: target speaker, file, ATTACK_LABEL, kind, sasv-score. Targets 5, 4, 1; non-targets 2, -1, -2; A17's
# spoofs 3, 4.5; A18's -3, 2.5
_TRIALS = [
    ("E_0001", "E_01", "bonafide", "target", 5.0),
    ("E_0002", "E_02", "bonafide", "target", 4.0),
    ("E_0003", "E_03", "bonafide", "target", 1.0),
    ("E_0002", "E_01", "bonafide", "nontarget", 2.0),
    ("E_0003", "E_02", "bonafide", "nontarget", -1.0),
    ("E_0001", "E_03", "bonafide", "nontarget", -2.0),
    ("E_0001", "E_04", "A17", "spoof", 3.0),
    ("E_0002", "E_05", "A17", "spoof", 4.5),
    ("E_0003", "E_06", "A18", "spoof", -3.0),
    ("E_0001", "E_07", "A18", "spoof", 2.5),
]
# A17 (every target and non-target, spoofs 3 and 4.5): accepting >= 1 misses no target and accepts one non-target
# (2) and both spoofs, (0.095 / 3 + 0.5) / 0.595; every other threshold costs more (>= 4: a target missed, 0.3135,
# and a spoof accepted, 0.25: 0.947)
_A17 = (0.095 / 3 + 0.5) / _NORM
# A18 (spoofs -3 and 2.5): >= 1 accepts one non-target and one spoof, (0.095 / 3 + 0.25) / 0.595; >= -1: 0.5266
_A18 = (0.095 / 3 + 0.25) / _NORM
_ATTACKS = {"A17": (pytest.approx(_A17), 1.0), "A18": (pytest.approx(_A18), 1.0)}  # (min a-DCF, its threshold)
# the protocol's files: file, speaker, CODEC, ATTACK_LABEL, KEY (E_02, E_05, E_07 coded C05)
_FILES = [
    ("E_01", "E_0001", "-", "bonafide", "bonafide"),
    ("E_02", "E_0002", "C05", "bonafide", "bonafide"),
    ("E_03", "E_0003", "-", "bonafide", "bonafide"),
    ("E_04", "E_0009", "-", "A17", "spoof"),
    ("E_05", "E_0009", "C05", "A17", "spoof"),
    ("E_06", "E_0009", "-", "A18", "spoof"),
    ("E_07", "E_0009", "C05", "A18", "spoof"),
]
# by the files' codecs: C05 holds target 4, non-target -1, spoofs 4.5 and 2.5: >= 4 accepts the spoof 4.5 alone,
# 0.5 / 2 / 0.595; uncoded ("none") holds targets 5, 1, non-targets 2, -2, spoofs 3, -3: >= 1 accepts one of each
# kind's wrong trials, (0.095 / 2 + 0.5 / 2) / 0.595 = 0.5
_C05, _C05_THRESHOLD = 0.25 / _NORM, 4.0
_NONE, _NONE_THRESHOLD = (0.0475 + 0.25) / _NORM, 1.0


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _track2_list(tmp_path, trials=_TRIALS):
    return _write(tmp_path / "ASVspoof5.eval.track_2.trial.tsv", [f"{s} {f} F {a} {k}" for s, f, a, k, _ in trials])


def _sasv_key(tmp_path, trials=_TRIALS):
    rows = [f"{s}\t{f}\t{'spoof' if k == 'spoof' else 'bonafide'}\t{k}" for s, f, _, k, _ in trials]
    return _write(tmp_path / "sasv_keys.tsv", ["spk\tfilename\tcm-label\tasv-label", *rows])


def _submission(tmp_path, trials=_TRIALS, cm="-", asv=lambda v: "-"):
    """A track-2 score table: an end-to-end system's ('-' as cm-score and asv-score) unless told otherwise."""
    rows = [f"{s}\t{f}\t{cm}\t{asv(v)}\t{v}" for s, f, _, _, v in trials]
    return _write(tmp_path / "score.tsv", ["spk\tfilename\tcm-score\tasv-score\tsasv-score", *rows])


def _protocol(tmp_path, files=_FILES):
    lines = [f"{spk} {utt} F {codec} - - AC1 {attack} {key} -" for utt, spk, codec, attack, key in files]
    return _write(tmp_path / "ASVspoof5.eval.track_1.tsv", lines)


def _sasv_alone(tmp_path, *args):
    out = tmp_path / "report"
    assert main(["eval", *map(str, args), "--out", str(out)]) == 0
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def _dcfs(rows, key):
    return {r[key]: (r["min_a_dcf"], r["a_dcf_threshold"]) for r in rows}


def test_sasv_alone_gives_each_attacks_min_a_dcf_of_the_track_2_lists_attack_label(tmp_path, capsys):
    report, md = _sasv_alone(tmp_path, "--asv-scores", _submission(tmp_path), "--asv-key", _track2_list(tmp_path))
    assert report["pooled"]["min_a_dcf"] == pytest.approx((0.095 / 3 + 0.5 * 3 / 4) / _NORM)
    rows = report["per_attack"]
    assert [r["attack"] for r in rows] == ["A17", "A18"]  # sorted, as the package lists them
    assert _dcfs(rows, "attack") == _ATTACKS
    assert [(r["n_target"], r["n_nontarget"], r["n_spoof"], r["min_a_dcf_note"]) for r in rows] == [(3, 3, 2, "")] * 2
    # the track-2 list names no codec and no protocol was given: no per-codec breakdown
    assert report["per_codec"] is None
    assert "## Per-attack min a-DCF" in md and f"| A17 | 3 | 3 | 2 | {_A17:.4f} | 1.0000 |" in md
    assert "Per-codec" not in md and report["warnings"] == []


def test_sasv_alone_takes_attacks_and_codecs_from_the_protocol_line_of_each_trials_file(tmp_path, capsys):
    # the package's SASV key names neither: the track-1 protocol's line of each trial's file does
    protocol = _protocol(tmp_path)
    report, md = _sasv_alone(
        tmp_path, "--asv-scores", _submission(tmp_path), "--asv-key", _sasv_key(tmp_path), "--protocol", protocol
    )
    assert _dcfs(report["per_attack"], "attack") == _ATTACKS
    rows = report["per_codec"]
    assert [r["codec"] for r in rows] == ["C05", "none"]
    assert _dcfs(rows, "codec") == {
        "C05": (pytest.approx(_C05), _C05_THRESHOLD),
        "none": (pytest.approx(_NONE), _NONE_THRESHOLD),
    }
    assert [(r["n_target"], r["n_nontarget"], r["n_spoof"]) for r in rows] == [(1, 1, 2), (2, 2, 2)]
    assert report["inputs"]["protocol"] == str(protocol) and len(report["inputs"]["protocol_sha256"]) == 64
    assert f"| C05 | 1 | 1 | 2 | {_C05:.4f} | 4.0000 |" in md
    # the pooled figure is the same as without the protocol
    assert report["pooled"]["min_a_dcf"] == pytest.approx((0.095 / 3 + 0.5 * 3 / 4) / _NORM)


def test_sasv_alone_says_when_the_protocol_names_none_or_not_every_spoof_trials_attack(tmp_path, capsys):
    scores, key = _submission(tmp_path), _sasv_key(tmp_path)
    # the dev set's protocol beside the eval set's trials: no file in common, no breakdown, said
    dev = [(f"D_{f[0][2:]}", *f[1:]) for f in _FILES]
    report, _ = _sasv_alone(tmp_path, "--asv-scores", scores, "--asv-key", key, "--protocol", _protocol(tmp_path, dev))
    assert report["per_attack"] is None and report["per_codec"] is None
    assert any("none of the SASV trials' files is in it" in w for w in report["warnings"])
    # a protocol without E_07's line: its spoof trial counts in the pooled figure and in no attack's row
    report, _ = _sasv_alone(
        tmp_path, "--asv-scores", scores, "--asv-key", key, "--protocol", _protocol(tmp_path, _FILES[:-1])
    )
    assert [(r["attack"], r["n_spoof"]) for r in report["per_attack"]] == [("A17", 2), ("A18", 1)]
    assert any("1 of the 4 spoof trials name no attack" in w for w in report["warnings"])


def test_sasv_alone_reads_a_full_key_tables_codecs_and_says_why_a_condition_has_no_figure(tmp_path, capsys):
    # the package's full key table: attack_anon and codec by their names; C07 holds one spoof trial alone
    codecs = {"E_02": "C05", "E_05": "C05", "E_07": "C05", "E_06": "C07"}
    header = "tar_spk_anon trial_anon cm-label asv-label attack_anon codec track_2_tag"
    lines = [
        f"{s} {f} {'spoof' if k == 'spoof' else 'bonafide'} {k} {a} {codecs.get(f, '-')} -" for s, f, a, k, _ in _TRIALS
    ]
    key = _write(tmp_path / "full_key.txt", [header, *lines])
    report, md = _sasv_alone(tmp_path, "--asv-scores", _submission(tmp_path), "--asv-key", key)
    assert _dcfs(report["per_attack"], "attack") == _ATTACKS
    rows = {r["codec"]: r for r in report["per_codec"]}
    assert list(rows) == ["C05", "C07", "none"]
    assert rows["C05"]["min_a_dcf"] == pytest.approx(_C05)
    assert (rows["C07"]["n_target"], rows["C07"]["n_nontarget"], rows["C07"]["n_spoof"]) == (0, 0, 1)
    assert rows["C07"]["min_a_dcf"] is None and rows["C07"]["a_dcf_threshold"] is None
    assert "no target, non-target and spoof trials of codec C07" in rows["C07"]["min_a_dcf_note"]
    assert "| C07 | 0 | 0 | 1 | - (" in md


def test_sasv_alone_takes_the_protocols_format_with_it_and_refuses_it_alone(tmp_path, capsys):
    # a protocol named otherwise than the database names it is read by --protocol-format
    protocol = _protocol(tmp_path).rename(tmp_path / "eval_meta.txt")
    scores, key = _submission(tmp_path), _sasv_key(tmp_path)
    argv = ["eval", "--asv-scores", str(scores), "--asv-key", str(key), "--protocol-format", "asvspoof5"]
    assert main([*argv, "--protocol", str(protocol), "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert _dcfs(report["per_attack"], "attack") == _ATTACKS
    assert report["inputs"]["protocol_format"] == "asvspoof5"
    # without a --protocol it names the kind of nothing: refused, as --by is
    assert main([*argv, "--out", str(tmp_path / "r2")]) == 2
    assert "--protocol-format" in capsys.readouterr().err and not (tmp_path / "r2").exists()


def test_a_key_and_a_protocol_that_disagree_on_an_attack_are_said_once_and_the_key_kept(tmp_path, capsys):
    # the protocol calls E_05 an A18 spoof, the track-2 list an A17 one; the submission's asv-score and sasv-score
    # columns are read against the same key: one warning, not one per column
    files = [f if f[0] != "E_05" else ("E_05", "E_0009", "C05", "A18", "spoof") for f in _FILES]
    cm = _write(tmp_path / "cm.tsv", ["filename\tcm-score", *(f"{f[0]}\t{i}" for i, f in enumerate(files))])
    out = tmp_path / "report"
    argv = ["eval", "--scores", cm, "--protocol", _protocol(tmp_path, files), "--out", out, "--bootstrap", "0"]
    submission = _submission(tmp_path, cm="0.5", asv=lambda v: str(v))
    assert main([*map(str, argv), "--asv-scores", str(submission), "--asv-key", str(_track2_list(tmp_path))]) == 0
    err = capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    notes = [w for w in report["warnings"] if "name a different attack" in w]
    assert len(notes) == 1 and err.count("name a different attack") == 1
    assert "for 1 spoof file(s)" in notes[0] and "E_05: key A17, protocol A18" in notes[0]
    assert "the key's attack is taken" in notes[0]
    # the key's attack is kept: A17's SASV trials are E_04 and E_05, as before
    rows = {r["attack"]: r for r in report["per_attack"]}
    assert rows["A17"]["min_a_dcf"] == pytest.approx(_A17) and rows["A18"]["min_a_dcf"] == pytest.approx(_A18)


def test_a_key_and_a_protocol_that_disagree_on_codecs_are_counted_with_a_few_examples(tmp_path, capsys):
    # the full key table calls every trial uncoded; the protocol codes E_01, E_02, E_05 and E_07 (four files)
    header = "tar_spk_anon trial_anon cm-label asv-label attack_anon codec track_2_tag"
    lines = [f"{s} {f} {'spoof' if k == 'spoof' else 'bonafide'} {k} {a} - -" for s, f, a, k, _ in _TRIALS]
    key = _write(tmp_path / "full_key.txt", [header, *lines])
    files = [f if f[0] != "E_01" else ("E_01", "E_0001", "C05", "bonafide", "bonafide") for f in _FILES]
    report, md = _sasv_alone(
        tmp_path, "--asv-scores", _submission(tmp_path), "--asv-key", key, "--protocol", _protocol(tmp_path, files)
    )
    err = capsys.readouterr().err
    (note,) = [w for w in report["warnings"] if "name a different codec" in w]
    assert "for 4 file(s)" in note
    assert "E_01: key none, protocol C05; E_02: key none, protocol C05; E_05: key none, protocol C05; ..." in note
    assert "E_07" not in note  # a few examples, not every file
    assert err.count("name a different codec") == 1 and f"- warning: {note}" in md
    # the key's codecs kept: every trial uncoded, one condition
    assert [r["codec"] for r in report["per_codec"]] == ["none"]


def test_eval_of_an_sdd_fuse_output_names_the_code_that_fused(tmp_path, monkeypatch, capsys):
    checkout = Source(tmp_path / "project", monkeypatch, checkout=True)
    proto, a, b = ["path,label,partition"], ["path,score"], ["path,score"]
    for i in range(12):
        label, partition = ("bonafide" if i % 2 else "spoof"), ("val" if i < 8 else "test")
        path = str(tmp_path / "clips" / f"{i:02d}.wav")
        proto.append(f"{path},{label},{partition}")
        a.append(f"{path},{(i % 2) * 2 + (i % 3) * 0.7 - 1:.3f}")
        b.append(f"{path},{(i % 2) * 1.5 - (i % 4) * 0.4:.3f}")
    protocol, first_file, second_file = (
        _write(tmp_path / name, lines) for name, lines in (("p.csv", proto), ("a.csv", a), ("b.csv", b))
    )
    fused = tmp_path / "fused.csv"
    fuse = ["fuse", "--protocol", str(protocol), "--scores", str(first_file), str(second_file)]
    assert main([*fuse, "--out", str(fused)]) == 0
    fused_by = checkout.block()
    checkout.commit_change()  # evaluated by other code than fused
    argv = ["eval", "--scores", str(fused), "--protocol", str(protocol), "--partitions", "test", "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0
    inputs = json.loads((tmp_path / "r" / "report.json").read_text())["inputs"]
    record = json.loads(fused.with_name("fused.csv.fusion.json").read_text())
    assert inputs["fusion"]["sddkit_git"] == record["sddkit_git"] == fused_by
    assert inputs["fusion"]["sddkit_version"] == record["sddkit_version"]
    assert inputs["sddkit_git"] == checkout.block() != fused_by
