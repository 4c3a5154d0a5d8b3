"""Review 14 of the day's diff: the batch-norm re-estimation of trainer.ema_decay and the new protocol errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from test_ema14_review14 import _fit, _independent_bn_batches
from test_train_support import hand_bn, install_tiny, is_bn_stat, one_thread  # noqa: F401  (autouse fixture)

from sddkit.data.protocols import read_protocol
from sddkit.detectors.model_dir import load_model_dir
from sddkit.errors import ProtocolError
from sddkit.training import checkpoint as ckpt
from sddkit.training.ema import BatchNormEstimate, updated_batch_norms


class _NumpyMasked(torch.nn.Module):
    """Zeroes a feature chosen by numpy's and Python's global generators in training mode, as transformers'
    SpecAugment draws its time masks, before a batch norm."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)
        self.norm = torch.nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        if self.training:
            keep = torch.ones(4)
            keep[int(np.random.randint(4))] = 0.0
            keep[random.randrange(4)] = 0.0
            h = h * keep
        return self.norm(h)


def test_the_re_estimated_statistics_do_not_depend_on_where_numpy_and_python_generators_stand():
    torch.manual_seed(0)
    model = _NumpyMasked().eval()
    batches = [torch.randn(6, 3) for _ in range(3)]
    estimate = BatchNormEstimate(model, updated_batch_norms(model), batches, seed=5)
    stats = []
    for state in (1, 2):  # the generators as training left them at two steps (or on two ranks)
        np.random.seed(state)
        random.seed(state)
        stats.append(estimate.estimate())
        after = np.random.randint(1 << 30), random.random()
        np.random.seed(state)
        random.seed(state)
        assert after == (np.random.randint(1 << 30), random.random())  # the streams training goes on with
    for key in stats[0]:
        assert torch.equal(stats[0][key], stats[1][key]), key


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("header", ["path,spoof", "utt_id,fake"])
def test_a_header_with_a_label_word_as_a_column_name_is_not_called_headerless(tmp_path, header):
    # `path,spoof` (a 0/1 column) names a column: it is a header lacking `label`, not a first line "holding a label"
    table = _write(tmp_path / "t.csv", f"{header}\na.wav,1\n")
    with pytest.raises(ProtocolError) as info:
        read_protocol(table)
    message = str(info.value)
    assert "holds a label but is not a header" not in message
    assert "without column(s) ['label']" in message


def test_a_headerless_line_is_quoted_with_its_own_separator(tmp_path):
    headerless = _write(tmp_path / "list.csv", "a.wav;bonafide\nb.wav;spoof\n")
    with pytest.raises(ProtocolError, match=r"the first line 'a\.wav;bonafide' holds a label but is not a header"):
        read_protocol(headerless)


def test_final_as_the_average_of_the_top_k_gets_statistics_re_estimated_for_its_weights(tmp_path, monkeypatch):
    # final/ (average_top_k 2) averaged its checkpoints' statistics along with their weights: the statistics of no
    # model, where trainer.ema_decay re-estimates them for every other model it measures or exports
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    trainer = _fit(out, 9, 0.8, ema_bn_batches=3, average_top_k=2)
    names = [e["name"] for e in trainer.state.ranked[:2]]
    assert len(names) == 2
    final = load_model_dir(out / "final").model
    exported = final.state_dict()
    # the weights are still the mean of the two checkpoints' averaged models
    states = [ckpt.load_checkpoint(out / "checkpoints" / name)["model"] for name in names]
    key = "backend.norm.weight"
    torch.testing.assert_close(exported[key], (states[0][key] + states[1][key]) / 2)
    assert trainer.bn_estimate is not None
    hand = hand_bn(final, _independent_bn_batches(trainer, 3), trainer.bn_estimate.seed)
    assert hand and all(is_bn_stat(k) for k in hand)
    for key, value in hand.items():
        torch.testing.assert_close(exported[key], value, rtol=1e-6, atol=1e-7)
