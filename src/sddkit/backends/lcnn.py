"""LCNN: light CNN with max-feature-map activations (Lavrentyeva et al., Interspeech 2019), as in the
ASVspoof 2021 LFCC-LCNN baseline (asvspoof-challenge/2021 ``LA/Baseline-LFCC-LCNN``, X. Wang).

spectral features (B, F, T), seen as an image (B, 1, T, F)
  -> 9 convolutions, each followed by max-feature-map (MFM: split the channels in two halves and
     keep the element-wise max, halving them), with 2x2 max-pools after conv 1, 3, 5 and 9 and
     non-affine batch norms in between, then dropout                 -> (B, C, T // 16, F // 16)
  -> per frame, the C * (F // 16) values as one vector                -> (B, T // 16, E)
  -> ``lstm_layers`` bidirectional LSTMs (E -> E) with a residual, mean over frames (any length)
  -> embedding (B, E) -> linear -> logits (B, 2)

With the baseline's 60 LFCC coefficients and ``channels=32``: E = 32 * 3 = 96. The baseline
outputs one sigmoid logit (BCE); here the output layer gives two logits (spoof, bona fide).
``channels`` scales every width (baseline: 32, i.e. MFM outputs 32, 32, 48, 48, 64, 64, 32, 32, 32).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sddkit.backends import BACKENDS
from sddkit.backends.fastpath import channels_last_on_cpu, inference_fast_path
from sddkit.backends.heads import ClassifierConfig, build_classifier
from sddkit.backends.layout import require_layout
from sddkit.detectors.outputs import BackendOutput
from sddkit.errors import ConfigError

DOWNSAMPLE = 16  # four 2x2 max-pools


class MaxFeatureMap(nn.Module):
    """(B, 2C, ...) -> (B, C, ...): element-wise max of the two channel halves.

    ``channels``: C, when known at build time. The halves are then cut at that constant, so a traced graph
    keeps the channel count: ``chunk`` became an ONNX Split of unknown sizes, and the TorchScript exporter
    refused the batch norm after it ("unknown channel size"). The values are the same either way.
    """

    def __init__(self, channels: int | None = None):
        super().__init__()
        if channels is not None and channels < 1:
            raise ValueError(f"MaxFeatureMap channels must be a positive number, got {channels}")
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        if self.channels is None:
            a, b = x.chunk(2, dim=1)
        else:
            # narrow alone would cut any wider input silently, its channels past 2C dropped
            got = x.shape[1]
            if torch.jit.is_tracing():
                # a traced size is a tensor; the graph cuts at the constant anyway, so the example input is checked
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    got = int(got)
            if got != 2 * self.channels:
                raise ValueError(
                    f"MaxFeatureMap({self.channels}) takes {2 * self.channels} channels, got {got} "
                    f"(shape {tuple(x.shape)}): build it with half the input's channels, or without a count"
                )
            a, b = x.narrow(1, 0, self.channels), x.narrow(1, self.channels, self.channels)
        return torch.maximum(a, b)

    def extra_repr(self) -> str:
        return "" if self.channels is None else f"channels={self.channels}"


def _mfm_conv(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    """A convolution producing 2 * c_out channels, reduced to c_out by max-feature-map."""
    return [nn.Conv2d(c_in, 2 * c_out, kernel, padding=kernel // 2), MaxFeatureMap(c_out)]


def _norm(c: int) -> nn.Module:
    return nn.BatchNorm2d(c, affine=False)


@dataclass
class LCNNConfig(ClassifierConfig):
    channels: int = 32  # MFM width of the first block; later blocks use 1.5x and 2x
    lstm_layers: int = 2  # bidirectional LSTMs over frames before pooling (0: plain mean over frames)
    dropout: float = 0.7  # after the convolutions (baseline value)

    def __post_init__(self):
        super().__post_init__()
        if self.channels <= 0 or self.channels % 2:
            raise ValueError(f"channels must be a positive even number, got {self.channels}")
        if self.lstm_layers < 0:
            raise ValueError(f"lstm_layers must be >= 0, got {self.lstm_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class BiLSTM(nn.Module):
    """(B, T, D) -> (B, T, D): one bidirectional LSTM layer with D // 2 units per direction."""

    def __init__(self, dim: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim // 2, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.lstm(x)[0]


class LCNN(nn.Module):
    """Spectral features (B, F, T) -> BackendOutput(logits (B, 2), embedding (B, channels * (F // 16)))."""

    def __init__(self, in_dim: int, cfg: LCNNConfig):
        super().__init__()
        c, c15, c2 = cfg.channels, 3 * cfg.channels // 2, 2 * cfg.channels
        pool = nn.MaxPool2d(2, 2)
        self.in_dim = in_dim
        self.convs = nn.Sequential(
            *_mfm_conv(1, c, 5),
            pool,
            *_mfm_conv(c, c, 1),
            _norm(c),
            *_mfm_conv(c, c15, 3),
            pool,
            _norm(c15),
            *_mfm_conv(c15, c15, 1),
            _norm(c15),
            *_mfm_conv(c15, c2, 3),
            pool,
            *_mfm_conv(c2, c2, 1),
            _norm(c2),
            *_mfm_conv(c2, c, 3),
            _norm(c),
            *_mfm_conv(c, c, 1),
            _norm(c),
            *_mfm_conv(c, c, 3),
            pool,
            nn.Dropout(cfg.dropout),
        )
        self.embedding_dim = c * (in_dim // DOWNSAMPLE)
        self.lstm = nn.Sequential(*(BiLSTM(self.embedding_dim) for _ in range(cfg.lstm_layers)))
        self.classifier = build_classifier(cfg, self.embedding_dim)

    def forward(self, features: Tensor) -> BackendOutput:
        if features.dim() != 3 or features.shape[1] != self.in_dim:
            raise ValueError(f"expected spectral features (B, {self.in_dim}, T), got shape {tuple(features.shape)}")
        if features.shape[2] < DOWNSAMPLE:
            raise ValueError(f"LCNN needs at least {DOWNSAMPLE} frames, got {features.shape[2]}")
        x = features.transpose(1, 2).unsqueeze(1)  # (B, 1, T, F)
        if inference_fast_path(self):
            # channels-last (NHWC) activations for inference: on the CPU the model runs about twice as fast (the NCHW
            # 2x2 max-pool alone took ~30 % of its time), values equal up to float rounding (~3e-7 on the logits of
            # the bundled experts). Training keeps NCHW (NHWC was only ~10 % faster there), so that a training step
            # computes bit for bit what it computed before and the bundled weights' recipes stay reproducible
            x = channels_last_on_cpu(x)
        x = self.convs(x)  # (B, C, T', F')
        frames = x.permute(0, 2, 1, 3).flatten(2)  # (B, T', C * F')
        pooled = (self.lstm(frames) + frames).mean(dim=1) if len(self.lstm) else frames.mean(dim=1)
        return BackendOutput(logits=self.classifier(pooled), embedding=pooled)


@BACKENDS.register("lcnn", config=LCNNConfig)
def build_lcnn(cfg: LCNNConfig, *, in_dim: int | None = None, feature_layout: str | None = None, **_: object) -> LCNN:
    """LCNN with max-feature-map (LFCC-LCNN baseline) on spectral features (B, F, T)."""
    if in_dim is None:  # it said "at least 16 bins, got None" of the raw front-end
        raise ConfigError("backend 'lcnn' needs spectral features (B, F, T), not the raw waveform")
    require_layout("lcnn", "spectral", feature_layout)
    if in_dim < DOWNSAMPLE:
        raise ConfigError(f"backend 'lcnn' needs spectral features with at least {DOWNSAMPLE} bins, got {in_dim}")
    return LCNN(in_dim, cfg)
