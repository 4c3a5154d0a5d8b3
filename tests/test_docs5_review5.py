"""README.md and docs/architecture.md after the fifth review's changes: what can be pinned mechanically.

README's encoder list names every registered encoder preset (the Whisper small/medium/large-v3 presets were
added without a word in the README); the architecture table has a row for every top-level module and package of
``src/sddkit`` and names the modules added to its packages (``data/text.py``, ``backends/layout.py``); the
``--help`` texts say what README says of ``sdd serve --host`` and ``sdd robustness --retry-errors``.
"""

from __future__ import annotations

import re
from pathlib import Path

from docs_support import cli_section

from sddkit.cli.main import _build_parsers
from sddkit.frontends import ENCODERS

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "sddkit"


def _readme_bullet(start: str) -> str:
    """The README bullet (``- ...`` and its indented continuation lines) that starts with ``start``."""
    lines = (REPO / "README.md").read_text().splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith(f"- {start}")), None)
    assert first is not None, f"README.md has no bullet starting {start!r}"
    body = [lines[first]]
    for line in lines[first + 1 :]:
        if not line.startswith("  "):
            break
        body.append(line)
    return "\n".join(body)


def _layout_rows() -> dict[str, str]:
    """docs/architecture.md's layout table: first cell (without backticks) -> the row's description."""
    rows = {}
    for line in (REPO / "docs" / "architecture.md").read_text().splitlines():
        match = re.match(r"^\| `([^`]+)` \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_readme_encoder_list_names_every_registered_preset():
    bullet = _readme_bullet("Encoder presets")
    named = set(re.findall(r"`([a-z0-9_]+)`", bullet))
    missing = sorted(set(ENCODERS.names()) - named)
    assert not missing, f"README's encoder presets leave out {missing}"
    assert "WhisperForAudioClassification" in bullet  # whole-model audio-classifier folders load their encoder


def test_architecture_table_has_every_top_level_module_and_names_the_new_modules():
    rows = _layout_rows()
    top = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    top |= {f"{p.name}/" for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    missing = sorted(top - set(rows))
    assert not missing, f"docs/architecture.md's layout table has no row for {missing}"
    # every module a package row names exists in that package
    for package, text in rows.items():
        if package.endswith("/"):
            for module in re.findall(r"`([a-z_]+\.py)`", text):
                assert (PACKAGE / package / module).exists(), f"{package} names {module}, which does not exist"
    assert "`text.py`" in rows["data/"]
    assert "`layout.py`" in rows["backends/"]


def test_help_texts_say_what_the_readme_says_of_the_new_behaviour():
    commands = _build_parsers()[1]
    serve_host = next(a for a in commands["serve"]._actions if "--host" in a.option_strings)
    assert "authentication" in serve_host.help and "warned" in serve_host.help
    robustness = commands["robustness"]
    assert "--retry-errors" in robustness.description
    assert "--retry-errors" in cli_section("sdd robustness")  # README's table row, until the reference moved
    seeds = next(a for a in commands["cv"]._actions if "--seeds" in a.option_strings)
    assert "2**32" in seeds.help
