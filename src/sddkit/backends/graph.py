"""Spectro-temporal graph attention, shared by AASIST and the SSL-AASIST head (Jung et al., ICASSP 2022).

A graph here is a batch of node sequences ``(B, N, D)``; every node is connected to every other.

- :class:`GraphAttentionLayer` (GAT): attention over one node type (spectral or temporal nodes).
- :class:`HeteroGraphAttentionLayer` (HS-GAL): attention over two node types (temporal + spectral)
  with one attention vector per edge type, plus a *stack* ("master") node that reads from every
  node through one-way edges.
- :class:`GraphPool`: keeps the top-k nodes by a learnt sigmoid score (and scales them by it).
- :class:`HeteroBranch`: HS-GAL -> pool -> HS-GAL (residual), one of AASIST's two parallel paths.
- :class:`SpectroTemporalGraph`: spectral/temporal node sequences -> the ``5 * gat_dims[1]``
  read-out (max |.| and mean of both node types + the stack node).

Parameter names follow clovaai/aasist (``att_proj``, ``att_weight11``, ``proj_with_attM``...) so
the published weights map onto these modules by prefix only (see ``backends/aasist_import.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GAT_INPUT_DROPOUT = 0.2  # dropout on a graph layer's input nodes (published value)
POOL_SCORE_DROPOUT = 0.3  # dropout on the nodes a pooling layer scores (published value)
BRANCH_DROPOUT = 0.2  # dropout on each branch's output before the branch-wise max (published value)


def _attention_vector(dim: int) -> nn.Parameter:
    """(dim, 1) projection of a pair's hidden vector to one attention logit, Xavier-normal initialised."""
    weight = nn.Parameter(torch.empty(dim, 1))
    nn.init.xavier_normal_(weight)
    return weight


def _pairwise_products(x: Tensor) -> Tensor:
    """(B, N, D) -> (B, N, N, D) with entry [b, i, j] = x[b, i] * x[b, j]."""
    return x.unsqueeze(2) * x.unsqueeze(1)


def _node_batch_norm(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """Batch norm over every node of every graph: (B, N, D) -> (B, N, D).

    A single node in training (batch of one short input: AASIST at its minimum length has one
    temporal node) has no batch variance and torch refuses it; it is normalised with the running
    statistics, which it leaves unchanged, as in eval mode.
    """
    b, n, d = x.shape
    rows = x.reshape(b * n, d)
    if bn.training and b * n == 1 and bn.track_running_stats:
        out = F.batch_norm(rows, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return out.reshape(b, n, d)
    return bn(rows).reshape(b, n, d)


class GraphAttentionLayer(nn.Module):
    """GAT over one node type: (B, N, in_dim) -> (B, N, out_dim).

    Attention between nodes i, j: ``softmax_j(w . tanh(W_a (x_i * x_j)) / temperature)``; the output
    is ``W_1 (sum_j a_ij x_j) + W_2 x_i``, batch-normalised over nodes, then SELU.
    """

    def __init__(self, in_dim: int, out_dim: int, *, temperature: float = 1.0):
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _attention_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(GAT_INPUT_DROPOUT)
        self.temperature = temperature

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_drop(x)
        hidden = torch.tanh(self.att_proj(_pairwise_products(x)))  # (B, N, N, out)
        logits = torch.matmul(hidden, self.att_weight).squeeze(-1) / self.temperature  # (B, N, N)
        att = torch.softmax(logits, dim=-1)
        out = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        return F.selu(_node_batch_norm(self.bn, out))


class HeteroGraphAttentionLayer(nn.Module):
    """HS-GAL: two node types and a stack node.

    forward(x1 (B, N1, in), x2 (B, N2, in), master (B, 1, in)) -> (x1' (B, N1, out), x2' (B, N2, out),
    master' (B, 1, out)). In AASIST type 1 is temporal and type 2 spectral. Edges within type 1,
    within type 2 and across types each have their own attention vector (``att_weight11/22/12``;
    both cross directions share ``att_weight12``). The stack node attends to every node
    (``softmax_i(w_M . tanh(W_M (x_i * m)) / temperature)``) but no node reads from it: the edges are one-way.
    """

    def __init__(self, in_dim: int, out_dim: int, *, temperature: float = 1.0):
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        self.att_weight11 = _attention_vector(out_dim)
        self.att_weight22 = _attention_vector(out_dim)
        self.att_weight12 = _attention_vector(out_dim)
        self.att_weightM = _attention_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(GAT_INPUT_DROPOUT)
        self.temperature = temperature

    def _edge_logits(self, x: Tensor, n1: int) -> Tensor:
        """(B, N, in) -> (B, N, N) attention logits, each edge scored by its type's vector."""
        hidden = torch.tanh(self.att_proj(_pairwise_products(x)))  # (B, N, N, out)
        vectors = torch.cat([self.att_weight11, self.att_weight22, self.att_weight12], dim=1)  # (out, 3)
        scores = torch.matmul(hidden, vectors)  # (B, N, N, 3): the logit under each edge type
        is_type2 = torch.arange(x.shape[1], device=x.device) >= n1
        same_type = is_type2.unsqueeze(0) == is_type2.unsqueeze(1)
        edge_type = torch.where(same_type, is_type2.long().unsqueeze(0).expand_as(same_type), 2)  # (N, N)
        index = edge_type.expand(x.shape[0], -1, -1).unsqueeze(-1)
        return scores.gather(-1, index).squeeze(-1)

    def _update_master(self, x: Tensor, master: Tensor) -> Tensor:
        hidden = torch.tanh(self.att_projM(x * master))  # (B, N, out)
        logits = torch.matmul(hidden, self.att_weightM) / self.temperature  # (B, N, 1)
        att = torch.softmax(logits, dim=1).transpose(1, 2)  # (B, 1, N)
        return self.proj_with_attM(torch.matmul(att, x)) + self.proj_without_attM(master)

    def forward(self, x1: Tensor, x2: Tensor, master: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n1, n2 = x1.shape[1], x2.shape[1]
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)
        x = self.input_drop(x)
        att = torch.softmax(self._edge_logits(x, n1) / self.temperature, dim=-1)  # (B, N, N)
        master = self._update_master(x, master)
        out = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        out = F.selu(_node_batch_norm(self.bn, out))
        return out.narrow(1, 0, n1), out.narrow(1, n1, n2), master


class GraphPool(nn.Module):
    """Top-k node selection: (B, N, D) -> (B, max(int(N * ratio), 1), D).

    Nodes are scored by ``sigmoid(w . x)``, scaled by their score (so the scorer gets gradients),
    and the highest-scoring ones are kept in descending score order.
    """

    def __init__(self, ratio: float, dim: int, dropout: float = POOL_SCORE_DROPOUT):
        super().__init__()
        self.ratio = ratio
        self.proj = nn.Linear(dim, 1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h: Tensor) -> Tensor:
        scores = torch.sigmoid(self.proj(self.drop(h)))  # (B, N, 1)
        _, n, d = h.shape
        keep = max(int(n * self.ratio), 1)
        index = torch.topk(scores, keep, dim=1).indices.expand(-1, -1, d)
        return torch.gather(h * scores, 1, index)


class HeteroBranch(nn.Module):
    """One inference path: stack node + HS-GAL -> pool both types -> HS-GAL with a residual.

    forward(temporal (B, Nt, gat_dims[0]), spectral (B, Ns, gat_dims[0])) ->
    (temporal (B, Nt', gat_dims[1]), spectral (B, Ns', gat_dims[1]), master (B, 1, gat_dims[1])).
    """

    def __init__(self, gat_dims: Sequence[int], *, pool_ratio: float, temperature: float):
        super().__init__()
        self.master = nn.Parameter(torch.randn(1, 1, gat_dims[0]))
        self.hsgal1 = HeteroGraphAttentionLayer(gat_dims[0], gat_dims[1], temperature=temperature)
        self.pool_spectral = GraphPool(pool_ratio, gat_dims[1])
        self.pool_temporal = GraphPool(pool_ratio, gat_dims[1])
        self.hsgal2 = HeteroGraphAttentionLayer(gat_dims[1], gat_dims[1], temperature=temperature)

    def forward(self, temporal: Tensor, spectral: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        master = self.master.expand(temporal.shape[0], -1, -1)
        t, s, m = self.hsgal1(temporal, spectral, master)
        s = self.pool_spectral(s)
        t = self.pool_temporal(t)
        t_aug, s_aug, m_aug = self.hsgal2(t, s, m)
        return t + t_aug, s + s_aug, m + m_aug


class SpectroTemporalGraph(nn.Module):
    """Spectral nodes (B, Ns, in_dim) + temporal nodes (B, Nt, in_dim) -> read-out (B, 5 * gat_dims[1]).

    A learnt positional embedding is added to the spectral nodes (their count ``n_spectral`` is
    fixed by the architecture; the temporal count follows the input length). Each node type goes
    through its own GAT and pool; two parallel :class:`HeteroBranch` es follow and are merged by an
    element-wise max (node i of branch 1 against node i of branch 2). The read-out concatenates
    max |.| and mean over temporal nodes, the same over spectral nodes, and the stack node.

    pool_ratios: (spectral GAT, temporal GAT, HS-GAL pools, unused); temperatures: (spectral GAT,
    temporal GAT, HS-GAL, unused). Index 3 of both is unused, as in the published model, whose
    configs list four values but read only the first three.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        n_spectral: int,
        gat_dims: Sequence[int],
        pool_ratios: Sequence[float],
        temperatures: Sequence[float],
    ):
        super().__init__()
        self.n_spectral = n_spectral
        self.out_dim = 5 * gat_dims[1]
        self.spectral_pos = nn.Parameter(torch.randn(1, n_spectral, in_dim))
        self.gat_spectral = GraphAttentionLayer(in_dim, gat_dims[0], temperature=temperatures[0])
        self.gat_temporal = GraphAttentionLayer(in_dim, gat_dims[0], temperature=temperatures[1])
        self.pool_spectral = GraphPool(pool_ratios[0], gat_dims[0])
        self.pool_temporal = GraphPool(pool_ratios[1], gat_dims[0])
        self.branches = nn.ModuleList(
            HeteroBranch(gat_dims, pool_ratio=pool_ratios[2], temperature=temperatures[2]) for _ in range(2)
        )
        self.branch_drop = nn.Dropout(BRANCH_DROPOUT)

    def forward(self, spectral: Tensor, temporal: Tensor) -> Tensor:
        if spectral.shape[1] != self.n_spectral:
            raise ValueError(f"expected {self.n_spectral} spectral nodes, got {spectral.shape[1]}")
        s = self.pool_spectral(self.gat_spectral(spectral + self.spectral_pos))
        t = self.pool_temporal(self.gat_temporal(temporal))
        outputs = [branch(t, s) for branch in self.branches]
        t, s, master = (torch.maximum(*(self.branch_drop(o[k]) for o in outputs)) for k in range(3))
        return torch.cat(
            [t.abs().amax(dim=1), t.mean(dim=1), s.abs().amax(dim=1), s.mean(dim=1), master.squeeze(1)], dim=1
        )
