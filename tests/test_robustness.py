from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import sddkit
from sddkit.audio.io import load_audio
from sddkit.augment.conditions import apply_condition, condition_names
from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.data.protocols import read_protocol
from sddkit.data.table import UtteranceTable
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.model_dir import save_model_dir
from sddkit.errors import ConfigError, ProtocolError
from sddkit.evaluation.robustness import (
    ROW_COLUMNS,
    RobustnessConfig,
    condition_row,
    condition_seed,
    resolve_conditions,
    run_robustness,
    select_utterances,
    summarize,
)
from sddkit.metrics import eer, min_dcf, threshold_metrics
from sddkit.scoring.inference import read_inference, write_inference

SR = 16000
N_PER_CLASS = 4
# cheap conditions, one of each mechanism: seeded noise, a codec round trip, a deterministic level change
CONDITIONS = "noise_white_10db,mulaw,clip_-6db"
COND_LIST = ["clean", "noise_white_10db", "mulaw", "clip_-6db"]


def _speech_like(rng: np.random.Generator, n: int, bona: bool) -> np.ndarray:
    t = np.arange(n) / SR
    f0 = 100 + 80 * rng.random()
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    noise = rng.standard_normal(n)
    x = 0.08 * tone + 0.01 * noise if bona else 0.03 * tone + 0.06 * noise
    return (x * (0.5 + rng.random())).astype(np.float32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny logmel + LCNN model dir whose stored threshold splits its clean scores, and a labelled folder."""
    root = tmp_path_factory.mktemp("robust")
    rng = np.random.default_rng(0)
    data = root / "data"
    for label in ("bonafide", "spoof"):
        (data / label).mkdir(parents=True)
        for i in range(N_PER_CLASS):
            sf.write(data / label / f"u{i}.wav", _speech_like(rng, 3000 + 400 * i, label == "bonafide"), SR)
    cfg = from_dict(
        DetectorConfig,
        {"frontend": "logmel", "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 0, "dropout": 0.0}},
    )
    torch.manual_seed(0)
    model = save_model_dir(
        root / "model", build_detector(cfg).eval(), model_config=to_dict(cfg), inference={"window_samples": 4000}
    )
    det = sddkit.load_detector(model)
    clean = [det.score_file(p).score for p in sorted(data.rglob("*.wav"))]
    inference = read_inference(model)
    inference.threshold = float(np.median(clean))  # so TPR/TNR at the threshold are not trivially 0 or 1
    write_inference(model, inference)
    return {"root": root, "data": data, "model": model}


@pytest.fixture(scope="module")
def cli_out(setup):
    out = setup["root"] / "out"
    rc = main(
        [
            "robustness",
            "--model",
            str(setup["model"]),
            "--protocol",
            str(setup["data"]),
            "--out",
            str(out),
            "--conditions",
            CONDITIONS,
            "--seed",
            "3",
            "--quiet",
        ]
    )
    assert rc == 0
    return out


def test_every_output_file(cli_out):
    names = ["robustness.csv", "robustness.json", "robustness.md", "robustness.png"]
    names += ["scores_all.csv", "scores_spoof_only.csv"]
    for name in names:
        assert (cli_out / name).is_file() and (cli_out / name).stat().st_size > 0, name
    assert (cli_out / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = pd.read_csv(cli_out / "robustness.csv", keep_default_na=False)
    assert list(table.columns) == list(ROW_COLUMNS)
    # one row per (condition, mode), clean first
    assert list(zip(table["condition"], table["mode"])) == [(c, m) for c in COND_LIST for m in ("all", "spoof_only")]
    assert (table["n"] == 2 * N_PER_CLASS).all() and (table["n_failed"] == 0).all()

    report = json.loads((cli_out / "robustness.json").read_text())
    assert report["schema"] == "sddkit.robustness/1" and report["conditions"] == COND_LIST
    assert report["n_utterances"] == 2 * N_PER_CLASS and report["n_failed_files"] == 0 and report["seed"] == 3
    assert report["limit"] is None and report["max_duration"] == 600.0  # a run on a subset would say so here
    assert len(report["rows"]) == len(table)
    for row, (_, csv_row) in zip(report["rows"], table.iterrows()):
        assert row["condition"] == csv_row["condition"] and row["eer"] == pytest.approx(csv_row["eer"])
        assert row["min_dcf"] == pytest.approx(csv_row["min_dcf"])

    md = (cli_out / "robustness.md").read_text()
    assert "| condition | mode | n | EER % |" in md and "robustness.png" in md
    for cond in COND_LIST:
        assert f"| {cond} | all |" in md and f"| {cond} | spoof_only |" in md

    for mode in ("all", "spoof_only"):
        scores = pd.read_csv(cli_out / f"scores_{mode}.csv")
        assert list(scores.columns) == ["utt_id", "label", "condition", "score"]
        assert len(scores) == len(COND_LIST) * 2 * N_PER_CLASS
        assert np.isfinite(scores["score"]).all()


def test_clean_row_equals_direct_evaluation(setup, cli_out):
    det = sddkit.load_detector(setup["model"])
    table = read_protocol(setup["data"])
    direct = np.array([det.score_file(p).score for p in table.column("path")])
    y = table.labels
    stored = pd.read_csv(cli_out / "scores_all.csv")
    clean = stored[stored["condition"] == "clean"].set_index("utt_id").loc[table.column("utt_id"), "score"]
    np.testing.assert_allclose(clean.to_numpy(), direct, rtol=1e-5, atol=1e-6)

    rows = pd.read_csv(cli_out / "robustness.csv", keep_default_na=False)
    at = threshold_metrics(y, direct, det.threshold)
    assert 0 < at.tpr < 1 or 0 < at.tnr < 1  # the stored threshold is inside the score range
    for mode in ("all", "spoof_only"):
        row = rows[(rows["condition"] == "clean") & (rows["mode"] == mode)].iloc[0]
        assert row["eer"] == pytest.approx(100 * eer(y, direct).eer)
        assert row["min_dcf"] == pytest.approx(min_dcf(y, direct).dcf)
        assert row["balanced_accuracy"] == pytest.approx(at.balanced_accuracy)
        assert row["tpr"] == pytest.approx(at.tpr) and row["tnr"] == pytest.approx(at.tnr)
        assert row["eer_delta"] == pytest.approx(0.0)


def test_spoof_only_keeps_bonafide_clean_and_degrades_spoofs(setup, cli_out):
    all_mode = pd.read_csv(cli_out / "scores_all.csv").set_index(["condition", "utt_id"])["score"]
    spoof_only = pd.read_csv(cli_out / "scores_spoof_only.csv").set_index(["condition", "utt_id"])["score"]
    table = read_protocol(setup["data"])
    bona = table.column("utt_id")[table.labels == 1]
    spoof = table.column("utt_id")[table.labels == 0]
    for cond in COND_LIST:
        # bona fide: exactly the clean score in spoof_only
        assert spoof_only.loc[cond].loc[bona].tolist() == all_mode.loc["clean"].loc[bona].tolist()
        # spoofs: the same degraded audio in both modes
        assert spoof_only.loc[cond].loc[spoof].tolist() == all_mode.loc[cond].loc[spoof].tolist()
    # in `all` the bona fide speech really is degraded
    noisy = all_mode.loc["noise_white_10db"].loc[bona].to_numpy()
    assert not np.allclose(noisy, all_mode.loc["clean"].loc[bona].to_numpy(), atol=1e-6)

    # each degraded score is the score of apply_condition(cond, x, seed=condition_seed(seed, cond, utt_id))
    det = sddkit.load_detector(setup["model"])
    for utt_id, path in zip(table.column("utt_id")[:: N_PER_CLASS + 1], table.column("path")[:: N_PER_CLASS + 1]):
        x = load_audio(path, sample_rate=SR)
        for cond in ("noise_white_10db", "mulaw"):
            y = apply_condition(cond, x, SR, seed=condition_seed(3, cond, utt_id))
            assert all_mode.loc[(cond, utt_id)] == pytest.approx(det.score(y, SR).score, rel=1e-5, abs=1e-6)


def test_deterministic_under_a_seed(setup, cli_out, tmp_path):
    def run(out, seed, workers):
        args = ["robustness", "--model", str(setup["model"]), "--protocol", str(setup["data"]), "--out", str(out)]
        args += ["--conditions", CONDITIONS, "--seed", str(seed), "--workers", str(workers), "--quiet"]
        assert main(args) == 0

    run(tmp_path / "again", 3, 0)  # same seed, no worker threads: identical output
    for name in ("robustness.csv", "scores_all.csv", "scores_spoof_only.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (cli_out / name).read_bytes(), name
    assert (
        json.loads((tmp_path / "again" / "robustness.json").read_text())["rows"]
        == json.loads((cli_out / "robustness.json").read_text())["rows"]
    )
    run(tmp_path / "other", 4, 2)  # another seed: another noise realisation, same deterministic conditions
    a = pd.read_csv(cli_out / "scores_all.csv").set_index(["condition", "utt_id"])["score"]
    b = pd.read_csv(tmp_path / "other" / "scores_all.csv").set_index(["condition", "utt_id"])["score"]
    assert not np.allclose(a.loc["noise_white_10db"], b.loc["noise_white_10db"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(a.loc["clean"], b.loc["clean"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.loc["clip_-6db"], b.loc["clip_-6db"], rtol=1e-6, atol=1e-7)


def test_unknown_condition_is_a_config_error(setup, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"unknown condition 'mp3_1k'.*valid conditions: all, clean, mp3_128k"):
        resolve_conditions("noise_white_10db,mp3_1k")
    with pytest.raises(ConfigError, match="unknown condition"):
        from_dict(RobustnessConfig, {"conditions": ["nope"]})
    args = ["robustness", "--model", str(setup["model"]), "--protocol", str(setup["data"]), "--out", str(tmp_path)]
    assert main([*args, "--conditions", "mp3_64k,bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown condition 'bogus'" in err and "noise_white_10db" in err
    assert not (tmp_path / "robustness.csv").exists()


def test_bad_numeric_options_and_device_are_refused_before_the_protocol_is_read(tmp_path, capsys):
    # --protocol points nowhere: each option error must come first, as one clean line
    args = ["robustness", "--protocol", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]
    for option, value, message in (
        ("--threads", "0", "--threads must be >= 1, got 0"),  # was silently turned into 1
        ("--workers", "-1", "--workers must be >= 0"),
        ("--batch-size", "0", "--batch-size must be >= 1"),
        ("--max-duration-s", "-1", "--max-duration-s must be >= 0"),
        ("--device", "foo", "unknown device 'foo'"),
    ):
        assert main([*args, option, value]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_resolve_conditions_all_dedup_and_clean_first():
    assert resolve_conditions("all") == condition_names()
    assert resolve_conditions(["mulaw", "clean", "mulaw", " alaw "]) == ["clean", "mulaw", "alaw"]
    with pytest.raises(ConfigError, match="no conditions"):
        resolve_conditions(" , ")


def test_unreadable_files_are_counted_not_fatal(setup, tmp_path):
    data = tmp_path / "data"
    for label in ("bonafide", "spoof"):
        (data / label).mkdir(parents=True)
        for src in sorted((setup["data"] / label).glob("*.wav"))[:2]:
            (data / label / src.name).write_bytes(src.read_bytes())
    (data / "spoof" / "broken.wav").write_bytes(b"RIFF not really a wav file at all")
    det = sddkit.load_detector(setup["model"])
    cfg = RobustnessConfig(conditions=["mulaw"], workers=1)
    result = run_robustness(det, read_protocol(data), cfg, progress=False)
    assert len(result.failures) == 1 and "broken" in result.failures[0]
    assert [r["n"] for r in result.rows] == [4, 4, 4, 4] and all(r["n_failed"] == 0 for r in result.rows)
    assert result.to_dict()["n_failed_files"] == 1 and result.to_dict()["n_decoded"] == 4

    bad = tmp_path / "bad"
    for label in ("bonafide", "spoof"):
        (bad / label).mkdir(parents=True)
        (bad / label / "x.wav").write_bytes(b"garbage")
    with pytest.raises(ProtocolError, match="none of the 2 files could be decoded"):
        run_robustness(det, read_protocol(bad), cfg, progress=False)


def test_spoof_only_mode_never_degrades_bonafide(setup):
    det = sddkit.load_detector(setup["model"])
    table = read_protocol(setup["data"])
    cfg = RobustnessConfig(conditions=["noise_white_5db"], mode="spoof_only", workers=0, limit=4)
    result = run_robustness(det, table, cfg, progress=False)
    assert [(r["condition"], r["mode"]) for r in result.rows] == [
        ("clean", "spoof_only"),
        ("noise_white_5db", "spoof_only"),
    ]
    bona = result.labels == 1
    assert bona.sum() == 2 and (~bona).sum() == 2  # the limit keeps both classes
    assert np.isnan(result.scores["noise_white_5db"][bona]).all()  # never computed
    assert np.isfinite(result.scores["noise_white_5db"][~bona]).all()


def test_condition_row_by_hand():
    labels = np.array([1, 1, 0, 0, 1])
    scores = np.array([2.0, 0.5, 1.0, -1.0, np.nan])  # the NaN trial (failed) is left out
    row = condition_row(labels, scores, threshold=0.75)
    # accept iff score >= 0.75: bona fide 2.0 yes, 0.5 no; spoof 1.0 accepted, -1.0 rejected
    assert row["n"] == 4 and row["n_bonafide"] == 2 and row["n_spoof"] == 2
    assert row["tpr"] == 0.5 and row["tnr"] == 0.5 and row["balanced_accuracy"] == 0.5
    # best operating points: threshold 1.0 (miss 1/2, fa 1/2) -> EER 50 %
    assert row["eer"] == pytest.approx(50.0)
    one_class = condition_row(np.array([0, 0]), np.array([0.1, 0.2]), threshold=0.0)
    assert one_class["eer"] is None and "both" in one_class["note"]


def test_select_utterances_is_stratified_and_seeded():
    table = UtteranceTable.from_records(
        [{"utt_id": f"u{i}", "label": "bonafide" if i < 10 else "spoof"} for i in range(40)]
    )
    a = select_utterances(table, 8, seed=1)
    assert len(a) == 8 and a.labels.sum() == 2  # 10/40 of 8 bona fide
    assert list(a.column("utt_id")) == list(select_utterances(table, 8, seed=1).column("utt_id"))
    assert list(a.column("utt_id")) != list(select_utterances(table, 8, seed=2).column("utt_id"))
    ids = [int(u[1:]) for u in a.column("utt_id")]
    assert ids == sorted(ids)  # protocol order is kept
    assert select_utterances(table, 2, seed=0).labels.tolist().count(1) == 1  # never one class only
    assert len(select_utterances(table, None)) == 40


def test_negative_seed_is_refused_up_front(tmp_path, capsys):
    # A negative seed used to be accepted and then crash with a bare ValueError from
    # np.random.default_rng in select_utterances (--limit), after the model was loaded.
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        from_dict(RobustnessConfig, {"seed": -1, "limit": 4})
    args = ["robustness", "--protocol", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]
    assert main([*args, "--seed", "-1", "--limit", "4"]) == 2
    assert "seed must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_non_finite_model_score_is_a_condition_error_not_a_score(setup, monkeypatch):
    import dataclasses

    det = sddkit.load_detector(setup["model"])
    real = det.score_prepared

    def first_one_nan(items):
        results = real(items)
        return [dataclasses.replace(results[0], score=float("nan")), *results[1:]]

    monkeypatch.setattr(det, "score_prepared", first_one_nan)
    cfg = RobustnessConfig(conditions=["mulaw"], workers=0, mode="all")
    result = run_robustness(det, read_protocol(setup["data"]), cfg, progress=False)
    errors = [e for errs in result.condition_errors.values() for e in errs]
    assert errors and all("non-finite score" in e for e in errors)
    # each is counted once, as a failed trial of its row (a clean one in the clean row), now with a reason
    assert sum(r["n_failed"] for r in summarize(result) if r["mode"] == "all") == len(errors)
