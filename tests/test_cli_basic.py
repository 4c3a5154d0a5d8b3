from __future__ import annotations

import json

from sddkit.cli.main import main


def test_sdd_list_json(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "backend" in data and "strategy" in data


def test_sdd_list_unknown_family_is_clean_error(capsys):
    assert main(["list", "nope"]) == 2
    assert "unknown registry family 'nope'" in capsys.readouterr().err
