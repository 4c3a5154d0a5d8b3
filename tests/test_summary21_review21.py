"""Review summary21: docs/benchmarks.md's summary table readable again.

Its "measured" cells had grown to 1,000-1,940 characters (the default model's EER, the speed, mixture and MLDG
targets), so a reader looking for whether a target was met had to dig. Each cell now gives the headline figures and
points to "### Details of the summary", right after the table, which keeps the full text, one bullet per target.
Pinned here: the cells stay short, each row keeps a status word of those used, every target has its details bullet
in the table's order, and every figure a cell quotes is in its target's details (so the two cannot drift apart).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docs_support import flat, markdown_section

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = (REPO / "docs" / "benchmarks.md").read_text()
SUMMARY = markdown_section(BENCHMARKS, "Summary against the issues' targets")
DETAILS_HEADING = "\n### Details of the summary\n"
STATUS = re.compile(r"(\*\*(met|missed|no|done)\*\*|reference)( \(.+\))?")


def _table_rows() -> list[list[str]]:
    """The (target, measured, status) cells of each row of the summary table, header and separator left out."""
    table = SUMMARY.split(DETAILS_HEADING)[0]
    rows = [
        [c.strip() for c in line.strip().strip("|").split(" | ")] for line in table.splitlines() if line[:2] == "| "
    ]
    assert rows[0] == ["target", "measured", "status"]
    return rows[1:]


def _details() -> list[str]:
    """The top-level bullets of the details subsection, each with its sub-bullets, white space flattened."""
    assert DETAILS_HEADING in SUMMARY, "the summary has no '### Details of the summary' subsection"
    text = SUMMARY.split(DETAILS_HEADING)[1]
    return [flat(b) for b in re.split(r"\n(?=- )", text)[1:]]


def _details_of(target: str) -> str:
    found = [b for b in _details() if b.startswith(f"- **{target}**:")]
    assert len(found) == 1, f"{len(found)} details bullets for the target {target!r}"
    return found[0]


def test_the_summary_table_keeps_the_issues_targets():
    targets = [r[0] for r in _table_rows()]
    assert all(len(r) == 3 for r in _table_rows())
    assert len(targets) == len(set(targets))
    for start in (
        "default model EER on sddbench `test_unseen` < 20 %",
        "default model scores >= 100x real time on 2 cores",
        "MLDG beats ERM on unseen generators",
        "a mixture beats the best single expert",
        "robustness table of the bundled default model (issue 6)",
    ):
        assert any(t.startswith(start) for t in targets), start


def test_the_summary_tables_cells_are_short():
    long = [(r[0][:40], len(c)) for r in _table_rows() for c in r if len(c) > 300]
    assert not long, f"summary table cells over 300 characters (target, length): {long}"


def test_every_target_row_has_a_status_word_of_those_used():
    for target, _, status in _table_rows():
        assert STATUS.fullmatch(status), f"{target!r}: status {status!r}"


def test_each_target_has_one_details_bullet_in_the_tables_order():
    targets = [r[0] for r in _table_rows()]
    bullets = _details()
    assert len(bullets) == len(targets)
    for target, bullet in zip(targets, bullets):
        assert bullet.startswith(f"- **{target}**:"), target


def test_the_tables_pointers_lead_to_the_details():
    anchors = set(re.findall(r"\]\(#([a-z0-9-]+)\)", SUMMARY.split(DETAILS_HEADING)[0]))
    assert anchors == {"details-of-the-summary"}  # GitHub's anchor of "### Details of the summary"


@pytest.mark.parametrize("target, measured", [r[:2] for r in _table_rows()], ids=[r[0][:40] for r in _table_rows()])
def test_every_figure_a_cell_quotes_is_in_its_targets_details(target, measured):
    details = _details_of(target)
    words = {w.strip("*()[];,:.") for w in measured.split() if re.search(r"\d", w) and "](#" not in w}
    missing = sorted(w for w in words if w not in details)
    assert not missing, f"{target!r}: figures of the table's cell not in its details: {missing}"


def test_the_bundled_models_headline_is_in_the_cell_and_its_details():
    target, measured, status = _table_rows()[0]
    assert target.startswith("default model EER") and status == "**missed**"
    headline = re.match(r"\*\*[\d.]+ %\*\* \[[\d.]+, [\d.]+\] \(mean over sources [\d.]+ %\)", measured)
    assert headline is not None, measured
    val = re.search(r"selected on `val` \([\d.]+ %\)", measured)
    assert val is not None, measured
    details = _details_of(target)
    assert f"- {headline.group(0)}: the model bundled since" in details
    assert f"{val.group(0)}." in details
