"""One list of audio suffixes serves the folder protocol readers and ``sdd score``'s inputs.

The two lists had drifted apart: ``sdd score DIR`` listed ``.mp4`` and ``.wma`` files that a ``folder`` protocol
over the same tree left out, and neither listed Matroska (``.mka``/``.mkv``) or QuickTime (``.mov``) files, which
the decoder reads (first audio stream) when they are named directly.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from sddkit.audio.io import load_audio
from sddkit.data.protocols.folder import FolderConfig, read_folder
from sddkit.scoring.batch import expand_inputs, read_manifest

CONTAINER_SUFFIXES = (".mp4", ".wma", ".mka", ".mkv", ".mov")


def _touch_tree(root: Path) -> set[str]:
    names = set()
    for label in ("bonafide", "spoof"):
        for suffix in (".wav", *CONTAINER_SUFFIXES):
            f = root / label / f"{label}_{suffix[1:]}{suffix}"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"\0" * 64)
            names.add(f.name)
    return names


def test_folder_protocol_and_score_inputs_list_the_same_files(tmp_path: Path):
    names = _touch_tree(tmp_path)
    table = read_folder(FolderConfig(root=str(tmp_path)))
    from_protocol = {Path(p).name for p in table.column("path")}
    from_score = {Path(p).name for p in expand_inputs([str(tmp_path)])}
    assert from_protocol == from_score == names


def test_text_manifest_of_container_files_is_read_as_a_manifest(tmp_path: Path):
    manifest = tmp_path / "list.txt"
    manifest.write_text("".join(f"clip{s}\n" for s in CONTAINER_SUFFIXES), encoding="utf-8")
    assert [Path(p).name for p in read_manifest(manifest)] == [f"clip{s}" for s in CONTAINER_SUFFIXES]


@pytest.mark.parametrize(("suffix", "codec"), [(".mka", "aac"), (".mkv", "aac"), (".mov", "aac")])
def test_listed_container_files_decode(tmp_path: Path, suffix: str, codec: str):
    sr = 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    path = tmp_path / "folder" / f"tone{suffix}"
    path.parent.mkdir()
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone[None, :], format="flt", layout="mono")
        frame.rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    (listed,) = expand_inputs([str(path.parent)])
    audio = load_audio(listed)
    assert abs(audio.size - sr) <= 2048  # the codec's priming and last-frame padding
    assert np.sqrt(np.mean(audio**2)) > 0.1


def test_a_video_beside_the_audio_extracted_from_it_is_listed_once(tmp_path: Path):
    # clip.wav extracted from clip.mp4: listing both would score the audio twice and give the folder protocol two
    # rows with one utt_id; a video alone, or an audio-only container (.mka), is still listed
    for label in ("bonafide", "spoof"):
        (tmp_path / label).mkdir()
    for name in ("bonafide/clip.wav", "bonafide/clip.mp4", "bonafide/solo.mkv", "spoof/x.flac", "spoof/x.mka"):
        (tmp_path / name).write_bytes(b"\0" * 64)
    expected = {"clip.wav", "solo.mkv", "x.flac", "x.mka"}
    assert {Path(p).name for p in expand_inputs([str(tmp_path)])} == expected
