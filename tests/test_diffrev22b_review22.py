"""Review diffrev22b of the day's changes: a WAV given as scores whose first "line" ends before its first NUL, a
Kaldi wav.scp whose files are missing, and the service's 422 naming an empty file input as the file sent."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scoring_support import save_tiny_lcnn

from sddkit.errors import ProtocolError
from sddkit.evaluation.scores import read_scores
from sddkit.scoring.batch import read_manifest


def test_a_wav_whose_riff_size_holds_a_line_feed_is_named_as_audio(tmp_path):
    """The binary check looked at the first text line only: a WAV whose RIFF size bytes hold 0x0a (about one in
    thirty) ends that line before its first NUL, and was refused as "cannot tell the score format from 'RIFF'"."""
    # RIFF size = 36 + 2 * samples for 16-bit mono PCM: its low byte 0x0a
    n = next(k for k in range(1000, 2000) if (36 + 2 * k) % 256 == 0x0A)
    wav = tmp_path / "clip.wav"
    sf.write(wav, np.zeros(n, dtype=np.int16), 16000, subtype="PCM_16")
    assert b"\n" in wav.read_bytes()[4:8]
    with pytest.raises(ProtocolError, match="not a text score file: it starts like a WAV audio file"):
        read_scores(wav)


def test_text_scores_whose_ids_start_like_a_magic_are_still_read(tmp_path):
    scores = tmp_path / "s.txt"
    scores.write_text("RIFF_utt1 0.5\nID3_utt2 -1.5\n")
    assert read_scores(scores).scores.tolist() == [0.5, -1.5]


def test_a_wav_scp_whose_files_are_missing_lists_the_files(tmp_path):
    """``utt001 /data/a.wav`` with /data not mounted: each error row named '<manifest folder>/utt001 /data/a.wav'
    (the whole line as a relative path), not the file the line lists."""
    scp = tmp_path / "wav.scp"
    scp.write_text("utt001 /no/such/disk/a.wav\nutt002 /no/such/disk/My Recordings/b.flac\nutt003 C:\\data\\c.wav\n")
    assert read_manifest(scp) == ["/no/such/disk/a.wav", "/no/such/disk/My Recordings/b.flac", "C:\\data\\c.wav"]


def test_missing_paths_with_spaces_keep_their_whole_line(tmp_path):
    # what the wav.scp rule must not take: a missing 'Old Takes/d.wav' (relative) and a label after a path
    lst = tmp_path / "list.txt"
    lst.write_text("Old Takes/d.wav\n/no/such/e.wav /no/such/f.wav\n")
    assert read_manifest(lst) == ["Old Takes/d.wav", "/no/such/e.wav /no/such/f.wav"]


def test_an_empty_file_input_is_not_named_as_the_file_sent(tmp_path):
    """An HTML form whose file input (named 'audio') was left empty sends a part with filename="" and no bytes:
    the 422 said "the file was sent in the field 'audio'", where no file was sent."""
    from fastapi.testclient import TestClient

    from sddkit.service.app import create_app

    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename=""\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n\r\n--{boundary}--\r\n"
    ).encode()
    model = save_tiny_lcnn(tmp_path / "lcnn")
    with TestClient(create_app(model, max_upload_mb=1, max_duration_s=5)) as client:
        sent = client.post(
            "/v1/score", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
        )
    assert sent.status_code == 422 and sent.json()["error"]["type"] == "missing_field"
    message = sent.json()["error"]["message"]
    assert "the form has no field 'file'" in message and "was sent in the field" not in message
    assert str(tmp_path) not in message


def test_a_resume_refused_for_a_setting_one_record_lacks_names_it(tmp_path):
    """An inference setting the earlier run's record lacks and this run holds as None (one added since): the two
    read alike by .get(), and the refusal listed no change, "holds rows of another scoring run ()"."""
    from sddkit.scoring.batch import _refuse_another_run

    earlier = {"inference": {"window_s": 4.0, "hop_s": 2.0}, "windows": False}
    now = {"inference": {"window_s": 4.0, "hop_s": 2.0, "max_duration_s": None}, "windows": False}
    with pytest.raises(ProtocolError) as caught:
        _refuse_another_run(tmp_path / "scores.csv", earlier, now)
    message = str(caught.value)
    assert "another scoring run ()" not in message
    assert "inference.max_duration_s: earlier (not recorded), now None" in message
    assert "window_s" not in message
