"""sdd score review 3: list manifests of ``path label`` lines, an empty input name, error rows written as
they come."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sddkit.errors import ProtocolError
from sddkit.scoring import batch
from sddkit.scoring.api import ScoringDetector
from sddkit.scoring.inference import InferenceConfig

SR = 16000


def _wav(path: Path, seconds: float = 0.5, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
    return path


def test_a_list_of_path_label_lines_names_the_paths(tmp_path):
    """A list of ``a.wav bonafide`` lines was accepted (its first fields are audio names) but every whole line
    was taken for a path: each file got a "no such file" row."""
    _wav(tmp_path / "audio" / "a.wav")
    _wav(tmp_path / "audio" / "b.wav", seed=1)
    spaced = _wav(tmp_path / "My Recordings" / "c.wav", seed=2)
    listing = tmp_path / "list.txt"
    listing.write_text("audio/a.wav bonafide\naudio/b.wav\tspoof\nMy Recordings/c.wav\n")
    assert batch.expand_inputs([listing]) == [
        str(tmp_path / "audio" / "a.wav"),
        str(tmp_path / "audio" / "b.wav"),
        str(spaced),
    ]


def test_a_listed_file_whose_name_holds_a_space_and_a_word_is_kept_whole(tmp_path):
    odd = tmp_path / "a.wav spoof"  # an existing file of that very name
    odd.write_bytes(b"RIFF\0\0")
    listing = tmp_path / "list.txt"
    listing.write_text("a.wav spoof\n")
    assert batch.expand_inputs([listing]) == [str(odd)]


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_input_name_is_refused(tmp_path, monkeypatch, name):
    """``sdd score "$DIR"`` with DIR unset scored the whole current folder (Path("") is ".")."""
    _wav(tmp_path / "stray.wav")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProtocolError, match="empty input name"):
        batch.expand_inputs([name])


def _detector() -> ScoringDetector:
    def runner(windows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        m = windows.mean(axis=1, dtype=np.float64)
        return np.stack([-m, m], axis=1), {}

    return ScoringDetector(runner, InferenceConfig(window_samples=4000), batch_size=4)


def test_error_rows_are_written_before_a_batch_fills(tmp_path, monkeypatch):
    """Rows of unreadable files waited for a batch of windows to fill: a run over a missing folder wrote
    nothing (and its bar stood still) until the end, and an interrupt lost them all."""
    good = _wav(tmp_path / "good.wav")
    missing = [str(tmp_path / f"gone{i}.wav") for i in range(6)]
    stop = str(tmp_path / "stop.wav")
    decode = batch._decode

    def interrupting(detector, path, max_duration):  # type: ignore[no-untyped-def]
        if path == stop:
            raise KeyboardInterrupt
        return decode(detector, path, max_duration)

    monkeypatch.setattr(batch, "_decode", interrupting)
    out = tmp_path / "s.csv"
    det = _detector()
    with batch.ScoreWriter(out, batch.output_columns([])) as writer, pytest.raises(KeyboardInterrupt):
        batch.score_files(det, [*missing, str(good), stop], writer, workers=0, progress=False)
    _, rows = batch.read_rows(out)
    assert [r["path"] for r in rows] == missing  # the good file waits for its batch; the errors do not
    # and a file decoded after the good one does not hold the errors behind it for ever
    out2 = tmp_path / "s2.csv"
    with batch.ScoreWriter(out2, batch.output_columns([])) as writer, pytest.raises(KeyboardInterrupt):
        batch.score_files(det, [str(good), *missing, stop], writer, workers=0, progress=False)
    _, rows = batch.read_rows(out2)
    assert [r["path"] for r in rows] == [str(good), *missing]
    assert rows[0]["score"] and not rows[0]["error"]


@pytest.mark.parametrize("name", ["files.lst", "files.txt", "files"])
def test_a_one_column_list_headed_path_is_a_manifest(tmp_path, name):
    """``echo path > files.lst; find ... >> files.lst``: the header "path" was listed as a file (an error row)."""
    a = _wav(tmp_path / "a.wav")
    listing = tmp_path / name
    listing.write_text("path\na.wav\n")
    assert batch.expand_inputs([listing]) == [str(a)]


@pytest.mark.parametrize("text", ["a.wav\r\nb.wav\r\n", "path,label\r\na.wav,bonafide\r\nb.wav,spoof\r\n"])
def test_a_utf16_manifest_is_read_as_a_manifest(tmp_path, text):
    """A list written by Windows PowerShell (``dir -Name *.wav > list.txt``: UTF-16 with a BOM) holds NUL bytes,
    so it was taken for an audio file: one "not a readable audio file" row instead of its files' rows."""
    a, b = _wav(tmp_path / "a\u010d.wav"), _wav(tmp_path / "b.wav", seed=1)  # "č": bytes 0D 01 in UTF-16 LE
    listing = tmp_path / "list.txt"
    listing.write_bytes(text.replace("a.wav", "a\u010d.wav").encode("utf-16-le").join([b"\xff\xfe", b""]))
    assert batch.expand_inputs([listing]) == [str(a), str(b)]


def test_binary_that_starts_like_utf16_is_still_audio(tmp_path):
    """An MPEG-1 layer I frame header starts with the UTF-16 LE BOM's bytes: it stays an audio file."""
    blob = tmp_path / "clip"
    blob.write_bytes(b"\xff\xfe" + bytes(range(256)) * 4)
    assert batch.expand_inputs([blob]) == [str(blob)]
