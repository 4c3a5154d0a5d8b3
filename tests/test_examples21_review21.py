"""Review examples21: every command section of docs/cli.md opens with a worked example that parses.

docs/cli.md had no example at all. Each ``## sdd NAME`` section now has one fenced block right after its synopsis
with an ``sdd NAME`` call, and every ``sdd`` call in the page's fenced blocks parses with the real CLI parser
(``sddkit.cli.main.parse_args`` over ``_build_parsers()``, in ``docs_support.check_sdd_call``: nothing is executed)
and spells each of its options in full (argparse would also take an abbreviation such as ``--partition``).
"""

from __future__ import annotations

import pytest
from docs_support import CLI_MD, check_sdd_call, cli_section, sdd_command_lines

from sddkit.cli.main import _build_parsers

COMMANDS = _build_parsers()[1]


def _problems(text: str) -> list[str]:
    """What is wrong with the ``sdd`` calls in ``text``'s fenced blocks: a parse error, an abbreviated option."""
    return [problem for argv in sdd_command_lines(text) for problem in check_sdd_call(argv)[1]]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_section_opens_with_an_example_of_its_command(command):
    section = cli_section(f"sdd {command}")
    after_synopsis = section.split("\n\n")[2]
    assert after_synopsis.startswith("```"), f"`## sdd {command}`: no fenced example right after the synopsis"
    calls = sdd_command_lines(section)
    assert any(argv[1:2] == [command] for argv in calls), f"`## sdd {command}`'s example does not call `sdd {command}`"


def test_every_sdd_call_in_the_reference_parses_with_the_cli_parser():
    text = CLI_MD.read_text()
    calls = sdd_command_lines(text)
    assert len(calls) >= len(COMMANDS)
    problems = _problems(text)
    assert not problems, "docs/cli.md:\n" + "\n".join(problems)


def test_the_check_finds_a_misspelt_or_shortened_option_and_an_unknown_command():
    good = "```bash\nsdd eval --scores s.csv --protocol p.csv --out r/   # a report\n```\n"
    assert sdd_command_lines(good) == [["sdd", "eval", "--scores", "s.csv", "--protocol", "p.csv", "--out", "r/"]]
    assert not _problems(good)
    for bad in (
        "sdd eval --scorse s.csv --protocol p.csv --out r/",  # misspelt
        "sdd eval --scores s.csv --protocol p.csv --out r/ --partition val",  # argparse takes the abbreviation
        "sdd evaluate --scores s.csv",  # no such command
        "sdd demo --out d/ && sdd score a.wav \\\n    --model m --outt x.csv",  # second call, continued line
        "sdd serve --port 8000 --max-concurent 4 &",
    ):
        assert _problems(f"```bash\n{bad}\n```\n"), bad
