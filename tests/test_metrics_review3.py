"""Third review of the metrics, `sdd eval` and `sdd compare`: defects found and fixed, one test each."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.data.protocols import read_protocol
from sddkit.evaluation.compare import compare_scores
from sddkit.evaluation.scores import read_scores
from sddkit.metrics import eer


def _noisy(seed: int, labels: np.ndarray, separation: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, 1, labels.size) + separation * labels, 6)


def _score_csv(path, names, values):
    path.write_text("path,score\n" + "".join(f"{n},{v}\n" for n, v in zip(names, values)))
    return read_scores(path)


def test_compare_by_attack_pairs_each_attack_with_the_bona_fide(tmp_path):
    """`sdd compare --by attack` (or attack_type) compared nothing: grouped by value, every attack group holds spoofs
    only (bona fide rows carry the attack 'bonafide'), so all were dropped as one-class. Each attack is now compared
    on its spoofs plus the bona fide trials, as sdd eval's per-attack table and the ASVspoof packages do; with
    several partitions, against its own partition's bona fide."""
    rows, labels = ["path,label,attack,attack_type,partition"], []
    for i in range(48):
        bona = i % 3 == 0
        attack, kind = ("", "-") if bona else (("A1", "A2")[i % 2], ("tts", "vc")[i % 2])
        rows.append(f"f{i}.wav,{'bonafide' if bona else 'spoof'},{attack},{kind},{('dev', 'eval')[i % 4 == 0]}")
        labels.append(int(bona))
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    table = read_protocol(tmp_path / "meta.csv")
    y = np.array(labels)
    names = [f"f{i}.wav" for i in range(48)]
    a, b = _noisy(1, y, 0.5), _noisy(2, y, 2.0)
    base = _score_csv(tmp_path / "a.csv", names, a)
    system = _score_csv(tmp_path / "b.csv", names, b)

    one = compare_scores(table.where(partition="dev"), [base], [system], by="attack", n_bootstrap=50)
    assert [value for value, _ in one.groups] == ["A1", "A2"]
    dev = np.array([i % 4 != 0 for i in range(48)])
    in_a1 = dev & ((y == 1) | (np.arange(48) % 2 == 0))
    group = dict(one.groups)["A1"]
    assert group.n_bonafide == int((dev & (y == 1)).sum()) and group.n_spoof == int((in_a1 & (y == 0)).sum())
    assert group.difference.diff == pytest.approx(eer(y[in_a1], b[in_a1]).eer - eer(y[in_a1], a[in_a1]).eer)

    both = compare_scores(table, [base], [system], by="attack", n_bootstrap=50)
    assert [value for value, _ in both.groups] == ["dev/A1", "dev/A2", "eval/A1"]
    # the headline pools the partitions: said so (sdd eval flags it, sdd compare said nothing)
    assert any("2 partitions pooled (dev, eval)" in note for note in both.notes)
    assert not any("pooled" in note for note in one.notes)
    assert dict(both.groups)["dev/A1"].difference.diff == pytest.approx(group.difference.diff)

    # attack_type (bona fide '-', as sddbench writes it) is grouped the same way
    kinds = compare_scores(table.where(partition="dev"), [base], [system], by="attack_type", n_bootstrap=50)
    assert [value for value, _ in kinds.groups] == ["tts", "vc"]
    assert dict(kinds.groups)["tts"].difference.diff == pytest.approx(group.difference.diff)


def test_jsonl_numeric_id_zero_is_an_id(tmp_path):
    """A JSONL score file with numeric ids (``{"utt_id": 0, ...}``, as json.dumps writes an int id) was refused at
    its first line with "empty utterance id": the id was read as ``row[id] or ""``, which turns 0 into ''."""
    path = tmp_path / "s.jsonl"
    path.write_text('{"utt_id": 0, "score": 1.5}\n{"utt_id": 1, "score": -0.5}\n')
    sf = read_scores(path)
    assert list(sf.ids) == ["0", "1"] and list(sf.scores) == [1.5, -0.5]
