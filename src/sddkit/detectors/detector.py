"""``Detector(frontend=..., backend=...)``: the single-model detector.

front-end: waveform (B, T) at 16 kHz, floating point in [-1, 1] -> FrontendOutput (features + aux losses + stats)
back-end:  features -> BackendOutput (logits (B, 2), embedding (B, E))

Front-ends expose ``output_dim`` (feature size D or F, ``None`` for raw waveform) so a
back-end can be built to match; both are built from registries by :func:`build_detector`.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from sddkit.config import component_field
from sddkit.detectors.outputs import BackendOutput, DetectorOutput, FrontendOutput, bonafide_log_odds
from sddkit.errors import ConfigError
from sddkit.features.spectral import check_float_samples
from sddkit.registry import ComponentSpec, get_registry

log = logging.getLogger(__name__)


def module_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s first floating-point parameter or buffer (None when it has none)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def waveform_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype a waveform is given to ``module`` in: the module's own (:func:`module_dtype`), except float32
    for a half-precision module that declares ``float32_waveform`` (it computes its features from float32
    samples: spectral features, Whisper's log-Mel). Samples rounded to bfloat16 first (8 significant bits)
    would move the quiet bins of those features by several dB."""
    dtype = module_dtype(module)
    if dtype in (torch.float16, torch.bfloat16) and getattr(module, "float32_waveform", False):
        return torch.float32
    return dtype


def check_waveform(waveform: Tensor) -> None:
    """Refuse, in one line, what no detector can score: not (B, T), no samples, integer PCM."""
    if waveform.dim() != 2:
        raise ValueError(f"expected a (batch, samples) waveform, got shape {tuple(waveform.shape)}")
    if waveform.shape[1] == 0:
        raise ValueError(f"the waveform has no samples (shape {tuple(waveform.shape)})")
    # integer PCM scored as is would sit 90 dB above the [-1, 1] scale the models were trained on
    check_float_samples(waveform)


def cast_floating(x: Tensor, dtype: torch.dtype | None) -> Tensor:
    """A floating ``x`` in ``dtype`` (the dtype of the module it goes to; autocast still lowers the
    operations it lowers, from the parameters' dtype as usual)."""
    if dtype is None or x.dtype == dtype or not x.is_floating_point():
        return x
    return x.to(dtype)


def returned(value: Any, kind: type, role: str, module: nn.Module) -> Any:
    """``value``, what ``module`` (a ``role`` of a detector) returned, if it is a ``kind``; else a TypeError naming
    the contract. A component of one's own returning a bare tensor or a ``(embedding, logits)`` tuple, as reference
    code does, met "'tuple' object has no attribute 'logits'"."""
    if isinstance(value, kind):
        return value
    fields = "features, aux_losses, stats" if kind is FrontendOutput else "logits (B, 2), embedding (B, E)"
    raise TypeError(
        f"the {role} {type(module).__name__} returned a {type(value).__name__}: a {role}'s forward returns a "
        f"{kind.__name__}({fields}) (sddkit.detectors.outputs)"
    )


_WARNED_LOGITS: set[type] = set()  # back-end classes already warned about (once per process: validation repeats)


def check_logit_precision(backend: nn.Module, logits: Tensor) -> None:
    """Warn once per back-end class when ``backend``, a float32 module, returned half-precision ``logits`` because
    autocast lowered its output layer (a plain ``nn.Linear``, a convolution, ``F.linear``): its validation scores,
    hence the EER that picks ``best/`` (and ranks the checkpoints that ``average_top_k`` averages), are rounded to 8
    significant bits, while ``sdd score`` scores the same weights in float32."""
    if logits.dtype not in (torch.bfloat16, torch.float16) or type(backend) in _WARNED_LOGITS:
        return
    if not torch.is_autocast_enabled(logits.device.type) or module_dtype(backend) in (torch.bfloat16, torch.float16):
        return  # a half-precision model gives logits in its own dtype, as asked
    _WARNED_LOGITS.add(type(backend))
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return  # said once, by the main process
    name = str(logits.dtype).removeprefix("torch.")
    log.warning(
        "the back-end %s returned %s logits under autocast (trainer.bf16): its scores are rounded to %s (steps of "
        "1/32 for logits near 6), which ties and reorders the validation trials and moves the validation EER that "
        "picks best/, against float32 scoring of the same weights (sdd score); compute its output layer in float32: "
        "sddkit.backends.heads.Float32Linear in place of nn.Linear (what sddkit's back-ends use), or the layer under "
        "torch.autocast(device_type, enabled=False) on float32 input",
        type(backend).__name__,
        name,
        name,
    )


class Detector(nn.Module):
    """A front-end followed by a back-end; returns a :class:`DetectorOutput`.

    A back-end whose logits autocast lowers to half precision is warned about once (:func:`check_logit_precision`):
    its output layer is the author's to make float32 (``Float32Linear``), not rewritten here."""

    if TYPE_CHECKING:
        # what calling it returns, to type checkers: nn.Module's __call__ is typed to return Any
        def __call__(self, waveform: Tensor) -> DetectorOutput: ...

    def __init__(self, *, frontend: nn.Module, backend: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.backend = backend

    def forward(self, waveform: Tensor) -> DetectorOutput:
        """waveform: (B, T) floating point at 16 kHz, samples in [-1, 1].

        Any floating dtype is accepted (soundfile and numpy give float64): the waveform is cast to the
        model's dtype, and the features to the back-end's, so a float32 model scores a float64 file as
        its float32 copy and a ``.double()`` model takes float32 input.
        """
        check_waveform(waveform)
        backend_dtype = module_dtype(self.backend)
        waveform = cast_floating(waveform, waveform_dtype(self.frontend) or backend_dtype)
        front = returned(self.frontend(waveform), FrontendOutput, "front-end", self.frontend)
        back = returned(
            self.backend(cast_floating(front.features, backend_dtype)), BackendOutput, "back-end", self.backend
        )
        if back.logits.dim() != 2 or back.logits.shape[1] != 2:
            # one logit per item would fail the score's logits[:, 1] with a bare IndexError
            raise ValueError(
                f"the back-end {type(self.backend).__name__} returned logits of shape {tuple(back.logits.shape)}: "
                "a back-end gives (B, 2) logits over (spoof, bona fide)"
            )
        check_logit_precision(self.backend, back.logits)
        return DetectorOutput(
            logits=back.logits,
            score=bonafide_log_odds(back.logits),
            embedding=back.embedding,
            aux_losses=dict(front.aux_losses),
            stats=dict(front.stats),
        )


@dataclass
class DetectorConfig:
    """A detector as recorded in recipes and checkpoints."""

    frontend: ComponentSpec = component_field("frontend")
    backend: ComponentSpec = component_field("backend")


def feature_layout(frontend: nn.Module) -> str | None:
    """How ``frontend`` lays out its features: ``spectral`` (B, F, T), ``frames`` (B, N, D), None (raw).

    A front-end may declare ``feature_layout``; otherwise the spectral front-ends are known by class
    and any other front-end with an ``output_dim`` (the encoders) gives frames.
    """
    from sddkit.frontends.spectral import SpectralFrontend

    declared = getattr(frontend, "feature_layout", None)
    if declared is not None:
        return declared
    if getattr(frontend, "output_dim", None) is None:
        return None
    return "spectral" if isinstance(frontend, SpectralFrontend) else "frames"


def build_detector(cfg: DetectorConfig, **context: Any) -> Detector:
    """Build both parts from their registries; the back-end gets ``in_dim=frontend.output_dim`` and
    ``feature_layout`` (see :func:`feature_layout`)."""
    frontend = get_registry("frontend").build(cfg.frontend, **context)
    backend = get_registry("backend").build(
        cfg.backend, in_dim=getattr(frontend, "output_dim", None), feature_layout=feature_layout(frontend)
    )
    _refuse_constant_pooling(frontend, backend)
    return Detector(frontend=frontend, backend=backend)


def _refuse_constant_pooling(frontend: nn.Module, backend: nn.Module) -> None:
    """Refuse the ``linear`` back-end over a spectral front-end with ``normalize: true``: the head pools each
    feature bin's mean and standard deviation over time, which per-utterance normalisation has just set to 0 and 1
    for every input, so the model can only learn a constant (it trained, and scored every file alike but for float
    rounding)."""
    from sddkit.backends.linear import LinearHead
    from sddkit.frontends.spectral import SpectralFrontend

    if isinstance(backend, LinearHead) and isinstance(frontend, SpectralFrontend) and frontend.normalize:
        raise ConfigError(
            "model.backend linear pools each feature's mean and standard deviation over time, and "
            "model.frontend.normalize: true sets them to 0 and 1 for every input: such a model scores every file "
            "alike; set model.frontend.normalize: false, or use a back-end that reads the time-frequency pattern "
            "(sdd list backend: lcnn, resnet18, ...)"
        )
