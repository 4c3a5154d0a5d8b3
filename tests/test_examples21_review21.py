"""Review examples21: every command section of docs/cli.md opens with a worked example that parses.

docs/cli.md had no example at all. Each ``## sdd NAME`` section now has one fenced block right after its synopsis
with an ``sdd NAME`` call, and every ``sdd`` call in the page's fenced blocks parses with the real CLI parser
(``sddkit.cli.main.parse_args`` over ``_build_parsers()``: nothing is executed) and spells each of its options in
full (argparse would also take an abbreviation such as ``--partition``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex

import pytest
from docs_support import CLI_MD, cli_section

from sddkit.cli.main import _build_parsers, parse_args

COMMANDS = _build_parsers()[1]
FENCE = re.compile(r"```[^\n]*\n(.*?)```", flags=re.S)
OPERATOR = re.compile(r"^[;&|<>()]+$")


def _sdd_calls(text: str) -> list[list[str]]:
    """The argv (``sdd`` first) of every ``sdd`` call in ``text``'s fenced blocks: backslash continuations joined,
    ``# ...`` comments cut, a line split at the shell's ``;``, ``&&``, ``|``, ``&``."""
    calls = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            command: list[str] = []
            for token in [*lexer, ";"]:
                if OPERATOR.match(token):
                    if command[:1] == ["sdd"]:
                        calls.append(command)
                    command = []
                else:
                    command.append(token)
    return calls


def _problems(text: str) -> list[str]:
    """What is wrong with the ``sdd`` calls in ``text``'s fenced blocks: a parse error, an abbreviated option."""
    problems = []
    for argv in _sdd_calls(text):
        line = shlex.join(argv)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parse_args(*_build_parsers(), argv[1:])
        except SystemExit:
            problems.append(f"`{line}`: {err.getvalue().strip().splitlines()[-1:]}")
            continue
        parser: argparse.ArgumentParser = COMMANDS[argv[1]]
        known = {option for action in parser._actions for option in action.option_strings}
        options = [token.split("=")[0] for token in argv[2:] if token.startswith("--") and token != "--"]
        problems += [
            f"`{line}`: {option} is not an option of `sdd {argv[1]}`" for option in options if option not in known
        ]
    return problems


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_section_opens_with_an_example_of_its_command(command):
    section = cli_section(f"sdd {command}")
    after_synopsis = section.split("\n\n")[2]
    assert after_synopsis.startswith("```"), f"`## sdd {command}`: no fenced example right after the synopsis"
    calls = _sdd_calls(section)
    assert any(argv[1:2] == [command] for argv in calls), f"`## sdd {command}`'s example does not call `sdd {command}`"


def test_every_sdd_call_in_the_reference_parses_with_the_cli_parser():
    text = CLI_MD.read_text()
    calls = _sdd_calls(text)
    assert len(calls) >= len(COMMANDS)
    problems = _problems(text)
    assert not problems, "docs/cli.md:\n" + "\n".join(problems)


def test_the_check_finds_a_misspelt_or_shortened_option_and_an_unknown_command():
    good = "```bash\nsdd eval --scores s.csv --protocol p.csv --out r/   # a report\n```\n"
    assert _sdd_calls(good) == [["sdd", "eval", "--scores", "s.csv", "--protocol", "p.csv", "--out", "r/"]]
    assert not _problems(good)
    for bad in (
        "sdd eval --scorse s.csv --protocol p.csv --out r/",  # misspelt
        "sdd eval --scores s.csv --protocol p.csv --out r/ --partition val",  # argparse takes the abbreviation
        "sdd evaluate --scores s.csv",  # no such command
        "sdd demo --out d/ && sdd score a.wav \\\n    --model m --outt x.csv",  # second call, continued line
        "sdd serve --port 8000 --max-concurent 4 &",
    ):
        assert _problems(f"```bash\n{bad}\n```\n"), bad
