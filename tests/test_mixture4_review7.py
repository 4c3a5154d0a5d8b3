"""Review 7 of detector mixtures (MELE / MILE): gates, the mixture, its gate-weight tables."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from sddkit.config import from_dict
from sddkit.data.table import UtteranceTable
from sddkit.detectors.mixture import MixtureConfig, build_mixture
from sddkit.errors import ProtocolError
from sddkit.evaluation.gate_weights import gate_weight_table

EXPERTS = [
    {"frontend": {"name": "logmel", "normalize": True}, "backend": {"name": "lcnn", "channels": 4}},
    {"frontend": {"name": "logspec"}, "backend": {"name": "resnet18", "width": 4}},
]


def _mixture(gate: str = "attention", **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = from_dict(MixtureConfig, {"experts": EXPERTS, "gate": gate, "freeze_experts": False, **extra}, "mixture")
    return build_mixture(cfg)


def _table(n: int) -> UtteranceTable:
    return UtteranceTable.from_records(
        {"utt_id": f"u{i}", "path": f"u{i}.wav", "label": "spoof", "source": "ab"[i % 2]} for i in range(n)
    )


# --- gate-weight tables -----------------------------------------------------------------------------------------


def test_a_gate_weight_table_of_no_files_is_refused():
    # before: a table whose only row, `all`, held NaN means over n = 0 files (with numpy's "Mean of empty slice"
    # warnings), which plot_gate_heatmap drew as a blank heatmap reading "nan"
    empty = UtteranceTable(pd.DataFrame({"utt_id": pd.Series([], dtype=str), "label": pd.Series([], dtype=str)}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning on the way to the error
        with pytest.raises(ProtocolError, match="no files"):
            gate_weight_table(empty, np.zeros((0, 2)))


def test_expert_scores_given_as_gate_weights_are_refused():
    # a mixture reports its experts' scores (B, E) beside its gate weights (B, E); tabulated by mistake they gave
    # "mean gate weights" of -3.1 and 4.2, which the heatmap (0 to 1) drew as two saturated colours
    model = _mixture().eval()
    with torch.no_grad():
        out = model(0.1 * torch.randn(4, 8000))
    table = _table(4)
    got = gate_weight_table(table, out.stats["gate_weights"])  # the weights themselves: fine
    assert got.loc["all", ["expert0", "expert1"]].sum() == pytest.approx(1.0)
    with pytest.raises(ProtocolError, match="summing to 1.*expert scores or gate logits are not gate weights"):
        gate_weight_table(table, out.stats["expert_scores"])
    with pytest.raises(ProtocolError, match=r"1 of 4 rows are not, e.g. row 2: \[-0.5, 1.5\]"):
        gate_weight_table(table, np.array([[0.5, 0.5], [1.0, 0.0], [-0.5, 1.5], [0.2, 0.8]]))


def test_half_precision_gate_weights_still_tabulate():
    # the check leaves room for the rounding of a bfloat16 mixture's softmax (rows summing to 1 +- 0.3 %)
    torch.manual_seed(1)
    weights = torch.softmax(3 * torch.randn(64, 4), dim=-1).to(torch.bfloat16)
    assert (weights.double().sum(-1) - 1).abs().max() > 0  # not exact: the tolerance is exercised
    got = gate_weight_table(_table(64), weights)
    assert got.loc["all", "n"] == 64


# --- the training objective of a mixture ------------------------------------------------------------------------


def test_domain_alignment_over_frozen_experts_is_refused():
    # the mixture's embedding is its experts' embeddings, computed without autograd when they are frozen: the
    # penalty was a constant (logged as aux/domain_alignment) and the gate trained exactly as without it
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.errors import ConfigError
    from sddkit.training.losses import DetectionLoss
    from sddkit.training.recipe import LossConfig

    aligned = LossConfig(domain_alignment=0.5)
    frozen = _mixture("classic", freeze_experts=True)
    out = frozen.train()(0.1 * torch.randn(4, 8000))
    assert not out.embedding.requires_grad  # what made the penalty a constant
    with pytest.raises(
        ConfigError, match=r"loss.domain_alignment=0.5 .* frozen experts .*mixture.freeze_experts: false"
    ):
        DetectionLoss.for_model(aligned, frozen)
    # experts fine-tuned with the gate: the penalty reaches them
    DetectionLoss.for_model(aligned, _mixture("classic", freeze_experts=False))
    # nothing trained (an average ensemble over frozen experts), no alignment, or a single detector: as before
    DetectionLoss.for_model(aligned, _mixture("average", freeze_experts=True))
    DetectionLoss.for_model(LossConfig(), frozen)
    DetectionLoss.for_model(aligned, build_detector(from_dict(DetectorConfig, EXPERTS[0], "model")))


def test_sdd_train_refuses_domain_alignment_for_a_gate_over_frozen_experts(tmp_path):
    # end to end: the trainer stops before reading any data, naming the setting (before: trained the gate with a
    # constant "aux/domain_alignment" logged beside its loss)
    from test_train_support import write_corpus

    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.model_dir import save_model_dir
    from sddkit.errors import ConfigError
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    dirs = []
    for i, cfg in enumerate(EXPERTS):  # stage 1 stands in: two "trained" experts
        det = build_detector(from_dict(DetectorConfig, cfg, "model"))
        dirs.append(str(save_model_dir(tmp_path / f"expert{i}", det, model_config=cfg)))
    spec = {"protocol": str(write_corpus(tmp_path / "audio", n=6, samples=4000)), "format": "utterance_table"}
    recipe = from_dict(
        TrainRecipe,
        {
            "mixture": {"expert_dirs": dirs, "gate": "classic"},
            "data": {"train": spec, "crop_samples": 4000, "batch_size": 2, "domain_column": "attack"},
            "loss": {"domain_alignment": 1.0},
            "trainer": {"max_steps": 1, "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )
    with pytest.raises(ConfigError, match="loss.domain_alignment=1.0 .* frozen experts"):
        Trainer(recipe).fit()
    assert not (tmp_path / "run" / "best").exists()


# --- expert_dirs beside the experts' configs ----------------------------------------------------------------------


def test_an_expert_config_naming_its_pretrained_folder_relatively_matches_its_directory(tmp_path, monkeypatch):
    # the trainer stores an expert's `pretrained` folder made absolute; the mixture recipe giving that expert's config
    # as its own recipe did (relative to the working directory) beside expert_dirs was refused as "differs from the
    # config stored", though that very error asks for "the same configs in both"
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.mixture import expert_dir_configs
    from sddkit.detectors.model_dir import save_model_dir
    from sddkit.errors import ConfigError
    from sddkit.frontends.encoders import PRESETS, recorded_folder_config
    from sddkit.pretrained import absolute_pretrained_paths, reloadable_names

    monkeypatch.chdir(tmp_path)
    Wav2Vec2Model(Wav2Vec2Config(**PRESETS["wav2vec2_tiny"].arch)).save_pretrained("encoder")
    cfg = {
        "frontend": {"name": "ssl", "encoder": {"name": "wav2vec2_tiny", "pretrained": "encoder"}},
        "backend": {"name": "linear"},
    }
    det = build_detector(from_dict(DetectorConfig, cfg, "model"))
    assert reloadable_names(det)  # a frozen encoder: the directory leaves it to the folder, named absolutely
    save_model_dir("expert", det, model_config=absolute_pretrained_paths(cfg), trainable_only=True)
    both = from_dict(MixtureConfig, {"experts": [cfg], "expert_dirs": ["expert"], "gate": "classic"}, "mixture")
    # (the directory records the waveform normalisation and the settings the folder decided, see
    # test_encoderpath_review28.py and test_resumeencoder_review30.py)
    stored = recorded_folder_config(absolute_pretrained_paths(cfg))
    assert expert_dir_configs(both)[0] == from_dict(DetectorConfig, stored, "model")
    assert len(build_mixture(both).experts) == 1
    other = {**cfg, "backend": {"name": "linear", "dropout": 0.5}}  # a config that really differs: still refused
    with pytest.raises(ConfigError, match=r"experts\[0\] differs from the config stored"):
        expert_dir_configs(from_dict(MixtureConfig, {"experts": [other], "expert_dirs": ["expert"]}, "mixture"))
