"""Review tests: training, metrics, evaluation and CLI defects found by the research-correctness review."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)

from sddkit.cli.main import main


def _tiny_pretrained_dir(tmp_path):
    """A local Hugging Face directory of the wav2vec2_tiny preset (random weights), as a user's download."""
    from sddkit.frontends.encoders import PRESETS, _hf_class

    preset = PRESETS["wav2vec2_tiny"]
    model = _hf_class(preset.family, 1)(_hf_class(preset.family, 0)(**preset.arch))
    model.save_pretrained(tmp_path / "w2v_tiny")
    return tmp_path / "w2v_tiny"


def test_describe_on_the_meta_device_counts_a_model_with_pretrained_encoder_weights(tmp_path, capsys):
    # before: transformers refuses from_pretrained under the meta device, so `sdd describe` (meta by
    # default) failed on every recipe whose encoder names its pretrained weights, even when they exist
    directory = _tiny_pretrained_dir(tmp_path)
    encoder = {"name": "wav2vec2_tiny", "pretrained": str(directory), "freeze": True}
    config = {"model": {"frontend": {"name": "ssl", "encoder": encoder}, "backend": {"name": "linear"}}}
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(config))
    assert main(["describe", str(path), "--device", "cpu"]) == 0
    on_cpu = json.loads(capsys.readouterr().out)
    assert main(["describe", str(path)]) == 0, capsys.readouterr().err
    on_meta = json.loads(capsys.readouterr().out)
    assert on_meta == on_cpu
    assert on_meta["trainable_params"] < on_meta["total_params"]


def _mldg_batch(n: int = 12):
    from test_train_support import SyntheticDataset

    ds = SyntheticDataset(n=60, n_attacks=4)
    items = [ds[i] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def test_mldg_meta_test_gradient_goes_through_the_parameters_gradient_hooks():
    # MoLEx expert addition masks the old region of a grown parameter with a gradient hook, so that
    # clipping (and the logged norm) sees the new region only; before, MLDG added the meta-test gradient
    # (taken at the adapted copies) to p.grad directly, past the hook
    from test_train_support import TinyBackend, TinyBackendConfig, TinyFrontend, TinyFrontendConfig

    from sddkit.detectors.detector import Detector
    from sddkit.training.losses import DetectionLoss
    from sddkit.training.mldg import MLDG, MLDGConfig
    from sddkit.training.recipe import LossConfig
    from sddkit.training.strategy import StepContext

    torch.manual_seed(0)
    cfg = TinyFrontendConfig()
    model = Detector(frontend=TinyFrontend(cfg), backend=TinyBackend(TinyBackendConfig(), cfg.dim))
    weight = model.backend.head.weight
    weight.register_hook(lambda g: torch.cat([torch.zeros_like(g[:1]), g[1:]]))  # row 0 is "old": frozen
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    ctx = StepContext(model=model, module=model, optimizer=opt, loss_fn=DetectionLoss(LossConfig()), grad_clip=None)
    result = MLDG(MLDGConfig(beta=1.0), seed=0).step(_mldg_batch(), ctx)
    assert float(result.metrics["mldg/fallback"]) == 0.0 and "meta_test/loss" in result.metrics
    assert torch.count_nonzero(weight.grad[0]) == 0, weight.grad[0]
    assert torch.count_nonzero(weight.grad[1]) > 0


def test_validation_loss_with_class_weights_does_not_depend_on_the_batch_size():
    # before: each batch's weighted mean (divided by its own summed target weights) was weighted by the
    # batch's item count, so the reported "mean CE" changed with val_batch_size and was not the set's
    # weighted cross-entropy
    import torch.nn.functional as F
    from test_train_support import SyntheticDataset, tiny_detector

    from sddkit.training.evaluate import evaluate
    from sddkit.training.losses import DetectionLoss
    from sddkit.training.recipe import LossConfig

    torch.manual_seed(0)
    model = tiny_detector()
    data = SyntheticDataset(12, seed=4)
    loss_fn = DetectionLoss(LossConfig(class_weights=(0.1, 0.9)))
    by_batch = {b: evaluate(model, data, batch_size=b, device=torch.device("cpu"), loss_fn=loss_fn) for b in (1, 5, 12)}
    whole = by_batch[12]
    with torch.no_grad():
        logits = model(torch.stack([data[i]["waveform"] for i in range(12)])).logits
    expected = float(F.cross_entropy(logits, torch.as_tensor(data.labels), weight=torch.tensor([0.1, 0.9])))
    for b, result in by_batch.items():
        assert result.eer == whole.eer
        assert result.loss == pytest.approx(expected, rel=1e-5), b


# the recipe of the DDP resume tests: a tiny model with dropout, so every rank draws from its own random streams
DDP_RESUME_RECIPE = {
    "seed": 2,
    "model": {"frontend": {"name": "tiny_test", "dropout": 0.3}, "backend": "tiny_test_head"},
    "optimizer": {"lr": 1e-2},
    "data": {"batch_size": 6},
}


def ddp_resume_worker(rank: int, world: int, ports: list[int], out: str, recipe: dict, steps: int) -> None:
    """Train ``recipe`` on 2 processes for ``steps`` steps straight (``out/straight``), and for half of them then
    resumed to ``steps`` (``out/split``)."""
    import os
    import sys
    from pathlib import Path

    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_train_support import SyntheticDataset, register_tiny_for_good

    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    register_tiny_for_good()
    runs = (("straight", steps, False), ("split", steps // 2, False), ("split", steps, True))
    for (name, max_steps, resume), port in zip(runs, ports):
        os.environ["MASTER_PORT"] = str(port)
        trainer = {"epochs": 5, "max_steps": max_steps, "device": "cpu", "out_dir": f"{out}/{name}", "progress": False}
        Trainer(
            from_dict(TrainRecipe, {**recipe, "trainer": trainer}), train_data=SyntheticDataset(48), resume=resume
        ).fit()


def assert_resumed_run_equals_straight(recipe: dict, steps: int, out: Path) -> None:
    """Run :func:`ddp_resume_worker` on 2 processes; the resumed run's final weights equal the straight run's."""
    from safetensors.torch import load_file
    from test_ddp import FreePorts, run_ranks

    run_ranks(ddp_resume_worker, (2, FreePorts(3), str(out), recipe, steps), 300, out=out)
    straight = load_file(str(out / "straight" / "final" / "model.safetensors"))
    resumed = load_file(str(out / "split" / "final" / "model.safetensors"))
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_ddp_resume_keeps_every_ranks_random_streams(tmp_path):
    # before: only rank 0's generator states were checkpointed and every rank restored them, so after a
    # resume all ranks drew the same dropout masks (rank 1 lost its own stream): the resumed run trained
    # differently from the uninterrupted one
    assert_resumed_run_equals_straight(DDP_RESUME_RECIPE, 4, tmp_path)


@pytest.mark.parametrize("command", ["eval", "demo"])
def test_a_negative_seed_is_a_clean_error(command, tmp_path, capsys):
    # before: numpy's default_rng refused it deep inside the bootstrap (or the demo's generator), a traceback
    from sddkit.evaluation.synthetic import write_synthetic_example

    protocol, scores = write_synthetic_example(tmp_path / "inputs", n_bonafide=20, n_per_attack=10)
    args = ["--out", str(tmp_path / "out"), "--seed", "-1", "--bootstrap", "5"]
    if command == "eval":
        args += ["--scores", str(scores), "--protocol", str(protocol)]
    assert main([command, *args]) == 2
    assert "--seed must be >= 0, got -1" in capsys.readouterr().err


def test_eval_config_refuses_a_negative_seed():
    from sddkit.config import from_dict
    from sddkit.errors import ConfigError
    from sddkit.evaluation.report import EvalConfig

    with pytest.raises(ConfigError, match="seed must be >= 0"):
        from_dict(EvalConfig, {"seed": -2})


def test_resuming_with_another_strategy_warns_and_starts_its_state_afresh(tmp_path, monkeypatch, caplog):
    # before: an ERM checkpoint resumed with strategy mldg died with KeyError: 'generator'
    from test_train_support import TINY_MODEL, SyntheticDataset, install_tiny

    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    install_tiny(monkeypatch)

    def recipe(strategy: str, steps: int) -> TrainRecipe:
        trainer = {"epochs": 4, "max_steps": steps, "out_dir": str(tmp_path / "run"), "progress": False}
        return from_dict(
            TrainRecipe,
            {"seed": 1, "model": TINY_MODEL, "strategy": strategy, "data": {"batch_size": 8}, "trainer": trainer},
        )

    Trainer(recipe("erm", 2), train_data=SyntheticDataset(32)).fit()
    with caplog.at_level("WARNING", logger="sddkit.training"):
        result = Trainer(recipe("mldg", 4), train_data=SyntheticDataset(32), resume=True).fit()
    assert result.step == 4
    assert any("strategy 'erm'" in r.getMessage() and "'mldg'" in r.getMessage() for r in caplog.records)


def test_a_bad_value_inside_an_optional_or_union_section_names_only_the_real_error(monkeypatch):
    # before: "molex: {'add_experts': -1} matches none of MolexConfig | None: molex: add_experts must be ..."
    # (the whole section dumped, then every alternative's error, e.g. "expected a list" for a mapping)
    from test_train_support import TINY_MODEL, install_tiny

    from sddkit.config import from_dict
    from sddkit.errors import ConfigError
    from sddkit.training.recipe import TrainRecipe

    install_tiny(monkeypatch)
    with pytest.raises(ConfigError) as exc:
        from_dict(TrainRecipe, {"model": TINY_MODEL, "molex": {"add_experts": -1}})
    assert str(exc.value) == "molex.add_experts must be >= 0, got -1"
    with pytest.raises(ConfigError) as exc:
        from_dict(TrainRecipe, {"model": TINY_MODEL, "data": {"train": {"protocol": "p.csv", "0": {"protocol": "x"}}}})
    assert str(exc.value).startswith("data.train: unknown key(s) '0'; valid keys: exclude, folds")
    with pytest.raises(ConfigError) as exc:
        from_dict(TrainRecipe, {"model": TINY_MODEL, "data": {"val": {"protocol": "p.csv", "where": {"attack": 3}}}})
    assert str(exc.value) == (
        "data.val.where.attack: expected a string, got the number 3 (YAML reads an unquoted number as a number, "
        "dropping leading zeros: quote it for the text, e.g. '001')"
    )
    with pytest.raises(ConfigError) as exc:  # a list holding a bad spec: the list's own error
        from_dict(TrainRecipe, {"model": TINY_MODEL, "data": {"train": [{"protocol": "p.csv", "nope": 1}]}})
    assert str(exc.value).startswith("data.train[0]: unknown key(s) 'nope'")


def test_describe_of_an_init_from_recipe_counts_the_first_stage_recipes_model(capsys):
    # before: "config holds no model: expected 'frontend'/'backend', ..." on a shipped recipe that has one; then a
    # refusal pointing at the first stage's model directory; since the 47th session it is counted from the recipe
    # that trains that directory (tests/test_recipeleft_review29.py pins the details)
    import json
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "asvspoof5" / "xlsr300m_molex_add_experts.yaml"
    assert main(["describe", str(recipe)]) == 0
    captured = capsys.readouterr()
    assert "init_from=runs/asvspoof5/xlsr300m_molex/best is not there yet" in captured.err
    assert "recipes/asvspoof5/xlsr300m_molex.yaml" in captured.err
    counts = json.loads(captured.out)
    assert 0 < counts["trainable_params"] < counts["total_params"]


def test_cv_checks_every_folds_training_and_validation_data_before_the_first_fold_trains(tmp_path):
    # before: only the held-out groups were checked up front; a fold whose val (or train) data the hold-out
    # emptied failed when that fold started, after the earlier folds had trained
    from test_crossval import _recipe

    from sddkit.errors import ConfigError
    from sddkit.training.crossval import cross_validate, parse_folds

    recipe = _recipe(tmp_path)
    recipe.data.val.where = {"source": ["s1"]}  # validation on s1 only: holding s1 out leaves none
    with pytest.raises(ConfigError, match=r"fold s1: data\.val\[0\].*no utterances"):
        cross_validate(recipe, parse_folds("source", ["s0", "s1"]), tmp_path / "cv")
    assert not (tmp_path / "cv" / "fold_s0" / "checkpoints").exists()


@pytest.mark.parametrize("command", ["eval", "demo", "cv"])
def test_an_out_folder_that_is_a_file_is_a_clean_error(command, tmp_path, capsys):
    # before: FileExistsError with a traceback ("every command prints a one-line error and exits with status 2")
    from sddkit.evaluation.synthetic import write_synthetic_example

    taken = tmp_path / "taken"
    taken.write_text("not a folder\n")
    protocol, scores = write_synthetic_example(tmp_path / "inputs", n_bonafide=20, n_per_attack=10)
    args = {
        "eval": ["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(taken)],
        "demo": ["demo", "--out", str(taken)],
        "cv": ["cv", str(tmp_path / "r.yaml"), "--by", "speaker", "--out", str(taken)],
    }[command]
    if command == "cv":
        from sddkit.data.protocols import read_protocol

        table = read_protocol(str(protocol), "asvspoof2019_la")
        speakers = table.column("speaker").astype(str)
        both = sorted(v for v in set(speakers) if len(set(table.labels[speakers == v])) == 2)
        args += ["--hold-out", both[0], "--hold-out", both[1]]
        (tmp_path / "r.yaml").write_text(
            json.dumps(
                {
                    "model": {"frontend": "logmel", "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}},
                    "data": {"train": {"protocol": str(protocol), "format": "asvspoof2019_la"}},
                }
            )
        )
    assert main([*args, "--bootstrap", "0"] if command != "cv" else args) == 2
    err = capsys.readouterr().err
    assert "cannot create" in err and str(taken) in err


def test_a_relative_pretrained_folder_is_recorded_absolute_so_the_model_loads_from_anywhere(tmp_path, monkeypatch):
    # the recipe's "../shared/models/..." was stored as given: the trained model then loaded only from the
    # folder it was trained in (elsewhere: "not a local Hugging Face model directory", or another folder's weights)
    from test_train_support import SyntheticDataset

    from sddkit.config import from_dict
    from sddkit.detectors.model_dir import load_model_dir, read_model_config
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    _tiny_pretrained_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    encoder = {"name": "wav2vec2_tiny", "pretrained": "w2v_tiny", "freeze": True}
    recipe = from_dict(
        TrainRecipe,
        {
            "model": {"frontend": {"name": "ssl", "encoder": encoder, "adapter": "lora"}, "backend": "linear"},
            "data": {"batch_size": 8},
            "trainer": {"epochs": 1, "out_dir": "run", "progress": False},
        },
    )
    result = Trainer(
        recipe, train_data=SyntheticDataset(16, samples=4000), val_data=SyntheticDataset(16, 4000, seed=9)
    ).fit()
    recorded = read_model_config(result.best_dir)["model"]["frontend"]["encoder"]["pretrained"]
    assert recorded == str(tmp_path / "w2v_tiny")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_model_dir(tmp_path / "run" / "best").architecture == "detector"
