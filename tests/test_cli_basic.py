from __future__ import annotations

import json

import yaml

from sddkit.cli.main import main


def test_sdd_list_json(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "backend" in data and "strategy" in data


def test_sdd_list_unknown_family_is_clean_error(capsys):
    assert main(["list", "nope"]) == 2
    assert "unknown registry family 'nope'" in capsys.readouterr().err


def test_describe_builds_every_shipped_recipe_on_the_meta_device(capsys):
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))
    assert len(recipes) >= 15
    for recipe in recipes:
        if "init_from" in recipe.read_text():
            continue  # starts from a trained model directory that a user's earlier run produces
        if (yaml.safe_load(recipe.read_text()).get("mixture") or {}).get("expert_dirs"):
            continue  # the experts are earlier runs' model dirs: tests/test_recipes_mixtures.py builds these
        text = recipe.read_text()
        # pretrained weights are the user's (never in tests): same architecture, random weights
        overrides = ["model.frontend.encoder.pretrained=null"] if "pretrained:" in text else []
        assert main(["describe", str(recipe), *overrides]) == 0, recipe
        data = json.loads(capsys.readouterr().out)
        if "name: gmm" in text:  # fitted by EM: its mixtures are frozen parameters, nothing takes a gradient
            assert data["trainable_params"] == 0 < data["total_params"], recipe
            continue
        assert data["trainable_params"] > 0 and data["total_params"] >= data["trainable_params"]


def test_sdd_serve_checks_its_options_before_loading_the_model(capsys):
    # --model points nowhere: each option error must come first, as one clean line
    for option, value, message in (
        ("--port", "99999", "--port must be in 0..65535"),
        ("--batch-size", "0", "--batch-size must be >= 1"),
        ("--threads", "0", "--threads must be >= 1"),
        ("--max-upload-mb", "0", "--max-upload-mb must be > 0, got 0"),
        ("--max-duration-s", "nan", "--max-duration-s must be > 0, got nan"),
        ("--max-duration-s", "inf", "--max-duration-s must be finite: the service bounds every request"),
        ("--max-upload-mb", "inf", "--max-upload-mb must be finite"),
        ("--device", "foo", "unknown device 'foo'"),
    ):
        assert main(["serve", "--model", "/nonexistent", option, value]) == 2
        assert message in capsys.readouterr().err


def test_check_minimums_names_the_flag_and_lets_automatic_values_pass():
    import argparse

    import pytest

    from sddkit.cli.options import check_minimums
    from sddkit.errors import ConfigError

    args = argparse.Namespace(batch_size=1, threads=None, max_duration_s=0.0, workers=-2)
    check_minimums(args, batch_size=1, threads=1, max_duration_s=0)  # at the minimum, or None: accepted
    with pytest.raises(ConfigError, match=r"^--workers must be >= 0, got -2$"):
        check_minimums(args, batch_size=1, workers=0)
    with pytest.raises(ConfigError, match=r"^--max-duration-s must be >= 0.5, got 0$"):
        check_minimums(args, max_duration_s=0.5)
    with pytest.raises(ConfigError, match=r"^--max-duration-s must be >= 0, got nan$"):
        check_minimums(argparse.Namespace(max_duration_s=float("nan")), max_duration_s=0)


def test_a_file_named_like_an_option_is_scored_after_double_dash(tmp_path, monkeypatch, capsys):
    import numpy as np
    import soundfile as sf

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    sf.write("-leading.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    # before: "--" made parse_intermixed_args report "unrecognized arguments: -leading.wav"
    assert main(["score", "--out", "s.csv", "--quiet", "--", "-leading.wav"]) == 0
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[0] == "-leading.wav" and rows[1].split(",")[1] != ""  # scored


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path):
    import subprocess
    import sys

    # `sdd X | head`: once head exits, writes fail with EPIPE; before, that was a BrokenPipeError traceback
    script = (
        "import sys\n"
        "from sddkit.cli import list_cmd\n"
        "from sddkit.cli.main import main\n"
        "def run(args):\n"
        "    for i in range(200_000):\n"
        "        print('line', i)\n"
        "list_cmd.run = run\n"
        "sys.exit(main(['list']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(100).startswith(b"line 0")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_describe_checks_a_recipe_whole_as_sdd_train_does(tmp_path, capsys):
    # only the model part was read: a typo elsewhere ("trainr", trainer.fooo=1) went unnoticed
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("model: {frontend: logmel, backend: lcnn}\ntrainr: {epochs: 1}\n")
    assert main(["describe", str(recipe)]) == 2
    assert "unknown key(s) 'trainr' (did you mean 'trainer'?)" in capsys.readouterr().err
    recipe.write_text("model: {frontend: logmel, backend: lcnn}\n")
    assert main(["describe", str(recipe), "trainer.fooo=1"]) == 2
    assert "trainer: unknown key(s) 'fooo'" in capsys.readouterr().err
    assert main(["describe", str(recipe), "optimizer.lr=-5"]) == 2
    capsys.readouterr()
    assert main(["describe", str(recipe)]) == 0


def test_describe_of_a_model_directory_takes_overrides_with_or_without_the_model_prefix(tmp_path, capsys):
    from sddkit.config import from_dict, to_dict
    from sddkit.detectors import model_dir as md
    from sddkit.detectors.detector import DetectorConfig, build_detector

    cfg = from_dict(DetectorConfig, {"frontend": {"name": "logmel"}, "backend": {"name": "lcnn", "channels": 4}})
    d = md.save_model_dir(tmp_path / "m", build_detector(cfg), model_config=to_dict(cfg))
    counts = []
    for override in ("backend.channels=8", "model.backend.channels=8"):
        assert main(["describe", str(d), override]) == 0
        counts.append(json.loads(capsys.readouterr().out)["total_params"])
    assert counts[0] == counts[1]
    assert main(["describe", str(d)]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] != counts[0]


def test_building_the_cli_parsers_does_not_load_torch():
    # `sdd --help` and every usage error took ~2 s (torch imported by two commands' modules at registration)
    import subprocess
    import sys

    code = "import sys; from sddkit.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
