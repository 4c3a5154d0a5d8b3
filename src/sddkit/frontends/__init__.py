"""Front-ends: pretrained speech encoders (with LoRA / MoLEx), spectral features, raw waveform."""

from sddkit.registry import Registry

ENCODERS = Registry("encoder")
FRONTENDS = Registry("frontend")
ROUTERS = Registry("router")

__all__ = ["ENCODERS", "FRONTENDS", "ROUTERS"]

from sddkit.frontends import encoders, routers, spectral, ssl  # noqa: F401,E402
