"""Review 26 of the protocol readers against the published layouts.

The ASVspoof 2021 PA keys had no reader: ``keys/PA/CM/trial_metadata.txt`` (12 fields, as the evaluation package's
``eval-package/config.py`` ``ConfigPA.p_names`` names them: spk trial asv_room asv_mic dis_to_asv att_room att_mic
att_d att_to_spk label trim subset) and the stage-1 key (7 fields: trial second, key fifth, phase last, as
``PA/package-stage-1/evaluate.py`` reads columns 1, 4 and 6) were refused, so the PA track could not be evaluated.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sddkit.data.protocols import detect_format, read_protocol
from sddkit.errors import ProtocolError

_FULL = [
    "PA_0010 PA_E_1000001 R3 M3 d4 r1 m1 s4 c4 spoof notrim eval",
    "PA_0010 PA_E_1000002 R3 M3 D4 - - - - bonafide notrim progress",
    "PA_0011 PA_E_1000003 R1 M2 d1 r9 m3 s2 c2 spoof trim hidden",
]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_asvspoof2021_pa_full_key_is_read_with_its_factors_and_audio(tmp_path):
    key = _write(tmp_path / "keys" / "PA" / "CM" / "trial_metadata.txt", "\r\n".join(_FULL) + "\r\n")
    flac = _write(tmp_path / "ASVspoof2021_PA_eval" / "flac" / "PA_E_1000001.flac", "")
    assert detect_format(key) == "asvspoof2021_pa"
    df = read_protocol(key).df.set_index("utt_id")
    assert df["label"].tolist() == ["spoof", "bonafide", "spoof"]
    assert df["partition"].tolist() == ["eval", "progress", "hidden"]
    assert df["trim"].tolist() == ["notrim", "notrim", "trim"]
    assert df["corpus"].unique().tolist() == ["asvspoof2021_pa"]
    assert df["speaker"].tolist() == ["PA_0010", "PA_0010", "PA_0011"]
    # every factor in the column the evaluation package names it, as written (the bona fide trial's '-' as '')
    spoof = df.loc["PA_E_1000001"]
    assert [spoof[c] for c in ("asv_room", "asv_mic", "dis_to_asv")] == ["R3", "M3", "d4"]
    assert [spoof[c] for c in ("att_room", "att_mic", "att_d", "att_to_spk")] == ["r1", "m1", "s4", "c4"]
    assert df.loc["PA_E_1000002", "att_room"] == "" and df.loc["PA_E_1000002", "dis_to_asv"] == "D4"
    # a replay attack is its attacker-side factors; bona fide trials are no attack
    assert df["attack"].tolist() == ["r1_m1_s4_c4", "bonafide", "r9_m3_s2_c2"]
    assert df["attack_type"].tolist() == ["replay", "", "replay"]
    # the audio found from the keys' official place beside ASVspoof2021_PA_eval/
    assert Path(df.loc["PA_E_1000001", "path"]).resolve() == flac.resolve()
    assert read_protocol(key, phases=["hidden"]).df["utt_id"].tolist() == ["PA_E_1000003"]


def test_asvspoof2021_pa_stage1_key_is_read(tmp_path):
    key = _write(
        tmp_path / "keys" / "CM" / "trial_metadata.txt",
        "- PA_E_1000004 - - bonafide - progress\n- PA_E_1000005 - - spoof - hidden_track_2\n",
    )
    assert detect_format(key) == "asvspoof2021_pa"
    df = read_protocol(key).df
    assert df["label"].tolist() == ["bonafide", "spoof"]
    assert df["partition"].tolist() == ["progress", "hidden_track_2"]
    assert df["attack"].tolist() == ["bonafide", ""]  # the stage-1 key does not say the attack
    assert df["speaker"].tolist() == ["", ""]


def test_asvspoof2021_pa_audio_in_the_eval_archive_parts_is_found(tmp_path):
    key = _write(tmp_path / "trial_metadata.txt", "\n".join(_FULL[:2]) + "\n")
    a = _write(tmp_path / "ASVspoof2021_PA_eval_part00" / "ASVspoof2021_PA_eval" / "flac" / "PA_E_1000001.flac", "")
    b = _write(tmp_path / "ASVspoof2021_PA_eval_part03" / "ASVspoof2021_PA_eval" / "flac" / "PA_E_1000002.flac", "")
    df = read_protocol(key, format="asvspoof2021_pa", root=str(tmp_path)).df.set_index("utt_id")
    assert df.loc["PA_E_1000001", "path"] == str(a) and df.loc["PA_E_1000002", "path"] == str(b)


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("PA_0010 PA_E_1000002 R3 M3 D4 - - - - target notrim eval", r"2: key 'target' is a speaker-verification"),
        ("LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval", r"2: trial 'LA_E_9332881' is an ASVspoof 2021 LA"),
        ("PA_0010 PA_E_1000001 R3 M3 d4 r1 m1 s4 c4 spoof notrim", r"2: expected 12 or 7 fields"),
        ("PA_0010 PA_E_1000001 R3 M3 d4 r1 m1 s4 c4 spooof notrim eval", r"2: unknown label 'spooof'"),
    ],
)
def test_asvspoof2021_pa_reader_names_the_bad_line(tmp_path, line, said):
    key = _write(tmp_path / "trial_metadata.txt", _FULL[1] + "\n" + line + "\n")
    with pytest.raises(ProtocolError, match=r"trial_metadata\.txt:" + said):
        read_protocol(key, format="asvspoof2021_pa")


def test_asvspoof2021_pa_duplicate_trial_and_phase_typo_are_errors(tmp_path):
    key = _write(tmp_path / "trial_metadata.txt", "\n".join([*_FULL, _FULL[0]]) + "\n")
    with pytest.raises(
        ProtocolError, match=r"trial_metadata\.txt:4: duplicate utt_id 'PA_E_1000001' \(first at line 1"
    ):
        read_protocol(key)
    ok = _write(tmp_path / "ok.txt", "\n".join(_FULL) + "\n")
    with pytest.raises(ProtocolError, match=r"no phases \['evl'\]"):
        read_protocol(ok, phases=["evl"])


def test_the_2021_pa_asv_key_is_still_refused_as_an_asv_key(tmp_path):
    asv = _write(tmp_path / "keys" / "PA" / "ASV" / "trial_metadata.txt", _FULL[1].replace("bonafide", "target") + "\n")
    with pytest.raises(ProtocolError, match=r"an ASVspoof 2021 PA speaker-verification \(ASV\) key \(KEY 'target'\)"):
        detect_format(asv)
