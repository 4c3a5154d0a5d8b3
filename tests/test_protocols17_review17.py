"""Review 17 of the protocol readers against the published layouts: the ASVspoof files next to the CM protocols that
no reader takes (the 2021 ASV and PA keys, full and stage-1, and the ASV enrolment lists) are named as what they are
by format detection, where it said "cannot tell the protocol format" and advised naming a format."""

from __future__ import annotations

from pathlib import Path

import pytest

from sddkit.data.protocols import detect_format, read_protocol
from sddkit.errors import ProtocolError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# The 2021 LA ASV key: the CM key's 8 columns with KEY target/nontarget/spoof (eval-package/config.py of
# asvspoof-challenge/2021: p_names_asv = spk trial codec trans attack label trim subset; the stage-1 evaluate.py reads
# KEY from column 5 and PHASE from column 7 of keys/ASV/trial_metadata.txt).
@pytest.mark.parametrize(
    "line",
    [
        "LA_0015 LA_E_5013670 alaw ita_tx bonafide target notrim eval",
        "LA_0015 LA_E_5013671 none - bonafide nontarget notrim progress",
        "- LA_E_5013672 - - - target - hidden_track",  # stage-1 keys: the unknown fields '-'
    ],
)
def test_asvspoof2021_la_asv_key_is_named_as_such(tmp_path, line):
    key = _write(tmp_path / "keys" / "LA" / "ASV" / "trial_metadata.txt", line + "\n")
    with pytest.raises(
        ProtocolError, match=r"trial_metadata\.txt:1: an ASVspoof 2021 speaker-verification \(ASV\) key"
    ):
        detect_format(key)
    with pytest.raises(ProtocolError, match=r"keys/LA/CM/trial_metadata\.txt"):
        read_protocol(key)


# The 2021 PA keys: SPEAKER TRIAL + 7 replay factors + KEY TRIM PHASE (config.py: p_names and p_names_asv), KEY
# target/nontarget/spoof in the ASV key; the stage-1 keys have 7 fields, the trial second, KEY fifth and PHASE
# last (eval-package/PA/package-stage-1/evaluate.py: columns 1, 4 and 6).
# The CM keys are read by asvspoof2021_pa (added since); the ASV keys are still refused, as ASV keys.
@pytest.mark.parametrize(
    ("line", "fmt"),
    [
        ("PA_0010 PA_E_1000001 R3 M3 d4 r1 m1 s4 c4 spoof notrim eval", "asvspoof2021_pa"),  # the CM key
        ("PA_0010 PA_E_1000002 R3 M3 D4 - - - - target notrim eval", None),
        ("PA_0010 PA_E_1000003 R3 M3 D4 - - - - nontarget trim hidden", None),
        ("- PA_E_1000004 - - bonafide - progress", "asvspoof2021_pa"),
        ("- PA_E_1000005 - - target - hidden_track_1", None),
    ],
)
def test_asvspoof2021_pa_keys_are_named_as_such(tmp_path, line, fmt):
    key = _write(tmp_path / "keys" / "PA" / "CM" / "trial_metadata.txt", line + "\n")
    if fmt is not None:
        assert detect_format(key) == fmt
        return
    with pytest.raises(ProtocolError, match=r"trial_metadata\.txt:1: an ASVspoof 2021 PA speaker-verification"):
        detect_format(key)


@pytest.mark.parametrize(
    "line",
    [
        # ASVspoof5.dev.enroll.txt (ASVspoof 5's README and the SASV baseline: a target speaker and its enrolment
        # utterances, comma-separated)
        "D_4660 D_A0000000316,D_A0000000725,D_A0000000343",
        "LA_0069 LA_D_1047731,LA_D_1105538",  # ASVspoof 2019's *.asv.*.trn.txt, laid out alike
    ],
)
def test_asv_enrolment_list_is_named_as_such(tmp_path, line):
    enrol = _write(tmp_path / "ASVspoof5.dev.enroll.txt", line + "\n")
    with pytest.raises(ProtocolError, match=r"enroll\.txt:1: an ASV enrolment list"):
        detect_format(enrol)


def test_the_cm_keys_and_two_field_lists_are_still_detected(tmp_path):
    cases = {
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval": "asvspoof2021_la",
        "- LA_E_9332882 - - - bonafide - hidden_track": "asvspoof2021_la",
        "- DF_E_2000011 - - - spoof - progress": "asvspoof2021_df",
        "ADD_T_00000000.wav genuine": "add2022",
        "T_4850 T_0000000000 F - - - AC3 A05 spoof -": "asvspoof5",
    }
    for i, (line, fmt) in enumerate(cases.items()):
        assert detect_format(_write(tmp_path / f"p{i}.txt", line + "\n")) == fmt
    # an ASV key starting with a spoof line is taken for the CM key; its reader names the first ASV key's line
    asv = _write(
        tmp_path / "asv.txt",
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\nLA_0015 LA_E_5013670 alaw ita_tx bonafide target "
        "notrim eval\n",
    )
    with pytest.raises(ProtocolError, match=r"asv\.txt:2: key 'target' is a speaker-verification \(ASV\) key"):
        read_protocol(asv)


@pytest.mark.parametrize(
    ("line", "fmt", "said"),
    [
        # the DF key's 13 fields (config.py ConfigDF.p_names) given to the LA reader
        (
            "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -",
            "asvspoof2021_la",
            r"'DF_E_2000011' is an ASVspoof 2021 DF trial, not LA; read it with asvspoof2021_df",
        ),
        # the PA key's 12 fields (ConfigPA.p_names) given to either reader
        (
            "PA_0010 PA_E_1000001 R3 M3 d4 r1 m1 s4 c4 spoof notrim eval",
            "asvspoof2021_la",
            r"'PA_E_1000001' is an ASVspoof 2021 PA trial, not LA; read it with asvspoof2021_pa",
        ),
        (
            "PA_0010 PA_E_1000001 R3 M3 d4 r1 m1 s4 c4 spoof notrim eval",
            "asvspoof2021_df",
            r"'PA_E_1000001' is an ASVspoof 2021 PA trial, not DF",
        ),
    ],
)
def test_a_2021_reader_given_another_tracks_key_names_the_track(tmp_path, line, fmt, said):
    """Was "expected 8 fields (...), got 13": the format named in a recipe (`format:`) or `--protocol-format` was
    the other track's, which the field count did not say."""
    key = _write(tmp_path / "trial_metadata.txt", line + "\n")
    with pytest.raises(ProtocolError, match=r"trial_metadata\.txt:1: trial " + said):
        read_protocol(key, format=fmt)
    # a key of the reader's own track with a field too many is still a field-count error
    bad = _write(tmp_path / "bad.txt", "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval extra\n")
    with pytest.raises(ProtocolError, match=r"bad\.txt:1: expected 8 fields"):
        read_protocol(bad, format="asvspoof2021_la")
