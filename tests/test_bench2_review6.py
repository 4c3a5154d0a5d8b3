"""Second review of the benchmark scripts (benchmarks/*.py): a feature cache reused for another encoder, counts
of zero that crashed after the work had started, and a seed counted twice in mean ± std."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from script_support import load_script


def _run_main(monkeypatch, module, argv: list[str]):
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    return module.main()


# --- benchmarks/probe_whisper_features.py -------------------------------------------------------------------------
def test_whisper_probe_cache_is_refused_for_another_encoder(tmp_path):
    from test_benchmark_probes import _manifest

    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    first, second = tmp_path / "whisper_a", tmp_path / "whisper_b"
    build_encoder(EncoderConfig(), preset="whisper_tiny").model.save_pretrained(first)
    build_encoder(EncoderConfig(), preset="whisper_tiny").model.save_pretrained(second)  # other random weights
    manifest = _manifest(tmp_path)
    feats = tmp_path / "feats.npz"
    args = ["--out", str(tmp_path / "lr.csv"), "--manifest", str(manifest), "--preset", "whisper_tiny"]
    args += ["--features", str(feats), "--cs", "1", "--threads", "1"]
    probe = load_script("benchmarks/probe_whisper_features.py")
    assert probe.main([*args, "--encoder", str(first)]) == 0
    # the features of the first encoder were read back as the second's: its figures were the first's
    with pytest.raises(SystemExit, match=r"other settings \(--encoder .*whisper_a there, .*whisper_b now\)"):
        probe.main([*args, "--encoder", str(second)])
    assert probe.main([*args, "--encoder", str(first)]) == 0  # the same encoder: read back
    assert probe.main([*args, "--encoder", str(tmp_path / "moved")]) == 0  # none at hand: read back, as before


# --- benchmarks/bench_models.py, benchmarks/bench_augment.py -------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--repeats", "0"], "--repeats must be positive, got 0"),
        (["--seconds", "0"], "--seconds must be positive, got 0.0"),
        (["--batches", "1", "0"], "--batches must be positive, got 1 0"),
    ],
)
def test_bench_models_refuses_a_count_of_zero(monkeypatch, capsys, argv, message):
    bench = load_script("benchmarks/bench_models.py")
    # --repeats 0 ended in "no median for empty data" once the first model had been built and warmed up
    with pytest.raises(SystemExit) as info:
        _run_main(monkeypatch, bench, ["--only", "LCNN (log-Mel)", "--threads", "1", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--repeats", "--seconds", "--cores", "--model-xrt"])
def test_bench_augment_refuses_a_count_of_zero(monkeypatch, capsys, flag):
    bench = load_script("benchmarks/bench_augment.py")
    monkeypatch.setattr(bench, "CASES", [("gain", {"name": "gain"})])
    monkeypatch.setattr(bench.os, "sched_setaffinity", lambda *args: None, raising=False)  # not this test process
    # --repeats 0: min() of nothing; --cores 0, --seconds 0, --model-xrt 0: divisions by zero, after timing
    with pytest.raises(SystemExit) as info:
        _run_main(monkeypatch, bench, [flag, "0"])
    assert info.value.code == 2
    assert f"{flag} must be positive, got 0" in capsys.readouterr().err


# --- benchmarks/mixture_summary.py --------------------------------------------------------------------------------
def test_mixture_summary_refuses_a_seed_given_in_two_folders(tmp_path, capsys):
    summary = load_script("benchmarks/mixture_summary.py")
    rows = [{"seed": 0, "model": "joint_lcnn_logmel", "eer_val": 0.1, "eer_test_unseen": 0.3}]
    for name in ("s0", "s0_copy", "s1"):
        (tmp_path / name).mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "s0" / "eer_per_seed.csv", index=False)
    pd.DataFrame(rows).to_csv(tmp_path / "s0_copy" / "eer_per_seed.csv", index=False)
    pd.DataFrame([{**rows[0], "seed": 1, "eer_test_unseen": 0.5}]).to_csv(
        tmp_path / "s1" / "eer_per_seed.csv", index=False
    )
    # the same run twice was two seeds: mean 30.0 ± 0.0 over "2 seeds"
    with pytest.raises(SystemExit, match=r"seed 0 of joint_lcnn_logmel is in more than one folder \(.*s0, .*s0_copy\)"):
        summary.main([str(tmp_path / "s0"), str(tmp_path / "s0_copy")])
    summary.main([str(tmp_path / "s0"), str(tmp_path / "s1")])  # distinct seeds: tabulated
    out = capsys.readouterr().out
    assert "| joint_lcnn_logmel | 10.0 ± 0.0 | 40.0 ± 14.1 | 30.0 / 50.0 |" in out
