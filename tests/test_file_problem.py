"""One check of an audio path before decoding (``audio.io.file_problem``): ``load_audio``'s refusals and the
training data preflight (``training.data.unusable_audio``) name a file's problem alike."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_audio_review3 import _error_without_permission

from sddkit.audio.io import file_problem, load_audio
from sddkit.errors import AudioDecodeError, AudioError, AudioNotFoundError, EmptyAudioError
from sddkit.training.data import unusable_audio


def _cases(folder: Path) -> dict[str, tuple[Path, type[AudioError], str]]:
    good = folder / "good.wav"
    sf.write(good, 0.1 * np.sin(np.arange(1600, dtype=np.float32) / 3), 16000)
    (folder / "broken.wav").symlink_to(folder / "gone.wav")
    (folder / "loop_a.wav").symlink_to(folder / "loop_b.wav")
    (folder / "loop_b.wav").symlink_to(folder / "loop_a.wav")
    (folder / "dir.wav").mkdir()
    (folder / "empty.wav").write_bytes(b"")
    os.mkfifo(folder / "fifo.wav")
    return {
        "missing": (folder / "missing.wav", AudioNotFoundError, "no such file"),
        "broken": (folder / "broken.wav", AudioNotFoundError, "a broken symbolic link (its target is missing)"),
        "loop": (folder / "loop_a.wav", AudioNotFoundError, "a broken symbolic link (the link loops)"),
        "under_a_file": (good / "x.wav", AudioNotFoundError, "no such file (a part of its folder path is a file)"),
        "dir": (folder / "dir.wav", AudioNotFoundError, "is a directory, not an audio file"),
        "empty": (folder / "empty.wav", EmptyAudioError, "file is empty (0 bytes)"),
        "fifo": (folder / "fifo.wav", AudioDecodeError, "not a regular file (a named pipe, socket or device)"),
    }


@pytest.mark.parametrize("case", ["missing", "broken", "loop", "under_a_file", "dir", "empty", "fifo"])
def test_load_audio_and_the_preflight_name_a_problem_alike(tmp_path, case):
    path, error, reason = _cases(tmp_path)[case]
    problem = file_problem(path)
    assert problem is not None and problem.error is error and problem.reason.startswith(reason)
    assert unusable_audio(str(path)) == problem.reason
    with pytest.raises(error) as caught:
        load_audio(path)
    assert problem.reason in str(caught.value) and str(path) in str(caught.value)


def test_a_readable_file_has_no_problem(tmp_path):
    good = _cases(tmp_path)["under_a_file"][0].parent
    (tmp_path / "link.wav").symlink_to(good)
    assert file_problem(good) is None and unusable_audio(str(tmp_path / "link.wav")) is None
    assert load_audio(good).shape[-1] > 0


def test_the_preflight_refuses_a_file_it_may_not_read(tmp_path):
    # the preflight only stat'ed: a file without read permission passed it and stopped the run when first drawn
    def locked(folder: Path) -> Path:
        path = folder / "locked.wav"
        sf.write(path, 0.1 * np.sin(np.arange(1600, dtype=np.float32) / 3), 16000)
        path.chmod(0)
        return path

    def check(p: Path) -> None:
        reason = unusable_audio(str(p))
        raise RuntimeError(f"reason={reason}")

    said = _error_without_permission(tmp_path, locked, check)
    assert "reason=cannot open file: Permission denied" in said, said
