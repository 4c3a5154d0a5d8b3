"""Review docswalk23: README.md and docs/architecture.md read as a new user would after the day's changes.

- README said the training data preflight names every missing or empty file "all named in one error"; the error
  counts them and names the first three of each protocol (``_SHOWN_PER_SPEC``), as docs/cli.md says ("the first few of
  each protocol"), and it runs on every resume and over ``molex.old_eval`` too.
- README's ``sdd eval`` row and docs/architecture.md's layout table did not name ``--asv-key`` and
  ``evaluation/asv.py``, the reader of the ASV scores the t-DCF and t-EER take.
"""

from __future__ import annotations

import re
from pathlib import Path

from docs_support import flat
from test_train_support import install_tiny, write_corpus, write_tiny_recipe

from sddkit.cli.main import main
from sddkit.training import data as training_data

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def _preflight_sentence() -> str:
    text = flat(README.read_text())
    start = text.index("Every audio file of `data.train`")
    return text[start : text.index(".", text.index("sdd train)", start)) + 1]


def test_readme_says_what_the_preflight_error_names_and_when_it_runs():
    sentence = _preflight_sentence()
    assert "all named" not in sentence
    assert training_data._SHOWN_PER_SPEC == 3 and "names the first three of each protocol" in sentence
    for spec in ("`data.train`", "`data.val`", "`molex.old_eval`", "every resume"):
        assert spec in sentence, spec
    assert "the first few of each protocol" in flat((REPO / "docs" / "cli.md").read_text())


def test_sdd_train_counts_the_missing_files_and_names_the_first_three(tmp_path, monkeypatch, capsys):
    # what the README sentence promises, through the command a user runs
    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "corpus", n=12)
    val = write_corpus(tmp_path / "corpus", n=6, seed=1, partition="val")
    gone = sorted((tmp_path / "corpus").glob("train_*.wav"))[:5]
    for path in gone:
        path.unlink()
    out = tmp_path / "run"
    recipe = write_tiny_recipe(tmp_path, train, val, out)
    assert main(["train", recipe]) == 2
    err = capsys.readouterr().err
    assert "5 of the 18 audio files listed in data.train and data.val are missing" in err
    named = [p.name for p in gone if p.name in err]
    assert len(named) == 3 and "and 2 more" in err, err
    assert not (out / "checkpoints").exists()


def test_readme_eval_row_and_the_layout_table_name_the_asv_key_and_its_module():
    row = next(line for line in README.read_text().splitlines() if line.startswith("| `sdd eval "))
    assert "[--asv-scores FILE [--asv-key FILE]]" in row
    table = (REPO / "docs" / "architecture.md").read_text()
    evaluation = next(line for line in table.splitlines() if line.startswith("| `evaluation/` |"))
    assert re.search(r"`asv\.py`: `read_asv_scores`", evaluation)
    from sddkit.evaluation.asv import read_asv_scores

    assert "key" in read_asv_scores.__code__.co_varnames  # the --asv-key join
