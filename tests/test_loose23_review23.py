"""Loose ends of the fortieth session's note, mended in the forty-first: `sdd calibrate`'s duration limit below the
model's shortest input, and `sdd fuse` options that did nothing."""

from __future__ import annotations

import pytest
from test_calibrate_cmd import _files

from sddkit.cli.main import main
from sddkit.errors import ConfigError
from sddkit.scoring import api as scoring_api
from sddkit.scoring.calibrate import calibrate_on_protocol


def test_calibrate_refuses_a_duration_limit_below_the_models_shortest_input_before_scoring(
    tmp_path, tiny_stats, capsys, monkeypatch
):
    # was the first file's "shorter than" / "longer than" error, after the protocol was read and that file decoded
    model, protocol, _, _ = _files(tmp_path, tiny_stats)
    shortest = scoring_api.load_detector(model).inference.min_duration_s
    loaded = scoring_api.load_detector

    def unscorable(*args, **kwargs):
        detector = loaded(*args, **kwargs)
        detector.score_file = lambda *a, **k: pytest.fail("a file was scored before the limit was checked")
        return detector

    monkeypatch.setattr(scoring_api, "load_detector", unscorable)
    limit = shortest / 2
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol), "--max-duration-s", f"{limit:g}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sdd calibrate: error: --max-duration-s {limit:g}: below this model's shortest input")
    assert "no file could be scored" in err and err.count("\n") == 1
    with pytest.raises(ConfigError, match=r"^max_duration .*below this model's shortest input"):  # the API's keyword
        calibrate_on_protocol(model, protocol, max_duration=limit)


def _fuse_inputs(tmp_path):
    """Two systems' score files of six trials (three bona fide), an ASVspoof 2019-style 4-column one and a 2-column
    one, and a protocol with a val partition (sddbench manifest)."""
    rows = ["path,label,partition,source,system"]
    a, b = [], []
    for i in range(6):
        label = "bonafide" if i < 3 else "spoof"
        rows.append(f"f{i}.wav,{label},val,s,{'bonafide' if i < 3 else 'tts'}")
        a.append(f"f{i} - {label} {(1.0 if i < 3 else -1.0) + 0.1 * i:.2f}")
        b.append(f"f{i} {(0.5 if i in (0, 1, 3) else -0.5) + 0.01 * i:.2f}")
    protocol = tmp_path / "manifest.csv"
    protocol.write_text("\n".join(rows) + "\n")
    sa, sb = tmp_path / "a.txt", tmp_path / "b.txt"
    sa.write_text("\n".join(a) + "\n")
    sb.write_text("\n".join(b) + "\n")
    return protocol, sa, sb


def test_fuse_takes_one_score_format_per_system(tmp_path, capsys):
    # --score-format took one value for every file: two toolkits' files could not be named apart
    protocol, sa, sb = _fuse_inputs(tmp_path)
    out = tmp_path / "fused.csv"
    base = ["fuse", "--protocol", str(protocol), "--scores", str(sa), str(sb)]
    assert main([*base, "--score-format", "asvspoof2019", "asvspoof2021", "--out", str(out)]) == 0, (
        capsys.readouterr().err
    )
    header = out.read_text().splitlines()[0].split(",")
    assert header[-2:] == ["score_a", "score_b"] and len(out.read_text().splitlines()) == 7
    assert main([*base, "--score-format", "asvspoof2019", "asvspoof2021", "asvspoof2021", "--out", str(out)]) == 2
    assert "--score-format gives 3 formats for 2 score files" in capsys.readouterr().err
    # one value still serves every file: the 4-column file read as 2-column is refused by the reader, naming it
    assert main([*base, "--score-format", "asvspoof2021", "--out", str(tmp_path / "other.csv")]) == 2
    assert str(sa) in capsys.readouterr().err


def test_fuse_refuses_a_protocol_format_without_a_protocol(tmp_path, capsys):
    # with --apply and no --protocol, --protocol-format was silently ignored
    protocol, sa, sb = _fuse_inputs(tmp_path)
    out = tmp_path / "fused.csv"
    argv = ["fuse", "--protocol", str(protocol), "--scores", str(sa), str(sb), "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    record = tmp_path / "fused.csv.fusion.json"
    applied = ["fuse", "--apply", str(record), "--scores", str(sa), str(sb), "--out", str(tmp_path / "again.csv")]
    assert main([*applied, "--protocol-format", "sddbench"]) == 2
    err = capsys.readouterr().err
    assert "--protocol-format sddbench names the reader of --protocol, which is not given" in err
    assert not (tmp_path / "again.csv").exists()


def test_calibrate_names_the_protocol_reader_with_protocol_format_as_the_other_commands(tmp_path, tiny_stats, capsys):
    # sdd eval, compare, fuse and robustness call it --protocol-format; sdd calibrate knew only --format
    model, protocol, _, _ = _files(tmp_path, tiny_stats)
    for flag in ("--protocol-format", "--format"):
        argv = ["calibrate", "--model", str(model), "--protocol", str(protocol), flag, "no_such_reader"]
        assert main([*argv, "--out", str(tmp_path / flag.strip("-"))]) == 2
        err = capsys.readouterr().err
        assert "no_such_reader" in err and "unrecognized arguments" not in err


def _tiny_run(out, max_steps: int):
    from test_train_support import SyntheticDataset

    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    recipe = from_dict(
        TrainRecipe,
        {
            "model": {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head"}},
            "data": {"batch_size": 8},
            "trainer": {"max_steps": max_steps, "val_every": 2, "out_dir": str(out), "progress": False},
        },
    )
    return recipe, lambda resume: Trainer(
        recipe, train_data=SyntheticDataset(40), val_data=SyntheticDataset(18, seed=9), resume=resume
    ).fit()


def _calibrate_in_place(directory):
    """What `sdd calibrate --model DIR` stores in DIR's config.json (the weights untouched)."""
    import json

    from sddkit.scoring.calibrate import record_calibration

    path = directory / "config.json"
    config = json.loads(path.read_text())
    config["inference"].update(calibration={"a": 2.0, "b": -0.5, "prior": 0.5}, threshold=0.25)
    config["metadata"] = record_calibration(config["metadata"], "calibrated", {"protocol": "/data/dev.txt"})
    path.write_text(json.dumps(config))
    return config


def test_a_resume_of_a_finished_run_keeps_a_calibration_stored_in_its_exports(tmp_path, monkeypatch):
    # `sdd train ... --resume` of a finished run exports best/ and final/ again from its checkpoints, uncalibrated:
    # an `sdd calibrate` in place since was lost without a word
    import json

    from test_train_support import install_tiny

    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _, fit = _tiny_run(out, max_steps=4)
    fit(False)
    calibrated = _calibrate_in_place(out / "best")
    fit(True)  # the same run, finished: nothing to train, exported again
    again = json.loads((out / "best" / "config.json").read_text())
    assert again["weights_digest"] == calibrated["weights_digest"]
    assert again["inference"]["calibration"] == calibrated["inference"]["calibration"]
    assert again["inference"]["threshold"] == 0.25
    assert again["metadata"]["calibrated"] == {"protocol": "/data/dev.txt"}
    assert not (out / "best.calibrated").exists()

    # other weights (the run continued to more steps): the calibration cannot apply, and is moved aside, not lost
    final = _calibrate_in_place(out / "final")
    _, fit_longer = _tiny_run(out, max_steps=6)
    fit_longer(True)
    aside = json.loads((out / "final.calibrated" / "config.json").read_text())
    assert aside == final
    new = json.loads((out / "final" / "config.json").read_text())
    assert new["weights_digest"] != final["weights_digest"]
    assert "calibrated" not in new["metadata"] and new["inference"].get("threshold") != 0.25


@pytest.mark.parametrize("spelling", ["non-target", "Non-Target"])
def test_asv_scores_read_the_non_target_spelling_the_protocol_reader_takes(tmp_path, spelling):
    # the ASVspoof 5 key reader took `non-target`; --asv-scores refused it ("no field is target, nontarget or spoof")
    from sddkit.evaluation.asv import read_asv_scores

    lines = ["bonafide target 2.5", f"bonafide {spelling} -1.0", "A01 spoof 0.5", f"s1 u4 -2.0 {spelling}"]
    path = tmp_path / "asv.txt"
    path.write_text("\n".join(lines) + "\n")
    scores = read_asv_scores(path)
    assert scores.target.tolist() == [2.5]
    assert scores.nontarget.tolist() == [-1.0, -2.0]
    assert scores.spoof.tolist() == [0.5]


def test_an_expert_addition_takes_the_recipes_new_expert_bias():
    # the addition stage had no key of its own for it: the first stage's front-end config (default -6) decided
    import torch
    from torch import nn

    from sddkit.config import from_dict
    from sddkit.registry import get_registry
    from sddkit.training.molex import ExpertAddition
    from sddkit.training.recipe import MolexConfig

    def detector() -> nn.Module:
        model = nn.Module()
        spec = {"name": "ssl", "encoder": {"name": "wav2vec2_tiny", "dropout": 0.0}, "adapter": "molex"}
        model.frontend = get_registry("frontend").build({**spec, "molex": {"num_experts": 2, "rank": 2}})
        model.backend = nn.Linear(4, 2)
        return model

    def new_biases(model: nn.Module) -> list[torch.Tensor]:
        routers = [m.router for _, m in model.frontend.adapted_modules()]
        return [r.biases[1] / r.temperature if hasattr(r, "temperature") else r.biases[1] for r in routers]

    default, chosen = detector(), detector()
    ExpertAddition(default, 1)
    ExpertAddition(chosen, 1, bias=-2.0)
    assert all(torch.allclose(b, torch.full_like(b, -6.0)) for b in new_biases(default))
    assert all(torch.allclose(b, torch.full_like(b, -2.0)) for b in new_biases(chosen))
    cfg = from_dict(MolexConfig, {"add_experts": 1, "new_expert_bias": -2.0})
    assert cfg.new_expert_bias == -2.0
    with pytest.raises(Exception, match="applies to expert addition only"):
        from_dict(MolexConfig, {"new_expert_bias": -2.0})
    with pytest.raises(Exception, match="new_expert_bias"):
        from_dict(MolexConfig, {"add_experts": 1, "new_expert_bias": float("nan")})


def test_an_unknown_protocol_option_lists_the_options_the_reader_takes(tmp_path, capsys):
    # the reader's own error listed `protocol` among its keys, which --protocol-option then refused
    protocol, sa, _ = _fuse_inputs(tmp_path)
    argv = ["eval", "--scores", str(sa), "--protocol", str(protocol), "--out", str(tmp_path / "rep")]
    assert main([*argv, "--protocol-format", "sddbench", "--protocol-option", "partitons=val"]) == 2
    err = capsys.readouterr().err
    assert "'partitons' are not options of the 'sddbench' reader" in err and err.count("\n") == 1
    listed = err.split("its options: ")[1]
    assert "protocol" not in listed.replace("sdd list protocol", "")
