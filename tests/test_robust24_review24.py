"""Review robust24: augmentation properties measured on synthetic signals, and ``sdd robustness`` resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from scoring_support import run_interrupted_at_second_batch, save_tiny_lcnn

from sddkit.cli.main import main
from sddkit.evaluation.robustness import JOURNAL_NAME

SR = 16000


@pytest.fixture(scope="module")
def robust_setup(tmp_path_factory):
    """A tiny random logmel + LCNN model and a labelled folder of 8 short files."""
    root = tmp_path_factory.mktemp("robust24")
    rng = np.random.default_rng(24)
    data = root / "data"
    for label in ("bonafide", "spoof"):
        (data / label).mkdir(parents=True)
        for i in range(4):
            sf.write(data / label / f"u{i}.wav", (0.05 * rng.standard_normal(3000 + 500 * i)).astype(np.float32), SR)
    model = save_tiny_lcnn(root / "model", inference={"window_samples": 4000})
    return {"root": root, "data": data, "model": model}


def _robustness_args(setup, out, conditions: str) -> list[str]:
    return [
        "robustness",
        "--model",
        str(setup["model"]),
        "--protocol",
        str(setup["data"]),
        "--out",
        str(out),
        "--conditions",
        conditions,
        "--seed",
        "5",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--quiet",
    ]


def test_a_resume_with_the_same_conditions_in_another_order_is_not_refused(robust_setup, tmp_path, monkeypatch):
    # before: "conditions: earlier ['clean', 'gain_-10db', 'mulaw'], now ['clean', 'mulaw', 'gain_-10db']" refused the
    # resume, although a degraded utterance's seed depends on its condition's name, not on where it is listed
    first, second = "gain_-10db,mulaw", "mulaw,gain_-10db"
    uninterrupted = tmp_path / "uninterrupted"
    assert main(_robustness_args(robust_setup, uninterrupted, second)) == 0

    out = tmp_path / "out"
    run_interrupted_at_second_batch(monkeypatch, _robustness_args(robust_setup, out, first))
    assert len((out / JOURNAL_NAME).read_text().splitlines()) == 2  # the header and one batch

    assert main(_robustness_args(robust_setup, out, second)) == 0
    assert not (out / JOURNAL_NAME).exists()
    resumed, expected = (json.loads((d / "robustness.json").read_text()) for d in (out, uninterrupted))
    assert resumed["conditions"] == ["clean", "mulaw", "gain_-10db"]  # the rerun's order
    assert resumed["rows"] == expected["rows"]
    for mode in ("all", "spoof_only"):
        name = f"scores_{mode}.csv"
        assert (out / name).read_bytes() == (uninterrupted / name).read_bytes()


def _rewrite_header(out, edit) -> None:
    lines = (out / JOURNAL_NAME).read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    edit(header["settings"])
    (out / JOURNAL_NAME).write_text(json.dumps(header) + "\n" + "".join(lines[1:]))


def test_a_journal_of_another_definition_of_a_condition_is_refused(robust_setup, tmp_path, monkeypatch, capsys):
    # before: the journal named the conditions only, so a run interrupted before an upgrade that changed what a name
    # does (noise's low_hz default went from 0 to 20 Hz, changing noise_pink_*/noise_brown_*) resumed after it, and
    # its report mixed the scores of two definitions under one row
    out = tmp_path / "out"
    run_interrupted_at_second_batch(monkeypatch, _robustness_args(robust_setup, out, "noise_pink_5db,gain_-10db"))
    header = json.loads((out / JOURNAL_NAME).read_text().splitlines()[0])
    assert header["settings"]["condition_configs"]["noise_pink_5db"]["low_hz"] == 20.0
    assert "clean" not in header["settings"]["condition_configs"]

    _rewrite_header(out, lambda s: s["condition_configs"]["noise_pink_5db"].update(low_hz=0.0))
    before = (out / JOURNAL_NAME).read_bytes()
    capsys.readouterr()
    assert main(_robustness_args(robust_setup, out, "noise_pink_5db,gain_-10db")) == 2
    err = capsys.readouterr().err
    assert "holds the scores of another robustness run" in err, err
    assert "the definition of condition(s) ['noise_pink_5db'] (noise_pink_5db: low_hz earlier 0.0, now 20.0" in err
    assert (out / JOURNAL_NAME).read_bytes() == before


def test_a_journal_without_condition_definitions_still_resumes_and_the_report_records_them(
    robust_setup, tmp_path, monkeypatch
):
    # a journal of an sddkit that did not record the definitions cannot be checked, and is resumed as before
    out = tmp_path / "out"
    run_interrupted_at_second_batch(monkeypatch, _robustness_args(robust_setup, out, "gain_-10db"))
    _rewrite_header(out, lambda s: s.pop("condition_configs"))
    assert main(_robustness_args(robust_setup, out, "gain_-10db")) == 0
    report = json.loads((out / "robustness.json").read_text())
    assert report["condition_configs"] == {"gain_-10db": {"name": "gain", "gain_db": [-10.0, -10.0], "p": 1.0}}
