"""``mldg``: first-order meta-learning domain generalisation (Li et al., 2018), as used for LoRA on SSL
encoders (Laakkonen, Kukanov, Hautamäki, 2025). Domains are attack systems (the dataset's ``domain``).

One step on a batch holding several domains:

1. split the batch's domains at random into meta-train and meta-test (``n_meta_test`` domains go to
   meta-test). With the ``domain_batch`` sampler (the published set-up) every batch is made of
   per-domain blocks, each holding that domain's own share of the bona fide files (the bona fide
   files are partitioned once among the domains) plus its spoofs; the trainer marks each row's
   block in ``batch["domain_block"]`` and whole blocks are held out (:func:`split_blocks`), so a
   domain's bona fide share always goes with its attack. Other batches are split by their spoof
   domains; bona fide rows of no attack go to both halves with ``share_bonafide``, else they are
   dealt at random between the halves (:func:`split_domains`);
2. meta-train loss ``L_tr(θ)`` (classification term + auxiliary losses) and its gradient ``g_tr`` at the
   current parameters θ;
3. the trainable parameters take one inner Adam step on ``g_tr`` to θ' (``inner_lr`` 1e-3, fresh Adam
   state every step, as published), in place: θ is copied aside first (trainable tensors only; the
   frozen parameters, e.g. a 300M-parameter encoder, are never copied). From a fresh state Adam's
   first step is ``θ' = θ - inner_lr * g_tr / (|g_tr| + inner_eps)`` per coordinate: about
   ``inner_lr * sign(g_tr)``, so every trainable coordinate with a gradient moves by up to ``inner_lr``
   whatever the gradient's scale (``trainer.grad_clip`` applies to the combined gradient of step 5
   only), and ``inner_betas`` cancel out in Adam's bias correction;
4. meta-test loss ``L_te(θ')``, the classification term alone (the auxiliary losses, e.g. MoLEx
   orthogonality or ``loss.domain_alignment``, count once, in ``L_tr``, with the weight they have under
   ERM): forward AND backward run on the module holding θ', so a layer that
   recomputes its forward during backward (gradient checkpointing) recomputes it at θ' too (a
   ``functional_call`` forward would be recomputed at θ, and its gradient silently mixed the two);
5. θ is copied back, and first order: the applied gradient is ``g_tr + beta * ∇_θ' L_te(θ')`` (no second
   derivatives), and the outer optimiser (AdamW) applies it to θ.

The buffers are copied before the meta-test pass and back after it, so running statistics (batch norm)
are updated by the meta-train pass only, exactly as in a pooled step on the meta-train rows; with
``beta = 0`` the meta-test pass is skipped and a step is bit-for-bit the ERM step on the meta-train rows
(random streams included, so a whole run is).

DDP: both passes run on the un-wrapped module inside ``no_sync`` (DDP's hooks would otherwise
all-reduce ``g_tr`` mid-step, and the meta-test gradient on its own); each rank forms its own
``g_tr + beta * g_te`` on its shard and one flat all-reduce averages that sum before the optimiser
step, so the replicas' parameters stay identical (buffers such as batch-norm statistics are not
broadcast on this path; rank 0's are the ones checkpointed). The collective pattern is the same
on every rank, including the fall-back below, so ranks can never wait on different collectives.
Each rank's losses are means over its own rows (not ERM's :meth:`StepContext.pooled_loss`, a collective
that a rank whose batch cannot be split would never reach in its meta-test pass): with ``domain_batch``
every rank's halves hold the same numbers of blocks and of bona fide and spoof rows, so the average over
the ranks is the class-weighted mean over all of them exactly; with other samplers the halves' sizes
and class mixes differ between ranks and it is an approximation. ``loss.domain_alignment`` is the spread within each
rank's meta-train rows (as under ERM, within each rank's rows).

Each step logs ``mldg/meta_test_rows``, the rows the meta-test gradient came from. With a sampler other than
``domain_batch`` that is what the batch happens to hold of the held-out domain: a few rows for a small one (e.g. a
demo page with sources as domains), whose gradient still weighs ``beta`` times the whole meta-train half's. On the
default LCNN recipe (trained from scratch, sources as domains, inner lr 1e-3) MLDG did worse than ERM on
validation: 19.2 % EER with class-balanced batches, 15.3 % with ``domain_batch`` blocks (each domain an equal block),
against ERM's 9.6 % (2-seed means; docs/benchmarks.md, 2026-12-05). The inner step matters for a model trained
from scratch: with ``inner_lr`` 1e-4 and ``domain_batch`` blocks it reached 11.5 %, against 15.5 % for ERM with the
same blocks (the blocks, not MLDG, cost most of the gap to class-balanced ERM), and 14.3 % with class-balanced
batches; none of these differed from ERM on the unseen sources.

A batch with too few domains to split (fewer than ``n_meta_test + 1``) takes a plain step on the
meta-train loss of the whole batch (reported as ``mldg/fallback``); if the first 20 batches all do,
a warning says so once, on rank 0 (the run would be ERM in all but name). Training data whose spoofs hold fewer
domains than that altogether, which no batch could split, is refused before the first step (:meth:`MLDG.check_data`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sddkit.config import set_away_from_default
from sddkit.errors import ConfigError
from sddkit.training import STRATEGIES
from sddkit.training.distributed import all_reduce_gradients, is_main_process
from sddkit.training.strategy import Batch, StepContext, StepResult, subset

log = logging.getLogger(__name__)


@dataclass
class MLDGConfig:
    """First-order MLDG settings.

    beta: weight of the meta-test gradient (published: 1). inner_lr, inner_eps: the
    inner Adam step (published lr 1e-3), taken from a fresh state: about ``inner_lr`` times the sign
    of each coordinate's meta-train gradient. inner_betas: Adam's betas of that step, which cancel out
    there (see the module docstring): a value other than the default is refused, as it would change nothing.
    n_meta_test: domains held out per step. share_bonafide:
    for batches without domain blocks only (any sampler but ``domain_batch``), bona fide rows of
    no attack domain take part in both halves (else they are dealt between them); with
    ``domain_batch`` the sampler's own ``share_bonafide`` option decides how bona fide files are
    shared among domains (``false`` here over a sampler that shares them is refused).
    seed: the split generator's seed (default: the recipe seed); as the recipe seed, non-negative and below 2**32.
    """

    beta: float = 1.0
    inner_lr: float = 1e-3
    inner_betas: tuple[float, float] = (0.9, 0.999)
    inner_eps: float = 1e-8
    n_meta_test: int = 1
    share_bonafide: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.beta < math.inf:
            raise ValueError(f"beta must be >= 0 and finite, got {self.beta}")
        if not 0 < self.inner_lr < math.inf:
            raise ValueError(f"inner_lr must be positive and finite, got {self.inner_lr}")
        # eps 0 would make the inner Adam step 0/0 = NaN for every parameter whose gradient is exactly zero
        if not 0 < self.inner_eps < math.inf:
            raise ValueError(f"inner_eps must be positive and finite, got {self.inner_eps}")
        if self.n_meta_test < 1:
            raise ValueError(f"n_meta_test must be >= 1, got {self.n_meta_test}")
        if not all(0.0 <= b < 1.0 for b in self.inner_betas):
            raise ValueError(f"inner_betas must be in [0, 1), got {self.inner_betas}")
        from sddkit.training.recipe import SEED_LIMIT

        # torch's generator took a negative seed modulo 2**64 and refused one of 2**64 or more with a ValueError
        # traceback when training started; the recipe seed's range, for the same reason
        if self.seed is not None and not 0 <= self.seed < SEED_LIMIT:
            raise ValueError(f"seed must be non-negative and below 2**32 (or null: the recipe seed), got {self.seed}")
        # Adam's bias correction cancels the betas in a first step from a fresh state (every inner step is one):
        # another value trained the same model (to rounding) while the recipe said otherwise
        if set_away_from_default(self, ["inner_betas"]):
            raise ValueError(
                f"inner_betas: {list(self.inner_betas)} has no effect: the inner step is the first step of a fresh "
                "Adam, whose bias correction cancels the betas (about inner_lr times the sign of each gradient "
                "coordinate); leave inner_betas out, and tune inner_lr or inner_eps instead"
            )


def split_domains(
    labels: Tensor, domains: Tensor, *, n_meta_test: int, share_bonafide: bool, generator: torch.Generator
) -> tuple[Tensor, Tensor] | None:
    """Row indices ``(meta_train, meta_test)`` of a batch, or None if it has too few domains.

    labels, domains: (B,) int64. The domains split are those of the spoofed rows; every row of a
    held-out domain (bona fide ones included, e.g. a corpus's real recordings with domain =
    source) goes to meta-test, the others' rows to meta-train. Bona fide rows of no spoof domain
    (domain = attack: "bonafide") go to both halves with ``share_bonafide``, else they are dealt
    at random in proportion to the halves' numbers of domains (in expectation: a fractional share is
    rounded up or down at random). Draws from ``generator`` (on CPU).
    """
    labels, domains = labels.cpu(), domains.cpu()
    candidates = torch.unique(domains[labels == 0])
    if candidates.numel() < n_meta_test + 1:
        return None
    order = torch.randperm(candidates.numel(), generator=generator)
    in_test = torch.isin(domains, candidates[order[:n_meta_test]])
    in_train = torch.isin(domains, candidates[order[n_meta_test:]])
    orphans = torch.nonzero((labels == 1) & ~in_test & ~in_train).flatten()
    if share_bonafide:
        in_test[orphans] = True
        in_train[orphans] = True
    elif orphans.numel():
        dealt = orphans[torch.randperm(orphans.numel(), generator=generator)]
        # the meta-test share, rounded up with probability its fraction: unbiased (round() sent a lone orphan of
        # two domains to meta-train every time, so with a bona fide row or two meta-test never had bona fide)
        share = orphans.numel() * n_meta_test / candidates.numel()
        n_test = math.floor(share)
        if share > n_test:
            n_test += int(float(torch.rand((), generator=generator)) < share - n_test)
        in_test[dealt[:n_test]] = True
        in_train[dealt[n_test:]] = True
    return torch.nonzero(in_train).flatten(), torch.nonzero(in_test).flatten()


def split_blocks(blocks: Tensor, *, n_meta_test: int, generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
    """Row indices ``(meta_train, meta_test)`` holding out ``n_meta_test`` whole domain blocks.

    blocks: (B,) int64 block id of every row (``DomainBatchSampler``: one block per domain drawn
    for the step). None if the batch has fewer than ``n_meta_test + 1`` blocks. Draws from
    ``generator`` (on CPU).
    """
    blocks = blocks.cpu()
    ids = torch.unique(blocks)
    if ids.numel() < n_meta_test + 1:
        return None
    order = torch.randperm(ids.numel(), generator=generator)
    in_test = torch.isin(blocks, ids[order[:n_meta_test]])
    return torch.nonzero(~in_test).flatten(), torch.nonzero(in_test).flatten()


class MLDG:
    """First-order MLDG step (see the module docstring)."""

    name = "mldg"

    # after this many steps that all fell back to a plain step, say so once: the run is ERM in all but name
    WARN_AFTER = 20

    def __init__(self, cfg: MLDGConfig, seed: int = 0):
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(cfg.seed if cfg.seed is not None else seed)
        self._steps = self._fallbacks = 0  # this process's count, for the warning only (not checkpointed)

    def split(self, batch: Batch) -> tuple[Tensor, Tensor] | None:
        """Meta-train / meta-test rows: whole domain blocks when the batch has them, else by domain."""
        if "domain_block" in batch:
            return split_blocks(batch["domain_block"], n_meta_test=self.cfg.n_meta_test, generator=self.generator)
        if "domain" not in batch:  # a batch of one's own: a bare KeyError 'domain' said nothing of what MLDG splits by
            raise ValueError(
                f"MLDG splits a batch by its rows' domains: the batch has {sorted(batch)}, no 'domain' ((B,) int64, "
                "e.g. the attack system's index, as sddkit's datasets give it) nor 'domain_block' "
                "(sddkit.training.strategy.with_domain_blocks)"
            )
        return split_domains(
            batch["label"],
            batch["domain"],
            n_meta_test=self.cfg.n_meta_test,
            share_bonafide=self.cfg.share_bonafide,
            generator=self.generator,
        )

    def step(self, batch: Batch, ctx: StepContext) -> StepResult:
        cfg = self.cfg
        module = ctx.module
        split = self.split(batch)
        self._count(split is None)
        device = batch["waveform"].device
        train_rows = split[0].to(device) if split is not None else None
        params = ctx.trainable()
        ctx.optimizer.zero_grad(set_to_none=True)

        with ctx.no_sync():
            # meta-train at θ: gradients land in p.grad (local to this rank: no DDP hooks on this path)
            meta_train = batch if train_rows is None else subset(batch, train_rows)
            with ctx.autocast():
                out_tr = module(meta_train["waveform"])
            parts_tr = ctx.loss_fn(out_tr, meta_train["label"], domains=meta_train.get("domain"))
            parts_tr.total.backward()
            loss = parts_tr.total.detach()
            metrics = {f"meta_train/{k}": v for k, v in parts_tr.detached().items()}

            # beta 0: the meta-test term is multiplied by zero; skipping its pass keeps the dropout
            # stream (global generator) as in ERM on the meta-train rows, step after step
            n_test = 0  # the rows the meta-test gradient came from (module docstring): none without its pass
            if split is not None and cfg.beta > 0:
                n_test = split[1].numel()
                ce_te = self._meta_test(subset(batch, split[1].to(device)), params, ctx)
                loss = loss + cfg.beta * ce_te
                metrics.update({"meta_test/loss": ce_te, "meta_test/ce": ce_te})

        all_reduce_gradients([p for _, p in params], ctx.world_size)
        grad_norm = ctx.clip_and_step()
        metrics.update({"loss": loss, "grad_norm": grad_norm, "mldg/fallback": torch.tensor(float(split is None))})
        metrics["mldg/meta_test_rows"] = torch.tensor(float(n_test))
        return StepResult(loss=loss, metrics=metrics)

    def check_batches(self, batches: Any) -> None:
        """Refuse, before training, batches of domain blocks (``domain_batch``) too few to split: every step
        would fall back to a plain step, an ERM run under MLDG's name (the warning came after 20 steps). Refuse
        too ``share_bonafide: false`` over blocks whose sampler shares the bona fide files among the domains: with
        blocks the sampler's option decides, and the recipe would say one thing and train the other."""
        shared = getattr(batches, "share_bonafide", None)
        if isinstance(shared, bool) and shared and set_away_from_default(self.cfg, ["share_bonafide"]):
            raise ConfigError(
                "strategy.share_bonafide false is not read with data.sampler 'domain_batch', whose "
                "data.sampler_options share_bonafide true lets every domain block draw from all bona fide files; "
                "set data.sampler_options.share_bonafide: false to split them among the domains (and leave "
                "strategy.share_bonafide out), or drop strategy.share_bonafide"
            )
        blocks = getattr(batches, "n_domains_per_step", None)
        if isinstance(blocks, int) and blocks < self.cfg.n_meta_test + 1:
            raise ConfigError(
                f"strategy.n_meta_test {self.cfg.n_meta_test} needs batches of at least {self.cfg.n_meta_test + 1} "
                f"domain blocks; data.sampler 'domain_batch' gives {blocks} per batch: raise data.batch_size or "
                "data.sampler_options.n_domains_per_step, or lower strategy.n_meta_test"
            )

    def check_data(self, dataset: Any, column: str) -> None:
        """Refuse, before training, training data whose spoofs hold fewer than ``n_meta_test + 1`` domains
        (``data.domain_column``, e.g. a ``path,label`` CSV whose ``attack`` column is empty): no batch could ever be
        split, so every step would be a plain step on the whole batch, ERM under MLDG's name, whatever the sampler
        (``domain_batch`` refuses it when it is built; the others said so in a warning after 20 steps)."""
        labels, domains = getattr(dataset, "labels", None), getattr(dataset, "domains", None)
        if labels is None or domains is None:  # a dataset of one's own without them: the steps' warning stays
            return
        labels, domains = np.asarray(labels), np.asarray(domains)
        spoof = np.unique(domains[labels == 0])
        need = self.cfg.n_meta_test + 1
        if spoof.size >= need:
            return
        names = getattr(dataset, "domain_names", None)
        found = sorted({names[int(d)] if names is not None and 0 <= int(d) < len(names) else str(d) for d in spoof})
        raise ConfigError(
            f"strategy mldg holds out strategy.n_meta_test={self.cfg.n_meta_test} domain(s) per step, so it needs "
            f"spoofs of at least {need} domains (data.domain_column {column!r}); the training data's spoofs have "
            f"{found}: every step would be a plain step on the whole batch, ERM under MLDG's name. Set "
            "data.domain_column to a column naming the attack systems (or sources), or train with strategy: erm"
        )

    def _count(self, fell_back: bool) -> None:
        self._steps += 1
        self._fallbacks += int(fell_back)
        # said once a job, by rank 0 (as the trainer's notes are): under torchrun every rank counts its own share
        # of batches, and each printed the same warning
        if self._steps == self.WARN_AFTER and self._fallbacks == self._steps and is_main_process():
            log.warning(
                "MLDG: none of the first %d batches held the %d domains a split needs (strategy.n_meta_test + 1), "
                "so every step was a plain step on the whole batch; use data.sampler domain_batch with more "
                "domains per step, or a smaller n_meta_test",
                self._steps,
                self.cfg.n_meta_test + 1,
            )

    def _meta_test(self, meta_test: Batch, params: list[tuple[str, torch.nn.Parameter]], ctx: StepContext) -> Tensor:
        """Add ``beta * ∇_θ' L_te(θ')`` to the meta-train gradients in ``p.grad``; returns ``L_te(θ')`` (detached).

        ``L_te`` is the classification term alone: the auxiliary losses (MoLEx load balance and
        orthogonality, domain alignment, ...) enter once, through the meta-train loss at θ, so their
        weights mean what they mean under ERM (in ``L_te`` too they weighed ``1 + beta`` times that).

        θ' is taken in place and θ (and every buffer) is copied back afterwards, even if the pass fails.
        """
        module = ctx.module
        g_tr = [p.grad for _, p in params]
        saved = [p.detach().clone() for _, p in params]
        buffers = [(b, b.detach().clone()) for b in module.buffers()]  # meta-test must not move running statistics
        try:
            self._inner_step([p for _, p in params])
            for _, p in params:
                p.grad = None
            with ctx.autocast():
                out_te = module(meta_test["waveform"])
            parts_te = ctx.loss_fn(out_te, meta_test["label"], domains=meta_test.get("domain"))
            # backward through p itself, so the parameters' own gradient hooks (e.g. MoLEx expert addition
            # masking a grown tensor's old region) apply to this term too
            if parts_te.ce.requires_grad:  # trainable parameters that feed the aux losses alone get no gradient
                parts_te.ce.backward()
        finally:
            with torch.no_grad():
                for (_, p), theta in zip(params, saved):
                    p.copy_(theta)
                for b, copy in buffers:
                    b.copy_(copy)
        for (_, p), g in zip(params, g_tr):
            g_te = None if p.grad is None else p.grad.mul_(self.cfg.beta)
            p.grad = g if g_te is None else g_te if g is None else g.add_(g_te)
        return parts_te.ce.detach()

    def _inner_step(self, params: list[torch.nn.Parameter]) -> None:
        """θ <- θ' = one fresh-state Adam step on the meta-train gradient in ``p.grad``, in place."""
        cfg = self.cfg
        inner = torch.optim.Adam(params, lr=cfg.inner_lr, betas=cfg.inner_betas, eps=cfg.inner_eps)
        inner.step()  # skips tensors without a gradient: they stay at θ

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


@STRATEGIES.register("mldg", config=MLDGConfig)
def build_mldg(cfg: MLDGConfig, *, seed: int = 0, **context: Any) -> MLDG:
    """First-order MLDG over attack-system domains (inner Adam step on the trainable parameters only)."""
    return MLDG(cfg, seed=seed)
