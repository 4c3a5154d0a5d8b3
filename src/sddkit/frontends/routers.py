"""Routers of MoLEx layers (registry ``router``): input -> weights over E LoRA experts.

A router is a linear map to E logits followed by a gating rule:

- ``softmax``: soft weights over all experts.
- ``topk``: the k most probable experts, their probabilities renormalised to sum to one.
  ``mode: weighted`` back-propagates through those renormalised weights (with k = 1 the weight
  is the constant 1, so only the auxiliary losses train the router); ``mode: straight_through``
  uses the same forward values but passes the dense softmax gradient to every logit.

``level: token`` routes every frame; ``level: utterance`` routes once per utterance from the
mean of its frames (the gates then broadcast over frames).

``Router.forward(x)`` is ``route(logits(pool(x)))``; the steps are public so that
``MoLExLinear`` can get the logits from the same matmul as its experts' low-rank activations
and then apply only :meth:`Router.route`.

The logit weight is stored in row blocks (one per group of experts) so :meth:`Router.add_experts`
can freeze the rows of old experts and train only the new rows.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sddkit.errors import ConfigError
from sddkit.frontends import ROUTERS
from sddkit.frontends.lora import freeze_, kaiming_uniform_rows_


@dataclass
class SoftmaxRouterConfig:
    """level: route per ``token`` (frame) or per ``utterance`` (mean frame); temperature > 0."""

    level: Literal["token", "utterance"] = "token"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        # checked when read from a recipe; here when built directly (a Router refuses it only when built)
        if self.level not in ("token", "utterance"):
            raise ValueError(f"level must be 'token' or 'utterance', got {self.level!r}")
        # inf: every logit 0 (uniform gates) and add_experts' stored bias (bias * temperature) inf
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")


@dataclass
class TopKRouterConfig(SoftmaxRouterConfig):
    """k experts per token (or utterance); ``weighted`` or ``straight_through`` gradients."""

    k: int = 2
    mode: Literal["weighted", "straight_through"] = "weighted"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        # any other value ("straight-through") built a weighted router, without a word
        if self.mode not in ("weighted", "straight_through"):
            raise ValueError(f"mode must be 'weighted' or 'straight_through', got {self.mode!r}")


def top1_one_hot(probs: Tensor) -> Tensor:
    """One-hot of each unit's most probable expert: probs (..., E) -> (..., E), no gradient."""
    return torch.zeros_like(probs).scatter_(-1, probs.detach().argmax(dim=-1, keepdim=True), 1.0)


@dataclass
class RouterOutput:
    """gates: weights applied to the experts, (B, N, E) per token or (B, 1, E) per utterance;
    each row sums to one. probs: the full softmax (same shape), for load balancing."""

    gates: Tensor
    probs: Tensor


# scale of an added expert's router row relative to a fresh router's (see Router.add_experts)
NEW_ROW_SCALE = 0.01


class Router(nn.Module):
    """x (B, N, in) -> RouterOutput with E experts."""

    def __init__(
        self,
        in_features: int,
        num_experts: int,
        *,
        level: str = "token",
        temperature: float = 1.0,
        top_k: int | None = None,
        straight_through: bool = False,
    ):
        super().__init__()
        if num_experts < 1:
            raise ConfigError(f"a router needs at least one expert, got {num_experts}")
        if top_k is not None and top_k > num_experts:
            raise ConfigError(f"top-k router: k={top_k} exceeds the number of experts ({num_experts})")
        # as the configs check them, for a Router built directly: an unknown level routed every frame, k = 0 gave
        # NaN gates (0 / 0) and a temperature of 0 infinite logits
        if level not in ("token", "utterance"):
            raise ConfigError(f"router level must be 'token' or 'utterance', got {level!r}")
        if top_k is not None and top_k < 1:
            raise ConfigError(f"top-k router: k must be >= 1, got {top_k}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"router temperature must be a finite number > 0, got {temperature}")
        self.in_features = in_features
        self.level, self.temperature = level, temperature
        self.top_k, self.straight_through = top_k, straight_through
        weight = kaiming_uniform_rows_(torch.empty(num_experts, in_features), in_features)
        self.weights = nn.ParameterList([nn.Parameter(weight)])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(num_experts))])

    @property
    def num_experts(self) -> int:
        return sum(w.shape[0] for w in self.weights)

    def logit_params(self) -> tuple[Tensor, Tensor]:
        """The logit map as (weight (E, in), bias (E,)), all expert groups stacked."""
        if len(self.weights) == 1:
            return self.weights[0], self.biases[0]
        return torch.cat(list(self.weights)), torch.cat(list(self.biases))

    def logits(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., E)."""
        return F.linear(x, *self.logit_params())

    def pool(self, x: Tensor) -> Tensor:
        """The routing units of x (B, N, ...): every frame (token level) or the mean frame (B, 1, ...).

        Logits are linear in x, so pooling the per-frame logits equals the logits of the pooled
        frames (up to the bias, added after pooling): MoLExLinear relies on this.
        """
        if self.level != "utterance":
            return x
        if x.dim() != 3:
            raise ValueError(f"utterance-level routing expects (batch, frames, features), got {tuple(x.shape)}")
        return x.mean(dim=1, keepdim=True)

    def route(self, logits: Tensor) -> RouterOutput:
        """Gating rule: logits (..., E) of the routing units -> RouterOutput of the same shape."""
        if self.temperature != 1.0:
            logits = logits / self.temperature
        probs = torch.softmax(logits, dim=-1)
        if self.top_k is None:
            return RouterOutput(gates=probs, probs=probs)
        if self.top_k == 1:
            # one-hot on the most probable expert, which is what top-1 renormalised gives (p / p = 1),
            # built with one scatter; constant, so in ``weighted`` mode no gradient flows through it
            gates = top1_one_hot(probs)
        else:
            top, index = probs.topk(self.top_k, dim=-1)
            kept = torch.zeros_like(probs).scatter(-1, index, top)
            gates = kept / kept.sum(dim=-1, keepdim=True)
        if self.straight_through:
            # forward: the renormalised top-k weights; backward: the dense softmax's gradient. The bracket is
            # exactly 0, so the forward values are the weighted mode's bit for bit: (g + p) - p rounds g (by up to
            # 2^-8 in bfloat16: a top-1 gate of 0.996, gates not summing to one)
            gates = gates.detach() + (probs - probs.detach())
        return RouterOutput(gates=gates, probs=probs)

    def forward(self, x: Tensor) -> RouterOutput:
        """x (B, N, in) -> RouterOutput, gates (B, N, E) per token or (B, 1, E) per utterance."""
        return self.route(self.logits(self.pool(x)))

    def growth_problem(self, bias: float, n: int = 1) -> str | None:
        """Why :meth:`add_experts` of ``n`` experts with this ``bias`` would fail or add experts that never train, or
        None: ``n`` must be a whole number >= 1 (2.5 got as far as freezing the old experts before failing); a top-k
        router never selects experts that start below every old one (their gate is exactly 0), so only a softmax
        router can grow; a bias of -inf gives them a gate of exactly 0 too, and NaN makes every gate NaN (as
        ``MoLExConfig.new_expert_bias`` refuses them)."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            return f"add_experts needs a whole number n >= 1 of experts to add, got {n!r}"
        if self.top_k is not None:
            return (
                f"add_experts needs a softmax router; this one routes top-{self.top_k}: the new experts start below "
                "every old one, would never be selected and would never train"
            )
        if not math.isfinite(bias):
            return f"add_experts needs a finite bias for the new experts, got {bias}"
        return None

    def add_experts(self, n: int, bias: float) -> None:
        """Append ``n`` experts: old rows frozen, new rows trainable, small and distinct, with ``bias``.

        A very negative ``bias`` gives the new experts ~0 weight at first, so the layer's
        output barely changes until they are trained. ``bias`` is the logit after the
        temperature: the stored bias is ``bias * temperature``, so the start gate does not
        depend on the temperature. The new rows start at 1 % of a fresh router's scale rather than
        at zero: identical rows get identical gradients, and several experts added at once were routed
        as one (equal gate means on every attack after training).
        """
        problem = self.growth_problem(bias, n)
        if problem is not None:
            raise ConfigError(problem)
        n = int(n)
        for p in (*self.weights, *self.biases):
            freeze_(p)
        ref = self.weights[0]
        start = float(bias) * self.temperature
        rows = kaiming_uniform_rows_(torch.empty(n, self.in_features, dtype=torch.float32), self.in_features)
        self.weights.append(nn.Parameter((NEW_ROW_SCALE * rows).to(device=ref.device, dtype=ref.dtype)))
        self.biases.append(nn.Parameter(torch.full((n,), start, device=ref.device, dtype=ref.dtype)))

    def extra_repr(self) -> str:
        gating = "softmax" if self.top_k is None else f"top{self.top_k}" + ("-st" if self.straight_through else "")
        return f"in_features={self.in_features}, experts={self.num_experts}, level={self.level}, gating={gating}"


@ROUTERS.register("softmax", config=SoftmaxRouterConfig)
def build_softmax_router(cfg: SoftmaxRouterConfig, *, in_features: int, num_experts: int, **_: Any) -> Router:
    """Soft weights over all experts (per token or per utterance)."""
    return Router(in_features, num_experts, level=cfg.level, temperature=cfg.temperature)


@ROUTERS.register("topk", config=TopKRouterConfig)
def build_topk_router(cfg: TopKRouterConfig, *, in_features: int, num_experts: int, **_: Any) -> Router:
    """The k most probable experts, renormalised (weighted or straight-through gradients)."""
    return Router(
        in_features,
        num_experts,
        level=cfg.level,
        temperature=cfg.temperature,
        top_k=cfg.k,
        straight_through=cfg.mode == "straight_through",
    )


__all__ = ["Router", "RouterOutput", "SoftmaxRouterConfig", "TopKRouterConfig", "top1_one_hot"]
