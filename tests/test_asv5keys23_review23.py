"""Review 23 (asv5keys): the ASVspoof 5 evaluation package's keys and score files, and reader-level selections.

The layouts are those of ``asvspoof-challenge/asvspoof5``'s ``evaluation-package`` (``util.py``'s readers, its
README's examples) and of the database README (``ASVspoof5.*.tsv`` columns).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sddkit.cli.main import main
from sddkit.data.protocols import detect_format, read_protocol
from sddkit.errors import ProtocolError

# bona fide E_000001..3 at 3, 2, 1; spoofs E_000004..6 at 1.5, -1, -2: accepting >= 1.5 rejects 1 of 3 bona fide
# and accepts 1 of 3 spoofs, the EER 33.3%
_TRIALS = [
    ("E_000001", "bonafide", 3.0),
    ("E_000002", "bonafide", 2.0),
    ("E_000003", "bonafide", 1.0),
    ("E_000004", "spoof", 1.5),
    ("E_000005", "spoof", -1.0),
    ("E_000006", "spoof", -2.0),
]


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _cm_scores(tmp_path):
    """The package's CM score file (``filename<TAB>cm-score``, header first), as evaluation.py --cm takes it."""
    return _write(tmp_path / "cm_scores.tsv", ["filename\tcm-score", *(f"{u}\t{s}" for u, _, s in _TRIALS)])


def _eval(tmp_path, scores, protocol, *extra):
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "0"]
    code = main([*argv, *extra])
    return code, (json.loads((out / "report.json").read_text()) if code == 0 else None)


def test_the_packages_cm_key_is_read_as_a_protocol_and_detected(tmp_path, capsys):
    # evaluation.py --cm_keys takes `filename<TAB>cm-label` with a header: sdd eval refused it as a labels CSV
    # whose header lacks path and label ("is 'cm-label' meant to be 'label'?")
    key = _write(tmp_path / "cm_keys.tsv", ["filename\tcm-label", *(f"{u}\t{k}" for u, k, _ in _TRIALS)])
    assert detect_format(key) == "asvspoof5_key"
    table = read_protocol(key)
    assert table.column("utt_id").tolist() == [u for u, _, _ in _TRIALS]
    assert table.column("label").tolist() == [k for _, k, _ in _TRIALS]
    assert set(table.column("partition")) == {"eval"} and set(table.column("corpus")) == {"asvspoof5"}
    code, report = _eval(tmp_path, _cm_scores(tmp_path), key)
    assert code == 0, capsys.readouterr().err
    pooled = report["pooled"]
    assert (pooled["n_bonafide"], pooled["n_spoof"]) == (3, 3)
    assert pooled["eer"] == pytest.approx(100 / 3)


def test_the_packages_sasv_key_and_full_key_tables_are_read_by_their_header_names(tmp_path, capsys):
    # the SASV key (--sasv_keys: spk filename cm-label asv-label) lists a bona fide utterance in a target and a
    # non-target trial: one row per utterance, its CM key; the full key tables (space-separated, trial_anon,
    # attack_anon, codec, ...) by the same names, other columns ignored
    rows = ["spk\tfilename\tcm-label\tasv-label"]
    for utt, key, _ in _TRIALS:
        rows += [f"E_0101\t{utt}\t{key}\t{'target' if key == 'bonafide' else 'spoof'}"]
        if key == "bonafide":
            rows += [f"E_0202\t{utt}\t{key}\tnontarget"]
    sasv_key = _write(tmp_path / "sasv_keys.tsv", rows)
    assert detect_format(sasv_key) == "asvspoof5_key"
    table = read_protocol(sasv_key)
    assert table.column("utt_id").tolist() == [u for u, _, _ in _TRIALS]
    assert set(table.column("speaker")) == {""}  # a trial's spk is its target speaker, not the utterance's
    code, report = _eval(tmp_path, _cm_scores(tmp_path), sasv_key)
    assert code == 0, capsys.readouterr().err
    assert report["pooled"]["eer"] == pytest.approx(100 / 3)
    # an utterance keyed bona fide in one trial and spoof in another is refused, naming both lines
    conflict = _write(tmp_path / "bad.tsv", [*rows[:2], "E_0303\tE_000001\tspoof\tspoof"])
    with pytest.raises(ProtocolError, match=r"bad\.tsv:3: utterance 'E_000001' is spoof here and bonafide on line 2"):
        read_protocol(conflict)

    full = ["tar_spk_anon trial_anon cm-label asv-label attack_anon codec track_2_tag"]
    for i, (utt, key, _) in enumerate(_TRIALS):
        attack = "bonafide" if key == "bonafide" else ("A17", "A18")[i % 2]
        full.append(f"E_0101 {utt} {key} {'target' if key == 'bonafide' else 'spoof'} {attack} C0{1 + i % 2} -")
    full_key = _write(tmp_path / "full_key.txt", full)
    table = read_protocol(full_key)
    assert table.column("attack").tolist() == ["bonafide"] * 3 + ["A18", "A17", "A18"]
    assert table.column("codec").tolist() == ["C01", "C02", "C01", "C02", "C01", "C02"]
    picked = read_protocol(full_key, codecs=["C02"])
    assert picked.column("utt_id").tolist() == ["E_000002", "E_000004", "E_000006"]
    with pytest.raises(ProtocolError, match=r"no codecs \['C09'\]"):
        read_protocol(full_key, codecs=["C09"])
    with pytest.raises(ProtocolError, match="no codec column to select by"):
        read_protocol(sasv_key, codecs=["C01"])


@pytest.mark.parametrize("sasv", [False, True])
def test_the_readmes_keyed_score_files_are_read_as_protocols(tmp_path, capsys, sasv):
    # `<speaker_id> <utterance_id> <score> <trial type>`: the README's CM score file (bonafide/spoof) and SASV score
    # file (target/nontarget/spoof). With the README's LA_E_ ids the SASV one was refused as "an ASVspoof 2019
    # speaker-verification (ASV) protocol (SPEAKER UTTERANCE SYSTEM KEY)", the CM one as "cannot tell the format"
    lines = ["# <speaker_id> <utterance_id> <score> <trial type>"]
    for i, (_, key, score) in enumerate(_TRIALS):
        kind = key if not sasv else ("spoof" if key == "spoof" else ("target", "nontarget")[i % 2])
        lines.append(f"LA_00{15 + i} LA_E_{1103494 + i} {score} {kind}")
    keyed = _write(tmp_path / "keyed.txt", lines)
    assert detect_format(keyed) == "asvspoof5_key"
    table = read_protocol(keyed)
    assert table.column("label").tolist() == [k for _, k, _ in _TRIALS]
    assert table.column("speaker").tolist()[0] == ("" if sasv else "LA_0015")
    scores = _write(tmp_path / "cm.txt", [f"LA_E_{1103494 + i} {s}" for i, (_, _, s) in enumerate(_TRIALS)])
    code, report = _eval(tmp_path, scores, keyed)
    assert code == 0, capsys.readouterr().err
    assert report["pooled"]["eer"] == pytest.approx(100 / 3)
    # an ASVspoof 2019 ASV protocol line (a system name third, not a score) is still refused as what it is
    asv2019 = _write(tmp_path / "asv.txt", ["LA_0007 LA_E_1012823 A07 spoof", "LA_0007 LA_E_1012824 bonafide target"])
    with pytest.raises(ProtocolError, match="ASVspoof 2019 speaker-verification"):
        read_protocol(asv2019)


def _sasv_lines():
    """SASV score lines of the README's layout and their scores by kind: targets 5, 4; non-targets -3, -4;
    spoofs 1, -1, 4.5."""
    kinds = {"target": [5.0, 4.0], "nontarget": [-3.0, -4.0], "spoof": [1.0, -1.0, 4.5]}
    lines = ["# <speaker_id> <utterance_id> <score> <trial type>"]
    n = 0
    for kind, values in kinds.items():
        for v in values:
            lines.append(f"E_0101 E_{n:06d} {v} {kind}")
            n += 1
    return lines, kinds


def test_asv_scores_read_the_packages_sasv_score_file_and_joined_tables(tmp_path):
    # the README's SASV score file ends its lines with the kind, after the score: read_asv_scores took its first
    # line for a header and refused the second ("the last field 'nontarget' is not a finite score")
    from sddkit.evaluation.asv import read_asv_scores
    from sddkit.metrics import a_dcf

    lines, kinds = _sasv_lines()
    asv = read_asv_scores(_write(tmp_path / "sasv.txt", lines))
    assert (asv.target.tolist(), asv.nontarget.tolist(), asv.spoof.tolist()) == (
        kinds["target"],
        kinds["nontarget"],
        kinds["spoof"],
    )
    assert a_dcf(asv.target, asv.nontarget, asv.spoof).a_dcf == a_dcf(*kinds.values()).a_dcf
    # the SASV key joined with the scores: read by the header's asv-label and asv-score (else sasv-score)
    table = ["spk\tfilename\tcm-label\tasv-label\tcm-score\tasv-score\tsasv-score"]
    for line in lines[1:]:
        spk, utt, score, kind = line.split()
        table.append(f"{spk}\t{utt}\t{'spoof' if kind == 'spoof' else 'bonafide'}\t{kind}\t0.5\t{score}\t-")
    joined = read_asv_scores(_write(tmp_path / "joined.tsv", table))
    assert joined.spoof.tolist() == kinds["spoof"] and joined.target.tolist() == kinds["target"]
    # each file alone is refused, saying what to join
    key = _write(tmp_path / "key.tsv", ["\t".join(r.split("\t")[:4]) for r in table])
    with pytest.raises(ProtocolError, match=r"asv-label\) but no score column.*joined on spk and filename"):
        read_asv_scores(key)
    header = "spk\tfilename\tcm-score\tasv-score\tsasv-score"
    submission = _write(tmp_path / "sub.tsv", [header, "E_0101\tE_1\t1\t2\t3"])
    with pytest.raises(ProtocolError, match=r"names a score column \(asv-score\) but not the trials' kinds"):
        read_asv_scores(submission)
    # the 2019 layout's header ("source,key,score") is still a header line
    legacy = _write(tmp_path / "legacy.csv", ["source,key,score", "bonafide,target,1", "x,nontarget,0", "A07,spoof,2"])
    assert read_asv_scores(legacy).spoof.tolist() == [2.0]


def test_sdd_eval_asv_scores_takes_an_sasv_score_file_and_scores_refuse_it(tmp_path, capsys):
    from sddkit.metrics import t_eer

    lines, kinds = _sasv_lines()
    sasv = _write(tmp_path / "sasv.txt", lines)
    key = _write(tmp_path / "cm_keys.tsv", ["filename\tcm-label", *(f"{u}\t{k}" for u, k, _ in _TRIALS)])
    code, report = _eval(tmp_path, _cm_scores(tmp_path), key, "--asv-scores", str(sasv))
    assert code == 0, capsys.readouterr().err
    bona = [s for _, k, s in _TRIALS if k == "bonafide"]
    spoof = [s for _, k, s in _TRIALS if k == "spoof"]
    expected = t_eer(bona, spoof, kinds["target"], kinds["nontarget"], kinds["spoof"])
    assert report["pooled"]["t_eer"] == pytest.approx(100 * expected.teer)
    # given as the countermeasure's scores it was "cannot tell the score format"
    code, _ = _eval(tmp_path, sasv, key)
    assert code == 2
    err = capsys.readouterr().err
    assert "an SASV score file" in err and "--asv-scores" in err


def _asvspoof5_track1(tmp_path):
    """An ASVspoof5.eval.track_1.tsv of 6 trials (uncoded, C01 and C05 copies) and scores of all of them plus one
    stray; accepting >= 0 separates the uncoded and C01 trials."""
    rows = [
        "E_0001 E_0000000001 F - - - - bonafide bonafide -",
        "E_0001 E_0000000002 F C01 1 E_0000000001 - bonafide bonafide -",
        "E_0001 E_0000000003 F C05 2 E_0000000001 - bonafide bonafide -",
        "E_0002 E_0000000004 M - - - AC1 A17 spoof -",
        "E_0002 E_0000000005 M C01 1 E_0000000004 AC1 A17 spoof -",
        "E_0002 E_0000000006 M C05 2 E_0000000004 AC1 A17 spoof -",
    ]
    protocol = _write(tmp_path / "ASVspoof5.eval.track_1.tsv", rows)
    scores = _write(
        tmp_path / "scores.txt",
        ["E_0000000001 2", "E_0000000002 1", "E_0000000003 -3", "E_0000000004 -1", "E_0000000005 -2",
         "E_0000000006 3", "E_9999999999 0"],
    )  # fmt: skip
    return protocol, scores


@pytest.mark.parametrize("partitions", [[], ["--partitions", "eval"]])
def test_trials_a_reader_option_leaves_out_are_outside_the_selection_not_strays(tmp_path, capsys, partitions):
    # sdd eval --protocol-option codecs=[-,C01]: the C05 trials' scores were "2 of 7 scores have no protocol entry
    # (ignored)", as if the score file were another corpus's, where --partitions says "outside the selected
    # partitions"
    protocol, scores = _asvspoof5_track1(tmp_path)
    code, report = _eval(tmp_path, scores, protocol, "--protocol-option", "codecs=[-, C01]", *partitions)
    assert code == 0
    err = capsys.readouterr().err
    matching = report["matching"]
    assert (matching["n_matched"], matching["n_scores_outside"], matching["n_unmatched_scores"]) == (4, 2, 1)
    assert matching["unmatched_score_examples"] == ["E_9999999999"]
    where = "the selected partitions and " if partitions else "the selection "
    assert f"2 of 7 scores are of protocol utterances outside {where}--protocol-option codecs=[-, C01]" in err
    assert "1 of 7 scores have no protocol entry" in err
    assert report["pooled"]["eer"] == 0.0


def test_compare_counts_a_reader_selections_left_out_trials_as_outside(tmp_path, capsys):
    protocol, scores = _asvspoof5_track1(tmp_path)
    argv = ["compare", "--protocol", str(protocol), "--baseline", str(scores), "--system", str(scores)]
    assert main([*argv, "--protocol-option", "codecs=[C05]", "--bootstrap", "20", "--metric", "eer"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "4 of 7 scores are of protocol utterances outside the selection --protocol-option codecs=[C05]" in text
    assert "1 of 7 scores have no protocol entry" in text


def test_selection_words_and_options():
    from sddkit.cli.options import selection_options, selection_words

    assert selection_words(["eval"], {"root": "/x"}) == "the selected partitions"
    assert selection_options({"root": "/x", "phases": ["eval"], "languages": ["de"]}) == {
        "phases": ["eval"],
        "languages": ["de"],
    }
    assert selection_words(None, {"phases": ["eval"]}) == "the selection --protocol-option phases=[eval]"


def test_asvspoof2021_phases_option_leaves_the_other_phases_outside(tmp_path, capsys):
    # the same for the 2021 keys' reader option phases=[eval] (the official phase), given without --partitions
    rng = np.random.default_rng(0)
    key, score = [], []
    for i in range(24):
        phase = ("eval", "progress")[i % 2]
        bona = i % 4 < 2
        utt = f"LA_E_{i:07d}"
        attack, label = ("bonafide", "bonafide") if bona else ("A07", "spoof")
        key.append(f"LA_0001 {utt} alaw ita_tx {attack} {label} notrim {phase}")
        score.append(f"{utt} {rng.normal(2.0 if bona else 0.0):.4f}")
    protocol = _write(tmp_path / "trial_metadata.txt", key)
    scores = _write(tmp_path / "score.txt", score)
    code, report = _eval(tmp_path, scores, protocol, "--protocol-option", "phases=[eval]")
    assert code == 0
    assert (report["matching"]["n_scores_outside"], report["matching"]["n_unmatched_scores"]) == (12, 0)
    assert "12 of 24 scores are of protocol utterances outside the selection" in capsys.readouterr().err


def test_a_track2_submission_is_read_as_the_countermeasures_scores_once_per_utterance(tmp_path, capsys):
    # ASVspoof 5's track-2 score file (spk filename cm-score asv-score sasv-score) has a row per SASV trial: a bona
    # fide utterance in a target and a non-target trial repeats its cm-score, and sdd eval refused the file
    # ("duplicate id 'E_000001' (first on line 2)")
    rows = ["spk\tfilename\tcm-score\tasv-score\tsasv-score"]
    for utt, key, score in _TRIALS:
        rows.append(f"E_0101\t{utt}\t{score}\t1.0\t2.0")
        if key == "bonafide":
            rows.append(f"E_0202\t{utt}\t{score}\t-1.0\t-2.0")
    submission = _write(tmp_path / "score.tsv", rows)
    key = _write(tmp_path / "cm_keys.tsv", ["filename\tcm-label", *(f"{u}\t{k}" for u, k, _ in _TRIALS)])
    code, report = _eval(tmp_path, submission, key)
    assert code == 0, capsys.readouterr().err
    assert report["matching"]["n_scores"] == 6 and report["pooled"]["eer"] == pytest.approx(100 / 3)
    # another score for the same utterance, or an end-to-end system's '-', is refused naming the line
    for bad, words in (
        ("0.25", "has the score 0.25 here and 3.0 on line 2"),
        (
            "-",
            "end-to-end SASV system holds no countermeasure scores (its sasv-score is evaluated alone, its min a-DCF: "
            "sdd eval --asv-scores FILE [--asv-key KEY] without --scores and --protocol)",
        ),
    ):
        _write(tmp_path / "bad.tsv", [*rows[:2], f"E_0202\tE_000001\t{bad}\t-1.0\t-2.0"])
        code, _ = _eval(tmp_path, tmp_path / "bad.tsv", key)
        assert code == 2
        assert words in capsys.readouterr().err
    # a score file without spk keeps refusing a repeated id
    _write(tmp_path / "dup.tsv", ["filename\tcm-score", "E_000001\t1", "E_000001\t1"])
    code, _ = _eval(tmp_path, tmp_path / "dup.tsv", key)
    assert code == 2 and "duplicate id 'E_000001'" in capsys.readouterr().err


def test_asv_key_joins_an_sasv_score_table_with_its_kinds(tmp_path, capsys):
    # the package's organiser ASV scores and SASV submissions name each trial (spk, filename) and leave its kind to
    # the SASV key, joined on both: given to --asv-scores they could only be refused
    from sddkit.evaluation.asv import read_asv_scores
    from sddkit.metrics import t_eer

    lines, kinds = _sasv_lines()
    trials = [line.split() for line in lines[1:]]  # spk utt score kind
    scores = ["spk\tfilename\tcm-score\tasv-score\tsasv-score"]
    scores += [f"{spk}\t{utt}\t0.5\t{score}\t-" for spk, utt, score, _ in trials]
    scores.append(f"E_0202\t{trials[0][1]}\t0.5\t-7.5\t-")  # the first utterance in a non-target trial too
    score_file = _write(tmp_path / "asv_scores.tsv", scores)
    package_key = ["spk filename cm-label asv-label track_2_tag"]
    package_key += [f"{spk} {utt} {'spoof' if k == 'spoof' else 'bonafide'} {k} -" for spk, utt, _, k in trials]
    package_key += [f"E_0202 {trials[0][1]} bonafide nontarget -", "E_0909 E_000099 spoof spoof dummy"]
    track2 = [f"{spk} {utt} F {'A17' if k == 'spoof' else 'bonafide'} {k}" for spk, utt, _, k in trials]
    track2.append(f"E_0202 {trials[0][1]} M bonafide nontarget")
    expected = {"target": kinds["target"], "nontarget": [*kinds["nontarget"], -7.5], "spoof": kinds["spoof"]}
    for name, key_lines in (("sasv_keys.txt", package_key), ("ASVspoof5.eval.track_2.trial.tsv", track2)):
        asv = read_asv_scores(score_file, key=_write(tmp_path / name, key_lines))
        assert (asv.target.tolist(), asv.nontarget.tolist(), asv.spoof.tolist()) == tuple(expected.values())
    # sdd eval --asv-scores ... --asv-key ...: the t-EER of the CM before those ASV scores, the key recorded
    key = tmp_path / "sasv_keys.txt"
    cm_key = _write(tmp_path / "cm_keys.tsv", ["filename\tcm-label", *(f"{u}\t{k}" for u, k, _ in _TRIALS)])
    code, report = _eval(tmp_path, _cm_scores(tmp_path), cm_key, "--asv-scores", str(score_file), "--asv-key", str(key))
    assert code == 0, capsys.readouterr().err
    bona = [s for _, k, s in _TRIALS if k == "bonafide"]
    spoof = [s for _, k, s in _TRIALS if k == "spoof"]
    assert report["pooled"]["t_eer"] == pytest.approx(100 * t_eer(bona, spoof, *expected.values()).teer)
    assert report["inputs"]["asv_key"] == str(key)
    # a scored trial the key lacks, and --asv-key without --asv-scores, are refused
    _write(tmp_path / "short.txt", package_key[:3])
    with pytest.raises(ProtocolError, match=r"asv_scores\.tsv, line 4: the trial \(E_0101, E_000002\) is not in"):
        read_asv_scores(score_file, key=tmp_path / "short.txt")
    code, _ = _eval(tmp_path, _cm_scores(tmp_path), cm_key, "--asv-key", str(key))
    assert code == 2 and "give it with --asv-scores" in capsys.readouterr().err
