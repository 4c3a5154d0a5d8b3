"""Leftovers of the last note (review 6): a fold's recorded recipe runs alone under ``sdd train``."""

from __future__ import annotations

import pytest
import torch
from test_dataleft_review5 import _cv_recipe, _table_csv
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.config import from_dict, to_dict
from sddkit.training.crossval import HeldOut, fold_recipe
from sddkit.training.data import read_train_table, read_val_table
from sddkit.training.recipe import TrainRecipe


def test_a_folds_recorded_recipe_reads_back_and_builds_its_data_alone(tmp_path):
    """A leave-one-corpus-out fold excluded corpus_b from corpus A's spec too, a value A's protocol lacks; the
    exemption lived only on the in-memory spec, so the fold's recipe as recorded (run.json) failed the exclude
    typo check when re-run with ``sdd train``. Each spec now excludes only the fold values its protocol holds."""
    a = _table_csv(tmp_path / "a.csv", ["s0", "s1"], "a")
    b = _table_csv(tmp_path / "b.csv", ["corpus_b", "s1"], "b")
    val = _table_csv(tmp_path / "v.csv", ["s0", "s1"], "v")
    spec = lambda p: {"protocol": p, "format": "utterance_table"}  # noqa: E731
    recipe = _cv_recipe(tmp_path, [spec(a), spec(b)], spec(val))

    fold = fold_recipe(recipe, HeldOut("source", ("corpus_b",)), tmp_path / "f")
    recorded = from_dict(TrainRecipe, to_dict(fold))  # as sdd train reads the fold's recipe back
    train = read_train_table(recorded.data)
    assert sorted(set(train.column("source"))) == ["s0", "s1"] and len(train) == 6
    assert read_val_table(recorded.data) is not None
    assert [to_dict(s)["exclude"] for s in recorded.data.train] == [{}, {"source": ["corpus_b"]}]


def test_a_fold_started_before_the_change_still_resumes(tmp_path):
    """Fold runs started when every spec excluded every fold value recorded that form in run.json; the check that
    a resumed fold runs the same recipe takes it as the same rows, and still refuses a real change."""
    import json

    import pytest

    from sddkit.errors import ConfigError
    from sddkit.training.crossval import FOLD_NAME, RUN_NAME, check_fold_recipe

    a = _table_csv(tmp_path / "a.csv", ["s0", "s1"], "a")
    b = _table_csv(tmp_path / "b.csv", ["corpus_b", "s1"], "b")
    spec = lambda p: {"protocol": p, "format": "utterance_table"}  # noqa: E731
    recipe = _cv_recipe(tmp_path, [spec(a), spec(b)], spec(a))
    fold, fold_dir = HeldOut("source", ("corpus_b",)), tmp_path / "fold_corpus_b"
    fold_dir.mkdir()
    (fold_dir / FOLD_NAME).write_text("{}")
    old_form = to_dict(fold_recipe(recipe, fold, fold_dir, every_value=True))
    assert old_form["data"]["train"][0]["exclude"] == {"source": ["corpus_b"]}  # a.csv has no corpus_b
    (fold_dir / RUN_NAME).write_text(json.dumps({"recipe": old_form}))
    check_fold_recipe(recipe, fold, fold_dir)
    recipe.seed = 5
    with pytest.raises(ConfigError, match="trained with another recipe"):
        check_fold_recipe(recipe, fold, fold_dir)


def test_an_explicit_linear_layout_the_frontend_contradicts_is_refused_at_build():
    """``backend: {name: linear, layout: frames}`` under a log-Mel front-end built and then failed at the first
    forward (or, when the sizes matched, pooled over the wrong axis)."""
    import pytest

    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.errors import ConfigError

    model = {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "linear", "layout": "frames"}}
    with pytest.raises(ConfigError, match=r"layout 'frames', but the front-end gives spectral features"):
        build_detector(from_dict(DetectorConfig, model))
    model["backend"]["layout"] = "spectral"
    assert build_detector(from_dict(DetectorConfig, model)) is not None


def test_a_data_warning_is_logged_once_however_often_sdd_cv_reads_the_tables(tmp_path, caplog):
    """sdd cv reads a recipe's tables several times per fold (every fold checked first, the held-out rows, the
    fold's run): the same shared-files warning was logged three to four times per fold."""
    import logging

    from test_dataset3_review5 import _spec, _write_table

    from sddkit.training.data import read_train_table, warn_shared_files
    from sddkit.training.recipe import DataConfig

    audio = tmp_path / "audio"
    a = _write_table(tmp_path / "a.csv", [(f"a{i}", audio / f"{i}.wav") for i in range(4)])
    c = _write_table(tmp_path / "c.csv", [("c0", f"{audio}/./2.wav"), ("c1", audio / "9.wav")])
    data = DataConfig(train=[_spec(a), _spec(c)])
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        for _ in range(3):
            train = read_train_table(data)
        for _ in range(3):
            assert warn_shared_files(train, train) == 6  # counted every time, said once
    assert sum("both list 1 audio file(s)" in r.getMessage() for r in caplog.records) == 1
    assert sum("data.val lists 6 of its 6" in r.getMessage() for r in caplog.records) == 1


def test_serve_limit_connections_answers_503_past_the_limit(tmp_path, monkeypatch, capsys):
    """Every waiting upload is held in memory (up to --max-upload-mb) and uvicorn admitted any number of
    connections: `sdd serve --limit-connections N` bounds them (uvicorn answers 503 past it)."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn
    from scoring_support import save_tiny_lcnn

    from sddkit.cli.main import main

    model = save_tiny_lcnn(tmp_path / "lcnn")
    base = ["serve", "--model", str(model), "--port", "0", "--max-concurrent", "1"]
    assert main([*base, "--limit-connections", "1"]) == 2
    assert "--limit-connections must exceed --max-concurrent (1), got 1" in capsys.readouterr().err

    started: list = []
    real_run = uvicorn.Server.run
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: started.append((self, sockets)))
    assert main([*base, "--limit-connections", "2"]) == 0
    server, sockets = started[-1]
    assert server.config.limit_concurrency == 2
    thread = threading.Thread(target=real_run, args=(server, sockets), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        with socket.create_connection(("127.0.0.1", sockets[0].getsockname()[1])):  # an upload still arriving
            time.sleep(0.3)
            assert httpx.get(f"{url}/healthz", timeout=30).status_code == 503
        time.sleep(0.3)
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_trained_mixture_of_expert_dirs_records_them_in_its_metadata(tmp_path):
    """save_model_dir records metadata.expert_dirs for a mixture built from expert folders; the trainer's
    best/ and final/ of such a mixture (config already resolved) had them only inside train_recipe."""
    import json

    from test_train_support import write_corpus

    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.model_dir import save_model_dir
    from sddkit.training.trainer import Trainer

    config = {"frontend": {"name": "logmel", "n_mels": 16}, "backend": {"name": "lcnn", "channels": 4}}
    dirs = [str(tmp_path / name) for name in ("a", "b")]
    for d in dirs:
        save_model_dir(d, build_detector(from_dict(DetectorConfig, config)), model_config=config)
    train = write_corpus(tmp_path / "data", n=6, samples=2400)
    recipe = from_dict(
        TrainRecipe,
        {
            "mixture": {"expert_dirs": dirs, "gate": "classic"},
            "data": {
                "train": {"protocol": str(train), "format": "utterance_table"},
                "crop_samples": 2400,
                "batch_size": 3,
            },
            "trainer": {"epochs": 1, "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )
    Trainer(recipe).fit()
    meta = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["metadata"]
    assert meta["expert_dirs"] == dirs


def test_sdd_compare_partitions_does_not_call_other_phases_scores_strays(tmp_path, capsys):
    """As sdd eval --partitions: a whole ASVspoof 2021 submission compared on its eval phase."""
    from test_eval3_review6 import _asvspoof2021

    from sddkit.cli.main import main

    protocol, scores = _asvspoof2021(tmp_path, extra_scores=["LA_E_9999999 0.5"])
    out = tmp_path / "c.json"
    argv = ["compare", "--protocol", str(protocol), "--baseline", str(scores), "--system", str(scores)]
    assert main([*argv, "--partitions", "eval", "--bootstrap", "50", "--json", str(out)]) == 0
    notes = out.read_text()
    assert "24 of 37 scores are of protocol utterances outside the selected partitions" in notes
    assert "1 of 37 scores have no protocol entry" in notes
    capsys.readouterr()


def test_wavlm_and_hubert_large_presets_take_folders_of_their_architecture(tmp_path):
    """WavLM-Large and HuBERT-Large, common encoders of deepfake detectors, had no preset, so their folders could
    not be loaded under any name. The presets build the 24-layer, 1024-dim pre-norm layout; a folder's config of
    that size passes the preset check (its own values are then used) and a base-size one names its preset."""
    import pytest
    import torch
    from transformers import HubertConfig, WavLMConfig

    from sddkit.errors import ConfigError
    from sddkit.frontends.encoders import PRESETS, _check_architecture
    from sddkit.registry import get_registry

    for name in ("wavlm_large", "hubert_large"):
        with torch.device("meta"):
            enc = get_registry("encoder").build({"name": name})
        assert (enc.total_layers, enc.output_dim) == (24, 1024)
        assert enc.model.config.do_stable_layer_norm and enc.model.config.feat_extract_norm == "layer"
    large = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}
    _check_architecture(WavLMConfig(**large), "wavlm_large", PRESETS["wavlm_large"])
    _check_architecture(HubertConfig(**large), "hubert_large", PRESETS["hubert_large"])
    with pytest.raises(ConfigError, match="use preset 'wavlm_base'"):
        _check_architecture(WavLMConfig(), "wavlm_large", PRESETS["wavlm_large"])


def test_sams_zero_norm_lies_on_the_parameters_device():
    """With no (or a zero) first gradient SAM returned a CPU zero as its norm; on a GPU the logged norms of a
    window are stacked and a CPU one among CUDA ones failed. (Checked on the meta device: no GPU here.)"""
    import torch

    from sddkit.training.sam import SAM, SAMConfig

    weight = torch.nn.Parameter(torch.ones(3, device="meta"))
    perturb, norm = SAM(SAMConfig())._perturbation([("weight", weight)])
    assert perturb == [None] and norm.device.type == "meta"


def test_a_misspelt_column_suggests_the_closest(tmp_path):
    """`sdd compare --cluster-by spekaer` (or `--by sorce`) listed the columns but suggested none."""
    import pytest

    from sddkit.data.table import UtteranceTable
    from sddkit.errors import ProtocolError

    table = UtteranceTable.from_records([{"utt_id": "u0", "label": "spoof", "speaker": "s0"}])
    with pytest.raises(ProtocolError, match=r"no column 'spekaer' \(did you mean 'speaker'\?\); columns:"):
        table.column("spekaer")


@pytest.mark.parametrize("shard", [None, "40KB"])
@pytest.mark.parametrize("whole", ["WhisperForConditionalGeneration", "WhisperForAudioClassification"])
def test_a_whole_whisper_checkpoint_loads_its_encoder_without_building_the_decoder(tmp_path, monkeypatch, whole, shard):
    """The encoder of a whole-model Whisper folder was taken from the whole model, built and loaded decoder and all
    (about 3.6 GB of float32 decoder weights for large-v3, dropped at once). Its tensors are now read alone, from
    one safetensors file or from shards, and equal the whole model's encoder."""
    import transformers
    from test_whisper_review5 import build, tiny_whisper_config

    torch.manual_seed(0)
    model = getattr(transformers, whole)(tiny_whisper_config()).eval()
    model.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    assert (tmp_path / "model.safetensors.index.json").is_file() == bool(shard)
    source = model.model.encoder if whole == "WhisperForConditionalGeneration" else model.encoder

    def never(*args, **kwargs):
        raise AssertionError("the whole model was loaded")

    for name in ("WhisperModel", "WhisperForAudioClassification", "WhisperForConditionalGeneration"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", never)
    enc = build("whisper_tiny", pretrained=str(tmp_path), dropout=0.0)
    assert enc.model.training == enc.training and enc.model.config._attn_implementation == "sdpa"
    assert enc.model.state_dict().keys() == source.state_dict().keys()
    for name, param in source.state_dict().items():
        assert torch.equal(enc.model.state_dict()[name], param), name
