"""Training: the trainer (loop, checkpoints, logging) and strategies (one optimisation step)."""

from sddkit.registry import Registry

STRATEGIES = Registry("strategy")

__all__ = ["STRATEGIES"]

from sddkit.training import erm, mldg, sam  # noqa: F401,E402  (register the strategies)
