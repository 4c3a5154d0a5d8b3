"""Review 24 (the `sdd` command line as a whole: bad option values, options silently ignored, help and docs)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest
from cli_support import one_line_error
from test_protoeval23_review23 import _mlaad_with_mailabs

from sddkit.cli.main import _build_parsers, main
from sddkit.data.protocols import read_protocol
from sddkit.errors import ProtocolError

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "sddbench" / "default_model.yaml"


def _scores_and_protocol(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two systems' `utt_id,score` files and a labels protocol of 4 bona fide and 4 spoof trials."""
    rows = [(f"utt{i}", "bonafide" if i < 4 else "spoof") for i in range(8)]
    protocol = tmp_path / "protocol.csv"
    protocol.write_text("utt_id,path,label\n" + "".join(f"{u},{u}.wav,{lab}\n" for u, lab in rows))
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("utt_id,score\n" + "".join(f"{u},{4 - i}\n" for i, (u, _) in enumerate(rows)))
    b.write_text("utt_id,score\n" + "".join(f"{u},{(4 - i) * 0.5}\n" for i, (u, _) in enumerate(rows)))
    return protocol, a, b


@pytest.mark.parametrize(("names", "words"), [(["new", "new"], "names of their own"), (["", "new"], "a name is empty")])
def test_compare_refuses_names_that_do_not_tell_the_two_sides_apart(tmp_path, capsys, names, words):
    # `--names a a` printed a table of two rows named a (which was the baseline?) and "a minus a"; an empty name
    # printed " minus new"
    protocol, a, b = _scores_and_protocol(tmp_path)
    argv = ["compare", "--protocol", str(protocol), "--baseline", str(a), "--system", str(b), "--bootstrap", "20"]
    assert main([*argv, "--names", *names]) == 2
    assert words in one_line_error(capsys, "compare")
    assert main([*argv, "--names", "old", "new"]) == 0
    assert "new minus old" in capsys.readouterr().out


def test_cv_refuses_a_trainer_out_dir_override_it_would_ignore(tmp_path, capsys):
    # each fold trains into OUT/fold_<values>/: `trainer.out_dir=elsewhere` was dropped without a word (the folds
    # went into --out), as a seed= override beside --seeds was before it was refused
    out = tmp_path / "cv"
    argv = ["cv", str(RECIPE), "--hold-out", "a", "--hold-out", "b", "--out", str(out)]
    assert main([*argv, f"trainer.out_dir={tmp_path / 'elsewhere'}"]) == 2
    err = one_line_error(capsys, "cv")
    assert "trainer.out_dir" in err and "--out" in err
    assert not out.exists() and not (tmp_path / "elsewhere").exists()


def test_list_of_an_empty_family_name_is_refused_not_every_family(capsys):
    # `sdd list "$FAMILY"` with the variable unset listed every family, as if no family were named
    assert main(["list", ""]) == 2
    assert "unknown registry family ''" in one_line_error(capsys, "list")


def test_score_out_given_as_an_empty_string_says_so(tmp_path, capsys):
    # `--out ""` was called a folder: "--out  is a folder; name a .csv or .jsonl file to write, e.g. scores.csv"
    assert main(["score", str(tmp_path / "a.wav"), "--out", ""]) == 2
    assert "--out is an empty string" in one_line_error(capsys, "score")


def test_fuse_takes_protocol_option_for_the_protocols_reader(tmp_path, capsys):
    # sdd eval, compare, calibrate and robustness take --protocol-option; sdd fuse refused it as an unknown argument,
    # so the bona fide side of an MLAAD protocol (its M-AILABS bonafide_root) could not be fused: here a fusion fitted
    # on a table of the same trials, applied with the MLAAD protocol, fused its 4 spoofs and left the 4 bona fide out
    mlaad, mailabs, scores = _mlaad_with_mailabs(tmp_path)
    table = read_protocol(mlaad, bonafide_root=str(mailabs), bonafide="referenced").df
    table["partition"] = "val"
    fit_protocol = tmp_path / "fit.csv"
    table.to_csv(fit_protocol, index=False)
    fit = ["fuse", "--protocol", str(fit_protocol), "--scores", str(scores), str(scores)]
    assert main([*fit, "--names", "a", "b", "--out", str(tmp_path / "fit_fused.csv")]) == 0, capsys.readouterr().err
    record = str(tmp_path / "fit_fused.csv.fusion.json")
    out = tmp_path / "fused.csv"
    apply = [
        "fuse",
        "--apply",
        record,
        "--protocol",
        str(mlaad),
        "--scores",
        str(scores),
        str(scores),
        "--out",
        str(out),
    ]
    options = ["--protocol-option", f"bonafide_root={mailabs}", "--protocol-option", "bonafide=referenced"]
    capsys.readouterr()
    assert main([*apply, *options]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "fused.csv.fusion.json").read_text())["n_fused"] == 8
    with open(out, newline="") as f:
        assert sorted(r["decision"] for r in csv.DictReader(f)) == ["bonafide"] * 4 + ["spoof"] * 4
    capsys.readouterr()
    assert main([*apply, "--protocol-option", "bonafide_rot=x"]) == 2  # the reader's own option names, as sdd eval
    assert "did you mean 'bonafide_root'?" in one_line_error(capsys, "fuse")
    argv = ["fuse", "--apply", record, "--scores", str(scores), str(scores), "--protocol-option", "root=x"]
    assert main(argv) == 2  # no protocol to give it to: refused, as --protocol-format is
    err = one_line_error(capsys, "fuse")
    assert "--protocol-option root=x" in err and "not given" in err


def test_an_undetected_protocol_names_every_command_that_takes_protocol_format(tmp_path):
    # the message said `--format` in `sdd calibrate` (its old name) and left sdd fuse out
    odd = tmp_path / "odd.csv"
    odd.write_text("alpha,beta,gamma,delta\n")
    with pytest.raises(ProtocolError, match="`sdd robustness`, `sdd calibrate` and `sdd fuse`"):
        read_protocol(odd)
    commands = _build_parsers()[1]
    for name in ("eval", "compare", "robustness", "calibrate", "fuse"):
        assert "--protocol-format" in commands[name]._option_string_actions, name


@pytest.mark.parametrize("command", ["score", "serve", "robustness"])
def test_device_help_shows_its_default(command):
    device = _build_parsers()[1][command]._option_string_actions["--device"]
    assert device.default == "cpu" and "default cpu" in device.help


@pytest.mark.parametrize("prior", ["0", "1", "nan", "-0.5"])
def test_calibrate_names_the_prior_option_it_refuses(tmp_path, capsys, prior):
    # "prior must be in (0, 1), got 0.0": the API's words, naming no option (sdd fuse's said --prior)
    argv = ["calibrate", "--model", str(tmp_path / "model"), "--protocol", str(tmp_path / "p.csv"), "--prior", prior]
    assert main(argv) == 2
    assert "--prior must be in (0, 1)" in one_line_error(capsys, "calibrate")


def test_a_list_option_given_twice_keeps_both_values(tmp_path, capsys):
    # `--scores a.csv --scores b.csv` fused b.csv alone ("fused 1 system"), `--partitions val --partitions test`
    # evaluated test alone: argparse kept the last occurrence of a nargs="+" option and dropped the others unsaid
    protocol, a, b = _scores_and_protocol(tmp_path)
    protocol.write_text(
        "utt_id,path,label,partition\n"
        + "".join(
            f"utt{i},utt{i}.wav,{'bonafide' if i % 2 == 0 else 'spoof'},{'val' if i < 4 else 'test'}\n"
            for i in range(8)
        )
    )
    out = tmp_path / "fused.csv"
    assert main(["fuse", "--protocol", str(protocol), "--scores", str(a), "--scores", str(b), "--out", str(out)]) == 0
    assert "fused 2 systems on 8 files" in capsys.readouterr().out
    report = tmp_path / "report"
    argv = ["eval", "--scores", str(a), "--protocol", str(protocol), "--out", str(report), "--bootstrap", "0"]
    assert main([*argv, "--partitions", "val", "--partitions", "test"]) == 0
    pooled = json.loads((report / "report.json").read_text())["pooled"]
    assert (pooled["n_bonafide"], pooled["n_spoof"]) == (4, 4)


def test_every_option_that_takes_several_values_accumulates_when_repeated():
    # the guard for options added later: a nargs="+" option stores its last occurrence unless it extends
    for name, parser in _build_parsers()[1].items():
        for action in parser._actions:
            if action.option_strings and action.nargs == "+":
                assert isinstance(action, argparse._ExtendAction), f"sdd {name} {action.option_strings[0]}"
