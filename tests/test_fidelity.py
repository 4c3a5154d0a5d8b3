"""Parameter-count fidelity with the published LoRA / SSL-AASIST figures (XLS-R 300M + SSL-AASIST head).

Published: frozen encoder -> ~447K trainable; LoRA on q,k,v,out of rank 2/4/8/16 -> 840K, 1.23M, 2.02M,
3.59M trainable; full fine-tuning -> 317.8M. Each must match within 1%. Built on the meta device: no memory.
"""

from __future__ import annotations

import pytest

from sddkit.cli.describe_cmd import describe

PUBLISHED = {"frozen": 447_000, 2: 840_000, 4: 1_230_000, 8: 2_020_000, 16: 3_590_000, "full": 317_800_000}


def xlsr_aasist(adapter: str = "none", rank: int = 8, freeze: bool = True) -> dict:
    frontend = {"name": "ssl", "encoder": {"name": "xlsr_300m", "freeze": freeze}, "adapter": adapter}
    if adapter == "lora":
        frontend["lora"] = {"rank": rank, "alpha": 2.0, "targets": ["q", "k", "v", "out"]}
    return {"frontend": frontend, "backend": {"name": "ssl_aasist"}}


def test_frozen_encoder_trains_only_the_head():
    counts = describe(xlsr_aasist())
    assert counts["trainable_params"] == pytest.approx(PUBLISHED["frozen"], rel=0.01)
    assert counts["modules"]["frontend"]["trainable_params"] == 0


@pytest.mark.parametrize("rank", [2, 4, 8, 16])
def test_lora_ranks(rank):
    counts = describe(xlsr_aasist("lora", rank))
    assert counts["trainable_params"] == pytest.approx(PUBLISHED[rank], rel=0.01)
    # LoRA adds r * (d_in + d_out) per projection: 24 layers x 4 projections x r x 2048
    head = describe(xlsr_aasist())["trainable_params"]
    assert counts["trainable_params"] - head == 24 * 4 * rank * 2048


def test_full_fine_tuning():
    counts = describe(xlsr_aasist(freeze=False))
    assert counts["trainable_params"] == pytest.approx(PUBLISHED["full"], rel=0.01)
