"""The benchmark and helper scripts fail with one clear line on a missing or malformed input.

``bench_score_fusion.py`` read a missing score file as an empty one (and then blamed calibration),
``mixture_summary.py`` crashed on folders without per-file scores instead of printing the EER table it
prints for them, ``cv_table.py`` showed a traceback for a folder without ``cv.json``, and the scripts
that read a model or a manifest ended in a traceback rather than one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from script_support import REPO, load_script

SDDBENCH_HEADER = "path,label,partition,system,attack_type,source,speaker,duration_s"


def _manifest(folder: Path) -> Path:
    """A tiny sddbench manifest: two val and two test_unseen files (audio is never read)."""
    rows = [
        "a.flac,bonafide,val,-,-,s1,p1,1.0",
        "b.flac,spoof,val,tts1,tts,s1,p1,1.0",
        "c.flac,bonafide,test_unseen,-,-,s2,p2,1.0",
        "d.flac,spoof,test_unseen,tts2,tts,s2,p2,1.0",
    ]
    path = folder / "manifest.csv"
    path.write_text(SDDBENCH_HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def _scores(path: Path, manifest: Path) -> Path:
    """`sdd score` CSV output for the manifest's files."""
    lines = ["path,score,probability,decision,duration_s,n_windows,raw_score,error"]
    for i, name in enumerate("abcd"):
        audio = manifest.parent / f"{name}.flac"
        lines.append(f"{audio},{i},0.5,bonafide,1,1,{0.3 * i - (name in 'bd')},")
    path.write_text("\n".join(lines) + "\n")
    return path


def _run_main(monkeypatch, module, argv: list[str]):
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    return module.main()


def test_score_fusion_names_a_missing_score_file(tmp_path, monkeypatch):
    fusion = load_script("benchmarks/bench_score_fusion.py")
    manifest = _manifest(tmp_path)
    present = _scores(tmp_path / "a.csv", manifest)
    missing = tmp_path / "typo.csv"
    with pytest.raises(SystemExit) as info:
        _run_main(monkeypatch, fusion, [f"a={present}", f"b={missing}", "--manifest", str(manifest)])
    assert str(info.value) == f"{missing}: no such score file"


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (["a={scores}"], "fusion needs two or more models, got 1"),
        (["a={scores}", "{scores}"], "a model must be NAME=scores.csv, got '{scores}'"),
        (["a={scores}", "a={scores}"], "model name 'a' given twice"),
    ],
)
def test_score_fusion_refuses_malformed_model_arguments(tmp_path, monkeypatch, models, message):
    fusion = load_script("benchmarks/bench_score_fusion.py")
    manifest = _manifest(tmp_path)
    scores = _scores(tmp_path / "a.csv", manifest)
    argv = [m.format(scores=scores) for m in models] + ["--manifest", str(manifest)]
    with pytest.raises(SystemExit) as info:
        _run_main(monkeypatch, fusion, argv)
    assert str(info.value) == message.format(scores=scores)


def test_score_fusion_refuses_a_file_without_raw_scores(tmp_path, monkeypatch):
    fusion = load_script("benchmarks/bench_score_fusion.py")
    manifest = _manifest(tmp_path)
    scores = _scores(tmp_path / "a.csv", manifest)
    other = tmp_path / "b.csv"
    other.write_text("path,score\n" + f"{tmp_path / 'a.flac'},1.0\n")
    with pytest.raises(SystemExit) as info:
        _run_main(monkeypatch, fusion, [f"a={scores}", f"b={other}", "--manifest", str(manifest)])
    assert str(info.value) == f"{other}: not `sdd score` output: no column raw_score"


def test_score_fusion_still_fuses_two_score_files(tmp_path, monkeypatch, capsys):
    fusion = load_script("benchmarks/bench_score_fusion.py")
    manifest = _manifest(tmp_path)
    a = _scores(tmp_path / "a.csv", manifest)
    b = _scores(tmp_path / "b.csv", manifest)
    _run_main(monkeypatch, fusion, [f"a={a}", f"b={b}", "--manifest", str(manifest)])
    out = capsys.readouterr().out
    assert "| sum of LLRs |" in out and "test_unseen EER % (1 / 1)" in out


def test_score_fusion_reads_relative_paths_from_the_folder_sdd_score_ran_in(tmp_path, monkeypatch, capsys):
    """`sdd score` writes paths relative to its first run's folder (``cwd`` in ``.run.json``)."""
    fusion = load_script("benchmarks/bench_score_fusion.py")
    manifest = _manifest(tmp_path)
    outputs = []
    for name in ("a", "b"):
        out = _scores(tmp_path / f"{name}.csv", manifest)
        out.write_text(out.read_text().replace(f"{tmp_path}/", ""))  # relative to tmp_path, as `sdd score` wrote
        Path(f"{out}.run.json").write_text(json.dumps({"cwd": str(tmp_path)}))
        outputs.append(out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _run_main(monkeypatch, fusion, [f"a={outputs[0]}", f"b={outputs[1]}", "--manifest", str(manifest)])
    assert "test_unseen EER % (1 / 1)" in capsys.readouterr().out


def test_mixture_summary_without_per_file_scores_prints_the_eer_table(tmp_path, monkeypatch, capsys):
    summary = load_script("benchmarks/mixture_summary.py")
    run = tmp_path / "run_s0"
    run.mkdir()
    (run / "eer_per_seed.csv").write_text(
        "seed,model,eer_val,eer_test_unseen\n0,joint_lcnn_logmel,0.1,0.4\n0,mele_average_ensemble,0.12,0.35\n"
    )
    _run_main(monkeypatch, summary, [str(run)])
    out = capsys.readouterr().out
    assert "| joint_lcnn_logmel | 10.0 ± nan | 40.0 ± nan | 40.0 |" in out
    assert "(no scores_per_file.csv: no paired comparison)" in out


@pytest.mark.parametrize("make", [False, True])
def test_cv_table_names_a_folder_without_cv_json(tmp_path, monkeypatch, make):
    cv_table = load_script("benchmarks/cv_table.py")
    folder = tmp_path / "cv_R30"
    if make:
        folder.mkdir()
    with pytest.raises(SystemExit) as info:
        cv_table.main([f"R30={folder}"])
    assert str(info.value).startswith(f"{folder}: {'no cv.json there' if make else 'no such folder'}")


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("scripts/make_copysynth.py", ["{tmp}/none.csv", "--out", "{tmp}/cs"], "no such sddbench manifest file"),
        ("benchmarks/bench_default_model.py", ["{tmp}/no_model", "--no-stress"], "no such model directory"),
    ],
)
def test_scripts_report_a_missing_input_in_one_line(tmp_path, script, argv, message):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = [a.format(tmp=tmp_path) for a in argv]
    done = subprocess.run(
        [sys.executable, str(REPO / script), *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"{Path(script).stem}: {tmp_path}/{args[0].rsplit('/', 1)[1]}: {message}"
    ]


def test_bench_training_runs_sdd_train_into_the_out_dir_it_reads(tmp_path, monkeypatch):
    """`sdd train` runs in the repository root: a relative --out-dir must reach it as the folder the script reads
    back (it trained into ROOT/runs/... while the script looked for metrics.jsonl under the current folder)."""
    bench = load_script("benchmarks/bench_training.py")
    monkeypatch.chdir(tmp_path)
    launched = {}

    class FakePopen:
        def __init__(self, cmd, *, cwd, env, stdout, stderr):
            launched.update(cmd=cmd, cwd=cwd)
            stdout.close()

    monkeypatch.setattr(bench.subprocess, "Popen", FakePopen)
    args = bench.argparse.Namespace(
        out_dir="runs/bench_training", crop_s=2.0, eval_crop_s=4.0, batch_size=8, val_batch_size=16, warmup=10,
        steps=4, val_every=2, set=[], threads=1,
    )  # fmt: skip
    bench.launch(args, "erm", 1)
    assert launched["cwd"] == bench.ROOT
    assert launched["cmd"][:4] == [sys.executable, "-m", "sddkit.cli.main", "train"]  # not ROOT/.venv/bin/sdd
    assert f"trainer.out_dir={tmp_path / 'runs' / 'bench_training' / 'erm_seed1'}" in launched["cmd"]
