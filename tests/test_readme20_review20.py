"""Review readme20: README.md readable again, the command reference moved to docs/cli.md.

README's command table had cells of 1,000-4,600 characters and a dense "Flags not in the table" paragraph; the
full reference now lives in docs/cli.md, one ``## sdd NAME`` section per command. Pinned here: every command the
parser registers has its README table row and its docs/cli.md section, README links to the reference, no README
line is a wall of text again, and each command's section names every option its ``--help`` lists (and no other
command's bare option).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docs_support import cli_section

from sddkit.cli.main import _build_parsers

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
CLI = (REPO / "docs" / "cli.md").read_text()
COMMANDS = _build_parsers()[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _options(command: str) -> set[str]:
    """The long options ``sdd <command> --help`` lists, ``--help`` itself left out."""
    parser = COMMANDS[command]
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}


def _table_commands() -> list[str]:
    """The command each row of README's command table names first."""
    section = README[README.index("\n## Commands") : README.index("\n## ", README.index("\n## Commands") + 1)]
    return [
        re.match(r"\| `sdd ([a-z-]+)", line).group(1) for line in section.splitlines() if line.startswith("| `sdd ")
    ]


def test_every_command_has_one_readme_table_row():
    rows = _table_commands()
    assert sorted(rows) == sorted(COMMANDS), "one README table row per registered command"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_reference_section_with_its_synopsis(command):
    section = cli_section(f"sdd {command}")  # exactly one `## sdd NAME` heading
    first = section.split("\n\n")[1]
    assert first.startswith(f"`sdd {command}") and first.endswith("`"), "the synopsis, in a code span, comes first"


def test_the_reference_has_no_section_for_a_command_that_does_not_exist():
    named = set(re.findall(r"^## sdd ([a-z-]+)$", CLI, flags=re.M))
    assert named == set(COMMANDS)


def test_readme_links_to_the_reference_and_its_error_section():
    assert "[docs/cli.md](docs/cli.md)" in README
    assert "(docs/cli.md#errors-and-bad-input)" in README
    assert cli_section("Errors and bad input")
    assert "exits with status 2 on bad input" in README  # the short summary README keeps


def test_no_readme_line_is_a_wall_of_text():
    long = [(n, len(line)) for n, line in enumerate(README.splitlines(), 1) if len(line) > 500]
    assert not long, f"README.md lines over 500 characters (line, length): {long}"


def test_readme_table_cells_are_short():
    for line in README.splitlines():
        if line.startswith("| `sdd "):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            assert len(cells) == 2 and all(len(c) <= 250 for c in cells), line


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_reference_section_names_every_option_of_its_command(command):
    named = set(FLAG.findall(cli_section(f"sdd {command}")))
    missing = sorted(_options(command) - named)
    assert not missing, f"docs/cli.md's `sdd {command}` section does not name {missing}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_bare_option_in_a_reference_section_is_its_commands(command):
    """A code span starting ``--flag`` in ``## sdd X`` is an option of X (other commands' flags go with their name)."""
    spans = re.findall(r"`(--[^`]+)`", cli_section(f"sdd {command}"))
    foreign = sorted({f for span in spans for f in FLAG.findall(span) if f not in _options(command)})
    assert not foreign, f"docs/cli.md's `sdd {command}` section names options `sdd {command}` lacks: {foreign}"


def test_readme_keeps_install_quick_start_and_where_results_are():
    for heading in ("## Install and run", "## Quick start", "## Commands", "## Models, recipes and data"):
        assert f"\n{heading}" in README, heading
    assert "\n## Where results are\n" in README
    for link in ("docs/benchmarks.md", "docs/aasist.md", "docs/architecture.md"):
        assert f"`{link}`" in README[README.index("## Where results are") :], link
    assert "bash scripts/setup.sh" in README and ".venv/bin/python -m pytest -q" in README
