"""AASIST and AASIST-L (Jung et al., "AASIST: Audio Anti-Spoofing using Integrated Spectro-Temporal
Graph Attention Networks", ICASSP 2022; reference code clovaai/aasist ``models/AASIST.py``).

waveform (B, T) at 16 kHz
  -> sinc conv: ``filts[0]`` fixed mel-spaced band-pass filters of ``first_conv`` taps (made odd:
     128 -> 129), |.|, 3x3 max-pool over (filter, time), batch norm, SELU    -> (B, 1, F, T')
  -> 6 residual blocks (2-D conv, (1, 3) max-pool over time each)            -> (B, C, F', T'')
  -> spectral nodes = max over time of |e| (+ positional embedding), temporal nodes = max over
     frequency of |e| -> :class:`~sddkit.backends.graph.SpectroTemporalGraph` -> (B, 5 * gat_dims[1])
  -> dropout -> linear -> logits (B, 2) over (spoof, bona fide)

Published sizes: AASIST 297,866 parameters, AASIST-L 85,306. Any input of at least
:attr:`AASIST.min_samples` samples (2,315 with the published filters) works; the published
models were trained on 64,600-sample (4.0375 s) windows.

Deviations from the reference code (``reference_compat=False``, the default):

1. Residual blocks: the reference computes the pre-activation ``out = selu(bn1(x))`` and then
   calls ``out = conv1(x)``, so ``bn1`` and that SELU are dead code (``bn2`` *is* used). Here
   ``conv1`` takes the pre-activated input, as intended. With ``reference_compat=True`` the
   pre-activation is skipped, which reproduces the published weights' behaviour exactly; ``bn1``
   is then never evaluated (its running statistics stay as loaded, which never affects outputs).
2. Stack ("master") nodes: the reference computes ``master1 = self.master1.expand(B, -1, -1)``
   and then passes the unexpanded parameter ``self.master1`` to the first HS-GAL, so the expanded
   tensor is never used. Every use of the stack node broadcasts over the batch, so both give the
   same numbers; we pass the expanded node in both modes (no switch needed).
3. Kept as published in both modes (not bugs, or changing them would change the published
   architecture): ``pool_ratios[3]`` and ``temperatures[3]`` are listed in the configs but never
   read (all four HS-GAL pools use ``pool_ratios[2]``, all HS-GALs ``temperatures[2]``); |.| after
   the sinc conv and the 3x3 max-pool that also pools over filters; ``filts[0]`` is the number
   of sinc filters and ``first_conv`` their length (not the other way round); the number of
   spectral nodes is ``filts[0] // 3`` (the reference hard-codes 23).
4. The reference's ``Freq_aug`` (zeroing a random band of 0-19 consecutive sinc filters, the same
   band for the whole batch) is ``freq_mask=True`` here and is applied in training only (the
   reference applied it whenever the caller asked, and its training loop asked only in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sddkit.backends import BACKENDS
from sddkit.backends.fastpath import channels_last_on_cpu, conv_bn, inference_fast_path, max_pool_over_time
from sddkit.backends.graph import SpectroTemporalGraph
from sddkit.backends.heads import ClassifierConfig, build_classifier
from sddkit.detectors.outputs import BackendOutput
from sddkit.errors import ConfigError

SAMPLE_RATE = 16000
FREQ_MASK_MAX_WIDTH = 20  # the reference draws the masked band width from [0, 20)

Pair = tuple[int, int]


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_sinc_filters(n_filters: int, kernel_size: int, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """(n_filters, kernel_size) Hamming-windowed ideal band-pass filters with mel-spaced edges.

    Band edges are ``n_filters + 1`` points equally spaced on the mel scale between 0 Hz and
    Nyquist; filter i passes [edge_i, edge_{i+1}]. Computed in float64, returned as float32.
    """
    nyquist = sample_rate // 2
    mel = _hz_to_mel(nyquist * np.linspace(0.0, 1.0, 257))  # the reference samples a 512-point FFT grid
    edges = _mel_to_hz(np.linspace(mel.min(), mel.max(), n_filters + 1))
    n = np.arange(kernel_size) - (kernel_size - 1) / 2
    window = np.hamming(kernel_size)

    def low_pass(cutoff: np.ndarray) -> np.ndarray:  # (n_filters, 1) cut-offs -> (n_filters, kernel_size)
        return (2 * cutoff / sample_rate) * np.sinc(2 * cutoff * n / sample_rate)

    bands = low_pass(edges[1:, None]) - low_pass(edges[:-1, None])
    return torch.from_numpy(window * bands).float()


class SincConv(nn.Module):
    """Fixed mel-spaced sinc filter bank: (B, T) -> (B, n_filters, T - kernel_size + 1).

    The filters are not learnt; they live in a non-persistent buffer (rebuilt from the config,
    never saved), matching the published state dicts, which carry no filter weights.
    """

    def __init__(self, n_filters: int, kernel_size: int, *, freq_mask: bool = False):
        super().__init__()
        kernel_size += 1 - kernel_size % 2  # odd length: symmetric, zero-phase filters
        self.kernel_size = kernel_size
        self.freq_mask = freq_mask
        self.register_buffer("filters", mel_sinc_filters(n_filters, kernel_size).unsqueeze(1), persistent=False)

    def _masked_filters(self) -> Tensor:
        """Filters with a random band of 0..19 consecutive filters zeroed (the reference's Freq_aug).

        With fewer than 19 filters the band is at most all of them (the reference crashed there).
        """
        filters = self.filters.clone()
        width = int(torch.randint(0, min(FREQ_MASK_MAX_WIDTH, filters.shape[0] + 1), ()))
        start = int(torch.randint(0, filters.shape[0] - width + 1, ()))
        filters[start : start + width] = 0.0
        return filters

    def forward(self, waveform: Tensor) -> Tensor:
        filters = self._masked_filters() if (self.freq_mask and self.training) else self.filters
        return F.conv1d(waveform.unsqueeze(1), filters.to(waveform.dtype))


class ResidualBlock(nn.Module):
    """Pre-activation 2-D residual block: (B, C_in, H, W) -> (B, C_out, H, W // 3 if pool else W).

    ``[bn1 -> SELU ->] conv1 (2x3) -> bn2 -> SELU -> conv2 (2x3)``, plus the input (through a 1x3
    conv when the channel count changes), then an optional (1, 3) max-pool over time. The first
    block of an encoder has no ``bn1`` (its input is already normalised). ``reference_compat``
    skips the pre-activation, as the published code does (see the module docstring).
    """

    def __init__(self, in_channels: int, out_channels: int, *, first: bool, pool: bool, reference_compat: bool):
        super().__init__()
        self.first = first
        self.reference_compat = reference_compat
        if not first:
            self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(2, 3), padding=(0, 1))
        self.downsample = (
            nn.Conv2d(in_channels, out_channels, kernel_size=(1, 3), padding=(0, 1))
            if in_channels != out_channels
            else None
        )
        self.pool = nn.MaxPool2d((1, 3)) if pool else nn.Identity()

    def _bypassed(self) -> tuple[nn.Module, ...]:
        """The sub-modules the inference path computes without calling (``conv1``, ``bn2``, the pool), and those whose
        outputs it overwrites in place (``bn1``, ``conv2``): a forward hook on one of the latter recorded the
        activated or summed tensor, not the module's output."""
        called = (self.conv2,) if (self.first or self.reference_compat) else (self.bn1, self.conv2)
        return (self.conv1, self.bn2, self.pool, *called)

    def forward(self, x: Tensor) -> Tensor:
        if inference_fast_path(self, bypassed=self._bypassed()):
            return self._forward_inference(x)
        out = x if (self.first or self.reference_compat) else F.selu(self.bn1(x))
        out = self.conv2(F.selu(self.bn2(self.conv1(out))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.pool(out + identity)

    def _forward_inference(self, x: Tensor) -> Tensor:
        """forward's values (up to float rounding) with ``bn2`` folded into ``conv1`` and in-place activations: no
        autograd to serve, and each of those passes over a block's largest tensors cost a fifth to a quarter of its
        convolution's time."""
        out = x if (self.first or self.reference_compat) else F.selu(self.bn1(x), inplace=True)
        out = self.conv2(F.selu(conv_bn(self.conv1, self.bn2, out), inplace=True))
        out += x if self.downsample is None else self.downsample(x)
        return max_pool_over_time(out, self.pool.kernel_size[1]) if isinstance(self.pool, nn.MaxPool2d) else out


def build_encoder(channels: list[Pair], *, pool: bool, reference_compat: bool) -> nn.Sequential:
    """Residual blocks for ``channels`` = [(in, out), ...]; the first block has no pre-activation."""
    return nn.Sequential(
        *(
            ResidualBlock(c_in, c_out, first=i == 0, pool=pool, reference_compat=reference_compat)
            for i, (c_in, c_out) in enumerate(channels)
        )
    )


def check_graph_config(gat_dims: tuple, pool_ratios: tuple, temperatures: tuple, dropout: float) -> None:
    if min(gat_dims) <= 0:
        raise ValueError(f"gat_dims must be positive, got {gat_dims}")
    if not all(0.0 < r <= 1.0 for r in pool_ratios):
        raise ValueError(f"pool_ratios must be in (0, 1], got {pool_ratios}")
    if min(temperatures) <= 0:
        raise ValueError(f"temperatures must be positive, got {temperatures}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def check_channel_chain(pairs: list[Pair], first_in: int) -> None:
    """Residual block channel pairs must chain: block i's output = block i+1's input."""
    if pairs[0][0] != first_in:
        raise ValueError(f"the first block must take {first_in} channel(s), got {pairs[0]}")
    for (_, c_out), (c_in, _) in zip(pairs, pairs[1:]):
        if c_out != c_in:
            raise ValueError(f"block channels do not chain: {c_out} -> {c_in} in {pairs}")
    if min(min(p) for p in pairs) <= 0:
        raise ValueError(f"channel counts must be positive, got {pairs}")


@dataclass
class AASISTConfig(ClassifierConfig):
    """The published AASIST configuration (``AASIST.conf``: ``model_config``).

    filts: (number of sinc filters, then (in, out) channels of residual blocks 1-4; blocks 5 and 6
    repeat the last pair). first_conv: sinc filter length in taps (made odd).
    """

    first_conv: int = 128
    filts: tuple[int, Pair, Pair, Pair, Pair] = (70, (1, 32), (32, 32), (32, 64), (64, 64))
    gat_dims: tuple[int, int] = (64, 32)
    pool_ratios: tuple[float, float, float, float] = (0.5, 0.7, 0.5, 0.5)
    temperatures: tuple[float, float, float, float] = (2.0, 2.0, 100.0, 100.0)
    dropout: float = 0.5  # on the read-out, before the output layer
    freq_mask: bool = False  # training-only random sinc-band masking (the reference's Freq_aug)
    reference_compat: bool = False  # reproduce the published forward exactly (see module docstring)

    def __post_init__(self):
        super().__post_init__()
        if self.first_conv <= 0 or self.filts[0] < 3:
            raise ValueError(f"need first_conv > 0 and at least 3 sinc filters, got {self.first_conv}, {self.filts[0]}")
        pairs = [tuple(p) for p in self.filts[1:]]
        check_channel_chain(pairs, first_in=1)
        if pairs[-1][0] != pairs[-1][1]:
            raise ValueError(f"the last block pair is repeated, so it must keep its channel count: {pairs[-1]}")
        check_graph_config(self.gat_dims, self.pool_ratios, self.temperatures, self.dropout)


@dataclass
class AASISTLConfig(AASISTConfig):
    """The published AASIST-L (light) configuration (``AASIST-L.conf``)."""

    filts: tuple[int, Pair, Pair, Pair, Pair] = (70, (1, 32), (32, 32), (32, 24), (24, 24))
    gat_dims: tuple[int, int] = (24, 32)
    pool_ratios: tuple[float, float, float, float] = (0.4, 0.5, 0.7, 0.5)


class AASIST(nn.Module):
    """AASIST on raw waveforms: (B, T) -> BackendOutput(logits (B, 2), embedding (B, 5 * gat_dims[1])).

    The embedding is the graph read-out before dropout and the output layer.
    """

    def __init__(self, cfg: AASISTConfig):
        super().__init__()
        n_filters = cfg.filts[0]
        pairs = [tuple(p) for p in cfg.filts[1:]]
        pairs += [pairs[-1], pairs[-1]]
        self.sinc = SincConv(n_filters, cfg.first_conv, freq_mask=cfg.freq_mask)
        self.input_bn = nn.BatchNorm2d(1)
        self.encoder = build_encoder(pairs, pool=True, reference_compat=cfg.reference_compat)
        self.graph = SpectroTemporalGraph(
            in_dim=pairs[-1][1],
            n_spectral=n_filters // 3,
            gat_dims=cfg.gat_dims,
            pool_ratios=cfg.pool_ratios,
            temperatures=cfg.temperatures,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = build_classifier(cfg, self.graph.out_dim)
        self.embedding_dim = self.graph.out_dim
        # shortest input leaving one frame after the 3x max-pool and the encoder's six 3x pools
        self.min_samples = self.sinc.kernel_size - 1 + 3 ** (1 + len(pairs))

    def forward(self, waveform: Tensor) -> BackendOutput:
        if waveform.dim() != 2:
            raise ValueError(f"AASIST expects a raw waveform (B, T), got shape {tuple(waveform.shape)}")
        if waveform.shape[1] < self.min_samples:
            raise ValueError(f"AASIST needs at least {self.min_samples} samples, got {waveform.shape[1]}")
        x = self.sinc(waveform).unsqueeze(1)  # (B, 1, filters, T')
        x = F.max_pool2d(x.abs(), (3, 3))
        x = F.selu(self.input_bn(x))
        if inference_fast_path(self):
            x = channels_last_on_cpu(x)  # the encoder's convolutions keep the layout (2x faster on the CPU)
        e = self.encoder(x).abs()  # (B, C, F, T'')
        spectral = e.amax(dim=3).transpose(1, 2)  # (B, F, C): max over time
        temporal = e.amax(dim=2).transpose(1, 2)  # (B, T'', C): max over frequency
        hidden = self.graph(spectral, temporal)
        return BackendOutput(logits=self.classifier(self.dropout(hidden)), embedding=hidden)


def _require_raw(name: str, in_dim: int | None) -> None:
    if in_dim is not None:
        raise ConfigError(
            f"backend {name!r} reads the raw waveform: use the 'raw' front-end (got features of size {in_dim})"
        )


@BACKENDS.register("aasist", config=AASISTConfig)
def build_aasist(cfg: AASISTConfig, *, in_dim: int | None = None, **_: object) -> AASIST:
    """AASIST (Jung et al. 2022) on the raw waveform; 297,866 parameters."""
    _require_raw("aasist", in_dim)
    return AASIST(cfg)


@BACKENDS.register("aasist_l", config=AASISTLConfig)
def build_aasist_l(cfg: AASISTLConfig, *, in_dim: int | None = None, **_: object) -> AASIST:
    """AASIST-L, the light AASIST (Jung et al. 2022) on the raw waveform; 85,306 parameters."""
    _require_raw("aasist_l", in_dim)
    return AASIST(cfg)
