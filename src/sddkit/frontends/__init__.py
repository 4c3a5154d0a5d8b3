"""Front-ends: pretrained speech encoders (with LoRA / MoLEx), spectral features, raw waveform."""

from sddkit.registry import Registry

ENCODERS = Registry("encoder")
FRONTENDS = Registry("frontend")
ROUTERS = Registry("router")

# Every front-end takes audio at this rate: the pretrained encoders were trained on it, and the trainer and
# scorers resample every file to it.
SAMPLE_RATE = 16000

__all__ = ["ENCODERS", "FRONTENDS", "ROUTERS", "SAMPLE_RATE"]

from sddkit.frontends import encoders, routers, spectral, ssl  # noqa: F401,E402
