"""The ``ssl`` front-end: a pretrained speech encoder, optionally adapted with LoRA or MoLEx.

waveform (B, T) at 16 kHz -> FrontendOutput(features (B, N, D), aux_losses, stats)

Recipe form::

    frontend:
      name: ssl
      encoder: {name: xlsr_300m, pretrained: ../shared/models/xlsr-300m, freeze: true}
      adapter: molex                     # none | lora | molex
      molex: {num_experts: 4, rank: 8, router: {name: topk, k: 2}}

With a frozen encoder only the adapter (and ``layer: weighted``) parameters are trainable.
MoLEx auxiliary losses come back already weighted in ``aux_losses`` (``molex_load_balance``,
``molex_orthogonality``); ``stats`` holds ``molex_gate_mean`` and ``molex_top1_count``
(B, M, E) per utterance and adapted layer (names in ``adapted_names``), plus the unweighted loss
values as scalars (see molex.py for the per-call collection that carries them out of the encoder).
The orthogonality loss depends on the expert weights only, not on the input, so it is computed
only while gradients are recorded (training): under ``torch.no_grad``/``inference_mode`` both
``aux_losses["molex_orthogonality"]`` and ``stats["molex_orthogonality"]`` are absent.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from sddkit.config import component_field
from sddkit.detectors.outputs import FrontendOutput
from sddkit.errors import ConfigError
from sddkit.frontends import FRONTENDS
from sddkit.frontends.encoders import (
    EncoderConfig,
    SpeechEncoder,
    dropout_override_problem,
    feature_extractor_problem,
    ignored_override_problem,
    pretrained_structure_problem,
)
from sddkit.frontends.lora import LoRAConfig, apply_lora
from sddkit.frontends.molex import (
    MoLExConfig,
    MoLExLinear,
    apply_molex,
    collect_routing,
    orthogonality_loss,
    routing_summary,
)
from sddkit.registry import ComponentSpec, get_registry


@dataclass
class SSLFrontendConfig:
    """encoder: an ``encoder`` registry component; adapter: none | lora | molex.

    Only the chosen adapter's section is kept (the other is ``None``), so a model directory records
    what it uses. A section for an adapter that is not chosen is an error, except when it holds
    only default values, as the directories written before 2026-12-01 record it.
    """

    encoder: ComponentSpec = component_field("encoder")
    adapter: Literal["none", "lora", "molex"] = "none"
    lora: LoRAConfig | None = None
    molex: MoLExConfig | None = None

    def __post_init__(self) -> None:
        for name, default in (("lora", LoRAConfig), ("molex", MoLExConfig)):
            section = getattr(self, name)
            if self.adapter == name:
                setattr(self, name, section if section is not None else default())
            elif section is not None:
                if section != default():
                    raise ValueError(f"a '{name}' section needs adapter: {name} (the adapter is {self.adapter!r})")
                setattr(self, name, None)

    def training_problem(self) -> str | None:
        """Why training this front-end would silently go wrong, or None. Checked by training recipes only: a
        model trained so before the check still loads and scores as it was trained."""
        encoder = self.encoder.config
        if isinstance(encoder, EncoderConfig):
            problem = (
                pretrained_structure_problem(self.encoder.name, encoder)
                or ignored_override_problem(self.encoder.name, encoder)
                or feature_extractor_problem(self.encoder.name, encoder)
                or dropout_override_problem(self.encoder.name, encoder)
            )
            if problem is not None:
                return problem
        if self.molex is None:
            return None
        router = self.molex.router.config
        if getattr(self.encoder.config, "pad_to_30s", False) and getattr(router, "level", None) == "utterance":
            # the router pools all 1500 positions, ~87 % of them padding for a 4 s window: every input routes alike
            return (
                "an utterance-level MoLEx router on an encoder with pad_to_30s would route on the mean of 30 s "
                "positions, mostly padding; use level: token, or pad_to_30s: false"
            )
        return self.molex.untrainable_router()


def num_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of (distinct) parameters of ``module``; only ``requires_grad`` ones if asked.

    Works on meta-device modules (nothing is allocated).
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class SSLFrontend(nn.Module):
    """Encoder + adapter; ``output_dim`` is the feature size D."""

    def __init__(
        self,
        *,
        encoder: SpeechEncoder,
        adapter: str = "none",
        lora: LoRAConfig | None = None,
        molex: MoLExConfig | None = None,
        config: SSLFrontendConfig | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.adapter = adapter
        # Recorded (and kept up to date by add_experts) so a checkpoint can rebuild this module.
        self.config = copy.deepcopy(config)
        if adapter == "lora":
            adapted: list[tuple[str, nn.Module]] = apply_lora(encoder, lora or LoRAConfig())
        elif adapter == "molex":
            self.molex_config = copy.deepcopy(molex or MoLExConfig())
            adapted = apply_molex(encoder, self.molex_config)
        elif adapter == "none":
            adapted = []
        else:
            raise ConfigError(f"unknown adapter {adapter!r}; valid: none, lora, molex")
        if adapter != "none" and not adapted:
            raise ConfigError(
                f"adapter {adapter!r}: the encoder keeps no transformer layer to adapt (layer: 0); "
                "use adapter: none or a higher layer"
            )
        # Plain lists (not registered again): the modules already live inside the encoder.
        self.adapted_names = [name for name, _ in adapted]
        self._adapted = [module for _, module in adapted]

    @property
    def output_dim(self) -> int:
        return self.encoder.output_dim

    @property
    def float32_waveform(self) -> bool:
        """Whisper computes its log-Mel from float32 samples, whatever the encoder's dtype (see
        :func:`sddkit.detectors.detector.waveform_dtype`), and so does the wav2vec 2.0 family its
        per-utterance normalisation (``normalize``), before it convolves the samples in the encoder's
        dtype; without normalisation it takes them in that dtype."""
        return self.encoder.family == "whisper" or bool(getattr(self.encoder, "normalize", False))

    def adapted_modules(self) -> list[tuple[str, nn.Module]]:
        """``[("layers.{i}.{target}", LoRALinear | MoLExLinear)]`` in layer order."""
        return list(zip(self.adapted_names, self._adapted))

    def forward(self, waveform: Tensor) -> FrontendOutput:
        """waveform (B, T) -> FrontendOutput(features (B, N, D), aux_losses, stats)."""
        if self.adapter != "molex":
            return FrontendOutput(features=self.encoder(waveform))
        with collect_routing() as records:
            features = self.encoder(waveform)
        return self._molex_output(features, records)

    def _molex_output(self, features: Tensor, records: list) -> FrontendOutput:
        cfg = self.molex_config
        layers: list[MoLExLinear] = self._adapted
        summary = routing_summary(layers, records, batch_size=features.shape[0], frames=features.shape[1])
        aux: dict[str, Tensor] = {}
        if cfg.load_balance_weight > 0:
            aux["molex_load_balance"] = cfg.load_balance_weight * summary.load_balance
        stats = {
            "molex_gate_mean": summary.gate_mean,
            "molex_top1_count": summary.top1_count,
            "molex_load_balance": summary.load_balance.detach(),
        }
        if torch.is_grad_enabled():  # a weight-only quantity: skipped at inference (see module doc)
            with torch.set_grad_enabled(cfg.orthogonality_weight > 0):
                orth = orthogonality_loss(layers, cfg.orthogonality_on)
            if cfg.orthogonality_weight > 0:
                aux["molex_orthogonality"] = cfg.orthogonality_weight * orth
            stats["molex_orthogonality"] = orth.detach()
        return FrontendOutput(features=features, aux_losses=aux, stats=stats)

    # --- adapter management -----------------------------------------------------------------

    def merge(self) -> None:
        """Fold LoRA updates into the encoder weights (inference); no-op without an adapter."""
        if self.adapter == "molex":
            raise ConfigError("MoLEx adapters cannot be merged: their expert weights depend on the input")
        for module in self._adapted:
            module.merge()

    def unmerge(self) -> None:
        """Undo :meth:`merge`."""
        if self.adapter == "molex":
            raise ConfigError("MoLEx adapters cannot be merged or unmerged")
        for module in self._adapted:
            module.unmerge()

    @property
    def expert_groups(self) -> tuple[int, ...]:
        """Sizes of the expert groups in every MoLEx layer (first training, then each add)."""
        if self.adapter != "molex":
            return ()
        return self._adapted[0].expert_groups

    def add_experts(self, n: int, bias: float | None = None) -> list[nn.Parameter]:
        """Append ``n`` experts to every MoLEx layer; freeze the old experts and router rows (their gradients are
        cleared too, so an optimizer that already holds them leaves them as they are).

        New experts start with B = 0 and small router rows (1 % of a fresh router's scale, bias
        ``bias``, default the config's ``new_expert_bias``), so outputs on old data barely move. Returns
        the new trainable parameters (add them to the optimizer). ``config.molex.added_experts`` records ``n`` for
        rebuilding.
        """
        if self.adapter != "molex":
            raise ConfigError(f"add_experts needs the molex adapter, this front-end has {self.adapter!r}")
        bias = self.molex_config.new_expert_bias if bias is None else bias
        # every layer is asked before any grows: a refusal at a later layer left the earlier ones grown
        problem = next((p for m in self._adapted if (p := m.router.growth_problem(bias, n)) is not None), None)
        if problem is not None:
            raise ConfigError(problem)
        n = int(n)
        before = {id(p) for p in self.parameters()}
        for module in self._adapted:
            module.add_experts(n, bias=bias)
        self.molex_config.added_experts.append(n)
        if self.config is not None:
            self.config.molex.added_experts.append(n)
        return [p for p in self.parameters() if id(p) not in before]

    def config_after_growth(self, config: dict[str, Any]) -> dict[str, Any]:
        """A front-end mapping (recipe form) updated so it rebuilds this module after :meth:`add_experts`."""
        out = copy.deepcopy(dict(config))
        if self.adapter == "molex":
            out["molex"] = {**(out.get("molex") or {}), "added_experts": list(self.molex_config.added_experts)}
        return out


@FRONTENDS.register("ssl", config=SSLFrontendConfig)
def build_ssl_frontend(cfg: SSLFrontendConfig, **context: Any) -> SSLFrontend:
    """Pretrained speech encoder (XLS-R, WavLM, Whisper, ...) with optional LoRA / MoLEx."""
    encoder = get_registry("encoder").build(cfg.encoder)
    return SSLFrontend(encoder=encoder, adapter=cfg.adapter, lora=cfg.lora, molex=cfg.molex, config=cfg)


__all__ = ["SSLFrontend", "SSLFrontendConfig", "build_ssl_frontend", "num_params"]
