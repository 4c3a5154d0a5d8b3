"""``sdd robustness`` resumes: scores are journaled batch by batch in --out, a rerun after a crash or Ctrl-C
scores only the rest and writes the report an uninterrupted run writes; a journal of another run is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import sddkit
from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.data.protocols import read_protocol
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.model_dir import save_model_dir
from sddkit.errors import ProtocolError
from sddkit.evaluation import robustness
from sddkit.evaluation.robustness import (
    JOURNAL_NAME,
    RobustnessConfig,
    RobustnessJournal,
    journal_header,
    run_robustness,
    write_robustness,
)
from sddkit.scoring.api import ScoringDetector

SR = 16000
CONDITIONS = "noise_white_10db,mulaw,clip_-6db"
REPORT = (
    "robustness.csv",
    "robustness.json",
    "robustness.md",
    "robustness.png",
    "scores_all.csv",
    "scores_spoof_only.csv",
)


def _model(path, seed: int):
    cfg = from_dict(
        DetectorConfig,
        {"frontend": "logmel", "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 0, "dropout": 0.0}},
    )
    torch.manual_seed(seed)
    return save_model_dir(
        path, build_detector(cfg).eval(), model_config=to_dict(cfg), inference={"window_samples": 4000}
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two tiny random models and a labelled folder of 10 files, one of them unreadable."""
    root = tmp_path_factory.mktemp("robresume")
    rng = np.random.default_rng(1)
    data = root / "data"
    for label in ("bonafide", "spoof"):
        (data / label).mkdir(parents=True)
        for i in range(5):
            x = (0.05 * rng.standard_normal(3000 + 700 * i)).astype(np.float32)
            sf.write(data / label / f"u{i}.wav", x, SR)
    (data / "spoof" / "u2.wav").write_bytes(b"RIFF not a wav file")  # a file-level failure
    return {"root": root, "data": data, "model": _model(root / "model", 0), "other": _model(root / "other", 1)}


def _args(setup, out, *extra: str) -> list[str]:
    args = ["robustness", "--model", str(setup["model"]), "--protocol", str(setup["data"]), "--out", str(out)]
    return [*args, "--conditions", CONDITIONS, "--seed", "3", "--batch-size", "6", "--quiet", *extra]


@pytest.fixture(scope="module", autouse=True)
def a_failing_condition():
    """mulaw fails on u1 (bona fide and spoof): condition errors are journaled and read back too."""
    real = robustness.degrade

    def degrade(name, x, sr, seed, *, fast_codecs=False):
        if name == "mulaw" and x.shape[0] == 3700:
            raise RuntimeError("no mu-law encoder here")
        return real(name, x, sr, seed, fast_codecs=fast_codecs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(robustness, "degrade", degrade)
        yield


def _kill_after(monkeypatch, batches: int) -> list[int]:
    """Ctrl-C while the model scores batch ``batches + 1``; returns the number of items each batch held."""
    real = ScoringDetector.score_prepared
    sizes: list[int] = []

    def score_prepared(self, items, on_windows=None):
        if len(sizes) == batches:
            raise KeyboardInterrupt
        sizes.append(len(items))
        return real(self, items, on_windows=on_windows)

    monkeypatch.setattr(ScoringDetector, "score_prepared", score_prepared)
    return sizes


@pytest.fixture(scope="module")
def clean_run(setup):
    """The uninterrupted run's report."""
    out = setup["root"] / "clean"
    assert main(_args(setup, out)) == 0
    return {name: (out / name).read_bytes() for name in REPORT}


def _journal_lines(out) -> list[bytes]:
    return (out / JOURNAL_NAME).read_bytes().splitlines(keepends=True)


def test_a_killed_run_resumes_to_the_report_of_an_uninterrupted_one(setup, clean_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _kill_after(m, 2)
        assert main(_args(setup, out)) == 130  # Ctrl-C after two batches
    assert not (out / "robustness.json").exists()
    lines = _journal_lines(out)
    assert len(lines) == 3 and all(line.endswith(b"\n") for line in lines)  # the header and two batches
    batches = [json.loads(line) for line in lines[1:]]
    journaled = sum(len(b["files"]) for b in batches)
    assert 2 <= journaled < 10

    scored: list[int] = []
    real = ScoringDetector.score_prepared
    monkeypatch.setattr(
        ScoringDetector,
        "score_prepared",
        lambda self, items, on_windows=None: scored.append(len(items)) or real(self, items, on_windows=on_windows),
    )
    capsys.readouterr()
    assert main(_args(setup, out)) == 0
    assert f"{journaled} file(s) resumed from {JOURNAL_NAME}" in capsys.readouterr().err
    for name in REPORT:  # bit for bit: the same scores, failures and condition errors in the same order
        assert (out / name).read_bytes() == clean_run[name], name
    report = json.loads((out / "robustness.json").read_text())
    assert report["n_failed_files"] == 1 and report["condition_errors"]["mulaw"]["count"] == 2
    # the journal is gone once the report is published, and so is its lock
    assert not (out / JOURNAL_NAME).exists() and not (out / f"{JOURNAL_NAME}.lock").exists()
    # the rerun scored every trial but those of the journaled files
    trials = clean_run["scores_all.csv"].count(b"\n") - 1
    assert sum(scored) == trials - sum(len(f.get("scores", {})) for b in batches for f in b["files"])


def test_a_last_line_cut_off_by_the_kill_is_scored_again(setup, clean_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _kill_after(m, 3)
        assert main(_args(setup, out)) == 130
    lines = _journal_lines(out)
    assert len(lines) == 4
    cut = b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2]  # killed while writing the third batch
    (out / JOURNAL_NAME).write_bytes(cut)
    assert main(_args(setup, out)) == 0
    for name in REPORT:
        assert (out / name).read_bytes() == clean_run[name], name

    # a header cut off before its end: nothing was scored, the run starts afresh
    out2 = tmp_path / "out2"
    out2.mkdir()
    (out2 / JOURNAL_NAME).write_bytes(lines[0][:40])
    assert main(_args(setup, out2)) == 0
    for name in REPORT:
        assert (out2 / name).read_bytes() == clean_run[name], name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--seed", "4"], "seed: earlier 3, now 4"),
        (["--conditions", CONDITIONS + ",alaw"], "conditions: added ['alaw']"),
        (["--mode", "all"], "modes: earlier ['all', 'spoof_only'], now ['all']"),
        (["--limit", "6"], "limit: earlier None, now 6"),
        (["--max-duration-s", "0"], "max_duration: earlier 600.0, now None"),
        (["--fast-codecs"], "fast_codecs: earlier False, now True"),
        (["--model", "OTHER"], "the model (earlier"),
    ],
)
def test_a_journal_of_another_run_is_refused_saying_what_differs(setup, tmp_path, monkeypatch, capsys, change, message):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _kill_after(m, 1)
        assert main(_args(setup, out)) == 130
    before = (out / JOURNAL_NAME).read_bytes()
    change = [str(setup["other"]) if c == "OTHER" else c for c in change]
    capsys.readouterr()
    assert main([*_args(setup, out), *change]) == 2
    err = capsys.readouterr().err
    assert "holds the scores of another robustness run" in err and message in err, err
    assert "delete it to start afresh, or choose another --out" in err and JOURNAL_NAME in err
    assert (out / JOURNAL_NAME).read_bytes() == before  # left as it was: the original run can still resume
    assert not (out / "robustness.json").exists()


def test_other_utterances_are_refused_and_deleting_the_journal_starts_afresh(setup, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _kill_after(m, 1)
        assert main(_args(setup, out)) == 130
    data = tmp_path / "data"  # the same files in another folder: other audio paths
    for label in ("bonafide", "spoof"):
        (data / label).mkdir(parents=True)
        for f in (setup["data"] / label).iterdir():
            (data / label / f.name).write_bytes(f.read_bytes())
    args = _args(setup, out)
    args[args.index("--protocol") + 1] = str(data)
    assert main(args) == 2
    assert "the utterances: earlier 10, now 10" in capsys.readouterr().err
    (out / JOURNAL_NAME).unlink()
    assert main(args) == 0 and (out / "robustness.json").is_file()


def test_batch_size_workers_and_threads_may_change_on_resume(setup, clean_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _kill_after(m, 2)
        assert main(_args(setup, out)) == 130
    assert main([*_args(setup, out), "--batch-size", "3", "--workers", "0", "--threads", "1"]) == 0
    a = json.loads(clean_run["robustness.json"])["rows"]
    b = json.loads((out / "robustness.json").read_text())["rows"]
    assert [(r["condition"], r["mode"], r["n"]) for r in a] == [(r["condition"], r["mode"], r["n"]) for r in b]
    for ra, rb in zip(a, b):
        assert ra["eer"] == pytest.approx(rb["eer"], abs=1e-6)


def test_library_resume_with_worker_threads_and_a_finished_journal(setup, tmp_path, monkeypatch):
    det = sddkit.load_detector(setup["model"], batch_size=6)
    table = read_protocol(setup["data"])
    cfg = RobustnessConfig(conditions=CONDITIONS.split(","), seed=3, workers=2)
    whole = run_robustness(det, table, cfg, progress=False)
    journal = tmp_path / "j.jsonl"
    with monkeypatch.context() as m:
        _kill_after(m, 3)
        with pytest.raises(KeyboardInterrupt):
            run_robustness(det, table, cfg, progress=False, journal=journal)
    resumed = run_robustness(det, table, cfg, progress=False, journal=journal)
    assert resumed.n_resumed > 0 and resumed.journal == journal
    assert resumed.rows == whole.rows and resumed.to_dict() == whole.to_dict()
    for name in whole.scores:
        np.testing.assert_array_equal(resumed.scores[name], whole.scores[name])
    # a crash after the last batch, before the report: the rerun scores nothing and gives the same result
    again = run_robustness(det, table, cfg, progress=False, journal=journal)
    assert again.n_resumed == len(table) and again.to_dict() == whole.to_dict()
    write_robustness(again, tmp_path / "report")
    assert not journal.exists()


def test_a_second_run_on_the_same_journal_is_refused(setup, tmp_path):
    det = sddkit.load_detector(setup["model"])
    records = read_protocol(setup["data"]).df[["utt_id", "path", "label"]].to_dict("records")
    header = journal_header(det, records, RobustnessConfig(conditions=["mulaw"]))
    first = RobustnessJournal(tmp_path / JOURNAL_NAME, header)
    try:
        with pytest.raises(ProtocolError, match="being written by another sdd robustness run"):
            RobustnessJournal(tmp_path / JOURNAL_NAME, header)
    finally:
        first.close()
    RobustnessJournal(tmp_path / JOURNAL_NAME, header).close()  # free again once the first is closed


def test_a_file_that_is_no_journal_or_a_damaged_line_is_refused(setup, tmp_path):
    det = sddkit.load_detector(setup["model"])
    records = read_protocol(setup["data"]).df[["utt_id", "path", "label"]].to_dict("records")
    header = journal_header(det, records, RobustnessConfig(conditions=["mulaw"]))
    path = tmp_path / JOURNAL_NAME
    path.write_text('{"some": "thing"}\n')
    with pytest.raises(ProtocolError, match="is not a robustness journal; .*delete it to start afresh"):
        RobustnessJournal(path, header)
    path.write_text(json.dumps(header) + "\nnot json\n" + json.dumps({"files": [], "errors": []}) + "\n")
    with pytest.raises(ProtocolError, match="is damaged at line 2"):
        RobustnessJournal(path, header)
    # a damaged last line is a cut-off one: dropped, and the file cut back to the header
    path.write_text(json.dumps(header) + "\n" + '{"files": [{"i": 0\n')
    RobustnessJournal(path, header).close()
    assert path.read_text() == json.dumps(header) + "\n"


def test_a_run_that_cannot_report_keeps_its_journal_and_says_how_to_score_again(setup, tmp_path):
    data = tmp_path / "data"  # every spoof unreadable: only bona fide speech can be scored
    for label in ("bonafide", "spoof"):
        (data / label).mkdir(parents=True)
        for f in (setup["data"] / "bonafide").iterdir():
            (data / label / f.name).write_bytes(f.read_bytes() if label == "bonafide" else b"not audio")
    det = sddkit.load_detector(setup["model"])
    cfg = RobustnessConfig(conditions=["mulaw"], workers=0)
    journal = tmp_path / JOURNAL_NAME
    why = r"only bona fide utterances could be scored.*a rerun reads the files' results back from .*jsonl: delete it"
    for _ in range(2):  # the second run reads the failures back
        with pytest.raises(ProtocolError, match=why):
            run_robustness(det, read_protocol(data), cfg, progress=False, journal=journal)
    assert journal.is_file()
    with pytest.raises(ProtocolError, match="only bona fide") as without:
        run_robustness(det, read_protocol(data), cfg, progress=False)
    assert "rerun" not in str(without.value)  # no journal, nothing to delete
