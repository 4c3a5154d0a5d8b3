"""Review: score-file format detection and its errors on plausible inputs (decimal commas, no header row,
capitalised keys); hand-computed checks of minCllr at the PAV ends."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sddkit.errors import ProtocolError
from sddkit.evaluation.scores import detect_score_format, read_scores
from sddkit.metrics import min_cllr


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


@pytest.mark.parametrize(
    "text",
    ["LA_E_1 1,5\nLA_E_2 -2\n", "LA_E_1 - bonafide 1,5\nLA_E_2 A01 spoof -2\n", "S1 E_1 -0,25 bonafide\n"],
)
def test_decimal_comma_scores_are_named_not_read_as_a_csv_header(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, "s.txt", text)
    with pytest.raises(ProtocolError, match="decimal comma"):
        detect_score_format(path)
    with pytest.raises(ProtocolError, match="decimal comma"):
        read_scores(path)


def test_decimal_comma_with_an_explicit_format_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.txt", "LA_E_1 1,5\n")
    with pytest.raises(ProtocolError, match=r"s.txt:1: score '1,5' is written with a decimal comma"):
        read_scores(path, format="asvspoof2021")


def test_csv_header_with_commas_still_detected(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.csv", "path, score\r\na.wav, 1.5\r\nb.wav,-2\r\n")
    read = read_scores(path)
    assert read.format == "csv" and read.scores.tolist() == [1.5, -2.0]


def test_headerless_csv_says_the_header_row_is_missing(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.csv", "a.wav,0.93\nb.wav,0.1\n")
    with pytest.raises(ProtocolError, match="looks like data, not a header"):
        read_scores(path)


def test_keyed_asvspoof5_file_with_capitalised_keys_is_detected(tmp_path: Path) -> None:
    # the keyed reader accepts Bonafide / real / fake; detection must not refuse the file they are in
    path = _write(tmp_path, "k.txt", "S1 E_1 1.5 Bonafide\nS1 E_2 -2 Spoof\n")
    assert detect_score_format(path) == "asvspoof5_keyed"
    assert read_scores(path).keys.tolist() == ["bonafide", "spoof"]


def test_min_cllr_hand_computed_with_infinite_pav_ends() -> None:
    # PAV posteriors 0, 1/2, 1/2, 1 -> LLRs -inf, 0, 0, +inf: Cllr = (ln2/2 + ln2/2) / (2 ln2) = 0.5
    assert min_cllr([0, 1, 0, 1], [1.0, 2.0, 3.0, 4.0]) == pytest.approx(0.5)
    # prior 1/3: posteriors 0, 1/2, 1/2 -> LLR ln2 on the pooled block
    expected = (math.log(1.5) + math.log(3.0) / 2) / (2 * math.log(2))
    assert min_cllr([0, 1, 0], [0.0, 1e-16, 2e-16]) == pytest.approx(expected)
    assert min_cllr([0, 0, 1], [1.0, 2.0, 3.0]) == 0.0


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_score_files_as_powershell_writes_them_are_read(tmp_path: Path, encoding: str) -> None:
    bom = "\ufeff" if encoding == "utf-16-be" else ""  # the utf-16 codec writes its own BOM
    path = tmp_path / "s.txt"
    path.write_bytes((bom + "LA_E_1 1.5\r\nLA_E_2 -2\r\n").encode(encoding))
    read = read_scores(path)
    assert read.format == "asvspoof2021"
    assert read.ids.tolist() == ["LA_E_1", "LA_E_2"] and read.scores.tolist() == [1.5, -2.0]
    csv_path = tmp_path / "s.csv"
    csv_path.write_bytes((bom + "path,score\r\na.wav,0.5\r\n").encode(encoding))
    assert read_scores(csv_path).scores.tolist() == [0.5]


def test_truncated_utf16_score_file_is_a_protocol_error(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_bytes("LA_E_1 1.5\n".encode("utf-16") + b"\x00")
    with pytest.raises(ProtocolError, match="not readable UTF-16"):
        read_scores(path)
