"""Typed errors.

Every error sddkit raises on purpose derives from :class:`SddkitError`, so the CLI and the
HTTP service can turn them into a clear message (exit code 2; HTTP 422 for audio errors, 500 for
the others) instead of a traceback. Subclasses also derive from the closest built-in (``ValueError``,
``FileNotFoundError``) so plain ``except ValueError`` keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn


class SddkitError(Exception):
    """Base class of every deliberate sddkit error."""


class ConfigError(SddkitError, ValueError):
    """A configuration or recipe is invalid (unknown key, wrong type, bad value)."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup used a name that is not registered; the message ends with the closest registered name
    (``sdd list enocder``, ``--protocol-format asvspoof2019``: `` (did you mean 'encoder'?)``) when one is close."""

    def __init__(self, family: str, name: str, choices: list[str]):
        import difflib

        self.family, self.name, self.choices = family, name, choices
        close = difflib.get_close_matches(name, choices, n=1) if isinstance(name, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if not close and family != "registry family":
            # no registered name is close (not a typo): maybe a component of one's own, registered by a module this
            # process has not imported; the bare "unknown backend 'mine'; registered: ..." said nothing of that
            hint = (
                f"; if {family} {name!r} is a component of your own, import the module that registers it first: for "
                "the sdd commands, name it in the environment variable SDDKIT_PLUGINS (e.g. "
                "SDDKIT_PLUGINS=mylab.sdd_parts, its folder on PYTHONPATH) or in a 'sddkit.plugins' entry point"
            )
        super().__init__(f"unknown {family} {name!r}; registered: {', '.join(choices) or '(none)'}{hint}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class ProtocolError(SddkitError, ValueError):
    """A protocol, manifest or score file is malformed."""


# --- audio -------------------------------------------------------------------------------


class AudioError(SddkitError, ValueError):
    """Base class of audio loading/validation errors. ``path`` names the file if any."""

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class AudioNotFoundError(AudioError, FileNotFoundError):
    """The audio file does not exist."""


class AudioDecodeError(AudioError):
    """The file exists but no decoder could read it (corrupt, unsupported, not audio)."""


class UnsupportedSampleRateError(AudioDecodeError):
    """The audio's native sample rate is too low to hold speech (below ``audio.MIN_SAMPLE_RATE``)."""


class EmptyAudioError(AudioError):
    """The file decodes to zero samples."""


class SilentAudioError(AudioError):
    """The signal is digital silence or dither: its peak is below ``audio.SILENCE_PEAK`` (-80 dBFS), or it is
    a constant DC offset whose variation around it is below that."""


class NonFiniteAudioError(AudioError):
    """The signal contains NaN or infinite samples."""


class AudioTooShortError(AudioError):
    """The signal is shorter than the configured minimum duration."""


class AudioTooLongError(AudioError):
    """The signal is longer than the configured maximum duration."""


class CheckpointError(SddkitError, ValueError):
    """A model directory or checkpoint is missing, incomplete or incompatible."""


class PluginError(SddkitError, ImportError):
    """A plugin module (named by ``SDDKIT_PLUGINS`` or a ``sddkit.plugins`` entry point) failed to import."""


class TrainingDivergedError(SddkitError, FloatingPointError):
    """A training step met a non-finite loss or gradient (NaN/inf): the run stops there."""


def run_script(main: Callable[[], int | None], prog: str) -> NoReturn:
    """Exit with the status ``main()`` returns; an :class:`SddkitError` (a missing or malformed input: a model, a
    manifest) ends the script with one line ``prog: message`` and status 1, not a traceback. For the scripts under
    ``benchmarks/`` and ``scripts/``."""
    try:
        status = main()
    except SddkitError as exc:
        raise SystemExit(f"{prog}: {exc}") from None
    raise SystemExit(status)
