from __future__ import annotations

import pytest

from sddkit.cli import main as cli_main
from sddkit.cli.main import main


@pytest.mark.parametrize("command", ["train", "describe", "cv"])
def test_missing_recipe_names_only_the_required_argument(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "KEY=VALUE" not in err.splitlines()[-1] and "overrides" not in err.splitlines()[-1]


def test_ctrl_c_while_building_the_parsers_is_one_line_and_130(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "_build_parsers", interrupted)
    assert main(["list"]) == 130
    assert capsys.readouterr().err == "sdd: interrupted\n"


def test_unwritable_output_under_a_file_says_not_a_directory(tmp_path):
    from sddkit.outputs import why_unwritable

    (tmp_path / "afile.txt").write_text("hi")
    assert why_unwritable(tmp_path / "afile.txt" / "x.json") == "Not a directory"
