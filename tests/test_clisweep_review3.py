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


def test_compare_refuses_a_json_output_that_is_one_of_its_inputs(tmp_path, capsys):
    # `--json s2.csv` with s2.csv among the system's score files replaced that score file and exited 0
    protocol = tmp_path / "meta.csv"
    protocol.write_text("path,label\n" + "".join(f"f{i}.wav,{('spoof', 'bonafide')[i % 2]}\n" for i in range(8)))
    scores = []
    for name in ("s1.csv", "s2.csv"):
        f = tmp_path / name
        f.write_text("path,score\n" + "".join(f"f{i}.wav,{i * (1 + len(scores))}\n" for i in range(8)))
        scores.append(f)
    before = scores[1].read_bytes()
    args = ["compare", "--protocol", str(protocol), "--baseline", str(scores[0]), "--system", str(scores[1])]
    assert main([*args, "--bootstrap", "10", "--json", str(scores[1])]) == 2
    assert "is one of the inputs" in capsys.readouterr().err
    assert scores[1].read_bytes() == before
