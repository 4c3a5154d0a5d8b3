"""``DetectorMixture(experts=[...], gate=...)``: a mixture of whole detectors (MELE / MILE).

Each expert is any sddkit detector (returns a ``DetectorOutput``). The gate gives per-input
weights ``w (B, E)`` on the simplex; the mixture's class probabilities are the weighted sum of
the experts' class probabilities,

    p(c | x) = sum_e w_e(x) * softmax(logits_e(x))_c,

computed in log space (``logsumexp``) and returned as ``logits = log p``. So ``softmax(logits)``
is exactly the mixture probability and ``score = log p_bona - log p_spoof`` is a proper log-odds.
The reference implementation applied a softmax to already-softmaxed outputs; that squashes the
scores towards 0 and is not reproduced here. The experts' logits are used as they come: a calibration recorded in
an expert's model directory (``inference.calibration``) is not applied, and ``sdd train`` warns of it (the
``average`` gate averages uncalibrated probabilities, not calibrated LLRs); the mixture is calibrated as one model,
on its own raw score (``sdd calibrate``, ``sddkit.scoring.calibrate_model_dir``, or
``scripts/finalize_default_model.py`` on sddbench ``val``).

MELE: experts of one architecture, one per domain, each trained on its own domain first.
MILE: experts of different architectures, all trained on the same pooled data.
In both, the gate is then trained on pooled data with the experts frozen (default) or fine-tuned with it, end to end
(:class:`DetectorMixture`). A resume of that training (``sdd train --resume``) builds the experts from the configs
its checkpoint records, so their ``expert_dirs`` may have been moved or removed since, as may those of a saved
mixture, whose config holds the experts' configs.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from sddkit.backends.fastpath import plain_computation
from sddkit.config import component_field, expand_home, from_dict, to_dict
from sddkit.detectors.detector import DetectorConfig, build_detector, cast_floating, check_waveform, waveform_dtype
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import CheckpointError, ConfigError
from sddkit.features.spectral import shared_computation
from sddkit.registry import ComponentSpec, get_registry


def mix_log_probs(expert_log_probs: Tensor, weights: Tensor) -> Tensor:
    """Expert class log-probabilities (B, E, 2) and gate weights (B, E) -> the mixture's log p(c | x) (B, 2).

    ``log sum_e w_e p_e(c | x)``, computed in log space and in float32 at least; its bona fide log-odds is
    ``out[:, 1] - out[:, 0]``. A zero weight drops its expert exactly, a positive one (subnormal included)
    counts at its own size; a NaN weight makes its row NaN.
    """
    # float32 at least, as bonafide_log_odds: the log-odds of log-probabilities rounded to bfloat16 keeps ~3
    # significant digits (distinct trials tie), and a float16 weight below its smallest normal (6e-5) was
    # clamped up to it by the gradient guard below, moving the mixture's log-odds by nats
    dtype = torch.promote_types(torch.promote_types(expert_log_probs.dtype, weights.dtype), torch.float32)
    expert_log_probs, weights = expert_log_probs.to(dtype), weights.to(dtype)
    # A zero weight is log 0 = -inf (the expert drops out exactly; clamping it to a small epsilon
    # would cap the mixture's log-odds near -log(eps)); the clamp inside only keeps log's gradient finite.
    tiny = torch.finfo(dtype).tiny
    positive = weights > 0
    guarded = weights.clamp_min(tiny).log()
    # the value is the exact log of every positive weight: a float32 softmax gives subnormal weights (below 1.2e-38)
    # for logit gaps of 87-103 nats, and their log taken at the clamp (-87.3) lifted that expert's share by up to
    # 16 nats, moving the log-odds of a confident mixture by as many; the gradient stays the clamped one's
    exact = torch.where(positive, weights, 1.0).log()
    log_w = torch.where(positive, guarded + (exact - guarded).detach(), float("-inf"))
    # a NaN weight stays NaN (NaN > 0 is false: it was taken for a zero weight, and the other experts' view came out
    # as a finite, confident score of an input whose gate had failed)
    log_w = torch.where(weights.isnan(), weights, log_w).unsqueeze(-1)  # (B, E, 1)
    return torch.logsumexp(log_w + expert_log_probs, dim=1)


def _log_probs(logits: Tensor) -> Tensor:
    """(B, 2) logits -> class log-probabilities in float32 at least (float64 stays)."""
    return torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)


class DetectorMixture(nn.Module):
    """Gate-weighted mixture of detectors' class probabilities.

    experts: E detectors; gate: a ``Gate`` (``(waveform, embeddings) -> (B, E)`` weights).
    freeze_experts: experts get no gradient and stay in eval mode (batch-norm statistics fixed). Unfrozen (joint
    fine-tuning), the experts' embeddings reach the gate undetached, so the loss trains each expert through the gate's
    weights as well as through its class probabilities: end-to-end training of the whole mixture, as the MELE
    reference code does (polimi-ispl/moe_speech_deepfake: its enhanced gate reads the experts' embeddings as they
    come, and its optimiser takes every parameter that requires a gradient, the experts' included).

    An expert with no trainable parameter (every expert of a frozen mixture) runs without autograd unless the
    waveform requires a gradient, and its auxiliary losses (e.g. MoLEx load balance), constants to the gate,
    are left out of the mixture's ``aux_losses``; experts being trained contribute theirs as ``expert{i}/<name>``.
    """

    float32_waveform = True  # see waveform_dtype: every expert casts the waveform for itself

    if TYPE_CHECKING:
        # what calling it returns, to type checkers: nn.Module's __call__ is typed to return Any
        def __call__(self, waveform: Tensor) -> DetectorOutput: ...

    def __init__(self, *, experts: Sequence[nn.Module], gate: nn.Module, freeze_experts: bool = True):
        super().__init__()
        if len(experts) < 1:
            raise ValueError("a mixture needs at least one expert")
        if getattr(gate, "num_experts", len(experts)) != len(experts):
            raise ValueError(f"gate is built for {gate.num_experts} experts, got {len(experts)}")
        self.experts = nn.ModuleList(experts)
        self.gate = gate
        self.freeze_experts = freeze_experts
        if freeze_experts:
            self.experts.requires_grad_(False)
            self.experts.eval()

    def train(self, mode: bool = True) -> DetectorMixture:
        super().train(mode)
        if self.freeze_experts:
            self.experts.eval()  # frozen experts must not update batch-norm statistics
        return self

    def forward(self, waveform: Tensor) -> DetectorOutput:
        """waveform (B, T) -> DetectorOutput; stats carry ``gate_weights`` and ``expert_scores`` (B, E)."""
        check_waveform(waveform)
        # the experts cast for themselves (float32_waveform: never rounded to half precision on their behalf);
        # the gate reads the waveform too (log-Mel statistics, computed in float32)
        waveform = cast_floating(waveform, waveform_dtype(self))
        trained = [any(p.requires_grad for p in expert.parameters()) for expert in self.experts]
        outs: list[DetectorOutput] = []
        # experts of equal front-end settings (the default model's logmel and lfb: one framing, one level) compute
        # the waveform's level normalisation and power spectrum once, not once each: the same values, bit for bit
        with shared_computation():
            for expert, learns in zip(self.experts, trained, strict=True):
                # a frozen expert runs without autograd (unless the waveform itself wants a gradient, e.g. an attack
                # or a saliency map): nothing of it is learnt, and its weight-only terms (MoLEx orthogonality) are
                # skipped as at inference instead of computed on every training step for nothing. In eval mode without
                # autograd its back-end would take its inference fast path; in training it computes plainly, so that a
                # gate's recipe reproduces its weights bit for bit (under compile the fast path is off anyway)
                plain = self.training and not learns and not torch.compiler.is_compiling()
                with (
                    torch.set_grad_enabled(torch.is_grad_enabled() and (learns or waveform.requires_grad)),
                    plain_computation() if plain else contextlib.nullcontext(),
                ):
                    outs.append(expert(waveform))
        weights = self.gate(waveform, [o.embedding for o in outs])  # (B, E)
        expected = (waveform.shape[0], len(outs))
        if tuple(weights.shape) != expected:  # (B, 1) or (E,) would broadcast against (B, E, 2) without a word
            raise ValueError(
                f"the gate {type(self.gate).__name__} returned weights of shape {tuple(weights.shape)}, "
                f"expected (batch, experts) = {expected}"
            )
        # export and compile: no data checks; sddkit's own gates end in a softmax (or are uniform): not checked, as
        # the check waits for the device (bool of a GPU tensor) in the middle of every forward, in training too
        exporting = torch.jit.is_tracing() or torch.compiler.is_compiling()
        if not exporting and type(self.gate) not in _softmax_gates():
            _check_simplex(self.gate, weights)
        # from the experts' logits in float32 at least: log-probabilities rounded to half precision keep ~3 digits
        expert_log_probs = torch.stack([_log_probs(o.logits) for o in outs], dim=1)  # (B, E, 2)
        logits = mix_log_probs(expert_log_probs, weights)  # float32 at least, so is the score
        # a frozen expert's auxiliary losses are constants to the gate: added to the loss they only shifted the
        # logged training loss by terms nothing can learn (its stats still report, e.g., MoLEx load balance)
        aux = {f"expert{i}/{k}": v for i, o in enumerate(outs) if trained[i] for k, v in o.aux_losses.items()}
        stats: dict[str, Tensor] = {
            "gate_weights": weights,
            "expert_scores": torch.stack([o.score for o in outs], dim=1),
        }
        for i, o in enumerate(outs):
            stats.update({f"expert{i}/{k}": v for k, v in o.stats.items()})
        return DetectorOutput(
            logits=logits,
            score=logits[:, 1] - logits[:, 0],
            embedding=torch.cat([o.embedding for o in outs], dim=-1),
            aux_losses=aux,
            stats=stats,
        )


@functools.cache
def _softmax_gates() -> tuple[type, ...]:
    """sddkit's gate classes, whose weights are a softmax (or uniform) by construction: :func:`_check_simplex` is
    for other gates (a subclass of one of them included, as its forward may differ)."""
    from sddkit.detectors.gates import AttentionGate, AverageGate, ClassicGate, EnhancedMLPGate

    return (AverageGate, ClassicGate, EnhancedMLPGate, AttentionGate)


def _check_simplex(gate: nn.Module, weights: Tensor) -> None:
    """Refuse gate weights off the simplex (a custom gate without its softmax): a negative weight was taken as 0 by
    :func:`mix_log_probs` and rows not summing to one made ``logits`` no log-probabilities, while the recorded
    ``gate_weights`` were then refused only by ``sdd eval``, after every file was scored. Rows holding NaN pass (NaN
    input): :func:`mix_log_probs` makes their scores NaN, which ``sdd score`` reports as errors."""
    # rounding: each weight of a half-precision softmax is rounded by up to eps / 2 of itself, so the row's sum by up
    # to eps / 2 (the weights sum to 1): 0.4 % in bfloat16; twice that is allowed
    eps = torch.finfo(weights.dtype).eps if weights.is_floating_point() else 0.0
    tol = max(1e-3, 2 * eps)
    detached = weights.detach()
    off = (detached < 0).any(dim=-1) | ((detached.sum(dim=-1, dtype=torch.float32) - 1).abs() > tol)
    if bool(off.any()):
        i = int(off.nonzero()[0, 0])
        row = detached[i].float()
        raise ValueError(
            f"the gate {type(gate).__name__} returned weights off the simplex (each row >= 0 and summing to 1) for "
            f"{int(off.sum())} of {weights.shape[0]} inputs, e.g. row {i}: {row.tolist()} "
            f"(sum {float(row.sum()):.6g}); a gate ends with a softmax over the experts"
        )


@dataclass
class MixtureConfig:
    """A mixture as recorded in recipes and model directories.

    experts: each expert's detector config; expert_dirs: optional model directories whose
    trained weights initialise the experts (same order; MELE/MILE stage 2); expert_names: what reports
    call the experts (same order, distinct, none of :data:`RESERVED_EXPERT_NAMES`), by default the expert directories'
    names (:func:`expert_names`).
    """

    experts: list[DetectorConfig] = field(default_factory=list)
    gate: ComponentSpec = component_field("gate", default="average")
    freeze_experts: bool = True
    expert_dirs: list[str] = field(default_factory=list)
    expert_names: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.expert_dirs = [expand_home(d) if isinstance(d, str) else d for d in self.expert_dirs]
        if not self.experts and not self.expert_dirs:
            raise ValueError("a mixture needs experts (configs) or expert_dirs (trained model directories)")
        if self.experts and self.expert_dirs and len(self.experts) != len(self.expert_dirs):
            raise ValueError("experts and expert_dirs must have the same length")
        # an empty entry (a YAML '' left for a path) reads as the working directory: refused by its key here
        empty = [i for i, d in enumerate(self.expert_dirs) if not str(d).strip()]
        if empty:
            raise ValueError(f"expert_dirs[{empty[0]}] is empty; give the expert's model directory")
        n = len(self.expert_dirs or self.experts)
        if self.expert_names:
            if len(self.expert_names) != n:
                raise ValueError(f"{len(self.expert_names)} expert_names for {n} experts")
            if any(not str(name).strip() for name in self.expert_names):
                raise ValueError("expert_names must not be empty")
            if len(set(self.expert_names)) != n:
                raise ValueError(f"expert_names must be distinct, got {self.expert_names}")


# the columns of sdd eval's gate-weight tables beside the experts' (the count, the groups): an expert so named would
# merge with one, so the tables would number the experts instead (sddkit.evaluation.scores.recorded_expert_names)
RESERVED_EXPERT_NAMES = ("n", "source", "attack")


def expert_names(cfg: MixtureConfig) -> list[str]:
    """What reports call the experts: ``cfg.expert_names``, else the expert directories' names (the run's
    folder for a ``best``/``final`` export: ``runs/mele_expert_tortoise/best`` -> ``mele_expert_tortoise``)
    when those are distinct and none is a name of :data:`RESERVED_EXPERT_NAMES`, else ``expert0``, ``expert1``,
    ... in the mixture's order. ``cfg.expert_names`` holding a reserved name is a ConfigError."""
    if cfg.expert_names:
        names = [str(n) for n in cfg.expert_names]
        reserved = [n for n in names if n in RESERVED_EXPERT_NAMES]
        if reserved:
            raise ConfigError(
                f"expert_names: {', '.join(map(repr, reserved))} would merge with a column of sdd eval's gate-weight "
                f"tables ({', '.join(map(repr, RESERVED_EXPERT_NAMES))} are taken; given {names}); "
                "name the experts otherwise"
            )
        return names
    n = len(cfg.expert_dirs or cfg.experts)
    fallback = [f"expert{i}" for i in range(n)]
    if not cfg.expert_dirs:
        return fallback
    named = []
    for d in cfg.expert_dirs:
        path = Path(d)
        named.append(path.parent.name if path.name in ("best", "final") and path.parent.name else path.name)
    usable = all(named) and len(set(named)) == n and not set(named) & set(RESERVED_EXPERT_NAMES)
    return named if usable else fallback


def embedding_dim(detector: nn.Module, sample_rate: int = 16000) -> int:
    """Size of a detector's embedding: ``backend.embedding_dim`` if declared, else one dry forward."""
    declared = getattr(getattr(detector, "backend", None), "embedding_dim", None)
    if declared is not None:
        return int(declared)
    was_training = detector.training
    detector.eval()
    with torch.no_grad():
        dim = detector(torch.zeros(1, sample_rate)).embedding.shape[-1]
    detector.train(was_training)
    return int(dim)


def expert_dir_configs(cfg: MixtureConfig) -> list[DetectorConfig]:
    """The detector configs stored in ``cfg.expert_dirs``, checked (ConfigError) to be usable together.

    Each directory must hold a detector; all must share one sample rate, 16 kHz (the mixture feeds every
    expert and its gate the same 16 kHz waveform; their scoring windows may differ, e.g. AASIST's 64,600 samples
    beside an LCNN's 64,000, as the mixture scores with its own window); configs given in ``cfg.experts`` as well must
    equal the stored ones (the experts are built from the directories, so a different config would
    be recorded for a model that was never trained).
    """
    from sddkit.detectors.model_dir import read_model_config
    from sddkit.frontends import SAMPLE_RATE
    from sddkit.scoring.inference import parse_inference

    configs, settings = [], []
    for i, d in enumerate(cfg.expert_dirs):
        # nothing there: an expert not trained (or not here) yet: say which, as the errors below do. A file there
        # (its best/config.json, a checkpoints/latest pointer, an .onnx export) is no untrained expert: "train that
        # expert first" sent the user to retrain it; read_model_config says what the file is and what to give
        if not Path(d).exists():
            from sddkit.config import missing_relative_hint

            raise CheckpointError(
                f"expert_dirs[{i}] {d}: no such model directory{missing_relative_hint(d)}; train that expert "
                "first (its recipe's trainer.out_dir/best), or give its path"
            )
        try:
            stored = read_model_config(d)
        except CheckpointError as exc:  # e.g. a run folder given for its best/: say which expert, as below
            raise CheckpointError(f"expert_dirs[{i}] {exc}") from None
        if stored["architecture"] != "detector":
            raise ConfigError(
                f"expert_dirs[{i}] {d}: a {stored['architecture']!r} model directory; experts are detectors"
            )
        configs.append(from_dict(DetectorConfig, stored["model"], f"expert_dirs[{i}] {d}: model"))
        inference = parse_inference(stored.get("inference"), f"{d}: inference")
        settings.append(inference.sample_rate)
    if len(set(settings)) > 1:
        listed = ", ".join(f"{d} ({sr} Hz)" for d, sr in zip(cfg.expert_dirs, settings, strict=True))
        raise ConfigError(
            f"expert_dirs differ in sample rate: {listed}; a mixture feeds every expert the same {SAMPLE_RATE} Hz "
            f"audio: give experts trained and recorded at {SAMPLE_RATE} Hz"
        )
    if settings and settings[0] != SAMPLE_RATE:
        # the mixture is trained and scored on 16 kHz audio (the trainer records 16 kHz for it), and the classic
        # gate's log-Mel statistics assume that rate: experts recorded at another rate would read every band off
        raise ConfigError(
            f"expert_dirs record inference.sample_rate {settings[0]} Hz ({', '.join(cfg.expert_dirs)}), but a "
            f"mixture, its experts' front-ends and its gate take {SAMPLE_RATE} Hz audio (set it to {SAMPLE_RATE})"
        )
    for i, (given, stored) in enumerate(zip(cfg.experts, configs, strict=True) if cfg.experts else ()):
        if not _same_expert(to_dict(given), to_dict(stored)):
            raise ConfigError(
                f"experts[{i}] differs from the config stored in expert_dirs[{i}] {cfg.expert_dirs[i]}; "
                "give experts or expert_dirs, or the same configs in both"
            )
    return configs


def expert_calibration_note(cfg: MixtureConfig) -> str | None:
    """A warning when ``cfg.expert_dirs`` record a calibration (``inference.calibration`` other than the identity),
    which the mixture does not apply (see the module docstring), else None: a user who calibrated the experts (``sdd
    calibrate``, ``sddkit.scoring.calibrate_model_dir``) would otherwise take the calibrated scores each expert gives
    alone for what the mixture combines. (The bundled default model, calibrated too, is itself a mixture:
    :func:`expert_dir_configs` refuses it as an expert.)"""
    from sddkit.detectors.model_dir import read_model_config
    from sddkit.scoring.inference import parse_inference

    calibrated = []
    for i, d in enumerate(cfg.expert_dirs):
        cal = parse_inference(read_model_config(d).get("inference"), f"{d}: inference").calibration
        if not cal.is_identity:
            sign = "-" if cal.b < 0 else "+"
            calibrated.append(f"expert_dirs[{i}] {d} (llr = {cal.a:.4g} * raw {sign} {abs(cal.b):.4g})")
    if not calibrated:
        return None
    return (
        f"{', '.join(calibrated)} record{'s' if len(calibrated) == 1 else ''} a calibration that the mixture does "
        "not apply: it mixes every expert's uncalibrated probabilities (sdd score's expert_score columns are raw "
        "scores too); calibrate the mixture itself afterwards (sdd calibrate)"
    )


def _same_expert(given: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Whether a recipe's expert config is the one stored in its directory; a directory that stores every weight
    records its encoder's architecture in place of the ``pretrained`` folder the recipe names (model_dir), and one
    that leaves the encoder to that folder records it made absolute (the trainer's ``absolute_pretrained_paths``),
    where the recipe may name it relative to the working directory, as the expert's own recipe did, and with the
    waveform normalisation its folder decided written out where the recipe leaves it to the folder."""
    from sddkit.pretrained import absolute_pretrained_paths

    if given == stored or absolute_pretrained_paths(given) == stored:
        return True
    from sddkit.frontends.encoders import recorded_folder_config, recorded_normalize_config, self_contained_config

    # the folder's settings written out too (as a run records them since), or its normalisation only (before)
    if stored in (
        recorded_folder_config(absolute_pretrained_paths(given)),
        recorded_normalize_config(absolute_pretrained_paths(given)),
    ):
        return True
    try:
        return self_contained_config(given) == stored
    except ConfigError:  # the recipe's folder is not there to compare with
        return False


def build_mixture(cfg: MixtureConfig) -> DetectorMixture:
    """Build (and, with ``expert_dirs``, load) the experts, then a gate sized for them."""
    from sddkit.detectors.model_dir import load_model_dir

    if cfg.expert_dirs:
        expert_dir_configs(cfg)  # checks the set-up before any weights load
        experts = [load_model_dir(d).model for d in cfg.expert_dirs]
    else:
        experts = [build_detector(c) for c in cfg.experts]
    gate = get_registry("gate").build(
        cfg.gate, num_experts=len(experts), embedding_dims=[embedding_dim(e) for e in experts]
    )
    return DetectorMixture(experts=experts, gate=gate, freeze_experts=cfg.freeze_experts)


def resolved_mixture_config(cfg: MixtureConfig) -> dict[str, Any]:
    """Self-contained config for a model directory: expert configs inline, no expert_dirs needed."""
    experts = expert_dir_configs(cfg) if cfg.expert_dirs else cfg.experts
    resolved = MixtureConfig(
        experts=list(experts), gate=cfg.gate, freeze_experts=cfg.freeze_experts, expert_names=expert_names(cfg)
    )
    return to_dict(resolved)


def _build_mixture_from_dict(model_cfg: dict[str, Any]) -> nn.Module:
    return build_mixture(from_dict(MixtureConfig, model_cfg, "model"))
