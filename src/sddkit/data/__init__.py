"""Utterance tables, corpus protocol readers and datasets."""

from sddkit.registry import Registry

PROTOCOLS = Registry("protocol")

__all__ = ["PROTOCOLS"]
