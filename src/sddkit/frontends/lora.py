"""LoRA (low-rank adaptation) of an encoder's linear projections; our own implementation.

``LoRALinear`` replaces an ``nn.Linear`` and computes

    y = x W^T + b + scale * dropout(x) A^T B^T,   A: (r, in), B: (out, r), scale = alpha / r

with A Kaiming-uniform and B zero, so a fresh adapter leaves the model unchanged. It takes
over the Linear's own ``weight`` and ``bias`` Parameters (same objects, same state-dict keys
``...q_proj.weight``), so pretrained weights load the same with or without adapters.

Mechanism: the projection *module* is replaced (``replace_projections``) rather than its
weight parametrised, because input dropout and MoLEx's per-token routing need the input
``x``. WavLM's attention, which would bypass replaced modules, is switched to an equivalent
module-calling implementation by ``SpeechEncoder.projection_slots`` (see encoders.py).

``merge()`` folds ``scale * B A`` into ``W`` for inference (the forward is then a plain
``F.linear``: no cost over the bare encoder); ``unmerge()`` takes it out again (bitwise in
half precision, see ``merge``). Train unmerged: while merged, A and B are not used (a forward in training
mode with gradients on is refused, as it would train nothing). The state
dict always holds the unmerged ``W`` next to A and B, so a checkpoint of a merged layer loads
into a fresh (unmerged) one, and loading into a merged layer folds the loaded A, B in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from sddkit.errors import ConfigError
from sddkit.frontends.encoders import PROJECTION_TARGETS, SpeechEncoder


@dataclass
class LoRAConfig:
    """rank r, alpha (scale = alpha / r), dropout on the adapter input, projections to adapt.

    targets: any of ``q, k, v, out`` (attention) and ``ffn_in, ffn_out`` (feed-forward);
    mapped per family (wav2vec2/HuBERT/WavLM ``attention.*_proj``,
    ``feed_forward.{intermediate,output}_dense``; Whisper ``self_attn.*_proj``, ``fc1``, ``fc2``).
    """

    rank: int = 8
    alpha: float = 2.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["q", "k", "v", "out"])

    def __post_init__(self) -> None:
        check_adapter_shape(self.rank, self.alpha, self.dropout, self.targets)


# Hugging Face module names of the projections (as PEFT's target_modules gives them) -> the targets naming them here
HF_MODULE_TARGETS = {
    "q_proj": "q",
    "k_proj": "k",
    "v_proj": "v",
    "out_proj": "out",
    "fc1": "ffn_in",  # Whisper
    "fc2": "ffn_out",
    "intermediate_dense": "ffn_in",  # wav2vec 2.0, HuBERT, WavLM
    "output_dense": "ffn_out",
}


def check_low_rank(rank: int, alpha: float, dropout: float) -> None:
    """The checks shared by the configs and the layers built directly (tests, notebooks)."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    # alpha = inf gives scale = inf and inf * (B = 0) = NaN: every output NaN from the first step
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def check_adapter_shape(rank: int, alpha: float, dropout: float, targets: Sequence[str]) -> None:
    check_low_rank(rank, alpha, dropout)
    if isinstance(targets, str):  # "qv" was read letter by letter: q and v adapted, "out" refused as o, t, u
        raise ValueError(f"targets must be a list of projection names, got the string {targets!r}")
    if not targets:
        raise ValueError("targets must name at least one projection")
    unknown = sorted(set(targets) - set(PROJECTION_TARGETS))
    if unknown:
        # a PEFT config names the modules (target_modules: [q_proj, v_proj]): say which of ours each one is
        known = ", ".join(f"{HF_MODULE_TARGETS[t]} for {t}" for t in unknown if t in HF_MODULE_TARGETS)
        hint = f" (Hugging Face module names: write {known})" if known else ""
        raise ValueError(f"unknown target(s) {unknown}{hint}; valid: {list(PROJECTION_TARGETS)}")
    if len(set(targets)) != len(targets):
        raise ValueError(f"targets repeat a projection: {list(targets)}")


def kaiming_uniform_rows_(t: Tensor, fan_in: int) -> Tensor:
    """In place: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), i.e. ``nn.Linear``'s Kaiming-uniform
    (a = sqrt(5)), also for stacked (E, r, in) expert tensors, whose fan-in torch would misread."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        return t.uniform_(-bound, bound)


def freeze_(p: nn.Parameter) -> None:
    """Freeze ``p`` for good: no gradient from now on, and none left from before. A gradient left in ``p.grad``
    (``zero_grad(set_to_none=False)`` keeps zeros there) let an optimizer that already held ``p`` go on stepping it:
    momentum and weight decay moved frozen experts and router rows at every step after ``add_experts``."""
    p.requires_grad_(False)
    p.grad = None


class AdaptedLinear(nn.Module):
    """Base of the adapted projections: holds the replaced Linear's own weight and bias."""

    def __init__(self, base: nn.Linear):
        # a computed weight (torch.nn.utils.weight_norm, a parametrization) would be taken as a frozen
        # snapshot: its own parameters dropped, its state-dict key gone, merge() lost at the next forward
        if not isinstance(base.weight, nn.Parameter) or parametrize.is_parametrized(base):
            raise ValueError(
                f"cannot adapt a Linear whose weight is computed (weight norm or a parametrization): "
                f"{type(base).__name__}.weight is a {type(base.weight).__name__}; remove it first"
            )
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # (out, in), the same Parameter object
        self.bias = base.bias  # (out,) or None

    def base_forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def forward_plus_low_rank(self, x: Tensor, low: Tensor, b: Tensor, scale: float) -> Tensor:
        """``x W^T + bias + scale * low b^T``: x (..., in), low (..., k), b (out, k) -> (..., out).

        The low-rank term is added by one in-place ``addmm_`` into the fresh base output, with
        ``scale`` as its ``alpha``: no separate passes to scale and add. Under autocast the base
        output comes out in the lower precision and in-place ops are not cast, so ``low`` and
        ``b`` are cast to its dtype (a no-op otherwise).
        """
        y = F.linear(x.reshape(-1, self.in_features), self.weight, self.bias)
        y.addmm_(low.reshape(-1, low.shape[-1]).to(y.dtype), b.t().to(y.dtype), alpha=scale)
        return y.view(*x.shape[:-1], self.out_features)


class LoRALinear(AdaptedLinear):
    """A Linear plus a rank-r update: x (..., in) -> (..., out)."""

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float, dropout: float = 0.0):
        check_low_rank(rank, alpha, dropout)
        super().__init__(base)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.rank, self.alpha = rank, alpha
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **factory))
        kaiming_uniform_rows_(self.lora_A, self.in_features)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        # set by merge() in half precision only: W before merging, and W's version right after
        self._unmerged_weight: Tensor | None = None
        self._merged_version = -1

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            if self.training and torch.is_grad_enabled() and (self.lora_A.requires_grad or self.lora_B.requires_grad):
                # merged, A and B are not used: a training step would leave the adapter as it is, without a word
                raise ConfigError(
                    "this LoRA layer is merged into its weight (load_detector merges for scoring): a training step "
                    "would train nothing in the adapter; call unmerge() on the LoRA layers (or the ssl front-end) "
                    "first, or load the model directory with sddkit.detectors.model_dir.load_model_dir, which does "
                    "not merge"
                )
            return F.linear(x, self.weight, self.bias)
        return self.forward_plus_low_rank(x, F.linear(self.lora_dropout(x), self.lora_A), self.lora_B, self.scale)

    def delta_weight(self) -> Tensor:
        """scale * B A: (out, in)."""
        return self.scale * (self.lora_B @ self.lora_A)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold ``scale * B A`` into W; a no-op if merged.

        In half precision ``W + BA - BA`` does not round back to W (about 1 weight in 10 comes
        back 1 ulp off), so W is copied aside for :meth:`unmerge`. In float32 the subtraction is
        exact to ~1e-7, and the copy (as large as the adapted weights) is not worth its memory.
        """
        if self.merged:
            return
        if self.weight.element_size() < 4:
            self._unmerged_weight = self.weight.detach().clone()
        self.weight.add_(self.delta_weight())
        self._merged_version = self.weight._version
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take ``scale * B A`` out of W again; a no-op if not merged."""
        if not self.merged:
            return
        self.weight.copy_(self.unmerged_weight())
        self._unmerged_weight = None
        self.merged = False

    @torch.no_grad()
    def unmerged_weight(self) -> Tensor:
        """W without the adapter's update, merged or not (not a copy when unmerged)."""
        if not self.merged:
            return self.weight
        # the kept copy is stale if W was changed while merged (a step of full fine-tuning):
        # subtracting then keeps that change
        if self._unmerged_weight is not None and self.weight._version == self._merged_version:
            return self._unmerged_weight
        return self.weight - self.delta_weight()

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.merged:
            # a checkpoint holds W and A, B apart, as the unmerged layer a rebuild gives loads them;
            # the merged W next to A, B would get B A added twice
            destination[prefix + "weight"] = self.unmerged_weight().detach().clone()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # the state holds an unmerged W (or none, if trainable-only) and new A, B: load them into
        # the unmerged layer and fold the loaded B A in again, rather than keep the old one
        was_merged = self.merged
        self.unmerge()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if was_merged:
            self.merge()

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
            f"alpha={self.alpha}, merged={self.merged}"
        )


def replace_projections(
    encoder: SpeechEncoder, targets: Sequence[str], make: Callable[[nn.Linear], nn.Module]
) -> list[tuple[str, nn.Module]]:
    """Replace each target projection of every layer by ``make(linear)``.

    Returns ``[(name, new_module)]`` in layer order, names ``"layers.{i}.{target}"``.
    """
    adapted = []
    for name, parent, attr in encoder.projection_slots(targets):
        module = make(getattr(parent, attr))
        setattr(parent, attr, module)
        adapted.append((name, module))
    return adapted


def average_low_rank(factors: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, float]:
    """The rank-r factors ``(A, B)`` whose product is the best rank-r approximation (Frobenius) of the
    mean update ``mean_i(B_i A_i)``, and the fraction of that mean's norm they lose.

    ``factors``: ``(A_i (r, in), B_i (out, r))`` of one layer in k checkpoints. The mean of the A and the
    mean of the B is not the mean update (``mean(B) mean(A) != mean(B A)``: two checkpoints (A, B) and
    (-A, -B) hold the same update, their factor means none), so this takes the mean update itself, of rank
    up to k r, and keeps its r leading singular directions: exact when the k updates span r directions
    (identical checkpoints give their own update back, though as other factors). A comes back with
    orthonormal rows and B = U S, so an update of zero keeps B = 0 and a trainable A, as a fresh adapter.
    Computed in float64 through QR of the stacked factors (no (out, in) matrix is formed); returned in
    the first A's and B's dtypes.
    """
    if not factors:
        raise ValueError("average_low_rank needs the factors of at least one checkpoint")
    a0, b0 = factors[0]
    rank = a0.shape[0]
    a_cat = torch.cat([a.double() for a, _ in factors], dim=0)  # (k r, in)
    b_cat = torch.cat([b.double() for _, b in factors], dim=1) / len(factors)  # (out, k r): b_cat a_cat = mean
    qb, rb = torch.linalg.qr(b_cat)  # (out, p), (p, k r)
    qa, ra = torch.linalg.qr(a_cat.T)  # (in, q), (q, k r)
    u, s, vh = torch.linalg.svd(rb @ ra.T, full_matrices=False)  # mean = (qb u) diag(s) (vh qa^T)
    keep = min(rank, s.numel())
    b = (qb @ u[:, :keep]) * s[:keep]
    a = vh[:keep] @ qa.T
    if keep < rank:  # a rank above min(in, out): the extra directions hold nothing
        a = torch.cat([a, a.new_zeros(rank - keep, a.shape[1])])
        b = torch.cat([b, b.new_zeros(b.shape[0], rank - keep)], dim=1)
    total = float(s.square().sum())
    # the checkpoints' own updates, ||B_i A_i||_F^2 = tr((B_i^T B_i)(A_i A_i^T)): a mean that is rounding noise
    # next to them (updates that cancel) is no update, not one whose truncation "loses" a random share of it
    scale = max(float(((fb.double().T @ fb.double()) * (fa.double() @ fa.double().T)).sum()) for fa, fb in factors)
    if total <= 1e-24 * scale:
        b = torch.zeros_like(b)
        total = 0.0
    lost = float(s[keep:].square().sum()) / total if total > 0 else 0.0
    return a.to(a0.dtype), b.to(b0.dtype), math.sqrt(lost)


def average_adapter_states(
    states: Sequence[dict[str, Tensor]], pairs: Sequence[tuple[str, str]]
) -> tuple[dict[str, Tensor], float]:
    """The averaged adapter factors of the state dicts ``states``, for each ``(A key, B key)`` of ``pairs``: a LoRA
    layer's A (r, in) and B (out, r), or a MoLEx group's (n, r, in) and (n, out, r), each of its n experts on its
    own, by :func:`average_low_rank`; and the largest fraction of a mean update the rank-r truncation lost (0 when
    nothing was averaged). Pairs not in the states (a model saved without them), or the same in all of them (frozen:
    a mixture's expert, a MoLEx group frozen by ``add_experts``), are left out: their plain mean is exact, bit for
    bit."""
    out: dict[str, Tensor] = {}
    worst = 0.0
    for key_a, key_b in pairs:
        if not all(key_a in st and key_b in st for st in states):
            continue
        first_a, first_b = states[0][key_a], states[0][key_b]
        if all(torch.equal(st[key_a], first_a) and torch.equal(st[key_b], first_b) for st in states[1:]):
            continue
        if first_a.ndim == 2:
            out[key_a], out[key_b], lost = average_low_rank([(st[key_a], st[key_b]) for st in states])
            worst = max(worst, lost)
            continue
        out[key_a], out[key_b] = torch.empty_like(first_a), torch.empty_like(first_b)
        for e in range(first_a.shape[0]):
            out[key_a][e], out[key_b][e], lost = average_low_rank([(st[key_a][e], st[key_b][e]) for st in states])
            worst = max(worst, lost)
    return out, worst


def average_lora_states(model: nn.Module, states: Sequence[dict[str, Tensor]]) -> tuple[dict[str, Tensor], float]:
    """The ``lora_A``/``lora_B`` entries of the average of the state dicts ``states`` of ``model``, by
    :func:`average_low_rank` for each :class:`LoRALinear` of ``model`` (:func:`average_adapter_states`)."""
    prefixes = [f"{name}." if name else "" for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    return average_adapter_states(states, [(f"{p}lora_A", f"{p}lora_B") for p in prefixes])


def apply_lora(encoder: SpeechEncoder, cfg: LoRAConfig) -> list[tuple[str, LoRALinear]]:
    """Put a LoRA adapter on ``cfg.targets`` in every layer of ``encoder`` (in place)."""
    return replace_projections(
        encoder, cfg.targets, lambda lin: LoRALinear(lin, rank=cfg.rank, alpha=cfg.alpha, dropout=cfg.dropout)
    )


__all__ = [
    "AdaptedLinear",
    "LoRAConfig",
    "LoRALinear",
    "apply_lora",
    "average_adapter_states",
    "average_lora_states",
    "average_low_rank",
    "check_low_rank",
    "freeze_",
    "kaiming_uniform_rows_",
    "replace_projections",
]
