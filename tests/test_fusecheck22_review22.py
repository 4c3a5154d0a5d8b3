"""Review fusecheck22: ``sdd fuse`` used as a researcher would (path spellings, partitions, outputs, the math).

Bugs found: a fused file of an ``sdd score`` output whose relative paths are relative to the folder it ran in
(its run record's ``cwd``) wrote those paths as given, so ``sdd eval`` of the fused file from another folder matched
nothing by path; ``--fit-partitions val vla`` fitted on val alone and recorded both; a record that could not be
written left the new rows beside an earlier run's record (or none), the error naming ``--out``.
"""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
from cli_support import one_line_error

from sddkit.cli.main import main
from sddkit.data.protocols import read_protocol
from sddkit.evaluation.fusion import FusedTrials, fit_fusion
from sddkit.evaluation.scores import match_scores, read_scores
from sddkit.metrics import eer
from sddkit.scoring.calibration import fit_calibration


def _corpus(tmp_path, n: int = 12):
    """A labels CSV (val and test) whose bona fide and spoof files share names in two folders (stems are not
    unique), system a as an sdd score CSV written from ``run/`` (relative paths, its run record's cwd), system b as
    a JSONL of absolute paths."""
    rng = np.random.default_rng(7)
    proto, a, b = ["path,label,partition"], ["path,score"], []
    for partition in ("val", "test"):
        for label in ("bonafide", "spoof"):
            for i in range(n):
                path = f"clips/{label}/{partition}_{i:02d}.wav"
                proto.append(f"{path},{label},{partition}")
                y = float(label == "bonafide")
                a.append(f"../{path},{y + rng.normal():.6f}")
                b.append(json.dumps({"path": str(tmp_path / path), "score": round(2 * y + 2 * rng.normal(), 6)}))
    (tmp_path / "run").mkdir()
    (tmp_path / "protocol.csv").write_text("\n".join(proto) + "\n")
    (tmp_path / "run" / "a.csv").write_text("\n".join(a) + "\n")
    (tmp_path / "run" / "a.csv.run.json").write_text(json.dumps({"cwd": str(tmp_path / "run")}))
    (tmp_path / "b.jsonl").write_text("\n".join(b) + "\n")
    return tmp_path / "protocol.csv", tmp_path / "run" / "a.csv", tmp_path / "b.jsonl"


def test_fused_paths_of_a_score_file_with_a_recorded_folder_match_the_protocol_from_anywhere(
    tmp_path, monkeypatch, capsys
):
    protocol, a, b = _corpus(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results" / "fused.csv"
    assert main(["fuse", "--protocol", "protocol.csv", "--scores", str(a), str(b), "--out", str(out)]) == 0
    capsys.readouterr()
    # read back from the folder the protocol is in, not the one system a was scored in: every trial by its path
    # (the stems repeat: bona fide and spoof files of one name in two folders)
    match = match_scores(read_protocol(str(protocol)), read_scores(out))
    assert match.matched_by == "path" and len(match.table) == 48
    assert not match.warnings
    # and sdd eval's read of it is the fused scores
    assert read_scores(out).ids[0] == str(tmp_path / "clips" / "bonafide" / "val_00.wav")


def test_a_fit_partition_the_protocol_lacks_is_refused_beside_one_it_has(tmp_path, monkeypatch, capsys):
    protocol, a, b = _corpus(tmp_path)
    out = tmp_path / "f.csv"
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--out", str(out)]
    assert main([*argv, "--fit-partitions", "val", "vla"]) == 2  # fitted on val alone, recorded as val and vla
    assert "no vla partition to fit the fusion on; its partitions: test, val" in one_line_error(capsys, "fuse")
    assert not out.exists()
    # named twice, it is one partition (the record names it once)
    assert main([*argv, "--fit-partitions", "val", "val"]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "f.csv.fusion.json").read_text())["fit_partitions"] == ["val"]


def test_an_empty_partition_column_is_no_partition_column(tmp_path, capsys):
    protocol, a, b = _corpus(tmp_path)
    rows = protocol.read_text().splitlines()
    protocol.write_text("\n".join([rows[0], *(r.rsplit(",", 1)[0] + "," for r in rows[1:])]) + "\n")
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--out", str(tmp_path / "f.csv")]
    assert main(argv) == 2
    assert "the protocol has no partition column, so no val trials" in one_line_error(capsys, "fuse")


def test_a_record_that_cannot_be_written_leaves_no_rows(tmp_path, capsys):
    protocol, a, b = _corpus(tmp_path)
    out = tmp_path / "f.csv"
    (tmp_path / "f.csv.fusion.json").mkdir()  # a folder where the record goes
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--out", str(out)]
    assert main(argv) == 2
    assert "cannot write the fusion's record" in one_line_error(capsys, "fuse")
    assert not out.exists()


def test_a_write_failing_midway_leaves_the_earlier_rows_and_record_as_they_were(tmp_path, monkeypatch, capsys):
    protocol, a, b = _corpus(tmp_path)
    out = tmp_path / "f.csv"
    record = tmp_path / "f.csv.fusion.json"
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--out", str(out)]
    assert main(argv) == 0
    before = out.read_bytes(), record.read_bytes()

    def full_disk(self):  # the record's write fails after the rows are written (a full disk)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FusedTrials, "to_dict", full_disk)
    capsys.readouterr()
    assert main([*argv, "--prior", "0.3"]) == 2
    assert "No space left on device" in one_line_error(capsys, "fuse")
    assert (out.read_bytes(), record.read_bytes()) == before  # not new rows beside the earlier fusion's record
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["protocol.csv", "run", "b.jsonl", out.name, record.name]
    )


# --- the math: no bug found; kept as checks of what the docs say --------------------------------------------------


def test_a_one_system_cli_fusion_is_the_calibration_and_its_figures_are_the_files(tmp_path, capsys):
    protocol, _, b = _corpus(tmp_path)
    out = tmp_path / "one.csv"
    assert main(["fuse", "--protocol", str(protocol), "--scores", str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "one.csv.fusion.json").read_text())
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    fit = [r for r in rows if "/val_" in r[0]]
    y = np.array(["/bonafide/" in r[0] for r in fit], dtype=np.int64)
    raw = np.array([float(r[4]) for r in fit])
    calibration = fit_calibration(raw, y)
    assert (record["systems"][0]["weight"], record["bias"]) == (calibration.a, calibration.b)
    llr = np.array([float(r[1]) for r in fit])
    assert record["fit_eer"] == float(eer(y, llr)) and f"{100 * record['fit_eer']:.2f}%" in printed
    assert f"fit Cllr {record['fit_cllr']:.4f} bits" in printed
    assert record["n_fused"] == len(rows) == 48


def test_near_collinear_and_differently_scaled_systems_fit_finite_stable_weights():
    rng = np.random.default_rng(11)
    y = np.r_[np.ones(150, dtype=np.int64), np.zeros(150, dtype=np.int64)]
    a = y + rng.normal(size=300)
    twin = a + 1e-9 * rng.normal(size=300)  # the same system, up to rounding
    wide = 1e3 * (y + rng.normal(size=300))
    fusion = fit_fusion(np.c_[1e-3 * a, twin, wide], y)
    assert np.isfinite(fusion.weights).all() and np.isfinite(fusion.bias)
    # the twins share the weight one of them alone gets (1e-3 * a carries a 1000 times its weight)
    alone = fit_fusion(np.c_[a, wide], y)
    assert 1e-3 * fusion.weights[0] + fusion.weights[1] == pytest.approx(alone.weights[0], rel=1e-3)
    assert fusion.weights[2] == pytest.approx(alone.weights[1], rel=1e-3)
    # the fused scores are calibrated where they were fitted: recalibrating them changes (almost) nothing
    again = fit_calibration(fusion.apply(np.c_[1e-3 * a, twin, wide]), y)
    assert again.a == pytest.approx(1.0, abs=1e-3) and again.b == pytest.approx(0.0, abs=1e-3)
