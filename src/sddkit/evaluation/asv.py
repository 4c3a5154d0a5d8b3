"""ASV score files: the scores of the automatic speaker verification system a countermeasure sits before.

The t-DCF weighs a countermeasure's errors by what they cost the ASV system behind it, so its official figures
use the challenge organisers' ASV scores: ASVspoof 2019's ``ASVspoof2019.LA.asv.eval.gi.trl.scores.txt`` holds
one trial per line, ``SOURCE KEY SCORE`` (``bonafide target 1.53``, ``A07 spoof -2.90``), where ``KEY`` is
``target``, ``nontarget`` or ``spoof``. :func:`read_asv_scores` reads that layout and its relatives: fields
separated by white space or commas, the key in any one field, the score in the last; a header line and lines
starting with ``#`` are skipped. :func:`asv_rates` turns them into the ASV error rates the t-DCF takes, as the
official scripts do (:func:`sddkit.metrics.asv_rates_from_scores`); the t-EER (:func:`sddkit.metrics.t_eer`)
takes the scores themselves. The lines name no utterance, so they cannot be joined with the countermeasure's
scores trial by trial.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sddkit.data.text import not_text, read_text
from sddkit.errors import ProtocolError
from sddkit.metrics import ASVRates, asv_rates_from_scores

ASV_KEYS = ("target", "nontarget", "spoof")
_SPLIT = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class ASVScores:
    """An ASV system's scores (higher = more likely the claimed speaker), by trial kind."""

    target: np.ndarray
    nontarget: np.ndarray
    spoof: np.ndarray

    def rates(self) -> ASVRates:
        """The error rates at the ASV system's EER threshold (:func:`sddkit.metrics.asv_rates_from_scores`)."""
        return asv_rates_from_scores(self.target, self.nontarget, self.spoof)


def read_asv_scores(path: str | Path) -> ASVScores:
    """The trials of an ASV score file (module docstring); ``ProtocolError`` names the first bad line."""
    path = Path(path)
    try:
        text = read_text(path)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{path}: {not_text(exc)}; an ASV score file is text") from None
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read the ASV score file ({exc.strerror or exc})") from None
    found: dict[str, list[float]] = {key: [] for key in ASV_KEYS}
    first = True
    for number, line in enumerate(text.splitlines(), 1):
        fields = [f for f in _SPLIT.split(line.strip()) if f]
        if not fields or fields[0].startswith("#"):
            continue
        keys = [f.lower() for f in fields[:-1] if f.lower() in found]
        score = _number(fields[-1])
        if first and score is None and not keys:  # a header line (e.g. "source,key,score")
            first = False
            continue
        first = False
        if len(keys) != 1 or score is None:
            what = (
                f"the last field {fields[-1]!r} is not a finite score"
                if score is None
                else "no field is target, nontarget or spoof"
                if not keys
                else f"several fields are trial kinds ({', '.join(keys)})"
            )
            raise ProtocolError(
                f"{path}, line {number}: {line.strip()[:120]!r}: {what}; an ASV score line holds one of "
                "target/nontarget/spoof and ends with the score (e.g. 'bonafide target 1.53')" + _asv2021_hint(fields)
            )
        found[keys[0]].append(score)
    missing = [key for key in ASV_KEYS if not found[key]]
    if missing:
        counts = ", ".join(f"{len(found[key])} {key}" for key in ASV_KEYS)
        raise ProtocolError(
            f"{path}: no {' or '.join(missing)} trials ({counts}); the ASV error rates of the t-DCF need all three"
        )
    return ASVScores(*(np.asarray(found[key], dtype=np.float64) for key in ASV_KEYS))


def asv_rates(path: str | Path) -> ASVRates:
    """The ASV error rates, at the ASV system's EER threshold, of the score file ``path``."""
    return read_asv_scores(path).rates()


_TRIAL_ID = re.compile(r"^(LA|PA|DF)_E_\d+$")
# how the ASVspoof 2021 organisers' ASV scores become lines of the 2019 layout: their score file names the trials
# and their ASV key the kinds, line by line in the same order (the official evaluate.py pairs them by position)
_JOIN_2021 = (
    "paste -d' ' keys/LA/ASV/trial_metadata.txt <(cut -d' ' -f3 keys/LA/ASV/ASVTorch_Kaldi/score.txt) "
    "| awk '$8 == \"eval\"' > asv_eval.txt"
)


def _asv2021_hint(fields: list[str]) -> str:
    """For a line of ASVspoof 2021's ASV score file (``LA_0015 LA_E_1103494 -4.87``: no trial kind) or of its ASV
    key (``... bonafide nontarget notrim eval``: no score), how to join the two into lines this reader takes."""
    if len(fields) < 3 or not _TRIAL_ID.match(fields[1]):
        return ""
    if len(fields) == 3 and _number(fields[2]) is not None:
        what = "an ASVspoof 2021 ASV score file (keys/<track>/ASV/ASVTorch_Kaldi/score.txt), which names no trial kind"
    elif fields[-1] in ("eval", "progress", "hidden", "hidden_track"):
        what = "an ASVspoof 2021 ASV key (keys/<track>/ASV/trial_metadata.txt), which holds no score"
    else:
        return ""
    return (
        f"; this is {what}: give the key's lines with the scores appended, of the phase evaluated, e.g. "
        f"{_JOIN_2021} (the official scripts take the ASV rates of the phase's trials alone)"
    )


def _number(field: str) -> float | None:
    try:
        value = float(field)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
