"""MoLEx: a mixture of LoRA experts in each adapted projection.

Each adapted ``nn.Linear`` becomes a :class:`MoLExLinear` with E LoRA experts (A_e: (r, in),
B_e: (out, r)) and a router (registry ``router``) producing gates g (rows sum to one):

    y = x W^T + b + sum_e g_e(x) * scale * B_e A_e dropout(x),    scale = alpha / r

computed with two matmuls over the stacked experts (no loop over experts): the first gives the
experts' low-rank activations and, when LoRA dropout is inactive (eval, or dropout 0), the router
logits too (router weight rows appended to the stacked A); the second adds the gated update into
the base output (see ``AdaptedLinear.forward_plus_low_rank``).

Auxiliary losses (weights configurable, already weighted in the returned dict):

- load balancing, Switch-Transformer style: ``E * sum_e f_e * P_e`` with f_e the fraction of
  routing units (frames, or utterances for utterance-level routers) whose top-1 expert is e
  and P_e the mean router probability of e; averaged over adapted layers. It is 1 when use is
  uniform and grows to E when one expert takes everything.
- orthogonality between experts: ``sum_{i<j} ||A_i A_j^T||_F^2`` (and/or ``||B_i^T B_j||_F^2``)
  per layer, averaged over layers. It depends on the weights only, so the front-end computes it
  only while gradients are recorded (not at inference).

Per-expert statistics for analysis, per utterance and per adapted layer (M layers), so they can
be averaged per attack or per layer: ``molex_gate_mean`` (B, M, E), the mean gate weight of each
expert over the utterance's frames, and ``molex_top1_count`` (B, M, E), how many of its frames
(1 per utterance for utterance-level routers) chose each expert first.

How the losses leave the model (nothing is stored on ``self`` in ``forward``): the adapted
layers sit deep inside a transformers model whose forward we do not control, so the front-end
opens :func:`collect_routing` around its encoder call. That context sets a
``contextvars.ContextVar`` to a fresh list for this call; every ``MoLExLinear.forward`` that
runs inside appends ``(self, RouterOutput)`` to it, and the front-end turns the list into
losses and statistics with :func:`routing_summary` before the context closes. A ContextVar is
private to the thread (and asyncio task) that set it, so concurrent forwards never mix, and
nested contexts restore the outer list on exit. Layers called outside any context (e.g. the
recomputation of gradient checkpointing during backward) record nothing; they compute exactly
the same tensors either way, so checkpointing's recomputation stays consistent.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sddkit.config import component_field
from sddkit.errors import ConfigError
from sddkit.frontends.encoders import SpeechEncoder
from sddkit.frontends.lora import (
    AdaptedLinear,
    average_adapter_states,
    check_adapter_shape,
    check_low_rank,
    freeze_,
    kaiming_uniform_rows_,
    replace_projections,
)
from sddkit.frontends.routers import Router, RouterOutput, top1_one_hot
from sddkit.registry import ComponentSpec, get_registry


def _default_router() -> ComponentSpec:
    return get_registry("router").parse("softmax")


@dataclass
class MoLExConfig:
    """Mixture of LoRA experts.

    num_experts: experts per adapted projection; rank/alpha/dropout/targets as for LoRA.
    router: a ``router`` registry component (``softmax`` or ``topk``, token or utterance level).
    load_balance_weight / orthogonality_weight: weights of the auxiliary losses (0 = off).
    orthogonality_on: which expert factors the orthogonality loss compares: A, B or both.
    new_expert_bias: router bias of experts added later by ``add_experts`` (their router
        weight rows start small, at 1 % of a fresh router's scale; a logit after the router
        temperature): very negative = ~0 gate at first, so old outputs barely move.
    added_experts: sizes of expert groups appended after the first training by
        ``add_experts``; a model saved after ``add_experts(n)`` records them here so that it
        rebuilds with the same structure (all groups but the last are then frozen).
    """

    num_experts: int = 4
    rank: int = 8
    alpha: float = 2.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["q", "k", "v", "out"])
    router: ComponentSpec = component_field("router", default_factory=_default_router)
    load_balance_weight: float = 0.01
    orthogonality_weight: float = 0.01
    orthogonality_on: Literal["A", "B", "both"] = "both"
    new_expert_bias: float = -6.0
    added_experts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_adapter_shape(self.rank, self.alpha, self.dropout, self.targets)
        if self.num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {self.num_experts}")
        for key in ("load_balance_weight", "orthogonality_weight"):
            # inf: an infinite training loss from the first step, reported as divergence instead of as this setting
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise ValueError(f"{key} must be a finite number >= 0, got {getattr(self, key)}")
        if self.orthogonality_on not in ("A", "B", "both"):  # checked when read from a recipe; here when built
            raise ValueError(f"orthogonality_on must be 'A', 'B' or 'both', got {self.orthogonality_on!r}")
        if any(n < 1 for n in self.added_experts):
            raise ValueError(f"added_experts sizes must be >= 1, got {self.added_experts}")
        # -inf gives the added experts a gate of exactly 0: they and their router rows never get a gradient
        if not math.isfinite(self.new_expert_bias):
            raise ValueError(f"new_expert_bias must be finite, got {self.new_expert_bias}")
        # checked here too (the router checks it when built) so a recipe fails when read, not at setup
        k = getattr(self.router.config, "k", None)
        if k is not None and k > self.num_experts:
            raise ValueError(f"router k={k} exceeds num_experts ({self.num_experts})")
        if k is not None and self.added_experts:  # as Router.add_experts refuses it, when the recipe is read
            raise ValueError(
                f"added_experts {self.added_experts} needs a softmax router; a top-{k} router never selects experts "
                "added below every old one"
            )

    def untrainable_router(self) -> str | None:
        """Why training could not move the router, or None. A weighted top-1 gate is the constant 1: only the
        load-balancing loss reaches the router. Checked by training recipes only: a model trained so still loads."""
        k = getattr(self.router.config, "k", None)
        if k == 1 and getattr(self.router.config, "mode", None) == "weighted" and self.load_balance_weight == 0:
            return (
                "router topk k=1 (mode: weighted) with load_balance_weight 0: the router would get no gradient "
                "and keep its random initial routing; use mode: straight_through or load_balance_weight > 0"
            )
        return None

    def built_afresh_problem(self) -> str | None:
        """Why building this config afresh to train it would go wrong, or None. ``added_experts`` describes a trained
        model grown by ``add_experts``: rebuilt, every expert group but the last is frozen (see :func:`apply_molex`),
        which a model directory's weights then fill in; built afresh, those groups keep their initial values (B = 0:
        they never add anything) and only the last one trains. Checked by training recipes for fresh builds only."""
        if not self.added_experts:
            return None
        total = self.num_experts + sum(self.added_experts)
        return (
            f"molex.added_experts {self.added_experts} records experts grown into a trained model by "
            "molex.add_experts; built afresh, every expert group but the last would stay frozen at its initial "
            "value (B = 0: it never adds anything) and only the last one would train; to train this many experts "
            f"from scratch set num_experts: {total} without added_experts, or grow the trained model directory with "
            "init_from and molex.add_experts"
        )


class MoLExLinear(AdaptedLinear):
    """A Linear plus a routed mixture of E rank-r experts: x (B, N, in) -> (B, N, out).

    Experts are stored in groups (``lora_A[i]``: (E_i, r, in), ``lora_B[i]``: (E_i, out, r));
    :meth:`add_experts` appends a group and freezes the earlier ones.
    """

    def __init__(
        self, base: nn.Linear, *, num_experts: int, rank: int, alpha: float, router: Router, dropout: float = 0.0
    ):
        check_low_rank(rank, alpha, dropout)
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        # a mismatched router would otherwise fail deep in the first forward (fused matmul split)
        if router.num_experts != num_experts:
            raise ValueError(f"the router has {router.num_experts} experts, the layer num_experts={num_experts}")
        if router.in_features != base.in_features:
            raise ValueError(f"the router reads {router.in_features} features, the layer {base.in_features}")
        super().__init__(base)
        self.rank, self.alpha = rank, alpha
        self.scale = alpha / rank
        # in the layer's device and dtype, as apply_molex builds it: a float32 router beside a bfloat16 projection
        # (a layer built directly) failed in the first forward's fused matmul ("expected m1 and m2 to have the same
        # dtype")
        self.router = router.to(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.ParameterList()
        self.lora_B = nn.ParameterList()
        self._append_group(num_experts)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def _append_group(self, n: int) -> None:
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        a = kaiming_uniform_rows_(torch.empty(n, self.rank, self.in_features, **factory), self.in_features)
        self.lora_A.append(nn.Parameter(a))
        self.lora_B.append(nn.Parameter(torch.zeros(n, self.out_features, self.rank, **factory)))

    @property
    def num_experts(self) -> int:
        return sum(a.shape[0] for a in self.lora_A)

    @property
    def expert_groups(self) -> tuple[int, ...]:
        return tuple(a.shape[0] for a in self.lora_A)

    def experts_A(self) -> Tensor:
        """(E, r, in)."""
        return self.lora_A[0] if len(self.lora_A) == 1 else torch.cat(list(self.lora_A))

    def experts_B(self) -> Tensor:
        """(E, out, r)."""
        return self.lora_B[0] if len(self.lora_B) == 1 else torch.cat(list(self.lora_B))

    def forward(self, x: Tensor) -> Tensor:
        router = self.router
        a = self.experts_A()
        e, r = a.shape[0], self.rank
        a = a.reshape(e * r, self.in_features)
        if self.training and isinstance(self.lora_dropout, nn.Dropout):
            # active dropout: the experts see the dropped input, the router the intact one
            logits = router.logits(router.pool(x))
            low = F.linear(self.lora_dropout(x), a)
        else:
            # one matmul for the experts' low-rank activations and the router logits; the router
            # bias is added after pooling, equal (up to rounding) since the logits are linear in x
            router_weight, router_bias = router.logit_params()
            low, logits = F.linear(x, torch.cat([a, router_weight])).split([e * r, e], dim=-1)
            logits = router.pool(logits) + router_bias
        route: RouterOutput = router.route(logits)  # gates (B, N or 1, E)
        gated = (low.unflatten(-1, (e, r)) * route.gates.unsqueeze(-1)).flatten(-2)  # (..., E * r)
        b = torch.cat([b_e for group in self.lora_B for b_e in group.unbind(0)], dim=1)  # (out, E * r): B_1 | ... | B_E
        records = _RECORDS.get()
        if records is not None:
            records.append((self, route))
        return self.forward_plus_low_rank(x, gated, b, self.scale)  # + scale * sum_e g_e B_e A_e x

    def add_experts(self, n: int, *, bias: float) -> None:
        """Append ``n`` experts (A Kaiming-uniform, B zero) and freeze the existing ones."""
        problem = self.router.growth_problem(bias, n)  # before anything is frozen: the layer stays as it was
        if problem is not None:
            raise ConfigError(problem)
        n = int(n)
        for p in (*self.lora_A, *self.lora_B):
            freeze_(p)
        self._append_group(n)
        self.router.add_experts(n, bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, experts={self.num_experts}, "
            f"rank={self.rank}, alpha={self.alpha}"
        )


def apply_molex(encoder: SpeechEncoder, cfg: MoLExConfig) -> list[tuple[str, MoLExLinear]]:
    """Put MoLEx adapters on ``cfg.targets`` in every layer of ``encoder`` (in place)."""
    routers = get_registry("router")

    def make(lin: nn.Linear) -> MoLExLinear:
        router = routers.build(cfg.router, in_features=lin.in_features, num_experts=cfg.num_experts)
        router.to(device=lin.weight.device, dtype=lin.weight.dtype)
        return MoLExLinear(
            lin, num_experts=cfg.num_experts, rank=cfg.rank, alpha=cfg.alpha, router=router, dropout=cfg.dropout
        )

    adapted = replace_projections(encoder, cfg.targets, make)
    for n in cfg.added_experts:
        for _, module in adapted:
            module.add_experts(n, bias=cfg.new_expert_bias)
    return adapted


# --- per-call collection of routing decisions -------------------------------------------------

_RECORDS: contextvars.ContextVar[list[tuple[MoLExLinear, RouterOutput]] | None] = contextvars.ContextVar(
    "sddkit_molex_records", default=None
)


@contextlib.contextmanager
def collect_routing() -> Iterator[list[tuple[MoLExLinear, RouterOutput]]]:
    """Collect ``(layer, RouterOutput)`` of every MoLEx layer run inside (see module doc)."""
    records: list[tuple[MoLExLinear, RouterOutput]] = []
    token = _RECORDS.set(records)
    try:
        yield records
    finally:
        _RECORDS.reset(token)


def load_balance_loss(probs: Tensor, top1: Tensor | None = None) -> Tensor:
    """Switch load-balancing loss per layer: probs (M, U, E) over U routing units -> (M,).

    ``E * sum_e f_e P_e``, f_e = fraction of units whose argmax is e, P_e = mean probability.
    Gradients flow through P only (f is a count). ``top1``: ``top1_one_hot(probs)`` if already
    computed.
    """
    e = probs.shape[-1]
    if top1 is None:
        top1 = top1_one_hot(probs)
    return e * (top1.mean(dim=1) * probs.mean(dim=1)).sum(dim=-1)


def pairwise_orthogonality(factors: Tensor, *, transpose: bool = False) -> Tensor:
    """Sum over expert pairs i < j of ||F_i F_j^T||_F^2: factors (M, E, p, q) -> (M,).

    ``transpose`` compares F_i^T F_j instead (for B: (out, r) -> r x r Gram blocks).
    """
    if transpose:
        factors = factors.transpose(-1, -2)
    gram = torch.einsum("meij,mfkj->mefik", factors, factors)  # (M, E, E, p, p)
    pair = gram.pow(2).sum(dim=(-1, -2))  # (M, E, E), symmetric
    upper = torch.triu(torch.ones_like(pair[0], dtype=torch.bool), diagonal=1)
    return pair[:, upper].sum(dim=-1)


def orthogonality_loss(layers: Sequence[MoLExLinear], on: str = "both") -> Tensor:
    """Mean over layers of the pairwise expert orthogonality of A and/or B (scalar)."""
    if on not in ("A", "B", "both"):  # any other value compared nothing: a loss of exactly 0, silently
        raise ValueError(f"orthogonality_on must be 'A', 'B' or 'both', got {on!r}")
    groups: dict[tuple[str, torch.Size], list[Tensor]] = {}  # (factor, shape) -> factors of that shape
    for layer in layers:
        if on in ("A", "both"):
            a = layer.experts_A()
            groups.setdefault(("A", a.shape), []).append(a)
        if on in ("B", "both"):
            b = layer.experts_B()
            groups.setdefault(("B", b.shape), []).append(b)
    total = layers[0].weight.new_zeros(())
    for (factor, _), factors in groups.items():  # one batched einsum per distinct shape
        total = total + pairwise_orthogonality(torch.stack(factors), transpose=factor == "B").sum()
    return total / len(layers)


@dataclass
class RoutingSummary:
    """Raw (unweighted) load-balancing loss and per-utterance, per-layer statistics of one forward."""

    load_balance: Tensor  # scalar, mean over layers
    gate_mean: Tensor  # (B, M, E) float: mean gate of each expert over an utterance's frames, per layer
    top1_count: Tensor  # (B, M, E) int64: frames (or 1 per utterance) whose top-1 expert is e, per layer


def routing_summary(
    layers: Sequence[MoLExLinear],
    records: Sequence[tuple[MoLExLinear, RouterOutput]],
    batch_size: int,
    frames: int | None = None,
) -> RoutingSummary:
    """Turn the records of one forward into the load-balancing loss and use statistics.

    ``layers`` fixes the order of the M layers in the statistics; a layer that did not run
    gets zeros. Every record holds gates/probs shaped (B, F, E) (F frames, or 1 per utterance).
    ``frames``: how many of the F frames are the input's, the rest being padding the encoder ran
    on and cut off its output (Whisper's ``pad_to_30s`` runs all 1500 positions); only those
    count, in the statistics and the loss. ``None``: all of them.
    """
    e = layers[0].num_experts
    device = layers[0].weight.device
    by_layer = {id(layer): route for layer, route in records}
    ran = [i for i, layer in enumerate(layers) if id(layer) in by_layer]
    gate_mean = torch.zeros(batch_size, len(layers), e, device=device)
    top1_count = torch.zeros(batch_size, len(layers), e, dtype=torch.long, device=device)
    if not ran:
        return RoutingSummary(layers[0].weight.new_zeros(()), gate_mean, top1_count)
    routes = [by_layer[id(layers[i])] for i in ran]
    probs = torch.stack([_input_frames(route.probs, frames) for route in routes])  # (M', B, F, E)
    gates = torch.stack([_input_frames(route.gates, frames) for route in routes])
    top1 = top1_one_hot(probs)  # one argmax for both the counts and the loss
    index = torch.tensor(ran, device=device)
    with torch.no_grad():
        # averaged in float32: a bfloat16 mean is rounded to 2^-9 of itself (~1e-3 off for a gate mean of 0.25)
        gate_mean[:, index] = gates.float().mean(dim=2).transpose(0, 1)
        top1_count[:, index] = top1.sum(dim=2, dtype=torch.long).transpose(0, 1)
    return RoutingSummary(load_balance_loss(probs.flatten(1, 2), top1.flatten(1, 2)).mean(), gate_mean, top1_count)


def _input_frames(t: Tensor, frames: int | None) -> Tensor:
    """(B, F, E) -> its first ``frames`` frames; utterance-level records (F = 1) unchanged."""
    if frames is None or t.shape[1] <= frames:
        return t
    return t[:, :frames]


def average_molex_states(model: nn.Module, states: Sequence[dict[str, Tensor]]) -> tuple[dict[str, Tensor], float]:
    """The expert factors (``lora_A.<g>`` (n, r, in), ``lora_B.<g>`` (n, out, r)) of the average of the state dicts
    ``states`` of ``model``: each expert's rank-r truncation of its mean update ``B A`` over the states
    (:func:`~sddkit.frontends.lora.average_adapter_states`), as for plain LoRA, not the mean of its A times the mean of
    its B; and the largest share of an expert's mean update the truncation lost. Expert groups that are the same
    in every state (frozen by ``add_experts``) are left out: their plain mean is exact, bit for bit. The averaged
    A have orthonormal rows, so a run continued from them sees another orthogonality loss for the same experts
    (``add_experts`` recipes start from ``best/``, which is not averaged)."""
    pairs = [
        (f"{name}.lora_A.{g}" if name else f"lora_A.{g}", f"{name}.lora_B.{g}" if name else f"lora_B.{g}")
        for name, module in model.named_modules()
        if isinstance(module, MoLExLinear)
        for g in range(len(module.lora_A))
    ]
    return average_adapter_states(states, pairs)


__all__ = [
    "MoLExConfig",
    "average_molex_states",
    "MoLExLinear",
    "RoutingSummary",
    "apply_molex",
    "collect_routing",
    "load_balance_loss",
    "orthogonality_loss",
    "pairwise_orthogonality",
    "routing_summary",
]
