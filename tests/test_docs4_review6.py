"""README.md and docs/architecture.md after the sixth review's changes: what can be pinned mechanically.

``sdd serve --limit-connections`` must exceed ``--max-concurrent`` (refused, and README said nothing of it);
``sdd robustness``'s rows (``n_failed``, ``eer_delta`` in percentage points, ``units``) are named in README's row;
``sdd compare --cluster-by`` with fewer than 2 clusters in a class falls back to the trial bootstrap (README said
only "no verdict"); ``--max-duration-s 0`` is no limit for ``sdd score``/``sdd robustness`` but refused by ``sdd
serve``; ``sdd export-onnx --opset`` under the torch.export exporter is at least 18, not 18; the architecture table
names the modules behind ``sdd robustness``, ``--allocator``, ``inference`` and the web page, and the ``linear``
back-end's layout check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from docs_support import cli_section
from test_docs5_review5 import _layout_rows

from sddkit.cli.main import _build_parsers, main
from sddkit.evaluation.robustness import ROW_COLUMNS

REPO = Path(__file__).resolve().parents[1]


def _row(command: str) -> str:
    """docs/cli.md's section of ``sdd <command>`` (README's command-table row until the reference moved there)."""
    return cli_section(f"sdd {command}")


def _flags_paragraph() -> str:
    """docs/cli.md's options shared by several commands (README's "Flags not in the table" paragraph until then)."""
    return cli_section("Options several commands share")


def test_serve_limit_connections_must_exceed_max_concurrent_as_readme_says(capsys):
    assert "N must exceed `--max-concurrent`" in _row("serve")
    # refused before any model is loaded (a limit of N serves N - 1 connections at once)
    assert main(["serve", "--max-concurrent", "2", "--limit-connections", "2"]) == 2
    assert "--limit-connections must exceed --max-concurrent" in capsys.readouterr().err


def test_readme_robustness_row_names_every_column_and_its_units():
    row = _row("robustness")
    missing = [c for c in ROW_COLUMNS if c not in ("condition", "mode") and f"`{c}`" not in row]
    assert not missing, f"docs/cli.md's sdd robustness section does not name the columns {missing}"
    assert "percentage points" in row and "`units`" in row
    assert "of one class is refused before any file is scored" in row


def test_readme_compare_row_says_what_too_few_clusters_do():
    row = _row("compare")
    assert "resamples its trials one by one" in row
    assert "each with its own `clusters`" in row
    assert "other partitions' trials are noted as such" in row


@pytest.mark.parametrize("command", ["score", "robustness"])
def test_max_duration_zero_is_no_limit_where_readme_says(command):
    assert "0: no limit, which `sdd serve` refuses" in _flags_paragraph()
    action = next(a for a in _build_parsers()[1][command]._actions if "--max-duration-s" in a.option_strings)
    assert "0 = no limit" in action.help


def test_serve_refuses_max_duration_zero(capsys):
    assert main(["serve", "--max-duration-s", "0"]) == 2
    assert "--max-duration-s must be > 0" in capsys.readouterr().err


def test_readme_export_opset_under_torch_export_is_at_least_18():
    row = _row("export-onnx")
    assert "at least 18" in row and "opset, 18," not in row


def test_architecture_table_names_the_modules_of_the_commands():
    rows = _layout_rows()
    assert "`robustness.py`" in rows["evaluation/"] and "`augment/conditions.py`" in rows["evaluation/"]
    assert "`allocator.py`" in rows["scoring/"] and "`inference.py`" in rows["scoring/"]
    assert "`static/`" in rows["service/"]
    assert "`publish_staged`" in rows["outputs.py"]
    assert "cluster bootstrap" in rows["metrics/"]
    # linear checks an explicit layout too; a front-end of one's own declares its layout
    assert "`linear`" in rows["backends/"] and "`feature_layout`" in rows["backends/"]


def test_readme_names_every_key_of_the_compare_json(tmp_path, capsys):
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    rows = [f"a{i}.wav,{'bonafide' if y else 'spoof'},src{i // 20},spk{i % 8}" for i, y in enumerate(labels)]
    (tmp_path / "meta.csv").write_text("path,label,source,speaker\n" + "\n".join(rows) + "\n")
    for name in ("old", "new"):
        scores = labels + rng.normal(size=labels.size)
        (tmp_path / f"{name}.csv").write_text(
            "path,score\n" + "".join(f"a{i}.wav,{s:.6f}\n" for i, s in enumerate(scores))
        )
    out = tmp_path / "cmp.json"
    argv = ["compare", "--protocol", str(tmp_path / "meta.csv"), "--baseline", str(tmp_path / "old.csv")]
    argv += ["--system", str(tmp_path / "new.csv"), "--by", "source", "--cluster-by", "speaker", "--json", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    keys = set(data) | set(data["baseline"]) | set(data["bootstrap"]) | set(data["difference"])
    keys |= set(data["groups"][0]) - set(data)  # a group's own keys (group, clusters)
    row = _row("compare")
    missing = sorted(k for k in keys if f"`{k}`" not in row)
    assert not missing, f"docs/cli.md's sdd compare section does not name the JSON keys {missing}"
