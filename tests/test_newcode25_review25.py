"""Review of the code added in round 25: the WaveFake reader, ADD 2023 labels, ``sdd cv --bonafide-folds``,
``score_many(sample_rate=)``, ``export-onnx``'s requested opset and JSON-list score files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from corpus_support import touch
from test_crossval import _recipe
from test_train_support import one_thread, write_corpus  # noqa: F401  (autouse fixture)

import sddkit
from sddkit.cli.main import main
from sddkit.data.protocols import detect_format, read_protocol
from sddkit.errors import AudioError, ConfigError, ProtocolError
from sddkit.training import crossval
from sddkit.training.crossval import HeldOut, check_fold_data, fold_recipe, held_out_bonafide, held_out_table
from sddkit.training.data import file_keys, read_tables


def _unpacked_beside(tmp_path: Path) -> Path:
    """generated_audio.zip's folders unpacked into one data folder that also holds LJSpeech-1.1/ and jsut_ver1.1/."""
    data = tmp_path / "data"
    touch(data / "ljspeech_melgan" / "LJ001-0001_gen.wav")
    touch(data / "jsut_parallel_wavegan" / "BASIC5000_0001_gen.wav")
    lj = data / "LJSpeech-1.1"
    touch(lj / "wavs" / "LJ001-0001.wav")
    (lj / "metadata.csv").write_text("LJ001-0001|Printing|Printing\n")
    touch(data / "jsut_ver1.1" / "basic5000" / "wav" / "BASIC5000_0001.wav")
    return data


def test_wavefake_bonafide_corpora_beside_the_generator_folders_are_not_spoofs(tmp_path):
    data = _unpacked_beside(tmp_path)
    assert detect_format(data) == "wavefake"
    df = read_protocol(
        data, ljspeech_root=str(data / "LJSpeech-1.1"), jsut_root=str(data / "jsut_ver1.1")
    ).df.set_index("utt_id")
    # LJSpeech-1.1/ was an attack 'LJSpeech-1.1' and jsut_ver1.1/ a vocoder 'ver1.1': bona fide speech as spoofs
    assert sorted(df["attack"]) == ["bonafide", "bonafide", "jsut_parallel_wavegan", "ljspeech_melgan"]
    assert df.loc["LJ001-0001", "label"] == df.loc["jsut/basic5000/BASIC5000_0001", "label"] == "bonafide"
    assert (df["label"] == "spoof").sum() == 2
    with pytest.raises(ProtocolError, match="generators"):  # nor are they generators to select
        read_protocol(data, generators=["jsut_ver1.1"])


def test_a_jsut_folder_is_not_detected_as_wavefake(tmp_path):
    data = tmp_path / "corpora"
    touch(data / "jsut_ver1.1" / "basic5000" / "wav" / "BASIC5000_0001.wav")
    with pytest.raises(ProtocolError, match="cannot tell the corpus layout"):
        detect_format(data)


def test_wavefake_hifigan_and_waveglow_copies_pair_with_their_utterance(tmp_path):
    """The release names ljspeech_hifiGAN's files LJ001-0001_generated.wav and ljspeech_waveglow's LJ001-0001.wav: their
    pair_id was '', so group folds put every such copy in one group ("speaker=LJ"), apart from its bona fide file."""
    gen = tmp_path / "generated_audio"
    touch(gen / "ljspeech_melgan" / "LJ001-0001_gen.wav")
    touch(gen / "ljspeech_hifiGAN" / "LJ001-0001_generated.wav")
    touch(gen / "ljspeech_waveglow" / "LJ001-0001.wav")
    touch(gen / "jsut_multi_band_melgan" / "BASIC5000_0001_gen.wav")
    df = read_protocol(tmp_path).df.set_index("utt_id")
    assert df.loc["ljspeech_hifiGAN/LJ001-0001_generated", "pair_id"] == "LJ001-0001"
    assert df.loc["ljspeech_waveglow/LJ001-0001", "pair_id"] == "LJ001-0001"
    assert df.loc["ljspeech_melgan/LJ001-0001_gen", "pair_id"] == "LJ001-0001"
    assert df.loc["jsut_multi_band_melgan/BASIC5000_0001_gen", "pair_id"] == "BASIC5000_0001"


def test_eval_counts_scores_of_unselected_wavefake_generators_as_outside_the_selection(tmp_path, capsys):
    """--protocol-option generators=... keeps some trials, as codecs=... does: the other generators' scores were
    "no protocol entry (ignored)", said as if the score file were of another protocol."""
    gen = tmp_path / "generated_audio"
    rng = np.random.default_rng(0)
    lines = ["utt_id,score"]
    for k, folder in enumerate(("ljspeech_melgan", "ljspeech_hifiGAN")):
        for i in range(1, 4):
            path = gen / folder / f"LJ001-000{i}_gen.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, (0.1 * rng.standard_normal(1600)).astype("float32"), 16000)
            lines.append(f"{folder}/LJ001-000{i}_gen,{-i - k}")
    lj = tmp_path / "LJSpeech-1.1"
    for i in range(1, 4):
        (lj / "wavs").mkdir(parents=True, exist_ok=True)
        sf.write(lj / "wavs" / f"LJ001-000{i}.wav", (0.1 * rng.standard_normal(1600)).astype("float32"), 16000)
        lines.append(f"LJ001-000{i},{i}")
    (lj / "metadata.csv").write_text("".join(f"LJ001-000{i}|t|t\n" for i in range(1, 4)))
    scores = tmp_path / "scores.csv"
    scores.write_text("\n".join(lines) + "\n")
    argv = ["eval", "--scores", str(scores), "--protocol", str(tmp_path), "--out", str(tmp_path / "ev")]
    argv += ["--protocol-option", f"ljspeech_root={lj}", "--protocol-option", "generators=[ljspeech_melgan]"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "no protocol entry" not in err
    assert "3 of 9 scores are of protocol utterances outside the selection --protocol-option generators" in err


def test_several_seeds_keep_each_held_out_values_eer(tmp_path, monkeypatch):
    """Leave-one-attack-out over seeds: the top cv.json had each fold's pooled EER only, the per-attack EERs of a
    fold holding out two attacks (with --bonafide-folds their only EERs) were left in the seed_<s>/ folders."""
    recipe = _recipe(tmp_path)
    folds = crossval.parse_folds("attack", ["A01", "A02,A03"], 2)
    per_seed = {
        3: [{"A01": 0.1}, {"A02": 0.2, "A03": None}],
        4: [{"A01": 0.3}, {"A02": 0.4, "A03": 0.5}],
    }

    def fake_cross_validate(r, fs, out, *, workers):
        figs = per_seed[r.seed]
        return {
            "mean_eer": 0.0,
            "folds": [
                {"eer": 0.1, "eer_per_value": v, "val_eer": None, "n_bonafide": 1, "n_spoof": 1, "bonafide_folds": 2}
                for v in figs
            ],
        }

    monkeypatch.setattr(crossval, "cross_validate", fake_cross_validate)
    summary = crossval.cross_validate_seeds(recipe, folds, tmp_path / "cv", [3, 4], workers=0)
    assert json.loads((tmp_path / "cv" / "cv.json").read_text()) == summary
    first, second = summary["folds"]
    assert first["eer_per_value"] == {"A01": pytest.approx(0.2)}
    assert second["eer_per_value"] == {"A02": pytest.approx(0.3), "A03": None}  # one seed without: none
    assert first["bonafide_folds"] == second["bonafide_folds"] == summary["bonafide_folds"] == 2


def test_bonafide_folds_group_a_val_file_by_its_own_id_when_train_has_that_id(tmp_path):
    """A val list whose utt_ids name other files in train (two tables of one layout, u000...) without pair or speaker:
    each row is its own group, and the val rows renamed data.val:<id> for the held-out table fell into other groups
    than the fold's val selection put them in: `sdd cv` refused the fold as "held-out files in the validation data
    under another attack" and scored none of some held-out bona fide files."""

    def corpus(name, seed):
        csv = write_corpus(tmp_path / name, n=36, samples=1600, seed=seed, partition="x")
        df = pd.read_csv(csv, keep_default_na=False)
        df["speaker"] = ""
        df["utt_id"] = [f"u{i:03d}" for i in range(len(df))]
        df.to_csv(csv, index=False)
        return csv

    recipe = _recipe(tmp_path)
    recipe.data.train.protocol = str(corpus("tr", 0))  # type: ignore[union-attr]
    recipe.data.val.protocol = str(corpus("va", 1))  # type: ignore[union-attr]
    fold = HeldOut("attack", ("A01",), 3)
    train, val = read_tables(recipe.data.train, "t"), read_tables(recipe.data.val, "v")
    expected = {k for t in (train, val) for k in file_keys(t.subset(held_out_bonafide(t, fold)))}
    held = held_out_table(recipe, fold)
    assert set(file_keys(held.subset(held.labels == 1))) == expected
    check_fold_data(recipe, fold)  # raised ConfigError
    r = fold_recipe(recipe, fold, tmp_path / "f")
    for table in (read_tables(r.data.train, "t"), read_tables(r.data.val, "v")):
        assert not set(file_keys(held)) & set(file_keys(table))


def test_a_held_out_bona_fide_file_in_another_group_of_val_is_said_as_such(tmp_path):
    """A file val lists under another speaker than train (two readers of one corpus): held out as a bona fide file
    of the last group, validated on in another; the refusal said it was in val "under another attack" (its attack is
    bonafide in both) and to "drop the rows listed twice"."""

    def group(speaker):
        return int.from_bytes(hashlib.sha1(f"speaker={speaker}".encode()).digest()[:8], "big") % 2

    recipe = _recipe(tmp_path)
    train = write_corpus(tmp_path / "tr", n=24, samples=1600, seed=0, partition="x")
    df = pd.read_csv(train, keep_default_na=False)
    assert {group(s) for s in df["speaker"]} == {0, 1}  # spk0..spk3 fill both groups
    kept = next(f"val{k}" for k in range(100) if group(f"val{k}") == 0)
    df["speaker"] = kept  # the same files, every one in group 0 (validated on)
    val = tmp_path / "val.csv"
    df.to_csv(val, index=False)
    recipe.data.train.protocol = str(train)  # type: ignore[union-attr]
    recipe.data.val.protocol = str(val)  # type: ignore[union-attr]
    with pytest.raises(
        ConfigError, match=r"held out as .* \(a bona fide file of the last of 2 pair_id/speaker groups\)"
    ):
        check_fold_data(recipe, HeldOut("attack", ("A01",), 2))


def test_score_many_names_its_sample_rate_for_waveform_rate_pairs():
    """score_many([(x, 44100)]) said "score_many takes waveforms at the model's rate": it takes sample_rate= now."""
    x = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    with pytest.raises(AudioError, match=r"score_many's sample_rate=") as info:
        sddkit.load_detector().score_many([(x, 44100)], names=["a.wav"])
    assert "at the model's rate" not in str(info.value) and str(info.value).startswith("a.wav: ")


def test_wavefake_empty_selections_are_refused(tmp_path):
    """jsut_subsets: [] (a try at "every subset") read no JSUT speech without a word; generators: [] said the
    generator folders held no audio."""
    gen = tmp_path / "generated_audio"
    touch(gen / "ljspeech_melgan" / "LJ001-0001_gen.wav")
    jsut = tmp_path / "jsut_ver1.1"
    touch(jsut / "basic5000" / "wav" / "BASIC5000_0001.wav")
    with pytest.raises(ProtocolError, match=r"jsut_subsets \[\] keeps no JSUT subset.*basic5000"):
        read_protocol(tmp_path, jsut_root=str(jsut), jsut_subsets=[])
    with pytest.raises(ProtocolError, match=r"generators \[\] keeps no generator folder.*ljspeech_melgan"):
        read_protocol(tmp_path, generators=[])


def test_wavefake_tts_prompts_spread_over_group_folds(tmp_path):
    """The text-to-speech folder's prompts had pair_id '' and speaker LJ: the whole attack was one group of the folds
    (with n=5, `sdd cv --bonafide-folds 5`'s held-out group, so no fold trained on it, and a recipe's folds put it all
    in one fold)."""
    from sddkit.training.crossval import BONAFIDE_GROUPS

    tts = tmp_path / "generated_audio" / "common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech"
    for k in range(40):
        touch(tts / f"gen_{k}.wav")
    table = read_protocol(tmp_path)
    assert len(set(table.column("pair_id"))) == 40
    assert len(set(table.group_folds(BONAFIDE_GROUPS, 5))) == 5
