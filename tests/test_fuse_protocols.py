"""``sdd fuse --protocol DEV EVAL``: protocols read as one, as ASVspoof's separate dev and eval keys need (fit on dev,
fused on both); a trial listed by two of them is refused, naming both files."""

from __future__ import annotations

import json

import numpy as np

from sddkit.cli.main import main


def _write(tmp_path, name: str, partition: str, start: int, n: int, rng) -> tuple[list[str], list[str]]:
    """A labels protocol of n bona fide and n spoof trials of ``partition``; the two systems' score rows."""
    rows, a_rows, b_rows = ["path,label,partition"], [], []
    for k in range(start, start + 2 * n):
        path, y = f"clips/{k:03d}.wav", k - start < n
        rows.append(f"{path},{'bonafide' if y else 'spoof'},{partition}")
        a_rows.append(f"{path},{1.5 * y + rng.normal():.6f}")
        b_rows.append(f"{path},{2 * y + 2 * rng.normal():.6f}")
    (tmp_path / name).write_text("\n".join(rows) + "\n")
    return a_rows, b_rows


def _files(tmp_path):
    rng = np.random.default_rng(7)
    a_dev, b_dev = _write(tmp_path, "dev.csv", "dev", 0, 20, rng)
    a_eval, b_eval = _write(tmp_path, "eval.csv", "eval", 100, 15, rng)
    (tmp_path / "a.csv").write_text("\n".join(["path,score", *a_dev, *a_eval]) + "\n")
    (tmp_path / "b.csv").write_text("\n".join(["path,score", *b_dev, *b_eval]) + "\n")
    return tmp_path / "dev.csv", tmp_path / "eval.csv", tmp_path / "a.csv", tmp_path / "b.csv"


def test_fit_on_one_protocol_fused_on_both(tmp_path, capsys):
    dev, ev, a, b = _files(tmp_path)
    out = tmp_path / "fused.csv"
    argv = ["fuse", "--protocol", str(dev), str(ev), "--scores", str(a), str(b), "--fit-partitions", "dev"]
    assert main([*argv, "--out", str(out)]) == 0
    record = json.loads((tmp_path / "fused.csv.fusion.json").read_text())
    assert (record["n_fit_bonafide"], record["n_fit_spoof"], record["n_fused"]) == (20, 20, 70)
    assert record["fit_partitions"] == ["dev"]
    # the same fit as from the dev protocol alone: the eval trials only receive the fusion
    alone = tmp_path / "alone.csv"
    assert main(["fuse", "--protocol", str(dev), "--scores", str(a), str(b), "--fit-partitions", "dev",
                 "--out", str(alone)]) == 0  # fmt: skip
    first = json.loads((tmp_path / "alone.csv.fusion.json").read_text())
    assert [s["weight"] for s in record["systems"]] == [s["weight"] for s in first["systems"]]
    assert record["bias"] == first["bias"] and first["n_fused"] == 40
    assert "fused 2 systems on 70 files; fitted on dev (20 bona fide, 20 spoof" in capsys.readouterr().out


def test_a_trial_in_two_protocols_is_refused_naming_both(tmp_path, capsys):
    dev, _, a, b = _files(tmp_path)
    copy = tmp_path / "dev_copy.csv"
    copy.write_text(dev.read_text())
    argv = ["fuse", "--protocol", str(dev), str(copy), "--scores", str(a), str(b), "--fit-partitions", "dev"]
    assert main([*argv, "--out", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert f"--protocol {dev} and {copy} share 40 utterance id(s)" in err
    assert not (tmp_path / "f.csv").exists()


def test_one_system_is_said_in_the_singular(tmp_path, capsys):
    dev, _, a, _ = _files(tmp_path)
    argv = ["fuse", "--protocol", str(dev), "--scores", str(a), "--fit-partitions", "dev"]
    assert main([*argv, "--out", str(tmp_path / "f.csv")]) == 0
    assert "fused 1 system on 40 files" in capsys.readouterr().out
