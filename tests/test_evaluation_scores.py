from __future__ import annotations

import warnings

import numpy as np
import pytest

from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation.scores import detect_score_format, match_scores, read_scores


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _table(n=4, paths=True):
    return UtteranceTable.from_records(
        {
            "utt_id": f"LA_E_{i}",
            "path": f"/data/flac/LA_E_{i}.flac" if paths else "",
            "label": "bonafide" if i % 2 == 0 else "spoof",
            "attack": "bonafide" if i % 2 == 0 else "A07",
        }
        for i in range(n)
    )


# --- readers ------------------------------------------------------------------------------------


def test_asvspoof2019_four_and_two_columns(tmp_path):
    path = _write(tmp_path, "cm.txt", "# comment\nLA_E_1 - bonafide 1.5\n\nLA_E_2 A07 spoof -2.25\n")
    sf = read_scores(path)
    assert sf.format == "asvspoof2019" and list(sf.ids) == ["LA_E_1", "LA_E_2"]
    np.testing.assert_array_equal(sf.scores, [1.5, -2.25])
    assert list(sf.keys) == ["bonafide", "spoof"]
    two = read_scores(_write(tmp_path, "two.txt", "LA_E_1 1.5\nLA_E_2 -2\n"), format="asvspoof2019")
    assert two.keys is None and list(two.scores) == [1.5, -2.0]


def test_asvspoof2021_two_columns(tmp_path):
    sf = read_scores(_write(tmp_path, "s.txt", "DF_E_2000011 -3.5e-1\nDF_E_2000012 4\n"))
    assert sf.format == "asvspoof2021" and list(sf.ids) == ["DF_E_2000011", "DF_E_2000012"]
    np.testing.assert_allclose(sf.scores, [-0.35, 4.0])


def test_asvspoof5_tsv(tmp_path):
    text = "filename\tcm-score\tasv-score\tsasv-score\nE_0001\t0.5\t1\t2\nE_0002\t-1.25\t1\t2\n"
    sf = read_scores(_write(tmp_path, "score.tsv", text))
    assert sf.format == "asvspoof5" and list(sf.ids) == ["E_0001", "E_0002"]
    np.testing.assert_array_equal(sf.scores, [0.5, -1.25])


def test_asvspoof5_keyed(tmp_path):
    sf = read_scores(_write(tmp_path, "k.txt", "LA_0015 LA_E_1 6.96 bonafide\nLA_0007 LA_E_2 -2.3 spoof\n"))
    assert sf.format == "asvspoof5_keyed" and list(sf.ids) == ["LA_E_1", "LA_E_2"]
    assert list(sf.keys) == ["bonafide", "spoof"]


def test_csv_path_and_utt_id(tmp_path):
    sf = read_scores(_write(tmp_path, "s.csv", 'path,score\n"a/x,1.wav",0.25\nb/y.wav,-1\n'))
    assert sf.format == "csv" and sf.id_kind == "path" and list(sf.ids) == ["a/x,1.wav", "b/y.wav"]
    sf = read_scores(_write(tmp_path, "u.csv", "utt_id,score,label\nu1,1,bonafide\nu2,2,spoof\n"))
    assert sf.id_kind == "utt_id" and list(sf.keys) == ["bonafide", "spoof"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("LA_E_1 - bonafide 1.0\nLA_E_2 spoof 1.0\n", r"bad\.txt:2: expected 4 or 2"),
        ("LA_E_1 1.0\nLA_E_2 abc\n", r"bad\.txt:2: score 'abc' is not a number"),
        ("LA_E_1 1.0\nLA_E_1 2.0\n", r"bad\.txt:2: duplicate id 'LA_E_1' \(first on line 1\)"),
        ("LA_E_1 1.0\nLA_E_2 nan\n", r"bad\.txt:2: non-finite score 'nan'"),
        ("LA_E_1 inf\n", r"bad\.txt:1: non-finite score 'inf'"),
        ("LA_E_1 - maybe 1.0\n", r"bad\.txt:1: key 'maybe'"),
        ("# only a comment\n", "no scores"),
        ("one two three\n", "cannot tell the score format"),
    ],
)
def test_malformed_score_files(tmp_path, text, match):
    with pytest.raises(ProtocolError, match=match):
        read_scores(_write(tmp_path, "bad.txt", text))


def test_csv_errors_and_unknown_format(tmp_path):
    with pytest.raises(ProtocolError, match="needs an id column"):
        read_scores(_write(tmp_path, "a.csv", "name,score\nx,1\n"))
    with pytest.raises(ProtocolError, match=r"b\.csv:3: expected 2 columns"):
        read_scores(_write(tmp_path, "b.csv", "path,score\nx,1\ny,2,3\n"))
    with pytest.raises(ProtocolError, match="unknown score format 'xml'"):
        read_scores(_write(tmp_path, "c.txt", "u 1\n"), format="xml")
    with pytest.raises(ProtocolError, match="no such score file"):
        read_scores(tmp_path / "missing.txt")
    assert detect_score_format(_write(tmp_path, "d.txt", "u A01 spoof 1\n")) == "asvspoof2019"


def test_sdd_score_error_rows_are_skipped_and_reported(tmp_path):
    """`sdd score` writes a row with an empty score and an error message for a file it could not read."""
    header = "path,score,probability,decision,duration_s,n_windows,raw_score,error\n"
    text = header + "/data/flac/LA_E_0.flac,1.5,0.8,bonafide,1,1,1,\n/data/flac/LA_E_1.flac,,,,,,,cannot decode\n"
    sf = read_scores(_write(tmp_path, "scores.csv", text))
    assert list(sf.ids) == ["/data/flac/LA_E_0.flac"] and sf.failed == ("/data/flac/LA_E_1.flac",)
    with pytest.warns(UserWarning) as record:
        match = match_scores(_table(), sf)
    assert any("1 file(s) could not be scored" in str(w.message) for w in record)
    assert match.n_failed_scores == 1 and match.to_dict()["n_failed_scores"] == 1 and list(match.scores) == [1.5]
    unmatched = match.n_unmatched_protocol
    # an error row for a file the protocol does not list is not a failure of this evaluation
    extra = text + "/data/flac/not_in_protocol.flac,,,,,,,cannot decode\n"
    with pytest.warns(UserWarning) as record:
        match = match_scores(_table(), read_scores(_write(tmp_path, "extra.csv", extra)))
    assert match.n_failed_scores == 1 and match.n_unmatched_protocol == unmatched
    assert any("1 file(s) could not be scored" in str(w.message) for w in record)
    # a file that failed once and was scored on a later row (e.g. merged shards) counts as scored
    twice = header + "/data/flac/LA_E_1.flac,,,,,,,cannot decode\n/data/flac/LA_E_1.flac,0.5,0.6,bonafide,1,1,1,\n"
    again = read_scores(_write(tmp_path, "twice.csv", twice))
    assert list(again.ids) == ["/data/flac/LA_E_1.flac"] and again.failed == ()
    # only error rows: nothing to evaluate, said as such
    only = header + "/data/flac/LA_E_1.flac,,,,,,,cannot decode\n"
    with pytest.raises(ProtocolError, match="no scores in file .1 error rows"):
        read_scores(_write(tmp_path, "only.csv", only))
    # an empty score without an error message is still malformed
    with pytest.raises(ProtocolError, match=r"bad\.csv:2: score '' is not a number"):
        read_scores(_write(tmp_path, "bad.csv", header + "/data/flac/LA_E_1.flac,,,,,,,\n"))


# --- joining ------------------------------------------------------------------------------------


def test_match_by_utt_id_keeps_protocol_order(tmp_path):
    sf = read_scores(_write(tmp_path, "s.txt", "LA_E_3 3\nLA_E_0 0\nLA_E_2 2\nLA_E_1 1\n"))
    match = match_scores(_table(), sf)
    assert match.matched_by == "utt_id" and list(match.table.column("utt_id")) == [f"LA_E_{i}" for i in range(4)]
    np.testing.assert_array_equal(match.scores, [0, 1, 2, 3])
    assert match.n_unmatched_scores == 0 and match.n_unmatched_protocol == 0 and match.warnings == []


def test_match_by_path_and_by_stem(tmp_path):
    by_path = read_scores(_write(tmp_path, "p.csv", "path,score\n/data/flac/LA_E_1.flac,1\n/data/flac/LA_E_0.flac,0\n"))
    with pytest.warns(UserWarning, match="2 of 4 protocol utterances have no score"):
        match = match_scores(_table(), by_path)
    assert match.matched_by == "path" and list(match.scores) == [0.0, 1.0]
    assert match.n_unmatched_protocol == 2 and match.unmatched_protocol_examples == ["LA_E_2", "LA_E_3"]
    # scored under another folder and format: only the file stem matches
    by_stem = read_scores(_write(tmp_path, "s.csv", "path,score\nwav/LA_E_0.wav,0\nwav/LA_E_1.wav,1\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert match_scores(_table(), by_stem).matched_by == "stem"
        # a table without paths falls back to the utt_id for the stem
        assert match_scores(_table(paths=False), by_stem).matched_by == "stem"


def test_partial_and_no_overlap_and_key_disagreement(tmp_path):
    sf = read_scores(_write(tmp_path, "s.txt", "LA_E_0 - bonafide 0\nLA_E_1 - bonafide 1\nX_9 - spoof 2\n"))
    with pytest.warns(UserWarning) as record:
        match = match_scores(_table(), sf)
    assert match.n_unmatched_scores == 1 and match.unmatched_score_examples == ["X_9"]
    assert match.n_key_disagreements == 1  # LA_E_1 is spoof in the protocol
    assert len(match.warnings) == 3 and len(record) == 3
    assert match.to_dict()["n_matched"] == 2
    other = read_scores(_write(tmp_path, "o.txt", "Z_1 1\nZ_2 2\n"))
    with pytest.raises(ProtocolError, match="none of its 2 score ids matches"):
        match_scores(_table(), other)


def test_relative_score_paths_resolve_against_the_folder_sdd_score_recorded(tmp_path, monkeypatch):
    # sdd score keeps an output's relative paths relative to its first run's folder (cwd in FILE.run.json);
    # evaluated from another folder, they were taken from the current one and, with repeated file names
    # (bonafide/x0.wav, spoof/x0.wav), nothing matched at all
    import json

    from sddkit.data.protocols import read_protocol
    from sddkit.evaluation.scores import match_scores, read_scores

    work = tmp_path / "work"
    rows = []
    for label in ("bonafide", "spoof"):
        for i in range(2):
            f = work / "set" / label / f"x{i}.wav"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"")
            rows.append((f, label))
    protocol = tmp_path / "meta.csv"
    protocol.write_text("path,label\n" + "".join(f"{f},{lab}\n" for f, lab in rows))
    scores = work / "sc.csv"
    scores.write_text("path,score\n" + "".join(f"set/{lab}/{f.name},{i}\n" for i, (f, lab) in enumerate(rows)))
    (work / "sc.csv.run.json").write_text(json.dumps({"cwd": str(work)}))
    monkeypatch.chdir(tmp_path)  # not where sdd score ran
    m = match_scores(read_protocol(protocol, "labels_csv"), read_scores(scores))
    assert m.matched_by == "path" and len(m.table) == 4 and m.n_unmatched_scores == 0
    assert m.scores.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_score_files_label_column_takes_the_labels_protocols_take(tmp_path):
    # real/fake were refused ("key 'real' is not 'bonafide' or 'spoof'") though every labels CSV reads them
    path = _write(
        tmp_path, "s.csv", "path,score,label\n/data/flac/LA_E_0.flac,1.0,real\n/data/flac/LA_E_1.flac,0.0,Fake\n"
    )
    assert read_scores(path).keys.tolist() == ["bonafide", "spoof"]
    bad = _write(tmp_path, "b.csv", "path,score,label\n/data/flac/LA_E_0.flac,1.0,maybe\n")
    with pytest.raises(ProtocolError, match="'maybe' is not 'bonafide' or 'spoof'"):
        read_scores(bad)


def test_a_comment_with_an_unbalanced_quote_does_not_swallow_the_rows_after_it(tmp_path):
    # read as CSV records, the quote opened a field that ran to the end of the file
    text = 'utt_id,score\n# note,"unbalanced comment\na,0.5\n# another, "one\nb,0.7\n'
    assert list(read_scores(_write(tmp_path, "s.csv", text)).ids) == ["a", "b"]
    # a row whose path starts with # is still a row (it has the header's cells)
    text = "path,score\n# a comment\n#hash.wav,0.5\nplain.wav,0.7\n"
    assert list(read_scores(_write(tmp_path, "h.csv", text)).ids) == ["#hash.wav", "plain.wav"]
