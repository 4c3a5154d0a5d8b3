"""Review card20: the bundled model's card answers a practitioner's questions on its first screen.

Its opening "Status" paragraph was a log of which model was bundled at which hour of 2026-12-05, with each one's
figures, so a reader went through about 20 lines of history before learning what the model is, how good it is and
what not to use it for. Pinned here: the first 40 lines hold the status (what it is, the target it misses, the
warning), a table of the key figures copied from the card's own "Results" and "Known limits" (never a figure of its
own) and the rebuild commands; the earlier models and their figures live in a "History" section near the end.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from docs_support import flat, markdown_section

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "src" / "sddkit" / "assets" / "default_model"
CARD = (MODEL_DIR / "MODEL_CARD.md").read_text()
CONFIG = json.loads((MODEL_DIR / "config.json").read_text())
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _results() -> dict[str, tuple[str, ...]]:
    """The clean rows of the Results table: partition -> (EER, CI low, CI high, mean over sources, FRR, FAR)."""
    results = markdown_section(CARD, "Results")
    rows = re.findall(
        r"^\| (\w+) \| clean \| \d+ / \d+ \| ([\d.]+) \[([\d.]+), ([\d.]+)\] \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|",
        results[: results.index("For reference")],  # the published AASIST weights' table follows
        re.M,
    )
    return {row[0]: row[1:] for row in rows}


def _top() -> str:
    return CARD[: CARD.index("\n## What it is")]


def test_the_first_40_lines_give_the_status_the_key_figures_and_the_rebuild_commands():
    head = "\n".join(CARD.splitlines()[:40])
    head_flat = flat(head)
    eer = _results()["test_unseen"][0]
    assert "**Status: a weak baseline.**" in head
    assert "trained from scratch on sddbench `train`" in head_flat and "`enhanced_mlp` gate" in head_flat
    assert "It misses the target set for it (EER below 20 % on sddbench `test_unseen`)." in head_flat
    assert f"It reaches {eer} %" in head_flat
    assert "Do not use it to decide whether real-world audio is genuine." in head_flat
    # in this order: status, figures, rebuild, then the sections that were there before
    order = [head.index(s) for s in ("**Status:", "## Key figures", "## Rebuild")]
    assert order == sorted(order) and order[-1] < CARD.index("## What it is")
    rebuild = head[head.index("## Rebuild") :]
    for line in (
        "sdd train recipes/sddbench/default_model.yaml ",
        'sdd train recipes/sddbench/default_model.yaml "model.frontend={name: lfb, normalize: true, level_db: -27}"',
        "sdd train recipes/sddbench/default_model_gate.yaml ",
        "python scripts/finalize_default_model.py runs/default_model_gate/best --threads 1",
    ):
        assert f"\n{line}" in rebuild, line
    assert rebuild.count("```") == 2  # the whole block is on the first screen


def test_the_key_figures_are_the_results_sections():
    table = markdown_section(CARD, "Key figures")
    results = _results()
    val, unseen, wild = results["val"], results["test_unseen"], results["test_wild"]
    assert f"| {val[0]} [{val[1]}, {val[2]}] |" in table
    assert f"| **{unseen[0]}** [{unseen[1]}, {unseen[2]}] ({unseen[3]} mean over sources) |" in table
    assert f"| {wild[0]} [{wild[1]}, {wild[2]}] |" in table
    assert f"{unseen[4]} % of the bona fide files rejected, {unseen[5]} % of the spoofs accepted" in table
    narrow = re.search(
        r"stress_narrowband \(clean\): (\d+) of (\d+) bona fide files wrongly rejected \(([\d.]+) %\)",
        markdown_section(CARD, "Results"),
    )
    assert f"| {narrow.group(3)} % ({narrow.group(1)} of {narrow.group(2)}) |" in table
    speed = re.search(
        r"- \*\*Speed:\*\* ([\d-]+x) real time end to end with `sdd score`", markdown_section(CARD, "Known limits")
    )
    assert f"| {speed.group(1)} real time |" in table
    assert f"the stored one ({CONFIG['inference']['threshold']:.4f})" in table
    # copied, never new: every number of the key figures is also in the sections below the first screen
    below = set(NUMBER.findall(CARD[CARD.index("\n## What it is") :]))
    assert set(NUMBER.findall(table)) <= below


def test_the_earlier_models_are_in_a_history_section_near_the_end():
    history = markdown_section(CARD, "History")
    assert CARD.index("\n## History") > CARD.index("\n## Known limits")
    history_flat = flat(history)
    # the average of the two experts (bundled 11:43-14:20 UTC) and its `logmel` expert alone (09:18-11:43 UTC)
    assert "the plain average of the same two experts, reached 39.1 % on `test_unseen`" in history_flat
    assert "its `logmel` expert alone (09:18-11:43 UTC) reached 42.0 %" in history_flat
    assert "the models bundled before reached 40.5 % (80 bands), 39.1 %, 40.3 % and 40.8 %" in history_flat
    # the status no longer walks through them
    top = flat(_top())
    assert "The model it replaced" not in top and "39.1" not in top and "42.0" not in top
