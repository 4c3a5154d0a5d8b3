"""A small synthetic evaluation set for ``sdd demo``: an ASVspoof 2019 LA-style protocol and scores.

Scores come from a seeded Gaussian model: bona fide ~ N(mu, 1) and spoof attack ``a`` ~
N(mu - d_a, 1), so ``d_a`` (the attack's separation, d') sets how hard the attack is and the
per-attack EER is about ``Phi(-d_a / 2)``. Nothing here is a model's output; it exercises the
evaluation pipeline end to end (protocol reader, score reader, metrics, report, plots).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sddkit.errors import ConfigError

# attack -> separation d' from bona fide (larger = easier); names follow the ASVspoof 2019 LA eval set
DEMO_ATTACKS: dict[str, float] = {"A07": 4.0, "A09": 3.5, "A10": 2.5, "A13": 3.0, "A17": 1.2, "A18": 2.0}
BONAFIDE_MEAN = 2.0


def write_synthetic_example(
    out_dir: str | Path,
    *,
    n_bonafide: int = 500,
    n_per_attack: int = 300,
    attacks: Mapping[str, float] = DEMO_ATTACKS,
    n_speakers: int = 12,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``protocol.txt`` (``SPEAKER UTT - ATTACK KEY``) and ``scores.txt`` (``UTT ATTACK KEY SCORE``).

    Returns ``(protocol path, score path)``; the same seed gives byte-identical files.
    """
    if n_bonafide < 1 or n_per_attack < 1 or not attacks:
        raise ValueError("need at least one bona fide trial, one attack and one trial per attack")
    if n_speakers < 1:
        raise ValueError(f"need at least one speaker, got n_speakers={n_speakers}")
    for name, separation in attacks.items():
        # one whitespace-free field of the protocol and score lines, where '-' is the bona fide trials' attack
        if not isinstance(name, str) or not name or name == "-" or any(c.isspace() for c in name):
            raise ValueError(f"attack name {name!r} must be a non-empty word without whitespace, other than '-'")
        if not np.isfinite(separation):
            raise ValueError(f"attack {name!r}: separation {separation!r} is not a finite number")
    rng = np.random.default_rng(seed)
    systems = ["-"] * n_bonafide + [a for a in attacks for _ in range(n_per_attack)]
    scores = np.concatenate(
        [rng.normal(BONAFIDE_MEAN, 1.0, n_bonafide)]
        + [rng.normal(BONAFIDE_MEAN - d, 1.0, n_per_attack) for d in attacks.values()]
    )
    n = len(systems)
    order = rng.permutation(n)  # interleave classes as a real protocol does
    numbers = rng.choice(9_000_000, size=n, replace=False) + 1_000_000  # unique 7-digit ids
    speakers = rng.integers(0, n_speakers, size=n) + 1
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file of that name: one line, not a traceback
        from sddkit.outputs import folder_failure

        raise ConfigError(f"{out}: cannot create the example folder ({folder_failure(exc)})") from None
    protocol_lines, score_lines = [], []
    for k, i in enumerate(order):
        utt = f"LA_E_{numbers[k]}"
        key = "bonafide" if systems[i] == "-" else "spoof"
        protocol_lines.append(f"LA_{speakers[k]:04d} {utt} - {systems[i]} {key}")
        score_lines.append(f"{utt} {systems[i]} {key} {scores[i]:.6f}")
    protocol, score_file = out / "protocol.txt", out / "scores.txt"
    for path, lines in ((protocol, protocol_lines), (score_file, score_lines)):
        try:
            path.write_text("\n".join(lines) + "\n")
        except OSError as exc:  # a read-only file left by an earlier run, say: one line, not a traceback
            raise ConfigError(f"{path}: cannot write the example ({exc.strerror or exc})") from None
    return protocol, score_file
