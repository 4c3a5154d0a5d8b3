"""Review bench24: the benchmark and maintenance scripts against their documents and their inputs.

Pinned here:
- every command for a script of ``benchmarks/`` or ``scripts/`` that docs/benchmarks.md, the model card and README.md
  give still parses with the script's own parser, each option spelled in full (docs/benchmarks.md gave
  ``bench_service.py ... --allocator A``, which the script refuses: the choices are ``tuned`` and ``system``);
- ``--threads 0`` is a usage error before any work (bench_default_model.py, finalize_default_model.py,
  bench_mixtures.py and probe_whisper_features.py ended in torch's RuntimeError traceback, bench_training.py
  trained every run on all cores and recorded 0 threads); bench_default_model.py's ``--bootstrap 0`` failed only once
  the first partition had been scored;
- probe_whisper_features.py checks ``--out`` and ``--features`` before minutes of encoding (a folder as ``--out`` was
  a traceback at the very end) and refuses a C of 0 in ``--cs`` (sklearn's error after the encoding);
- bench_service.py ends with one line when ``sdd serve`` does not start (a ``--model`` that is no model directory
  was a RuntimeError traceback), and checks ``--max-concurrent``;
- bench_fast_path.py names a ``--model`` that is no model directory in one line, not a traceback.
Parsers and error paths only: nothing is trained or scored, and ../shared is never read.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from script_support import REPO, load_script

DOCUMENTS = {
    "docs/benchmarks.md": REPO / "docs" / "benchmarks.md",
    "MODEL_CARD.md": REPO / "src" / "sddkit" / "assets" / "default_model" / "MODEL_CARD.md",
    "README.md": REPO / "README.md",
}
SCRIPT = re.compile(r"(?:benchmarks|scripts)/[a-z_0-9]+\.py")
# the documents' placeholders for a seed, given where the script wants an integer (`--first-seed $s`, `S`)
PLACEHOLDERS = {"$s": "1", "S": "1"}


def _code_lines(text: str) -> list[str]:
    """A markdown text's commands: the lines of its code blocks (continued lines joined) and its inline code spans
    that run a Python script (``python benchmarks/x.py ...``); a bare ``benchmarks/x.py`` span names a file."""
    out, in_block, pending = [], False, ""
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if in_block:
            pending = f"{pending} {line.strip()}" if pending else line
            if pending.rstrip().endswith("\\"):
                pending = pending.rstrip()[:-1]
                continue
            out.append(pending)
            pending = ""
        else:
            out += [
                span for span in re.findall(r"`([^`]+)`", line) if re.search(r"python\S*\s+" + SCRIPT.pattern, span)
            ]
    return out


def script_commands(text: str) -> list[tuple[str, list[str]]]:
    """(script path, argv) of every call of a repository script in ``text``, placeholders filled in."""
    calls = []
    for line in _code_lines(text):
        for piece in re.split(r";|&&|\bdo\b", line):  # one call per shell command of a line
            found = SCRIPT.search(piece)
            if not found:
                continue
            words = shlex.split(piece, comments=True)
            at = next((i for i, w in enumerate(words) if w.endswith(found.group(0))), None)
            if at is None or at == 0 or "python" not in words[at - 1]:
                continue  # the path as an argument of another command (`git add`, `ls`), not a call of it
            calls.append((found.group(0), [PLACEHOLDERS.get(w, w) for w in words[at + 1 :]]))
    return calls


class _Parsed(Exception):
    """Raised in place of running the script once its parser has read the arguments."""


def parse_problem(path: str, argv: list[str], monkeypatch) -> str | None:
    """None when ``path``'s own parser takes ``argv`` with every option spelled in full; else argparse's message."""
    saved_env = dict(os.environ)
    try:
        module = load_script(path)  # some pin thread variables at import (bench_augment.py)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    original = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        self.allow_abbrev = False  # argparse takes `--boot` for `--bootstrap`; a document must not rely on it
        original(self, args, namespace)
        raise _Parsed

    def error(self, message):
        raise _Failed(message)

    class _Failed(Exception):
        pass

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    monkeypatch.setattr(argparse.ArgumentParser, "error", error)
    monkeypatch.setattr(sys, "argv", [path, *argv])
    try:
        module.main(argv) if inspect.signature(module.main).parameters else module.main()
    except _Parsed:
        return None
    except _Failed as exc:
        return str(exc)
    finally:
        monkeypatch.undo()
    return "the script ran past its parser (a test of this module would have run it)"


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_documented_script_command_parses_with_todays_flags(name, monkeypatch):
    calls = script_commands(DOCUMENTS[name].read_text())
    assert calls, f"{name}: no script command found (the reader broke)"
    problems = []
    for path, argv in calls:
        assert (REPO / path).is_file(), f"{name} runs {path}, which does not exist"
        problem = parse_problem(path, argv, monkeypatch)
        if problem:
            problems.append(f"python {path} {shlex.join(argv)}: {problem}")
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_the_command_reader_finds_the_documents_commands_and_their_errors(monkeypatch):
    calls = script_commands(DOCUMENTS["docs/benchmarks.md"].read_text())
    scripts = {path for path, _ in calls}
    assert {
        "benchmarks/bench_default_model.py",
        "benchmarks/bench_service.py",
        "benchmarks/bench_mixtures.py",
    } <= scripts
    assert {
        "scripts/finalize_default_model.py",
        "benchmarks/mixture_summary.py",
        "benchmarks/bench_training.py",
    } <= scripts
    # a continued line is read whole: bench_training.py's command ends with --json on its third line
    training = [argv for path, argv in calls if path == "benchmarks/bench_training.py"]
    assert training and all("--json" in argv for argv in training)
    # the command docs/benchmarks.md gave before this review, and an option shortened
    old = "python benchmarks/bench_service.py --model M --clients 8 --requests 400 --allocator A"
    [(path, argv)] = script_commands(f"`{old}`")
    assert "invalid choice: 'A'" in parse_problem(path, argv, monkeypatch)
    [(path, argv)] = script_commands("```\npython benchmarks/bench_default_model.py M --boot 200\n```")
    assert "--boot" in parse_problem(path, argv, monkeypatch)
    # a bare path names the file; the path as another program's argument is not a call of it
    assert script_commands("see `benchmarks/bench_score.py`") == []
    assert script_commands("```\ngit add benchmarks/bench_score.py\n```") == []


# --- thread counts and other counts refused before any work -----------------------------------------------------


def _usage_error(capsys, run) -> str:
    with pytest.raises(SystemExit) as exc:
        run()
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value"), [("--threads", "0"), ("--threads", "-1"), ("--bootstrap", "0")], ids=["threads0", "neg", "boot"]
)
def test_bench_default_model_refuses_a_count_below_one_before_scoring(capsys, flag, value):
    bench = load_script("benchmarks/bench_default_model.py")
    err = _usage_error(capsys, lambda: bench.main(["/no/such/model", "--manifest", "/no/such.csv", flag, value]))
    assert f"{flag} must be positive, got {value}" in err


def test_finalize_refuses_threads_zero_before_reading_anything(capsys):
    finalize = load_script("scripts/finalize_default_model.py")
    err = _usage_error(
        capsys, lambda: finalize.main(["/no/such/model", "--manifest", "/no/such.csv", "--threads", "0"])
    )
    assert "--threads must be positive, got 0" in err


@pytest.mark.parametrize("path", ["benchmarks/bench_training.py", "benchmarks/bench_mixtures.py"])
def test_training_benchmarks_refuse_threads_zero(path, tmp_path, capsys, monkeypatch):
    bench = load_script(path)
    out = ["--out-dir", str(tmp_path / "o")] if "training" in path else ["--out", str(tmp_path / "o")]
    monkeypatch.setattr(sys, "argv", [path, "--threads", "0", *out])
    err = _usage_error(capsys, bench.main)
    assert "--threads must be positive, got 0" in err
    assert not (tmp_path / "o").exists()


def test_whisper_probe_refuses_bad_counts_and_an_unwritable_out_before_encoding(tmp_path, capsys):
    from sddkit.errors import ConfigError

    probe = load_script("benchmarks/probe_whisper_features.py")
    missing = ["--manifest", str(tmp_path / "no_manifest.csv"), "--encoder", str(tmp_path / "no_encoder")]
    err = _usage_error(capsys, lambda: probe.main(["--out", str(tmp_path / "s.csv"), *missing, "--threads", "0"]))
    assert "--threads must be positive, got 0" in err
    err = _usage_error(capsys, lambda: probe.main(["--out", str(tmp_path / "s.csv"), *missing, "--cs", "1", "0"]))
    assert "--cs must be positive, got 1 0" in err
    # a folder as --out: refused now, not after encoding every file (the manifest is not even read)
    with pytest.raises(ConfigError, match="--out .*cannot write it"):
        probe.main(["--out", str(tmp_path), *missing])
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="--features .*cannot write it"):
        probe.main(["--out", str(tmp_path / "s.csv"), "--features", str(tmp_path / "file" / "f.npz"), *missing])


# --- one line, not a traceback -----------------------------------------------------------------------------------


def test_bench_service_says_in_one_line_that_the_server_did_not_start(tmp_path, capsys, monkeypatch):
    from sddkit.errors import SddkitError

    bench = load_script("benchmarks/bench_service.py")
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    exited.wait()
    with pytest.raises(SddkitError, match="sdd serve exited with code 2 before it answered"):
        bench.wait_ready("http://127.0.0.1:9", exited, timeout=5)
    monkeypatch.setattr(sys, "argv", ["bench_service.py", "--model", str(tmp_path), "--max-concurrent", "0"])
    assert "--max-concurrent must be positive, got 0" in _usage_error(capsys, bench.main)


@pytest.mark.parametrize("path", ["benchmarks/bench_fast_path.py", "benchmarks/bench_service.py"])
def test_a_folder_that_is_no_model_is_named_in_one_line(path, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    argv = [sys.executable, str(REPO / path), "--model", str(tmp_path)]
    if "service" in path:
        argv += ["--requests", "1", "--warmup", "0"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "missing config.json" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"{Path(path).stem}: ")


def test_bench_match_scores_names_an_unknown_case_and_shows_a_failed_cases_error(capsys, monkeypatch):
    bench = load_script("benchmarks/bench_match_scores.py")
    monkeypatch.setattr(sys, "argv", ["bench_match_scores.py", "--cases", "utt_id,bogus"])
    assert "--cases: unknown 'bogus'; known: utt_id," in _usage_error(capsys, bench.main)
    # a case whose process fails: its stderr is shown and the status is 1 (it was a CalledProcessError traceback
    # with the case's own message captured and never printed)
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="MemoryError: the case's own message")
    monkeypatch.setattr(bench.subprocess, "run", lambda *a, **k: failed)
    monkeypatch.setattr(sys, "argv", ["bench_match_scores.py", "--cases", "utt_id", "--trials", "10"])
    assert bench.main() == 1
    err = capsys.readouterr().err
    assert "MemoryError: the case's own message" in err and "case utt_id failed (exit status 1)" in err


def test_bench_paired_bootstrap_refuses_zero_replicates(capsys, monkeypatch):
    bench = load_script("benchmarks/bench_paired_bootstrap.py")
    monkeypatch.setattr(sys, "argv", ["bench_paired_bootstrap.py", "0"])
    assert "N_REPLICATES must be positive, got 0" in _usage_error(capsys, bench.main)


@pytest.mark.parametrize("chosen", ["venv", "PYTHON"])
def test_gpu_aasist_mile_runs_sddkit_with_the_checkouts_venv_or_PYTHON(chosen, tmp_path):
    # it ran `python3 -m sddkit.cli.main`: after scripts/setup.sh (which activates nothing) that Python had no
    # sddkit, or another version of it; now .venv/bin/python where it exists, else PYTHON, else python3
    fake = tmp_path / (".venv/bin/python" if chosen == "venv" else "mypython")
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(f'#!/bin/sh\necho "$0 $*" >> {tmp_path / "called"}\nexit 1\n')  # fails the first step: stops there
    fake.chmod(0o755)
    env = {**os.environ, "RUNS": str(tmp_path / "runs"), "DATA": str(tmp_path / "data")}
    if chosen == "PYTHON":
        env["PYTHON"] = str(fake)
    script = REPO / "benchmarks" / "gpu_aasist_mile.sh"
    proc = subprocess.run(["bash", str(script), str(tmp_path / "o")], cwd=tmp_path, env=env, capture_output=True)
    assert proc.returncode == 1
    assert (tmp_path / "called").read_text().split()[0] in (str(fake), ".venv/bin/python")


def test_bench_protocols_shows_the_error_of_a_read_that_failed(tmp_path, capsys):
    # an --src whose sddkit cannot read the key: the child's error was captured, and a CalledProcessError raised
    (tmp_path / "src" / "sddkit").mkdir(parents=True)
    (tmp_path / "src" / "sddkit" / "__init__.py").write_text("")
    bench = load_script("benchmarks/bench_protocols.py")
    assert bench.main(["--lines", "50", "--repeats", "1", "--src", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "No module named 'sddkit.data'" in err and "bench_protocols: the read failed (exit status 1)" in err


def test_gpu_probe_refuses_zero_steps_before_touching_the_gpu(capsys, monkeypatch):
    probe = load_script("benchmarks/gpu_probe.py")
    monkeypatch.setattr(sys, "argv", ["gpu_probe.py", "--steps", "0"])
    assert "--steps and --items must be at least 1, got 0 and 200" in _usage_error(capsys, probe.main)


def test_bench_mixtures_replaces_its_result_files_whole(tmp_path):
    # rewritten after every model: to_csv(path) truncated the file in place, and a stop mid-write left part of it
    # for mixture_summary.py; now a new file renamed over the old one (another inode), the content as before
    import pandas as pd

    bench = load_script("benchmarks/bench_mixtures.py")
    rows = [{"seed": 0, "model": "a", "val": 0.1, "test_unseen": 0.2}]
    per_file = [pd.DataFrame({"seed": [0], "model": ["a"], "path": ["x.wav"], "score": [0.5]})]
    bench.save_rows(rows, tmp_path, per_file)
    before = {name: (tmp_path / name).stat().st_ino for name in ("eer_per_seed.csv", "scores_per_file.csv")}
    bench.save_rows([*rows, {**rows[0], "model": "b"}], tmp_path, per_file)
    for name, inode in before.items():
        assert (tmp_path / name).stat().st_ino != inode, name
    assert pd.read_csv(tmp_path / "eer_per_seed.csv")["model"].tolist() == ["a", "b"]
    assert pd.read_csv(tmp_path / "scores_per_file.csv").equals(per_file[0])
