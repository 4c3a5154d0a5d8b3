"""Review 23 (protocol readers and evaluation commands, as a researcher with the real corpora uses them)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from sddkit.cli.main import main
from sddkit.detectors import model_dir as md
from sddkit.scoring.api import load_detector
from sddkit.scoring.calibration import fit_calibration


def _asvspoof2019_dev(tmp_path, tiny_stats, with_audio: bool = True):
    """A TinyStats model and an ASVspoof 2019 LA CM protocol (train and dev trials, the corpus's layout) whose labels
    follow the noise level the model scores higher, with overlap; (model, protocol, dev raw scores, dev labels)."""
    model = tiny_stats(tmp_path / "model")
    det = load_detector(model)
    rng = np.random.default_rng(0)
    la = tmp_path / "LA"
    (la / "ASVspoof2019_LA_cm_protocols").mkdir(parents=True)
    rows, raw, levels = [], {}, {}
    for part, code in (("train", "T"), ("dev", "D")):
        audio = la / f"ASVspoof2019_LA_{part}" / "flac"
        audio.mkdir(parents=True)
        for i in range(8):
            utt = f"LA_{code}_{1000000 + i}"
            level = (0.1, 0.2)[i % 2] * (0.5 + rng.random())
            path = audio / f"{utt}.flac"
            sf.write(path, (level * rng.standard_normal(2400)).astype(np.float32), 16000)  # 150 ms
            raw[utt], levels[utt] = det.score_file(path).raw_score, i % 2
    louder_higher = np.mean([raw[u] for u in raw if levels[u]]) > np.mean([raw[u] for u in raw if not levels[u]])
    labels = {u: int(levels[u] == (1 if louder_higher else 0)) for u in raw}
    for utt in raw:
        key = "bonafide" if labels[utt] else "spoof"
        rows.append(f"LA_0079 {utt} - {'-' if labels[utt] else 'A01'} {key}")
    protocol = la / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.trn_dev.txt"
    protocol.write_text("\n".join(rows) + "\n")
    if not with_audio:
        bare = tmp_path / "elsewhere" / "protocols"  # neither it nor the folder above holds LA/
        bare.mkdir(parents=True)
        protocol = bare / protocol.name
        protocol.write_text("\n".join(rows) + "\n")
    dev = [u for u in raw if u.startswith("LA_D_")]
    return model, protocol, np.array([raw[u] for u in dev]), np.array([labels[u] for u in dev])


@pytest.mark.parametrize("spelling", [["dev"], ["dev,"]])
def test_calibrate_partitions_selects_the_partition_column_of_a_protocol_whose_reader_has_no_such_option(
    tmp_path, tiny_stats, capsys, spelling
):
    # sdd calibrate --partitions passed `partitions` to the reader as an option, which only the sddbench and
    # Fake-or-Real readers have: an ASVspoof protocol (or a labels CSV with a partition column) was refused with
    # "protocol: unknown key(s) 'partitions' for protocol 'asvspoof2019_la' (did you mean 'partition'?)"
    model, protocol, raw, labels = _asvspoof2019_dev(tmp_path, tiny_stats)
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol), "--partitions", *spelling]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["partitions"] == ["dev"]
    assert (report["n_bonafide"], report["n_spoof"]) == (int(labels.sum()), int((labels == 0).sum()))
    expected = fit_calibration(raw, labels, prior=0.5)  # fitted on the dev trials alone
    assert report["calibration"] == pytest.approx({"a": expected.a, "b": expected.b})
    # a partition the protocol lacks is named as such, and nothing is written
    config = (model / md.CONFIG_NAME).read_bytes()
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol), "--partitions", "eval"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no partitions ['eval']" in err and "partitions present: dev, train" in err
    assert (model / md.CONFIG_NAME).read_bytes() == config


def test_calibrate_on_a_protocol_read_without_its_audio_folder_names_the_missing_paths(tmp_path, tiny_stats, capsys):
    # an ASVspoof protocol away from its audio folders reads with path '' for every trial: sdd calibrate said
    # "error:  cannot be scored (is a directory, not an audio file)", naming no file, no utterance, no cause
    model, protocol, _, _ = _asvspoof2019_dev(tmp_path, tiny_stats, with_audio=False)
    config = (model / md.CONFIG_NAME).read_bytes()
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol)]) == 2
    err = capsys.readouterr().err
    assert f"{protocol}: 16 of 16 utterances have no audio path (e.g. 'LA_T_1000000')" in err
    assert "is a directory" not in err
    assert (model / md.CONFIG_NAME).read_bytes() == config


def _df_key(tmp_path):
    """An ASVspoof 2021 DF key (13 fields) of eval-phase trials and their scores (UTT SCORE): 4 bona fide at 1..4,
    a traditional vocoder's spoofs below all of them, a neural autoregressive one's at 2.5 and 0."""
    trials = [
        ("bonafide", "-", 1.0),
        ("bonafide", "-", 2.0),
        ("bonafide", "-", 3.0),
        ("bonafide", "-", 4.0),
        ("spoof", "traditional_vocoder", -1.0),
        ("spoof", "traditional_vocoder", -2.0),
        ("spoof", "neural_vocoder_autoregressive", 2.5),
        ("spoof", "neural_vocoder_autoregressive", 0.0),
    ]
    key, scores = [], []
    for i, (label, vocoder, score) in enumerate(trials):
        utt = f"DF_E_{2000000 + i}"
        attack = "bonafide" if label == "bonafide" else "A09"
        key.append(f"LA_0023 {utt} nocodec asvspoof {attack} {label} notrim eval {vocoder} - - - -")
        scores.append(f"{utt} {score}")
    (tmp_path / "trial_metadata.txt").write_text("\n".join(key) + "\n")
    (tmp_path / "scores.txt").write_text("\n".join(scores) + "\n")
    return tmp_path / "trial_metadata.txt", tmp_path / "scores.txt"


def test_eval_of_an_asvspoof2021_df_key_breaks_the_eer_down_per_vocoder(tmp_path, capsys):
    # the DF track's official breakdown is per vocoder (each vocoder's spoofs against all bona fide); the report had
    # per-attack, per-source and per-codec tables only, and the key's vocoder column went unused
    key, scores = _df_key(tmp_path)
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(scores), "--protocol", str(key), "--out", str(out), "--bootstrap", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    rows = {r["vocoder"]: r for r in json.loads((out / "report.json").read_text())["per_vocoder"]}
    assert set(rows) == {"traditional_vocoder", "neural_vocoder_autoregressive"}
    assert (rows["traditional_vocoder"]["n_bonafide"], rows["traditional_vocoder"]["n_spoof"]) == (4, 2)
    assert rows["traditional_vocoder"]["eer"] == 0.0
    # bona fide 1..4 against 2.5 and 0: accepting >= 2.5 rejects 2 of 4 bona fide and accepts 1 of 2 spoofs
    assert rows["neural_vocoder_autoregressive"]["eer"] == pytest.approx(50.0)
    csv = (out / "per_vocoder.csv").read_text().splitlines()
    assert csv[0].startswith("vocoder,n,n_bonafide,n_spoof,eer") and len(csv) == 3
    assert "## Per vocoder (each vocoder's spoofs vs all bona fide)" in (out / "report.md").read_text()
    # the stage-1 keys' 8 fields leave every vocoder unknown: no table (one row of every spoof would pose as one),
    # and a rerun into the folder removes the earlier run's
    stage1 = tmp_path / "stage1.txt"
    stage1.write_text("\n".join(" ".join(line.split()[:8]) for line in key.read_text().splitlines()) + "\n")
    argv = ["eval", "--scores", str(scores), "--protocol", str(stage1), "--out", str(out), "--bootstrap", "0"]
    assert main([*argv, "--protocol-format", "asvspoof2021_df"]) == 0
    assert json.loads((out / "report.json").read_text())["per_vocoder"] is None
    assert not (out / "per_vocoder.csv").exists()


def test_asv_scores_of_asvspoof2021_say_how_to_join_its_score_file_with_its_asv_key(tmp_path):
    # ASVspoof 2021's organiser ASV scores (keys/LA/ASV/ASVTorch_Kaldi/score.txt: SPEAKER UTT SCORE) name no trial
    # kind, and its ASV key no score: either given to --asv-scores was "no field is target, nontarget or spoof" or
    # "the last field 'eval' is not a finite score", with no word of how the official script pairs them
    from sddkit.errors import ProtocolError
    from sddkit.evaluation.asv import read_asv_scores

    key = [
        "LA_0015 LA_E_1103494 alaw ita_tx bonafide target notrim eval",
        "LA_0015 LA_E_1103495 alaw ita_tx bonafide nontarget notrim eval",
        "LA_0007 LA_E_5013670 alaw ita_tx A07 spoof notrim eval",
        "LA_0007 LA_E_5013671 alaw ita_tx A07 spoof notrim progress",
    ]
    scores = ["LA_0015 LA_E_1103494 3.5", "LA_0015 LA_E_1103495 -4.25", "LA_0007 LA_E_5013670 1.5", "LA_0007 x 9"]
    for name, lines, what in (("score.txt", scores, "ASV score file"), ("trial_metadata.txt", key, "ASV key")):
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(ProtocolError, match=f"this is an ASVspoof 2021 {what}") as info:
            read_asv_scores(path)
        assert "paste -d' ' keys/LA/ASV/trial_metadata.txt" in str(info.value) and '$8 == "eval"' in str(info.value)
    # the joined lines of the phase (what the hinted command writes) are read as the official script pairs them
    joined = tmp_path / "asv_eval.txt"
    rows = [f"{k} {s.split()[-1]}" for k, s in zip(key, scores) if k.split()[7] == "eval"]
    joined.write_text("\n".join(rows) + "\n")
    asv = read_asv_scores(joined)
    assert (asv.target.tolist(), asv.nontarget.tolist(), asv.spoof.tolist()) == ([3.5], [-4.25], [1.5])


def _mlaad_with_mailabs(tmp_path):
    """An MLAAD tree (fake/<lang>/<model>/ + its pipe-separated meta.csv) of 4 spoofs, the M-AILABS book its rows
    name as original_file (4 bona fide files), and scores naming them by utt_id: bona fide 1..4, spoofs 0..-3."""
    model = tmp_path / "MLAAD" / "fake" / "de" / "tts_models_de_thorsten_vits"
    book = tmp_path / "M-AILABS" / "de_DE" / "by_book" / "female" / "eva_k" / "grune_haus" / "wavs"
    model.mkdir(parents=True)
    book.mkdir(parents=True)
    noise = np.random.default_rng(0).standard_normal(800).astype(np.float32) * 0.1
    meta = [
        "path|original_file|language|is_original_language|duration|training_data|model_name|architecture|transcript"
    ]
    scores = []
    for i in range(4):
        sf.write(model / f"vits_{i}.wav", noise, 16000)
        sf.write(book / f"grune_haus_{i}.wav", noise, 16000)
        original = f"de_DE/by_book/female/eva_k/grune_haus/wavs/grune_haus_{i}.wav"
        meta.append(f"./fake/de/{model.name}/vits_{i}.wav|{original}|German|True|0.05|thorsten|{model.name}|vits|Hallo")
        scores.append(f"fake/de/{model.name}/vits_{i} {-float(i)}")
        scores.append(f"m-ailabs/de_DE/by_book/female/eva_k/grune_haus/wavs/grune_haus_{i} {float(i + 1)}")
    (model / "meta.csv").write_text("\n".join(meta) + "\n")
    (tmp_path / "scores.txt").write_text("\n".join(scores) + "\n")
    return tmp_path / "MLAAD", tmp_path / "M-AILABS", tmp_path / "scores.txt"


def test_eval_and_compare_read_mlaad_with_its_mailabs_bona_fide_through_protocol_option(tmp_path, capsys):
    # the MLAAD reader's bona fide side (M-AILABS, its bonafide_root option) could not be given on the command line:
    # sdd eval of an MLAAD folder read its spoofs alone and stopped ("all spoof"), with no way to add the bona fide
    mlaad, mailabs, scores = _mlaad_with_mailabs(tmp_path)
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(scores), "--protocol", str(mlaad), "--out", str(out), "--bootstrap", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "MLAAD holds only spoofs" in err and "--protocol-option bonafide_root=DIR" in err
    options = ["--protocol-option", f"bonafide_root={mailabs}", "--protocol-option", "bonafide=referenced"]
    assert main([*argv, *options]) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert (report["pooled"]["n_bonafide"], report["pooled"]["n_spoof"], report["pooled"]["eer"]) == (4, 4, 0.0)
    assert report["inputs"]["protocol_options"] == {"bonafide_root": str(mailabs), "bonafide": "referenced"}
    argv = ["compare", "--protocol", str(mlaad), "--baseline", str(scores), "--system", str(scores)]
    assert main([*argv, *options, "--bootstrap", "50"]) == 0
    assert "on 8 trials (4 bona fide, 4 spoof)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("bonafide_root", "expected KEY=VALUE"),
        ("=x", "expected KEY=VALUE"),
        ("partitions=dev", "give partitions with --partitions"),
        ("bonafide_rot=x", "did you mean 'bonafide_root'?"),
    ],
)
def test_a_malformed_protocol_option_is_one_line_naming_it(tmp_path, capsys, option, words):
    mlaad, _, scores = _mlaad_with_mailabs(tmp_path)
    argv = ["eval", "--scores", str(scores), "--protocol", str(mlaad), "--out", str(tmp_path / "r")]
    assert main([*argv, "--protocol-option", option]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdd eval: error:") and words in err and len(err.strip().splitlines()) == 1


def test_protocol_option_lists_and_twice_given_keys():
    from sddkit.cli.options import parse_protocol_options
    from sddkit.errors import ConfigError

    parsed = parse_protocol_options(["codecs=[C01, C05]", "root=/data/a=b"])
    assert parsed == {"codecs": ["C01", "C05"], "root": "/data/a=b"}  # a path keeps an '=' after the first
    with pytest.raises(ConfigError, match="root= is given twice"):
        parse_protocol_options(["root=/a", "root=/b"])


def test_calibrate_reads_an_asvspoof_protocol_away_from_its_audio_with_a_root_protocol_option(
    tmp_path, tiny_stats, capsys
):
    model, protocol, raw, labels = _asvspoof2019_dev(tmp_path, tiny_stats, with_audio=False)
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol), "--partitions", "dev"]
    assert main([*argv, "--protocol-option", f"root={tmp_path / 'LA'}"]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    expected = fit_calibration(raw, labels, prior=0.5)
    assert report["calibration"] == pytest.approx({"a": expected.a, "b": expected.b})
    assert report["protocol_options"] == {"root": str(tmp_path / "LA")}
    assert md.load_model_dir(model).metadata["calibrated"]["protocol_options"] == {"root": str(tmp_path / "LA")}
