"""Reading a user's folder of noise or impulse-response files (soundfile + soxr, partial reads).

Kept private to the augmentations: reading a random *segment* of a long noise file must not
decode the whole file, which a generic ``load_audio`` would do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from sddkit.audio.files import list_audio_files
from sddkit.augment.dsp import resample
from sddkit.errors import AudioDecodeError, ConfigError


class AudioFolder:
    """The audio files under ``root`` (recursively) with one of ``extensions``, listed lazily and sorted
    so that a random index means the same file on every machine. Picklable (a path and a list)."""

    def __init__(self, root: str | Path, extensions: Sequence[str] = (".wav", ".flac")):
        self.root = Path(root).expanduser()
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        if not self.root.is_dir():
            raise ConfigError(f"audio folder {self.root} does not exist or is not a directory")
        self._files: list[Path] | None = None

    @property
    def files(self) -> list[Path]:
        if self._files is None:
            found = [p for p in list_audio_files(self.root, self.extensions) if p.is_file()]
            if not found:
                raise ConfigError(f"no {'/'.join(self.extensions)} files under {self.root}")
            self._files = found
        return self._files

    def choose(self, rng: np.random.Generator) -> Path:
        files = self.files
        return files[int(rng.integers(len(files)))]


def _mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1) if data.ndim == 2 else data


def read_whole(path: Path, sr: int) -> np.ndarray:
    """The whole file as mono float32 at ``sr``. (N,)."""
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
        raise AudioDecodeError(f"cannot decode: {exc}", path=str(path)) from None
    return resample(_mono(data), file_sr, sr)


def read_segment(path: Path, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples at ``sr`` from a random offset in ``path``; a file shorter than that is looped
    from a random start. Mono float32 (n,)."""
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioDecodeError(f"cannot read header: {exc}", path=str(path)) from None
    need = math.ceil(n * info.samplerate / sr) + 16  # a few extra samples absorb resampling rounding
    if info.frames > need:
        start = int(rng.integers(0, info.frames - need + 1))
        try:
            data, _ = sf.read(str(path), start=start, frames=need, dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioDecodeError(f"cannot decode: {exc}", path=str(path)) from None
        seg = resample(_mono(data), info.samplerate, sr)
        return _loop(seg, n, 0)
    whole = read_whole(path, sr)
    if len(whole) == 0:
        raise AudioDecodeError("decodes to zero samples", path=str(path))
    return _loop(whole, n, int(rng.integers(len(whole))))


def _loop(x: np.ndarray, n: int, start: int) -> np.ndarray:
    """``n`` samples of ``x`` repeated end to end, starting at ``start``."""
    reps = math.ceil((start + n) / len(x))
    return np.tile(x, reps)[start : start + n].astype(np.float32, copy=False)
