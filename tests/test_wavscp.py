"""Kaldi ``wav.scp`` lists (``utt001 /data/a.wav``) as ``sdd score`` manifests: each line names the file after its
utterance id; a piped command (``utt001 sox a.sph -t wav - |``) is refused, never run."""

from __future__ import annotations

import pytest
from corpus_support import touch

from sddkit.errors import ProtocolError
from sddkit.scoring.batch import read_manifest


def test_wav_scp_lists_the_file_after_the_utterance_id(tmp_path):
    a = touch(tmp_path / "a.wav")
    b = touch(tmp_path / "My Recordings" / "b.flac")
    scp = tmp_path / "wav.scp"
    scp.write_text(f"utt001 a.wav\nutt002 {b}\n")
    assert read_manifest(scp) == [str(a), str(b)]


def test_wav_scp_with_tabs(tmp_path):
    a = touch(tmp_path / "a.wav")
    scp = tmp_path / "wav.scp"
    scp.write_text(f"utt001\t{a}\n")
    assert read_manifest(scp) == [str(a)]


def test_piped_command_is_refused_with_the_reason(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("utt001 sox a.sph -t wav - |\n")
    with pytest.raises(ProtocolError, match=r"ends with '\|'.*runs no commands.*decode the audio to files"):
        read_manifest(scp)


def test_a_file_whose_name_ends_with_a_bar_is_listed(tmp_path):
    a = touch(tmp_path / "a.wav")
    odd = touch(tmp_path / "take 1.wav |")
    lst = tmp_path / "list.txt"
    lst.write_text(f"{a}\n{odd}\n")
    assert read_manifest(lst) == [str(a), str(odd)]


def test_other_list_lines_keep_their_meaning(tmp_path):
    a = touch(tmp_path / "a.wav")
    spaced = touch(tmp_path / "My Recordings" / "c.wav")
    lst = tmp_path / "list.txt"
    # a path with spaces, a path followed by a label, and a missing path with spaces (its error row names it whole)
    lst.write_text(f"{spaced}\n{a} bonafide\n{tmp_path}/Old Takes/d.wav\n")
    assert read_manifest(lst) == [str(spaced), str(a), f"{tmp_path}/Old Takes/d.wav"]


def test_first_field_preferred_when_both_fields_are_files(tmp_path):
    # "a.wav b.wav": the first field exists and is audio, as for "a.wav 3.2" (was the whole line, a missing file)
    a = touch(tmp_path / "a.wav")
    touch(tmp_path / "b.wav")
    lst = tmp_path / "list.txt"
    lst.write_text(f"{a} {tmp_path}/b.wav\n")
    assert read_manifest(lst) == [str(a)]


def test_a_broken_link_beside_the_manifest_is_that_file(tmp_path, monkeypatch):
    """A dangling link in the manifest's folder was looked for in the working directory instead ("no such file"
    there); it is the link, whose error row says it is broken."""
    from sddkit.audio.io import load_audio
    from sddkit.errors import AudioNotFoundError

    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "gone.wav").symlink_to(folder / "missing-target.wav")
    lst = folder / "list.txt"
    lst.write_text("gone.wav\n")
    monkeypatch.chdir(tmp_path)
    [listed] = read_manifest(lst)
    assert listed == str(folder / "gone.wav")
    with pytest.raises(AudioNotFoundError, match="broken symbolic link"):
        load_audio(listed)
