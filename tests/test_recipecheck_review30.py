"""A recipe checked before training (review 30): a data filter's misspelt column is refused when the recipe is read
(``sdd train --print-config``, ``sdd describe``) where its format's columns are known, and a section given as null
(``data:`` with its keys not indented under it) is an error, not all its defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sddkit.cli.main import main
from sddkit.config import from_dict
from sddkit.data import PROTOCOLS
from sddkit.data.protocols import known_columns, read_protocol
from sddkit.data.protocols.sddbench import SDDBENCH_KEPT, SDDBENCH_REQUIRED
from sddkit.data.table import OPTIONAL_COLUMNS
from sddkit.errors import ConfigError, ProtocolError
from sddkit.training.data import spec_table
from sddkit.training.recipe import ProtocolSpec, TrainRecipe, load_recipe

MODEL = {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 4}}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _manifest(folder: Path) -> Path:
    """A two-row sddbench manifest with every column the reader keeps (no audio: the reader reads no file)."""
    header = [*SDDBENCH_REQUIRED, *SDDBENCH_KEPT]
    rows = [
        ["a.flac", "bonafide", "train", "bonafide", "", "ljspeech", "LJ", "0.5", "p1", "en", "", "", "", "16000"],
        ["b.flac", "spoof", "train", "YourTTS", "tts", "yourtts_demo", "LJ", "0.5", "p1", "en", "", "", "", "16000"],
    ]
    path = folder / "manifest.csv"
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


# --- a where/exclude column no table of the format has --------------------------------------------------------------


def test_a_misspelt_where_column_is_refused_when_the_recipe_is_read_before_any_file(tmp_path):
    # the protocol is not there: the recipe is refused for its column alone, as --print-config would refuse it
    recipe = {
        "model": MODEL,
        "data": {"train": {"protocol": str(tmp_path / "absent.csv"), "format": "sddbench", "where": {"sourc": "x"}}},
    }
    with pytest.raises(ConfigError) as exc:
        load_recipe(_write(tmp_path / "r.yaml", recipe))
    text = str(exc.value)
    assert text.startswith("data.train.where: unknown column(s) 'sourc' (did you mean 'source'?)")
    assert "format 'sddbench'" in text and "source" in text.split("its columns: ")[1]


def test_a_misspelt_exclude_column_of_a_listed_spec_names_its_item(tmp_path):
    spec = {"protocol": "p.txt", "format": "asvspoof2019_la", "exclude": {"atack": ["A01"]}}
    with pytest.raises(ConfigError, match=r"^data\.train\[1\]\.exclude: unknown column\(s\) 'atack' \(did you mean "):
        from_dict(TrainRecipe, {"model": MODEL, "data": {"train": [{"protocol": "q.txt", "format": "sddbench"}, spec]}})


def test_print_config_and_describe_refuse_the_column(tmp_path, capsys):
    recipe = {
        "model": MODEL,
        "data": {"train": {"protocol": "manifest.csv", "format": "sddbench", "exclude": {"sorce": ["resemblyzer"]}}},
    }
    path = _write(tmp_path / "r.yaml", recipe)
    assert main(["train", str(path), "--print-config"]) != 0
    assert "data.train.exclude: unknown column(s) 'sorce'" in capsys.readouterr().err
    assert main(["describe", str(path)]) != 0
    assert "data.train.exclude: unknown column(s) 'sorce'" in capsys.readouterr().err
    # an override brings it in too
    fine = _write(tmp_path / "ok.yaml", {**recipe, "data": {"train": {"protocol": "m.csv", "format": "sddbench"}}})
    assert main(["train", str(fine), "data.train.where={system: [YourTTS]}", "--print-config"]) != 0
    assert "data.train.where: unknown column(s) 'system'" in capsys.readouterr().err


def test_a_column_of_the_format_is_taken_and_generic_formats_are_checked_when_read(tmp_path):
    manifest = _manifest(tmp_path)
    # a column the reader adds only when the manifest has it (pair_id) is one of the format's
    spec = from_dict(ProtocolSpec, {"protocol": str(manifest), "format": "sddbench", "where": {"pair_id": "p1"}})
    assert len(spec_table(spec)) == 2
    # utterance_table's columns are its file's own, and a detected format's unknown: both left to the read
    table = read_protocol(manifest, "sddbench").save(tmp_path / "table.csv")
    for fmt in ("utterance_table", None):
        spec = from_dict(ProtocolSpec, {"protocol": str(table), "format": fmt, "where": {"sourc": "x"}})
        with pytest.raises((ConfigError, ProtocolError), match="no column 'sourc'"):
            spec_table(spec)


def test_declared_columns_hold_every_column_a_reader_gives(tmp_path):
    manifest = _manifest(tmp_path)
    assert set(read_protocol(manifest, "sddbench").columns) <= set(known_columns("sddbench"))
    labels = tmp_path / "labels.csv"
    extra = ["attack", "source", "speaker", *OPTIONAL_COLUMNS]
    labels.write_text(
        ",".join(["path", "label", *extra, "notes"]) + "\n" + ",".join(["a.wav", "spoof", *extra, "n"]) + "\n"
    )
    table = read_protocol(labels, "labels_csv")
    assert set(table.columns) <= set(known_columns("labels_csv")) and "notes" not in known_columns("labels_csv")
    folder = tmp_path / "corpus"
    for sub in ("bonafide", "spoof/tts1"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "x.wav").write_bytes(b"")
    assert set(read_protocol(folder, "folder").columns) <= set(known_columns("folder"))
    # every reader of sddkit's own declares its columns, but the one whose columns are its file's
    undeclared = [e.name for e in PROTOCOLS.entries() if known_columns(e.name) is None]
    assert undeclared == ["utterance_table"]


# --- a section given as null -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["data", "trainer", "optimizer", "schedule", "loss"])
def test_a_section_given_as_null_is_refused_naming_it(tmp_path, section):
    path = tmp_path / "r.yaml"
    # `data:` with its keys indented one level too little: YAML reads them as top-level keys, data as null
    path.write_text(yaml.safe_dump({"model": MODEL}) + f"{section}:\n")
    with pytest.raises(ConfigError) as exc:
        load_recipe(path)
    assert str(exc.value) == (
        f"{section}: expected a mapping, got null (a value left empty is null: indent its keys under {section}, or "
        f"leave {section} out for its defaults)"
    )


def test_a_section_left_out_still_takes_its_defaults_and_model_null_still_switches_to_init_from(tmp_path):
    recipe = load_recipe(_write(tmp_path / "r.yaml", {"model": MODEL}))
    assert recipe.data.batch_size == 8 and recipe.trainer.epochs >= 1
    # an override switching a recipe to another model directory: model=null is what it says
    switched = load_recipe(tmp_path / "r.yaml", ["model=null", f"init_from={tmp_path}"])
    assert switched.model is None and switched.init_from == str(tmp_path)


def test_section_keys_left_at_top_level_name_their_section_not_a_look_alike(tmp_path):
    path = tmp_path / "r.yaml"
    # the slip itself: data's and trainer's keys at their section's level, the sections left empty
    path.write_text(
        yaml.safe_dump({"model": MODEL})
        + "data:\ntrain: {protocol: m.csv, format: sddbench}\nbatch_size: 16\ntrainer:\nepochs: 1\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_recipe(path)
    text = str(exc.value)
    # it read "recipe: unknown key(s) 'batch_size', 'epochs', 'train' (did you mean 'trainer'?)"
    assert text.startswith(f"{path}: keys of a recipe section at top level (data: and trainer: left empty above them)")
    assert "'train', 'batch_size' under data:; 'epochs' under trainer:" in text and "did you mean" not in text
    # an override without its section, and a key two sections take
    fine = _write(tmp_path / "ok.yaml", {"model": MODEL})
    with pytest.raises(ConfigError, match=r"'epochs' under trainer:; .*as an override, trainer\.epochs=\.\.\.\)$"):
        load_recipe(fine, ["epochs=3"])
    with pytest.raises(ConfigError, match=r"'name' under optimizer: or schedule:"):
        load_recipe(fine, ["name=cosine"])
    # a key of no section is still an unknown recipe key, with its suggestion
    with pytest.raises(ConfigError, match=r"^recipe: unknown key\(s\) 'trainr' \(did you mean 'trainer'\?\)"):
        load_recipe(fine, ["trainr={epochs: 1}"])
