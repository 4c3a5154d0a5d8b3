"""LoRA, a second look: checkpoint averaging in update space, and the alpha / r convention's documentation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_support import SyntheticDataset, one_thread  # noqa: F401  (autouse fixture: one intra-op thread)

from sddkit.frontends.lora import LoRALinear, average_low_rank


def _best_rank_r(mean: torch.Tensor, r: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(mean, full_matrices=False)
    return (u[:, :r] * s[:r]) @ vh[:r]


def test_average_low_rank_averages_the_updates_not_the_factors():
    """(A, B) and (-A, -B) hold the same update B A: the means of the factors are zero, the mean update is B A.
    Averaged apart, A and B gave final/ an adapter that did nothing."""
    torch.manual_seed(0)
    a, b = torch.randn(2, 7), torch.randn(5, 2)
    got_a, got_b, lost = average_low_rank([(a, b), (-a, -b)])
    assert got_a.shape == a.shape and got_b.shape == b.shape and got_a.dtype == a.dtype
    torch.testing.assert_close(got_b @ got_a, b @ a, atol=1e-5, rtol=1e-5)
    assert lost < 1e-6
    # the old average: (mean B)(mean A) = 0
    assert torch.count_nonzero(((b - b) / 2) @ ((a - a) / 2)) == 0


def test_average_low_rank_is_the_best_rank_r_approximation_of_the_mean_update():
    torch.manual_seed(1)
    pairs = [(torch.randn(3, 10, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)) for _ in range(3)]
    mean = sum(b @ a for a, b in pairs) / 3
    got_a, got_b, lost = average_low_rank(pairs)
    best = _best_rank_r(mean, 3)
    torch.testing.assert_close(got_b @ got_a, best)
    assert lost == pytest.approx(float((mean - best).norm() / mean.norm()))
    naive = (sum(b for _, b in pairs) / 3) @ (sum(a for a, _ in pairs) / 3)
    assert (mean - got_b @ got_a).norm() < (mean - naive).norm()
    # A with orthonormal rows: an untrained adapter (B = 0 everywhere) stays trainable, with B = 0
    torch.testing.assert_close(got_a @ got_a.T, torch.eye(3, dtype=torch.float64))
    zero_a, zero_b, zero_lost = average_low_rank([(a, torch.zeros_like(b)) for a, b in pairs])
    assert torch.count_nonzero(zero_b) == 0 and zero_lost == 0.0
    torch.testing.assert_close(zero_a @ zero_a.T, torch.eye(3, dtype=torch.float64))


def test_average_low_rank_keeps_half_precision_and_a_rank_above_the_dims():
    torch.manual_seed(2)
    pairs = [(torch.randn(6, 4).bfloat16(), torch.randn(3, 6).bfloat16()) for _ in range(2)]
    a, b, _ = average_low_rank(pairs)  # rank 6 > min(in=4, out=3): padded with empty directions
    assert a.shape == (6, 4) and b.shape == (3, 6) and a.dtype == b.dtype == torch.bfloat16
    mean = sum(b.double() @ a.double() for a, b in pairs) / 2
    torch.testing.assert_close(b.double() @ a.double(), mean, atol=0.05, rtol=0.02)


def _fit_ssl(tmp_path: Path, adapter: dict, epochs: int = 3) -> Path:
    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    encoder = {"name": "hubert_tiny", "dropout": 0.0}
    recipe = from_dict(
        TrainRecipe,
        {
            "seed": 0,
            "model": {"frontend": {"name": "ssl", "encoder": encoder, **adapter}, "backend": "linear"},
            "optimizer": {"lr": 5e-2},
            "data": {"batch_size": 8},
            "trainer": {
                "epochs": epochs,
                "keep_top_k": epochs,
                "average_top_k": epochs,
                "out_dir": str(tmp_path / "run"),
                "progress": False,
                "device": "cpu",
            },
        },
    )
    Trainer(recipe, train_data=SyntheticDataset(16, samples=4000), val_data=SyntheticDataset(8, 4000, seed=9)).fit()
    return tmp_path / "run"


def test_final_model_averages_lora_in_update_space(tmp_path: Path):
    """trainer.average_top_k: final/ holds, per LoRA layer, the rank-r truncation of the mean of the k
    checkpoints' updates (and records it); the other tensors are plain means as before."""
    from safetensors.torch import load_file

    from sddkit.detectors.model_dir import load_model_dir
    from sddkit.training import checkpoint as ckpt

    out = _fit_ssl(tmp_path, {"adapter": "lora", "lora": {"rank": 2}})
    final = load_model_dir(out / "final")
    names = final.metadata["checkpoints"]
    assert len(names) == 3
    states = [ckpt.load_checkpoint_tensors(out / "checkpoints" / n, "model/") for n in names]
    stored = load_file(str(out / "final" / "model.safetensors"))
    layers = [(n, m) for n, m in final.model.named_modules() if isinstance(m, LoRALinear)]
    assert layers
    worst = 0.0
    for name, _ in layers:
        a_key, b_key = f"{name}.lora_A", f"{name}.lora_B"
        mean = sum(s[b_key].double() @ s[a_key].double() for s in states) / 3
        best = _best_rank_r(mean, 2)
        got = stored[b_key].double() @ stored[a_key].double()
        torch.testing.assert_close(got, best, atol=1e-6, rtol=1e-4)
        worst = max(worst, float((mean - best).norm() / mean.norm()))
    assert final.metadata["lora_average"] == "rank-r truncation of the mean update B A"
    assert final.metadata["lora_average_loss"] == pytest.approx(worst, abs=1e-6)
    key = "backend.classifier.weight"
    torch.testing.assert_close(stored[key].double(), sum(s[key].double() for s in states) / 3, rtol=0, atol=1e-7)


def test_average_lora_states_leaves_identical_factors_bit_for_bit():
    """A frozen LoRA layer (a mixture's expert) is the same in every checkpoint: final/ keeps its A and B
    as they are, not as other factors of the same product."""
    from torch import nn

    from sddkit.frontends.lora import average_lora_states

    torch.manual_seed(3)
    model = nn.Sequential(
        LoRALinear(nn.Linear(6, 4), rank=2, alpha=2.0), LoRALinear(nn.Linear(4, 4), rank=2, alpha=2.0)
    )
    with torch.no_grad():
        model[0].lora_B.normal_()
        model[1].lora_B.normal_()
    first = {k: v.clone() for k, v in model.state_dict().items()}
    second = {**first, "1.lora_B": first["1.lora_B"] + 1.0}
    out, lost = average_lora_states(model, [first, second])
    assert set(out) == {"1.lora_A", "1.lora_B"} and lost < 1e-6  # the two updates share A's row space
    mean = (first["1.lora_B"] @ first["1.lora_A"] + second["1.lora_B"] @ second["1.lora_A"]) / 2
    torch.testing.assert_close(out["1.lora_B"] @ out["1.lora_A"], mean)


def test_readme_states_the_alpha_over_rank_convention():
    """The recipes keep alpha 2 at every rank; PEFT examples scale lora_alpha with r. README says which."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "`alpha / rank`" in readme and "`lora_alpha / r`" in readme
    assert LoRALinear(nn_linear(), rank=2, alpha=2.0).scale == 1.0
    assert LoRALinear(nn_linear(), rank=16, alpha=2.0).scale == 0.125


def nn_linear() -> torch.nn.Linear:
    return torch.nn.Linear(32, 32)


def test_final_model_averages_molex_experts_in_update_space(tmp_path: Path):
    """MoLEx experts were averaged factor by factor (the mean of each expert's A times the mean of its B is not
    its mean update); final/ now holds each expert's rank-r truncation of its mean update B_e A_e."""
    from safetensors.torch import load_file

    from sddkit.detectors.model_dir import load_model_dir
    from sddkit.frontends.molex import MoLExLinear
    from sddkit.training import checkpoint as ckpt

    out = _fit_ssl(tmp_path, {"adapter": "molex", "molex": {"num_experts": 2, "rank": 2}}, epochs=2)
    final = load_model_dir(out / "final")
    names = final.metadata["checkpoints"]
    states = [ckpt.load_checkpoint_tensors(out / "checkpoints" / n, "model/") for n in names]
    stored = load_file(str(out / "final" / "model.safetensors"))
    layers = [n for n, m in final.model.named_modules() if isinstance(m, MoLExLinear)]
    assert layers and final.metadata["lora_average"] == "rank-r truncation of the mean update B A"
    for name in layers:
        a_key, b_key = f"{name}.lora_A.0", f"{name}.lora_B.0"
        for e in range(2):
            mean = sum(s[b_key][e].double() @ s[a_key][e].double() for s in states) / len(states)
            got = stored[b_key][e].double() @ stored[a_key][e].double()
            torch.testing.assert_close(got, _best_rank_r(mean, 2), atol=1e-6, rtol=1e-4)
    router = next(k for k in stored if ".router." in k and stored[k].is_floating_point())
    torch.testing.assert_close(
        stored[router].double(), sum(s[router].double() for s in states) / len(states), rtol=0, atol=1e-7
    )


def test_updates_that_cancel_average_to_no_update_without_a_loss_warning():
    # (A, B) and (A, -B) hold opposite updates: their mean is zero up to rounding, which the rank-r truncation
    # reported as a loss of ~10 % (a warning about nothing) and kept as a B of ~1e-15
    from sddkit.frontends.lora import average_low_rank

    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 32, generator=g)
    b = torch.randn(24, 4, generator=g)
    a_avg, b_avg, lost = average_low_rank([(a, b), (a, -b)])
    assert lost == 0.0
    assert torch.count_nonzero(b_avg) == 0 and a_avg.shape == a.shape
