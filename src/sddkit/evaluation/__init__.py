"""Score-file readers, evaluation reports (JSON, Markdown, CSV tables) and DET/ROC plots (``sdd eval``), a
mixture's gate-weight tables, paired comparison of two systems (``sdd compare``) and robustness under test
conditions (``sdd robustness``)."""

from sddkit.evaluation.compare import Comparison, compare_scores
from sddkit.evaluation.report import EvalConfig, Report, evaluate, render_markdown, write_report
from sddkit.evaluation.scores import (
    SCORE_READERS,
    ScoreFile,
    ScoreMatch,
    detect_score_format,
    match_scores,
    read_scores,
)

__all__ = [
    "SCORE_READERS",
    "Comparison",
    "EvalConfig",
    "Report",
    "ScoreFile",
    "ScoreMatch",
    "compare_scores",
    "detect_score_format",
    "evaluate",
    "match_scores",
    "read_scores",
    "render_markdown",
    "write_report",
]
