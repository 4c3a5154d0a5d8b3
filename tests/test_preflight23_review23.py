"""Review 23 (preflight23): the training data's audio files looked up before the first step (``sdd train``, its
resume, ``sdd cv``, MoLEx's ``molex.old_eval``); the readers' options in ``sdd list protocol``."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from test_train_support import (  # noqa: F401  (one_thread: autouse fixture)
    install_tiny,
    one_thread,
    write_corpus,
    write_tiny_recipe,
)

from sddkit.cli.main import main
from sddkit.config import from_dict
from sddkit.data import dataset as dataset_module
from sddkit.errors import ProtocolError
from sddkit.training.data import unusable_audio
from sddkit.training.recipe import TrainRecipe


def _recipe(tmp_path, train, val, out) -> str:
    return write_tiny_recipe(tmp_path, train, val, out, sampler="class_balanced")


def _paths(table) -> list[str]:
    return list(pd.read_csv(table, keep_default_na=False)["path"])


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_unusable_audio_says_why_from_a_stat(tmp_path):
    good = tmp_path / "good.wav"
    good.write_bytes(b"RIFF")
    (tmp_path / "link.wav").symlink_to(good)
    (tmp_path / "broken.wav").symlink_to(tmp_path / "gone.wav")
    (tmp_path / "dir.wav").mkdir()
    (tmp_path / "empty.wav").write_bytes(b"")
    os.mkfifo(tmp_path / "fifo.wav")
    assert unusable_audio(str(good)) is None and unusable_audio(str(tmp_path / "link.wav")) is None
    assert unusable_audio(str(tmp_path / "missing.wav")) == "no such file"
    assert "broken symbolic link" in unusable_audio(str(tmp_path / "broken.wav"))
    assert "is a directory" in unusable_audio(str(tmp_path / "dir.wav"))
    assert "empty (0 bytes)" in unusable_audio(str(tmp_path / "empty.wav"))
    assert "not a regular file" in unusable_audio(str(tmp_path / "fifo.wav"))  # never opened: it would block
    assert "a part of its folder path is a file" in unusable_audio(str(good / "x.wav"))
    assert unusable_audio("") == "no audio path"  # a protocol read without its audio folder


def test_the_refusal_counts_every_unusable_file_and_names_a_few(tmp_path):
    from sddkit.evaluation.synthetic import write_synthetic_example
    from sddkit.training.data import check_audio_files
    from sddkit.training.recipe import ProtocolSpec

    train = write_corpus(tmp_path / "c", n=6, samples=800)
    gone = _paths(train)[1:]
    for path in gone:
        os.remove(path)
    spec = ProtocolSpec(protocol=str(train), format="utterance_table")
    no_audio, _ = write_synthetic_example(tmp_path / "asv", n_bonafide=4, n_per_attack=2)  # no audio folder beside it
    val = ProtocolSpec(protocol=str(no_audio), format="asvspoof2019_la")
    with pytest.raises(ProtocolError) as err:
        check_audio_files([("data.train", [spec]), ("data.val", val), ("molex.old_eval", None)])
    text = str(err.value)
    assert text.startswith("21 of the 22 audio files ") and "listed in data.train and data.val are missing" in text, (
        text
    )
    assert f"data.train[0] ({train}): 5 of its 6 files, e.g. {gone[0]} (no such file), " in text, text
    assert f"{gone[2]} (no such file) and 2 more;" in text and gone[3] not in text, text
    assert f"data.val ({no_audio}): " in text and "16 of its 16 files, e.g. utterance 'LA_" in text, text
    assert (
        "(no audio path), " in text
        and "(16 without a path: the reader found no audio folder, give it its root option)" in text
    ), text
    assert (
        check_audio_files(
            [("data.train", ProtocolSpec(protocol=str(write_corpus(tmp_path / "d", n=6)), format="utterance_table"))]
        )
        == 6
    )


@pytest.mark.parametrize("cache", ["none", "preload"])
def test_sdd_train_refuses_missing_files_before_the_first_step(tmp_path, monkeypatch, capsys, cache):
    # a missing file stopped the run only when the sampler first drew it (minutes or epochs in), and a class-balanced
    # run that never drew it finished without a word; preload stopped at the first one, after decoding those before
    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "c", n=12, samples=800)
    val = write_corpus(tmp_path / "c", n=9, samples=800, seed=1, partition="val")
    gone, empty = _paths(train)[4:6]
    os.remove(gone)
    open(empty, "wb").close()
    folder = _paths(val)[2]
    os.remove(folder)
    os.mkdir(folder)
    decoded = []
    real = dataset_module.load_table_audio
    monkeypatch.setattr(dataset_module, "load_table_audio", lambda *a, **k: decoded.append(a) or real(*a, **k))
    recipe = _recipe(tmp_path, train, val, tmp_path / "run")
    err = _one_line_error(capsys, ["train", recipe, f"data.decode_cache={cache}"])
    assert "3 of the 21 audio files listed in data.train and data.val are missing or unusable" in err, err
    assert f"data.train ({train}): 2 of its 12 files" in err and f"data.val ({val}): 1 of its 9 files" in err, err
    assert f"{gone} (no such file)" in err and f"{empty} (file is empty (0 bytes))" in err, err
    assert f"{folder} (is a directory, not an audio file)" in err and "where/exclude" in err, err
    assert decoded == [] and not (tmp_path / "run" / "checkpoints").exists()  # nothing decoded, no step taken


def test_the_check_runs_again_on_resume(tmp_path, monkeypatch, capsys):
    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "c", n=12, samples=800)
    val = write_corpus(tmp_path / "c", n=9, samples=800, seed=1, partition="val")
    recipe = _recipe(tmp_path, train, val, tmp_path / "run")
    assert main(["train", recipe]) == 0
    capsys.readouterr()
    saved = sorted(os.listdir(tmp_path / "run" / "checkpoints"))
    gone = _paths(train)[7]
    os.remove(gone)  # e.g. a corpus partly moved between the sessions
    err = _one_line_error(capsys, ["train", recipe, "trainer.epochs=2", "--resume"])
    assert "1 of the 21 audio files" in err and f"{gone} (no such file)" in err, err
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == saved  # the run is kept as it was


def test_sdd_cv_looks_up_held_out_files_before_the_first_fold_trains(tmp_path, monkeypatch):
    # a held-out file is in no fold's training data: it was met only when scored, after its fold had trained
    from sddkit.training.crossval import cross_validate, parse_folds

    train = write_corpus(tmp_path / "c", n=18, samples=800)
    val = write_corpus(tmp_path / "c", n=18, samples=800, seed=1, partition="val")
    for csv in (train, val):
        df = pd.read_csv(csv, keep_default_na=False)
        df["source"] = [f"s{(i // 3) % 3}" for i in range(len(df))]
        df.to_csv(csv, index=False)
    gone = pd.read_csv(val, keep_default_na=False).query("source == 's1'")["path"].iloc[0]
    os.remove(gone)
    spec = {"format": "utterance_table"}
    recipe = from_dict(
        TrainRecipe,
        {
            "model": {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "linear"}},
            "data": {"train": {**spec, "protocol": str(train)}, "val": {**spec, "protocol": str(val)}},
            "trainer": {"max_steps": 1, "out_dir": str(tmp_path / "unused"), "progress": False},
        },
    )

    def no_training(*a, **k):
        raise AssertionError("a fold trained before its data was checked")

    monkeypatch.setattr("sddkit.training.trainer.Trainer.fit", no_training)
    with pytest.raises(ProtocolError, match="1 of the 36 audio files listed in data.train and data.val") as err:
        cross_validate(recipe, parse_folds("source", ["s0", "s1"]), tmp_path / "cv", workers=0)
    assert f"data.val ({val}): 1 of its 18 files, e.g. {gone} (no such file)" in str(err.value)
    assert os.listdir(tmp_path / "cv") == []  # no fold started


def test_molex_old_eval_files_are_looked_up_before_the_old_model_is_scored_on_them(tmp_path):
    from sddkit.training.trainer import Trainer

    train = write_corpus(tmp_path / "new", n=9, attacks=("A03",), samples=3200, seed=2)
    old = write_corpus(tmp_path / "old", n=6, attacks=("A01", "A02"), samples=3200, seed=1, partition="val")
    gone = _paths(old)[3]
    os.remove(gone)
    spec = {"format": "utterance_table"}
    molex = {"num_experts": 2, "rank": 2, "targets": ["q", "v"]}
    recipe = {
        "model": {
            "frontend": {"name": "ssl", "encoder": {"name": "wav2vec2_tiny"}, "adapter": "molex", "molex": molex},
            "backend": {"name": "linear"},
        },
        "data": {"train": {**spec, "protocol": str(train)}, "crop_samples": 2400, "batch_size": 3},
        "trainer": {"epochs": 1, "max_steps": 1, "progress": False, "out_dir": str(tmp_path / "run")},
        "molex": {"old_eval": {**spec, "protocol": str(old)}},  # scored before training too
    }
    with pytest.raises(ProtocolError) as err:  # was the scoring's AudioNotFoundError, naming that file alone
        Trainer(from_dict(TrainRecipe, recipe)).fit()
    assert "listed in data.train and molex.old_eval" in str(err.value) and f"{gone} (no such file)" in str(err.value)


def test_sdd_list_protocol_lists_each_readers_options_below_its_line(capsys):
    # the options --protocol-option and a recipe's `options:` take were named nowhere but in an unknown key's error
    from sddkit.data import PROTOCOLS

    assert main(["list", "protocol"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "protocol:"
    entries = PROTOCOLS.entries()
    assert len(lines) == 1 + 2 * len(entries)
    options = {}
    for k, entry in enumerate(entries):  # the first line of each reader is still "  name  description"
        first, second = lines[1 + 2 * k], lines[2 + 2 * k]
        assert first == f"  {entry.name:<24} {entry.description}"
        assert second.startswith(" " * 27 + "options: ")
        options[entry.name] = second.split("options: ", 1)[1].split(", ")
    assert options["mlaad"] == ["bonafide_root=null", "bonafide=all (all|referenced)", "languages=null", "corpus=mlaad"]
    assert options["asvspoof5"] == ["root=null", "partition=null", "corpus=asvspoof5", "codecs=null"]
    assert "phases=null" in options["asvspoof2021_la"] and options["common_voice"][0] == "splits=[validated]"
    assert options["folder"] == ["corpus=null", "attack_from_subfolder=true"]  # root is the path given
    assert options["utterance_table"] == ["root=null"]  # protocol is the path given


def test_every_listed_option_is_one_the_reader_takes(tmp_path):
    # each name the listing shows is a key read_protocol accepts: an unknown one is refused listing the real keys
    from sddkit.data import PROTOCOLS
    from sddkit.data.protocols import reader_options
    from sddkit.errors import ConfigError

    for entry in PROTOCOLS.entries():
        with pytest.raises(ConfigError) as err:
            PROTOCOLS.build({"name": entry.name, "root": str(tmp_path), "protocol": str(tmp_path), "bogus_key": 1})
        for option in reader_options(entry.name):
            assert option.name in str(err.value), (entry.name, option.name, str(err.value))
