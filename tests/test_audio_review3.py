"""Third review of audio decoding: truncated WAVE_FORMAT_EXTENSIBLE / RF64 files, unreadable files, and the
peak memory of decoding a long file without a duration limit."""

from __future__ import annotations

import os
import shutil
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from sddkit.audio import decode_audio_bytes, load_audio
from sddkit.errors import AudioDecodeError, SilentAudioError
from sddkit.scoring.batch import expand_inputs


def _sine(sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    x = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize(("fmt", "subtype"), [("WAVEX", "PCM_24"), ("WAVEX", "PCM_16"), ("RF64", "PCM_16")])
def test_truncated_extensible_and_rf64_wav_is_refused(tmp_path: Path, fmt: str, subtype: str) -> None:
    # WAVE_FORMAT_EXTENSIBLE (what recorders and FFmpeg write for 24-bit or multichannel audio) and RF64 are
    # .wav files too: cut off half-way, they must be refused as plain RIFF WAVs are, not scored as half a file
    whole = tmp_path / "whole.wav"
    sf.write(whole, _sine(16000, 2.0, channels=2), 16000, format=fmt, subtype=subtype)
    assert load_audio(whole).shape == (32000,)  # the complete file still reads
    data = whole.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match=r"truncated: the header declares 2.00 s, the audio data ends at 1.0"):
        load_audio(cut)
    with pytest.raises(AudioDecodeError, match="truncated"):
        decode_audio_bytes(data[: len(data) // 2], name="cut.wav")


def _error_as_nobody(action: Callable[[], object]) -> str:
    """The error ``action`` raises in a child process that runs as user ``nobody`` ("no error" if none)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, try, report, exit without running pytest's cleanup
        message = "no error"
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            action()
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(write_end, message.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        message = f.read().decode()
    os.waitpid(pid, 0)
    return message


def _error_without_permission(tmp_path: Path, setup: Callable[[Path], Path], action: Callable[[Path], object]) -> str:
    """The error of ``action(setup(folder))`` where ``setup`` makes something unreadable: run as ``nobody``
    when the tests run as root (root reads anything), in a folder ``nobody`` may enter (not pytest's)."""
    if os.geteuid() != 0:
        target = setup(tmp_path)
        try:
            action(target)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            for sub in tmp_path.rglob("*"):  # let pytest clean up
                if not sub.is_symlink():
                    sub.chmod(0o755)
        return "no error"
    folder = Path(tempfile.mkdtemp(prefix="sddkit-perm-"))
    try:
        folder.chmod(0o755)
        target = setup(folder)
        return _error_as_nobody(lambda: action(target))
    finally:
        shutil.rmtree(folder)


def test_unreadable_file_says_permission_denied(tmp_path: Path) -> None:
    # a file without read permission failed as "not a readable audio file (soundfile: System error; ...)",
    # which reads as a bad format; the reason is the permission
    def locked_file(folder: Path) -> Path:
        path = folder / "locked.wav"
        sf.write(path, _sine(16000, 1.0), 16000)
        path.chmod(0)
        return path

    message = _error_without_permission(tmp_path, locked_file, load_audio)
    assert message.startswith("AudioDecodeError") and "cannot open file: Permission denied" in message, message


def test_unlistable_subfolder_is_an_error_not_left_out(tmp_path: Path) -> None:
    # os.walk skipped a folder it could not list without a word: `sdd score data/` scored the rest and
    # reported success, the files of data/locked/ missing from its output
    def tree_with_locked_folder(folder: Path) -> Path:
        root = folder / "data"
        for sub in ("locked", "open"):
            (root / sub).mkdir(parents=True)
            sf.write(root / sub / "a.wav", _sine(16000, 1.0), 16000)
            (root / sub).chmod(0o755)
        root.chmod(0o755)
        (root / "locked").chmod(0)
        return root

    message = _error_without_permission(tmp_path, tree_with_locked_folder, lambda root: expand_inputs([root]))
    expected = "locked: cannot list the folder (Permission denied)"
    assert message.startswith("ProtocolError") and expected in message, message


def _write_mka(path: Path, x: np.ndarray, sr: int) -> None:
    """(N, C) float32 samples as PCM in Matroska, a container libsndfile cannot open (FFmpeg decodes it)."""
    layout = {1: "mono", 2: "stereo"}[x.shape[1]]
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("pcm_f32le", rate=sr, layout=layout)
        for i in range(0, x.shape[0], 4800):
            packed = np.ascontiguousarray(x[i : i + 4800]).reshape(1, -1)  # interleaved
            frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
            frame.sample_rate, frame.pts = sr, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _peak_bytes(fn) -> tuple[np.ndarray, int]:
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_long_wav_without_limit_is_decoded_into_one_buffer(tmp_path: Path) -> None:
    # without a duration limit the blocks were gathered in a list and joined: the native-rate audio was held
    # twice (an hour of 48 kHz: 1.3 GB instead of 0.66)
    path = tmp_path / "long.wav"
    sf.write(path, _sine(48000, 60.0, channels=2), 48000, subtype="PCM_16")
    x, peak = _peak_bytes(lambda: load_audio(path, sample_rate=48000, max_duration=None))
    assert x.shape == (48000 * 60,)
    assert peak < 1.5 * x.nbytes, f"peak {peak / 2**20:.1f} MB for {x.nbytes / 2**20:.1f} MB of samples"


def test_long_ffmpeg_file_without_limit_is_decoded_into_one_buffer(tmp_path: Path) -> None:
    # FFmpeg's frames were gathered in a list, joined, then joined again with the (single) segment list:
    # three copies of the native-rate audio at the peak
    path = tmp_path / "long.mka"
    x = _sine(48000, 60.0)
    _write_mka(path, x[:, None], 48000)
    y, peak = _peak_bytes(lambda: load_audio(path, sample_rate=48000, max_duration=None))
    np.testing.assert_allclose(y, x, atol=1e-6)
    assert peak < 1.5 * y.nbytes, f"peak {peak / 2**20:.1f} MB for {y.nbytes / 2**20:.1f} MB of samples"


def test_phase_inverted_stereo_error_says_the_channels_cancel(tmp_path: Path) -> None:
    # L = -R mixes to silence: still refused (nothing is left to score), but "silent (peak 1.5e-05)" alone
    # read as a wrong verdict on a file at -6 dBFS; the message now says why
    x = _sine(16000, 1.0)
    pair = np.stack([x, -x], axis=1)
    wav = tmp_path / "antiphase.wav"
    sf.write(wav, pair, 16000, subtype="PCM_16")
    mka = tmp_path / "antiphase.mka"
    _write_mka(mka, pair, 16000)
    note = r"silent \(peak .*but its channels are not silent \(the loudest peaks at 0\.5\): they cancel each other"
    for path in (wav, mka):
        with pytest.raises(SilentAudioError, match=note):
            load_audio(path)
    with pytest.raises(SilentAudioError, match=note):
        decode_audio_bytes(wav.read_bytes(), name="upload.wav")
    silent = tmp_path / "silent.wav"  # silent channels: the plain message
    sf.write(silent, np.zeros((16000, 2)), 16000)
    with pytest.raises(SilentAudioError, match="digital zero") as info:
        load_audio(silent)
    assert "cancel" not in str(info.value)
