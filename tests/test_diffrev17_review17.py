"""Review of the day's diff (diffrev17): the MoLEx expert-use tables' errors name what they are about, and the ASV
enrolment-list detection needs utterance ids."""

from __future__ import annotations

import pytest

from sddkit.data.protocols import detect_format
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation import EvalConfig, evaluate
from sddkit.evaluation.scores import read_scores

ROWS = [("b1", "bonafide", "", 2.0), ("b2", "bonafide", "", 1.0), ("s1", "spoof", "A01", -1.0)]


def _table() -> UtteranceTable:
    return UtteranceTable.from_records(
        [{"utt_id": u, "label": y, "attack": a, "source": "web", "path": f"{u}.wav"} for u, y, a, _ in ROWS]
    )


def test_molex_expert_use_off_the_simplex_is_said_as_such_with_the_file(tmp_path):
    """Was "gate weights must be each file's weights ...; expert scores or gate logits are not gate weights", naming
    neither the score file nor its molex_gate_mean columns: a mixture's message for a MoLEx model's file."""
    path = tmp_path / "molex.csv"
    path.write_text(
        "utt_id,score,molex_gate_mean_0,molex_gate_mean_1\n"
        + "".join(f"{u},{sc},0.25,0.25\n" for u, _, _, sc in ROWS)  # each row sums to 0.5
    )
    with pytest.raises(ProtocolError) as info:
        evaluate(_table(), read_scores(path), EvalConfig(bootstrap=0))
    message = str(info.value)
    assert message.startswith(f"{path}: MoLEx expert use (molex_gate_mean_<k> columns")
    assert "summing to 1" in message and "gate logits" not in message and "\n" not in message


def test_a_negative_molex_router_weight_is_not_called_a_gate_weight(tmp_path):
    path = tmp_path / "molex.csv"
    path.write_text("utt_id,score,molex_gate_mean_0,molex_gate_mean_1\nb1,1.0,1.1,-0.1\n")
    with pytest.raises(ProtocolError, match=r"molex\.csv:2: molex_gate_mean_1 is -0\.1; MoLEx router weights are"):
        read_scores(path)


def test_mixture_gate_weight_errors_keep_their_hint(tmp_path):
    path = tmp_path / "mixture.csv"
    path.write_text("utt_id,score,gate_w0,gate_w1\n" + "".join(f"{u},{sc},2.0,-1.5\n" for u, _, _, sc in ROWS))
    with pytest.raises(ProtocolError, match=r"gate_w1 is -1\.5; gate weights are finite and >= 0"):
        read_scores(path)
    path.write_text("utt_id,score,gate_w0,gate_w1\n" + "".join(f"{u},{sc},2.0,1.5\n" for u, _, _, sc in ROWS))
    with pytest.raises(ProtocolError, match="^gate weights must be .*expert scores or gate logits are not gate"):
        evaluate(_table(), read_scores(path), EvalConfig(bootstrap=0))


@pytest.mark.parametrize("line", ["x.wav ,", "SPK ,,,"])
def test_a_two_field_line_of_bare_commas_is_no_enrolment_list(tmp_path, line):
    """all() over no utterance ids is True: such a line was called an ASV enrolment list."""
    path = tmp_path / "p.txt"
    path.write_text(line + "\n")
    with pytest.raises(ProtocolError) as info:
        detect_format(path)
    assert "enrolment list" not in str(info.value)


def test_an_enrolment_list_is_still_named(tmp_path):
    path = tmp_path / "ASVspoof5.dev.enroll.txt"
    path.write_text("D_4660 D_A0000000316,D_A0000000725,\n")  # a trailing comma: still its ids
    with pytest.raises(ProtocolError, match="an ASV enrolment list"):
        detect_format(path)
