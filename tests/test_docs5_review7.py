"""README.md and docs/architecture.md after the seventh review's changes: what can be pinned mechanically.

``sdd score`` output of a MoLEx model holds ``molex_gate_mean_<i>`` / ``molex_top1_count_<i>`` columns, which
README's column list left out (it named a mixture's only); ``head_scale`` beside the linear head is refused only
when it differs from its default (README said any); the architecture table names ``cli/options.py`` and the
fsync helpers that moved to ``outputs.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from docs_support import cli_section
from test_docs5_review5 import _layout_rows

from sddkit.backends.heads import ClassifierConfig
from sddkit.config import from_dict
from sddkit.detectors import DetectorConfig, build_detector
from sddkit.scoring.api import per_window_stats, stat_columns

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _score_row() -> str:
    """docs/cli.md's ``sdd score`` section (README's command-table row until the reference moved there)."""
    return cli_section("sdd score")


def test_readme_names_the_statistic_columns_a_molex_model_writes():
    torch.manual_seed(0)
    spec = {"name": "ssl", "encoder": {"name": "wav2vec2_tiny", "dropout": 0.0}, "adapter": "molex"}
    model = build_detector(
        from_dict(DetectorConfig, {"frontend": {**spec, "molex": {"num_experts": 3}}, "backend": {"name": "linear"}})
    )
    with torch.no_grad():
        stats = per_window_stats(model.eval()(torch.randn(2, 16000) * 0.1).stats, 2)
    columns = [c for name, value in stats.items() for c in stat_columns(name, value.shape[1])]
    assert columns, "a MoLEx model reports per-window statistics"
    prefixes = sorted({re.sub(r"\d+$", "", c) for c in columns})
    row = _score_row()
    missing = [p for p in prefixes if f"`{p}0,...`" not in row]
    assert not missing, f"docs/cli.md's sdd score section does not name the columns {missing}"
    assert "`gate_w0,...`" in row and "`expert_score0,...`" in row  # a mixture's


def test_head_scale_beside_the_linear_head_is_refused_only_away_from_its_default():
    assert "a `head_scale` other than its default (20) with the linear head" in README
    assert ClassifierConfig(head="linear", head_scale=20.0).head_scale == 20.0  # the default: accepted
    with pytest.raises(ValueError, match="head_scale"):
        ClassifierConfig(head="linear", head_scale=10.0)


def test_architecture_table_names_the_shared_cli_checks_and_the_fsync_helpers():
    import sddkit.cli.options as options
    import sddkit.outputs as outputs

    rows = _layout_rows()
    for name in ("check_minimums", "check_paths_writable"):
        assert f"`{name}`" in rows["cli/"] and hasattr(options, name)
    assert "`options.py`" in rows["cli/"]
    for name in ("fsync_file", "fsync_dir"):
        assert name in rows["outputs.py"] and hasattr(outputs, name)
    # the example import of the registry rule names a module the package's __init__ really imports
    example = re.search(
        r"`from sddkit\.frontends import (\w+)  # noqa: F401`", (REPO / "docs" / "architecture.md").read_text()
    )
    init = (REPO / "src" / "sddkit" / "frontends" / "__init__.py").read_text()
    assert example and re.search(rf"from sddkit\.frontends import [\w, ]*\b{example.group(1)}\b", init)
