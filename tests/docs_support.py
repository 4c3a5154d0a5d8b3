"""docs/cli.md, the `sdd` command reference that README's command table links to: its sections, for the tests that
pin what it says of each command."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI_MD = REPO / "docs" / "cli.md"


def cli_section(heading: str) -> str:
    """docs/cli.md's ``## <heading>`` section (``sdd score``, ``Errors and bad input``, ...), its ``###``
    subsections included, up to the next ``## `` heading."""
    text = CLI_MD.read_text()
    starts = [m.start() for m in re.finditer(rf"^## {re.escape(heading)}$", text, flags=re.M)]
    assert len(starts) == 1, f"docs/cli.md has {len(starts)} '## {heading}' sections"
    end = text.find("\n## ", starts[0] + 1)
    return text[starts[0] : end if end >= 0 else len(text)]
