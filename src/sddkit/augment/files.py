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
from sddkit.config import missing_relative_hint
from sddkit.errors import AudioDecodeError, ConfigError, NonFiniteAudioError


class AudioFolder:
    """The audio files under ``root`` (recursively) with one of ``extensions``, listed lazily and sorted
    so that a random index means the same file on every machine. Picklable (a path and a list).

    ``what`` names the setting that gave ``root`` (e.g. ``noise_files.root``) in the errors."""

    def __init__(self, root: str | Path, extensions: Sequence[str] = (".wav", ".flac"), what: str = "root"):
        self.root = Path(root).expanduser()
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        self.what = what
        if not self.root.is_dir():
            # a recipe's relative root is read against the working directory: say so, as data.train's protocol does
            hint = missing_relative_hint(self.root)
            raise ConfigError(f"{what}: audio folder {self.root} does not exist or is not a directory{hint}")
        self._files: list[Path] | None = None

    @property
    def files(self) -> list[Path]:
        if self._files is None:
            found = [p for p in list_audio_files(self.root, self.extensions) if p.is_file()]
            if not found:
                raise ConfigError(f"{self.what}: no {'/'.join(self.extensions)} files under {self.root}")
            self._files = found
        return self._files

    def check(self) -> None:
        """List the files now and read every header: an empty folder, or a file that cannot be read or holds no
        samples, fails when the augmentation is built, not when a training item draws that file (a random
        moment, possibly hours into a run, in a DataLoader worker)."""
        for path in self.files:
            try:
                frames = sf.info(str(path)).frames
            except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
                raise ConfigError(
                    f"{self.what}: {path} under {self.root} cannot be read as audio ({exc}); remove or repair it"
                ) from None
            if frames <= 0:
                raise ConfigError(f"{self.what}: {path} under {self.root} holds no samples; remove it")

    def choose(self, rng: np.random.Generator) -> Path:
        files = self.files
        return files[int(rng.integers(len(files)))]


def _mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1) if data.ndim == 2 else data


def check_finite(data: np.ndarray, path: Path | str) -> np.ndarray:
    """``data`` as read from ``path``; a NonFiniteAudioError naming the file if it holds NaN or inf samples (a float
    WAV can): added or convolved, they made the output non-finite, which was refused as the augmentation's own fault
    ("NoiseFiles produced non-finite samples"), no file named, at whatever moment of training drew that file."""
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise NonFiniteAudioError(f"{bad} NaN/Inf sample(s); repair or remove the file", path=str(path))
    return data


def read_whole(path: Path, sr: int) -> np.ndarray:
    """The whole file as mono float32 at ``sr``. (N,)."""
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
        raise AudioDecodeError(f"cannot decode: {exc}", path=str(path)) from None
    return resample(_mono(check_finite(data, path)), file_sr, sr)


def read_segment(path: Path, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples at ``sr`` from a random offset in ``path``; a file shorter than that is looped
    from a random start. Mono float32 (n,).

    A file that holds fewer samples than its header says (a truncated MP3 whose Xing header gives the full
    length) reads short, or empty, near its end: it is then decoded whole, as a short file is."""
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
        if len(data) >= need:
            return _loop(resample(_mono(check_finite(data, path)), info.samplerate, sr), n, 0)
    whole = read_whole(path, sr)
    if len(whole) == 0:
        raise AudioDecodeError("decodes to zero samples", path=str(path))
    return _loop(whole, n, int(rng.integers(len(whole))))


def _loop(x: np.ndarray, n: int, start: int) -> np.ndarray:
    """``n`` samples of ``x`` repeated end to end, starting at ``start``."""
    reps = math.ceil((start + n) / len(x))
    return np.tile(x, reps)[start : start + n].astype(np.float32, copy=False)
