"""Utterance tables, corpus protocol readers and datasets."""

from sddkit.registry import Registry

PROTOCOLS = Registry("protocol")

__all__ = ["PROTOCOLS", "detect_format", "read_protocol"]

from sddkit.data import protocols  # noqa: F401,E402
from sddkit.data.protocols import detect_format, read_protocol  # noqa: E402
