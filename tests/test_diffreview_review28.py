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

from sddkit.data.table import UtteranceTable
from sddkit.evaluation import EvalConfig, evaluate
from sddkit.evaluation.asv import read_asv_scores
from sddkit.evaluation.report import render_markdown

SPEAKER = "LA_0007-alaw-ita_tx"


def _asv2021(tmp_path: Path) -> Path:
    """ASVspoof 2021 ASV key lines with their scores appended, of three phases: A08's ASV spoofs all score below the
    ASV's EER threshold in eval (Pfa_spoof 0) and above it in progress and hidden (Pfa_spoof 1)."""
    lines = []
    for phase, shift in (("eval", 0.0), ("progress", 5.0), ("hidden", 5.0)):
        for i, score in enumerate((3.0, 2.5, 2.0)):
            lines.append(
                f"{SPEAKER} LA_E_1{i}{len(phase)}-alaw-ita_tx alaw ita_tx bonafide target notrim {phase} {score}"
            )
        for i, score in enumerate((-1.0, 0.0, 2.2)):
            lines.append(
                f"{SPEAKER} LA_E_9{i}{len(phase)}-alaw-ita_tx alaw ita_tx bonafide nontarget notrim {phase} {score}"
            )
        for attack, score in (("A07", 2.4), ("A07", -2.0), ("A08", 1.0 + shift)):
            trial = f"LA_E_8{attack[1:]}{len(phase)}-alaw-ita_tx"
            lines.append(f"{SPEAKER} {trial} alaw ita_tx {attack} spoof notrim {phase} {score}")
    path = tmp_path / "asv2021.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


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
