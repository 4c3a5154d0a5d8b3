"""The user documents tell the truth about the CLI: README.md, the default model's card, docs/*.md.

Every ``sdd`` command and flag they name exists with that spelling, every repository path they name
exists, the defaults and output columns they state are the code's, and the bundled model's card
matches its ``config.json``. Parsers and dataclasses only: nothing is trained, scored or downloaded.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest
from docs_support import FLAG, SDD_CALL, check_sdd_call, parser_options, sdd_command_lines

from sddkit.cli.main import _build_parsers, main

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "src" / "sddkit" / "assets" / "default_model"
DOCUMENTS = {
    "README.md": REPO / "README.md",
    "docs/cli.md": REPO / "docs" / "cli.md",
    "MODEL_CARD.md": MODEL_DIR / "MODEL_CARD.md",
    "docs/architecture.md": REPO / "docs" / "architecture.md",
    "docs/aasist.md": REPO / "docs" / "aasist.md",
}
# flags of the repository's scripts that the documents name (not `sdd` options)
SCRIPT_FLAGS = {"MODEL_CARD.md": {"--cache"}}  # scripts/finalize_default_model.py (checked below)


def _commands() -> dict[str, argparse.ArgumentParser]:
    return _build_parsers()[1]


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_sdd_command_and_flag_named_in_the_documents_exists(name):
    # every `sdd CMD ...` of an inline code span or a code block's line (its comment apart), whole or a fragment:
    # the command exists and each option is one of its own, spelled in full (whole lines also parse: test_readme9)
    calls = sdd_command_lines(DOCUMENTS[name].read_text(), fragments=True)
    assert calls
    problems = [problem for argv in calls for problem in check_sdd_call(argv, fragment=True)[1]]
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_flags_in_the_readme_command_table_belong_to_the_row_command():
    """A row of README's command table names its command first; a bare ``--flag`` span in it is that command's."""
    commands = _commands()
    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `sdd ")]
    assert len(rows) == len(commands), "one README table row per `sdd` command"
    named = set()
    problems = []
    for row in rows:
        command = SDD_CALL.search(row).group(1)
        named.add(command)
        known = parser_options(commands[command])
        for span in re.findall(r"`([^`]+)`", row):
            if span.startswith("--"):
                problems += [f"`sdd {command}` has no {flag}" for flag in FLAG.findall(span) if flag not in known]
    assert named == set(commands), f"README table misses {set(commands) - named}"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_flag_in_the_documents_is_an_option_somewhere(name):
    top = parser_options(_build_parsers()[0])  # sdd --version
    known = set().union(top, *(parser_options(p) for p in _commands().values())) | SCRIPT_FLAGS.get(name, set())
    unknown = sorted(set(FLAG.findall(DOCUMENTS[name].read_text())) - known)
    assert not unknown, f"{name} names options no `sdd` command has: {unknown}"


def test_finalize_script_takes_the_flags_the_card_names():
    source = (REPO / "scripts" / "finalize_default_model.py").read_text()
    for flag in SCRIPT_FLAGS["MODEL_CARD.md"]:
        assert f'"{flag}"' in source


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_repository_path_named_in_the_documents_exists(name):
    text = DOCUMENTS[name].read_text()
    top = r"(?:recipes|scripts|benchmarks|docs|src|examples|tests|\.ci)"
    paths = set(re.findall(rf"(?<![\w./-])({top}/[\w./-]*\w/?)", text))
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, f"{name} names paths that do not exist: {missing}"


def test_readme_install_and_test_commands_are_the_ci_ones():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    for command in ("bash scripts/setup.sh", ".venv/bin/python -m pytest -q"):
        assert command in readme and command in ci, command
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "torch==2.13.0" in setup and "torch 2.13.0" in readme
    assert "scripts/main_job.sh" in setup


def test_readme_defaults_are_the_code_defaults():
    from sddkit.audio import io
    from sddkit.backends.heads import ClassifierConfig
    from sddkit.scoring.inference import InferenceConfig
    from sddkit.training.recipe import LossConfig

    commands = _commands()

    def default(command, dest):
        return commands[command].get_default(dest)

    assert default("describe", "device") == "meta"  # "on the meta device"
    assert (default("serve", "host"), default("serve", "port")) == ("127.0.0.1", 8000)
    assert default("score", "allocator") == default("serve", "allocator") == "tuned"
    assert default("cv", "by") == "source"
    assert InferenceConfig().min_duration_s == 0.1
    assert tuple(LossConfig().oc_margins) == (0.2, 0.9)
    assert (ClassifierConfig().head, ClassifierConfig().head_scale) == ("linear", 20.0)
    assert io.MIN_SAMPLE_RATE == 4000
    assert "-80 dBFS" in (io.__doc__ or "")


def test_readme_score_columns_are_the_written_ones():
    from sddkit.scoring import batch

    readme = (REPO / "README.md").read_text()
    assert f"`{','.join(batch.BASE_COLUMNS)}`" in readme
    assert batch.output_columns([])[-1] == "error" and "`error`" in readme


def test_readme_override_examples_resolve(capsys):
    overrides = [
        "data.train.0.folds={n: 4, keep: [3]}",
        "strategy={name: sam, rho: 0.05, adaptive: true}",
        "loss.domain_alignment=1.0",
        "model.backend.head=cosine",
        "loss.kind=oc_softmax",
        "model.frontend.level_db=-27",
        "model.frontend.top_db=60",
        "model.frontend.spec_augment={freq_width: [0, 16], num_time_masks: 0}",
        "data.decode_cache=preload",
    ]
    assert main(["train", str(REPO / "recipes/sddbench/default_model.yaml"), "--print-config", *overrides]) == 0
    recipe = json.loads(capsys.readouterr().out)
    assert recipe["data"]["train"][0]["folds"]["n"] == 4
    assert recipe["strategy"]["name"] == "sam" and recipe["strategy"]["adaptive"] is True
    assert recipe["loss"]["kind"] == "oc_softmax" and recipe["model"]["backend"]["head"] == "cosine"
    assert recipe["model"]["frontend"]["top_db"] == 60


def _subset_diff(doc, ref, where=""):
    """Where ``doc`` differs from ``ref`` on ``doc``'s keys (fields added to sddkit later are not differences)."""
    if isinstance(doc, dict) and isinstance(ref, dict):
        return [d for k in doc for d in _subset_diff(doc[k], ref.get(k, "<missing>"), f"{where}.{k}")]
    specs = isinstance(doc, list) and all(isinstance(a, dict) for a in doc)
    if specs and isinstance(ref, list) and len(doc) == len(ref):
        # specs in a list too (an augmentation spec whose later field a recipe now pins: noise's low_hz)
        return [d for i, (a, b) in enumerate(zip(doc, ref)) for d in _subset_diff(a, b, f"{where}[{i}]")]
    return [] if doc == ref else [f"{where}: {doc!r} != {ref!r}"]


def test_model_card_matches_the_bundled_config(capsys):
    card = (MODEL_DIR / "MODEL_CARD.md").read_text()
    config = json.loads((MODEL_DIR / "config.json").read_text())
    inference = config["inference"]
    assert f"threshold {inference['threshold']:.4f}" in card
    cal = inference["calibration"]
    sign = "+" if cal["b"] >= 0 else "-"
    assert f"llr = {cal['a']:.4f} * raw {sign} {abs(cal['b']):.4f}" in card
    assert f"({inference['window_samples']:,} samples)" in card
    assert inference["hop_samples"] * 2 == inference["window_samples"] and "2 s hop" in card
    assert inference.get("min_duration_s", 0.1) == 0.1 and "under 0.1 s (`inference.min_duration_s`" in card
    # since 2026-12-05, 11:43 UTC two LCNNs: averaged until 14:20 UTC, since then under a trained gate
    mixture = config["architecture"] == "mixture"
    detectors = config["model"]["experts"] if mixture else [config["model"]]
    assert all(d["frontend"]["level_db"] == -27 for d in detectors) and "`level_db: -27`" in card
    metadata = config["metadata"]
    if mixture:  # the experts' run folders are recorded and named in the card
        assert len(metadata["expert_dirs"]) == len(detectors)
        assert all(f"`{d}`" in card for d in metadata["expert_dirs"])
    if mixture and metadata["selection"].startswith("nothing to train"):  # an average: no checkpoint of its own
        pass
    elif "checkpoints" in metadata:  # the trainer's final/: the mean of its top-k checkpoints, named by their steps
        steps = [str(int(c.removeprefix("step-"))) for c in metadata["checkpoints"]]
        assert f"steps {', '.join(steps[:-1])} and {steps[-1]} of {metadata['steps']:,}" in card
    else:  # best/: one checkpoint, its steps those of its checkpoint (an older export: the run's)
        assert f"step {metadata['best_step']} of {metadata.get('run_steps', metadata['steps']):,}" in card
    # the parameter count the card states
    assert main(["describe", str(MODEL_DIR)]) == 0
    assert f"{json.loads(capsys.readouterr().out)['total_params']:,} parameters" in card
    # "resolves to the committed recipe except for the output folder" (and, for the mixture, its experts' folders)
    gate = config["model"]["gate"]["name"] if mixture else None
    recipe = {None: "default_model", "average": "default_model_ensemble"}.get(gate, "default_model_gate")
    command = shlex.split(re.search(rf"`sdd train (recipes/sddbench/{recipe}\.yaml [^`]*)`", card).group(1))
    assert main(["train", str(REPO / command[0]), "--print-config", *command[1:]]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert not _subset_diff(config["metadata"]["train_recipe"], resolved)
    assert main(["train", str(REPO / command[0]), "--print-config"]) == 0
    committed = json.loads(capsys.readouterr().out)
    trained_in = config["metadata"]["train_recipe"]["trainer"]["out_dir"]
    assert trained_in != committed["trainer"]["out_dir"]
    expected = [f".trainer.out_dir: {trained_in!r} != {committed['trainer']['out_dir']!r}"]
    if mixture:
        dirs = config["metadata"]["train_recipe"]["mixture"]["expert_dirs"]
        expected.insert(0, f".mixture.expert_dirs: {dirs!r} != {committed['mixture']['expert_dirs']!r}")
    assert _subset_diff(config["metadata"]["train_recipe"], committed) == expected
