"""Review 32 (evalleft): loose ends of `sdd eval`'s ASV/SASV side and of its report of fused scores.

- An SASV system's scores evaluated alone (``sdd eval --asv-scores F`` without ``--scores``) had per-attack and
  per-codec min a-DCF tables in report.json and report.md but wrote no ``per_attack.csv`` / ``per_codec.csv``, where
  a countermeasure report writes its per-attack and per-codec tables as CSVs.
- With the CM trials narrowed to some codec conditions (a 2021 LA key cut to LA-C2's ``alaw`` lines), the note
  ``sdd eval`` prints before the report on the ASV trials of the evaluated phase counted every condition's trials,
  and the ``Pfa_spoof 0`` note was of every condition's rates, not of the trials the pooled t-DCFs take; an ASVspoof
  5 track-2 submission (``asv-score`` and ``sasv-score`` of one table) said the same narrowing twice.
- The report of an ``sdd fuse --apply`` output recorded nothing of the fusion applied or of the code that applied it
  (``inputs.fusion``, an ``sdd fuse`` fit's, is left out for it: its ``fit_partitions`` name other files' trials).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import test_evalcodecs_review31 as codecs_support
import test_evalsasv_review31 as sasv_support
import test_fuse22_review22 as fuse_support
from source_checkout_support import Source, git

from sddkit.cli.main import main
from sddkit.training import provenance

# --- 1. an SASV-alone report's per-attack and per-codec tables as CSVs ----------------------------------------------


def test_sasv_alone_writes_its_per_attack_and_per_codec_tables_as_csvs_as_a_countermeasure_report(tmp_path, capsys):
    submission, key = sasv_support._submission(tmp_path), sasv_support._sasv_key(tmp_path)
    protocol = sasv_support._protocol(tmp_path)
    out = tmp_path / "report"
    sasv = ["eval", "--asv-scores", str(submission), "--asv-key", str(key), "--out", str(out)]
    assert main([*sasv, "--protocol", str(protocol)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["per_attack.csv", "per_codec.csv", "report.json", "report.md"]
    for key_column in ("attack", "codec"):
        table = pd.read_csv(out / f"per_{key_column}.csv", keep_default_na=False)
        rows = report[f"per_{key_column}"]
        assert list(table.columns) == list(rows[0])  # report.json's row keys, in their order
        assert table[key_column].astype(str).tolist() == [r[key_column] for r in rows]
        assert table["min_a_dcf"].tolist() == pytest.approx([r["min_a_dcf"] for r in rows], abs=1e-12)
    attacks = pd.read_csv(out / "per_attack.csv").set_index("attack")
    assert attacks.loc["A17", "min_a_dcf"] == pytest.approx(sasv_support._A17)
    # the a-DCF columns are named as a countermeasure report's per_attack.csv names them (one writer)
    cm = sasv_support._write(
        tmp_path / "cm.tsv", ["filename\tcm-score", *(f"{f[0]}\t{i}" for i, f in enumerate(sasv_support._FILES))]
    )
    filled = sasv_support._submission(tmp_path, cm="0.5", asv=str)
    argv = ["eval", "--scores", str(cm), "--protocol", str(protocol), "--asv-scores", str(filled), "--asv-key"]
    assert main([*argv, str(key), "--out", str(tmp_path / "cm"), "--bootstrap", "0"]) == 0
    cm_columns = pd.read_csv(tmp_path / "cm" / "per_attack.csv").columns
    assert {"min_a_dcf", "a_dcf_threshold", "min_a_dcf_note"} <= set(cm_columns)
    # a rerun whose trials name no attack or codec: no table, and the earlier run's CSVs go
    assert main(sasv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]


# --- 2. the notes printed before the report describe the ASV trials the figures take -------------------------------


def test_the_phase_note_counts_the_asv_trials_of_the_evaluated_codec_conditions(tmp_path, capsys):
    key, scores, asv, _, _ = codecs_support._write_la(tmp_path)
    # the ASV key's lines of the progress phase too: the note is of the evaluated phase's trials
    lines = asv.read_text().splitlines()
    progress = [line.replace(" eval ", " progress ").replace("LA_E_5", "LA_E_6") for line in lines]
    asv.write_text("\n".join(lines + progress) + "\n")
    out = tmp_path / "r"
    argv = ["eval", "--scores", str(scores), "--protocol", str(key), "--asv-scores", str(asv), "--bootstrap", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    # the key is of alaw alone: 10 target, 10 non-target and 20 spoof ASV trials of 20, 20, 40 in phase eval
    assert (
        "trials of the evaluated phase(s) eval and codec condition(s) alaw (10 target, 10 non-target, 20 spoof)" in err
    )
    assert "(20 target" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"]["asv_phases"] == ["eval"]
    assert any("10 of 20 target, 10 of 20 non-target, 20 of 40 spoof" in w for w in report["warnings"])


def _la_pfa_spoof(tmp_path):
    """A CM key of condition alaw, its CM scores, and ASV key lines of both conditions: at the EER threshold (between
    the targets, 2 and 3, and the non-targets, -2 and -3) alaw's ASV rejects its spoofs (-10), none's accepts them
    (5): Pfa_spoof 0 of alaw's trials, 1/2 of both conditions'."""
    cm, scores, asv = [], [], []
    for i, (kind, attack, value) in enumerate(
        [("bonafide", "bonafide", 1.0), ("bonafide", "bonafide", 0.2), ("spoof", "A07", -1.0), ("spoof", "A07", 0.5)]
    ):
        cm.append(f"LA_0001 LA_E_{1000 + i} alaw ita_tx {attack} {kind} notrim eval")
        scores.append(f"LA_E_{1000 + i} {value}")
    n = 0
    for codec, tx, spoof in (("none", "-", 5.0), ("alaw", "ita_tx", -10.0)):
        for kind, attack, values in (("target", "bonafide", (2.0, 3.0)), ("nontarget", "bonafide", (-2.0, -3.0))) + (
            ("spoof", "A07", (spoof, spoof)),
        ):
            for value in values:
                n += 1
                asv.append(f"LA_0007 LA_E_{5000 + n} {codec} {tx} {attack} {kind} notrim eval {value}")
    paths = [tmp_path / name for name in ("key.txt", "scores.txt", "asv.txt")]
    for path, text in zip(paths, (cm, scores, asv)):
        path.write_text("\n".join(text) + "\n")
    return paths


def test_the_pfa_spoof_note_is_of_the_asv_trials_the_pooled_t_dcfs_take(tmp_path, capsys):
    key, scores, asv = _la_pfa_spoof(tmp_path)
    out = tmp_path / "r"
    argv = ["eval", "--scores", str(scores), "--protocol", str(key), "--asv-scores", str(asv), "--bootstrap", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    # the pooled t-DCFs take alaw's ASV trials, whose ASV accepts none of its spoofs: the 2019 t-DCF is undefined,
    # which the note says (of every condition's trials, Pfa_spoof 1/2, it said nothing)
    assert report["config"]["asv"]["pfa_spoof"] == 0
    assert report["pooled"]["min_tdcf"]["2019"] is None
    assert "accepts none of its spoof trials of codec condition(s) alaw (Pfa_spoof 0)" in err


def test_a_track_2_submissions_asv_and_sasv_narrowing_is_said_once(tmp_path, capsys):
    protocol, scores, _, key = codecs_support._write5(tmp_path)
    table = tmp_path / "submission.tsv"
    rows = "".join(f"{t[0]}\t{t[1]}\t-\t{t[3]}\t{-t[3]}\n" for t in codecs_support._TRIALS5)
    table.write_text("spk\tfilename\tcm-score\tasv-score\tsasv-score\n" + rows)
    out = tmp_path / "r"
    argv = ["eval", "--scores", str(scores), "--protocol", str(protocol), "--protocol-option", "codecs=[C01]"]
    assert main([*argv, "--asv-scores", str(table), "--asv-key", str(key), "--bootstrap", "0", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    (note,) = [w for w in report["warnings"] if "evaluated CM trials are of codec condition(s) C01" in w]
    assert "min t-DCFs, t-EER and min a-DCF take the ASV and SASV trials of those conditions alone" in note
    assert "3 of 6 target, 3 of 6 non-target, 2 of 4 spoof; those of C02 left out" in note
    assert err.count("evaluated CM trials are of codec condition(s) C01") == 1


# --- 3. an sdd fuse --apply output's provenance -----------------------------------------------------------------------


def test_eval_of_an_applied_fusion_names_the_record_applied_and_the_code_that_applied_it(tmp_path, monkeypatch, capsys):
    checkout = Source(tmp_path / "project", monkeypatch, checkout=True)
    protocol, a, b = fuse_support._files(tmp_path)
    fit = tmp_path / "fused.csv"
    columns = ["--column", "score", "raw_score"]
    assert main(["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), *columns, "--out", str(fit)]) == 0
    fitted_by = checkout.block()
    checkout.commit_change()  # applied by other code than fitted
    applied = tmp_path / "applied.csv"
    record = tmp_path / "fused.csv.fusion.json"
    apply = ["fuse", "--apply", str(record), "--protocol", str(protocol), "--scores", str(a), str(b), *columns]
    assert main([*apply, "--out", str(applied)]) == 0
    applied_by = checkout.block()
    (checkout.root / "src" / "sddkit" / "__init__.py").write_text("x = 3\n")  # evaluated by other code again
    git(checkout.root, "commit", "-qam", "third")
    provenance._git_commit.cache_clear()
    capsys.readouterr()
    argv = ["eval", "--scores", str(applied), "--protocol", str(protocol), "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0
    inputs = json.loads((tmp_path / "r" / "report.json").read_text())["inputs"]
    assert inputs["fusion_applied"] == {
        "record": str(tmp_path / "applied.csv.fusion.json"),
        "applied_from": str(record),
        "sddkit_version": inputs["sddkit_version"],
        "sddkit_git": applied_by,
        "fit_sddkit_version": inputs["sddkit_version"],
        "fit_sddkit_git": fitted_by,
    }
    assert inputs["sddkit_git"] == checkout.block() not in (applied_by, fitted_by)
    # no fit record: its fit_partitions are other files' trials (no "fit figures" warning)
    assert "fusion" not in inputs and "fit figures" not in capsys.readouterr().err
    # the fit's own output is no applied one
    assert main(["eval", "--scores", str(fit), "--protocol", str(protocol), "--out", str(tmp_path / "f")]) == 0
    assert "fusion_applied" not in json.loads((tmp_path / "f" / "report.json").read_text())["inputs"]
    # the applied file rewritten by another tool with fewer rows: its record describes an earlier file, not taken
    frame = pd.read_csv(applied)
    applied.write_text(frame.iloc[:-3][["path", "score"]].to_csv(index=False))
    assert main([*argv, "--out", str(tmp_path / "r2")]) == 0
    assert "fusion_applied" not in json.loads((tmp_path / "r2" / "report.json").read_text())["inputs"]


def test_the_sasv_side_that_names_no_codec_is_said_of_its_own_trials():
    """The warning for SASV lines naming no codec spoke of 'a condition's ASV trials' on the SASV side too."""
    import numpy as np

    from sddkit.data.table import UtteranceTable
    from sddkit.evaluation.asv import ASVScores
    from sddkit.evaluation.report import _of_evaluated_codecs

    rows = [
        {"utt_id": f"u{i}", "path": f"u{i}.flac", "label": label, "codec": codec}
        for i, (label, codec) in enumerate([("bonafide", "C01"), ("spoof", "C01"), ("bonafide", "C02")])
    ]
    table = UtteranceTable.from_records(rows[:2])
    sasv = ASVScores(target=np.array([2.0]), nontarget=np.array([-1.0]), spoof=np.array([0.5]))
    kept, notes = _of_evaluated_codecs(sasv, "SASV", table, UtteranceTable.from_records(rows))
    assert kept is sasv
    assert len(notes) == 1
    assert "official packages take a condition's SASV trials alone" in notes[0]
    assert "ASV trials" not in notes[0].replace("SASV trials", "")
