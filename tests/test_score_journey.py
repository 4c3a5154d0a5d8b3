"""Scoring awkward real-world inputs: paths the OS refuses, one file spelled two ways, unchecked waveforms."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import soundfile as sf
import test_scoring_cli
from test_scoring_cli import SR

from sddkit.audio import load_audio
from sddkit.cli.main import main
from sddkit.errors import AudioDecodeError, AudioError, AudioNotFoundError, NonFiniteAudioError, SilentAudioError
from sddkit.scoring import batch
from sddkit.scoring.api import load_detector

model_dir = test_scoring_cli.model_dir  # the same tiny LCNN model directory fixture

# a file name over NAME_MAX (255 bytes): os.stat raises ENAMETOOLONG, which Path.is_dir/exists do not hide
TOO_LONG = "a" * 300 + ".wav"


def _wav(path, seconds: float = 0.5, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
    return str(path)


def test_load_audio_raises_a_typed_error_for_a_path_the_os_refuses(tmp_path, model_dir):
    path = tmp_path / TOO_LONG
    with pytest.raises(AudioError, match="name too long"):
        load_audio(path)
    with pytest.raises(AudioError, match="name too long"):
        load_detector(model_dir).score_file(path)


@pytest.mark.parametrize("via_manifest", [False, True])
def test_a_path_the_os_refuses_is_an_error_row_not_a_crash(tmp_path, model_dir, via_manifest):
    good = _wav(tmp_path / "good.wav")
    bad = str(tmp_path / TOO_LONG)
    inputs = [bad, good]
    if via_manifest:
        manifest = tmp_path / "list.csv"
        manifest.write_text(f"path\n{TOO_LONG}\ngood.wav\n")
        inputs = [str(manifest)]
    out = tmp_path / "scores.csv"
    assert main(["score", *inputs, "--model", str(model_dir), "--out", str(out), "--quiet"]) == 0
    rows = {os.path.basename(r["path"]): r for r in batch.read_rows(out)[1]}
    assert set(rows) == {TOO_LONG, "good.wav"}
    assert "name too long" in rows[TOO_LONG]["error"] and not rows[TOO_LONG]["score"]
    assert rows["good.wav"]["score"] and not rows["good.wav"]["error"]


def test_one_file_spelled_relative_and_absolute_gets_one_row(tmp_path, model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _wav(tmp_path / "a.wav")
    assert batch.expand_inputs(["a.wav", str(tmp_path / "a.wav"), "./a.wav"]) == ["a.wav"]
    out = tmp_path / "scores.jsonl"
    assert main(["score", "a.wav", str(tmp_path / "a.wav"), "--model", str(model_dir), "--out", str(out)]) == 0
    assert [r["path"] for r in batch.read_rows(out)[1]] == ["a.wav"]


def test_score_many_checks_waveforms_like_score(model_dir):
    det = load_detector(model_dir)
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    with pytest.raises(NonFiniteAudioError):
        det.score_many([x, np.where(np.arange(SR) == 5, np.nan, x).astype(np.float32)])
    with pytest.raises(SilentAudioError):
        det.score_many([np.zeros(SR, np.float32)])
    pcm = np.round(x * 2**15).astype(np.int16)  # integer PCM is scaled as score() scales it
    assert det.score_many([pcm])[0].score == pytest.approx(det.score(pcm, SR).score, rel=1e-6)


def test_a_codec_nothing_decodes_gets_a_decoder_reason(tmp_path):
    path = tmp_path / "bits0.wav"
    _wav(path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 34, 0)  # bits per sample 0: neither libsndfile nor FFmpeg has a decoder
    path.write_bytes(bytes(data))
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path)
    assert "no decoder" in str(info.value) and "attribute" not in str(info.value)


def test_an_unreadable_manifest_is_a_one_line_error(tmp_path, model_dir, monkeypatch, capsys):
    manifest = tmp_path / "list.txt"
    manifest.write_text("a.wav\n")

    def refusing(read):
        def refuse(self, *args, **kwargs):  # what chmod 000 does for a user other than root
            if self.name == "list.txt":
                raise PermissionError(13, "Permission denied", str(self))
            return read(self, *args, **kwargs)

        return refuse

    for read in ("read_text", "read_bytes"):  # the manifest is read as bytes (its BOM tells the encoding)
        monkeypatch.setattr(type(manifest), read, refusing(getattr(type(manifest), read)))
    out = tmp_path / "scores.csv"
    assert main(["score", str(manifest), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 2
    assert "cannot read the manifest (Permission denied)" in capsys.readouterr().err


def test_a_linked_subfolder_is_scored_once_even_through_a_loop(tmp_path):
    from sddkit.scoring.batch import expand_inputs

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.wav").write_bytes(b"x")
    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "a.wav").write_bytes(b"x")
    (folder / "._a.wav").write_bytes(b"x")  # macOS resource fork beside a copied file: not audio
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "back").symlink_to(folder, target_is_directory=True)  # a loop: audio/linked/back -> audio
    # before: the linked folder's files had no row (rglob does not follow links to folders)
    found = [os.path.relpath(p, folder) for p in expand_inputs([folder])]
    assert sorted(found) == ["a.wav", os.path.join("linked", "b.wav")]


def test_a_dangling_or_looping_link_in_a_folder_gets_an_error_row(tmp_path):
    from sddkit.scoring.batch import expand_inputs

    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (folder / "loop.wav").symlink_to(folder / "loop.wav")
    (folder / "notes.txt").write_text("not audio\n")
    # before: both links were left out of the folder's listing, so they had no row at all
    assert sorted(os.path.basename(p) for p in expand_inputs([folder])) == ["gone.wav", "loop.wav"]
    for name in ("gone.wav", "loop.wav"):
        with pytest.raises(AudioNotFoundError, match="broken symbolic link"):
            load_audio(folder / name)
