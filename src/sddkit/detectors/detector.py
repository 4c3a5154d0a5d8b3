"""``Detector(frontend=..., backend=...)``: the single-model detector.

front-end: waveform (B, T) at 16 kHz -> FrontendOutput (features + aux losses + stats)
back-end:  features -> BackendOutput (logits (B, 2), embedding (B, E))

Front-ends expose ``output_dim`` (feature size D or F, ``None`` for raw waveform) so a
back-end can be built to match; both are built from registries by :func:`build_detector`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from sddkit.config import component_field
from sddkit.detectors.outputs import BackendOutput, DetectorOutput, FrontendOutput, bonafide_log_odds
from sddkit.registry import ComponentSpec, get_registry


class Detector(nn.Module):
    """A front-end followed by a back-end; returns a :class:`DetectorOutput`."""

    def __init__(self, *, frontend: nn.Module, backend: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.backend = backend

    def forward(self, waveform: Tensor) -> DetectorOutput:
        """waveform: (B, T) float32 at 16 kHz."""
        if waveform.dim() != 2:
            raise ValueError(f"expected a (batch, samples) waveform, got shape {tuple(waveform.shape)}")
        front: FrontendOutput = self.frontend(waveform)
        back: BackendOutput = self.backend(front.features)
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


def build_detector(cfg: DetectorConfig, **context: Any) -> Detector:
    """Build both parts from their registries; the back-end gets ``in_dim=frontend.output_dim``."""
    frontend = get_registry("frontend").build(cfg.frontend, **context)
    backend = get_registry("backend").build(cfg.backend, in_dim=getattr(frontend, "output_dim", None))
    return Detector(frontend=frontend, backend=backend)
