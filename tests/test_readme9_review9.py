"""The user documents' command lines run under today's CLI (ninth review of README.md and docs/*.md).

``tests/test_docs_commands.py`` checks that every command and flag the documents name exists; it did not parse
whole command lines, and it left ``docs/benchmarks.md`` and the recipes' comments out. Here every ``sdd`` command
line of a fenced block (README, benchmarks, model card, docs, recipe comments) parses with the real parsers, its
``sdd train``/``sdd cv`` overrides resolve against the recipe, the synopses of README's command table parse (each
``a|b`` alternative of a flag included), and the ``python benchmarks/...``/``scripts/...`` lines parse with those
scripts' own parsers. Also pinned: ``sdd train --help``'s override example resolves on every bundled recipe (its
``strategy.beta=0.5`` failed on the ERM ones, the default model's included); ``sdd robustness`` goes on past an
unreadable file, as README now says (it said every command stops with status 2 on corrupt audio, ``sdd score``
alone excepted); README states the window the AASIST importer writes (64,600 samples, not "4 s").
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
from docs_support import (
    PLACEHOLDERS,
    check_sdd_call,
    cli_section,
    parser_options,
    sdd_command_lines,
    shell_commands,
)
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli.main import _build_parsers, main

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
CLI = (REPO / "docs" / "cli.md").read_text()
DOCUMENTS = [
    "README.md",
    "docs/cli.md",
    "docs/benchmarks.md",
    "docs/architecture.md",
    "docs/aasist.md",
    "src/sddkit/assets/default_model/MODEL_CARD.md",
]


def _recipe_comment_lines() -> list[list[str]]:
    """The argv of the ``sdd train``/``sdd cv`` lines in the recipes' comments (continuations joined)."""
    lines = []
    for recipe in sorted((REPO / "recipes").rglob("*.yaml")):
        comments = [line.lstrip("# ").rstrip() for line in recipe.read_text().splitlines() if line.startswith("#")]
        text = "\n".join(comments).replace("\\\n", " ")
        lines += [m.split("  (")[0].strip() for m in re.findall(r"(?:^|\s)(sdd (?:train|cv) recipes/\S.*)", text)]
    return sdd_command_lines("```\n" + "\n".join(lines) + "\n```\n")


def _sdd_lines() -> list[tuple[str, list[str]]]:
    """(document, argv) of every ``sdd`` command line of the documents' fenced blocks and the recipes' comments."""
    found = [
        (name, argv)
        for name in DOCUMENTS
        for argv in sdd_command_lines((REPO / name).read_text(), placeholders=PLACEHOLDERS)
    ]
    return found + [("recipes", argv) for argv in _recipe_comment_lines()]


def test_the_documents_have_command_lines_to_check():
    names = {name for name, _ in _sdd_lines()}
    assert {"README.md", "docs/benchmarks.md", "recipes"} <= names
    assert len(_sdd_lines()) > 50


def test_every_fenced_sdd_command_line_parses_and_its_overrides_resolve(capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the recipes' paths are the repository's
    problems = []
    for name, argv in _sdd_lines():
        line = shlex.join(argv)
        args, errors = check_sdd_call(argv)  # parses, and each option is spelled in full
        problems += [f"{name}: {error}" for error in errors]
        if args is None:
            continue
        if argv[1] in ("train", "cv") and Path(args.recipe).is_file():
            code = main(["train", args.recipe, "--print-config", *args.overrides])
            err = capsys.readouterr().err.strip()
            if code != 0:
                problems.append(f"{name}: `{line}`: the overrides do not resolve: {err}")
    assert not problems, "\n".join(problems)


def test_readme_table_synopses_parse():
    problems = []
    rows = [line for line in README.splitlines() if line.startswith("| `sdd ")]
    for row in rows:
        synopsis = re.match(r"\| `sdd ([^`]+)`", row).group(1)
        alternatives = re.findall(r"(--[a-z-]+) ([\w.]+(?:\\\|[\w.]+)+)", synopsis)
        plain = re.sub(r"(\S+?)\\\|\S+", r"\1", synopsis).replace("[", " ").replace("]", " ").replace("...", " ")
        plain = re.sub(r"(--limit-connections) N\b", r"\1 3", plain)
        variants = [plain]
        for flag, values in alternatives:  # `--metric eer\|min_dcf`: each value parses
            variants += [f"{plain} {flag} {value}" for value in values.split("\\|") if not value.startswith("-")]
        for variant in variants:
            problems += [f"`sdd {synopsis}` as {error}" for error in check_sdd_call(["sdd", *shlex.split(variant)])[1]]
    assert len(rows) == len(_build_parsers()[1])
    assert not problems, "\n".join(problems)


def test_readme_flag_alternatives_are_the_flags_choices():
    """``--backend torch|onnx``, ``--variant auto|aasist|aasist_l``, ...: each spelled value is accepted."""
    commands = _build_parsers()[1]
    # README and its command reference (the flags README's table leaves out moved there)
    spans = re.findall(r"`(--[a-z-]+) ([\w.]+(?:\\?\|[\w.]+)+)`", README + CLI)
    assert spans
    for flag, values in spans:
        owners = [p for p in commands.values() if flag in parser_options(p)]
        assert owners, flag
        for value in re.split(r"\\?\|", values):
            if value.isupper():  # a placeholder, e.g. FILE.onnx|DIR
                continue
            action = next(a for a in owners[0]._actions if flag in a.option_strings)
            if action.choices is not None:
                assert value in action.choices, f"{flag} {value}: choices are {action.choices}"


def _python_lines() -> list[tuple[str, str]]:
    found = []
    for name in DOCUMENTS:
        text = (REPO / name).read_text()
        found += [(name, shlex.join(words)) for words in shell_commands(text, PLACEHOLDERS) if words[0] == "python"]
        found += [(name, f"python {m}") for m in re.findall(r"`(?:OMP_NUM_THREADS=\d+ )?python ([^`]+)`", text)]
    kept = []
    for name, line in found:
        for pattern, value in PLACEHOLDERS:
            line = pattern.sub(value, line)
        if re.match(r"python (?:benchmarks|scripts)/\w+\.py", line):
            kept.append((name, line))
    return kept


class _Parsed(Exception):
    pass


def test_every_benchmark_and_script_command_line_parses_with_its_script(monkeypatch):
    """The script is run up to its ``parse_args``, which raises instead of returning: nothing else runs."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.chdir(REPO)
    lines = _python_lines()
    assert len(lines) > 30
    problems = []
    for name, line in lines:
        argv = shlex.split(line)[1:]
        # a brace list the shell would expand (`runs/x_s{0,1,2}`): one of its values
        argv = [re.sub(r"\{(\w+),[\w,]+\}", r"\1", token) for token in argv]
        monkeypatch.setattr(sys, "argv", argv)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                runpy.run_path(str(REPO / argv[0]), run_name="__main__")
            problems.append(f"{name}: `{line}`: the script never parsed its arguments")
        except _Parsed:
            pass
        except SystemExit:
            problems.append(f"{name}: `{line}`: {err.getvalue().strip().splitlines()[-1:]}")
    assert not problems, "\n".join(problems)


# --- sdd train --help: its override example ---------------------------------------------------------


def test_train_help_override_example_resolves_on_every_bundled_recipe(capsys, monkeypatch):
    # the example was `trainer.max_steps=100 strategy.beta=0.5`: on an ERM recipe (the default model's) the dotted
    # key made a strategy without a name, "strategy: a strategy needs a 'name'"
    monkeypatch.chdir(REPO)
    description = _build_parsers()[1]["train"].description
    example = re.search(r"e\.g\. (.*?);", description).group(1).split()
    assert example and all("=" in item for item in example)
    for recipe in sorted((REPO / "recipes").rglob("*.yaml")):
        assert main(["train", str(recipe), "--print-config", *example]) == 0, capsys.readouterr().err
        capsys.readouterr()
    # the whole-entry form the help names resolves too
    whole = re.search(r"'(strategy=\{[^']*\})'", description).group(1)
    assert main(["train", "recipes/sddbench/default_model.yaml", "--print-config", whole]) == 0
    assert json.loads(capsys.readouterr().out)["strategy"]["name"] == "mldg"


# --- sdd robustness past an unreadable file -----------------------------------------------------------


def test_robustness_goes_on_past_an_unreadable_file_as_readme_says(tmp_path, capsys):
    errors = cli_section("Errors and bad input")  # README's error paragraph, until it moved to docs/cli.md
    assert "`sdd robustness` goes on past such files too" in errors
    assert "`n_failed_files`, `failed_files`" in errors
    model = save_tiny_lcnn(tmp_path / "model")
    files = [write_noise_wav(tmp_path / f"{i}.wav", 0.6, i) for i in range(4)]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    protocol = tmp_path / "meta.csv"
    labels = ["bonafide", "spoof", "bonafide", "spoof"]
    rows = [f"{path},{label}" for path, label in zip(files, labels)] + [f"{broken},spoof"]
    protocol.write_text("path,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "rob"
    argv = ["robustness", "--model", str(model), "--protocol", str(protocol), "--out", str(out)]
    assert main([*argv, "--conditions", "clean", "--mode", "all", "--workers", "0", "--quiet"]) == 0
    report = json.loads((out / "robustness.json").read_text())
    assert report["n_failed_files"] == 1 and str(broken) in report["failed_files"][0]
    assert [row["n"] for row in report["rows"]] == [4]  # left out of the row
    # every file unreadable: status 2
    protocol.write_text(f"path,label\n{broken},spoof\n{tmp_path / 'missing.wav'},bonafide\n")
    assert main([*argv[:-1], str(tmp_path / "rob2"), "--conditions", "clean", "--workers", "0", "--quiet"]) == 2
    assert "none of the 2 files could be decoded and scored" in capsys.readouterr().err


# --- sdd import-aasist: the window it writes ------------------------------------------------------------


def test_readme_import_aasist_row_names_the_window_the_importer_writes():
    from sddkit.backends import aasist_import

    row = cli_section("sdd import-aasist")  # README's command-table row, until the reference moved to docs/cli.md
    window = aasist_import.WINDOW_SAMPLES
    assert f"{window:,} samples ({window / 16000:.2f} s)" in row
    assert f"half-window hop ({window // 2:,})" in row
    assert "4 s windows with a 2 s hop" not in row


def test_sdd_help_lines_name_what_the_commands_take():
    # `sdd --help` said describe reads "a config or recipe" (its own help and README: a model directory too) and
    # train "a detector" by "ERM/MLDG" (README's row: mixtures too, and SAM)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    lines = " ".join(out.getvalue().split())
    assert "from a config, recipe or model directory" in lines
    assert "train a detector or a mixture from a YAML recipe (ERM/MLDG/SAM" in lines


def test_flags_of_inline_sdd_spans_in_benchmarks_belong_to_their_command():
    """``tests/test_docs_commands.py``'s check of the other documents, for docs/benchmarks.md and the recipes."""
    texts = {"docs/benchmarks.md": (REPO / "docs" / "benchmarks.md").read_text()}
    texts |= {str(p.relative_to(REPO)): p.read_text() for p in sorted((REPO / "recipes").rglob("*.yaml"))}
    problems, seen = [], 0
    for name, text in texts.items():
        if name.endswith(".yaml"):  # the comments, as a code block
            text = (
                "```\n" + "\n".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#")) + "\n```"
            )
        for argv in sdd_command_lines(text, fragments=True):
            seen += 1
            problems += [f"{name}: {error}" for error in check_sdd_call(argv, fragment=True)[1]]
    assert seen > 80
    assert not problems, "\n".join(problems)


def test_building_the_parsers_imports_no_torch_as_the_startup_benchmark_says():
    # docs/benchmarks.md ("Start-up time of the CLI"): `sdd --help` and every usage error cost 0.13-0.16 s because no
    # command module imports torch until it runs
    import subprocess

    assert "`sdd describe` imports torch when it runs" in (REPO / "docs" / "benchmarks.md").read_text()
    code = (
        "import sys\nfrom sddkit.cli.main import _build_parsers\n_build_parsers()\n"
        "print(sorted(m for m in ('torch', 'numpy', 'scipy', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert "torch" not in out, out
