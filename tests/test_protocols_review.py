"""Protocol readers, tables and ``sdd robustness --partitions`` on real-format inputs (review fixes).

Every case builds a tiny tree in the official layout in a tmp folder; empty files stand in for audio
wherever the reader only lists files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sddkit.data.protocols import read_protocol
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- ASVspoof 2019 PA --------------------------------------------------------------------------

PA2019_TRAIN = "PA_0079 PA_T_0000001 aaa - bonafide\nPA_0079 PA_T_0000002 aaa AA spoof\n"


def test_asvspoof2019_pa_protocol_reads_with_its_audio_root(tmp_path):
    """2019 PA CM protocols (SPEAKER UTT ENVIRONMENT ATTACK KEY) have the LA layout; their audio is in
    PA/ASVspoof2019_PA_{train,dev,eval}/flac, which an explicit root must find (it raised before)."""
    pa = tmp_path / "PA"
    proto = _write(pa / "ASVspoof2019_PA_cm_protocols" / "ASVspoof2019.PA.cm.train.trn.txt", PA2019_TRAIN)
    (pa / "ASVspoof2019_PA_train" / "flac").mkdir(parents=True)
    for kwargs in ({"root": pa}, {}, {"root": tmp_path}):  # the PA folder, next to the protocol, or above PA
        df = read_protocol(proto, **kwargs).df
        assert df["path"].tolist() == [
            str(pa / "ASVspoof2019_PA_train" / "flac" / "PA_T_0000001.flac"),
            str(pa / "ASVspoof2019_PA_train" / "flac" / "PA_T_0000002.flac"),
        ]
    assert df["attack"].tolist() == ["bonafide", "AA"]
    assert df["partition"].tolist() == ["train", "train"]
    assert set(df["corpus"]) == {"asvspoof2019_pa"} and set(df["source"]) == {"asvspoof2019_pa"}
    assert df["environment"].tolist() == ["aaa", "aaa"]
    assert df["attack_type"].tolist() == ["", "replay"]
    # LA files keep their corpus name and carry no environment column
    la = _write(tmp_path / "la.txt", "LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1271820 - A01 spoof\n")
    la_df = read_protocol(la).df
    assert set(la_df["corpus"]) == {"asvspoof2019_la"} and "environment" not in la_df.columns
    assert read_protocol(la, corpus="mine").df["corpus"].tolist() == ["mine", "mine"]


# --- ASVspoof 2021 phases -----------------------------------------------------------------------


def test_asvspoof2021_unknown_phase_names_the_phases_present(tmp_path):
    key = _write(
        tmp_path / "keys" / "LA" / "CM" / "trial_metadata.txt",
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
        "LA_0020 LA_E_7294490 g722 loc_tx bonafide bonafide notrim progress\n"
        "LA_0031 LA_E_5013670 none sin_tx A17 spoof trim hidden_track\n",
    )
    assert read_protocol(key, phases=["eval", "hidden_track"]).df["utt_id"].tolist() == [
        "LA_E_9332881",
        "LA_E_5013670",
    ]
    # 'hidden' (the phase is called hidden_track) used to drop its rows silently next to a valid phase
    with pytest.raises(ProtocolError, match=r"phases \['hidden'\].*present: eval, hidden_track, progress"):
        read_protocol(key, phases=["eval", "hidden"])


# --- MLAAD + M-AILABS ---------------------------------------------------------------------------


def test_mlaad_bonafide_root_may_be_one_mailabs_language_folder(tmp_path):
    """M-AILABS ships one archive per language (de_DE/by_book/...); pointing bonafide_root at that
    folder gave language 'by', no speaker, and matched none of MLAAD's original_file references."""
    mlaad = tmp_path / "MLAAD"
    header = "path|original_file|language|is_original_language|duration|training_data|model_name|architecture"
    row = (
        "./fake/de/tts_models_de_thorsten_vits/f1.wav|de_DE/by_book/female/eva_k/grune_haus/wavs/f1.wav|"
        "de|True|2.0|thorsten|tts_models/de/thorsten/vits|vits"
    )
    _write(mlaad / "fake" / "de" / "tts_models_de_thorsten_vits" / "meta.csv", header + "\n" + row + "\n")
    de = tmp_path / "m-ailabs" / "de_DE"
    for name in ("f1.wav", "f2.wav"):
        _write(de / "by_book" / "female" / "eva_k" / "grune_haus" / "wavs" / name)
    every = read_protocol(mlaad, bonafide_root=de, languages=["de"]).df
    bona = every[every["label"] == "bonafide"]
    assert len(bona) == 2
    assert set(bona["language"]) == {"de"} and set(bona["speaker"]) == {"eva_k"}
    ref = read_protocol(mlaad, bonafide_root=de, bonafide="referenced").df
    assert [Path(p).name for p in ref.loc[ref["label"] == "bonafide", "path"]] == ["f1.wav"]


# --- sddbench / Fake-or-Real selections ---------------------------------------------------------

SDDBENCH_HEADER = (
    "path,label,partition,system,attack_type,source,speaker,pair_id,language,origin_corpus,variant,"
    "orig_format,sample_rate,channels,duration_s,source_repo,source_path,source_commit"
)


def _manifest(tmp_path: Path) -> Path:
    rows = [
        "audio/a.flac,spoof,train,YourTTS,tts,yourtts_demo,s1,p1,en,,,FLAC,16000,1,1.0,r,x,c",
        "audio/b.flac,bonafide,val,bonafide,-,yourtts_demo,s2,p2,en,VCTK,,FLAC,16000,1,1.0,r,y,c",
        "audio/c.flac,spoof,test_unseen,StyleTTS2,tts,styletts2_demo,s3,p3,en,,,FLAC,16000,1,1.0,r,z,c",
    ]
    return _write(tmp_path / "sddbench" / "manifest.csv", SDDBENCH_HEADER + "\n" + "\n".join(rows) + "\n")


def test_sddbench_partition_typo_next_to_a_valid_one_is_an_error(tmp_path):
    manifest = _manifest(tmp_path)
    assert read_protocol(manifest, partitions=["train", "val"]).df["utt_id"].tolist() == ["a", "b"]
    # 'valid' used to be ignored silently, leaving a train-only table
    with pytest.raises(ProtocolError, match=r"no partitions \['valid'\].*present: test_unseen, train, val"):
        read_protocol(manifest, partitions=["train", "valid"])


def test_fake_or_real_archive_version_names_and_unknown_partitions(tmp_path):
    """The for-2sec / for-rerec archives unpack to for-2seconds / for-rerecorded: both names select them."""
    root = tmp_path / "FoR"
    for outer, inner in (("for-2sec", "for-2seconds"), ("for-norm", "for-norm"), ("for-rerecorded", None)):
        base = root / outer / inner if inner else root / outer
        for split in ("training", "testing"):
            _write(base / split / "real" / f"{split}_r.wav")
            _write(base / split / "fake" / f"{split}_f.wav")
    for name in ("for-2sec", "for-2seconds"):
        df = read_protocol(root, format="fake_or_real", versions=[name]).df
        assert len(df) == 4 and set(df["source"]) == {"for-2seconds"}
    assert set(read_protocol(root, format="fake_or_real", versions=["for-rerec"]).df["source"]) == {"for-rerecorded"}
    with pytest.raises(ProtocolError, match=r"versions \['for-original'\]"):
        read_protocol(root, format="fake_or_real", versions=["for-norm", "for-original"])
    # 'dev' is no Fake-or-Real partition: it used to be ignored next to 'train'
    with pytest.raises(ProtocolError, match=r"partitions \['dev'\]"):
        read_protocol(root, format="fake_or_real", partitions=["train", "dev"])


# --- group folds --------------------------------------------------------------------------------


def test_group_folds_default_columns_work_without_pair_id():
    """FoldSpec's default ``by`` is [pair_id, speaker]; only sddbench has pair_id, so folds of any other
    protocol (ASVspoof, In-the-Wild, ...) raised 'no column pair_id'. A missing column counts as empty."""
    records = [
        {"utt_id": f"u{i}", "label": "spoof" if i % 2 else "bonafide", "speaker": f"s{i // 4}"} for i in range(40)
    ]
    t = UtteranceTable.from_records(records)
    folds = t.group_folds(["pair_id", "speaker"], 3)
    np.testing.assert_array_equal(folds, t.group_folds(["speaker"], 3))
    df = t.df.assign(fold=folds)
    assert (df.groupby("speaker")["fold"].nunique() == 1).all()
    with pytest.raises(ProtocolError, match=r"no column among the group columns \['nope', 'pair_id'\]"):
        t.group_folds(["nope", "pair_id"], 2)


# --- sdd robustness --partitions ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from sddkit.config import from_dict, to_dict
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.model_dir import save_model_dir

    root = tmp_path_factory.mktemp("robust_parts")
    cfg = from_dict(
        DetectorConfig,
        {"frontend": "logmel", "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 0, "dropout": 0.0}},
    )
    torch.manual_seed(0)
    return save_model_dir(
        root / "model", build_detector(cfg).eval(), model_config=to_dict(cfg), inference={"window_samples": 4000}
    )


def _table_with_partitions(tmp_path: Path) -> Path:
    """An sddkit utterance table (a reader without a ``partitions`` option) with a partition column."""
    rng = np.random.default_rng(0)
    records = []
    for i, (label, part) in enumerate(
        [("bonafide", "dev"), ("spoof", "dev"), ("bonafide", "eval"), ("spoof", "eval"), ("spoof", "eval")]
    ):
        path = tmp_path / "audio" / f"u{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.05 * rng.standard_normal(5000)).astype(np.float32), 16000)
        records.append({"utt_id": f"u{i}", "path": str(path), "label": label, "partition": part})
    return UtteranceTable.from_records(records).save(tmp_path / "table.csv")


def _robustness(protocol: Path, out: Path, model: Path | None, *extra: str) -> int:
    from sddkit.cli.main import main

    args = ["robustness", "--protocol", str(protocol), "--out", str(out), "--conditions", "clean", "--quiet"]
    if model is not None:
        args += ["--model", str(model)]
    return main([*args, "--workers", "0", *extra])


def test_robustness_partitions_filter_any_table_with_a_partition_column(tmp_path, tiny_model):
    import pandas as pd

    table = _table_with_partitions(tmp_path)
    assert _robustness(table, tmp_path / "out", tiny_model, "--partitions", "eval") == 0
    scores = pd.read_csv(tmp_path / "out" / "scores_all.csv")
    assert sorted(set(scores["utt_id"])) == ["u2", "u3", "u4"]
    assert _robustness(table, tmp_path / "both", tiny_model, "--partitions", "dev,eval") == 0
    assert len(set(pd.read_csv(tmp_path / "both" / "scores_all.csv")["utt_id"])) == 5


def test_robustness_partitions_errors_are_one_clear_line(tmp_path, capsys):
    table = _table_with_partitions(tmp_path)
    # the errors come from the protocol, before any model is loaded (--model points nowhere)
    missing_model = tmp_path / "no_model"
    assert _robustness(table, tmp_path / "o1", missing_model, "--partitions", "eval", "test") == 2
    err = capsys.readouterr().err
    assert "no partitions ['test']" in err and "present: dev, eval" in err
    folder = tmp_path / "labelled"
    for label in ("bonafide", "spoof"):
        _write(folder / label / "x.wav")
    assert _robustness(folder, tmp_path / "o2", missing_model, "--partitions", "eval") == 2
    err = capsys.readouterr().err
    assert "has no partition column" in err and "'folder'" in err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_select_partitions_helper():
    from sddkit.evaluation.robustness import select_partitions

    t = UtteranceTable.from_records(
        [
            {"utt_id": "a", "label": "bonafide", "partition": "train"},
            {"utt_id": "b", "label": "spoof", "partition": "eval"},
            {"utt_id": "c", "label": "spoof", "partition": ""},
        ]
    )
    assert select_partitions(t, None) is t
    assert select_partitions(t, ["eval"]).df["utt_id"].tolist() == ["b"]
    with pytest.raises(ProtocolError, match="present: eval, train"):
        select_partitions(t, ["dev"])
    no_part = UtteranceTable.from_records([{"utt_id": "a", "label": "bonafide"}])
    with pytest.raises(ProtocolError, match="no partition column"):
        select_partitions(no_part, ["eval"])


# --- labels_csv ---------------------------------------------------------------------------------


def test_labels_csv_from_a_spreadsheet_semicolon_or_tab_export(tmp_path):
    """Spreadsheets in many locales export ``path;label`` (and some tools write TSV): such a file was
    neither detected nor readable ('header lacks column(s) ['path', 'label']')."""
    for name, sep in (("semi.csv", ";"), ("tabs.tsv", "\t")):
        text = f"path{sep}label{sep}attack\r\na.wav{sep}bonafide{sep}\r\nb.wav{sep}spoof{sep}VITS\r\n"
        path = _write(tmp_path / name, text)
        table = read_protocol(path)
        assert table.column("label").tolist() == ["bonafide", "spoof"]
        assert table.column("attack").tolist() == ["bonafide", "VITS"]
        assert table.column("path").tolist() == [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]


def test_labels_csv_keeps_partition_and_normalises_bonafide_attack(tmp_path):
    """A hand-written CSV's partition column was dropped (so ``--partitions`` could not use it), and a
    bona fide row's attack '-' (the ASVspoof habit) became a domain of its own next to 'bonafide'."""
    path = _write(
        tmp_path / "labels.csv",
        "path,label,attack,partition,language\n"
        "a.wav,bonafide,-,dev,en\nb.wav,spoof,-,dev,en\nc.wav,real,bonafide,eval,de\nd.wav,fake,A01,eval,de\n",
    )
    table = read_protocol(path)
    assert table.column("attack").tolist() == ["bonafide", "", "bonafide", "A01"]
    assert table.column("partition").tolist() == ["dev", "dev", "eval", "eval"]
    assert table.column("language").tolist() == ["en", "en", "de", "de"]
    from sddkit.evaluation.robustness import select_partitions

    assert select_partitions(table, ["eval"]).column("utt_id").tolist() == ["c.wav", "d.wav"]


def test_mlaad_pair_id_keeps_a_reader_and_the_syntheses_of_their_texts_in_one_fold(tmp_path):
    """MLAAD spoofs re-synthesise M-AILABS texts (original_file) but had no speaker or pair column, so
    group folds put each spoof in a fold of its own, apart from the recordings of the same texts."""
    mlaad = tmp_path / "MLAAD"
    header = "path|original_file|language|is_original_language|duration|training_data|model_name|architecture"
    rows = []
    for model in ("m1", "m2"):
        lines = [
            f"./fake/de/{model}/f{n}.wav|de_DE/by_book/female/eva_k/book/wavs/f{n}.wav|de|True|1.0|x|{model}|vits"
            for n in (1, 2)
        ]
        lines.append(f"./fake/de/{model}/g1.wav|de_DE/by_book/mix/other_book/wavs/g1.wav|de|True|1.0|x|{model}|vits")
        _write(mlaad / "fake" / "de" / model / "meta.csv", header + "\n" + "\n".join(lines) + "\n")
        rows += lines
    mailabs = tmp_path / "m-ailabs"
    for n in (1, 2):
        _write(mailabs / "de_DE" / "by_book" / "female" / "eva_k" / "book" / "wavs" / f"f{n}.wav")
    _write(mailabs / "de_DE" / "by_book" / "mix" / "other_book" / "wavs" / "g1.wav")
    table = read_protocol(mlaad, bonafide_root=mailabs)
    df = table.df
    assert sorted(set(df["pair_id"])) == ["de_DE/eva_k", "de_DE/mix/other_book"]
    folds = table.group_folds(["pair_id", "speaker"], 4)
    assert (df.assign(fold=folds).groupby("pair_id")["fold"].nunique() == 1).all()


def test_where_and_exclude_match_numbers_from_a_recipe_against_text_columns():
    """Recipe YAML gives `where: {sample_rate: [16000]}` as ints, the table holds the text '16000': the
    rows were never matched (and a bare int raised TypeError: 'int' object is not iterable)."""
    t = UtteranceTable.from_records(
        [
            {"utt_id": "a", "label": "bonafide", "sample_rate": "16000", "is_original_language": "True"},
            {"utt_id": "b", "label": "spoof", "sample_rate": "24000", "is_original_language": "False"},
        ]
    )
    assert t.where(sample_rate=[16000]).column("utt_id").tolist() == ["a"]
    assert t.where(sample_rate=16000).column("utt_id").tolist() == ["a"]
    assert t.exclude(sample_rate=[16000]).column("utt_id").tolist() == ["b"]
    assert t.where(is_original_language=[True]).column("utt_id").tolist() == ["a"]
    assert t.where(sample_rate=["16000", "24000"]).column("utt_id").tolist() == ["a", "b"]


def test_asvspoof_audio_next_to_the_protocol_folder_when_read_from_inside_it(tmp_path, monkeypatch):
    """Read as a bare file name from inside LA/ASVspoof2019_LA_cm_protocols, the folder above was never
    searched (Path('.').parent is '.'): every path came out '' ("no audio known")."""
    la = tmp_path / "LA"
    protos = la / "ASVspoof2019_LA_cm_protocols"
    _write(protos / "ASVspoof2019.LA.cm.train.trn.txt", "LA_0079 LA_T_1138215 - - bonafide\n")
    flac = la / "ASVspoof2019_LA_train" / "flac"
    _write(flac / "LA_T_1138215.flac")
    monkeypatch.chdir(protos)
    (path,) = read_protocol("ASVspoof2019.LA.cm.train.trn.txt").column("path").tolist()
    assert Path(path).resolve() == (flac / "LA_T_1138215.flac").resolve()
    # the ASVspoof 5 layout: protocols in ASVspoof5_protocols/, audio in flac_T/ next to that folder
    a5 = tmp_path / "asv5"
    _write(a5 / "ASVspoof5_protocols" / "ASVspoof5.train.tsv", "T_4850 T_0000000000 F - - - AC3 A05 spoof -\n")
    (a5 / "flac_T").mkdir()
    monkeypatch.chdir(a5 / "ASVspoof5_protocols")
    (path,) = read_protocol("ASVspoof5.train.tsv").column("path").tolist()
    assert Path(path).resolve() == (a5 / "flac_T" / "T_0000000000.flac").resolve()


def test_split_and_language_typos_are_errors_not_silent_drops(tmp_path):
    libri = tmp_path / "LibriSpeech"
    for split, spk in (("dev-clean", "84"), ("test-clean", "61")):
        _write(libri / split / spk / "121123" / f"{spk}-121123.trans.txt", f"{spk}-121123-0000 GO DO YOU HEAR\n")
    assert len(read_protocol(libri, format="librispeech", splits=["dev-clean", "test-clean"])) == 2
    with pytest.raises(ProtocolError, match=r"no splits \['test_clean'\].*splits present: dev-clean, test-clean"):
        read_protocol(libri, format="librispeech", splits=["dev-clean", "test_clean"])
    mlaad = tmp_path / "MLAAD"
    for lang in ("de", "en"):
        _write(mlaad / "fake" / lang / "some_model" / "a.wav")
    assert len(read_protocol(mlaad, languages=["de", "en"])) == 2
    with pytest.raises(ProtocolError, match=r"no languages \['fr'\].*languages present: de, en"):
        read_protocol(mlaad, languages=["de", "fr"])


def test_asvspoof_audio_converted_to_wav_is_found(tmp_path):
    """ASVspoof audio is often converted to WAV (``sox x.flac x.wav``) in place; the readers always
    wrote ``<utt>.flac``, so every path of such a copy pointed at a missing file."""
    la = tmp_path / "LA"
    proto = _write(tmp_path / "p.txt", "LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1271820 - A01 spoof\n")
    for utt in ("LA_T_1138215", "LA_T_1271820"):
        _write(la / "ASVspoof2019_LA_train" / "flac" / f"{utt}.wav")
    paths = read_protocol(proto, root=la).column("path").tolist()
    assert paths == [str(la / "ASVspoof2019_LA_train" / "flac" / f"{u}.wav") for u in ("LA_T_1138215", "LA_T_1271820")]
    # a folder holding the .wav files directly is a valid root too (it was refused: no *.flac inside)
    flat = tmp_path / "flat"
    _write(flat / "LA_T_1138215.wav")
    assert read_protocol(proto, root=flat).column("path").tolist()[0] == str(flat / "LA_T_1138215.wav")
    # FLAC stays the default: a partial download (first file missing) keeps .flac
    part = tmp_path / "part"
    _write(part / "ASVspoof2019_LA_train" / "flac" / "LA_T_1271820.flac")
    assert read_protocol(proto, root=part).column("path").tolist()[0].endswith("LA_T_1138215.flac")


def test_negative_seeds_are_refused_when_samplers_and_datasets_are_built():
    """numpy's generators refuse negative seeds, but only once an epoch is drawn (inside a DataLoader
    worker for datasets); the Python API should say so up front, as the recipe does."""
    from sddkit.data.dataset import UtteranceDataset
    from sddkit.data.samplers import ClassBalancedSampler, DomainBalancedSampler

    labels = np.array([0, 1, 0, 1])
    for build in (
        lambda: ClassBalancedSampler(labels, seed=-1, rank=0, world_size=1),
        lambda: DomainBalancedSampler(["a", "b", "a", "b"], seed=-3, rank=0, world_size=1),
    ):
        with pytest.raises(ValueError, match="seed must be non-negative"):
            build()
    t = UtteranceTable.from_records([{"utt_id": "a", "label": "bonafide"}, {"utt_id": "b", "label": "spoof"}])
    with pytest.raises(ValueError, match="seed must be non-negative"):
        UtteranceDataset(t, train=True, seed=-1)


def test_labels_csv_header_names_are_case_insensitive(tmp_path):
    """A spreadsheet's header is often capitalised (Path,Label): it was neither detected nor read."""
    path = _write(tmp_path / "labels.csv", "Path,Label,Attack,Partition\na.wav,Bonafide,,dev\nb.wav,FAKE,VITS,eval\n")
    table = read_protocol(path)
    assert table.column("label").tolist() == ["bonafide", "spoof"]
    assert table.column("attack").tolist() == ["bonafide", "VITS"]
    assert table.column("partition").tolist() == ["dev", "eval"]


def test_labels_csv_refuses_one_file_listed_twice_under_two_spellings(tmp_path):
    # x.wav,real and ./x.wav,fake both entered training, with opposite labels
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nx.wav,real\nsub/../y.wav,fake\n./x.wav,fake\n")
    with pytest.raises(ProtocolError, match=r"labels.csv:4: '\./x\.wav' is the file of line 2 \('x\.wav'\) again"):
        read_protocol(str(csv), format="labels_csv")
    csv.write_text("path,label\nx.wav,real\nsub/../y.wav,fake\n")
    assert len(read_protocol(str(csv), format="labels_csv")) == 2


def test_a_parquet_table_with_typed_columns_reads_as_its_csv_copy(tmp_path):
    # a Parquet table written elsewhere keeps its types: a numeric pair_id with gaps put every gap into one
    # fold group and `exclude: {pair_id: ["1"]}` removed nothing, an int speaker with a gap read "1.0", and a
    # categorical column with a gap raised a bare TypeError
    import pandas as pd

    df = pd.DataFrame(
        {
            "utt_id": [f"u{i}" for i in range(12)],
            "label": ["bonafide", "spoof"] * 6,
            "pair_id": [1.0, 1.0, None, None, None, None, 2.0, 2.0, None, None, None, None],
            "speaker": [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, None, 6],
            "language": pd.Categorical(["de", "en"] * 5 + [None, "de"]),
        }
    )
    df.to_parquet(tmp_path / "t.parquet")
    as_text = df.astype(object).map(lambda v: "" if v is None or v != v else str(int(v)) if isinstance(v, float) else v)
    as_text.to_csv(tmp_path / "t.csv", index=False)
    parquet, csv = UtteranceTable.load(tmp_path / "t.parquet"), UtteranceTable.load(tmp_path / "t.csv")
    for col in ("pair_id", "speaker", "language"):
        assert parquet.column(col).tolist() == csv.column(col).tolist()
    assert parquet.column("speaker").tolist()[9:] == ["5", "", "6"]
    by = ["pair_id", "speaker"]
    assert parquet.group_folds(by, 4).tolist() == csv.group_folds(by, 4).tolist()
    assert len(parquet.exclude(pair_id=["1"])) == 10
    snr = pd.DataFrame({"utt_id": ["a", "b"], "label": ["bonafide", "spoof"], "snr": np.array([0.1, 2.5], np.float32)})
    snr.to_parquet(tmp_path / "snr.parquet")
    assert UtteranceTable.load(tmp_path / "snr.parquet").column("snr").tolist() == ["0.1", "2.5"]
