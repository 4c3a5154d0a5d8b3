"""Review 5 of detector mixtures (MELE / MILE): mixture.py, gates.py and their recipes."""

from __future__ import annotations

import torch
from torch import nn

from sddkit.detectors import Detector, DetectorMixture
from sddkit.detectors.outputs import BackendOutput, FrontendOutput
from sddkit.registry import get_registry


class RegularisedStats(nn.Module):
    """(B, T) -> (B, 8) chunk means, with a weight-only auxiliary loss computed only under autograd (as the
    MoLEx orthogonality loss); counts how often it was computed."""

    output_dim = 8

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(8))
        self.regularised = 0

    def forward(self, waveform):
        b, t = waveform.shape
        features = waveform[:, : t - t % 8].reshape(b, 8, -1).abs().mean(-1) * self.scale
        aux = {"balance": 0.1 * features.mean()}  # input-dependent, as MoLEx load balance
        if torch.is_grad_enabled():
            self.regularised += 1
            aux["orthogonality"] = 0.01 * (self.scale**2).sum()
        return FrontendOutput(features=features, aux_losses=aux)


class Head(nn.Module):
    def __init__(self, emb: int = 6):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, emb), nn.Tanh())
        self.out = nn.Linear(emb, 2)

    def forward(self, x):
        e = self.body(x)
        return BackendOutput(logits=self.out(e), embedding=e)


def _mixture(freeze: bool) -> DetectorMixture:
    experts = [Detector(frontend=RegularisedStats(), backend=Head()) for _ in range(2)]
    gate = get_registry("gate").build({"name": "enhanced_mlp", "hidden": 4}, num_experts=2, embedding_dims=[6, 6])
    return DetectorMixture(experts=experts, gate=gate, freeze_experts=freeze)


def test_frozen_experts_add_no_constant_aux_losses_and_skip_weight_only_terms():
    """A frozen MoLEx expert computed its orthogonality loss on every gate-training step and its constant aux
    losses (no gradient) entered the mixture's loss: the logged training loss was shifted by them, and differed
    from the validation loss (no orthogonality term under no_grad) by a term nothing could learn."""
    torch.manual_seed(0)
    mix = _mixture(freeze=True).train()
    out = mix(torch.randn(4, 800))
    assert out.aux_losses == {}
    assert [e.frontend.regularised for e in mix.experts] == [0, 0]
    out.logits.sum().backward()  # the gate still learns
    assert all(p.grad is not None for p in mix.gate.parameters() if p.requires_grad)
    # a gradient wanted at the input (an attack, a saliency map) still flows through the frozen experts
    wave = torch.randn(4, 800, requires_grad=True)
    mix(wave).score.sum().backward()
    assert wave.grad is not None and wave.grad.abs().sum() > 0


def test_fine_tuned_experts_keep_their_aux_losses():
    torch.manual_seed(0)
    mix = _mixture(freeze=False).train()
    out = mix(torch.randn(4, 800))
    assert set(out.aux_losses) == {f"expert{i}/{k}" for i in (0, 1) for k in ("balance", "orthogonality")}
    assert all(v.requires_grad for v in out.aux_losses.values())


def test_gate_weight_table_takes_the_gate_weights_tensor_as_the_mixture_returns_it():
    """The documented input, ``DetectorOutput.stats["gate_weights"]``, failed as it comes: with autograd history
    (a forward outside no_grad: "Can't call numpy() on Tensor that requires grad") or from a bfloat16 model
    (numpy has no bfloat16: "Got unsupported ScalarType BFloat16")."""
    from sddkit.data.table import UtteranceTable
    from sddkit.evaluation.gate_weights import gate_weight_table

    table = UtteranceTable.from_records(
        {"utt_id": f"u{i}", "path": f"u{i}.wav", "label": "spoof", "source": "ab"[i % 2]} for i in range(4)
    )
    weights = torch.tensor([[0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1.0, 0.0]])
    expected = gate_weight_table(table, weights.numpy())
    assert expected.loc["a", "expert0"] == 0.5 and expected.loc["all", "expert1"] == 0.375
    for given in (weights.clone().requires_grad_(True), weights.to(torch.bfloat16)):
        assert gate_weight_table(table, given).equals(expected)  # these weights are exact in bfloat16
