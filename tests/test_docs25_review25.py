"""docs/cli.md against the code after the day's changes (25th review of README.md and docs/*.md).

What the reference left out or got wrong: WaveFake's ``generators``/``jsut_subsets`` select trials in ``sdd eval``
as ``codecs`` does, but the list of selection options did not name them, nor ``ljspeech_root``/``jsut_root`` among
the reader options ``--protocol-option`` gives; WaveFake's ``vocoder`` and ``attack_type`` columns give
``per_vocoder.csv`` and ``per_attack_type.csv``, which the report section tied to ASVspoof 2021 DF and sddbench; a
recipe expands ``~`` in every ``*_root`` reader option (WaveFake's ``ljspeech_root``), where the reference named
``options.root`` alone; ``sdd calibrate`` refuses raw scores whose fit has no positive slope, unsaid beside its
other refusals, and its ``--threshold keep`` was a bare word; ``sdd cv`` refuses a single ``--hold-out``, unsaid.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from docs_support import cli_section

from sddkit.cli.main import main
from sddkit.cli.options import SELECTION_OPTIONS
from sddkit.errors import ProtocolError
from sddkit.scoring.calibration import fit_calibration

REPO = Path(__file__).resolve().parents[1]


def _bullet(section: str, start: str) -> str:
    """The bullet of ``section`` (docs/cli.md) that begins with ``start`` (its continuation lines included)."""
    found = [b for b in re.split(r"\n\s*- ", "\n" + section) if b.startswith(start)]
    assert len(found) == 1, f"{len(found)} bullets start with {start!r}"
    return found[0]


def test_the_selection_options_bullet_names_every_selection_option():
    bullet = _bullet(cli_section("sdd eval"), "An option that keeps some of the trials")
    missing = [name for name in SELECTION_OPTIONS if f"`{name}`" not in bullet]
    assert not missing, f"docs/cli.md's sdd eval selection options leave out {missing}"
    assert "WaveFake" in bullet
    # WaveFake's folder holds spoofs only: sdd eval needs its bona fide corpora as options, as MLAAD's bonafide_root
    options = _bullet(cli_section("sdd eval"), "`--protocol-option KEY=VALUE`")
    assert "`ljspeech_root=DIR` and `jsut_root=DIR` for WaveFake" in options


def _write(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * rng.standard_normal(1600)).astype("float32"), 16000)


def test_wavefake_reports_per_vocoder_and_per_attack_type_as_the_reference_says(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gen = tmp_path / "generated_audio"
    lines = ["utt_id,score"]
    for k, folder in enumerate(("ljspeech_melgan", "ljspeech_parallel_wavegan", "jsut_parallel_wavegan")):
        for i in range(1, 3):
            stem = f"BASIC5000_000{i}_gen" if folder.startswith("jsut") else f"LJ001-000{i}_gen"
            _write(gen / folder / f"{stem}.wav", rng)
            lines.append(f"{folder}/{stem},{-i - k}")
    tts = "common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech"
    for i in range(1, 3):
        _write(gen / tts / f"gen_{i}.wav", rng)
        lines.append(f"{tts}/gen_{i},{-2.5 - i}")
    lj = tmp_path / "LJSpeech-1.1"
    for i in range(1, 3):
        _write(lj / "wavs" / f"LJ001-000{i}.wav", rng)
        lines.append(f"LJ001-000{i},{i}")
    (lj / "metadata.csv").write_text("".join(f"LJ001-000{i}|t|t\n" for i in range(1, 3)))
    scores = tmp_path / "scores.csv"
    scores.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(scores), "--protocol", str(gen), "--out", str(out)]
    assert main([*argv, "--protocol-option", f"ljspeech_root={lj}"]) == 0, capsys.readouterr().err
    vocoders = [line.split(",")[0] for line in (out / "per_vocoder.csv").read_text().splitlines()[1:]]
    # an LJSpeech and a JSUT folder of one vocoder are one row, as docs/cli.md says
    assert sorted(vocoders) == ["melgan", "parallel_wavegan"]
    types = [line.split(",")[0] for line in (out / "per_attack_type.csv").read_text().splitlines()[1:]]
    assert sorted(types) == ["tts", "vocoder"]
    report = cli_section("sdd eval")
    assert "WaveFake's, an LJSpeech and a JSUT folder of one vocoder together" in report
    assert "WaveFake's `vocoder` and `tts`" in report


def test_a_recipe_expands_home_in_every_root_option_as_the_reference_says(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = "{protocol: wf/generated_audio, format: wavefake, options: {ljspeech_root: ~/LJSpeech-1.1}}"
    recipe = str(REPO / "recipes" / "sddbench" / "default_model.yaml")
    assert main(["train", recipe, f"data.train=[{spec}]", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data"]["train"][0]["options"]["ljspeech_root"] == str(tmp_path / "LJSpeech-1.1")
    assert "every other `*_root` option, e.g. WaveFake's `ljspeech_root`" in cli_section("sdd train")


def test_calibrate_reference_names_the_refusal_of_scores_without_a_positive_slope():
    scores, labels = np.array([3.0, 2.0, 1.0, -1.0, -2.0, -3.0]), np.array([0, 0, 0, 1, 1, 1])
    with pytest.raises(ProtocolError, match="non-positive slope"):
        fit_calibration(scores, labels)
    with pytest.raises(ProtocolError, match="all equal"):
        fit_calibration(np.zeros(6), labels)
    bullet = _bullet(cli_section("sdd calibrate"), "Raw scores the fit cannot map to LLRs are refused")
    assert "all equal" in bullet and "slope that is not positive" in bullet
    # `keep` (tests/test_calibrate_cmd.py: the stored threshold value unchanged) was a bare word in the reference
    keep = _bullet(cli_section("sdd calibrate"), "`--threshold`")
    assert "`keep`: the model's stored threshold value, read on the new calibrated scale" in keep


def test_cv_refuses_one_hold_out_as_the_reference_says(tmp_path, capsys):
    recipe = str(REPO / "recipes" / "sddbench" / "default_model.yaml")
    assert main(["cv", recipe, "--hold-out", "tortoise", "--out", str(tmp_path / "cv")]) == 2
    assert "at least 2 held-out groups" in capsys.readouterr().err
    assert "two folds at least, one is refused" in _bullet(cli_section("sdd cv"), "`--hold-out` names")
