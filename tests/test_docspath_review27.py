"""A new user's walk through README.md, docs/cli.md, docs/architecture.md and docs/aasist.md (review 27): a score
file read with the wrong --score-format names the separator it holds, and the architecture's config helpers are
called as it writes them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sddkit.cli.main import main
from sddkit.errors import ProtocolError
from sddkit.evaluation.scores import read_scores

REPO = Path(__file__).resolve().parents[1]


def _scores(tmp_path: Path, separator: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(separator.join(["path", "score"]) + "\n" + separator.join(["a.wav", "0.5"]) + "\n")
    return path


@pytest.mark.parametrize(
    ("separator", "name", "forced", "fits", "kind"),
    [("\t", "scores.tsv", "csv", "tsv", "tab"), (",", "scores.csv", "tsv", "csv", "comma")],
)
def test_a_score_file_read_with_the_other_separator_says_which_format_reads_it(
    tmp_path, separator, name, forced, fits, kind
):
    # the header holds `path` and `score`, so "needs an id column" alone contradicted what the user sees
    path = _scores(tmp_path, separator, name)
    with pytest.raises(ProtocolError, match=rf"{kind}-separated.*--score-format {fits}"):
        read_scores(path, forced)
    assert read_scores(path, fits).scores.tolist() == [0.5]  # and that format reads it


def test_sdd_eval_names_the_separator_of_a_tsv_given_as_csv(tmp_path, capsys):
    scores = _scores(tmp_path, "\t", "scores.tsv")
    protocol = tmp_path / "meta.csv"
    protocol.write_text("path,label\na.wav,bonafide\n")
    code = main(
        ["eval", "--scores", str(scores), "--score-format", "csv", "--protocol", str(protocol)]
        + ["--out", str(tmp_path / "report")]
    )
    assert code == 2
    assert "tab-separated, so read it as tsv (--score-format tsv" in capsys.readouterr().err


def test_a_header_without_its_columns_keeps_the_plain_message(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("file,value\na.wav,0.5\n")
    with pytest.raises(ProtocolError) as info:
        read_scores(path, "csv")
    assert "separated" not in str(info.value) and "needs an id column" in str(info.value)


def test_the_architecture_calls_apply_overrides_as_it_is_called():
    from sddkit import config

    row = next(line for line in (REPO / "docs" / "architecture.md").read_text().splitlines() if "`config.py`" in line)
    call = re.search(r"`(apply_overrides\([^`]*\))`", row).group(1)
    data = {"a": {"b": 0}}
    assert eval(call, {"apply_overrides": config.apply_overrides, "data": data}) == {"a": {"b": 1}}
    assert data == {"a": {"b": 0}}  # a new dict, as the row says
