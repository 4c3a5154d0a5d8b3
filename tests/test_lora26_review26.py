"""Review 26 of LoRA and MoLEx as a researcher reproducing the papers uses them (lora26): experts added through the
Python API (and ExpertAddition) next to an optimizer that already held the old parameters; adapter targets given as
Hugging Face module names (a PEFT config's target_modules); what the new experts' router bias does to the old
domains' outputs before any step."""

from __future__ import annotations

import pytest
import torch
from test_molex import frontend
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)

from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.errors import ConfigError
from sddkit.registry import get_registry
from sddkit.training.molex import ExpertAddition


def _steps(model, optimizer, waveform, n=3):
    """n training steps as many loops write them: gradients zeroed in place, not set to None."""
    for _ in range(n):
        optimizer.zero_grad(set_to_none=False)
        out = model(waveform)
        features = out.features if hasattr(out, "features") else out.logits
        (features.square().mean() + sum(out.aux_losses.values())).backward()
        optimizer.step()


def test_experts_frozen_by_add_experts_stay_put_under_the_optimizer_that_trained_them():
    # SSLFrontend.add_experts returns the new parameters "to add to the optimizer": the optimizer that trained the
    # first experts still holds them, and zero_grad(set_to_none=False) left them a zero gradient; AdamW's momentum
    # and weight decay then went on moving the "frozen" experts and router rows at every step
    torch.manual_seed(0)
    fe = frontend(num_experts=2, rank=2, targets=["q", "v"])
    fe.train()
    opt = torch.optim.AdamW([p for p in fe.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    x = torch.randn(2, 4000)
    _steps(fe, opt, x)
    new = fe.add_experts(1)
    opt.add_param_group({"params": new})
    frozen = {n: p.detach().clone() for n, p in fe.named_parameters() if not p.requires_grad}
    assert any(".lora_A.0" in n for n in frozen) and any(".router.weights.0" in n for n in frozen)
    new_before = [p.detach().clone() for p in new]
    _steps(fe, opt, x)
    moved = [n for n, p in fe.named_parameters() if n in frozen and not torch.equal(p, frozen[n])]
    assert moved == []
    assert any(not torch.equal(p, b) for p, b in zip(new, new_before))  # the new experts did train


def test_expert_addition_freezes_what_an_existing_optimizer_held():
    # ExpertAddition froze the back-end (train_backend: false) by requires_grad alone: an optimizer that held it,
    # with a gradient left from before the growth, still stepped it
    torch.manual_seed(0)
    model = {
        "frontend": {
            "name": "ssl",
            "encoder": {"name": "wav2vec2_tiny", "dropout": 0.0},
            "adapter": "molex",
            "molex": {"num_experts": 2, "rank": 2, "targets": ["q", "v"]},
        },
        "backend": {"name": "linear"},
    }
    detector = build_detector(from_dict(DetectorConfig, model))
    detector.train()
    opt = torch.optim.AdamW([p for p in detector.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    x = torch.randn(2, 4000)
    _steps(detector, opt, x)
    growth = ExpertAddition(detector, 1)
    opt.add_param_group({"params": [p for n, p in detector.named_parameters() if n in growth.new]})
    frozen = {n: p.detach().clone() for n, p in detector.named_parameters() if not p.requires_grad}
    assert any(n.startswith("backend.") for n in frozen) and any(".lora_B.0" in n for n in frozen)
    _steps(detector, opt, x)
    moved = [n for n, p in detector.named_parameters() if n in frozen and not torch.equal(p, frozen[n])]
    assert moved == []


@pytest.mark.parametrize(
    ("adapter", "targets", "named"),
    [
        ("lora", ["q_proj", "v_proj"], "write q for q_proj, v for v_proj"),
        (
            "molex",
            ["out_proj", "fc1", "output_dense"],
            "write ffn_in for fc1, out for out_proj, ffn_out for output_dense",
        ),
    ],
)
def test_targets_given_as_module_names_are_named_with_the_targets_they_are(adapter, targets, named):
    # a PEFT config's target_modules (q_proj, v_proj; Whisper's fc1) was refused with the list of valid names only,
    # which the user had to match to the modules by reading the LoRAConfig docstring
    spec = {"name": "ssl", "encoder": {"name": "wav2vec2_tiny"}, "adapter": adapter, adapter: {"targets": targets}}
    with pytest.raises(
        ConfigError,
        match=rf"frontend.{adapter}: unknown target\(s\) .*\(Hugging Face module names: "
        rf"{named}\); valid: \['q', 'k', 'v', 'out', 'ffn_in', 'ffn_out'\]",
    ):
        get_registry("frontend").parse(spec)
    spec[adapter] = {"targets": ["query"]}  # no module of that name: the valid names only
    with pytest.raises(ConfigError, match=r"unknown target\(s\) \['query'\]; valid: "):
        get_registry("frontend").parse(spec)


def test_the_new_expert_bias_takes_its_share_of_the_old_experts_weight_as_the_recipe_doc_says():
    # MolexConfig's doc said the new experts' B = 0 kept the outputs still "either way" (whatever the bias): the
    # softmax gives the new experts their share of the weight from the old ones, so at bias 0 the old domains'
    # outputs lost about a quarter of the adapter's effect before any training step
    import copy

    from sddkit.training.recipe import MolexConfig

    torch.manual_seed(0)
    fe = frontend(num_experts=3, rank=2, targets=["q", "v"])
    with torch.no_grad():
        for name, p in fe.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.5)  # trained experts: their update is not zero
    fe.eval()
    x = torch.randn(2, 4000)
    bare = copy.deepcopy(fe)
    with torch.no_grad():
        for name, p in bare.named_parameters():
            if ".lora_B." in name:
                p.zero_()
        effect = fe(x).features - bare(x).features  # what the adapter adds

    def moved(bias: float) -> float:
        grown = copy.deepcopy(fe)
        grown.add_experts(1, bias=bias)
        with torch.no_grad():
            return float((grown(x).features - fe(x).features).norm() / effect.norm())

    assert moved(-6.0) < 2e-3  # ~e^-6 / 3 of the effect
    assert 0.15 < moved(0.0) < 0.35  # ~1/4: one new expert beside three old ones
    doc = " ".join(MolexConfig.__doc__.split())
    assert "outputs do not move either way" not in doc
    assert "a quarter at 0" in doc
