"""Review checks of the back-ends, gates and detector mixtures (defects found in review)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sddkit.registry import get_registry

GATES = get_registry("gate")


def _gate(name: str, dims: list[int], **cfg):
    return GATES.build({"name": name, **cfg}, num_experts=len(dims), embedding_dims=dims)


@pytest.mark.parametrize("name", ["classic", "enhanced_mlp", "attention", "average"])
@pytest.mark.parametrize("dims", [[4, 6], [5]])
def test_gates_train_on_a_batch_of_one(name, dims):
    # before: classic and enhanced_mlp raised "Expected more than 1 value per channel when training"
    # (their batch norms cannot take batch statistics of one row; MLDG halves or batch_size 1 give such batches)
    torch.manual_seed(0)
    gate = _gate(name, dims).train()
    # buffers of the batch norms that see one row (the enhanced gate's shared norm sees one row per expert)
    one_row = {k: v.clone() for k, v in gate.state_dict().items() if "running" in k}
    if len(dims) > 1:
        one_row = {k: v for k, v in one_row.items() if not k.startswith("shared_norm.")}
    w = gate(torch.randn(1, 4000), [torch.randn(1, d) for d in dims])
    assert w.shape == (1, len(dims))
    torch.testing.assert_close(w.sum(-1), torch.ones(1))
    if len(dims) > 1 and name != "average":
        w[0, 0].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gate.parameters())
    for k, v in one_row.items():  # no batch statistics from one row: running statistics stay as they were
        assert torch.equal(gate.state_dict()[k], v), k


def test_enhanced_gate_shared_norm_gives_the_same_weights_in_train_and_eval():
    # The shared batch norm used to be called once per expert: in training each expert's projection was
    # standardised by its own batch statistics, in eval by running statistics blended over the experts, so
    # a converged gate gave different weights in eval (max |diff| 0.50 here) than the ones it was trained with.
    torch.manual_seed(0)
    gate = _gate("enhanced_mlp", [4, 6], dropout=0.0, hidden=16)
    embeddings = [torch.randn(512, 4) + 3.0, torch.randn(512, 6) - 2.0]  # experts on different scales
    gate.train()
    with torch.no_grad():
        for _ in range(200):  # running statistics converge to this (fixed) batch's statistics
            w_train = gate(None, embeddings)
        w_eval = gate.eval()(None, embeddings)
    torch.testing.assert_close(w_eval, w_train, atol=1e-2, rtol=0)


# --- AASIST against an independent, functional transcription of the reference forward (clovaai/aasist) ---


def _reference_sinc(n_filters: int, kernel: int, sr: int = 16000) -> torch.Tensor:
    kernel += 1 - kernel % 2
    to_mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731
    to_hz = lambda mel: 700 * (10 ** (mel / 2595) - 1)  # noqa: E731
    fmel = to_mel(int(sr / 2) * np.linspace(0, 1, 257))
    edges = to_hz(np.linspace(fmel.min(), fmel.max(), n_filters + 1))
    hsupp = np.arange(-(kernel - 1) / 2, (kernel - 1) / 2 + 1)
    rows = [
        np.hamming(kernel)
        * ((2 * hi / sr) * np.sinc(2 * hi * hsupp / sr) - (2 * lo / sr) * np.sinc(2 * lo * hsupp / sr))
        for lo, hi in zip(edges[:-1], edges[1:])
    ]
    return torch.tensor(np.stack(rows), dtype=torch.float32).unsqueeze(1)


def _reference_forward(s: dict, cfg: dict, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode logits of the published ``Model`` from its state dict ``s`` (published key names)."""
    F = torch.nn.functional

    def lin(v, p):
        return F.linear(v, s[p + "weight"], s[p + "bias"])

    def bn(v, p):
        shape = v.shape
        if v.dim() == 3:
            v = v.reshape(-1, shape[-1])
        out = F.batch_norm(v, s[p + "running_mean"], s[p + "running_var"], s[p + "weight"], s[p + "bias"], False)
        return out.reshape(shape)

    def pairwise(v):
        n = v.shape[1]
        v = v.unsqueeze(2).expand(-1, -1, n, -1)
        return v * v.transpose(1, 2)

    def gat(v, p, temp):
        att = torch.matmul(torch.tanh(lin(pairwise(v), p + "att_proj.")), s[p + "att_weight"]) / temp
        att = F.softmax(att, dim=-2)
        out = lin(torch.matmul(att.squeeze(-1), v), p + "proj_with_att.") + lin(v, p + "proj_without_att.")
        return F.selu(bn(out, p + "bn."))

    def htrg(x1, x2, master, p, temp):
        n1 = x1.shape[1]
        v = torch.cat([lin(x1, p + "proj_type1."), lin(x2, p + "proj_type2.")], dim=1)
        a = torch.tanh(lin(pairwise(v), p + "att_proj."))
        board = torch.zeros_like(a[..., :1])
        board[:, :n1, :n1] = a[:, :n1, :n1] @ s[p + "att_weight11"]
        board[:, n1:, n1:] = a[:, n1:, n1:] @ s[p + "att_weight22"]
        board[:, :n1, n1:] = a[:, :n1, n1:] @ s[p + "att_weight12"]
        board[:, n1:, :n1] = a[:, n1:, :n1] @ s[p + "att_weight12"]
        att = F.softmax(board / temp, dim=-2)
        am = F.softmax(torch.tanh(lin(v * master, p + "att_projM.")) @ s[p + "att_weightM"] / temp, dim=-2)
        master = lin(am.squeeze(-1).unsqueeze(1) @ v, p + "proj_with_attM.") + lin(master, p + "proj_without_attM.")
        out = lin(att.squeeze(-1) @ v, p + "proj_with_att.") + lin(v, p + "proj_without_att.")
        out = F.selu(bn(out, p + "bn."))
        return out[:, :n1], out[:, n1:], master

    def pool(h, p, k):
        scores = torch.sigmoid(lin(h, p + "proj."))
        n = max(int(h.shape[1] * k), 1)
        idx = torch.topk(scores, n, dim=1).indices.expand(-1, -1, h.shape[2])
        return torch.gather(h * scores, 1, idx)

    def block(v, p):  # as published: the pre-activation bn1/SELU output is discarded
        out = F.conv2d(v, s[p + "conv1.weight"], s[p + "conv1.bias"], padding=(1, 1))
        out = F.conv2d(F.selu(bn(out, p + "bn2.")), s[p + "conv2.weight"], s[p + "conv2.bias"], padding=(0, 1))
        if p + "conv_downsample.weight" in s:
            v = F.conv2d(v, s[p + "conv_downsample.weight"], s[p + "conv_downsample.bias"], padding=(0, 1))
        return F.max_pool2d(out + v, (1, 3))

    pr, tp = cfg["pool_ratios"], cfg["temperatures"]
    v = F.conv1d(x.unsqueeze(1), _reference_sinc(cfg["filts"][0], cfg["first_conv"])).unsqueeze(1)
    v = F.selu(bn(F.max_pool2d(v.abs(), (3, 3)), "first_bn."))
    for i in range(6):
        v = block(v, f"encoder.{i}.0.")
    e_s = v.abs().amax(dim=3).transpose(1, 2) + s["pos_S"]
    out_s = pool(gat(e_s, "GAT_layer_S.", tp[0]), "pool_S.", pr[0])
    out_t = pool(gat(v.abs().amax(dim=2).transpose(1, 2), "GAT_layer_T.", tp[1]), "pool_T.", pr[1])
    branches = []
    for b in (1, 2):
        t, sp, m = htrg(out_t, out_s, s[f"master{b}"], f"HtrgGAT_layer_ST{b}1.", tp[2])
        sp, t = pool(sp, f"pool_hS{b}.", pr[2]), pool(t, f"pool_hT{b}.", pr[2])
        ta, sa, ma = htrg(t, sp, m, f"HtrgGAT_layer_ST{b}2.", tp[2])
        branches.append((t + ta, sp + sa, m + ma))
    t, sp, m = (torch.maximum(branches[0][k], branches[1][k]) for k in range(3))
    hidden = torch.cat([t.abs().amax(1), t.mean(1), sp.abs().amax(1), sp.mean(1), m.squeeze(1)], dim=1)
    return lin(hidden, "out_layer.")


@pytest.mark.parametrize("variant", ["aasist", "aasist_l"])
@torch.no_grad()
def test_imported_layout_runs_as_the_reference_forward(variant):
    from sddkit.backends.aasist_import import reference_to_sddkit, sddkit_to_reference

    torch.manual_seed(0)
    model = get_registry("backend").build({"name": variant, "reference_compat": True})
    for m in model.modules():  # non-trivial eval-mode batch norms
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0.0, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.normal_(1.0, 0.3)
            m.bias.data.normal_(0.0, 0.3)
    published = sddkit_to_reference(model.state_dict())  # the state dict a published file holds
    fresh = get_registry("backend").build({"name": variant, "reference_compat": True})
    fresh.load_state_dict(reference_to_sddkit(published), strict=True)
    fresh.eval()
    c = fresh.sinc  # the published configs, as the back-end's defaults
    cfg = {
        "filts": [c.filters.shape[0]],
        "first_conv": 128,
        "pool_ratios": get_registry("backend").parse(variant).config.pool_ratios,
        "temperatures": get_registry("backend").parse(variant).config.temperatures,
    }
    for samples in (2315, 9000):
        x = 0.1 * torch.randn(2, samples)
        torch.testing.assert_close(fresh(x).logits, _reference_forward(published, cfg, x), atol=2e-5, rtol=1e-4)
