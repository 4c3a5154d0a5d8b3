"""Review diffrev23: a second read of the day's changes (d536be8..), where two of them meet or an old case broke.

- ``--protocol-option`` gave every value as text: a yes/no reader option (``folder``'s ``attack_from_subfolder``)
  was refused as "expected true/false, got 'false'".
- ``sdd calibrate`` on a file over ``--max-duration-s`` said to call ``score_file(path, max_duration=None)`` (the
  Python hint ``score_file`` gained today) before its own ``--max-duration-s`` hint.
- An ASVspoof 5 SASV score file given as ``--scores`` was refused, saying what it is, when its first trial is a target
  or non-target one; one whose first trial is a spoof one was read as CM scores and stopped at the next line with
  "key 'target' is not 'bonafide' or 'spoof'".
- ``sdd eval --asv-scores`` refused an ASV score file of ASVspoof 2019's layout under a header naming its score
  column ``asv_score`` (``source key asv_score``) as "an ASVspoof 5 SASV score file"; such a header was skipped before.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli.main import main
from sddkit.cli.options import parse_protocol_options, read_partitions_and_rest, typed_protocol_options
from sddkit.errors import ConfigError, ProtocolError
from sddkit.evaluation.asv import read_asv_scores
from sddkit.evaluation.scores import read_scores
from sddkit.scoring.calibrate import calibrate_on_protocol


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


def _folder(root: Path) -> Path:
    write_noise_wav(root / "bonafide" / "b.wav", 0.6, 1)
    write_noise_wav(root / "spoof" / "tts1" / "s.wav", 0.6, 2)
    return root


@pytest.mark.parametrize(("given", "attack"), [("false", ""), ("no", ""), ("true", "tts1"), ("True", "tts1")])
def test_a_yes_no_reader_option_is_taken_from_protocol_option_text(tmp_path, given, attack):
    folder = _folder(tmp_path / "corpus")
    options = parse_protocol_options([f"attack_from_subfolder={given}"])
    table, rest = read_partitions_and_rest(str(folder), "folder", None, options)
    spoof = [a for a, label in zip(table.column("attack"), table.column("label")) if label == "spoof"]
    assert spoof == [attack] and rest is None


def test_a_yes_no_reader_option_still_refuses_other_words(tmp_path):
    folder = _folder(tmp_path / "corpus")
    with pytest.raises(ConfigError, match="attack_from_subfolder: expected true/false, got 'maybe'"):
        read_partitions_and_rest(str(folder), "folder", None, parse_protocol_options(["attack_from_subfolder=maybe"]))


def test_options_of_other_types_are_passed_on_as_given():
    given = {"codecs": "C01", "root": "/data/a,b", "nope": "x"}
    assert typed_protocol_options("asvspoof5", given) == given  # read_protocol takes one codec as a list
    assert typed_protocol_options("no_such_reader", {"attack_from_subfolder": "no"}) == {"attack_from_subfolder": "no"}


def _calibration_protocol(tmp_path: Path) -> Path:
    rows = [
        (write_noise_wav(tmp_path / "b1.wav", 0.6, 1), "bonafide"),
        (write_noise_wav(tmp_path / "s1.wav", 0.6, 2), "spoof"),
        (write_noise_wav(tmp_path / "long.wav", 1.2, 3), "spoof"),
    ]
    protocol = tmp_path / "val.csv"
    protocol.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return protocol


def test_sdd_calibrate_names_its_own_option_for_a_file_over_the_limit(tmp_path, model_dir, capsys):
    protocol = _calibration_protocol(tmp_path)
    argv = ["calibrate", "--model", str(model_dir), "--protocol", str(protocol), "--out", str(tmp_path / "cal")]
    assert main([*argv, "--max-duration-s", "0.8"]) == 2
    err = capsys.readouterr().err
    assert "long.wav" in err and "sdd calibrate --max-duration-s sets the limit (0: none)" in err
    assert "score_file(" not in err  # a Python call the command-line user did not make


def test_calibrate_on_protocol_names_its_own_keyword_for_a_file_over_the_limit(tmp_path, model_dir):
    protocol = _calibration_protocol(tmp_path)
    with pytest.raises(ConfigError) as caught:
        calibrate_on_protocol(model_dir, protocol, out=tmp_path / "cal", max_duration=0.8)
    assert "calibrate_on_protocol(..., max_duration=None) scores any length" in str(caught.value)
    assert "score_file(" not in str(caught.value)


def test_an_sasv_score_file_whose_first_trial_is_a_spoof_one_is_named_as_such(tmp_path):
    path = tmp_path / "sasv_scores.txt"
    path.write_text("LA_0015 E_0001 -3.2 spoof\nLA_0015 E_0002 6.96 target\nLA_0016 E_0003 1.0 nontarget\n")
    with pytest.raises(ProtocolError, match=r"sasv_scores.txt:2: an SASV score file \(SPEAKER UTT SCORE KIND"):
        read_scores(path)
    # a keyed CM score file is read as before
    path.write_text("LA_0015 E_0001 -3.2 spoof\nLA_0015 E_0002 6.96 bonafide\n")
    assert list(read_scores(path).ids) == ["E_0001", "E_0002"]


@pytest.mark.parametrize("header", ["source key asv_score", "source,key,asv-score", "key sasv_score"])
def test_an_asv_score_file_of_the_2019_layout_under_a_header_of_its_own_is_read(tmp_path, header):
    path = tmp_path / "asv.txt"
    sep = "," if "," in header else " "
    lines = [("bonafide", "target", "1.5"), ("bonafide", "nontarget", "-1"), ("A07", "spoof", "-0.5")]
    if header.startswith("key"):
        lines = [row[1:] for row in lines]
    path.write_text(header + "\n" + "".join(sep.join(row) + "\n" for row in lines))
    scores = read_asv_scores(path)
    assert list(scores.target) == [1.5] and list(scores.nontarget) == [-1.0] and list(scores.spoof) == [-0.5]


def test_an_asvspoof5_score_table_without_kinds_is_still_refused_saying_what_to_join(tmp_path):
    path = tmp_path / "track2.txt"
    path.write_text("spk filename cm-score asv-score sasv-score\nLA_0015 E_0001 1.0 2.0 3.0\n")
    with pytest.raises(ProtocolError, match="--asv-key KEY"):
        read_asv_scores(path)


def test_asv_scores_of_the_full_keys_dummy_trials_are_left_out_not_refused(tmp_path):
    # the package joins a submission (every trial of the list, its dummy ones too) with the full key, then drops the
    # track_2_tag dummy rows: sdd eval --asv-key refused the submission, "the trial (E_0909, E_000099) is not in the
    # SASV key"
    key = tmp_path / "full_key.txt"
    key.write_text(
        "tar_spk_anon trial_anon cm-label asv-label track_2_tag\n"
        "E_0101 E_000001 bonafide target -\n"
        "E_0101 E_000002 bonafide nontarget -\n"
        "E_0101 E_000003 spoof spoof -\n"
        "E_0909 E_000099 spoof spoof dummy\n"
    )
    scores = tmp_path / "submission.tsv"
    rows = [("E_0101", "E_000001", 3.0), ("E_0101", "E_000002", -2.0), ("E_0101", "E_000003", -1.0)]
    rows.append(("E_0909", "E_000099", 9.0))
    scores.write_text(
        "spk\tfilename\tcm-score\tasv-score\tsasv-score\n" + "".join(f"{s}\t{u}\t0\t{v}\t0\n" for s, u, v in rows)
    )
    asv = read_asv_scores(scores, key=key)
    assert (asv.target.tolist(), asv.nontarget.tolist(), asv.spoof.tolist()) == ([3.0], [-2.0], [-1.0])
    # a trial neither in the key nor a dummy one is still refused
    scores.write_text(scores.read_text() + "E_0202\tE_000005\t0\t1.0\t0\n")
    with pytest.raises(ProtocolError, match=r"\(E_0202, E_000005\) is not in the SASV key"):
        read_asv_scores(scores, key=key)


def test_the_full_keys_dummy_trials_are_no_protocol_utterances(tmp_path):
    # the package's track-2 metrics drop the full key's track_2_tag dummy rows, the CM side too; read as the --protocol
    # they were evaluated as bona fide/spoof trials like any other
    from sddkit.data.protocols import read_protocol

    key = tmp_path / "full_key.txt"
    key.write_text(
        "tar_spk_anon trial_anon cm-label asv-label attack_anon codec track_2_tag\n"
        "E_0101 E_000001 bonafide target bonafide - -\n"
        "E_0101 E_000003 spoof spoof A17 C01 -\n"
        "E_0909 E_000099 spoof spoof A18 C05 dummy\n"
    )
    table = read_protocol(key)
    assert table.column("utt_id").tolist() == ["E_000001", "E_000003"]
    assert table.column("codec").tolist() == ["none", "C01"]
