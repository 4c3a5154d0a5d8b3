"""Front-ends: pretrained speech encoders (with LoRA / MoLEx), spectral features, raw waveform."""

from sddkit.registry import Registry

ENCODERS = Registry("encoder")
FRONTENDS = Registry("frontend")
ROUTERS = Registry("router")

__all__ = ["ENCODERS", "FRONTENDS", "ROUTERS"]
