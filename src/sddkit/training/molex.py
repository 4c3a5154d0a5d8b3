"""MoLEx training support: growing a trained front-end by new experts, and the expert/forgetting report.

Expert addition (``init_from: DIR`` + ``molex: {add_experts: n}``): the front-end's
``add_experts(n)`` appends experts and router rows. Only what is new is trained: new tensors get
``requires_grad``; everything else is frozen, except the back-end when ``train_backend`` is set.
A front-end that grows an existing tensor in place instead (e.g. a router weight ``(E, D) ->
(E + n, D)``) is handled too: the grown tensor is trainable, but a gradient hook (at backward, so
gradient clipping sees only the new region) and an optimiser pre-step hook zero the gradient of its
old region and a post-step hook writes the old values back, so neither the gradient nor AdamW's
decoupled weight decay can move what the old experts learned.
Normalisation layers with running statistics (BatchNorm, e.g. in an AASIST back-end) outside the trained
parts stay in eval mode, also when the detector is put in training mode: they normalise with their
stored statistics and never update them. Those statistics are buffers, not parameters, so freezing
parameters alone let every training step on the new domain move what the old domains are scored with;
in eval mode the frozen parts also compute in training exactly the function the new experts meet at
inference.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sddkit.errors import ConfigError


@dataclass
class _Grown:
    """A parameter that grew: ``old`` indexes its pre-existing region, ``snapshot`` holds those values."""

    name: str
    param: nn.Parameter
    old: tuple[slice, ...]
    snapshot: Tensor


class ExpertAddition:
    """Grow ``detector.frontend`` by ``n`` experts and make only the new parts trainable."""

    def __init__(self, detector: nn.Module, n: int, *, train_backend: bool = False, bias: float | None = None):
        from sddkit.frontends.lora import freeze_

        problem = growth_problem(detector)
        if problem is not None:
            raise ConfigError(problem)
        frontend = detector.frontend
        before = {name: tuple(p.shape) for name, p in detector.named_parameters()}
        if bias is None:  # the front-end's own new_expert_bias
            frontend.add_experts(n)
        else:  # the recipe's molex.new_expert_bias
            frontend.add_experts(n, bias=bias)
        self.added = n
        self.new: list[str] = []
        self.grown: list[_Grown] = []
        self.backend: list[str] = []  # old back-end parameters trained again (train_backend)
        for name, p in detector.named_parameters():
            old_shape = before.get(name)
            if old_shape is None:
                p.requires_grad_(True)
                self.new.append(name)
            elif old_shape == tuple(p.shape):
                retrained = train_backend and name.startswith("backend.")
                if retrained:
                    p.requires_grad_(True)
                    self.backend.append(name)
                else:
                    freeze_(p)  # its gradient too: an optimizer already holding it stepped it on a left-over one
            else:
                if len(old_shape) != p.dim() or any(o > s for o, s in zip(old_shape, p.shape)):
                    raise ConfigError(f"add_experts changed {name} from {old_shape} to {tuple(p.shape)}: not a growth")
                old = tuple(slice(0, o) for o in old_shape)
                p.requires_grad_(True)
                self.grown.append(_Grown(name, p, old, p.detach()[old].clone()))
                # mask at backward too, so gradient clipping (and its logged norm) never counts the old region
                p.register_hook(functools.partial(_zero_region, region=old))
        if not self.new and not self.grown:
            raise ConfigError("add_experts added no parameters: nothing to train")
        self.frozen_statistics = _freeze_running_statistics(detector, train_backend=train_backend)

    @property
    def trainable_names(self) -> list[str]:
        """Every parameter the addition trains (molex_report.json's ``trainable``): new, grown, back-end."""
        return self.new + [g.name for g in self.grown] + self.backend

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Register the hooks that keep the old regions of grown parameters fixed."""
        optimizer.register_step_pre_hook(self._mask_gradients)
        optimizer.register_step_post_hook(self._restore_old)

    def _mask_gradients(self, *_: Any) -> None:
        for g in self.grown:
            if g.param.grad is not None:
                g.param.grad[g.old] = 0

    @torch.no_grad()
    def _restore_old(self, *_: Any) -> None:
        for g in self.grown:
            g.param[g.old] = g.snapshot.to(g.param.device)


def growth_problem(detector: nn.Module) -> str | None:
    """Why ``molex.add_experts`` cannot grow ``detector``, or None: no front-end (a detector mixture), a front-end
    without ``add_experts(n)``, or an ``ssl`` front-end with another adapter than MoLEx, or top-k routers (see
    :func:`_top_k_problem`). The trainer asks it of an ``init_from`` model as soon as it is loaded: found only by the
    growth, the refusal came after ``molex.old_eval`` had been scored with the model (a whole corpus)."""
    frontend = getattr(detector, "frontend", None)
    if frontend is None:  # e.g. a detector mixture: its experts' front-ends are not grown
        return f"molex.add_experts needs a detector with a MoLEx front-end; {type(detector).__name__} has no front-end"
    if not callable(getattr(frontend, "add_experts", None)):
        return f"molex.add_experts needs a front-end with add_experts(n); {type(frontend).__name__} has none"
    from sddkit.frontends.ssl import SSLFrontend

    # an ssl front-end has add_experts whatever its adapter (it refuses to grow a LoRA one); other front-ends decide
    if isinstance(frontend, SSLFrontend) and frontend.adapter != "molex":
        return (
            f"molex.add_experts needs a MoLEx front-end (adapter: molex); this model's front-end has adapter: "
            f"{frontend.adapter} (to train it on new data as it is, leave molex.add_experts out)"
        )
    return _top_k_problem(detector)


def _top_k_problem(detector: nn.Module) -> str | None:
    """New experts start with a very negative router bias (~0 weight, so the old outputs barely move).
    A top-k router then never selects them: their gate is exactly 0, no gradient reaches them and the
    addition trains nothing. Only a softmax router (every expert weighted) lets them learn."""
    from sddkit.frontends.routers import Router

    top_k = sorted({m.top_k for m in detector.modules() if isinstance(m, Router) and m.top_k is not None})
    if not top_k:
        return None
    return (
        f"molex.add_experts needs softmax routers; this model routes top-{top_k[0]}: the new experts start "
        "below every old one, would never be selected and would never train"
    )


def trained_molex_problem(model: nn.Module) -> str | None:
    """Why training ``model`` as loaded would silently go wrong at a MoLEx front-end, or None: the recipe's checks
    (:meth:`~sddkit.frontends.ssl.SSLFrontendConfig.training_problem`: a router no gradient reaches, an
    utterance-level router pooling Whisper's 30 s of padding) for a model read from a directory (``init_from``), whose
    config the recipe does not hold. Front-ends whose MoLEx layers train nothing (a mixture's frozen experts) pass."""
    from sddkit.frontends.ssl import SSLFrontend

    for name, module in model.named_modules():
        if not isinstance(module, SSLFrontend) or module.adapter != "molex":
            continue
        if not any(p.requires_grad for _, layer in module.adapted_modules() for p in layer.parameters()):
            continue
        config = module.config
        problem = config.training_problem() if config is not None else module.molex_config.untrainable_router()
        if problem is not None:
            return f"{name or 'frontend'}: {problem}"
    return None


def molex_layer_names(model: nn.Module) -> list[str] | None:
    """The adapted projections of ``model``'s MoLEx front-end (``layers.0.q``, ``layers.0.k``, ...): the order of the
    M layers of its per-layer statistics ``(B, M, E)`` and of molex_report.json's ``expert_use_per_layer`` rows.
    None unless the model has exactly one MoLEx front-end (a mixture of MoLEx experts reports no such statistics)."""
    from sddkit.frontends.ssl import SSLFrontend

    found = [m for m in model.modules() if isinstance(m, SSLFrontend) and m.adapter == "molex"]
    return list(found[0].adapted_names) if len(found) == 1 else None


def _stay_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    """``train`` of a frozen norm layer: always eval mode, whatever ``mode`` its parent passes down."""
    return nn.Module.train(module, False)


def _freeze_running_statistics(detector: nn.Module, *, train_backend: bool) -> list[str]:
    """Keep every norm layer with running statistics outside the trained parts in eval mode; their names.

    A layer is trained when one of its parameters is, or (parameter-free layers) when it belongs to the
    back-end and ``train_backend`` is set.
    """
    frozen = []
    for name, module in detector.named_modules():
        if not isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
            continue
        if not module.track_running_stats or module.running_mean is None:
            continue
        params = list(module.parameters(recurse=False))
        trained = any(p.requires_grad for p in params) or (not params and train_backend and name.startswith("backend."))
        if not trained:
            module.train = types.MethodType(_stay_in_eval, module)  # detector.train() reaches it through this
            module.eval()
            frozen.append(name)
    return frozen


def _zero_region(grad: Tensor, *, region: tuple[slice, ...]) -> Tensor:
    grad = grad.clone()
    grad[region] = 0
    return grad


def grown_frontend_config(frontend_config: dict[str, Any], frontend: nn.Module) -> dict[str, Any]:
    """The front-end config after ``add_experts``: what rebuilds the grown module from scratch.

    The front-end reports it through ``config_after_growth(config) -> config`` when it has one;
    otherwise its ``num_experts`` attribute replaces the config's ``num_experts`` entry.
    """
    updater = getattr(frontend, "config_after_growth", None)
    if callable(updater):
        return updater(dict(frontend_config))
    count = getattr(frontend, "num_experts", None)
    if count is None or "num_experts" not in frontend_config:
        raise ConfigError(
            f"cannot record the grown front-end: {type(frontend).__name__} has neither config_after_growth() "
            "nor a num_experts attribute matching its config"
        )
    return {**frontend_config, "num_experts": int(count)}


# --- report ------------------------------------------------------------------------------------------
def eer_by_attack(labels: np.ndarray, scores: np.ndarray, attacks: np.ndarray) -> dict[str, Any]:
    """Pooled EER and, per attack system, the EER of its spoofs against all bona fide trials."""
    from sddkit.metrics import MetricError, eer

    def safe(y: np.ndarray, s: np.ndarray) -> float | None:
        try:
            return float(eer(y, s))
        except MetricError:
            return None

    bona = labels == 1
    per = {}
    for attack in sorted(set(attacks[~bona].tolist())):
        rows = bona | ((attacks == attack) & ~bona)
        per[str(attack)] = safe(labels[rows], scores[rows])
    return {"eer": safe(labels, scores), "per_attack": per, "n": int(labels.size)}


def describe_by_attack(
    labels: np.ndarray,
    scores: np.ndarray,
    stats: dict[str, np.ndarray],
    attacks: np.ndarray,
    corpora: np.ndarray | None = None,
) -> dict[str, Any]:
    """One data set's part of molex_report.json: pooled and per-attack EER, and expert use per attack (the mean over
    layers, a summary, and per layer). ``labels``/``scores``/``attacks``/``corpora``: ``(N,)``, 1 = bona fide;
    ``stats``: the per-utterance statistics ``(N, ..., K)``. Attack groups are named by :func:`report_attack_names`."""
    attacks = report_attack_names(labels, attacks, corpora)
    return {
        **eer_by_attack(labels, scores, attacks),
        "expert_use": expert_use_by_attack(stats, attacks),  # mean over layers: a summary
        "expert_use_per_layer": expert_use_by_attack(stats, attacks, per_layer=True),
    }


def report_attack_names(labels: np.ndarray, attacks: np.ndarray, corpora: np.ndarray | None = None) -> np.ndarray:
    """Each row's group in molex_report.json: ``bonafide`` for bona fide rows, whatever their attack cell holds (a table
    that leaves it empty for every row averaged the bona fide expert use together with the spoofs', as sdd eval's
    gate tables); a spoof's attack, as ``corpus/attack`` where that attack name names spoofs of several ``corpora``:
    an old_eval of ASVspoof 5 dev and ASVspoof 2019 LA eval calls different systems A09 .. A16 in both, and each
    pair was reported as one attack (one EER, one expert use). ``(N,)`` each -> ``(N,)`` str."""
    bona = np.asarray(labels) == 1
    names = np.asarray(attacks, dtype=str).astype(object)
    if corpora is not None:
        corpora = np.asarray(corpora, dtype=str).astype(object)
        for attack in set(names[~bona].tolist()):
            rows = ~bona & (names == attack)
            if len(set(corpora[rows].tolist())) > 1:
                names[rows] = corpora[rows] + "/" + attack
    return np.where(bona, "bonafide", names).astype(str)


def molex_report(
    *,
    added_experts: int,
    trainable: list[str] | None,
    weights: str,
    layers: list[str] | None,
    before: dict[str, Any] | None,
    old_after: dict[str, Any] | None,
    new_domain: dict[str, Any] | None,
) -> dict[str, Any]:
    """molex_report.json's content: the expert addition (``added_experts``, the ``trainable`` parameters' names),
    which ``weights`` were scored (``best`` or ``last``), the adapted projections ``layers`` naming the rows of
    ``expert_use_per_layer``; ``before``/``old_after``: the old domains (``molex.old_eval``) described by
    :func:`describe_by_attack` before the addition and after training (None: no old_eval; ``before`` None: not
    scored), with their ``forgetting_eer``; ``new_domain``: the validation data after training."""
    report: dict[str, Any] = {
        "added_experts": added_experts,
        "trainable": trainable,
        "weights": weights,
        "units": {"eer": "fraction"},  # as metrics.jsonl; sdd eval's report.json gives percent
        # which projection each row of expert_use_per_layer is: expert k of one is unrelated to expert k of another,
        # so rows without names could not be read per layer (8 rows for 2 layers x q, k, v, out)
        "layers": layers,
    }
    if old_after is not None:
        report["old_domains"] = {"before": before, "after": old_after}
        if before is not None and before["eer"] is not None and old_after.get("eer") is not None:
            report["old_domains"]["forgetting_eer"] = old_after["eer"] - before["eer"]
    if new_domain is not None:
        report["new_domain"] = new_domain
    return report


def expert_use_by_attack(
    stats: dict[str, np.ndarray], attacks: np.ndarray, *, per_layer: bool = False
) -> dict[str, dict[str, list[Any]]]:
    """For every per-utterance statistic ``(N, ..., K)`` (e.g. router weights ``(N, layers, experts)``), its mean
    per attack: over the middle axes too (a ``K`` list), or with ``per_layer`` kept per layer (``layers x K``).

    The layer mean is a summary only: expert k of one layer is unrelated to expert k of another, so which
    expert an attack goes to is read per layer.
    """
    out: dict[str, dict[str, list[Any]]] = {}
    for key, values in stats.items():
        if not per_layer:
            values = values.reshape(len(values), -1, values.shape[-1]).mean(axis=1)
        out[key] = {str(a): values[attacks == a].mean(axis=0).round(6).tolist() for a in sorted(set(attacks.tolist()))}
    return out
