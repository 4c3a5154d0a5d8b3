"""Review 3 of the training flows that build on earlier models: MoLEx expert addition and detector mixtures."""

from __future__ import annotations

import pytest
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.config import from_dict
from sddkit.errors import ConfigError
from sddkit.training.recipe import TrainRecipe

GROWN_MOLEX = {
    "frontend": {
        "name": "ssl",
        "encoder": {"name": "wav2vec2_tiny"},
        "adapter": "molex",
        # what a model directory grown by molex.add_experts records (its config.json, run.json's model_config)
        "molex": {"num_experts": 2, "rank": 2, "targets": ["q", "v"], "added_experts": [1]},
    },
    "backend": {"name": "linear"},
}


def test_a_grown_molex_config_trained_afresh_is_refused():
    """Built afresh, a grown config froze every group but the last at its initial value (B = 0): a "same
    architecture from scratch" baseline silently trained one expert of three."""
    with pytest.raises((ConfigError, ValueError), match=r"added_experts.*num_experts: 3"):
        from_dict(TrainRecipe, {"model": GROWN_MOLEX})
    mixture = {"experts": [GROWN_MOLEX], "gate": "average", "freeze_experts": False}
    with pytest.raises((ConfigError, ValueError), match=r"mixture\.experts\[0\].*added_experts"):
        from_dict(TrainRecipe, {"mixture": mixture})
    # experts loaded from their trained directories: the grown config is theirs, their weights fill every group
    from_dict(TrainRecipe, {"mixture": {**mixture, "expert_dirs": ["runs/grown/best"]}})


def test_expert_use_keeps_bona_fide_apart_when_the_table_leaves_attacks_empty():
    """molex_report.json's expert use per attack grouped rows by the attack cell alone: a table that leaves it empty
    for every row (attacks unknown) averaged the bona fide routing together with the spoofs' under one '' key."""
    import numpy as np

    from sddkit.data.table import UtteranceTable
    from sddkit.training.evaluate import EvalResult
    from sddkit.training.trainer import Trainer

    labels = np.array([1, 0, 1, 0])
    table = UtteranceTable.from_records(
        {"utt_id": f"u{i}", "path": f"u{i}.wav", "label": "bonafide" if y else "spoof", "attack": ""}
        for i, y in enumerate(labels)
    )
    gates = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 0.0]], [[0.2, 0.8]]])  # (N, layers, experts)
    result = EvalResult(
        eer=0.0,
        loss=0.0,
        labels=labels,
        scores=np.array([1.0, -1.0, 2.0, -2.0]),
        indices=np.arange(4),
        stats={"molex_gate_mean": gates},
    )
    trainer = Trainer(from_dict(TrainRecipe, {"model": {"frontend": "logmel", "backend": "lcnn"}}))
    described = trainer._describe(result, table)
    assert described["expert_use"]["molex_gate_mean"] == {"bonafide": [1.0, 0.0], "": [0.1, 0.9]}
    assert described["per_attack"] == {"": 0.0}  # the spoofs against every bona fide trial, as before
