"""sdd score refuses a model directory given where audio goes (``sdd score run/best a.wav`` without ``--model``)."""

from __future__ import annotations

from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli.main import main


def test_a_model_directory_given_as_an_input_is_refused_naming_model(tmp_path, capsys):
    model = save_tiny_lcnn(tmp_path / "run" / "best")
    wav = write_noise_wav(tmp_path / "a.wav", 1.0, seed=0)
    out = tmp_path / "scores.csv"
    # --model left out: the bundled model would have scored a.wav, run/best only "holding no audio"
    assert main(["score", str(model), str(wav), "--out", str(out), "--quiet"]) != 0
    assert (
        f"{model} is an sddkit model directory, not audio to score: give it as --model {model}"
        in capsys.readouterr().err
    )
    assert not out.exists()


def test_a_folder_with_a_config_json_of_another_kind_is_still_searched_for_audio(tmp_path):
    folder = tmp_path / "clips"
    write_noise_wav(folder / "a.wav", 1.0, seed=0)
    (folder / "config.json").write_text('{"format": "something-else"}')
    model = save_tiny_lcnn(tmp_path / "model")
    out = tmp_path / "scores.csv"
    assert main(["score", str(folder), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    assert len(out.read_text().splitlines()) == 2  # header and a.wav's row
