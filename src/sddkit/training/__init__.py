"""Training: the trainer (loop, checkpoints, logging), strategies (one optimisation step), the loss and
leave-domains-out cross-validation (``sdd cv``)."""

from sddkit.registry import Registry

STRATEGIES = Registry("strategy")

__all__ = ["STRATEGIES"]

from sddkit.training import erm, mldg, sam  # noqa: F401,E402  (register the strategies)
