"""Balanced, deterministic, DDP-aware samplers.

All samplers draw from ``numpy.random.default_rng([seed, epoch])``: the same (seed, epoch) gives
the same order on every run and on every rank, so after ``set_epoch(epoch)`` a resumed run sees
the batches it would have seen. Under DDP each rank takes every ``world_size``-th element of that
one global order (``rank``/``world_size`` default to torch.distributed's, else 0/1), so ranks
never share a position and together cover the epoch; ``len()`` is the per-rank length.

- :class:`ClassBalancedSampler`: each position is bona fide or spoof with equal probability
  (exactly half of the epoch each), so every batch has equal classes in expectation.
- :class:`DomainBalancedSampler`: the same with one share per domain (attack, source, ...).
- :class:`DomainBatchSampler`: batches grouped by domain for MLDG (format below).

Within a group, items are drawn without replacement: a group is cycled through in a fresh random
order each time it is used up, so a small group is repeated only as often as its share requires.
A :class:`DomainBatchSampler` block (with ``share_bonafide``, a step's bona fide items) holds no
item twice unless its pool has fewer items than it takes; the sampler warns, naming such domains.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = [
    "ClassBalancedSampler",
    "DomainBalancedSampler",
    "DomainBatchSampler",
    "GroupBalancedSampler",
    "split_domain_batch",
]

# distinct stream for the fixed bona fide partition of DomainBatchSampler (independent of epoch)
_PARTITION_STREAM = 0x4D4C4447


def _dist_rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
        if rank is None:
            rank = torch.distributed.get_rank() if initialized else 0
        if world_size is None:
            world_size = torch.distributed.get_world_size() if initialized else 1
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return int(rank), int(world_size)


def _groups(values: Sequence[object] | np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    """Sorted distinct values (as strings) and the item indices of each (ascending).

    One sort, not one pass over the items per value: that took N x G comparisons, rebuilt every epoch (200k items
    of 1,000 speakers: 1.9 s; of 20,000: over a minute)."""
    keys = np.array([str(v) for v in values])
    if len(keys) == 0:
        return [], []
    names, inverse = np.unique(keys, return_inverse=True)  # code-point order, as sorted() orders str
    order = np.argsort(inverse.reshape(-1), kind="stable").astype(np.int64)
    cuts = np.cumsum(np.bincount(inverse.reshape(-1), minlength=len(names)))[:-1]
    return [str(n) for n in names], np.split(order, cuts)


class _Cycler:
    """Draws items of one pool without replacement, reshuffling each time the pool is used up."""

    def __init__(self, pool: np.ndarray, rng: np.random.Generator):
        self.pool, self.rng = np.asarray(pool, dtype=np.int64), rng
        self.order = rng.permutation(self.pool)
        self.pos = 0

    def take(self, n: int, avoid: np.ndarray | None = None, ahead: int = 0) -> np.ndarray:
        """The next ``n`` items. ``avoid``: the items the caller already took from this pool for the same batch;
        ``ahead``: how many more it will take from it for that batch after these.

        An order drawn anew partway through puts the items of the batch taken before it (this call's and
        ``avoid``) behind the others wherever one of them would come up again within the batch: the end of one
        order and the start of the next repeated an item inside one MLDG block (7 % of 4-item blocks drawn from
        pools of 5) although the pool held enough distinct items."""
        out: list[np.ndarray] = []
        while n > 0:
            if self.pos == len(self.order):
                self.order, self.pos = self.rng.permutation(self.pool), 0
                before = [np.zeros(0, dtype=np.int64), *out, *([] if avoid is None else [avoid])]
                self._defer(np.concatenate(before), n + ahead)
            k = min(n, len(self.order) - self.pos)
            out.append(self.order[self.pos : self.pos + k])
            self.pos, n = self.pos + k, n - k
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def _defer(self, taken: np.ndarray, n: int) -> None:
        """Move the fresh order's items in ``taken`` behind the others (a stable partition: still a permutation of
        the pool) when one of them is among its first ``n``; else leave it as drawn, so that batches that repeated
        nothing are the ones drawn before this check existed."""
        again = np.isin(self.order, taken)
        if again[:n].any():
            self.order = np.concatenate([self.order[~again], self.order[again]])


class _EpochSampler:
    def __init__(self, seed: int, rank: int | None, world_size: int | None):
        if int(seed) < 0:  # numpy's generators refuse it, but only when an epoch is drawn
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.seed = int(seed)
        self.epoch = 0
        self.rank, self.world_size = _dist_rank_world(rank, world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])


def _count(name: str, value: object) -> int:
    """``value`` as an int; a fraction (``per_domain: 2.5``) or a bool is refused, not truncated."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (float, np.floating)) and not float(value).is_integer():
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _split(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` as ``parts`` near-equal integers; the remainder goes to randomly chosen parts."""
    quota = np.full(parts, total // parts)
    quota[rng.permutation(parts)[: total % parts]] += 1
    return quota


class GroupBalancedSampler(_EpochSampler, Sampler[int]):
    """Equal share of every group per epoch, shuffled; yields dataset indices.

    groups: (N,) group value of each item. num_samples: global epoch length (default N).
    Without ``strata`` each of the G groups gets ``num_samples // G`` positions (the remainder
    goes to randomly chosen groups). With ``strata`` ((N,), e.g. the labels) the epoch is first
    split equally among the strata, then each stratum's share equally among the groups present
    in it. The positions are shuffled together.
    """

    def __init__(
        self,
        groups: Sequence[object] | np.ndarray,
        *,
        strata: Sequence[object] | np.ndarray | None = None,
        num_samples: int | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__(seed, rank, world_size)
        keys = np.array([str(v) for v in groups])
        if len(keys) == 0:
            raise ValueError("cannot sample from an empty dataset")
        levels = np.zeros(len(keys), dtype=np.int64) if strata is None else np.asarray(strata)
        if len(levels) != len(keys):
            raise ValueError(f"strata ({len(levels)}) and groups ({len(keys)}) differ in length")
        self.stratum_names, stratum_items = _groups(levels)
        # per stratum: (group names, item indices of each group)
        self.strata = []
        for items in stratum_items:
            names, pools = _groups(keys[items])
            self.strata.append((names, [items[p] for p in pools]))
        self.num_samples = _count("num_samples", num_samples) if num_samples is not None else len(keys)
        if self.num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {self.num_samples}")

    def global_order(self) -> np.ndarray:
        """The epoch's indices before sharding: (num_samples,) int64."""
        rng = self._rng()
        picks = []
        for (_, pools), share in zip(self.strata, _split(self.num_samples, len(self.strata), rng)):
            for pool, q in zip(pools, _split(int(share), len(pools), rng)):
                picks.append(_Cycler(pool, rng).take(int(q)))
        return rng.permutation(np.concatenate(picks))

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()
        padded = math.ceil(len(order) / self.world_size) * self.world_size
        order = np.resize(order, padded)  # cyclic padding: every rank gets as many, even if padded > 2 x len
        return iter(order[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)


def _check_both_classes(labels: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
    """``labels`` as an array, refused unless it holds bona fide (1) and spoof (0) items and nothing else."""
    labels = np.asarray(labels)
    found = sorted(set(np.unique(labels).tolist()), key=repr)
    if set(found) != {0, 1}:
        raise ValueError(f"{what} needs both bona fide (1) and spoof (0) items and no other label; found {found}")
    return labels


class ClassBalancedSampler(GroupBalancedSampler):
    """Half bona fide, half spoof per epoch (labels: (N,) 1 = bona fide, 0 = spoof), shuffled."""

    def __init__(self, labels: Sequence[int] | np.ndarray, **kwargs):
        super().__init__(_check_both_classes(labels, "a class-balanced sampler"), **kwargs)


class DomainBalancedSampler(GroupBalancedSampler):
    """One equal share per domain value (e.g. the ``attack`` or ``source`` column), shuffled.

    With ``labels`` the epoch is half bona fide, half spoof, and each half is shared equally by
    the domains present in it (domains = attacks: the spoof half split evenly over the attacks).
    """

    def __init__(self, domains: Sequence[object] | np.ndarray, labels: Sequence[int] | np.ndarray | None = None, **kw):
        if labels is not None:  # one class only would fill the whole epoch, not half of it
            labels = _check_both_classes(labels, "a domain-balanced sampler given labels")
        super().__init__(domains, strata=labels, **kw)


class DomainBatchSampler(_EpochSampler, Sampler[list[int]]):
    """Batches grouped by domain, for MLDG's meta-train / meta-test split of domains.

    Domains are the distinct ``domains`` values of the SPOOF items (with ``domains`` = the attack
    column: one domain per attack system). As in the published MLDG recipe for spoofing
    detection, the bona fide items are partitioned at random (fixed by ``seed``, the same every
    epoch) into one disjoint share per domain; ``share_bonafide=True`` lets every domain draw from
    all bona fide items instead. ``bonafide_by_domain=True`` first keeps a bona fide item in the
    domain whose name its own ``domains`` value matches (e.g. domains = the ``source`` column:
    a demo page's real recordings stay with its fakes) and partitions only the others (not with
    ``share_bonafide``).

    Batch format: each step yields ``n_domains_per_step * per_domain`` dataset indices, in
    contiguous blocks of ``per_domain``: block k holds ``per_domain * bonafide_fraction`` bona fide
    items (rounded half up, at least one when the fraction is above 0; a warning says when that share is
    more than 0.1 off the fraction) and the rest spoof items of the k-th domain drawn for that step (domains drawn
    without replacement, in random order). :func:`split_domain_batch` cuts a collated batch back
    into these blocks, so a strategy can use e.g. the first blocks as meta-train and the last as
    meta-test. ``steps_per_epoch`` counts each rank's steps (given, N ranks draw N times as many); by default about
    as many draws, all ranks together, as there are items, which is no pass over every item: each step's domains are
    drawn uniformly, so every domain gets about as many blocks whatever its size (sddbench's 14 attacks, batches of 16:
    45 of Tortoise's 340 spoofs an epoch, each of another attack's 4 drawn 9 times). A domain with fewer spoof
    (or bona fide) items than a block takes repeats some in each of its blocks: a UserWarning names it, with counts.

    Size: ``per_domain`` (and ``n_domains_per_step``, default all domains), or ``batch_size``:
    then ``n_domains_per_step`` defaults to the most domains that divide the batch into blocks
    of at least 2 items (one bona fide + one spoof), e.g. 14 attacks, batch 8 -> 4 domains x 2;
    with a ``bonafide_fraction`` of 0.75 or above, blocks large enough to keep a spoof item after
    the rounding (0.75: 3 items, 2 bona fide + 1 spoof).

    names: the name of each domain value when ``domains`` holds indices (a dataset's ``domain_names``): warnings
    and errors name the domains by it (the trainer passes indices, and a warning naming domain '5' left the user to
    find which attack that was). The draws do not depend on it.
    """

    def __init__(
        self,
        domains: Sequence[object] | np.ndarray,
        labels: Sequence[int] | np.ndarray,
        *,
        per_domain: int | None = None,
        batch_size: int | None = None,
        n_domains_per_step: int | None = None,
        bonafide_fraction: float = 0.5,
        share_bonafide: bool = False,
        bonafide_by_domain: bool = False,
        steps_per_epoch: int | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        names: Sequence[str] | None = None,
    ):
        super().__init__(seed, rank, world_size)
        self._names = None if names is None else [str(n) for n in names]
        labels = np.asarray(labels)
        other = sorted(set(np.unique(labels).tolist()) - {0, 1}, key=repr)
        if other:  # neither class: such items would be left out of every batch without a word
            raise ValueError(f"labels must be 1 (bona fide) or 0 (spoof); found {other}")
        labels = labels.astype(np.int64)
        values = np.array([str(v) for v in domains])
        if len(values) != len(labels):
            raise ValueError(f"domains ({len(values)}) and labels ({len(labels)}) differ in length")
        spoof = np.flatnonzero(labels == 0)
        bona = np.flatnonzero(labels == 1)
        self.domain_names = sorted(set(values[spoof].tolist()))
        n_dom = len(self.domain_names)
        if n_dom < 2:
            raise ValueError(
                f"MLDG needs at least 2 spoof domains, found {[self._shown(d) for d in self.domain_names]}"
            )
        if not 0.0 <= bonafide_fraction < 1.0:
            raise ValueError(f"bonafide_fraction must be in [0, 1), got {bonafide_fraction}")
        min_per = _min_block(bonafide_fraction)  # 2 (1 bona fide + 1 spoof), more for a fraction >= 0.75
        if share_bonafide and bonafide_by_domain:
            raise ValueError(
                "share_bonafide (every domain draws from all bona fide items) and bonafide_by_domain (a domain "
                "keeps its own bona fide items) exclude each other: give one"
            )
        per_domain, self.n_domains_per_step = _block_sizes(per_domain, batch_size, n_domains_per_step, n_dom, min_per)
        self.per_domain = int(per_domain)
        self.n_bonafide = _block_bonafide(self.per_domain, bonafide_fraction)
        self.n_spoof = self.per_domain - self.n_bonafide
        if self.n_spoof < 1:
            raise ValueError(f"per_domain={per_domain} with bonafide_fraction={bonafide_fraction} leaves no spoof item")
        share = self.n_bonafide / self.per_domain
        if abs(share - bonafide_fraction) > 0.1:
            warnings.warn(
                f"domain blocks of {self.per_domain} items hold {self.n_bonafide} bona fide ({share:.2f} of each "
                f"batch, not bonafide_fraction {bonafide_fraction}): a block size that expresses it is closer",
                stacklevel=2,
            )
        if self.n_bonafide > 0 and len(bona) == 0:
            raise ValueError("bonafide_fraction > 0 but there is no bona fide item")
        self.share_bonafide = bool(share_bonafide)
        self.spoof_pools = [spoof[values[spoof] == d] for d in self.domain_names]
        self.bonafide_pools = self._bonafide_pools(bona, values, bool(bonafide_by_domain))
        self.batch_size = self.n_domains_per_step * self.per_domain
        self._warn_small_pools()
        self.steps_per_epoch = _epoch_steps(steps_per_epoch, len(labels), self.batch_size, self.world_size)

    def _warn_small_pools(self) -> None:
        """Warn, naming them, of the domains with fewer spoof (or bona fide) items than one block takes: each of
        their blocks repeats some of them (a new crop for each with ``distinct_draws``), where a batch larger than a
        domain's data did so without a word."""
        short = [
            f"{self._shown(d)!r} ({len(p)} spoof)"
            for d, p in zip(self.domain_names, self.spoof_pools)
            if len(p) < self.n_spoof
        ]
        if self.share_bonafide:  # one pool for the whole step: its blocks take distinct items while it has enough
            need = self.n_bonafide * self.n_domains_per_step
            if len(self.bonafide_pools[0]) < need:
                short.append(f"the shared bona fide items ({len(self.bonafide_pools[0])}, {need} per step)")
        else:
            short += [
                f"{self._shown(d)!r} ({len(p)} bona fide)"
                for d, p in zip(self.domain_names, self.bonafide_pools)
                if len(p) < self.n_bonafide
            ]
        if short:
            shown = ", ".join(short[:5]) + (f" and {len(short) - 5} more" if len(short) > 5 else "")
            warnings.warn(
                f"domain blocks of {self.per_domain} items take {self.n_bonafide} bona fide and {self.n_spoof} spoof "
                f"items of their domain, but there are fewer for {shown}: their blocks repeat items (a new crop of "
                "each with distinct draws); a smaller per_domain or batch_size (or share_bonafide, for bona fide "
                "items) avoids it, or leave such domains out of the training data",
                stacklevel=3,
            )

    def _shown(self, value: str) -> str:
        """Domain ``value`` as messages name it: its name in ``names`` when it is an index into them."""
        if self._names is not None and value.isdigit() and int(value) < len(self._names):
            return self._names[int(value)]
        return value

    def _bonafide_pools(self, bona: np.ndarray, values: np.ndarray, by_domain: bool) -> list[np.ndarray]:
        """Each domain's bona fide items: all of them with ``share_bonafide``, else a disjoint share (see
        :meth:`_partition_bonafide`); a ValueError when blocks need bona fide items and a share is empty."""
        n_dom = len(self.domain_names)
        if self.share_bonafide:
            return [bona] * n_dom
        pools = self._partition_bonafide(bona, values, by_domain)
        empty = [self._shown(d) for d, p in zip(self.domain_names, pools) if len(p) == 0]
        if self.n_bonafide > 0 and empty:
            if by_domain:  # fewer bona fide items of no domain than domains without their own
                raise ValueError(
                    f"bonafide_by_domain: {len(empty)} domain(s) (e.g. {empty[:5]}) have no bona fide item of "
                    "their own, and too few bona fide items of no domain are left to give each one; use "
                    "share_bonafide or bonafide_by_domain: false"
                )
            raise ValueError(
                f"{len(bona)} bona fide items cannot be split among {n_dom} domains (each block needs a share of at "
                "least one): set share_bonafide: true (every domain draws from all bona fide items)"
            )
        return pools

    def _partition_bonafide(self, bona: np.ndarray, values: np.ndarray, by_domain: bool) -> list[np.ndarray]:
        """One disjoint bona fide share per domain, fixed by the seed (the same every epoch).

        With ``by_domain``, the items of no domain go to the domains without bona fide of their own (when
        there are such domains), so none of those is left with one item repeated in every block.
        """
        names = self.domain_names
        own = [bona[values[bona] == d] if by_domain else bona[:0] for d in names]
        rest = bona[~np.isin(bona, np.concatenate(own))] if by_domain else bona
        perm = np.random.default_rng([self.seed, _PARTITION_STREAM]).permutation(rest)
        takers = [i for i, o in enumerate(own) if len(o) == 0] if by_domain else []
        takers = takers or list(range(len(names)))
        extra = [bona[:0]] * len(names)
        for i, part in zip(takers, np.array_split(perm, len(takers))):
            extra[i] = part
        return [np.sort(np.concatenate([o, part])) for o, part in zip(own, extra)]

    def global_steps(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every rank's steps of the epoch, in global order: (domain ids (K,), indices (K*per_domain,))."""
        rng = self._rng()
        spoof = [_Cycler(p, rng) for p in self.spoof_pools]
        if self.share_bonafide:
            shared = _Cycler(self.bonafide_pools[0], rng)  # one cycler: no repeat inside a step
            bona = [shared] * len(self.domain_names)
        else:
            bona = [_Cycler(p, rng) for p in self.bonafide_pools]
        steps = []
        for _ in range(self.steps_per_epoch * self.world_size):
            chosen = rng.choice(len(self.domain_names), size=self.n_domains_per_step, replace=False)
            blocks = []
            step_bona: list[np.ndarray] = []  # the shared pool's items this step has: none again in another block
            for k, d in enumerate(chosen):
                if self.share_bonafide:
                    avoid = np.concatenate(step_bona) if step_bona else None
                    ahead = self.n_bonafide * (len(chosen) - k - 1)
                    step_bona.append(bona[d].take(self.n_bonafide, avoid, ahead))
                else:
                    step_bona.append(bona[d].take(self.n_bonafide))
                block = np.concatenate([step_bona[-1], spoof[d].take(self.n_spoof)])
                blocks.append(rng.permutation(block))
            steps.append((chosen.astype(np.int64), np.concatenate(blocks)))
        return steps

    def __iter__(self) -> Iterator[list[int]]:
        steps = self.global_steps()[self.rank :: self.world_size]
        return iter([idx.tolist() for _, idx in steps])

    def __len__(self) -> int:
        return self.steps_per_epoch


def _block_sizes(
    per_domain: int | None, batch_size: int | None, n_domains_per_step: int | None, n_dom: int, min_per: int
) -> tuple[int, int]:
    """(per_domain, n_domains_per_step) of a :class:`DomainBatchSampler` of ``n_dom`` domains from the sizes given
    (blocks of at least ``min_per`` items when n_domains_per_step is derived from batch_size)."""
    per_domain = None if per_domain is None else _count("per_domain", per_domain)
    batch_size = None if batch_size is None else _count("batch_size", batch_size)
    for name, value in (("per_domain", per_domain), ("batch_size", batch_size)):
        if value is not None and value < 1:  # else "per_domain=-2 ... leaves no spoof item" named the wrong cause
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if n_domains_per_step is not None:
        n_domains_per_step = _count("n_domains_per_step", n_domains_per_step)
        if not 2 <= n_domains_per_step <= n_dom:  # before it divides batch_size (0: ZeroDivisionError)
            raise ValueError(f"n_domains_per_step must be in [2, {n_dom}], got {n_domains_per_step}")
    if per_domain is None:
        if batch_size is None:
            raise ValueError("give per_domain (items per domain block) or batch_size")
        if n_domains_per_step is None:
            n_domains_per_step = _domains_per_step(batch_size, n_dom, min_per)
        if batch_size % n_domains_per_step:
            raise ValueError(f"batch_size {batch_size} is not a multiple of n_domains_per_step {n_domains_per_step}")
        per_domain = batch_size // n_domains_per_step
    n_per_step = n_dom if n_domains_per_step is None else int(n_domains_per_step)
    if not 2 <= n_per_step <= n_dom:
        raise ValueError(f"n_domains_per_step must be in [2, {n_dom}], got {n_domains_per_step}")
    if batch_size is not None and batch_size != per_domain * n_per_step:
        raise ValueError(f"batch_size {batch_size} != per_domain {per_domain} x {n_per_step} domains")
    return per_domain, n_per_step


def _epoch_steps(steps_per_epoch: int | None, n_items: int, batch_size: int, world_size: int) -> int:
    """``steps_per_epoch`` (per rank) as a positive int; None: about ``n_items`` draws over all ranks together."""
    if steps_per_epoch is None:
        steps_per_epoch = max(1, math.ceil(n_items / batch_size / world_size))
    steps = _count("steps_per_epoch", steps_per_epoch)
    if steps <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    return steps


def _block_bonafide(per_domain: int, fraction: float) -> int:
    """Bona fide items of a block of ``per_domain``: ``per_domain * fraction`` rounded half up (round() goes to
    even: 2 x 0.25 gave no bona fide at all), and at least one when the fraction is above 0."""
    n = math.floor(per_domain * fraction + 0.5)
    return max(1, n) if fraction > 0 else n


def _min_block(fraction: float) -> int:
    """The smallest block that keeps a spoof item (and a bona fide one when ``fraction`` > 0): 2 items, or more
    for a fraction of 0.75 or above (2 x 0.75 rounds to 2 bona fide items and no spoof). ``fraction`` < 1."""
    per = 1
    while per - _block_bonafide(per, fraction) < 1:
        per += 1
    return per


def _domains_per_step(batch_size: int, n_domains: int, min_per_domain: int) -> int:
    for k in range(min(n_domains, batch_size // min_per_domain), 1, -1):
        if batch_size % k == 0:
            return k
    raise ValueError(
        f"batch_size {batch_size} cannot hold blocks of >= {min_per_domain} items for 2 or more of "
        f"{n_domains} domains; give per_domain and n_domains_per_step"
    )


def split_domain_batch(batch: Mapping[str, torch.Tensor], n_domains: int) -> list[dict[str, torch.Tensor]]:
    """Cut a collated :class:`DomainBatchSampler` batch into its ``n_domains`` per-domain blocks.

    Every tensor whose first dimension is the batch size B is split into B / n_domains rows per
    block; other entries are shared by all blocks.
    """
    sizes = {int(v.shape[0]) for v in batch.values() if isinstance(v, torch.Tensor) and v.dim() > 0}
    if "waveform" in batch:
        sizes = {int(batch["waveform"].shape[0])}
    if len(sizes) != 1:
        raise ValueError(f"cannot tell the batch size from the batch's tensors (first dims {sorted(sizes)})")
    size = sizes.pop()
    if n_domains <= 0 or size % n_domains:
        raise ValueError(f"a batch of {size} items does not split into {n_domains} equal domain blocks")
    per = size // n_domains
    blocks: list[dict[str, torch.Tensor]] = []
    for k in range(n_domains):
        block = {}
        for key, v in batch.items():
            is_batched = isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == size
            block[key] = v[k * per : (k + 1) * per] if is_batched else v
        blocks.append(block)
    return blocks
