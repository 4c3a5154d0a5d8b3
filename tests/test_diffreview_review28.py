"""Review diffreview (session 46): defects found re-reading the session's changes to ``src/``.

- ``ASVScores.of_phases`` kept the trials of the ASVspoof 2021 phases evaluated but dropped their phases, so when the
  evaluated partitions were some of the ASV file's phases but not all (``--partitions eval progress`` beside an ASV
  file with ``hidden`` lines too), each partition's per-attack min t-DCFs took the ASV trials of every phase selected
  instead of its own phase's (as they do when every phase is evaluated).
- ``evaluate(..., by=["attack"])`` (``sdd eval --by attack``) gives per_attack's own rows; report.md then wrote the
  "Per-attack min-tDCF" subsection twice, once under each of the two tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_tdcfattack_review28 import _asv2021 as tdcf_asv2021

from sddkit.data.table import UtteranceTable
from sddkit.evaluation import EvalConfig, evaluate
from sddkit.evaluation.asv import read_asv_scores
from sddkit.evaluation.report import render_markdown


def _asv2021(tmp_path: Path) -> Path:
    """ASVspoof 2021 ASV key lines with their scores appended, of three phases: A08's ASV spoofs all score below the
    ASV's EER threshold in eval (Pfa_spoof 0) and above it in progress and hidden (Pfa_spoof 1)."""
    return tdcf_asv2021(tmp_path, ("eval", "progress", "hidden"))


def _table_and_scores(partitions: tuple[str, ...]) -> tuple[UtteranceTable, np.ndarray]:
    rng = np.random.default_rng(3)
    records, scores = [], []
    for partition in partitions:
        for i, kind in enumerate(["bonafide"] * 12 + ["A07"] * 8 + ["A08"] * 8):
            label = "bonafide" if kind == "bonafide" else "spoof"
            records.append({"utt_id": f"{partition}{i}", "label": label, "attack": kind, "partition": partition})
            scores.append(round(float(rng.normal(1.0 if kind == "bonafide" else -0.5, 1.0)), 4))
    return UtteranceTable.from_records(records), np.array(scores)


def test_per_attack_rows_of_some_2021_phases_take_each_phases_own_asv_trials(tmp_path):
    asv = read_asv_scores(_asv2021(tmp_path))
    selected, kept = asv.of_phases(["eval", "progress"])
    assert kept == ["eval", "progress"]
    # the trials kept keep their phases: a partition's rows can be restricted to its own phase again
    assert selected.phases is not None
    assert selected.of_phases(["eval"])[0].attack_rates("A08").pfa_spoof == 0.0
    table, scores = _table_and_scores(("eval", "progress"))
    report = evaluate(table, scores, EvalConfig(bootstrap=0), asv_scores=asv)
    rows = {(r["partition"], r["attack"]): r for r in report.per_attack}
    # as when every phase of the file is evaluated: eval's A08 with eval's ASV spoofs (none accepted), progress's
    # with progress's (all accepted); both took eval's and progress's together (0.5)
    assert rows["eval", "A08"]["min_tdcf_asv"] == "attack"
    assert rows["eval", "A08"]["min_tdcf_asv_pfa_spoof"] == 0.0
    assert rows["eval", "A08"]["min_tdcf"]["2019"] is None  # a spoof the ASV rejects costs nothing: undefined
    assert rows["progress", "A08"]["min_tdcf_asv_pfa_spoof"] == 1.0


def test_by_attack_writes_the_per_attack_min_tdcf_section_once(tmp_path):
    table, scores = _table_and_scores(("eval",))
    asv = read_asv_scores(_asv2021(tmp_path)).of_phases(["eval"])[0]
    report = evaluate(table, scores, EvalConfig(bootstrap=0), asv_scores=asv, by=["attack"])
    assert report.per_column["attack"] == report.per_attack
    markdown = render_markdown(report)
    assert markdown.count("## Per attack") == 2  # the per-attack table, and --by attack's repeat of its rows
    assert markdown.count("### Per-attack min-tDCF") == 1
    # under the per-attack table, not under the --by one
    assert markdown.index("### Per-attack min-tDCF") < markdown.index("## Per attack (--by attack")
