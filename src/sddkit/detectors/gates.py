"""Gating networks for mixtures of whole detectors (registry ``gate``).

A gate maps what it sees of an input to expert weights ``(B, E)`` that sum to one (a softmax computed in float32
at least, whatever the gate's precision: see :func:`_softmax`):

- ``classic`` (MELE, ICASSP 2025 baseline): a linear layer on the input. The input is the
  utterance's log-Mel spectrogram (of 16 kHz audio, as every sddkit model takes: a mixture of experts recorded
  at another rate is refused) summarised by its per-bin mean and standard deviation over
  time (2 x 80 values), so the gate works for any input length; a batch norm standardises those
  statistics before the linear layer, whose logits are divided by ``temperature`` before the softmax. (The MELE
  reference code's classic gate is a linear layer on the raw 48,000-sample waveform itself, which fixes the input
  length.)
- ``enhanced_mlp`` (MELE "enhanced" gate): each expert's embedding is projected on its own,
  then a shared batch norm (one set of statistics over all experts' projections) and LeakyReLU;
  an element-wise product of the projected embeddings, scaled by a learnt scalar, joins them;
  then FC / dropout / batch norm / LeakyReLU / FC / softmax. (The reference code scales the product by a learnt
  per-feature vector initialised to ones; here one scalar, ``product_scale_init`` 0.1 by default, and the
  shared batch norm is one call on every expert's rows where the reference calls it once per expert.)
- ``attention`` (MILE, WIFS 2025): a 2-layer transformer encoder whose tokens are the experts'
  projected embeddings (plus a learnt per-expert token embedding); a linear read-out per token
  gives one logit per expert.
- ``average``: uniform weights, no parameters: the average-ensemble baseline.

The gates' batch norms also train on a batch of one input (normalised with the running statistics,
which it leaves unchanged; see :class:`BatchNorm1d`), the enhanced gate's shared norm too, whose E rows
then all come from that one input.

Every gate has the same call signature so the mixture never needs to know which one it holds:
``gate(waveform (B, T), embeddings: list of (B, D_e)) -> (B, E) weights``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sddkit.detectors import GATES


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` (same parameters and state-dict keys) that also trains on a batch of one row.

    One row has no batch variance (torch raises "Expected more than 1 value per channel"); such a
    batch (``batch_size: 1``, an MLDG half holding one utterance) is normalised with the running
    statistics, which it leaves unchanged, as in eval mode. Larger batches behave as usual. ``one_input``: the
    rows all come from one input (e.g. one row per expert of one utterance), whose spread says nothing of the
    batch statistics, so they are normalised the same way.
    """

    def forward(self, x: Tensor, one_input: bool = False) -> Tensor:
        if self.training and (x.shape[0] == 1 or one_input) and self.track_running_stats:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def _projected(proj: nn.ModuleList, embeddings: list[Tensor]) -> list[Tensor]:
    """Each expert's embedding through its projection, in the projection's dtype: experts may run in another
    precision than the gate (a bfloat16 expert beside float32 ones), as the classic gate's float32 log-Mel
    statistics do, and ``nn.Linear`` refuses a dtype other than its own."""
    return [p(e.to(p.weight.dtype)) for p, e in zip(proj, embeddings, strict=True)]


def _softmax(logits: Tensor) -> Tensor:
    """(B, E) gate logits -> weights over the experts, computed in float32 at least (float64 stays).

    A half-precision gate (a ``.half()`` model; CPU autocast, which does not lift softmax to float32 as CUDA's does)
    rounded its weights: a float16 weight below 3e-8 (a logit gap over ~17.3) became exactly 0, so a confident
    expert's minority view vanished from the mixture and its log-odds moved by tens of nats; and the rows of a
    bfloat16 softmax sum to 1 only to 0.4 %, so the mixture's logits were no log-probabilities. Its gradient
    reaches the logits in their own dtype."""
    return torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)


class Gate(nn.Module):
    """Base: ``forward(waveform, embeddings) -> (B, E)`` weights on the simplex."""

    num_experts: int


class AverageGate(Gate):
    """Uniform weights: the average-ensemble baseline."""

    def __init__(self, num_experts: int):
        super().__init__()
        self.num_experts = num_experts

    def forward(self, waveform: Tensor, embeddings: list[Tensor]) -> Tensor:
        return waveform.new_full((waveform.shape[0], self.num_experts), 1.0 / self.num_experts)


@dataclass
class ClassicGateConfig:
    n_mels: int = 80
    temperature: float = 1.0

    def __post_init__(self):
        if self.n_mels <= 0:
            raise ValueError(f"n_mels must be positive, got {self.n_mels}")
        # inf divides every logit to 0: uniform weights whatever the input, and no gradient reaches the gate
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")


class ClassicGate(Gate):
    """``softmax(linear(batch_norm(stats)) / temperature)`` of the input's log-Mel statistics (mean and std over
    time); the batch norm keeps running statistics, used in eval mode."""

    def __init__(self, num_experts: int, cfg: ClassicGateConfig):
        super().__init__()
        from sddkit.features.spectral import LogMel, LogMelConfig

        self.num_experts = num_experts
        self.temperature = cfg.temperature
        self.features = LogMel(LogMelConfig(n_mels=cfg.n_mels))
        self.norm = BatchNorm1d(2 * cfg.n_mels)
        self.linear = nn.Linear(2 * cfg.n_mels, num_experts)

    def forward(self, waveform: Tensor, embeddings: list[Tensor]) -> Tensor:
        spec = self.features(waveform)  # (B, F, frames)
        # unbiased std over time; a single frame (input shorter than one hop) has std 0, not NaN
        std = spec.std(dim=-1, correction=1 if spec.shape[-1] > 1 else 0)
        stats = torch.cat([spec.mean(dim=-1), std], dim=-1)  # (B, 2F)
        # LogMel computes in float32 whatever the model's dtype (no low-precision FFT): cast to the gate's own
        stats = stats.to(self.linear.weight.dtype)
        return _softmax(self.linear(self.norm(stats)) / self.temperature)


@dataclass
class EnhancedMLPGateConfig:
    hidden: int = 128
    dropout: float = 0.3
    negative_slope: float = 0.01
    product_scale_init: float = 0.1

    def __post_init__(self):
        if self.hidden <= 0:
            raise ValueError(f"hidden must be positive, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        # an infinite scale or slope makes the first forward's weights NaN (inf * 0 in the product or the MLP)
        for key in ("negative_slope", "product_scale_init"):
            if not math.isfinite(getattr(self, key)):
                raise ValueError(f"{key} must be finite, got {getattr(self, key)}")


class EnhancedMLPGate(Gate):
    """Per-expert projections + shared BN + LeakyReLU, a scaled element-wise product, then an MLP."""

    def __init__(self, embedding_dims: list[int], cfg: EnhancedMLPGateConfig):
        super().__init__()
        self.num_experts = len(embedding_dims)
        h = cfg.hidden
        self.proj = nn.ModuleList(nn.Linear(d, h) for d in embedding_dims)
        # shared: one set of statistics over every expert's projection (all experts' rows of a batch are
        # normalised together, so training and eval see the same normalisation), one scale for all
        self.shared_norm = BatchNorm1d(h)
        self.act = nn.LeakyReLU(cfg.negative_slope)
        self.product_scale = nn.Parameter(torch.tensor(float(cfg.product_scale_init)))
        self.mlp = nn.Sequential(
            nn.Linear(h * (self.num_experts + 1), h),
            nn.Dropout(cfg.dropout),
            BatchNorm1d(h),
            nn.LeakyReLU(cfg.negative_slope),
            nn.Linear(h, self.num_experts),
        )

    def forward(self, waveform: Tensor, embeddings: list[Tensor]) -> Tensor:
        projected = torch.stack(_projected(self.proj, embeddings), dim=0)  # (E, B, h)
        e, b, h = projected.shape
        # one batch norm call on all E * B rows: called once per expert, training would standardise each
        # expert by its own batch statistics while eval used running statistics blended over the experts.
        # One input (b == 1) normalised by its own E rows' statistics met in training a function eval never
        # computes (with two experts every feature came out exactly +-1): it takes the running statistics.
        z = self.act(self.shared_norm(projected.reshape(e * b, h), one_input=b == 1)).reshape(e, b, h)
        product = z.prod(dim=0) * self.product_scale  # interaction between experts' views
        return _softmax(self.mlp(torch.cat([*z.unbind(0), product], dim=-1)))


@dataclass
class AttentionGateConfig:
    d_model: int = 128
    heads: int = 4
    layers: int = 2
    ff_dim: int = 256
    dropout: float = 0.1

    def __post_init__(self):
        # checked here, when the recipe is parsed: torch would refuse some only at build time (after the
        # experts load), heads 0 is a ZeroDivisionError, and layers or ff_dim 0 would build without a word
        sizes = {"d_model": self.d_model, "heads": self.heads, "layers": self.layers, "ff_dim": self.ff_dim}
        bad = [f"{k}={v}" for k, v in sizes.items() if v <= 0]
        if bad:
            raise ValueError(f"d_model, heads, layers and ff_dim must be positive; got {', '.join(bad)}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model must be divisible by heads; got d_model={self.d_model}, heads={self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")


class AttentionGate(Gate):
    """Transformer encoder over the experts' embeddings as tokens; one logit per expert token."""

    def __init__(self, embedding_dims: list[int], cfg: AttentionGateConfig):
        super().__init__()
        self.num_experts = len(embedding_dims)
        self.proj = nn.ModuleList(nn.Linear(d, cfg.d_model) for d in embedding_dims)
        # tells tokens apart: attention alone is permutation-equivariant
        self.expert_embedding = nn.Parameter(torch.zeros(self.num_experts, cfg.d_model))
        nn.init.normal_(self.expert_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.heads, cfg.ff_dim, cfg.dropout, batch_first=True, norm_first=True
        )
        # enable_nested_tensor is a padding-mask fast path we never use; turning it off avoids a warning
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.readout = nn.Linear(cfg.d_model, 1)

    def forward(self, waveform: Tensor, embeddings: list[Tensor]) -> Tensor:
        tokens = torch.stack(_projected(self.proj, embeddings), dim=1)  # (B, E, d)
        tokens = self.encoder(tokens + self.expert_embedding)
        return _softmax(self.readout(tokens).squeeze(-1))  # (B, E)


@GATES.register("average", description="uniform weights: the average-ensemble baseline")
def build_average(*, num_experts: int, embedding_dims: list[int]) -> Gate:
    return AverageGate(num_experts)


@GATES.register("classic", config=ClassicGateConfig, description="linear layer on the input's log-Mel statistics")
def build_classic(cfg: ClassicGateConfig, *, num_experts: int, embedding_dims: list[int]) -> Gate:
    return ClassicGate(num_experts, cfg)


@GATES.register("enhanced_mlp", config=EnhancedMLPGateConfig, description="MLP on the experts' embeddings")
def build_enhanced_mlp(cfg: EnhancedMLPGateConfig, *, num_experts: int, embedding_dims: list[int]) -> Gate:
    return EnhancedMLPGate(embedding_dims, cfg)


@GATES.register("attention", config=AttentionGateConfig, description="transformer over the experts' embeddings")
def build_attention(cfg: AttentionGateConfig, *, num_experts: int, embedding_dims: list[int]) -> Gate:
    return AttentionGate(embedding_dims, cfg)
