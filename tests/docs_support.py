"""The project's Markdown documents (docs/cli.md, the `sdd` command reference README's command table links to,
docs/benchmarks.md, the model card) read by section, for the tests that pin what they say; and the `sdd` command
lines they write, found (:func:`sdd_command_lines`) and checked by the real CLI parser (:func:`check_sdd_call`)."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI_MD = REPO / "docs" / "cli.md"


def flat(text: str) -> str:
    """``text`` with every run of white space (line breaks of wrapped paragraphs included) one space."""
    return " ".join(text.split())


def _section_from(text: str, start: int) -> str:
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def markdown_section(text: str, heading: str) -> str:
    """The first section of ``text`` whose ``## `` heading starts with ``heading``, its ``###`` subsections included,
    up to the next ``## `` heading (ValueError when there is none)."""
    return _section_from(text, text.index(f"\n## {heading}"))


def markdown_subsection(text: str, heading: str) -> str:
    """The first ``### `` subsection of ``text`` whose heading starts with ``heading``, up to the next heading of
    level 1 to 3 (ValueError when there is none)."""
    start = text.index(f"\n### {heading}")
    end = re.search(r"\n#{1,3} ", text[start + 1 :])
    return text[start : start + 1 + end.start() if end else len(text)]


def cli_section(heading: str) -> str:
    """docs/cli.md's ``## <heading>`` section (``sdd score``, ``Errors and bad input``, ...), its ``###``
    subsections included, up to the next ``## `` heading; the heading must match whole, and once."""
    text = CLI_MD.read_text()
    starts = [m.start() for m in re.finditer(rf"^## {re.escape(heading)}$", text, flags=re.M)]
    assert len(starts) == 1, f"docs/cli.md has {len(starts)} '## {heading}' sections"
    return _section_from(text, starts[0])


# --- the `sdd` command lines of a document, and the real CLI parser's word on them --------------------------------

FENCE = re.compile(r"```[^\n]*\n(.*?)```", flags=re.S)
# an option as written (`--out`, in a synopsis `[--workers N]` too), and a call as prose names it (`sdd score`)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
SDD_CALL = re.compile(r"(?<![\w./-])sdd ([a-z][a-z0-9-]*)")
_OPERATOR = re.compile(r"^[;&|<>()]+$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
_SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")
# words that may stand before a command in a segment: a `$ ` prompt, a loop's or a condition's keyword, `time`
_LEADERS = {"$", "do", "then", "else", "time"}
# the placeholders the documents' command lines use, and a value of the right kind for each (`sdd_command_lines`'s
# `placeholders`)
PLACEHOLDERS = [
    (re.compile(r"\bseed=S\b"), "seed=1"),
    (re.compile(r"--first-seed S\b"), "--first-seed 1"),
    (re.compile(r" OVERRIDE\b"), ""),
    (re.compile(r"\{name: F,"), "{name: lfcc,"),
    (re.compile(r"\.\.\.the recipe's list\.\.\., "), ""),
    (re.compile(r"--allocator (?:MODE|A)\b"), "--allocator tuned"),
    # "`TRAIN` = the default recipe's `train` list" (docs/benchmarks.md)
    (
        re.compile(r"data\.train=TRAIN\b"),
        "data.train=[{protocol: ../shared/data/sddbench/manifest.csv, format: sddbench, "
        "options: {partitions: [train]}, exclude: {source: [resemblyzer]}}]",
    ),
]


def _code_blocks(text: str) -> tuple[list[str], str]:
    """The fenced blocks' texts, then ``text`` without them (indented code blocks and inline spans are in it)."""
    return FENCE.findall(text), FENCE.sub("", text)


def _indented_sdd_lines(rest: str) -> list[str]:
    return re.findall(r"^ {4,}(sdd .*)$", rest, flags=re.M)


def _logical_lines(block: str) -> list[str]:
    """The command lines of a shell block, comments cut, as the shell reads them: a backslash-newline joins two
    lines, a newline inside quotes stays in its word, a ``#`` opens a comment at the start of a word outside quotes."""
    lines: list[str] = []
    code: list[str] = []
    in_comment, quote = False, None
    block = block.replace("\\\n", " ")
    i = 0
    while i < len(block):
        char = block[i]
        if char == "\n" and not quote:
            lines.append("".join(code))
            code, in_comment = [], False
        elif in_comment:
            pass
        elif char == "\\" and quote != "'" and i + 1 < len(block):  # an escaped character, a quote included
            code += block[i : i + 2]
            i += 1
        elif quote:
            quote = None if char == quote else quote
            code.append(char)
        elif char in "'\"":
            quote = char
            code.append(char)
        elif char == "#" and (not code or code[-1].isspace()):
            in_comment = True
        else:
            code.append(char)
        i += 1
    lines.append("".join(code))
    return [line for line in lines if line.strip()]


def _shell_segments(line: str) -> list[list[str]]:
    """The words of each simple command of ``line`` (split at ``;``, ``&&``, ``||``, ``|``, ``&``, redirections)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # cut before (_logical_lines): shlex would also cut `runs/a#1`
    segments: list[list[str]] = [[]]
    for token in lexer:
        if _OPERATOR.match(token):
            segments.append([])
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def shell_commands(text: str, placeholders: Sequence[tuple[re.Pattern[str], str]] = ()) -> list[list[str]]:
    """The simple commands (their words, the program first) of ``text``'s fenced code blocks and of its indented
    ``sdd`` lines, as a shell would split them: backslash continuations joined, ``# ...`` comments cut, ``$(...)``
    one word (its inside a command of its own), ``VAR="..."`` (and a ``for VAR in FIRST ...`` loop's first value)
    expanded where ``$VAR`` is used; a leading ``$ `` prompt, ``VAR=value`` environment prefixes, ``do``/``then``/
    ``time`` dropped. ``placeholders``: (pattern, value) substitutions made on each block first."""
    blocks, rest = _code_blocks(text)
    blocks += _indented_sdd_lines(rest)
    commands = []
    for block in blocks:
        variables: dict[str, str] = {}
        for pattern, value in placeholders:  # first: `[...the recipe's list...]` holds a quote
            block = pattern.sub(value, block)
        for line in _logical_lines(block):
            loop = re.search(r"\bfor (\w+) in ([^\s;]+)", line)
            if loop:
                variables[loop.group(1)] = loop.group(2)
            for name, value in variables.items():
                line = re.sub(rf"\$\{{{name}\}}|\${name}(?!\w)", lambda _m, v=value: v, line)
            inner = _SUBSTITUTION.findall(line)
            line = _SUBSTITUTION.sub(lambda m: shlex.quote(m.group(0)), line)
            for part in [line, *inner]:
                for words in _shell_segments(part):
                    if all(_ASSIGNMENT.match(word) for word in words):  # `F="--hold-out a ..."`: set, not run
                        variables.update(word.split("=", 1) for word in words)
                        continue
                    while words and (words[0] in _LEADERS or _ASSIGNMENT.match(words[0])):
                        words = words[1:]
                    if words:
                        commands.append(words)
    return commands


def sdd_command_lines(
    text: str, *, fragments: bool = False, placeholders: Sequence[tuple[re.Pattern[str], str]] = ()
) -> list[list[str]]:
    """The argv (``sdd`` first) of every ``sdd`` call in the Markdown ``text``.

    By default the whole command lines of its fenced code blocks (and indented ``sdd`` lines), split as
    :func:`shell_commands` splits them; an ``sdd`` (or ``.../sdd``) word anywhere in a simple command starts a call
    (``nice -n 15 sdd train ...``). ``fragments=True``: every ``sdd CMD ...`` that the document's code names, whole
    or not: each inline code span, and each line of its code blocks (continuations joined) with its comment as a
    snippet of its own; a call runs to the snippet's next ``&&``, ``||``, ``;``, `` | `` or ``sdd CMD``, its words
    split at white space (a synopsis such as ``sdd score [--workers N]`` is one)."""
    if fragments:
        blocks, rest = _code_blocks(text)
        snippets = re.findall(r"`([^`]+)`", rest)
        for line in "\n".join([*blocks, *_indented_sdd_lines(rest)]).replace("\\\n", " ").splitlines():
            # the comment apart, at its `#` (quotes not followed: prose such as "the recipe's" holds one)
            snippets += [part for part in re.split(r"(?:^|\s)#", line, maxsplit=1) if part.strip()]
        calls = []
        for snippet in snippets:
            for part in re.split(r"&&|\|\||;|\s\|\s", snippet):
                for match in SDD_CALL.finditer(part):
                    tail = part[match.end() :]
                    following = SDD_CALL.search(tail)
                    calls.append(["sdd", match.group(1), *(tail[: following.start()] if following else tail).split()])
        return calls
    calls = []
    for words in shell_commands(text, placeholders):
        starts = [i for i, word in enumerate(words) if word == "sdd" or word.endswith("/sdd")]
        for start, end in zip(starts, [*starts[1:], len(words)]):
            calls.append(["sdd", *words[start + 1 : end]])
    return calls


def parser_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string ``parser`` takes, spelled in full."""
    return {option for action in parser._actions for option in action.option_strings}


def check_sdd_call(argv: Sequence[str], *, fragment: bool = False) -> tuple[argparse.Namespace | None, list[str]]:
    """(the parsed arguments, what is wrong) of an ``sdd`` call, by the real CLI parser (``sddkit.cli.main``):
    an unknown command, an option the command does not have, one abbreviated (argparse would take ``--partition``
    for ``--partitions``), and, unless ``fragment`` (a call a document names in part), argparse's error for the
    whole argv. The parsed arguments are None for a fragment or when the parser refused the argv."""
    from sddkit.cli.main import _build_parsers, parse_args

    top, commands = _build_parsers()
    line = shlex.join(argv)
    name = argv[1] if len(argv) > 1 else ""
    if name.startswith("-"):  # `sdd --version`
        parser, rest = top, list(argv[1:])
    elif name in commands:
        parser, rest = commands[name], list(argv[2:])
    else:
        return None, [f"`{line}`: no command `sdd {name}` (commands: {', '.join(commands)})"]
    if "--" in rest:  # after it every word is a positional
        rest = rest[: rest.index("--")]
    problems = []
    if not fragment:  # `[--cluster-by speaker|source]` is a synopsis: the shell would run `source]` after a pipe
        problems += [
            f"`{line}`: {word} is a synopsis's optional part, not a word of a command"
            for word in rest
            if word.startswith("[-")
        ]
    written = {word.split("=")[0] for word in rest if word.startswith("--")}
    written |= {flag for word in rest for flag in FLAG.findall(word)}
    known = parser_options(parser)
    for option in sorted(written - known):
        full = sorted(k for k in known if k.startswith(option))
        what = f"an abbreviation of {' or '.join(full)}: spell it in full" if full else "not one of its options"
        problems.append(f"`{line}`: {option} is {what} (`sdd {name}`)")
    if fragment:
        return None, problems
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = parse_args(top, commands, list(argv[1:]))
    except SystemExit as exit:
        if exit.code not in (0, None):  # --help and --version exit 0
            problems.append(f"`{line}`: {(err.getvalue().strip().splitlines() or ['exit ' + str(exit.code)])[-1]}")
        return None, problems
    return args, problems
