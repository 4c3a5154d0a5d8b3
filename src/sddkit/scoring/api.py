"""The Python scoring API: ``sddkit.load_detector(path).score(waveform, sample_rate)``.

A :class:`ScoringDetector` turns audio of any length into one calibrated score:

1. the waveform is checked (finite, not empty, not silent, not a bare DC offset), mixed to mono
   and resampled (soxr) to the model's rate; inputs shorter than the model's minimum, or holding
   less sound than that (a click in silence), are refused (:meth:`ScoringDetector.check_duration`);
2. it is cut into fixed windows of ``window_samples`` every ``hop_samples``; when those leave a tail,
   one more window is aligned to the end (an input of one window plus one sample is two windows,
   starting at samples 0 and 1); a shorter input is repeat-padded to one window; windows that hold only
   silence (a peak below -80 dBFS, what refuses a whole input as silent) are left out, except under
   ``first`` aggregation (the reference protocol's first window, whatever it holds);
3. all windows (of one or many inputs) run through the model in batches;
4. window scores ``logits[:, 1] - logits[:, 0]`` are aggregated (mean of window logits by
   default), calibrated to an LLR ``a * raw + b``, and thresholded. Every window weighs the same,
   the end-aligned last one too, however much it overlaps the one before it. A NaN/inf score is the model's
   failure, never a decision: ``score*`` raise ``CheckpointError`` (:func:`checked_result`), and
   ``sdd score`` writes an error row.

The model runs behind a *runner*: PyTorch (:class:`TorchRunner`) or ONNX Runtime
(``sddkit.scoring.onnx_export.OnnxRunner``), both mapping ``(N, W)`` float32 windows to
``(N, 2)`` logits plus per-window statistics (e.g. a mixture's ``gate_weights``).

Thread safety: a ScoringDetector holds no per-call state; calls run under
``torch.inference_mode`` and may come from several threads at once (the HTTP service does).
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import soxr
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from sddkit.errors import (
    AudioError,
    AudioTooLongError,
    CheckpointError,
    ConfigError,
    EmptyAudioError,
    SilentAudioError,
    UnsupportedSampleRateError,
)
from sddkit.scoring.inference import InferenceConfig, check_model_rate, parse_inference

# Per-window statistics wider than this (e.g. hidden features someone logged) are not reported.
MAX_STAT_WIDTH = 64
# Column prefixes for well-known statistics; others use "<name>_" with "/" replaced by "_".
_STAT_PREFIXES = {"gate_weights": "gate_w", "expert_scores": "expert_score"}
DEFAULT_BATCH_SIZE = 16
# Frames in which check_duration counts how much of an input holds sound.
_SOUND_FRAME_S = 0.01
# ... and a frame holds sound when it is within this ratio (-40 dB) of the loudest frame (or above -80 dBFS).
_SOUND_RANGE = 0.01
_RESAMPLE_QUALITY = "HQ"
# The largest rate a decoder reports (a C int in libsndfile and FFmpeg); soxr never returns from rates near 1e14.
MAX_INPUT_RATE = 2**31 - 1

Runner = Callable[[np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]
# What score() and score_many() take as a waveform: a numpy array, a torch tensor (any device and dtype) or a list of
# samples; and as a sample rate: an integer, a whole float (16000.0), a numpy number, or a one-number array or tensor
# (a dataset's tensor(16000)). Annotated as narrower types, the documented inputs were type errors to mypy --strict.
WaveformLike: TypeAlias = ArrayLike | Tensor
SampleRate: TypeAlias = int | float | np.integer | np.floating | np.ndarray | Tensor


@dataclass
class ScoreResult:
    """The score of one input.

    score: calibrated LLR (higher = more bona fide); probability: ``sigmoid(score)``, the
    posterior of bona fide at prior 0.5; decision: ``'bonafide'`` if ``score >= threshold``;
    raw_score: the aggregated uncalibrated score (what calibration is fitted on);
    window_scores: calibrated LLR of every window, which spans ``[window_starts_s[i],
    window_ends_s[i])`` seconds: the file's calibration ``a * raw + b`` applied to the window's raw score (so with
    ``mean`` aggregation ``score`` is their mean; the map is fitted on whole files' scores, not on windows');
    weights: per-window statistics of the model (e.g. a mixture's ``gate_weights``, one value per expert, and
    ``expert_scores``, each expert's raw, uncalibrated score) averaged over the windows.
    """

    score: float
    probability: float
    decision: str
    threshold: float
    duration_s: float
    raw_score: float
    window_scores: list[float] = field(default_factory=list)
    window_starts_s: list[float] = field(default_factory=list)
    window_ends_s: list[float] = field(default_factory=list)
    weights: dict[str, list[float]] = field(default_factory=dict)

    @property
    def n_windows(self) -> int:
        return len(self.window_scores)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["n_windows"] = self.n_windows
        return out


@dataclass
class PreparedAudio:
    """One input cut into windows of ``window_samples`` W starting at ``starts`` (N,) samples.

    signal: the (T',) float32 samples the windows are cut from: the input itself (T' = num_samples T; the
    caller's array, not a copy, when it is float32 already), or, when shorter than one window, the input
    repeat-padded to W. The windows are not stored: at a half-window hop they would take twice the input;
    :meth:`window_batch` copies a few of them at a time.
    """

    signal: np.ndarray
    starts: np.ndarray
    num_samples: int
    window_samples: int

    @property
    def n_windows(self) -> int:
        return int(self.starts.shape[0])

    def window_batch(self, begin: int, end: int) -> np.ndarray:
        """Windows ``begin..end-1`` as a new (n, W) float32 array."""
        view = np.lib.stride_tricks.sliding_window_view(self.signal, self.window_samples)  # no copy
        return view[self.starts[begin:end]]

    @property
    def windows(self) -> np.ndarray:
        """All (N, W) windows as a new array (twice the input at a half-window hop; scoring never builds it)."""
        return self.window_batch(0, self.n_windows)


def stat_columns(name: str, width: int) -> list[str]:
    """Flat column names of a statistic of ``width`` values (``gate_weights`` -> ``gate_w0..``)."""
    prefix = _STAT_PREFIXES.get(name, name.replace("/", "_").replace(" ", "_") + "_")
    return [f"{prefix}{k}" for k in range(width)]


def per_window_stats(stats: dict[str, Tensor], n: int) -> dict[str, Tensor]:
    """Keep the statistics that have one entry per window, as (N, K) float tensors.

    A stat of shape (N,) becomes (N, 1); (N, ..., K) is averaged over the middle axes (e.g.
    per-frame router probabilities -> mean use per expert). Batch-level scalars cannot be
    attributed to one input and are dropped, as are stats wider than ``MAX_STAT_WIDTH``.
    """
    out: dict[str, Tensor] = {}
    for name, value in stats.items():
        if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != n:
            continue
        v = value.detach().float()
        v = v.reshape(n, 1) if v.dim() == 1 else v.reshape(n, -1, v.shape[-1]).mean(dim=1)
        if v.shape[1] <= MAX_STAT_WIDTH:
            out[name] = v
    return out


class TorchRunner:
    """Runs a PyTorch detector on (N, W) windows -> ((N, 2) logits, {name: (N, K)} stats)."""

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.device = torch.device(device)

    def __call__(self, windows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
            out = self.model(x)
            stats = per_window_stats(getattr(out, "stats", {}) or {}, x.shape[0])
            return out.logits.float().cpu().numpy(), {k: v.cpu().numpy() for k, v in stats.items()}


class ScoringDetector:
    """A detector ready to score audio; build it with :func:`load_detector`.

    runner: windows (N, W) -> (logits (N, 2), stats); inference: the model directory's settings;
    batch_size: windows per forward; info: a JSON-able description (architecture, model config,
    parameter count) shown by ``GET /v1/model``.
    """

    def __init__(
        self,
        runner: Runner,
        inference: InferenceConfig,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        info: dict[str, Any] | None = None,
    ):
        # checked here, not at the first call: a float (2.5) or a string ("8") failed only there, in range()
        check_batch_size(batch_size)
        self.runner = runner
        self.inference = inference
        self.batch_size = int(batch_size)
        self.info = dict(info or {})
        self._stat_widths: dict[str, int] | None = None
        self._probe_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # picklable as its runner is (a torch model: multiprocessing under spawn, joblib's workers), which the probe
        # lock was not: "cannot pickle '_thread.lock' object"
        state = dict(self.__dict__)
        del state["_probe_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._probe_lock = threading.Lock()

    # --- settings -------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.inference.sample_rate

    @property
    def threshold(self) -> float:
        return self.inference.threshold

    def stat_widths(self) -> dict[str, int]:
        """Name -> width of the per-window statistics the model reports (probe forwards, cached).

        Two probes of 2 and 3 windows: a statistic counts as per-window only if its first axis
        follows the batch in both (a batch-level (E,) vector could match one batch size by chance).
        """
        with self._probe_lock:
            if self._stat_widths is None:
                rng = np.random.default_rng(0)
                widths = []
                for n in (2, 3):
                    probe = (0.1 * rng.standard_normal((n, self.inference.window_samples))).astype(np.float32)
                    widths.append({k: int(v.shape[1]) for k, v in self.runner(probe)[1].items()})
                self._stat_widths = {k: w for k, w in widths[0].items() if widths[1].get(k) == w}
            return dict(self._stat_widths)

    def weight_columns(self) -> list[str]:
        """Flat column names of every reported statistic, in a stable order."""
        return [c for name, width in self.stat_widths().items() for c in stat_columns(name, width)]

    # --- scoring --------------------------------------------------------------------------
    def score(self, waveform: WaveformLike, sample_rate: SampleRate) -> ScoreResult:
        """Score one waveform: (T,) mono, or (C, T) / (T, C) with at most 8 channels (averaged).

        ``waveform``: a numpy array, a torch tensor (any device and dtype) or a list; float samples in [-1, 1],
        integer samples are PCM (scaled by their type's range). Of a 2-D input the channel axis is the first
        when it has at most 8 entries and fewer than the second, else the second when that has at most 8: an
        input of at least 9 samples reads the same either way round; a square one, (2, 2), is (T, C).
        ``sample_rate``: the waveform's rate in Hz, an integer (or a whole float, or a one-number array or tensor such
        as a dataset's ``tensor(16000)``) from 4000 to ``MAX_INPUT_RATE``.
        """
        x = self.to_model_rate(waveform, sample_rate)
        return checked_result(self.score_prepared([self.prepare(x)])[0])

    def score_file(
        self,
        path: str | os.PathLike[str],
        *,
        max_duration: float | None = 600.0,
        too_long_hint: str | None = None,
    ) -> ScoreResult:
        """Decode ``path`` (any format :func:`sddkit.audio.load_audio` reads; channels averaged) and score it.

        max_duration: seconds; a longer file is refused (``AudioTooLongError``) before it is decoded whole,
        None scores any length (every window of it, at ``hop_samples``). ``too_long_hint``: what that error adds on
        how to lift the limit (None: this call's keyword; a caller whose limit is its own option names that one).
        """
        from sddkit.audio.io import load_audio

        if not isinstance(path, (str, os.PathLike)):  # else pathlib's TypeError, or numpy's for an array
            raise AudioError(_not_a_path(path))
        path = os.fsdecode(path)  # the label of errors: str() of an os.DirEntry is its repr
        try:
            x = load_audio(path, sample_rate=self.sample_rate, max_duration=max_duration)
        except AudioTooLongError as exc:
            # the limit is this call's keyword (the 600 s default, unasked): say how to lift it, as sdd score names
            # its --max-duration-s
            hint = "; score_file(path, max_duration=None) scores any length" if too_long_hint is None else too_long_hint
            longer = AudioTooLongError(f"{exc}{hint}")
            longer.path = exc.path
            raise longer from None
        return checked_result(self.score_prepared([self.prepare(x, path=path)])[0], path=path)

    def score_many(
        self,
        waveforms: Iterable[WaveformLike],
        *,
        names: Sequence[str | os.PathLike[str]] | None = None,
        sample_rate: SampleRate | None = None,
    ) -> list[ScoreResult]:
        """Score several waveforms (any iterable of numpy arrays, torch tensors or lists of samples; (T_i,) mono, or
        (C, T_i) / (T_i, C) channels mixed to mono as :meth:`score` mixes them) at the model's rate (or at
        ``sample_rate``), windows batched together; the results come in the order of ``waveforms``.

        ``sample_rate``: the rate of every waveform when it is not the model's (:attr:`sample_rate`): each is then
        resampled as :meth:`score` does (without it, audio at another rate was scored as if at the model's, its
        pitch and band shifted, without a word).

        Each is checked as :meth:`score` checks its input (finite, not empty, not silent; integer PCM scaled).
        ``names`` (one per waveform, e.g. the files they were read from: strings or paths) label the errors; without
        them an error names the input by its index: "waveforms[3]: silent ...". Errors are not isolated: the first
        input that fails its check (or scores NaN) fails the whole call, and no result is returned; to keep
        the others, score the inputs one at a time with :meth:`score` (``sdd score`` writes an error row).
        """
        # a path, a file's bytes or one waveform, iterated: each character, byte or sample failed as a "waveform"
        # ("waveforms[0]: expected a 1-D mono waveform, got shape ()", "got the path 'a'" of "a.wav")
        lone = _not_a_sequence_of_waveforms(waveforms)
        if lone is not None:
            raise ConfigError(f"score_many takes a sequence of waveforms, got {lone}")
        if names is not None and (not isinstance(names, Iterable) or isinstance(names, (str, bytes))):
            raise ConfigError(f"score_many: names must be a sequence, one per waveform, got {type(names).__name__}")
        waveforms = list(waveforms)  # any iterable, as before names needed its length
        if waveforms and all(isinstance(w, numbers.Number) for w in waveforms):
            raise ConfigError(
                f"score_many takes a sequence of waveforms, got {len(waveforms)} numbers (one waveform's samples?): "
                "score one waveform with score(x, sample_rate), or pass [x]"
            )
        # a path-like name (the file a waveform was read from) by its path: str() of an os.DirEntry is its repr
        labels = (
            [f"waveforms[{i}]" for i in range(len(waveforms))]
            if names is None
            else [os.fsdecode(n) if isinstance(n, os.PathLike) else str(n) for n in names]
        )
        if len(labels) != len(waveforms):
            raise ConfigError(f"score_many: {len(waveforms)} waveforms but {len(labels)} names")
        # without a rate the waveforms are at the model's: mixed to mono as score() mixes them, where a (1, T) row of
        # a DataLoader batch or a (2, T) stereo pair was refused as "expected a 1-D mono waveform" (given the model's
        # rate as sample_rate=, the same arrays were scored)
        rate = self.sample_rate if sample_rate is None else sample_rate
        prepared = []
        for x, label in zip(waveforms, labels):
            # torch tensors as score() takes them: np.asarray fails on bfloat16, on CUDA and on one that requires grad
            arr = _as_numpy(x, path=label)
            try:
                arr = self.to_model_rate(arr, rate)
            except AudioError as exc:
                raise type(exc)(str(exc), path=label) from None
            prepared.append(self.prepare(arr, path=label))
        results = self.score_prepared(prepared)
        return [checked_result(r, path=label) for r, label in zip(results, labels)]

    def to_model_rate(self, waveform: WaveformLike, sample_rate: SampleRate) -> np.ndarray:
        """Validate, mix to mono and resample: -> (T,) float32 at ``self.sample_rate``."""
        from sddkit.audio.io import validate_waveform

        arr = _as_numpy(waveform)
        if arr.ndim == 0 and np.ndim(sample_rate) > 0:  # "got shape ()" did not say the arguments were swapped
            raise AudioError(
                f"score takes (waveform, sample_rate): got the number {arr.item()!r} as the waveform and an array as "
                "the sample rate (arguments swapped?)"
            )
        x = _to_mono(arr)
        sample_rate = _scalar_rate(sample_rate)
        # a whole float (16000.0, np.float64 from some readers) is a rate; 22050.5 or a bool is not
        whole = isinstance(sample_rate, (float, np.floating)) and float(sample_rate).is_integer()
        rate = isinstance(sample_rate, (int, np.integer)) and not isinstance(sample_rate, bool)
        if not (rate or whole) or sample_rate <= 0:
            raise AudioError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if sample_rate > MAX_INPUT_RATE:
            raise UnsupportedSampleRateError(
                f"sample_rate {sample_rate!r} Hz is above any audio rate (at most {MAX_INPUT_RATE}): "
                "pass the waveform's rate in Hz, e.g. 16000"
            )
        sample_rate = int(sample_rate)
        try:
            x = validate_waveform(x, sample_rate)
        except SilentAudioError as exc:
            note = _cancelled_channels_note(arr, x)
            if note is None:
                raise
            raise SilentAudioError(f"{exc}; {note}") from None
        if sample_rate != self.sample_rate:
            x = soxr.resample(x, sample_rate, self.sample_rate, quality=_RESAMPLE_QUALITY).astype(np.float32)
            if x.size:  # checked again at the model rate, as load_audio does: resampling can leave only silence
                x = validate_waveform(x, self.sample_rate)  # (no samples at all: check_duration says too short)
        return x

    def check_duration(self, x: np.ndarray, *, path: str | None = None) -> None:
        """``AudioTooShortError`` when (T,) ``x`` at the model rate is shorter than the model's
        ``inference.min_duration_s``, or holds less sound than that (``path`` only labels the message).

        Sound is counted in 10 ms frames whose signal swings around its offset by at least
        ``SILENCE_PEAK`` (-80 dBFS) or by 1/100 (-40 dB) of the loudest frame's swing, whichever is
        less, so that the level of a recording never decides it: a click in a long digital silence
        (or in dither) is 10 ms of sound, too little to score, as a 10 ms file is; a short word in
        silence, and speech recorded at any level the silence check lets through, are not.
        """
        from sddkit.audio.io import SILENCE_PEAK
        from sddkit.errors import AudioTooShortError

        cfg = self.inference
        # whole samples: 2.007 s * 16 kHz is 32112.000000000004 in floats, which refused an input of exactly 2.007 s
        minimum = math.ceil(round(cfg.min_duration_s * cfg.sample_rate, 6))
        limit = f"(this model's minimum: {1000 * cfg.min_duration_s:.0f} ms)"
        if x.shape[0] < minimum:  # floored: 99.9 ms must not read as the 100 ms minimum
            n, ms = x.shape[0], 1000 * x.shape[0] / cfg.sample_rate
            # under 1 ms the floor read "0 ms of audio" for a waveform that has samples: count them
            length = f"{math.floor(ms)} ms" if ms >= 1 else f"{n} sample{'' if n == 1 else 's'} ({ms:.3g} ms)"
            raise AudioTooShortError(f"{length} of audio is too short to score {limit}", path=path)
        if minimum <= 0:
            return
        frame = max(1, round(cfg.sample_rate * _SOUND_FRAME_S))
        n = x.shape[0] // frame * frame
        frames = x[:n].reshape(-1, frame)
        swings = [(frames.max(axis=1) - frames.min(axis=1)) / 2]
        sizes = [np.full(frames.shape[0], frame)]
        if n < x.shape[0]:  # the last, partial frame
            swings.append(np.array([(float(x[n:].max()) - float(x[n:].min())) / 2]))
            sizes.append(np.array([x.shape[0] - n]))
        swing, size = np.concatenate(swings), np.concatenate(sizes)
        level = min(SILENCE_PEAK, _SOUND_RANGE * float(swing.max()))
        sound = int(size[swing >= level].sum())
        if sound < minimum:
            raise AudioTooShortError(
                f"only {math.floor(1000 * sound / cfg.sample_rate)} ms of sound in "
                f"{x.shape[0] / cfg.sample_rate:.1f} s (the rest is silence): too little to score {limit}",
                path=path,
            )

    def prepare(self, x: np.ndarray, *, path: str | None = None) -> PreparedAudio:
        """(T,) float32 at the model rate -> its windows (repeat-padded when shorter than a window).

        Inputs too short to score raise ``AudioTooShortError`` (:meth:`check_duration`), any other shape than
        (T,) a ValueError. The windows are cut from ``x`` itself (not a copy, when float32) as they are scored:
        do not change ``x`` in place before :meth:`score_prepared` has scored it.
        """
        from sddkit.audio.crop import repeat_pad, window_starts

        signal = np.asarray(x, dtype=np.float32)
        if signal.ndim != 1:  # caught here, not by the window cutting in score_prepared (a whole batch's failure)
            raise ValueError(f"prepare expects a 1-D (T,) signal at the model rate, got shape {tuple(signal.shape)}")
        self.check_duration(x, path=path)
        cfg = self.inference
        starts = window_starts(signal.shape[0], cfg.window_samples, cfg.hop_samples)
        if cfg.aggregation == "first":  # the reference protocol scores the first window alone, whatever it holds
            starts = starts[:1]
        else:
            starts = _sounding_starts(signal, starts, cfg.window_samples)
        if signal.shape[0] < cfg.window_samples:  # the windows of fixed_windows, cut as needed (PreparedAudio)
            signal = repeat_pad(signal, cfg.window_samples)
        return PreparedAudio(signal, starts, int(x.shape[0]), cfg.window_samples)

    def score_prepared(
        self, items: Sequence[PreparedAudio], *, on_windows: Callable[[int], None] | None = None
    ) -> list[ScoreResult]:
        """Run the windows of all ``items`` in batches of ``batch_size`` and build one result each.

        ``on_windows``, when given, is called with the number of windows of each batch as the model finishes it
        (the progress inside a long input, whose one result comes only after all its windows)."""
        if not items:
            return []
        raw, stats = self._run_batched(items, on_windows)
        results, offset = [], 0
        for it in items:
            n = it.n_windows
            sl = slice(offset, offset + n)
            results.append(self._result(it, raw[sl], {k: v[sl] for k, v in stats.items()}))
            offset += n
        return results

    # --- internals ------------------------------------------------------------------------
    def _run_batched(
        self, items: Sequence[PreparedAudio], on_windows: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The N windows of all ``items``, in order -> raw window scores (N,) float64 and stats {name: (N, K)}
        for :meth:`stat_widths`. Only one batch of windows is copied out of the items' signals at a time."""
        widths = self.stat_widths()
        scores, stats = [], {k: [] for k in widths}
        for chunk in _window_batches(items, self.batch_size):
            logits, st = self.runner(chunk)
            logits = np.asarray(logits, dtype=np.float64)
            if logits.shape != (chunk.shape[0], 2):
                raise CheckpointError(f"the model returned logits of shape {logits.shape}, expected (N, 2)")
            scores.append(logits[:, 1] - logits[:, 0])
            for k, width in widths.items():
                v = np.asarray(st.get(k, np.full((chunk.shape[0], width), np.nan)), dtype=np.float64)
                stats[k].append(v if v.shape == (chunk.shape[0], width) else np.full((chunk.shape[0], width), np.nan))
            if on_windows is not None:
                on_windows(chunk.shape[0])
        return np.concatenate(scores), {k: np.concatenate(v) for k, v in stats.items()}

    def _result(self, it: PreparedAudio, raw: np.ndarray, stats: dict[str, np.ndarray]) -> ScoreResult:
        cfg = self.inference
        agg = _AGGREGATIONS[cfg.aggregation](raw)
        llr = float(cfg.calibration.apply(agg))
        window_llr = cfg.calibration.apply(raw)
        sr = cfg.sample_rate
        ends = np.minimum(it.starts + cfg.window_samples, it.num_samples)
        return ScoreResult(
            score=llr,
            probability=_sigmoid(llr),
            decision="bonafide" if llr >= cfg.threshold else "spoof",
            threshold=cfg.threshold,
            duration_s=it.num_samples / sr,
            raw_score=float(agg),
            window_scores=[float(v) for v in window_llr],
            window_starts_s=[float(s) / sr for s in it.starts],
            window_ends_s=[float(e) / sr for e in ends],
            weights={k: [float(x) for x in v.mean(axis=0)] for k, v in stats.items()},
        )


def check_batch_size(batch_size: object) -> None:
    """A ``ConfigError`` unless ``batch_size`` (windows per forward) is an integer >= 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def non_finite_reason(result: ScoreResult) -> str | None:
    """Why ``result`` cannot be reported (a NaN/inf score or gate weight from the model), or None when all is finite.

    A NaN score would otherwise read as decision "spoof" (NaN >= threshold is false) and break
    strict JSON readers; it is the model's failure on this input (e.g. an fp16 overflow), not a score.
    """
    bad = sum(not math.isfinite(v) for v in result.window_scores)
    if bad or not math.isfinite(result.score):
        return (
            f"the model returned a non-finite score (NaN/inf in {bad} of {result.n_windows} window(s)): "
            "no score can be reported for this input"
        )
    # a statistic (a mixture's gate weights) is reported beside the score: a NaN there would be written as such
    stats = sorted(name for name, values in result.weights.items() if not all(math.isfinite(v) for v in values))
    if stats:
        return f"the model returned non-finite {', '.join(stats)} (NaN/inf): no score can be reported for this input"
    return None


def checked_result(result: ScoreResult, *, path: str | None = None) -> ScoreResult:
    """``result``, or a ``CheckpointError`` when its score is not finite (:func:`non_finite_reason`)."""
    reason = non_finite_reason(result)
    if reason is not None:
        raise CheckpointError(f"{path}: {reason}" if path else reason)
    return result


def _sounding_starts(signal: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """``starts`` less those of windows that hold only silence: a peak below ``SILENCE_PEAK`` (-80 dBFS), what
    makes a whole input "silent: nothing to score" (digital zero, dither).

    Such a window was scored all the same, and weighed as much as any in the mean: the bundled model scores digital
    silence about +2.5 (bona fide), so a spoof followed by 30 s of it read as bona fide. Every window is kept when
    none has sound (a peak only across window bounds), as before; an input of one window has nothing to leave out.
    (A window of a constant offset is kept: the peak, not the swing, as a hand-computed constant window is scored.)
    """
    from sddkit.audio.io import SILENCE_PEAK

    if starts.shape[0] < 2:
        return starts
    ends = np.minimum(starts + window, signal.shape[0])
    sound = np.array([float(np.abs(signal[s:e]).max()) >= SILENCE_PEAK for s, e in zip(starts, ends)])
    return starts[sound] if sound.any() else starts


def _window_batches(items: Sequence[PreparedAudio], batch_size: int) -> Iterator[np.ndarray]:
    """The windows of all ``items`` one after another, in new (<= batch_size, W) float32 arrays: the same
    batches as cutting the items' windows joined in one array every ``batch_size`` rows."""
    parts: list[np.ndarray] = []
    filled = 0
    for it in items:
        begin = 0
        while begin < it.n_windows:
            end = min(it.n_windows, begin + batch_size - filled)
            parts.append(it.window_batch(begin, end))
            filled += end - begin
            begin = end
            if filled == batch_size:
                yield parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
                parts, filled = [], 0
    if parts:
        yield parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


_AGGREGATIONS: dict[str, Callable[[np.ndarray], float]] = {
    "mean": lambda s: float(np.mean(s)),  # = score of the mean window logits (the score is linear in them)
    "median": lambda s: float(np.median(s)),
    "min": lambda s: float(np.min(s)),
    "max": lambda s: float(np.max(s)),
    "first": lambda s: float(s[0]),  # prepare() cuts one window only
}


def _sigmoid(x: float) -> float:
    with np.errstate(invalid="ignore"):  # NaN in, NaN out (reported by non_finite_reason), no warning
        return float(np.exp(-np.logaddexp(0.0, -x)))


def _as_numpy(waveform: Any, *, path: str | None = None) -> np.ndarray:
    """A numpy array, a torch tensor (any device; one that requires grad; bfloat16) or a list -> a numpy array.

    ``path`` only labels the errors (``score_many``'s "waveforms[3]" or name of the input)."""
    # np.asarray makes a 0-d array of a path ("got shape ()"), and of a bytearray or a memoryview of bytes a uint8
    # array, which was scored as 8-bit PCM: an encoded file's bytes read as audio
    raw_bytes = isinstance(waveform, (bytes, bytearray)) or (
        isinstance(waveform, memoryview) and waveform.format in ("B", "b", "c")
    )
    if raw_bytes or isinstance(waveform, (str, os.PathLike)):
        if raw_bytes:
            from sddkit.audio.io import decode_bytes_hint  # imported here: sddkit.audio.io loads the decoders

            what = "bytes" if isinstance(waveform, bytes) else type(waveform).__name__
            hint = f"{decode_bytes_hint()}, then score it: score(x, 16000)"
        else:
            what, hint = f"the path {os.fspath(waveform)!r}", "score a file with score_file(path)"
        raise AudioError(
            f"expected a waveform (a numpy array, a torch tensor or a list of samples), got {what}: {hint}", path=path
        )
    if isinstance(waveform, Tensor):
        if waveform.layout != torch.strided or waveform.is_meta:  # .numpy() raised a bare TypeError/NotImplementedError
            kind = "a meta tensor (no data)" if waveform.is_meta else f"a {waveform.layout} tensor"
            raise AudioError(
                f"expected a waveform of samples, got {kind}: pass a dense tensor (x.to_dense())", path=path
            )
        waveform = waveform.detach().cpu()
        if waveform.is_floating_point() and waveform.dtype not in (torch.float16, torch.float32, torch.float64):
            waveform = waveform.float()  # bfloat16 (mixed-precision pipelines) has no numpy dtype
        waveform = waveform.numpy()
    if isinstance(waveform, np.ma.MaskedArray) and np.ma.is_masked(waveform):
        # np.asarray drops the mask: the masked samples (gaps, clipping, whatever the mask says) were scored as audio
        raise AudioError(
            f"the masked array given masks {int(np.ma.count_masked(waveform))} sample(s), which would be scored as "
            "audio: fill them (x.filled(0)) or cut them out (x.compressed() for mono) first",
            path=path,
        )
    try:
        arr = np.asarray(waveform)
    except (ValueError, TypeError) as exc:  # a ragged list of channels
        if (
            isinstance(waveform, (tuple, list))
            and len(waveform) == 2
            and isinstance(waveform[1], numbers.Number)
            and not isinstance(waveform[0], numbers.Number)
        ):  # what torchaudio.load and dataset items give: "channels of different lengths" did not say so
            raise AudioError(
                f"got a (waveform, {waveform[1]!r}) pair, not a waveform: pass the waveform alone (the sample rate is "
                "score()'s second argument, score_many's sample_rate=)",
                path=path,
            ) from None
        raise AudioError(
            f"cannot read a waveform from the {type(waveform).__name__} given (channels of different lengths, or "
            f"numbers mixed with sequences?): {exc}",
            path=path,
        ) from None
    if arr.ndim == 0 and arr.dtype == object:  # None, a dict...: "got shape ()" did not say what was passed
        raise AudioError(
            f"expected a waveform (a numpy array, a torch tensor or a list of samples), got {type(waveform).__name__}",
            path=path,
        )
    return arr


def _not_a_sequence_of_waveforms(waveforms: object) -> str | None:
    """What ``waveforms``, given to ``score_many``, is instead of a sequence of waveforms, and what to call; None
    when it may be one."""
    if isinstance(waveforms, (str, os.PathLike)):
        return f"the path {os.fspath(waveforms)!r}: score files with score_file(path), one each"
    if isinstance(waveforms, Mapping):  # iterated, its keys were scored as waveforms ("got the path 'a'")
        return (
            f"a {type(waveforms).__name__} of {len(waveforms)} entries: pass its waveforms and their names, "
            "score_many(list(d.values()), names=list(d))"
        )
    if isinstance(waveforms, (bytes, bytearray, memoryview)):
        from sddkit.audio.io import decode_bytes_hint

        return f"{type(waveforms).__name__}: {decode_bytes_hint()}, then score_many([x])"
    # numbers, not waveforms (an object array of ragged waveforms is a sequence of them)
    if isinstance(waveforms, (np.ndarray, Tensor)) and waveforms.ndim == 1 and waveforms.dtype != object:
        return (
            f"one 1-D waveform of {waveforms.shape[0]} samples: score it with score(x, sample_rate), or pass [x] "
            "(a 2-D array is read as one waveform per row)"
        )
    if not isinstance(waveforms, Iterable):  # else "'int' object is not iterable" from score_many's list()
        return type(waveforms).__name__
    return None


def _not_a_path(path: object) -> str:
    """Why ``path``, given to ``score_file``, is not a file path, and what to call instead."""
    from sddkit.audio.io import decode_bytes_hint

    if isinstance(path, (bytes, bytearray, memoryview)):
        hint = f"{decode_bytes_hint()}, then score it: score(x, 16000)"
    elif isinstance(path, (np.ndarray, Tensor, list, tuple)):
        hint = "score a waveform with score(waveform, sample_rate)"
    elif hasattr(path, "read"):  # an open file or io.BytesIO
        hint = f"pass its path, or {decode_bytes_hint('f.read()')}, then score it: score(x, 16000)"
    else:
        hint = "pass a str or pathlib.Path"
    return f"score_file takes a file path, got {type(path).__name__}: {hint}"


def _cancelled_channels_note(arr: np.ndarray, mono: np.ndarray) -> str | None:
    """What a multichannel ``arr`` refused as silent after its mix to ``mono`` lacks: the note ``load_audio`` gives
    a file of the same samples (:func:`~sddkit.audio.io.cancelled_channels_note`), with how to score one channel of
    an array; or None."""
    from sddkit.audio.io import cancelled_channels_note, pcm_to_float

    if arr.ndim != 2 or min(arr.shape) < 2 or mono.size == 0:
        return None
    channels = pcm_to_float(np.moveaxis(arr, _channel_axis(arr), 0))
    note = cancelled_channels_note(channels.max(axis=1), channels.min(axis=1), float(mono.max()), float(mono.min()))
    if note is None:
        return None
    return f"{note}: score one channel (x[0] of (channels, samples), x[:, 0] of (samples, channels))"


def _scalar_rate(sample_rate: Any) -> Any:
    """A one-number numpy array or torch tensor given as ``sample_rate`` -> that number (else ``sample_rate`` as it
    is): a dataset's ``tensor(16000)`` (a DataLoader's ``tensor([16000])``) was refused as "sample_rate must be a
    positive integer, got tensor(16000)", which it holds."""
    if isinstance(sample_rate, Tensor) and sample_rate.numel() == 1 and not sample_rate.is_meta:
        return sample_rate.item()  # a Python int, float or bool, as the tensor's dtype is (any device)
    if isinstance(sample_rate, np.ndarray) and sample_rate.size == 1 and sample_rate.dtype.kind in "iuf":
        return sample_rate.reshape(())[()]
    return sample_rate


def _channel_axis(x: np.ndarray) -> int:
    """The channel axis of a 2-D waveform (:func:`_to_mono`'s rule): the first when it has at most 8 entries and
    fewer than the second, else the second."""
    return 0 if x.shape[0] <= 8 and x.shape[0] < x.shape[1] else 1


def _to_mono(x: np.ndarray) -> np.ndarray:
    """(T,), (1, T), (T, 1), (C, T) or (T, C) with C <= 8 -> (T,) (channels averaged)."""
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        # a DataLoader's (batch, 1, samples) is several waveforms, which score_many scores
        batch = "; a batch of waveforms? score each with score(), or all with score_many (sample_rate= their rate)"
        batch = batch if x.ndim > 2 else ""
        raise AudioError(f"expected a (samples,) or (channels, samples) waveform, got shape {x.shape}{batch}")
    if x.size == 0:  # else the mean over a zero-length axis would make NaN samples out of nothing
        raise EmptyAudioError(f"zero samples (a waveform of shape {x.shape})")
    axis = _channel_axis(x)
    # both axes longer than 8: "pass (channels, samples)" was the answer even to (16, T), which is that
    if x.shape[axis] > 8:
        raise AudioError(
            f"a waveform of shape {x.shape} has more than 8 channels (or is a batch of waveforms): mix it to "
            "mono first (e.g. x.mean(axis=0) for (channels, samples)), or score several inputs with score_many"
        )
    if x.dtype.kind in "iu" and x.dtype.itemsize == 8:  # kept as 64-bit PCM, which validation refuses by name
        return np.round(x.mean(axis=axis, dtype=np.float64)).astype(x.dtype)
    # integer PCM is scaled to [-1, 1) before the channels are averaged, as the file decoders do: a mean
    # rounded back to PCM adds half an LSB of noise, which moved the scores of quiet recordings
    from sddkit.audio.io import check_float32_range, pcm_to_float

    check_float32_range(x)  # before the float32 mean, which would overflow to Inf
    return pcm_to_float(x).mean(axis=axis, dtype=np.float32)


# --- loading ----------------------------------------------------------------------------------


def default_model_dir() -> Path:
    """Where the bundled default model lives (``sddkit/assets/default_model``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "default_model"


def resolve_model_path(path: str | os.PathLike[str] | None) -> Path:
    """``path`` as given, or the bundled default model (a clear CheckpointError when absent)."""
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):  # else pathlib's TypeError from deep inside load_detector
            raise ConfigError(
                f"the model path must be a str or pathlib.Path (a model directory or an .onnx file; None for the "
                f"bundled model), got {type(path).__name__}"
            )
        return Path(path)
    default = default_model_dir()
    if not (default / "config.json").is_file():
        raise CheckpointError(
            f"no default model is bundled with this sddkit installation (looked in {default}); "
            "pass --model DIR with a trained sddkit model directory (or `sdd import-aasist` published weights)"
        )
    return default


def load_detector(
    path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    *,
    backend: str = "torch",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ScoringDetector:
    """Load a model directory (``backend="torch"``) or an exported ONNX file (``backend="onnx"``).

    path: a model directory (``config.json`` + ``model.safetensors``) for the torch backend; an ``.onnx`` file, or
    a directory holding ``model.onnx``, for the onnx backend; None = the bundled default model (torch only: it
    ships no ONNX export). device: where the torch model runs (``cpu``, ``cuda``, ``cuda:N`` or ``mps``, a string or a
    ``torch.device``; refused with a ``ConfigError`` when this machine has none); the onnx backend runs on the CPU
    and refuses any other.
    batch_size: windows per forward pass (a larger one takes more memory).
    """
    # every argument is checked before anything is read: batch_size=0 was refused only once the whole model
    # (seconds, gigabytes for a large encoder) had been loaded
    if backend not in ("torch", "onnx"):
        raise CheckpointError(f"unknown scoring backend {backend!r}; use 'torch' or 'onnx'")
    torch_device = check_backend_device(backend, device)
    check_batch_size(batch_size)
    bundled = path is None
    path = resolve_model_path(path)
    if backend == "onnx":
        from sddkit.scoring.onnx_export import ONNX_NAME, load_onnx_detector

        if bundled and not (path / ONNX_NAME).is_file():
            # else "export one there": into the installed package's own folder
            raise CheckpointError(
                "the bundled default model has no ONNX export to load: export it with `sdd export-onnx --out "
                "default_model.onnx` and give that file: --model default_model.onnx (load_detector("
                "'default_model.onnx', backend='onnx'))"
            )

        return load_onnx_detector(path, batch_size=batch_size)
    from sddkit.detectors.model_dir import load_model_dir

    if path.suffix.lower() == ".onnx" and path.is_file():  # else refused as "not a model directory (a file)"
        from sddkit.scoring.onnx_export import exported_from

        # sdd calibrate and sdd robustness, which take no --backend, were told "sdd score --backend onnx"
        source = exported_from(path)
        raise CheckpointError(
            f"{path} is an ONNX file: load it with backend='onnx' (sdd score and sdd serve take --backend onnx); "
            "the other commands (sdd calibrate, sdd robustness, sdd export-onnx) need the model directory it was "
            f"exported from{f', {source}' if source else ''}"
        )
    # the model is built (its layers initialised from torch's global generator) before its weights replace them:
    # without the fork, loading a detector moved the caller's torch.manual_seed stream (a notebook's later
    # torch.randn drew other numbers with a detector loaded than without); built on the CPU, CUDA's are untouched
    with torch.random.fork_rng(devices=[]):
        md = load_model_dir(path, map_location="cpu")
    inference = parse_inference(md.inference, f"{path}: inference")
    check_model_rate(inference, str(path))
    merged = merge_lora_for_inference(md.model)
    info = model_info(md.model, architecture=md.architecture, model_config=md.model_config, path=path)
    info["metadata"] = md.metadata
    info["merged_lora_layers"] = merged
    info["weights_digest"] = md.weights_digest
    return ScoringDetector(TorchRunner(md.model, torch_device), inference, batch_size=batch_size, info=info)


def scoring_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that exists here, else a ``ConfigError`` (not torch's traceback)."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r}: this torch sees no CUDA device; use cpu")
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(f"device {device!r}: only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {device!r}: MPS is not available here; use cpu")
    elif resolved.type != "cpu":
        raise ConfigError(f"device {device!r}: scoring runs on cpu, cuda or mps")
    return resolved


def check_backend_device(backend: str, device: str | torch.device) -> torch.device:
    """``device`` checked for ``backend`` (before a model or a manifest is read): :func:`scoring_device` for
    torch, :func:`check_onnx_device` for onnx (the CPU)."""
    if backend == "onnx":
        check_onnx_device(device)
        return torch.device("cpu")
    return scoring_device(device)


def check_onnx_device(device: str | torch.device) -> None:
    """Refuse any ``device`` but the CPU for the ONNX backend (a ``ConfigError``), which runs on onnxruntime's
    CPU provider: a ``cuda`` device was ignored without a word where torch sees one, and refused as
    "this torch sees no CUDA device" where it sees none."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; the onnx backend runs on cpu") from None
    if resolved.type != "cpu":
        raise ConfigError(
            f"device {device!r}: the onnx backend runs on the CPU (onnxruntime's CPU provider); "
            f"use cpu, or the torch backend to score on {device}"
        )


def merge_lora_for_inference(model: nn.Module) -> int:
    """Fold every LoRA adapter of ``model`` (experts of a mixture included) into its base weights.

    Scoring never trains, so the low-rank path is pure overhead: merged, a LoRA encoder costs what
    the bare encoder costs. MoLEx experts depend on the input and stay as they are. Returns the
    number of layers merged.
    """
    from sddkit.frontends.lora import LoRALinear

    layers = [m for m in model.modules() if isinstance(m, LoRALinear) and not m.merged]
    for layer in layers:
        layer.merge()
    return len(layers)


def model_info(model: nn.Module, *, architecture: str, model_config: dict[str, Any], path: Path) -> dict[str, Any]:
    """A JSON-able summary of a model: where it came from, what it is, how big."""
    return {
        "path": str(path),
        "name": path.name,
        "architecture": architecture,
        "components": _component_names(model_config),
        "model": model_config,
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "backend": "torch",
    }


def _component_names(model_config: dict[str, Any]) -> dict[str, Any]:
    """frontend/backend names of a detector; per-expert names and the gate of a mixture. A front-end with a
    frequency band (``f_min``/``f_max``: logmel, lfb, lfcc, mgd, cqt, ...) adds ``band_hz``, ``[f_min, f_max]`` in Hz
    with the defaults and a null f_max (Nyquist) resolved: two experts of one front-end on different bands (a
    4-8 kHz ``lfb`` beside a 0-8 kHz one) read as the same ``lfb`` otherwise."""

    def name(spec: Any) -> Any:
        return spec.get("name") if isinstance(spec, dict) else spec

    def parts(spec: dict[str, Any]) -> dict[str, Any]:
        out = {"frontend": name(spec.get("frontend")), "backend": name(spec.get("backend"))}
        band = _frontend_band(spec.get("frontend"))
        if band is not None:
            out["band_hz"] = band
        return out

    if "experts" in model_config:
        experts = model_config.get("experts", [])
        # mixtures saved before expert_names existed: the default names
        names = model_config.get("expert_names") or [f"expert{i}" for i in range(len(experts))]
        return {
            "experts": [{"name": str(n), **parts(e)} for n, e in zip(names, experts)],
            "gate": name(model_config.get("gate")),
        }
    return parts(model_config)


def _frontend_band(spec: Any) -> list[float] | None:
    """``[f_min, f_max]`` in Hz of a front-end spec whose config has a band (its ``band_hz``: defaults and a null
    f_max resolved as the front-end resolves them); None for one without (an encoder, a logspec) or a spec the
    registry cannot read (the model loaded, so this is only a plugin that is not imported here: the band is then
    left out, not guessed)."""
    from sddkit.registry import get_registry

    try:
        cfg = get_registry("frontend").parse(spec).config
    except (ValueError, TypeError):  # ConfigError is a ValueError; a description never refuses a model that loaded
        return None
    band = getattr(cfg, "band_hz", None)
    return None if band is None else [float(band[0]), float(band[1])]
