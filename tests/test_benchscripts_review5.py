"""Review of the benchmark and helper scripts (benchmarks/*.py, scripts/finalize_default_model.py): threshold
placement, installing into --out, flags that crashed or measured nothing, --json outputs and the probe's cache."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from script_support import load_script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "src" / "sddkit" / "assets" / "default_model"


# --- scripts/finalize_default_model.py ----------------------------------------------------------------------------
def test_margin_threshold_keeps_the_decisions_when_the_scores_are_adjacent_floats():
    # the script places its threshold through sdd calibrate's rule "eer", i.e. this function
    from sddkit.scoring.calibrate import margin_threshold

    low = 1.0
    high = float(np.nextafter(low, 2.0))  # the EER operating point, one ulp above the next lower val score
    scores = np.array([0.5, low, high, 3.0])
    t = margin_threshold(scores, high)
    # their midpoint rounds to `low`, which would then be accepted: the threshold stays where it was
    assert list(scores >= t) == list(scores >= high)
    assert t == high
    # the ordinary case: halfway, same decisions
    assert margin_threshold(scores, 3.0) == 2.0
    assert margin_threshold(scores, 0.5) == 0.5  # nothing below


def _val_set(tmp_path: Path, model: Path) -> Path:
    """Six val files labelled by the model's own raw-score order (one pair swapped), so calibration succeeds."""
    import soundfile as sf

    from sddkit.scoring.api import load_detector

    rng = np.random.default_rng(0)
    (tmp_path / "audio").mkdir()
    waves = [(0.1 * rng.standard_normal(16000)).astype(np.float32) for _ in range(6)]
    raw = np.array([r.raw_score for r in load_detector(model).score_many(waves)])
    labels = np.empty(6, dtype=int)
    labels[np.argsort(raw)] = [0, 0, 1, 0, 1, 1]
    rows = ["path,label,partition,system,attack_type,source,speaker,duration_s"]
    for i, (x, y) in enumerate(zip(waves, labels)):
        sf.write(tmp_path / "audio" / f"f{i}.wav", x, 16000)
        rows.append(f"audio/f{i}.wav,{'bonafide' if y else 'spoof'},val,{'-' if y else 'A01'},tts,src,spk{i},1.0")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


@pytest.mark.parametrize("metadata", ["absent", "null"])
def test_finalize_installs_a_model_whose_config_has_no_metadata(tmp_path, metadata):
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, model)
    config = json.loads((model / "config.json").read_text())
    if metadata == "absent":
        del config["metadata"]  # optional in a model config
    else:
        config["metadata"] = None
    (model / "config.json").write_text(json.dumps(config))
    manifest = _val_set(tmp_path, model)
    out = tmp_path / "out"
    # it was KeyError: 'metadata' / TypeError: 'NoneType' object is not subscriptable, after all the scoring
    args = [str(model), "--out", str(out), "--manifest", str(manifest), "--threads", "1"]
    assert load_script("scripts/finalize_default_model.py").main(args) == 0
    written = json.loads((out / "config.json").read_text())
    assert written["metadata"]["val_calibrated"]["n_bonafide"] == 3


def test_finalize_replaces_the_installed_files_instead_of_rewriting_them_in_place(tmp_path):
    """A process that has the installed weights open (``sdd serve`` of the bundled model) must keep reading the old
    file whole; it was truncated and rewritten in place by shutil.copyfile."""
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, model)
    manifest = _val_set(tmp_path, model)
    out = tmp_path / "out"
    shutil.copytree(DEFAULT_MODEL, out)
    old_weights = b"the weights installed before"
    (out / "model.safetensors").write_bytes(old_weights)
    with open(out / "model.safetensors", "rb") as held:  # opened before: must still read the old bytes
        args = [str(model), "--out", str(out), "--manifest", str(manifest), "--threads", "1"]
        inode = (out / "model.safetensors").stat().st_ino
        assert load_script("scripts/finalize_default_model.py").main(args) == 0
        assert (out / "model.safetensors").stat().st_ino != inode
        assert held.read() == old_weights
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


# --- benchmarks/bench_score.py, bench_service.py ------------------------------------------------------------------
def _run_main(monkeypatch, module, argv: list[str]):
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    return module.main()


@pytest.mark.parametrize("flag", ["--files", "--repeats", "--seconds"])
def test_bench_score_refuses_a_count_of_zero(monkeypatch, capsys, flag):
    bench = load_script("benchmarks/bench_score.py")
    # --files 0 ended in ZeroDivisionError and --repeats 0 in "min() arg is an empty sequence", after the runs
    with pytest.raises(SystemExit) as info:
        _run_main(monkeypatch, bench, ["--demo-model", "lcnn", flag, "0", "--threads", "1"])
    assert info.value.code == 2
    assert f"{flag} must be positive, got 0" in capsys.readouterr().err


def test_bench_score_says_why_its_files_could_not_be_scored(monkeypatch, capsys):
    bench = load_script("benchmarks/bench_score.py")
    # 50 ms files, under the model's 100 ms minimum: sdd score exits 0 with error rows, and the timing loop then
    # ended in a bare AssertionError (and, under python -O, timed 0 scored files)
    argv = ["--demo-model", "lcnn", "--files", "2", "--seconds", "0.05", "--threads", "1", "--workers", "1"]
    assert _run_main(monkeypatch, bench, argv) == 1
    err = capsys.readouterr().err
    assert "sdd score could not score 2 of 2 files, e.g. " in err
    assert "50 ms of audio is too short to score" in err


@pytest.mark.parametrize("flag", ["--clients", "--requests"])
def test_bench_service_refuses_a_measurement_of_nothing(monkeypatch, capsys, flag):
    bench = load_script("benchmarks/bench_service.py")

    def no_server(*args, **kwargs):
        raise AssertionError("no server is started for an empty measurement")

    monkeypatch.setattr(bench.subprocess, "Popen", no_server)
    # --clients 0 reported 0 requests, no latency and exit status 0: a benchmark that measured nothing
    with pytest.raises(SystemExit) as info:
        _run_main(monkeypatch, bench, ["--demo-model", "lcnn", flag, "0"])
    assert info.value.code == 2
    assert f"{flag} must be positive, got 0" in capsys.readouterr().err


def test_bench_augment_names_the_feature_size_it_timed(monkeypatch, capsys):
    bench = load_script("benchmarks/bench_augment.py")
    monkeypatch.setattr(bench, "CASES", [("gain", {"name": "gain"})])
    monkeypatch.setattr(bench.os, "sched_setaffinity", lambda *args: None, raising=False)  # not this test process
    assert _run_main(monkeypatch, bench, ["--seconds", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| spec_augment (1 x 80 x 200 features) |" in out  # it read "1 x 80 x 400" whatever --seconds
    assert "| gain |" in out


# --- benchmarks/bench_training.py ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--methods", "erm,mldq"], "--methods: unknown 'mldq'; known: erm, mldg, molex"),
        (["--seeds", "1;2"], "--seeds must be comma-separated integers, got '1;2'"),
    ],
)
def test_bench_training_refuses_unknown_methods_before_launching(tmp_path, monkeypatch, argv, message):
    bench = load_script("benchmarks/bench_training.py")
    monkeypatch.chdir(tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("a run was launched")

    monkeypatch.setattr(bench.subprocess, "Popen", no_training)
    with pytest.raises(SystemExit) as info:  # was a KeyError / ValueError traceback, after launching erm
        _run_main(monkeypatch, bench, argv)
    assert str(info.value) == message
    assert not (tmp_path / "runs").exists()


# --- --json outputs -------------------------------------------------------------------------------------------------
def test_bench_default_model_checks_its_json_output_before_scoring(tmp_path, monkeypatch):
    import sddkit.scoring.api
    from sddkit.errors import ConfigError

    bench = load_script("benchmarks/bench_default_model.py")
    (tmp_path / "file").write_text("")

    def no_scoring(*args, **kwargs):
        raise AssertionError("the model is loaded before the --json output is known to be writable")

    monkeypatch.setattr(sddkit.scoring.api, "load_detector", no_scoring)
    with pytest.raises(ConfigError, match=r"--json .*file/bench\.json: cannot write it \(Not a directory\)"):
        bench.main(["--json", str(tmp_path / "file" / "bench.json"), "--manifest", str(tmp_path / "none.csv")])


@pytest.mark.parametrize(
    ("codec", "message"),
    [
        ("mp3:64k", r"--codec mp3:64k: the bit rate after ':' must be a number of kb/s"),  # was ValueError
        ("mpeg3:64", r"--codec mpeg3:64: unknown codec 'mpeg3'"),  # was refused after the clean scoring
        ("mp3:640", r"--codec mp3:640: codec 'mp3': bit rate 640\.0 kb/s outside"),
        (":64", r"--codec :64: name a codec"),  # was no codec variant at all, without a word
    ],
)
def test_bench_default_model_refuses_a_bad_codec_before_scoring(tmp_path, monkeypatch, codec, message):
    import sddkit.scoring.api
    from sddkit.errors import ConfigError

    bench = load_script("benchmarks/bench_default_model.py")

    def no_scoring(*args, **kwargs):
        raise AssertionError("the model is loaded before --codec is known to work")

    monkeypatch.setattr(sddkit.scoring.api, "load_detector", no_scoring)
    with pytest.raises(ConfigError, match=message):
        bench.main(["--codec", codec, "--manifest", str(tmp_path / "none.csv")])
    assert bench.parse_codec("none") == (None, None)
    assert bench.parse_codec("mp3:64") == ("mp3", 64.0)


def test_bench_default_model_refuses_a_cache_at_another_sample_rate(tmp_path):
    from sddkit.data.dataset import CachedWaveforms
    from sddkit.data.table import UtteranceTable
    from sddkit.errors import ConfigError

    table = UtteranceTable.from_records([{"utt_id": "u0", "path": str(tmp_path / "u0.wav"), "label": "bonafide"}])
    cache = CachedWaveforms(["u0"], np.zeros(8000, dtype=np.float32), np.array([0, 8000]), 8000)
    path = cache.save(tmp_path / "cache8k.npz")
    bench = load_script("benchmarks/bench_default_model.py")
    # it scored the 8 kHz samples as 16 kHz audio (each band an octave off), as finalize_default_model refuses to
    with pytest.raises(ConfigError, match=r"cache8k\.npz holds 8000 Hz audio; the benchmark scores 16000 Hz"):
        bench.load_waveforms(table, str(path))


def test_bench_default_model_names_the_file_it_cannot_score():
    from sddkit.errors import SddkitError
    from sddkit.scoring.api import load_detector

    bench = load_script("benchmarks/bench_default_model.py")
    detector = load_detector(DEFAULT_MODEL)
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(16000)).astype(np.float32) for _ in range(3)]
    waves[2] = waves[2][:800]  # 50 ms: under the model's minimum
    names = ["a.wav", "b.wav", "short.wav"]
    # it was "waveforms[0]: 50 ms of audio is too short", the index counted within a chunk of 64: no file named
    with pytest.raises(SddkitError, match=r"short\.wav: 50 ms of audio is too short"):
        bench.score_all(detector, waves, names, chunk=2)
    scores, _ = bench.score_all(detector, waves[:2], names[:2], chunk=1)
    assert scores.shape == (2,)


def test_bench_models_writes_its_json_into_a_new_folder(tmp_path, monkeypatch, capsys):
    bench = load_script("benchmarks/bench_models.py")
    out = tmp_path / "new" / "models.json"
    # it was FileNotFoundError at the end, once every model had been timed
    # one small model (an --only that matches none is refused now, before any JSON)
    argv = ["--only", "LCNN (LFCC)", "--batches", "1", "--seconds", "0.5", "--repeats", "1"]
    _run_main(monkeypatch, bench, [*argv, "--json", str(out), "--threads", "1"])
    assert list(json.loads(out.read_text())) == ["LCNN (LFCC)"]


# --- benchmarks/probe_whisper_features.py -------------------------------------------------------------------------
def test_whisper_probe_cache_is_refused_for_other_settings_and_kept_under_its_name(tmp_path):
    from test_benchmark_probes import _manifest

    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    encoder_dir = tmp_path / "whisper"
    build_encoder(EncoderConfig(), preset="whisper_tiny").model.save_pretrained(encoder_dir)
    manifest = _manifest(tmp_path)
    feats = tmp_path / "feats.cache"  # np.savez wrote feats.cache.npz, and the next run encoded everything again
    args = ["--out", str(tmp_path / "lr.csv"), "--manifest", str(manifest), "--encoder", str(encoder_dir)]
    args += ["--preset", "whisper_tiny", "--features", str(feats), "--cs", "1", "--threads", "1"]
    probe = load_script("benchmarks/probe_whisper_features.py")
    assert probe.main(args) == 0
    assert feats.is_file()
    # features of the first 8 s at -27 dBFS were reused for --max-seconds 0.25 without a word
    with pytest.raises(SystemExit, match=r"other settings \(--max-seconds 8\.0 there, 0\.25 now\)"):
        probe.main([*args, "--max-seconds", "0.25"])
    missing = [a if a != str(encoder_dir) else str(tmp_path / "missing") for a in args]
    assert probe.main(missing) == 0  # same settings: read back, no encoder needed


# --- benchmarks/cv_table.py ---------------------------------------------------------------------------------------
def _cv_run(folder: Path, eer: float) -> Path:
    folder.mkdir()
    cv = {"folds": [{"held_out": ["tortoise"], "eer": eer, "val_eer": 0.05}], "mean_eer": eer}
    (folder / "cv.json").write_text(json.dumps(cv))
    return folder


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["B30={b}"], "a run 'B30' given twice"),
        (["--reference", "R30=36", "--reference", "R30=40"], "--reference 'R30' given twice"),
        (["--reference", "R3O=36"], "--reference R3O: no such run; runs: R30, B30"),
        (["--reference", "R30=36%"], "--reference R30: the EER must be a number (percent), got '36%'"),
    ],
)
def test_cv_table_refuses_ambiguous_or_unmatched_names(tmp_path, extra, message):
    cv_table = load_script("benchmarks/cv_table.py")
    a, b = _cv_run(tmp_path / "a", 0.3), _cv_run(tmp_path / "b", 0.4)
    argv = [f"R30={a}", f"B30={b}", *[x.format(b=tmp_path / "b2") for x in extra]]
    with pytest.raises(SystemExit) as info:
        cv_table.main(argv)
    assert str(info.value) == message
