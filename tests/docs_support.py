"""The project's Markdown documents (docs/cli.md, the `sdd` command reference README's command table links to,
docs/benchmarks.md, the model card) read by section, for the tests that pin what they say."""

from __future__ import annotations

import re
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
