"""``erm``: empirical risk minimisation, one pooled step over the whole batch."""

from __future__ import annotations

from typing import Any

from sddkit.training import STRATEGIES
from sddkit.training.strategy import Batch, StepContext, StepResult


class ERM:
    """forward -> loss (CE + aux) -> backward -> clip -> optimizer step, on the pooled batch.

    Under DDP the forward goes through the wrapper, so the backward all-reduces the gradients.
    """

    name = "erm"

    def step(self, batch: Batch, ctx: StepContext) -> StepResult:
        ctx.optimizer.zero_grad(set_to_none=True)
        with ctx.autocast():
            output = ctx.model(batch["waveform"])
        parts = ctx.pooled_loss(output, batch["label"], domains=batch.get("domain"))
        parts.total.backward()
        grad_norm = ctx.clip_and_step()
        return StepResult(loss=parts.total.detach(), metrics={**parts.detached(), "grad_norm": grad_norm})

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


@STRATEGIES.register("erm")
def build_erm(**context: Any) -> ERM:
    """Empirical risk minimisation: one pooled step per batch."""
    return ERM()
