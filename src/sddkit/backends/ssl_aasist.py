"""SSL-AASIST head (Tak et al., "Automatic speaker verification spoofing and deepfake detection using
wav2vec 2.0 and data augmentation", Odyssey 2022; reference code TakHemlata/SSL_Anti-spoofing ``model.py``).

The AASIST graph back-end on top of a self-supervised encoder instead of the sinc front-end:

encoder frames (B, N, D)
  -> linear D -> ``proj_dim`` (128), as a 2-D map (B, 1, proj_dim, N)
  -> 3x3 max-pool, batch norm, SELU                                    -> (B, 1, 42, N // 3)
  -> 6 residual blocks without time pooling, batch norm, SELU          -> (B, C, 42, N // 3)
  -> a 1x1-conv attention map ``w``; spectral nodes = sum over time of x * softmax_time(w),
     temporal nodes = sum over frequency of x * softmax_freq(w)
  -> :class:`~sddkit.backends.graph.SpectroTemporalGraph` (the AASIST modules, reused)
  -> dropout -> linear -> logits (B, 2)

With D = 1024 (XLS-R 300M) the head has 447,242 trainable parameters, the linear projection
(131,200) included, the same count as the reference's non-SSL modules. The residual blocks
share AASIST's: by default their pre-activation is used; ``reference_compat=True`` skips it as
the reference code does (see ``backends/aasist.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sddkit.backends import BACKENDS
from sddkit.backends.aasist import Pair, build_encoder, check_channel_chain, check_graph_config
from sddkit.backends.graph import SpectroTemporalGraph
from sddkit.backends.heads import ClassifierConfig, build_classifier
from sddkit.backends.layout import require_layout
from sddkit.detectors.outputs import BackendOutput
from sddkit.errors import ConfigError


@dataclass
class SSLAASISTConfig(ClassifierConfig):
    """The reference SSL-AASIST head. filts: (in, out) channels of residual blocks 1-4 (5, 6 repeat 4)."""

    proj_dim: int = 128
    filts: tuple[Pair, Pair, Pair, Pair] = ((1, 32), (32, 32), (32, 64), (64, 64))
    attention_dim: int = 128  # hidden channels of the 1x1-conv attention map
    gat_dims: tuple[int, int] = (64, 32)
    pool_ratios: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 0.5)
    temperatures: tuple[float, float, float, float] = (2.0, 2.0, 100.0, 100.0)
    dropout: float = 0.5
    reference_compat: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.proj_dim < 3 or self.attention_dim <= 0:
            raise ValueError(f"need proj_dim >= 3 and attention_dim > 0, got {self.proj_dim}, {self.attention_dim}")
        pairs = [tuple(p) for p in self.filts]
        check_channel_chain(pairs, first_in=1)
        if pairs[-1][0] != pairs[-1][1]:
            raise ValueError(f"the last block pair is repeated, so it must keep its channel count: {pairs[-1]}")
        check_graph_config(self.gat_dims, self.pool_ratios, self.temperatures, self.dropout)


class SSLAASISTHead(nn.Module):
    """Encoder frames (B, N, in_dim) -> BackendOutput(logits (B, 2), embedding (B, 5 * gat_dims[1]))."""

    def __init__(self, in_dim: int, cfg: SSLAASISTConfig):
        super().__init__()
        pairs = [tuple(p) for p in cfg.filts]
        pairs += [pairs[-1], pairs[-1]]
        channels = pairs[-1][1]
        self.in_dim = in_dim
        self.proj = nn.Linear(in_dim, cfg.proj_dim)
        self.input_bn = nn.BatchNorm2d(1)
        self.encoder = build_encoder(pairs, pool=False, reference_compat=cfg.reference_compat)
        self.encoder_bn = nn.BatchNorm2d(channels)
        self.attention = nn.Sequential(
            nn.Conv2d(channels, cfg.attention_dim, kernel_size=1),
            nn.SELU(),
            nn.BatchNorm2d(cfg.attention_dim),
            nn.Conv2d(cfg.attention_dim, channels, kernel_size=1),
        )
        self.graph = SpectroTemporalGraph(
            in_dim=channels,
            n_spectral=cfg.proj_dim // 3,
            gat_dims=cfg.gat_dims,
            pool_ratios=cfg.pool_ratios,
            temperatures=cfg.temperatures,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = build_classifier(cfg, self.graph.out_dim)
        self.embedding_dim = self.graph.out_dim

    def forward(self, features: Tensor) -> BackendOutput:
        if features.dim() != 3 or features.shape[-1] != self.in_dim:
            raise ValueError(f"expected encoder frames (B, N, {self.in_dim}), got shape {tuple(features.shape)}")
        if features.shape[1] < 3:
            raise ValueError(f"SSL-AASIST needs at least 3 frames, got {features.shape[1]}")
        x = self.proj(features).transpose(1, 2).unsqueeze(1)  # (B, 1, proj_dim, N)
        x = F.selu(self.input_bn(F.max_pool2d(x, (3, 3))))
        x = F.selu(self.encoder_bn(self.encoder(x)))  # (B, C, F, T)
        w = self.attention(x)
        spectral = (x * torch.softmax(w, dim=-1)).sum(dim=-1).transpose(1, 2)  # (B, F, C)
        temporal = (x * torch.softmax(w, dim=-2)).sum(dim=-2).transpose(1, 2)  # (B, T, C)
        hidden = self.graph(spectral, temporal)
        return BackendOutput(logits=self.classifier(self.dropout(hidden)), embedding=hidden)


@BACKENDS.register("ssl_aasist", config=SSLAASISTConfig)
def build_ssl_aasist(
    cfg: SSLAASISTConfig, *, in_dim: int | None = None, feature_layout: str | None = None, **_: object
) -> SSLAASISTHead:
    """SSL-AASIST head (Tak et al. 2022) on encoder frames (B, N, D); 447,242 parameters at D = 1024."""
    if in_dim is None:
        raise ConfigError("backend 'ssl_aasist' needs encoder features (B, N, D), not the raw waveform")
    require_layout("ssl_aasist", "frames", feature_layout)
    return SSLAASISTHead(in_dim, cfg)
