"""Review tests (round 25): `sdd describe` on a file that holds no model names the file."""

from __future__ import annotations

import json

from sddkit.cli.main import main


def test_describe_of_a_file_holding_no_model_names_the_file(tmp_path, capsys):
    # before: "sdd describe: error: config holds no model: ..." without the file it read
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert main(["describe", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert f"{path}: config holds no model" in err


def test_describe_of_a_published_aasist_conf_points_at_import_aasist(tmp_path, capsys):
    # before: the published AASIST .conf (its model under "model_config") got the bare "config holds no model"
    conf = tmp_path / "AASIST.conf"
    conf.write_text(json.dumps({"batch_size": 24, "model_config": {"architecture": "AASIST", "nb_samp": 64600}}))
    assert main(["describe", str(conf)]) == 2
    err = capsys.readouterr().err
    assert f"{conf}: config holds no model" in err and "sdd import-aasist WEIGHTS --config CONF" in err
