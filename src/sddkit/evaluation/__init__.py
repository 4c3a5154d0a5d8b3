"""Score-file readers, evaluation reports (JSON, Markdown, CSV tables) and DET/ROC plots."""

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
    "EvalConfig",
    "Report",
    "ScoreFile",
    "ScoreMatch",
    "detect_score_format",
    "evaluate",
    "match_scores",
    "read_scores",
    "render_markdown",
    "write_report",
]
