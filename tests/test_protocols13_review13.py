"""Review 13 of the protocol readers: the ASVspoof readers at the scale of the 2021 DF key (611,829 trials), and
one label vocabulary for labels CSVs, labelled folders and utterance tables."""

from __future__ import annotations

import tracemalloc

import pandas as pd
import pytest

from sddkit.data.protocols import read_protocol
from sddkit.data.protocols._common import Words, iter_lines
from sddkit.data.protocols.folder import FOLDER_LABELS
from sddkit.data.protocols.labels_csv import LABELS_CSV_LABELS
from sddkit.data.table import BONAFIDE_SPOOF_WORDS, UtteranceTable
from sddkit.errors import ProtocolError

# --- the ASVspoof readers at scale ------------------------------------------------------------

_N = 5000
_KEY_LINES = {
    "asvspoof2019_la": "LA_{s:04d} LA_E_{i:07d} - A{a:02d} spoof\n",
    "asvspoof2021_la": "LA_{s:04d} LA_E_{i:07d} alaw ita_tx A{a:02d} spoof notrim eval\n",
    "asvspoof2021_df": "LA_{s:04d} DF_E_{i:07d} nocodec asvspoof A{a:02d} spoof notrim progress vocoder - - - -\n",
    "asvspoof5": "E_{s:04d} E_{i:010d} F C05 3 5 AC3 A{a:02d} spoof -\n",
}


@pytest.mark.parametrize("fmt", sorted(_KEY_LINES))
def test_asvspoof_readers_hold_no_dict_per_trial(tmp_path, fmt):
    """A dict per trial took over 1 KB a trial at the reader's peak (1.3 GB for the 611,829 trials of the 2021 DF
    key; 600 B to 1.1 KB a trial on these keys); rows as tuples of shared words take about 350 B."""
    key = tmp_path / "key.txt"
    key.write_text("".join(_KEY_LINES[fmt].format(s=i % 90, i=i, a=7 + i % 13) for i in range(_N)))
    read_protocol(key, format=fmt)  # imports and caches out of the measure
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        table = read_protocol(key, format=fmt)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert len(table) == _N
    assert peak / _N < 500, f"{peak / _N:.0f} bytes a trial"


def test_words_keep_one_copy_of_each_value_and_read_dash_as_empty():
    words, same = Words(), Words(dash="-")
    first, second = "LA_0001 A07 -".split(), "LA_0002 A07 -".split()
    assert first[1] is not second[1]
    assert words[first[1]] is words[second[1]] == "A07"
    assert words[first[2]] == "" and same[second[2]] == "-"


def test_df_key_rows_are_read_as_before(tmp_path):
    """Full and stage-1 lines in one key, VCC and ASVspoof trials, a key in capitals, unknown fields as '-'."""
    key = tmp_path / "trial_metadata.txt"
    key.write_text(
        "# comment\n\n"
        "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -\n"
        "TEF2 DF_E_2000013 low_m4a vcc2020 Task1-team20 Spoof notrim eval neural_vocoder Task1 team20 FM English\n"
        "  \n"
        "LA_0043 DF_E_2000026 mp3m4a - A07 bonafide - hidden - - - - -\n"
        "- DF_E_2000030 - - - spoof - progress\n"
    )
    df = read_protocol(key, format="asvspoof2021_df").df
    assert df.columns.tolist() == [
        *("utt_id", "path", "label", "attack", "source", "speaker", "corpus", "duration_s", "partition", "codec"),
        *("vocoder", "trim", "attack_type", "vcc_task", "vcc_team", "vcc_gender_pair", "vcc_language"),
    ]
    rows = df.drop(columns="duration_s").to_dict("records")
    corpus = "asvspoof2021_df"
    assert rows == [
        dict(
            utt_id="DF_E_2000011",
            path="",
            label="spoof",
            attack="A14",
            source="asvspoof",
            speaker="LA_0023",
            corpus=corpus,
            partition="progress",
            codec="nocodec",
            vocoder="traditional_vocoder",
            trim="notrim",
            attack_type="tts+vc",
            vcc_task="",
            vcc_team="",
            vcc_gender_pair="",
            vcc_language="",
        ),
        dict(
            utt_id="DF_E_2000013",
            path="",
            label="spoof",
            attack="Task1-team20",
            source="vcc2020",
            speaker="TEF2",
            corpus=corpus,
            partition="eval",
            codec="low_m4a",
            vocoder="neural_vocoder",
            trim="notrim",
            attack_type="vc",
            vcc_task="Task1",
            vcc_team="team20",
            vcc_gender_pair="FM",
            vcc_language="English",
        ),
        dict(
            utt_id="DF_E_2000026",
            path="",
            label="bonafide",
            attack="bonafide",
            source=corpus,
            speaker="LA_0043",
            corpus=corpus,
            partition="hidden",
            codec="mp3m4a",
            vocoder="",
            trim="",
            attack_type="",
            vcc_task="",
            vcc_team="",
            vcc_gender_pair="",
            vcc_language="",
        ),
        dict(
            utt_id="DF_E_2000030",
            path="",
            label="spoof",
            attack="",
            source=corpus,
            speaker="",
            corpus=corpus,
            partition="progress",
            codec="",
            vocoder="",
            trim="",
            attack_type="",
            vcc_task="",
            vcc_team="",
            vcc_gender_pair="",
            vcc_language="",
        ),
    ]
    assert df["duration_s"].isna().all()
    key.write_text(key.read_text() + "LA_0023 DF_E_2000011 - - - spoof - eval\n")
    with pytest.raises(ProtocolError, match=r"metadata\.txt:8: duplicate utt_id 'DF_E_2000011' \(first at line 3\)"):
        read_protocol(key, format="asvspoof2021_df")


def test_2019_environment_column_only_where_pa_trials_are_read(tmp_path):
    la = tmp_path / "la.txt"
    la.write_text("LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1138216 - A01 spoof\n")
    assert "environment" not in read_protocol(la, format="asvspoof2019_la").columns
    mixed = tmp_path / "mixed.txt"
    mixed.write_text(la.read_text() + "PA_0079 PA_T_0000001 aaa BB spoof\nPA_0079 PA_T_0000002 - - bonafide\n")
    df = read_protocol(mixed, format="asvspoof2019_la").df
    assert df.columns.tolist()[-3:] == ["partition", "attack_type", "environment"]
    assert df["environment"].tolist() == ["", "", "aaa", ""]
    assert df["attack_type"].tolist() == ["", "tts", "replay", ""]
    assert df["corpus"].tolist() == ["asvspoof2019_la"] * 2 + ["asvspoof2019_pa"] * 2


def test_iter_lines_skips_blank_and_comment_lines_and_keeps_line_numbers(tmp_path):
    p = tmp_path / "k.txt"
    p.write_text("  # note\n\t\nA B  \n\n  C D\n#E\n")
    assert list(iter_lines(p)) == [(3, "A B"), (5, "C D")]


# --- one label vocabulary -------------------------------------------------------------------------


def test_labels_csv_folders_and_utterance_tables_share_one_vocabulary():
    assert LABELS_CSV_LABELS is BONAFIDE_SPOOF_WORDS and FOLDER_LABELS is BONAFIDE_SPOOF_WORDS


@pytest.mark.parametrize("word", sorted({w for k in BONAFIDE_SPOOF_WORDS for w in (k, k.upper(), k.title())}))
def test_utterance_table_takes_the_words_a_labels_csv_takes(tmp_path, word):
    """A table with real/fake labels was refused ('labels must be bonafide or spoof') where a labels CSV of the same
    files read them."""
    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,label\na.wav,{word}\nb.wav,spoof\n")
    table = tmp_path / "table.csv"
    table.write_text(f"utt_id,path,label\na,a.wav,{word}\nb,b.wav,spoof\n")
    expected = read_protocol(labels).df["label"].tolist()
    assert read_protocol(table).df["label"].tolist() == expected
    assert UtteranceTable.load(table).labels.tolist() == [int(expected[0] == "bonafide"), 0]


def test_utterance_table_parquet_takes_the_same_words(tmp_path):
    table = tmp_path / "t.parquet"
    pd.DataFrame({"utt_id": ["a", "b", "c"], "label": ["Real", "FAKE", " bona fide "]}).to_parquet(table)
    assert UtteranceTable.load(table).df["label"].tolist() == ["bonafide", "spoof", "bonafide"]


def test_utterance_table_unknown_label_names_the_file_and_the_words(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("utt_id,path,label\na,a.wav,real\nb,b.wav,maybe\n")
    with pytest.raises(ProtocolError, match=r"t\.csv: labels must be 'bonafide' or 'spoof' \(or .*real/fake.*'maybe'"):
        UtteranceTable.load(table)
