"""docs/cli.md lists exactly the robustness conditions the code defines (users type these names)."""

from __future__ import annotations

import re

from docs_support import cli_section, markdown_subsection

from sddkit.augment.conditions import condition_names


def _listed() -> list[str]:
    section = markdown_subsection(cli_section("sdd robustness"), "Conditions")
    return re.findall(r"`([^`\s]+)`", section)


def test_every_condition_is_listed_once():
    listed = [name for name in _listed() if name in set(condition_names())]
    assert sorted(listed) == sorted(condition_names())
    assert len(listed) == len(set(listed))


def test_every_listed_name_is_a_condition_or_an_option():
    # the section names its option, the seed option and the module besides the conditions
    allowed = set(condition_names()) | {"--conditions", "--seed", "sddkit.augment.conditions"}
    unknown = [name for name in _listed() if name not in allowed]
    assert unknown == [], f"docs/cli.md lists names that are not conditions: {unknown}"
