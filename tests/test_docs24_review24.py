"""Review docs24: docs/architecture.md's layout table and docs/cli.md's ``sdd eval`` section against the code.

- The layout table had no row for ``assets/`` (the bundled default model every ``--model`` default loads), and the
  ``scoring/`` row named none of its modules, so ``calibrate.py`` (``sdd calibrate``) and ``calibration.py`` (the fit)
  could not be told apart; ``service/server.py``, ``backends/aasist_import.py`` and ``backends/fastpath.py`` were
  named nowhere.
- docs/cli.md's "What the report holds" named neither ``per_corpus.csv``, ``per_codec.csv`` nor ``scores.png``,
  which ``sdd eval`` writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from docs_support import REPO, cli_section

from sddkit.data.table import UtteranceTable
from sddkit.evaluation import evaluate, write_report
from sddkit.registry import all_registries

PACKAGE = REPO / "src" / "sddkit"


def _layout_rows() -> dict[str, str]:
    """docs/architecture.md's layout table: first cell (without backticks) -> the row's description."""
    rows = {}
    for line in (REPO / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `([^`]+)` \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_every_folder_of_the_package_has_a_row_and_the_assets_row_names_what_is_bundled():
    rows = _layout_rows()
    folders = {f"{p.name}/" for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    missing = sorted(folders - set(rows))
    assert not missing, f"docs/architecture.md's layout table has no row for {missing}"
    bundled = PACKAGE / "assets" / "default_model"
    for name in sorted(p.name for p in bundled.iterdir()):
        assert f"`{name}`" in rows["assets/"], f"the assets/ row does not name the bundled {name}"
    script = re.search(r"`(scripts/[a-z_]+\.py)`", rows["assets/"])
    assert script is not None and (REPO / script.group(1)).is_file()


def test_the_scoring_and_service_rows_name_every_module_of_their_package():
    rows = _layout_rows()
    for package in ("scoring/", "service/"):
        modules = sorted(p.name for p in (PACKAGE / package).glob("*.py") if p.name != "__init__.py")
        unnamed = [m for m in modules if f"`{m}`" not in rows[package]]
        assert not unnamed, f"the {package} row of docs/architecture.md does not name {unnamed}"
    for module in ("aasist_import.py", "fastpath.py", "graph.py"):
        assert f"`{module}`" in rows["backends/"]
    for module in ("recipe.py", "checkpoint.py", "provenance.py"):
        assert f"`{module}`" in rows["training/"]


def test_the_registries_the_table_names_are_the_registered_families():
    text = "\n".join(_layout_rows().values())
    named = set(re.findall(r"registry `([a-z]+)`", text))
    assert named == set(all_registries()), (named, set(all_registries()))


def _report_table(n: int = 48) -> tuple[UtteranceTable, np.ndarray]:
    """Trials with every optional column the report breaks down by: two corpora, two partitions, codecs,
    vocoders and two attack types."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        bona = i % 2 == 0
        records.append(
            {
                "utt_id": f"u{i}",
                "path": f"u{i}.wav",
                "label": "bonafide" if bona else "spoof",
                "attack": "-" if bona else f"A0{i % 3}",
                "source": f"s{i % 3}",
                "corpus": f"c{i % 4 // 2}",
                "partition": "eval" if i % 8 < 4 else "progress",
                "codec": f"C0{i % 2}",
                "vocoder": "-" if bona else ("hifigan" if i % 4 == 1 else "waveglow"),
                "attack_type": "-" if bona else ("tts" if i % 4 == 1 else "vc"),
            }
        )
    labels = np.array([i % 2 == 0 for i in range(n)], dtype=float)
    return UtteranceTable.from_records(records), labels + rng.normal(size=n)


def test_cli_md_names_every_file_sdd_eval_writes(tmp_path):
    table, scores = _report_table()
    gates = np.full((len(scores), 2), 0.5)
    report = evaluate(table, scores, gate_weights=gates, expert_names=["a", "b"])
    written = sorted(p.name for p in write_report(report, tmp_path).values())
    assert {"per_corpus.csv", "per_codec.csv", "scores.png"} <= set(written)
    section = cli_section("sdd eval")
    unnamed = [
        name
        for name in written
        # the gate-weight tables and heatmaps are named together: `gate_weights_by_source.csv`/`.png`
        if f"`{name}`" not in section and f"`{Path(name).stem}.csv`/`.png`" not in section
    ]
    assert not unnamed, f"docs/cli.md's sdd eval section does not name {unnamed}"
