"""Review tests: nothing lost, and nothing left behind, when a command is killed (SIGKILL mid-write, SIGTERM from
``kill``, ``timeout`` or a batch scheduler), and a resume after it ends where an uninterrupted run ends."""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from scoring_support import save_tiny_lcnn
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.detectors.model_dir import load_model_dir
from sddkit.errors import CheckpointError
from sddkit.outputs import publish_staged
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer

TESTS = str(Path(__file__).resolve().parent)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter, in a process group of its own (a kill must not reach the test's own process),
    with the tests' helpers."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS]), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- temporaries of a writer killed mid-write -------------------------------------------------------------------
def test_the_weights_an_export_killed_mid_write_left_are_removed_by_the_next_export(tmp_path):
    # before: the temporary weights file (.model.safetensors.XXXX.tmp) of an export SIGKILLed between its two
    # renames stayed in the model directory for good, a whole copy of the weights (1.2 GB for an XLS-R model) that
    # every later export left there and every copy of best/ or final/ carried along
    model = tmp_path / "final"
    killed = _run_python(
        f"""
        import os, signal
        from scoring_support import save_tiny_lcnn
        from sddkit.detectors import model_dir

        save_tiny_lcnn(model_dir.Path({str(model)!r}), seed=0)
        def killed(*args, **kwargs):  # the new weights wait beside the old ones while the config is written
            os.kill(os.getpid(), signal.SIGKILL)
        model_dir.atomic_write_bytes = killed
        save_tiny_lcnn(model_dir.Path({str(model)!r}), seed=1)
        """,
        tmp_path,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = _hidden(model)
    assert len(left) == 1 and left[0].startswith(".model.safetensors.") and left[0].endswith(".tmp")
    before = load_model_dir(model)  # the earlier export is intact and loads
    # a write beside another process's write in progress (its pid alive here), or in a shared folder that another
    # machine writes into (its pid means nothing here), must not remove that writer's temporary file
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:32]  # as the writer names its host
    live = model / f".model.safetensors.{os.getpid()}@{host}.abcd1234.tmp"
    elsewhere = model / f".config.json.{os.getpid() + 1}@not-{host}.abcd1234.tmp"
    for path in (live, elsewhere):
        path.write_text("partial")
    save_tiny_lcnn(model, seed=1)  # the export again (a resume's, a calibration's copy)
    assert _hidden(model) == sorted([live.name, elsewhere.name])
    after = load_model_dir(model)
    assert after.weights_digest != before.weights_digest


def test_a_run_export_killed_between_its_two_files_says_what_happened_and_how_to_export_it_again(tmp_path):
    # before: a first export of final/ killed after its config.json was renamed in and before its weights were
    # said "missing model.safetensors, the weights config.json goes with: copy the whole model directory", advice for
    # a partial copy, where the run's resume is what writes it again
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    killed = _run_python(
        f"""
        import os, signal
        from scoring_support import save_tiny_lcnn
        from sddkit.detectors import model_dir

        real = model_dir.atomic_write_bytes
        def killed(path, data):  # the config is in place, the weights wait in their temporary file
            real(path, data)
            os.kill(os.getpid(), signal.SIGKILL)
        model_dir.atomic_write_bytes = killed
        save_tiny_lcnn(model_dir.Path({str(run / "final")!r}))
        """,
        tmp_path,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with pytest.raises(CheckpointError) as error:
        load_model_dir(run / "final")
    message = str(error.value)
    assert "a save into it was stopped before its weights were moved in" in message
    assert f"export of the training run {run}: `sdd train RECIPE --resume`" in message
    save_tiny_lcnn(run / "final")  # what the resume's export does
    assert _hidden(run / "final") == []
    load_model_dir(run / "final")


def test_a_report_staging_folder_left_by_a_killed_run_is_removed_by_the_next_run(tmp_path):
    # before: `sdd eval` (also `sdd robustness`, `sdd fuse`) killed while its report was staged left the hidden
    # staging folder, a whole report's files, in --out for good; the rerun made another one beside it
    out = tmp_path / "report"
    killed = _run_python(
        f"""
        import os, signal
        from pathlib import Path
        from sddkit.outputs import publish_staged

        def write(staging):
            (staging / "per_attack.csv").write_text("attack,eer\\n")
            os.kill(os.getpid(), signal.SIGKILL)

        publish_staged(Path({str(out)!r}), "report", write)
        """,
        tmp_path,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(_hidden(out)) == 1

    def write(staging: Path) -> list[str]:
        (staging / "report.json").write_text("{}\n")
        return ["report.json"]

    assert publish_staged(out, "report", write) == ["report.json"]
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


# --- SIGTERM -----------------------------------------------------------------------------------------------------
def _recipe(out: Path) -> dict:
    return {
        "seed": 3,
        "model": {"frontend": {"name": "tiny_test"}, "backend": "tiny_test_head"},
        "data": {"batch_size": 8},
        "trainer": {"epochs": 100, "max_steps": 6, "val_every": 2, "out_dir": str(out), "progress": False},
    }


def _fit(recipe: dict, resume: bool = False) -> Trainer:
    run = Trainer(
        from_dict(TrainRecipe, recipe),
        train_data=SyntheticDataset(48),
        val_data=SyntheticDataset(24, seed=9),
        resume=resume,
    )
    run.fit()
    return run


def test_sigterm_during_a_checkpoint_save_stops_the_run_as_ctrl_c_does_and_the_resume_ends_as_one_run(
    tmp_path, monkeypatch
):
    # before: SIGTERM (`kill`, `timeout`, a scheduler's time limit) ended `sdd train` at once, with Python's default
    # action: no word of the checkpoint kept or of --resume (the shell said "Terminated"), and the save in progress
    # left its temporary checkpoint folder behind; now it stops as Ctrl-C does, exit status 143
    out = tmp_path / "run"
    killed = _run_python(
        f"""
        import os, signal, sys
        from test_train_support import SyntheticDataset, register_tiny_for_good
        from sddkit.cli import list_cmd
        from sddkit.cli.main import main
        from sddkit.config import from_dict
        from sddkit.training import checkpoint as ckpt
        from sddkit.training.recipe import TrainRecipe
        from sddkit.training.trainer import Trainer

        register_tiny_for_good()
        real, saves = ckpt._write_tensors, []
        def write_tensors(tensors, path):  # the second save (step 4) is under way when the signal comes
            real(tensors, path)
            saves.append(path)
            if len(saves) == 2:
                os.kill(os.getpid(), signal.SIGTERM)
        ckpt._write_tensors = write_tensors

        def train(args):  # `sdd train` of this recipe, over the synthetic data
            recipe = from_dict(TrainRecipe, {_recipe(out)!r})
            Trainer(recipe, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9)).fit()
            return 0
        list_cmd.run = train
        sys.exit(main(["list"]))
        """,
        tmp_path,
    )
    assert killed.returncode == 128 + signal.SIGTERM, killed.stderr
    assert "sdd list: terminated (SIGTERM)" in killed.stderr
    assert "interrupted at step 4: the last checkpoint" in killed.stderr and "--resume" in killed.stderr
    checkpoints = out / "checkpoints"
    assert _hidden(checkpoints) == []  # the save in progress removed its temporary folder
    assert (checkpoints / "latest").read_text().strip() == "step-00000002"

    install_tiny(monkeypatch)
    _fit(_recipe(out), resume=True)
    _fit(_recipe(tmp_path / "whole"))
    for name in ("best", "final"):
        resumed = load_file(str(out / name / "model.safetensors"))
        whole = load_file(str(tmp_path / "whole" / name / "model.safetensors"))
        assert resumed.keys() == whole.keys()
        assert all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_sigterm_to_the_process_group_stops_a_run_with_loader_workers_without_a_traceback(tmp_path):
    # a batch scheduler's SIGTERM (`kill -- -PGID`) reaches the DataLoader's worker processes too; torch's SIGCHLD
    # handler then raised "DataLoader worker (pid N) is killed by signal: Terminated" while the stop unwound: a
    # traceback, or (when the signal came during a backward pass) that error in place of the stop, status 1
    out = tmp_path / "run"
    killed = _run_python(
        f"""
        import os, signal, subprocess, sys, time
        from test_train_support import SyntheticDataset, register_tiny_for_good
        from sddkit.cli import list_cmd
        from sddkit.cli.main import main
        from sddkit.config import from_dict
        from sddkit.training.recipe import TrainRecipe
        from sddkit.training.trainer import Trainer

        register_tiny_for_good()

        def dead_children():
            n = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{{pid}}/stat") as f:
                        state, parent = f.read().rsplit(")", 1)[1].split()[:2]
                except OSError:
                    continue
                n += state == "Z" and parent == str(os.getpid())
            return n

        real, steps = Trainer._one_step, []
        def one_step(self, batch):
            steps.append(1)
            if len(steps) == 3:
                # the signal from another process (the workers then die of it), both signals handled at once, as
                # after a step of C code (a backward pass) that the workers' deaths came during
                both = {{signal.SIGTERM, signal.SIGCHLD}}
                signal.pthread_sigmask(signal.SIG_BLOCK, both)
                kill = f"import os, signal; os.killpg({{os.getpgid(0)}}, signal.SIGTERM)"
                subprocess.call([sys.executable, "-c", kill])
                while dead_children() < 2:
                    time.sleep(0.01)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, both)
            real(self, batch)
        Trainer._one_step = one_step

        def train(args):
            recipe = {{**{_recipe(out)!r}, "data": {{"batch_size": 8, "num_workers": 2}}}}
            data = SyntheticDataset(48), SyntheticDataset(24, seed=9)
            Trainer(from_dict(TrainRecipe, recipe), train_data=data[0], val_data=data[1]).fit()
            return 0
        list_cmd.run = train
        sys.exit(main(["list"]))
        """,
        tmp_path,
    )
    assert killed.returncode == 128 + signal.SIGTERM, killed.stderr
    assert "Traceback" not in killed.stderr and "killed by signal" not in killed.stderr, killed.stderr
    assert "interrupted at step 2: the last checkpoint" in killed.stderr
    assert killed.stderr.rstrip().endswith("sdd list: terminated (SIGTERM)")


# --- a full disk ---------------------------------------------------------------------------------------------------
def test_a_checkpoint_whose_pointer_a_full_disk_refused_is_not_left_taking_the_space(tmp_path, monkeypatch):
    # before: the disk filling up as `latest` was written left the new checkpoint renamed into place but named by
    # no pointer: the error said the previous one is the last checkpoint, while the new one kept its space, so the
    # resume after freeing that space failed again (it saves the step again, and needed room for both copies)
    install_tiny(monkeypatch)
    real = ckpt.atomic_write_bytes
    pointers: list[str] = []

    def full_at_the_second_pointer(path: Path, data: bytes) -> None:
        if path.name == ckpt.LATEST:
            pointers.append(data.decode().strip())
            if len(pointers) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full_at_the_second_pointer)
    out = tmp_path / "run"
    with pytest.raises(CheckpointError, match=r"cannot save checkpoint step-00000004 .*step-00000002: free the space"):
        _fit(_recipe(out))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-00000002"]
    monkeypatch.setattr(ckpt, "atomic_write_bytes", real)
    _fit(_recipe(out), resume=True)
    _fit(_recipe(tmp_path / "whole"))
    for name in ("best", "final"):
        resumed = load_file(str(out / name / "model.safetensors"))
        whole = load_file(str(tmp_path / "whole" / name / "model.safetensors"))
        assert all(torch.equal(resumed[k], whole[k]) for k in whole)
