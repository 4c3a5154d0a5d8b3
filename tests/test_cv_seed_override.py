"""`sdd cv --seeds` sets every run's seed: a `seed=` override beside it would be ignored, so it is refused."""

from __future__ import annotations

from sddkit.cli.main import main


def test_a_seed_override_beside_seeds_is_refused_before_anything_runs(tmp_path, capsys):
    args = ["cv", str(tmp_path / "r.yaml"), "--hold-out", "a", "--out", str(tmp_path / "cv"), "--seeds", "1,2"]
    assert main([*args, "seed=5"]) == 2
    err = capsys.readouterr().err
    assert "--seeds sets each run's seed" in err and err.count("\n") == 1
    assert not (tmp_path / "cv").exists()
