"""GMM back-end: one Gaussian mixture per class, the ASVspoof LFCC-GMM / CQCC-GMM baselines (2015-2021).

features (B, F, T) or frames (B, N, D)
  -> per-frame log-likelihood under the spoof and the bona fide mixture (diagonal Gaussians, logsumexp)
  -> score = mean over frames of log p(x | bona fide) - log p(x | spoof)
  -> logits (B, 2) = (-score / 2, +score / 2) (their difference is the score), embedding = mean features (B, D)

The mixtures are fitted by EM on training frames, not by gradients (:func:`fit_gmm`; ``sdd train`` takes this
path for a back-end with ``fitted_by_em``, see :mod:`sddkit.training.em`). Their weights, means and variances
are parameters that take no gradient (``requires_grad=False``), stored in a model directory's safetensors like any
other. Likelihoods are computed
in float64: a 60-dimensional log-density sums terms of magnitude 1e3-1e4 (CQCC), whose float32 rounding moved
the score of one frame by 1e-3 and more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from sddkit.backends import BACKENDS
from sddkit.backends.heads import ClassifierConfig, _without_autocast
from sddkit.detectors.outputs import BackendOutput
from sddkit.errors import ConfigError

__all__ = ["GMMConfig", "GMMBackend", "GMMFit", "fit_gmm", "gmm_log_likelihood"]

KMEANS_PP_FRAMES_PER_COMPONENT = 32  # the k-means++ seeding draws from at most this many frames per component
CHUNK_FRAMES = 8192  # frames per E-step block: bounds the (frames, components) responsibilities in memory


@dataclass(kw_only=True)
class GMMConfig(ClassifierConfig):
    """components: Gaussians per class (512 in the ASVspoof baselines); covariance: ``diag`` only;
    em_iterations: EM iterations after k-means++ initialisation (the most, with em_tolerance); em_tolerance: stop
    a class's EM early once an iteration raises its mean frame log-likelihood by less than this (nats per frame, as
    the published baselines iterate until the gain is small), None: run every em_iterations; max_frames_per_class:
    training frames sampled (uniformly, with the recipe's seed) per class for the fit; variance_floor: the smallest
    variance of a component, as a fraction of that class's data variance in each dimension."""

    components: int = 512
    covariance: str = "diag"
    em_iterations: int = 10
    em_tolerance: float | None = None
    max_frames_per_class: int = 100_000
    variance_floor: float = 1e-3
    # auto: the front-end's; frames: (B, N, D); spectral: (B, F, T)
    layout: Literal["auto", "frames", "spectral"] = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head != "linear":
            # the log-likelihood ratio is the score: there is no output layer for a cosine head to replace
            raise ValueError("head does not apply to the gmm back-end (its score is the log-likelihood ratio)")
        if self.covariance != "diag":
            raise ValueError(
                f"covariance must be 'diag' (the ASVspoof GMM baselines' diagonal Gaussians), got {self.covariance!r}"
            )
        if self.components < 1:
            raise ValueError(f"components must be at least 1, got {self.components}")
        if self.em_iterations < 1:
            raise ValueError(f"em_iterations must be at least 1, got {self.em_iterations}")
        if self.em_tolerance is not None and not (0 < self.em_tolerance < math.inf):
            raise ValueError(
                "em_tolerance must be a positive, finite gain of the mean frame log-likelihood per EM iteration "
                f"(nats per frame, e.g. 0.001), or null to run every em_iterations; got {self.em_tolerance}"
            )
        if self.max_frames_per_class < 1:
            raise ValueError(f"max_frames_per_class must be at least 1, got {self.max_frames_per_class}")
        if not (0 < self.variance_floor < 1):
            raise ValueError(
                f"variance_floor must be in (0, 1) (a fraction of the data variance), got {self.variance_floor}"
            )
        if self.layout not in ("auto", "frames", "spectral"):
            raise ValueError(f"layout must be 'auto', 'frames' or 'spectral', got {self.layout!r}")


@dataclass
class GMMFit:
    """What :func:`fit_gmm` returns: ``log_weights`` (K,), ``means`` (K, D), ``variances`` (K, D), float64, and the
    mean frame log-likelihood before each EM iteration run and after the last (``history``, iterations run + 1:
    ``iterations`` + 1 unless a ``tolerance`` stopped EM early)."""

    log_weights: Tensor
    means: Tensor
    variances: Tensor
    history: list[float]

    @property
    def iterations(self) -> int:
        """EM iterations run (each one E-step and one M-step)."""
        return len(self.history) - 1


def gmm_log_likelihood(frames: Tensor, log_weights: Tensor, means: Tensor, variances: Tensor) -> Tensor:
    """(N, D) frames -> (N, K) log w_k + log N(x | mu_k, diag(var_k)), in float64.

    The quadratic term is expanded into matrix products ((N, D) x (D, K)): the direct difference would hold
    (N, K, D) values, gigabytes for a batch of utterances under 512 components.
    """
    x = frames.double()
    precision = variances.double().reciprocal()
    mu = means.double()
    quad = (x * x) @ precision.T - 2.0 * (x @ (mu * precision).T) + (mu * mu * precision).sum(-1)
    # the expansion can go a hair below 0 for a frame on a mean: a density above its maximum is no harm, clamp anyway
    quad = quad.clamp_min(0.0)
    log_norm = -0.5 * (mu.shape[-1] * math.log(2 * math.pi) + variances.double().log().sum(-1))
    return log_weights.double() + log_norm - 0.5 * quad


def _kmeans_pp(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur and Vassilvitskii 2007): k frames of ``x``, each drawn with probability proportional
    to its squared distance from the nearest one drawn before."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [x[first]]
    nearest = ((x - x[first]) ** 2).sum(-1)
    for _ in range(1, k):
        total = float(nearest.sum())
        if total <= 0.0:  # every frame sits on a centre (fewer distinct frames than k): any frame will do
            index = int(torch.randint(n, (1,), generator=generator))
        else:
            # drawn on the CPU (the generator's device): the same seed seeds alike on any device
            index = int(torch.multinomial((nearest / total).cpu(), 1, generator=generator))
        centres.append(x[index])
        nearest = torch.minimum(nearest, ((x - x[index]) ** 2).sum(-1))
    return torch.stack(centres)


def fit_gmm(
    frames: Tensor,
    components: int,
    *,
    iterations: int = 10,
    variance_floor: float = 1e-3,
    seed: int = 0,
    init_means: Tensor | None = None,
    tolerance: float | None = None,
) -> GMMFit:
    """Fit a diagonal-covariance GMM to ``frames`` (N, D) by EM, in float64; deterministic for a given ``seed``.

    Runs on ``frames``' device. Initialisation: means by k-means++ on a random subset of at most 32 frames per
    component (or ``init_means`` (K, D)), every variance the data's, equal weights. Each iteration is one E-step over
    blocks of frames and one M-step; variances are floored at ``variance_floor`` times the data variance of their
    dimension, and a component that no frame claims keeps its mean and variance. With ``tolerance``, EM stops before
    ``iterations`` once an iteration raised the mean frame log-likelihood by less than ``tolerance``.
    """
    if frames.dim() != 2:
        raise ValueError(f"expected (frames, dims) training frames, got shape {tuple(frames.shape)}")
    x = frames.detach().double()  # on the frames' device (a GPU fits there)
    n, _d = x.shape
    if not torch.isfinite(x).all():
        raise ValueError("the training frames hold NaN or infinite values: the GMM cannot be fitted on them")
    if n < components:
        raise ValueError(
            f"{n} training frames for {components} components: a GMM needs at least as many frames as components "
            "(lower components, or give more training data)"
        )
    generator = torch.Generator().manual_seed(int(seed))
    data_var = x.var(dim=0, correction=0)
    floor = (variance_floor * data_var).clamp_min(1e-12)  # a constant dimension still gets a positive variance
    if init_means is None:
        # seeding is sequential over the components: on a random subset of KMEANS_PP_FRAMES_PER_COMPONENT * K frames
        # it takes seconds, not minutes, at 512 components (EM then fits on every frame)
        pool = x[torch.randperm(n, generator=generator)[: KMEANS_PP_FRAMES_PER_COMPONENT * components].to(x.device)]
        means = _kmeans_pp(pool, components, generator)
    else:
        means = init_means.detach().double().to(x.device)
    variances = data_var.clamp_min(floor).expand(components, -1).clone()
    log_weights = torch.full((components,), -math.log(components), dtype=torch.float64, device=x.device)
    history: list[float] = []
    converged = False
    for _ in range(iterations):
        counts, first, second, total = _e_step(x, log_weights, means, variances)
        history.append(total / n)
        # the E-step of these parameters gave the gain of the iteration that made them: below tolerance, the fit
        # is final (a gain under 0 is rounding: EM never descends)
        if tolerance is not None and len(history) > 1 and history[-1] - history[-2] < tolerance:
            converged = True
            break
        claimed = counts > 1e-10 * n  # a component with no frames: 0/0 would make it NaN
        safe = counts.clamp_min(1e-300)[:, None]
        new_means = first / safe
        new_vars = (second / safe - new_means * new_means).clamp_min(0.0)
        means = torch.where(claimed[:, None], new_means, means)
        variances = torch.maximum(torch.where(claimed[:, None], new_vars, variances), floor)
        weights = (counts / n).clamp_min(1e-300)
        log_weights = (weights / weights.sum()).log()
    if not converged:
        history.append(_e_step(x, log_weights, means, variances)[3] / n)
    return GMMFit(log_weights=log_weights, means=means, variances=variances, history=history)


def _e_step(x: Tensor, log_weights: Tensor, means: Tensor, variances: Tensor) -> tuple[Tensor, Tensor, Tensor, float]:
    """Sufficient statistics of the responsibilities: counts (K,), first (K, D), second (K, D) moments, and the
    summed frame log-likelihood."""
    k, d = means.shape
    counts = torch.zeros(k, dtype=torch.float64, device=x.device)
    first = torch.zeros(k, d, dtype=torch.float64, device=x.device)
    second = torch.zeros(k, d, dtype=torch.float64, device=x.device)
    total = 0.0
    for block in x.split(CHUNK_FRAMES):
        joint = gmm_log_likelihood(block, log_weights, means, variances)
        ll = torch.logsumexp(joint, dim=-1)
        resp = (joint - ll[:, None]).exp()
        counts += resp.sum(0)
        first += resp.T @ block
        second += resp.T @ (block * block)
        total += float(ll.sum())
    return counts, first, second, total


class GMMBackend(nn.Module):
    """(B, F, T) or (B, N, D) features -> BackendOutput(logits (B, 2) = (-llr/2, llr/2), embedding (B, D) mean
    features), llr the mean frame log-likelihood ratio of the bona fide over the spoof mixture.

    Parameters without gradient (class 0 = spoof, 1 = bona fide): ``log_weights`` (2, K), ``means`` (2, K, D),
    ``variances`` (2, K, D).
    Built unfitted (both classes alike: every score 0); :meth:`fit` fits them.
    """

    fitted_by_em = True  # sdd train fits it by EM (sddkit.training.em), not by gradient steps

    def __init__(self, in_dim: int, cfg: GMMConfig, time_axis: int = 2):
        super().__init__()
        self.cfg = cfg
        self.in_dim = in_dim
        self.time_axis = time_axis
        self.embedding_dim = in_dim
        k = cfg.components
        # parameters that take no gradient: counted by sdd describe as the model's (frozen) parameters, and saved
        # in model.safetensors with the rest; EM (fit) is what sets them
        self.log_weights = nn.Parameter(torch.full((2, k), -math.log(k)), requires_grad=False)
        self.means = nn.Parameter(torch.zeros(2, k, in_dim), requires_grad=False)
        self.variances = nn.Parameter(torch.ones(2, k, in_dim), requires_grad=False)

    def frame_log_likelihoods(self, frames: Tensor) -> Tensor:
        """(N, D) frames -> (N, 2) float64 log p(x | spoof), log p(x | bona fide)."""
        return torch.stack(
            [
                torch.logsumexp(
                    gmm_log_likelihood(frames, self.log_weights[c], self.means[c], self.variances[c]), dim=-1
                )
                for c in range(2)
            ],
            dim=-1,
        )

    def forward(self, features: Tensor) -> BackendOutput:
        if features.dim() != 3 or features.shape[3 - self.time_axis] != self.in_dim:
            raise ValueError(
                f"the gmm back-end expects {'(B, F, T)' if self.time_axis == 2 else '(B, N, D)'} features with "
                f"{self.in_dim} feature dims, got shape {tuple(features.shape)}"
            )
        if features.shape[self.time_axis] == 0:
            raise ValueError(f"the gmm back-end needs at least 1 frame, got features of shape {tuple(features.shape)}")
        frames = features.transpose(1, 2) if self.time_axis == 2 else features  # (B, T, D)
        b, t, d = frames.shape
        with _without_autocast(frames):  # float64 likelihoods, never lowered to bfloat16
            ll = self.frame_log_likelihoods(frames.reshape(b * t, d)).reshape(b, t, 2)
            llr = (ll[..., 1] - ll[..., 0]).mean(dim=1)
        # float32 at least, as the other back-ends' heads (heads.Float32Linear): features an encoder gave in bfloat16
        # under autocast made bfloat16 logits, whose 8 significant bits rounded a log-likelihood ratio near 100 to
        # steps of 0.5, so distinct trials' scores tied (float64 features keep float64)
        half = (0.5 * llr).to(torch.promote_types(features.dtype, torch.float32))
        return BackendOutput(logits=torch.stack([-half, half], dim=-1), embedding=frames.mean(dim=1))

    @torch.no_grad()
    def fit(self, frames_by_class: tuple[Tensor, Tensor], *, seed: int = 0) -> dict[str, list[float]]:
        """Fit both mixtures by EM on (spoof frames (N0, D), bona fide frames (N1, D)); returns each class's
        mean frame log-likelihood before each iteration and after the last (``spoof``, ``bonafide``: as many
        iterations as that class ran, fewer than em_iterations where em_tolerance stopped it)."""
        history = {}
        for c, (name, frames) in enumerate(zip(("spoof", "bonafide"), frames_by_class)):
            if frames.dim() != 2 or frames.shape[1] != self.in_dim:
                raise ValueError(f"{name} frames must be (N, {self.in_dim}), got shape {tuple(frames.shape)}")
            try:
                fit = fit_gmm(
                    frames.to(self.means.device),  # EM where the model is (a GPU: seconds, not minutes)
                    self.cfg.components,
                    iterations=self.cfg.em_iterations,
                    variance_floor=self.cfg.variance_floor,
                    seed=seed * 2 + c,
                    tolerance=self.cfg.em_tolerance,  # the two classes draw their initial means apart
                )
            except ValueError as exc:
                raise ValueError(f"{name} class: {exc}") from None
            self.log_weights[c].copy_(fit.log_weights)
            self.means[c].copy_(fit.means)
            self.variances[c].copy_(fit.variances)
            history[name] = fit.history
        return history

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, components={self.cfg.components}, covariance=diag"


@BACKENDS.register("gmm", config=GMMConfig)
def build_gmm(
    cfg: GMMConfig, *, in_dim: int | None = None, feature_layout: str | None = None, **_: object
) -> GMMBackend:
    """One diagonal GMM per class, fitted by EM; score = mean frame log-likelihood ratio (LFCC-GMM, CQCC-GMM)."""
    if in_dim is None:
        raise ConfigError("backend 'gmm' needs frame or spectral features, not the raw waveform")
    layout = cfg.layout if cfg.layout != "auto" else feature_layout
    if layout not in ("frames", "spectral"):
        raise ConfigError("backend 'gmm': set layout to 'frames' (B, N, D) or 'spectral' (B, F, T) for this front-end")
    return GMMBackend(in_dim, cfg, time_axis=2 if layout == "spectral" else 1)
