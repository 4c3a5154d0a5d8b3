"""Review 27 of docs/benchmarks.md's commands: nothing overwritten or mixed silently, bad partitions refused first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from script_support import load_script

from sddkit.errors import SddkitError


def _corpus(folder: Path, rows: list[tuple[str, str]]) -> Path:
    """A tiny sddbench-style corpus: one second of noise per (label, partition) row, and its manifest.csv."""
    (folder / "audio").mkdir(parents=True)
    records = []
    for i, (label, part) in enumerate(rows):
        path = f"audio/f{i}.flac"
        sf.write(folder / path, 0.1 * np.random.default_rng(i).standard_normal(16000).astype(np.float32), 16000)
        system = "-" if label == "bonafide" else "s"
        records.append(
            {"path": path, "label": label, "partition": part, "system": system, "attack_type": "tts"}
            | {"source": "src", "speaker": f"spk{i}", "duration_s": 1.0}
        )
    pd.DataFrame(records).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def test_make_copysynth_refuses_an_out_holding_a_manifest(tmp_path, monkeypatch):
    # --out set to the corpus's own folder replaced the corpus's manifest.csv with the copies' one (data loss), and a
    # second run into the same folder dropped the first run's rows from its manifest
    copysynth = load_script("scripts/make_copysynth.py")
    manifest = _corpus(tmp_path / "corpus", [("bonafide", "train"), ("spoof", "train"), ("bonafide", "val")])
    before = manifest.read_bytes()
    synthesised = []
    monkeypatch.setattr(copysynth, "copy_synthesis", lambda wave, *a, **k: synthesised.append(1) or wave)
    with pytest.raises(SddkitError, match="already holds a manifest.csv"):
        copysynth.main([str(manifest), "--out", str(manifest.parent)])
    assert manifest.read_bytes() == before
    assert synthesised == []  # refused before any synthesis, not after minutes of it

    out = tmp_path / "cs"
    assert copysynth.main([str(manifest), "--partitions", "train", "--out", str(out), "--n-iter", "2"]) == 0
    first = (out / "manifest.csv").read_text()
    with pytest.raises(SddkitError, match="already holds a manifest.csv"):
        copysynth.main([str(manifest), "--partitions", "val", "--out", str(out), "--n-iter", "2"])
    assert (out / "manifest.csv").read_text() == first


@pytest.mark.parametrize(
    ("partitions", "message"),
    [(["val", "vall"], r"no partitions \['vall'\]"), (["val", "test_wild"], "test_wild: .* only bona fide files")],
)
def test_bench_default_model_checks_every_partition_before_scoring(tmp_path, monkeypatch, partitions, message):
    # a misspelt or one-class partition after the first was refused only once the partitions before it had been
    # scored and bootstrapped (minutes for a large model)
    bench = load_script("benchmarks/bench_default_model.py")
    manifest = _corpus(
        tmp_path / "corpus",
        [("bonafide", "val"), ("spoof", "val"), ("bonafide", "test_wild"), ("bonafide", "test_wild")],
    )

    def no_scoring(*args, **kwargs):
        raise AssertionError("a partition was scored before every partition was checked")

    monkeypatch.setattr(bench, "load_waveforms", no_scoring)
    argv = ["--manifest", str(manifest), "--partitions", *partitions, "--no-stress", "--codec", "none"]
    with pytest.raises(SddkitError, match=message):
        bench.main(argv)


def test_score_fusion_says_when_files_scored_by_one_model_are_left_out(tmp_path, capsys):
    # the table is over the files every model scored: a score file cut short (an interrupted `sdd score`) shrank
    # every model's partitions, and only the counts in the column heads could tell
    fusion = load_script("benchmarks/bench_score_fusion.py")
    rows = [(f"audio/v{i}.flac", "bonafide" if i % 2 else "spoof", "val") for i in range(20)]
    rows += [(f"audio/t{i}.flac", "bonafide" if i % 2 else "spoof", "test_unseen") for i in range(10)]
    manifest = tmp_path / "manifest.csv"
    table = pd.DataFrame(rows, columns=["path", "label", "partition"])
    table.assign(system="s", attack_type="tts", source="src", speaker="spk", duration_s=1.0).to_csv(
        manifest, index=False
    )
    rng = np.random.default_rng(0)
    models = []
    for name, n in (("a", len(rows)), ("b", len(rows) - 4)):  # b misses 4 test_unseen files
        paths = [str(tmp_path / p) for p, _, _ in rows[:n]]
        pd.DataFrame({"path": paths, "raw_score": rng.normal(size=n)}).to_csv(tmp_path / f"{name}.csv", index=False)
        models.append(f"{name}={tmp_path / f'{name}.csv'}")
    fusion.main([*models, "--manifest", str(manifest)])
    out, err = capsys.readouterr()
    assert "the models scored a 30, b 26; the figures are over the 26 that every model scored" in err
    assert "test_unseen EER % (3 / 3)" in out  # the table itself as before

    fusion.main([models[0], models[0].replace("a=", "c="), "--manifest", str(manifest)])
    assert "note:" not in capsys.readouterr().err  # nothing to say when every model scored the same files
