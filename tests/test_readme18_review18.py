"""Eighteenth review: README.md walked as a new user, every command run, after the `lfb` front-end was added.

Pinned here: docs/architecture.md's `features/` row names every spectral feature the package exports (it still
listed three after `LogLinearFilterbank`, the `lfb` front-end's features, joined them), and README's lists of the
spectral front-ends that take `level_db`, `top_db` and `spec_augment` are the registered front-ends whose configs
have those fields (they gained `lfb` with it); `sdd score` reads a labels CSV made on Windows (`audio\\x.wav`) as
the protocol reader does, so the file `sdd eval` takes as its protocol also lists the files to score (every row was
'no such file' and the run exited 1).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch
from scoring_support import save_tiny_lcnn, write_noise_wav

import sddkit.features as features
from sddkit.cli.main import main
from sddkit.registry import get_registry
from sddkit.scoring.batch import read_manifest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
ARCHITECTURE = (REPO / "docs" / "architecture.md").read_text()

# how the documents name each feature module sddkit.features exports
FEATURE_WORDS = {
    "LogMel": "log-Mel",
    "LogLinearFilterbank": "log linear filterbank",
    "LinearSpectrogram": "linear log spectrogram",
    "LFCC": "LFCC",
    "ModifiedGroupDelay": "modified group delay",
    "CQT": "CQT",
    "CQCC": "CQCC",
}


def test_architecture_features_row_names_every_spectral_feature_the_package_exports():
    exported = {
        name
        for name in features.__all__
        if isinstance(getattr(features, name), type) and issubclass(getattr(features, name), torch.nn.Module)
    }
    assert exported == set(FEATURE_WORDS), "a new feature module needs its words here and in docs/architecture.md"
    row = next(line for line in ARCHITECTURE.splitlines() if line.startswith("| `features/` |"))
    listed = re.search(r"spectral features \(([^)]*)\)", row).group(1).split(", ")
    assert sorted(listed) == sorted(FEATURE_WORDS.values())


def _readme_spectral_lists() -> list[set[str]]:
    """The front-end names of each README sentence 'Spectral front-ends (`a`, `b`, ...) take ...'."""
    lists = re.findall(r"Spectral front-ends \(((?:`[a-z]+`(?:, )?)+)\) take", README)
    return [set(re.findall(r"`([a-z]+)`", found)) for found in lists]


def test_readme_lists_exactly_the_front_ends_that_take_level_db_top_db_and_spec_augment():
    registry = get_registry("frontend")

    def takers(option: str) -> set[str]:
        return {
            entry.name
            for entry in registry.entries()
            if entry.config_cls is not None and option in {f.name for f in dataclasses.fields(entry.config_cls)}
        }

    lists = _readme_spectral_lists()
    assert len(lists) == 2  # the level_db sentence and the top_db (and spec_augment) one
    assert "lfb" in lists[0]
    assert lists[0] == takers("level_db")
    assert lists[1] == takers("top_db")
    # mgd (signed group delays, no log spectrum to floor) takes spec_augment without top_db, said after the list
    assert takers("spec_augment") == lists[1] | {"mgd"}
    assert "so does `mgd`, which has no `top_db`" in " ".join(README.split())


# --- a labels CSV made on Windows, as sdd score's manifest ------------------------------------------------------


def _windows_labels_csv(folder: Path) -> Path:
    (folder / "audio").mkdir()
    write_noise_wav(folder / "audio" / "a.wav", 0.5, 0)
    write_noise_wav(folder / "audio" / "b.wav", 0.5, 1)
    csv = folder / "meta.csv"
    csv.write_text("path,label\naudio\\a.wav,bonafide\naudio\\b.wav,spoof\n")
    return csv


def test_a_manifest_path_with_windows_separators_is_the_file_its_forward_slash_form_names(tmp_path):
    csv = _windows_labels_csv(tmp_path)
    assert read_manifest(csv) == [str(tmp_path / "audio" / "a.wav"), str(tmp_path / "audio" / "b.wav")]
    # a list of paths takes the same fallback; a backslash name that exists as written (POSIX allows it) is kept
    (tmp_path / "odd\\name.wav").write_bytes(b"")
    listed = tmp_path / "list.txt"
    listed.write_text("audio\\a.wav\nodd\\name.wav\n")
    assert read_manifest(listed) == [str(tmp_path / "audio" / "a.wav"), str(tmp_path / "odd\\name.wav")]


def test_sdd_score_scores_the_files_of_the_windows_labels_csv_sdd_eval_reads(tmp_path, capsys):
    csv = _windows_labels_csv(tmp_path)
    model = save_tiny_lcnn(tmp_path / "model")
    out = tmp_path / "scores.csv"
    assert main(["score", str(csv), "--model", str(model), "--out", str(out), "--quiet", "--workers", "0"]) == 0
    rows = out.read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == [str(tmp_path / "audio" / n) for n in ("a.wav", "b.wav")]
    assert all(row.endswith(",") for row in rows)  # an empty error column: both scored
    capsys.readouterr()
    report = ["eval", "--scores", str(out), "--protocol", str(csv), "--out", str(tmp_path / "report")]
    assert main([*report, "--bootstrap", "0"]) == 0
    assert "(1 bona fide, 1 spoof)" in capsys.readouterr().out
