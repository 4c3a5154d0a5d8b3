"""Review 28 (a component of one's own, used from the CLI): plugin modules named by ``SDDKIT_PLUGINS`` or by a
``sddkit.plugins`` entry point are imported before every ``sdd`` command; a model or recipe naming a component no
module registered says how to load it; a plugin that fails to import is one clear error."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_support import one_line_error
from test_train_support import write_corpus

import sddkit
from sddkit import plugins
from sddkit.cli.main import main
from sddkit.registry import all_registries

# a researcher's own back-end: mean over the last axis, a small MLP, (B, 2) logits
PLUGIN = """
from dataclasses import dataclass

import torch
from torch import nn

from sddkit.detectors.outputs import BackendOutput
from sddkit.registry import get_registry


@dataclass
class MeanHeadConfig:
    hidden: int = 4


class MeanHead(nn.Module):
    def __init__(self, in_dim, hidden):
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden)
        self.out = nn.Linear(hidden, 2)

    def forward(self, features):
        h = torch.relu(self.proj(features.mean(dim=-1)))
        return BackendOutput(logits=self.out(h), embedding=h)


@get_registry("backend").register("review28_mean", config=MeanHeadConfig, description="review28 mean-pooled MLP")
def build_mean_head(cfg, *, in_dim, **_):
    return MeanHead(in_dim, cfg.hidden)
"""


def _write(folder: Path, name: str, source: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(source))


def _sdd(folder: Path, *argv: str, plugins_var: str | None) -> subprocess.CompletedProcess[str]:
    """``sdd ARGV`` in a fresh process, ``folder`` (the plugin's) on its PYTHONPATH, ``SDDKIT_PLUGINS`` as given."""
    env = {k: v for k, v in os.environ.items() if k != plugins.ENV_VAR}
    src = str(Path(sddkit.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), src, env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"
    if plugins_var is not None:
        env[plugins.ENV_VAR] = plugins_var
    cmd = [sys.executable, "-m", "sddkit.cli.main", *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def fresh_registries(monkeypatch):
    """What an in-process plugin registers is undone after the test (each registry's entries restored), and this
    process counts as one that imported no plugin yet."""
    for registry in all_registries().values():
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(plugins, "_loaded", set())
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)


def test_a_component_named_by_SDDKIT_PLUGINS_is_listed_described_trained_and_scored(tmp_path) -> None:
    # `sdd` imported sddkit's own components only: a back-end of one's own could not be used from the CLI at all
    code = tmp_path / "code"
    _write(code, "review28_parts", PLUGIN)
    listed = _sdd(code, "list", "backend", "--json", plugins_var="review28_parts")
    assert listed.returncode == 0, listed.stderr
    assert "review28_mean" in json.loads(listed.stdout)["backend"]

    train = write_corpus(tmp_path / "data", n=12, samples=4000)
    val = write_corpus(tmp_path / "data", n=9, samples=4000, seed=1, partition="dev")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""
model: {{frontend: lfcc, backend: {{name: review28_mean, hidden: 3}}}}
data:
  train: {{protocol: {train}, format: utterance_table}}
  val: {{protocol: {val}, format: utterance_table}}
  crop_samples: 3200
  batch_size: 4
trainer: {{epochs: 1, max_steps: 2, out_dir: {tmp_path / "run"}, progress: false, device: cpu}}
"""
    )
    described = _sdd(code, "describe", str(recipe), plugins_var="review28_parts")
    assert described.returncode == 0, described.stderr
    # Linear(60, 3) + Linear(3, 2): the plugin's back-end, with the recipe's hidden size, on LFCC's 60 features
    assert json.loads(described.stdout)["modules"]["backend"]["total_params"] == 60 * 3 + 3 + 3 * 2 + 2

    trained = _sdd(code, "train", str(recipe), plugins_var="review28_parts")
    assert trained.returncode == 0, trained.stderr
    model = tmp_path / "run" / "best"
    wavs = sorted((tmp_path / "data").glob("dev_*.wav"))[:2]
    scored = _sdd(
        code,
        "score",
        "--model",
        str(model),
        "--out",
        str(tmp_path / "s.csv"),
        *map(str, wavs),
        plugins_var="review28_parts",
    )
    assert scored.returncode == 0, scored.stderr
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert len(rows) == 3 and all(row.endswith(",") for row in rows[1:])  # a score each, no error column

    # the same model where the variable was left unset: was "... import the module that registers it before loading
    # this model, in Python (the sdd commands import only sddkit's own components)"
    unset = _sdd(code, "score", "--model", str(model), "--out", str(tmp_path / "t.csv"), str(wavs[0]), plugins_var=None)
    assert unset.returncode == 2 and "Traceback" not in unset.stderr
    assert "model.backend: unknown backend 'review28_mean'" in unset.stderr
    assert "name it in the environment variable SDDKIT_PLUGINS" in unset.stderr


def test_a_plugin_that_fails_to_import_stops_the_command_with_one_line_naming_it(tmp_path) -> None:
    code = tmp_path / "code"
    _write(code, "review28_broken", "import review28_no_such_dependency\n")
    done = _sdd(code, "list", plugins_var="review28_broken")
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("sdd list: error: plugin 'review28_broken' (from SDDKIT_PLUGINS) failed to import:")
    assert "ModuleNotFoundError: No module named 'review28_no_such_dependency'" in done.stderr
    assert f"(at {code / 'review28_broken.py'}:1)" in done.stderr


def test_a_recipe_naming_an_unregistered_component_points_at_SDDKIT_PLUGINS(tmp_path, capsys, fresh_registries):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {frontend: lfcc, backend: {name: review28_mean}}\n")
    assert main(["describe", str(recipe)]) == 2
    err = one_line_error(capsys, "describe")
    assert "model.backend: unknown backend 'review28_mean'" in err and "SDDKIT_PLUGINS" in err


def test_a_plugin_given_as_a_file_path_is_told_to_give_a_module_name(capsys, fresh_registries, monkeypatch):
    monkeypatch.setenv(plugins.ENV_VAR, "./mylab/review28_parts.py")
    assert main(["list", "gate"]) == 2
    err = one_line_error(capsys, "list")
    assert "SDDKIT_PLUGINS: './mylab/review28_parts.py' is not a module name" in err and "PYTHONPATH" in err


def _entry_points(monkeypatch, **values: str) -> None:
    """``importlib.metadata.entry_points`` answering group ``sddkit.plugins`` with entry points NAME=VALUE."""
    eps = [importlib.metadata.EntryPoint(n, v, plugins.ENTRY_POINT_GROUP) for n, v in values.items()]
    real = importlib.metadata.entry_points

    def entry_points(**params):
        return eps if params.get("group") == plugins.ENTRY_POINT_GROUP else real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_an_entry_point_of_group_sddkit_plugins_is_loaded_before_the_command(
    tmp_path, capsys, monkeypatch, fresh_registries
):
    _write(tmp_path, "review28_ep_parts", PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    _entry_points(monkeypatch, review28="review28_ep_parts")
    try:
        assert main(["list", "backend", "--json"]) == 0
    finally:
        sys.modules.pop("review28_ep_parts", None)  # imported here: a later import registers it again
    assert "review28_mean" in json.loads(capsys.readouterr().out)["backend"]


def test_an_entry_point_registering_a_name_already_taken_is_the_registrys_error(
    tmp_path, capsys, monkeypatch, fresh_registries
):
    _write(
        tmp_path,
        "review28_dup_parts",
        """
        from sddkit.registry import get_registry


        @get_registry("backend").register("lcnn")
        def build(**_):
            raise AssertionError("never built")
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _entry_points(monkeypatch, review28dup="review28_dup_parts")
    assert main(["list", "gate"]) == 2
    err = one_line_error(capsys, "list")
    assert "plugin 'review28_dup_parts' (from entry point 'review28dup'" in err
    # was "backend 'lcnn' registered twice" (whose?), raised in sddkit's registry; now the plugin's line too
    assert "RuntimeError: backend 'lcnn' registered twice (first by sddkit.backends.lcnn.build_lcnn)" in err
    assert f"(at {tmp_path / 'review28_dup_parts.py'}:5)" in err
