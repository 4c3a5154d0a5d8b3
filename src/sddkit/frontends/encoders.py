"""Pretrained speech encoders (registry ``encoder``): wav2vec 2.0 / XLS-R, HuBERT, WavLM, Whisper.

An encoder maps a 16 kHz waveform ``(B, T)`` to frame features ``(B, N, D)``. Each registry entry
is a *preset*: an architecture as published (``xlsr_300m`` = facebook/wav2vec2-xls-r-300m, ...)
plus tiny 2-layer variants (``*_tiny``) for tests. With ``pretrained: <local HF directory>`` the
weights (and the architecture) come from that directory, offline; without it the model is
randomly initialised (tests, parameter counting under ``torch.device("meta")``).

Choices made here, and why:

- **Layer drop is always 0** (``layerdrop`` / ``encoder_layerdrop``). Dropping random layers in
  training makes two forwards of the same batch run different graphs: MLDG's meta-gradient
  then differentiates through a different network than the one it updates, and DDP sees
  parameters that got no gradient on some ranks. Dropout stays as the model config says
  (or as ``dropout`` sets it), also with ``freeze: true``: a frozen encoder in training mode
  still drops activations (XLS-R: 0.1), as is usual for the base model under LoRA / MoLEx
  adapters; ``dropout: 0.0`` gives it the deterministic features of ``eval()``.
- **SpecAugment masking is off** unless ``spec_augment: true``: it draws its masks from
  numpy's global generator (not torch's), so runs are not reproducible from torch seeds.
- **``layer: k``** returns the hidden state after transformer layer ``k`` (0 = the input of the
  first layer), exactly ``hidden_states[k]`` of the Hugging Face model for ``k < L``; ``k = L`` is
  ``last``, the model output (after the final LayerNorm of pre-norm models, as in ``weighted``
  below; transformers 5's ``hidden_states[L]`` precedes it). The layers above ``k``
  are removed at build time: they would cost compute and, when adapted, hold parameters that
  never get a gradient (which DDP rejects).
- **``layer: weighted``** is a learned softmax-weighted sum of all ``L + 1`` hidden states; the
  last one is the model output (after the final LayerNorm of pre-norm models, as transformers
  4 returned it; transformers 5 returns it before that LayerNorm).
- **Whisper** uses the encoder only (a ``pretrained`` folder of a whole model, speech recognition or
  audio classification, gives its encoder). Log-Mel features are computed in torch with Whisper's
  recipe, and inputs shorter than 30 s use the first ``N`` positional embeddings instead of
  being padded to 3000 frames (``transformers``' forward insists on 3000). ``pad_to_30s: true``
  runs the stock pipeline instead (zero padding to 30 s, all 1500 positions attended, output cut
  back to the input's frames), as detectors built on ``WhisperFeatureExtractor`` were trained;
  it costs 30 s of encoder compute per input, whatever its length.
- **``normalize: None``** (wav2vec2 family) takes ``do_normalize`` from the ``pretrained``
  folder's feature-extractor settings when they state it (how the model was trained and is
  published: ``preprocessor_config.json``, or the ``feature_extractor`` section of
  ``processor_config.json``, where transformers 5 saves a processor); otherwise it follows the
  feature-extractor type (layer norm: XLS-R / large models). A model directory saved with it records the value
  decided, so its scores do not depend on the copy of the folder it is later loaded with.
- **What else the folder's config.json decides** and the recipe leaves to it (dropout probabilities, SpecAugment's
  masking with ``spec_augment: true``, ``layer_norm_eps``) is recorded likewise, in ``overrides``, by a training run
  and a ``weights: trainable`` model directory (:func:`recorded_settings_spec`): a resume refuses a folder that now
  decides another value, and a load builds the encoder as trained.
- **WavLM** attention hands its projection *weights* to ``F.multi_head_attention_forward``, so
  modules that replace ``q_proj`` etc. (LoRA, MoLEx) would be silently bypassed.
  :meth:`SpeechEncoder.projection_slots` switches such attention modules to an equivalent
  implementation that calls the projection modules.

A built encoder is in training mode throughout, as any new torch module (``from_pretrained`` alone returns its
model in eval mode): call ``.eval()`` for deterministic features.

transformers is imported lazily: it takes seconds, and ``sdd list`` should not pay for it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sddkit.errors import AudioTooLongError, AudioTooShortError, ConfigError
from sddkit.features.spectral import Float32Constants, check_float_samples, power_spectrogram
from sddkit.frontends import ENCODERS, SAMPLE_RATE
from sddkit.pretrained import mark_pretrained

log = logging.getLogger(__name__)

FAMILIES = ("wav2vec2", "hubert", "wavlm", "whisper")

# Adaptable projections, by family-neutral target name -> path inside one transformer layer.
PROJECTION_TARGETS = ("q", "k", "v", "out", "ffn_in", "ffn_out")
_W2V_PATHS = {
    "q": "attention.q_proj",
    "k": "attention.k_proj",
    "v": "attention.v_proj",
    "out": "attention.out_proj",
    "ffn_in": "feed_forward.intermediate_dense",
    "ffn_out": "feed_forward.output_dense",
}
_PROJECTION_PATHS: dict[str, dict[str, str]] = {
    "wav2vec2": _W2V_PATHS,
    "hubert": _W2V_PATHS,
    "wavlm": _W2V_PATHS,
    "whisper": {
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "out": "self_attn.out_proj",
        "ffn_in": "fc1",
        "ffn_out": "fc2",
    },
}

# family -> (transformers config class, model class), as "module:name"
_HF_CLASSES = {
    "wav2vec2": ("transformers:Wav2Vec2Config", "transformers:Wav2Vec2Model"),
    "hubert": ("transformers:HubertConfig", "transformers:HubertModel"),
    "wavlm": ("transformers:WavLMConfig", "transformers:WavLMModel"),
    "whisper": ("transformers:WhisperConfig", "transformers.models.whisper.modeling_whisper:WhisperEncoder"),
}
_W2V_ARCH_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
_ARCH_KEYS = {
    "wav2vec2": _W2V_ARCH_KEYS,
    "hubert": _W2V_ARCH_KEYS,
    "wavlm": _W2V_ARCH_KEYS,
    "whisper": ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins"),
}
# what else fixes the network a pretrained folder's weights belong to; an override of one of these keys with
# ``pretrained`` set either fails to load (other shapes) or loads the weights into another network without an error:
# fewer layers (the rest dropped, the final LayerNorm kept), other heads, strides or norm placement
_W2V_STRUCTURE_KEYS = _W2V_ARCH_KEYS + (
    "conv_dim",
    "conv_kernel",
    "conv_stride",
    "conv_bias",
    "feat_extract_norm",
    "feat_extract_activation",
    "do_stable_layer_norm",
    "num_conv_pos_embeddings",
    "num_conv_pos_embedding_groups",
    "hidden_act",
    "feat_proj_layer_norm",
    "num_buckets",
    "max_bucket_distance",
)
_STRUCTURE_KEYS = {
    "wav2vec2": _W2V_STRUCTURE_KEYS,
    "hubert": _W2V_STRUCTURE_KEYS,
    "wavlm": _W2V_STRUCTURE_KEYS,
    "whisper": _ARCH_KEYS["whisper"] + ("activation_function", "max_source_positions", "scale_embedding"),
}
_LAYER_COUNT_KEYS = ("num_hidden_layers", "encoder_layers")  # transformer layers (wav2vec2 family; Whisper)
_W2V_DROPOUT_KEYS = ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout")
_DROPOUT_KEYS = {
    "wav2vec2": _W2V_DROPOUT_KEYS,
    "hubert": _W2V_DROPOUT_KEYS,
    "wavlm": _W2V_DROPOUT_KEYS,
    "whisper": ("dropout", "attention_dropout", "activation_dropout"),
}
_LAYERDROP_KEYS = ("layerdrop", "encoder_layerdrop")
# SpecAugment's masking of the wav2vec2 family (with spec_augment: true), as transformers' config names it
_SPEC_AUGMENT_KEYS = (
    "mask_time_prob",
    "mask_time_length",
    "mask_time_min_masks",
    "mask_feature_prob",
    "mask_feature_length",
    "mask_feature_min_masks",
)


@dataclass(frozen=True)
class Preset:
    """A named architecture: the family and the transformers config values that define it."""

    family: str
    arch: dict[str, Any]
    description: str


_W2V_SHARED: dict[str, Any] = {
    # what the XLS-R and 12-layer base presets below share: the 7-layer conv feature extractor (20 ms hop
    # at 16 kHz), the convolutional position embedding, activations and dropouts
    "conv_dim": (512,) * 7,
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "hidden_dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.1,
}
_XLSR_COMMON: dict[str, Any] = {
    # as in the published facebook/wav2vec2-xls-r-* config.json files
    **_W2V_SHARED,
    "num_attention_heads": 16,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "conv_bias": True,
    "feat_extract_activation": "gelu",
    "mask_time_prob": 0.075,
    "mask_time_length": 10,
}
_BASE_COMMON: dict[str, Any] = {
    # the 12-layer "base" models: group-norm feature extractor, post-norm transformer
    **_W2V_SHARED,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "feat_extract_norm": "group",
    "do_stable_layer_norm": False,
    "conv_bias": False,
    "mask_time_prob": 0.05,
}
_TINY_W2V: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (32, 32, 32),
    "conv_kernel": (10, 3, 3),
    "conv_stride": (5, 2, 2),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "conv_bias": True,
    "hidden_dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "mask_time_prob": 0.05,
}

_WHISPER_COMMON: dict[str, Any] = {
    # as in the published openai/whisper-* config.json files (the decoder is never built: one layer keeps the config
    # small)
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "activation_function": "gelu",
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "scale_embedding": False,
    "decoder_layers": 1,
}

PRESETS: dict[str, Preset] = {
    "xlsr_300m": Preset(
        "wav2vec2",
        {**_XLSR_COMMON, "hidden_size": 1024, "num_hidden_layers": 24, "intermediate_size": 4096},
        "XLS-R 300M (wav2vec 2.0, 24 layers, 1024 dim)",
    ),
    "xlsr_1b": Preset(
        "wav2vec2",
        {**_XLSR_COMMON, "hidden_size": 1280, "num_hidden_layers": 48, "intermediate_size": 5120},
        "XLS-R 1B (wav2vec 2.0, 48 layers, 1280 dim)",
    ),
    "xlsr_2b": Preset(
        "wav2vec2",
        {**_XLSR_COMMON, "hidden_size": 1920, "num_hidden_layers": 48, "intermediate_size": 7680},
        "XLS-R 2B (wav2vec 2.0, 48 layers, 1920 dim)",
    ),
    "wav2vec2_base": Preset("wav2vec2", dict(_BASE_COMMON), "wav2vec 2.0 base (12 layers, 768 dim)"),
    "hubert_base": Preset(
        "hubert",
        {**_BASE_COMMON, "activation_dropout": 0.1, "feat_proj_layer_norm": True},
        "HuBERT base (12 layers, 768 dim)",
    ),
    "wavlm_base": Preset(
        "wavlm",
        {**_BASE_COMMON, "num_buckets": 320, "max_bucket_distance": 800},
        "WavLM base (12 layers, 768 dim)",
    ),
    # the 24-layer "large" models share XLS-R's layout (layer-norm feature extractor, pre-norm transformer)
    "hubert_large": Preset(
        "hubert",
        {**_XLSR_COMMON, "hidden_size": 1024, "num_hidden_layers": 24, "intermediate_size": 4096},
        "HuBERT Large (24 layers, 1024 dim)",
    ),
    "wavlm_large": Preset(
        "wavlm",
        {
            **_XLSR_COMMON,
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "intermediate_size": 4096,
            "conv_bias": False,
            "num_buckets": 320,
            "max_bucket_distance": 800,
        },
        "WavLM Large (24 layers, 1024 dim)",
    ),
    "whisper_base": Preset(
        "whisper",
        {**_WHISPER_COMMON, "d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8, "encoder_ffn_dim": 2048},
        "Whisper base encoder (6 layers, 512 dim, log-Mel input)",
    ),
    "whisper_small": Preset(
        "whisper",
        {
            **_WHISPER_COMMON,
            "d_model": 768,
            "encoder_layers": 12,
            "encoder_attention_heads": 12,
            "encoder_ffn_dim": 3072,
        },
        "Whisper small encoder (12 layers, 768 dim, log-Mel input)",
    ),
    "whisper_medium": Preset(
        "whisper",
        {
            **_WHISPER_COMMON,
            "d_model": 1024,
            "encoder_layers": 24,
            "encoder_attention_heads": 16,
            "encoder_ffn_dim": 4096,
        },
        "Whisper medium encoder (24 layers, 1024 dim, log-Mel input)",
    ),
    # large and large-v2 share this architecture; large-v3 differs only by its 128 mel bins, so without this preset
    # a large-v2 folder (80 bins) fitted none and could not be loaded at all
    "whisper_large": Preset(
        "whisper",
        {
            **_WHISPER_COMMON,
            "d_model": 1280,
            "encoder_layers": 32,
            "encoder_attention_heads": 20,
            "encoder_ffn_dim": 5120,
        },
        "Whisper large / large-v2 encoder (32 layers, 1280 dim, log-Mel input)",
    ),
    "whisper_large_v3": Preset(
        "whisper",
        {
            **_WHISPER_COMMON,
            "d_model": 1280,
            "encoder_layers": 32,
            "encoder_attention_heads": 20,
            "encoder_ffn_dim": 5120,
            "num_mel_bins": 128,
        },
        "Whisper large-v3 encoder (32 layers, 1280 dim, 128-bin log-Mel input)",
    ),
    "wav2vec2_tiny": Preset(
        "wav2vec2",
        {**_TINY_W2V, "feat_extract_norm": "layer", "do_stable_layer_norm": True},
        "random 2-layer wav2vec 2.0 with XLS-R's layout, for tests",
    ),
    "hubert_tiny": Preset(
        "hubert",
        {**_TINY_W2V, "feat_extract_norm": "group", "do_stable_layer_norm": False, "conv_bias": False},
        "random 2-layer HuBERT (base layout), for tests",
    ),
    "wavlm_tiny": Preset(
        "wavlm",
        {
            **_TINY_W2V,
            "feat_extract_norm": "group",
            "do_stable_layer_norm": False,
            "conv_bias": False,
            "num_buckets": 32,
            "max_bucket_distance": 64,
        },
        "random 2-layer WavLM (base layout), for tests",
    ),
    "whisper_tiny": Preset(
        "whisper",
        {
            "d_model": 32,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "num_mel_bins": 80,
            "max_source_positions": 1500,
            "dropout": 0.1,
            "decoder_layers": 1,
        },
        "random 2-layer Whisper encoder, for tests (not OpenAI's whisper-tiny)",
    ),
}


@dataclass
class EncoderConfig:
    """Configuration shared by every encoder preset.

    pretrained: local Hugging Face model directory (``config.json`` + weights), loaded offline;
        None = random initialisation with the preset's architecture.
    overrides: transformers config values to change (e.g. ``{attention_dropout: 0.0}``). With ``pretrained``,
        not the architecture (layer and head counts, convolutions, ...): the folder's weights fix it, and training
        refuses such an override (:func:`pretrained_structure_problem`). A dropout probability (any key ending in
        ``dropout``) must lie in [0, 1), as ``dropout``; a value of another type than transformers' is a ConfigError.
    layer: ``last``, an int ``k`` (hidden state after layer ``k``; 0 = input of the first layer)
        or ``weighted`` (learned softmax-weighted sum of all hidden states).
    freeze: freeze every encoder weight (adapters and layer weights stay trainable);
        False = full fine-tuning. Freezing leaves the dropout on (see ``dropout``); a BatchNorm of the
        model (HuBERT's ``conv_pos_batch_norm``) stays in eval mode, its running statistics as published.
    freeze_feature_encoder: with ``freeze: false``, still keep the convolutional waveform
        encoder (wav2vec2 family) or the mel convolutions (Whisper) frozen.
    gradient_checkpointing: recompute transformer layers in backward to save memory.
    dropout: set every dropout probability of the transformer; None = as the model config.
        It applies in training mode, frozen or not: 0.0 makes a frozen encoder a fixed feature
        extractor (train outputs = eval outputs).
    normalize: zero-mean unit-variance waveform per utterance (wav2vec2 family); None = as the
        model was trained: ``do_normalize`` of the ``pretrained`` folder's feature extractor
        (``preprocessor_config.json``, or ``processor_config.json``'s ``feature_extractor``
        section) when it states it, else models with a layer-norm feature extractor (XLS-R / large).
        A saved model directory records the value so decided (:func:`recorded_normalize_spec`), and the dropout,
        SpecAugment and ``layer_norm_eps`` values its folder decides as ``overrides`` (:func:`recorded_settings_spec`).
    spec_augment: apply the model config's SpecAugment time masking in training; training inputs
        then need at least ``mask_time_length`` frames (10 x 20 ms for the published models). It sets
        transformers' ``apply_spec_augment``: ``overrides: {apply_spec_augment: true}`` without it is refused.
    pad_to_30s: Whisper only: zero-pad every input to 30 s before the log-Mel and run the encoder
        on all 3000 frames, as ``WhisperFeatureExtractor`` + the stock forward do, then keep the
        frames of the real input (as many as without padding). Reproduces detectors trained on
        that pipeline; costs 30 s of encoder compute per input, whatever its length (Whisper-base,
        a 4 s window on CPU: 10x the time of the unpadded path). False = encode only the
        input's own frames.
    """

    pretrained: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    layer: int | Literal["last", "weighted"] = "last"
    freeze: bool = True
    freeze_feature_encoder: bool = False
    gradient_checkpointing: bool = False
    dropout: float | None = None
    normalize: bool | None = None
    spec_augment: bool = False
    pad_to_30s: bool = False

    def __post_init__(self) -> None:
        # any other string ran the encoder as 'last' ("weighted " or "12" too), and True counted as layer 1
        if isinstance(self.layer, bool) or (not isinstance(self.layer, int) and self.layer not in ("last", "weighted")):
            raise ValueError(f"layer must be an integer >= 0, 'last' or 'weighted', got {self.layer!r}")
        if isinstance(self.layer, int) and self.layer < 0:
            raise ValueError(f"layer must be >= 0, 'last' or 'weighted', got {self.layer}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.pretrained, str) and not self.pretrained.strip():
            # Path("") is the working directory: an unset variable in a recipe (`pretrained: ${ENC}`) loaded
            # whatever config.json is there, or failed naming "."
            raise ValueError("pretrained is an empty string: name the model folder, or leave pretrained out")
        for key in _LAYERDROP_KEYS:
            if self.overrides.get(key, 0.0) not in (0, 0.0):
                raise ValueError(
                    f"overrides.{key} must stay 0: random layer drop changes the graph between forwards, "
                    "which breaks MLDG meta-gradients and DDP"
                )


# --- WavLM: attention that calls its projection modules ---------------------------------------


class _ModuleProjectionAttention:
    """Mixin for WavLM attention: same maths as ``F.multi_head_attention_forward``, but the
    q/k/v/out projections are *called* as modules, so LoRA / MoLEx replacements take effect."""

    def torch_multi_head_self_attention(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None,
        gated_position_bias: Tensor,
        output_attentions: bool = False,  # passed by transformers 4 (nothing here asks for the weights)
    ) -> tuple[Tensor, None]:
        """hidden_states (B, N, D); gated_position_bias (B * H, N, N) -> (B, N, D), no weights."""
        bsz, n, _ = hidden_states.shape
        heads = self.num_heads

        def split(t: Tensor) -> Tensor:  # (B, N, D) -> (B, H, N, D / H)
            return t.view(bsz, n, heads, -1).transpose(1, 2)

        q = split(self.q_proj(hidden_states))
        k = split(self.k_proj(hidden_states))
        v = split(self.v_proj(hidden_states))
        bias = gated_position_bias.view(bsz, heads, n, n)
        if attention_mask is not None:  # 1 = keep, as in WavLM's own call
            bias = bias.masked_fill(attention_mask.ne(1)[:, None, None, :], float("-inf"))
        dropout = self.dropout if self.training else 0.0
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
        return self.out_proj(ctx.transpose(1, 2).reshape(bsz, n, -1)), None


@functools.cache
def _wavlm_module_attention_class() -> type:
    from transformers.models.wavlm.modeling_wavlm import WavLMAttention

    return type("WavLMModuleProjectionAttention", (_ModuleProjectionAttention, WavLMAttention), {})


# --- Whisper log-Mel features in torch ------------------------------------------------------

_WHISPER_N_FFT, _WHISPER_HOP = 400, 160  # Whisper's STFT: WhisperFeatureExtractor's defaults


class WhisperLogMel(Float32Constants):
    """Whisper's log-Mel features: waveform (B, T) at 16 kHz -> (B, n_mels, T // 160).

    Same recipe as ``transformers.WhisperFeatureExtractor`` (n_fft 400, hop 160, Slaney mel
    scale and norm, log10, clamp to max - 8, (x + 4) / 4), computed on the unpadded input:
    the right edge is zero-padded as if the signal continued with the 30 s padding, and the
    max is taken, as the extractor takes it, also over the frames after the ``T // 160`` kept
    ones that still overlap the input's end. Inputs of 30 s or more are cut at 30 s with both
    edges reflected, as the extractor does.
    Always float32, whatever the module's dtype or an autocast context (see :meth:`forward`): a float32 STFT, as
    the extractor computes it whenever torch is installed (and as OpenAI's reference code does). Its numpy float64
    path differs by about 1e-5 (8.5e-6 on a 4.8 s sddbench file; Whisper-base outputs then differ by 1e-5 on a scale
    of 15), far below the max - 8 floor of the features. Traced for the ONNX export, the STFT is the DFT-basis product
    of the spectral front-ends (:func:`sddkit.features.spectral.power_spectrogram`), not an ONNX STFT node.
    """

    def __init__(
        self, n_mels: int = 80, sample_rate: int = 16000, n_fft: int = _WHISPER_N_FFT, hop_length: int = _WHISPER_HOP
    ):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        self.n_fft, self.hop_length = n_fft, hop_length
        self.n_samples = 30 * sample_rate  # Whisper's chunk: the extractor pads or cuts to it
        fb = mel_filter_bank(
            num_frequency_bins=1 + n_fft // 2,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=sample_rate / 2,
            sampling_rate=sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        # Constants, rebuilt from the arguments: kept out of the state dict.
        self.register_buffer("mel_filters", torch.as_tensor(fb.T, dtype=torch.float32), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, waveform: Tensor) -> Tensor:
        # integer PCM sat 90 dB above the [-1, 1] scale: every log-Mel ~9 log10 units off (2.25 after scaling)
        check_float_samples(waveform)
        half = self.n_fft // 2
        if waveform.shape[-1] < self.n_fft:
            raise AudioTooShortError(f"Whisper needs at least {self.n_fft} samples, got {waveform.shape[-1]}")
        # float32 with autocast off: FFTs have no bfloat16 kernels (and float16 ones only for powers of 2),
        # and bf16 mel powers would round the log-Mel that the model was trained on.
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            x = waveform.float()
            frames = min(x.shape[-1], self.n_samples) // self.hop_length  # the extractor drops its last frame
            if x.shape[-1] > self.n_samples - half:
                # the extractor's right edge reflects the input's end too: pad to 30 s as it does
                x = F.pad(x, (0, max(0, self.n_samples - x.shape[-1])))
            if x.shape[-1] >= self.n_samples:
                # nothing to pad: the extractor cuts at 30 s and reflects both edges (center=True)
                x = F.pad(x[..., : self.n_samples].unsqueeze(1), (half, half), mode="reflect").squeeze(1)
            else:
                # Left: reflect, as torch.stft(center=True). Right: zeros, as the extractor's 30 s padding, n_fft
                # of them: the frames after the kept ones that still overlap the input's end are computed too.
                x = F.pad(x.unsqueeze(1), (half, 0), mode="reflect").squeeze(1)
                x = F.pad(x, (0, self.n_fft))
            # the constants stay float32 under a half-precision cast (Float32Constants); .float() is for .double()
            window = self.window.float()
            if torch.jit.is_tracing():
                # The ONNX export: a real matrix product with a DFT basis. A complex STFT made the TorchScript
                # exporter fail, and the torch.export fallback wrote an ONNX STFT node, which ONNX Runtime computes
                # imprecisely for n_fft 400 (not a power of two): the real Whisper-base failed the export's parity
                # check on a tone (1.3e-4 > 1e-4). See sddkit.features.spectral._real_stft.
                power = power_spectrogram(x, n_fft=self.n_fft, hop_length=self.hop_length, window=window, center=False)
            else:  # as the extractor computes it (|STFT| ** 2), bit for bit
                spec = torch.stft(x, self.n_fft, self.hop_length, window=window, center=False, return_complex=True)
                power = spec.abs().pow(2)
            log_spec = torch.matmul(self.mel_filters.float(), power).clamp_min(1e-10).log10()
            # The extractor takes the peak over its 3000 frames: also those past the kept ones (a loud input end
            # sets it there), and zero padding beyond them (log10(1e-10), never above the input's own frames).
            peak = log_spec[..., : self.n_samples // self.hop_length].amax(dim=(1, 2), keepdim=True)
            return (torch.maximum(log_spec[..., :frames], peak - 8.0) + 4.0) / 4.0


# --- encoders ---------------------------------------------------------------------------------


class SpeechEncoder(nn.Module):
    """A pretrained speech encoder: waveform (B, T) at 16 kHz -> frame features (B, N, D).

    ``model`` is the transformers module. Subclasses implement :meth:`_run`; this class does
    the layer selection (last / k / weighted), truncation, freezing and projection lookup.
    """

    family: str = ""

    def __init__(self, *, model: nn.Module, layer: int | str = "last"):
        super().__init__()
        self.model = model
        self.total_layers = len(self.transformer_layers())
        if isinstance(layer, int) and layer > self.total_layers:
            raise ConfigError(f"layer {layer} does not exist: the encoder has {self.total_layers} layers")
        self.layer = layer
        self.frozen = False  # set by set_trainable
        if isinstance(layer, int) and layer < self.total_layers:
            self._truncate(layer)
        if layer == "weighted":
            # zeros -> uniform average of all L + 1 hidden states at the start
            self.layer_weights = nn.Parameter(torch.zeros(self.total_layers + 1))

    @property
    def output_dim(self) -> int:
        raise NotImplementedError

    def transformer_layers(self) -> nn.ModuleList:
        raise NotImplementedError

    def _truncate(self, k: int) -> None:
        """Keep layers 0..k-1; the output is then HF's ``hidden_states[k]`` (see module doc)."""
        raise NotImplementedError

    def _run(self, waveform: Tensor, all_states: bool) -> Tensor | list[Tensor]:
        """(B, T) -> last hidden state (B, N, D), or all L + 1 hidden states if ``all_states``."""
        raise NotImplementedError

    def forward(self, waveform: Tensor) -> Tensor:
        """waveform: (B, T) float at 16 kHz, samples in [-1, 1] -> (B, N, D)."""
        if waveform.dim() != 2:
            raise ValueError(f"expected a (batch, samples) waveform, got shape {tuple(waveform.shape)}")
        # integer PCM went in 32768 times too loud (an encoder without normalize, Whisper's log-Mel), complex
        # samples lost their imaginary part, booleans became 0/1: all without a word, as the spectral front-ends
        # refuse them
        check_float_samples(waveform)
        if self.layer != "weighted":
            return self._run(waveform, all_states=False)
        states = torch.stack(self._run(waveform, all_states=True))  # (L + 1, B, N, D)
        weights = torch.softmax(self.layer_weights, dim=0)
        return torch.einsum("l,lbnd->bnd", weights, states)

    def set_trainable(self, *, freeze: bool, freeze_feature_encoder: bool = False) -> None:
        """Frozen: every transformers weight gets ``requires_grad=False`` (layer weights stay), and the frozen
        normalisation layers with running statistics stay in eval mode (see :meth:`train`)."""
        self.model.requires_grad_(not freeze)
        if freeze or freeze_feature_encoder:
            self._freeze_feature_encoder()
        self.frozen = freeze
        for module in self._frozen_running_norms():
            module.eval()

    def train(self, mode: bool = True) -> SpeechEncoder:
        """As ``nn.Module.train``, except that a normalisation layer with running statistics whose parameters are
        all frozen (the BatchNorm of a HuBERT folder with ``conv_pos_batch_norm: true``) stays in eval
        mode. In training mode it normalised by the statistics of each batch, so a frozen encoder's features of
        one input depended on the other inputs of its batch, and it moved the running statistics that the
        pretrained model was published with towards the training data: a ``freeze: true`` encoder computed
        another function after training than the folder's, unlike a frozen encoder without such a layer
        (dropout, the other train-mode difference, is left as configured; see ``dropout``)."""
        super().train(mode)
        for module in self._frozen_running_norms():
            module.eval()
        return self

    def _frozen_running_norms(self) -> list[nn.Module]:
        """The model's norm layers with running statistics that train nothing: every parameter frozen (a layer
        without parameters: when the whole encoder is frozen)."""
        frozen = []
        for module in self.model.modules():
            if not isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
                continue
            if not module.track_running_stats or module.running_mean is None:
                continue
            params = list(module.parameters(recurse=False))
            if (params and not any(p.requires_grad for p in params)) or (not params and self.frozen):
                frozen.append(module)
        return frozen

    def _freeze_feature_encoder(self) -> None:
        raise NotImplementedError

    def projection_slots(self, targets: Sequence[str]) -> list[tuple[str, nn.Module, str]]:
        """Where adapters go: ``(name, parent module, attribute)`` for each layer and target.

        ``name`` is ``"layers.{i}.{target}"``. Calling this declares that the projections will be
        replaced by modules, so attention implementations that bypass the modules (WavLM) are
        switched to one that calls them.
        """
        if isinstance(targets, str):  # read letter by letter, "qv" adapted q and v
            raise ConfigError(f"adapter targets must be a list of projection names, got the string {targets!r}")
        unknown = sorted(set(targets) - set(PROJECTION_TARGETS))
        if unknown:
            raise ConfigError(f"unknown adapter target(s) {unknown}; valid: {list(PROJECTION_TARGETS)}")
        if len(set(targets)) != len(targets):  # the second adapter replaced the first, left out of the model
            raise ConfigError(f"adapter targets repeat a projection: {list(targets)}")
        paths = _PROJECTION_PATHS[self.family]
        slots = []
        for i, layer in enumerate(self.transformer_layers()):
            for target in targets:
                parent_path, _, attr = paths[target].rpartition(".")
                parent = layer.get_submodule(parent_path) if parent_path else layer
                if not isinstance(getattr(parent, attr), nn.Linear):
                    raise ConfigError(f"layers.{i}.{target} is already adapted")
                slots.append((f"layers.{i}.{target}", parent, attr))
        return slots


def _min_samples(kernels: tuple[int, ...], strides: tuple[int, ...], frames: int = 1) -> int:
    """Shortest input that leaves ``frames`` frames after the convolution stack."""
    n = frames
    for k, s in zip(reversed(kernels), reversed(strides)):
        n = (n - 1) * s + k
    return n


class Wav2Vec2FamilyEncoder(SpeechEncoder):
    """wav2vec 2.0 / XLS-R, HuBERT and WavLM (``transformers`` ``*Model`` classes)."""

    def __init__(self, *, model: nn.Module, family: str, layer: int | str = "last", normalize: bool = False):
        super().__init__(model=model, layer=layer)
        self.family = family
        self.normalize = normalize
        cfg = model.config
        self.min_samples = _min_samples(tuple(cfg.conv_kernel), tuple(cfg.conv_stride))
        # SpecAugment draws spans of mask_time_length frames and refuses shorter inputs (in training)
        self.min_samples_masked = _min_samples(
            tuple(cfg.conv_kernel), tuple(cfg.conv_stride), frames=max(1, cfg.mask_time_length)
        )

    @property
    def output_dim(self) -> int:
        return self.model.config.hidden_size

    def transformer_layers(self) -> nn.ModuleList:
        return self.model.encoder.layers

    def _truncate(self, k: int) -> None:
        del self.model.encoder.layers[k:]
        self.model.config.num_hidden_layers = k
        if self.model.config.do_stable_layer_norm:
            # Pre-norm models apply a final LayerNorm after the last layer; HF's hidden_states[k]
            # for k < L is taken before it.
            self.model.encoder.layer_norm = nn.Identity()

    def _freeze_feature_encoder(self) -> None:
        # Also stops the extractor from marking its input as requiring grad in training, which
        # would build an autograd graph through the whole frozen model.
        self.model.feature_extractor._freeze_parameters()

    def _run(self, waveform: Tensor, all_states: bool) -> Tensor | list[Tensor]:
        if waveform.shape[-1] < self.min_samples:
            got = waveform.shape[-1]
            raise AudioTooShortError(f"{self.family} needs at least {self.min_samples} samples, got {got}")
        if self._masks_time() and waveform.shape[-1] < self.min_samples_masked:
            got = waveform.shape[-1]
            raise AudioTooShortError(
                f"{self.family} with spec_augment needs at least {self.min_samples_masked} samples in training "
                f"(one mask span of {self.model.config.mask_time_length} frames), got {got}"
            )
        if self.normalize:
            # in float32, as the feature extractor (numpy) does: the variance of a quiet input is a float16
            # subnormal (1 % off at -50 dBFS), and every sample then rounds twice
            waveform = waveform.to(torch.promote_types(waveform.dtype, torch.float32))
            mean = waveform.mean(dim=-1, keepdim=True)
            var = waveform.var(dim=-1, keepdim=True, unbiased=False)
            waveform = (waveform - mean) / torch.sqrt(var + 1e-7)
        # the first convolution's dtype: a half-precision model takes float32 samples when it normalises them
        waveform = waveform.to(self.model.feature_extractor.conv_layers[0].conv.weight.dtype)
        out = self.model(waveform, output_hidden_states=all_states)
        if not all_states:
            return out.last_hidden_state
        # transformers 5 leaves hidden_states[-1] before the final LayerNorm of pre-norm models;
        # use the model output there, as for Whisper (and as transformers 4 did).
        return [*out.hidden_states[:-1], out.last_hidden_state]

    def _masks_time(self) -> bool:
        """Whether this forward applies SpecAugment time masking (transformers' own condition)."""
        return self.training and self.masked_min_samples() is not None

    def masked_min_samples(self) -> int | None:
        """The shortest input of a training-mode forward when SpecAugment masks time (one span of
        ``mask_time_length`` frames), or None when it does not mask: the trainer checks the training crop
        against it before training."""
        cfg = self.model.config
        if getattr(cfg, "apply_spec_augment", True) and cfg.mask_time_prob > 0:
            return self.min_samples_masked
        return None

    def projection_slots(self, targets: Sequence[str]) -> list[tuple[str, nn.Module, str]]:
        slots = super().projection_slots(targets)
        if self.family == "wavlm" and set(targets) & {"q", "k", "v", "out"}:
            module_attention = _wavlm_module_attention_class()
            for layer in self.transformer_layers():
                layer.attention.__class__ = module_attention
        return slots


class WhisperFamilyEncoder(SpeechEncoder):
    """The encoder of Whisper, on log-Mel features computed in torch, for inputs up to 30 s."""

    family = "whisper"

    def __init__(self, *, model: nn.Module, layer: int | str = "last", pad_to_30s: bool = False):
        super().__init__(model=model, layer=layer)
        self.log_mel = WhisperLogMel(n_mels=model.config.num_mel_bins)
        self.pad_to_30s = pad_to_30s
        positions = model.embed_positions.num_embeddings
        needed = self.log_mel.n_samples // self.log_mel.hop_length // model.conv2.stride[0]
        if pad_to_30s and positions < needed:
            # every padded input would fail in the encoder with a tensor size mismatch
            raise ConfigError(
                f"pad_to_30s encodes 30 s ({needed} positions), this Whisper encoder has {positions} "
                "(max_source_positions); use pad_to_30s: false"
            )

    @property
    def output_dim(self) -> int:
        return self.model.config.d_model

    def transformer_layers(self) -> nn.ModuleList:
        return self.model.layers

    def _truncate(self, k: int) -> None:
        del self.model.layers[k:]
        self.model.config.encoder_layers = k
        self.model.layer_norm = nn.Identity()  # hidden_states[k] for k < L precedes the final LayerNorm

    def set_trainable(self, *, freeze: bool, freeze_feature_encoder: bool = False) -> None:
        super().set_trainable(freeze=freeze, freeze_feature_encoder=freeze_feature_encoder)
        self.model.embed_positions.requires_grad_(False)  # fixed sinusoids, frozen by Whisper itself

    def _freeze_feature_encoder(self) -> None:
        for module in (self.model.conv1, self.model.conv2):
            module.requires_grad_(False)

    def _run(self, waveform: Tensor, all_states: bool) -> Tensor | list[Tensor]:
        enc = self.model
        hop = self.log_mel.hop_length
        # mel frames the positions cover; checked on the waveform, since the log-Mel cuts at 30 s
        frames = min(enc.embed_positions.num_embeddings * enc.conv2.stride[0], self.log_mel.n_samples // hop)
        longest = (frames + 1) * hop - 1  # the last length giving `frames` frames
        got = waveform.shape[-1]
        if got > longest:
            raise AudioTooLongError(
                f"Whisper encodes at most {longest} samples ({frames * hop / 16000:.0f} s at 16 kHz), "
                f"got {got} ({got / 16000:.3f} s)"
            )
        if self.pad_to_30s:
            return self._run_padded(waveform, all_states)
        return self._encode(waveform, all_states)

    def _run_padded(self, waveform: Tensor, all_states: bool) -> Tensor | list[Tensor]:
        """The stock pipeline: zeros up to 30 s, all positions attended, then the input's frames kept."""
        got = waveform.shape[-1]
        if got < self.log_mel.n_fft:  # same minimum as unpadded, so the option never changes what is accepted
            raise AudioTooShortError(f"Whisper needs at least {self.log_mel.n_fft} samples, got {got}")
        # as many frames as the unpadded path gives: ceil(F / 2) for F = T // hop mel frames
        keep = (got // self.log_mel.hop_length + 1) // 2
        out = self._encode(F.pad(waveform, (0, max(0, self.log_mel.n_samples - got))), all_states)
        if not all_states:
            return out[:, :keep]
        return [state[:, :keep] for state in out]

    def _encode(self, waveform: Tensor, all_states: bool) -> Tensor | list[Tensor]:
        enc = self.model
        feats = self.log_mel(waveform).to(enc.conv1.weight.dtype)  # (B, n_mels, F), float32 -> model dtype
        x = F.gelu(enc.conv1(feats))
        x = F.gelu(enc.conv2(x)).transpose(1, 2)  # (B, N, D), N = ceil(F / 2)
        n = x.shape[1]
        # Slicing the sinusoidal table is what padding to 30 s would give on these frames.
        x = x + enc.embed_positions.weight[:n]
        x = F.dropout(x, p=enc.dropout, training=self.training)
        states = [x]
        for layer in enc.layers:
            x = _whisper_layer(enc, layer, x)
            if all_states:
                states.append(x)
        x = enc.layer_norm(x)
        if not all_states:
            return x
        states[-1] = x  # as transformers: the last hidden state is after the final LayerNorm
        return states


@functools.cache
def _takes_head_mask(layer_cls: type) -> bool:
    return "layer_head_mask" in inspect.signature(layer_cls.forward).parameters


def _whisper_layer(enc: nn.Module, layer: nn.Module, x: Tensor) -> Tensor:
    """One layer of Whisper encoder ``enc`` on ``x``, without attention mask (every position is attended)."""
    # transformers 4 layers take a head mask (no default) and return a tuple; 5 dropped both
    args = (x, None, None) if _takes_head_mask(type(layer)) else (x, None)
    if enc.gradient_checkpointing and enc.training and not hasattr(layer, "gradient_checkpointing"):
        # a layer that is no GradientCheckpointingLayer (transformers 4) was checkpointed by WhisperEncoder.forward,
        # which this loop replaces: without this, gradient_checkpointing: true would save no memory
        out = enc._gradient_checkpointing_func(layer.__call__, *args)
    else:
        out = layer(*args)
    return out[0] if isinstance(out, tuple) else out


# --- building -----------------------------------------------------------------------------------


def _import(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _hf_class(family: str, which: int) -> type:
    return _import(_HF_CLASSES[family][which])


def _read_pretrained_config(path: str, preset_name: str, preset: Preset) -> tuple[Path, dict[str, Any]]:
    """The directory and its raw ``config.json``, after checking it holds the preset's family."""
    directory = Path(path).expanduser()
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ConfigError(
            f"encoder.pretrained: {path!r} is not a local Hugging Face model directory (no config.json there); "
            f"weights are never downloaded{_cache_folder_hint(directory)}"
        )
    raw = _read_json(config_file)
    if not isinstance(raw, dict):
        raise ConfigError(f"encoder.pretrained: {config_file} is not a JSON object (got {type(raw).__name__})")
    if raw.get("model_type") != preset.family:
        raise ConfigError(
            f"encoder {preset_name!r} expects a {preset.family} model, "
            f"the pretrained directory holds a {raw.get('model_type', '?')!r} model{_family_hint(directory, raw)}"
        )
    return directory, raw


def _family_hint(directory: Path, raw: dict[str, Any]) -> str:
    """The preset to name for a folder of another family than the preset given (a HuBERT or Whisper folder put
    into an XLS-R recipe, the only LoRA recipes of those families being XLS-R's and Whisper-base's): the one of
    the folder's architecture, as a folder of another size is told, else that family's presets."""
    family = raw.get("model_type")
    if family not in FAMILIES:
        return f"; the encoder presets are of the families {', '.join(FAMILIES)}"
    names = [name for name, other in PRESETS.items() if other.family == family]
    try:
        hf_cfg = _read_hf_config(_hf_class(family, 0), directory)
    except (ConfigError, OSError, ValueError):  # its own error comes with the preset that reads it
        return f"; use a {family} preset ({', '.join(names)})"
    keys = _ARCH_KEYS[family]
    fits = [
        n for n in names if all(getattr(hf_cfg, k, None) == PRESETS[n].arch[k] for k in keys if k in PRESETS[n].arch)
    ]
    if fits:
        return f"; use preset {fits[0]!r}"
    return f"; no {family} preset has this architecture ({', '.join(names)}), so this folder cannot be loaded"


def _cache_folder_hint(directory: Path) -> str:
    """Where the model lies when ``directory`` is a Hugging Face hub cache folder (``models--org--name``, as
    ``huggingface-cli download`` leaves it): its files are in ``snapshots/<revision>/``, which the user had to find."""
    snapshots = directory / "snapshots"
    if not snapshots.is_dir():
        return ""
    found = sorted(str(d) for d in snapshots.iterdir() if (d / "config.json").is_file())
    if not found:
        return "; it looks like a Hugging Face cache folder, but none of its snapshots/ holds a config.json"
    return f"; it is a Hugging Face cache folder: name a snapshot in it, e.g. {found[-1]!r}"


def _apply_settings(hf_cfg: Any, preset: Preset, cfg: EncoderConfig) -> None:
    """Overrides, dropout, layer drop 0 and SpecAugment on a transformers config (in place)."""
    defaults = _hf_class(preset.family, 0)()
    unknown = sorted(k for k in cfg.overrides if not hasattr(defaults, k))
    if unknown:
        raise ConfigError(f"encoder.overrides: {unknown} are not {preset.family} config keys")
    if preset.family != "whisper" and cfg.overrides.get("apply_spec_augment") is True and not cfg.spec_augment:
        # set from spec_augment below: the override was dropped without a word, and no masking happened. (A false
        # one agrees; self_contained_spec writes one for a folder that turned masking off.)
        raise ConfigError(
            "encoder.overrides.apply_spec_augment: SpecAugment masking is switched by spec_augment: true "
            "(the override would be ignored)"
        )
    for key in _LAYER_COUNT_KEYS:
        count = cfg.overrides.get(key, 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            # transformers builds range(count) layers: 0 or -1 gave an encoder of no layer at all, without a word
            raise ConfigError(f"encoder.overrides.{key} must be a whole number of layers, 1 or more, got {count!r}")
    for key, value in cfg.overrides.items():
        if key.endswith("dropout") and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0
        ):
            # as `dropout` is checked: attention dropout (and Whisper's every dropout) is applied functionally, so 2.0
            # built and failed at the first training step with a torch traceback ("dropout probability has to be
            # between 0 and 1"), and WavLM took a negative one as none
            raise ConfigError(
                f"encoder.overrides: {key} is a dropout probability, between 0 and 1 (below 1), got {value!r}"
            )
        try:
            setattr(hf_cfg, key, value)
        except _config_value_errors() as exc:  # transformers 5 checks the value's type (`hidden_size: "1024"`)
            raise ConfigError(f"encoder.overrides.{key}: {value!r} is no valid {preset.family} value: {exc}") from None
    if cfg.dropout is not None:
        for key in _DROPOUT_KEYS[preset.family]:
            setattr(hf_cfg, key, cfg.dropout)
    for key in _LAYERDROP_KEYS:
        if hasattr(hf_cfg, key):
            setattr(hf_cfg, key, 0.0)
    if preset.family != "whisper":
        hf_cfg.apply_spec_augment = cfg.spec_augment


def _config_value_errors() -> tuple[type[Exception], ...]:
    """What a transformers config raises for a value of the wrong type: transformers 5 configs are strict dataclasses
    of huggingface_hub, whose error is neither a TypeError nor a ValueError."""
    try:
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:  # an older huggingface_hub (transformers 4): configs take any value
        return (TypeError, ValueError)
    return (TypeError, ValueError, StrictDataclassError)


def _read_hf_config(config_cls: type, directory: Path) -> Any:
    """The transformers config of a ``pretrained`` folder; a value of the wrong type in its config.json (a hand-edited
    ``"hidden_dropout": null``) is a one-line ConfigError naming the file, not a traceback of huggingface_hub."""
    try:
        return config_cls.from_pretrained(directory, local_files_only=True)
    except _config_value_errors() as exc:
        raise ConfigError(f"encoder.pretrained: {directory / 'config.json'} holds an invalid value: {exc}") from None


def _read_json(file: Path) -> Any:
    """A JSON file of the ``pretrained`` folder; unreadable or invalid JSON is a one-line ConfigError."""
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"encoder.pretrained: cannot read {file}: {exc}") from None


def _feature_extractor_settings(path: str) -> tuple[Path, Any] | None:
    """The folder's feature-extractor settings and the file they are in, found as transformers finds them: the
    ``feature_extractor`` (or ``audio_processor``) section of ``processor_config.json`` (how transformers 5 saves a
    processor), else ``preprocessor_config.json``; None if the folder has neither."""
    folder = Path(path).expanduser()
    processor_file = folder / "processor_config.json"
    if processor_file.is_file():
        raw = _read_json(processor_file)
        if isinstance(raw, dict) and ("feature_extractor" in raw or "audio_processor" in raw):
            return processor_file, raw.get("feature_extractor", raw.get("audio_processor"))
    pre_file = folder / "preprocessor_config.json"
    if pre_file.is_file():
        return pre_file, _read_json(pre_file)
    return None


def _preprocessor_normalize(path: str) -> bool | None:
    """``do_normalize`` of a model folder's feature extractor (:func:`_feature_extractor_settings`); None if it
    does not say."""
    found = _feature_extractor_settings(path)
    if found is None:
        return None
    file, raw = found
    if not isinstance(raw, dict) or "do_normalize" not in raw:
        return None
    value = raw["do_normalize"]
    if not isinstance(value, bool):  # "false" would be truthy: refuse rather than guess
        raise ConfigError(f"encoder.pretrained: {file}: do_normalize must be true or false, got {value!r}")
    return value


def pretrained_structure_problem(preset_name: str, cfg: EncoderConfig) -> str | None:
    """Why the ``overrides`` of ``cfg`` would not apply to the network of its ``pretrained`` folder, or None.

    The folder's weights fix the architecture: an override of a key that shapes the network (``num_hidden_layers``,
    ``num_attention_heads``, ``conv_stride``, ...) either fails to load or, where the weights keep their shapes,
    loads them into another network without an error (``num_hidden_layers: 12`` on XLS-R drops layers 13-24 and
    keeps the final LayerNorm, unlike ``layer: 12``). Checked by training recipes (see
    :meth:`sddkit.frontends.ssl.SSLFrontendConfig.training_problem`): a model trained so still loads as trained.
    """
    preset = PRESETS.get(preset_name)
    if preset is None or cfg.pretrained is None:
        return None
    keys = sorted(k for k in cfg.overrides if k in _STRUCTURE_KEYS[preset.family])
    if not keys:
        return None
    hint = "; use layer: k to keep the first k layers" if any("layers" in k for k in keys) else ""
    return (
        f"encoder.overrides {keys}: the architecture of encoder {preset_name!r} comes from its pretrained folder "
        f"({cfg.pretrained}), whose weights would load into another network; remove the override{hint}"
    )


def feature_extractor_problem(preset_name: str, cfg: EncoderConfig) -> str | None:
    """Why the model of ``cfg``'s ``pretrained`` folder was trained on other input than this encoder gives it, or None.

    sddkit feeds every encoder 16 kHz samples (audio is resampled to ``inference.sample_rate``, which must be 16
    kHz), and Whisper the log-Mel of :class:`WhisperLogMel` (400-sample FFT, 160-sample hop). A folder whose
    feature extractor (:func:`_feature_extractor_settings`) states another ``sampling_rate`` (an 8 kHz telephone
    model), or for Whisper another ``n_fft`` / ``hop_length``, would get input at another time scale than it
    learnt, without an error. Checked by training recipes only, as :func:`pretrained_structure_problem`: a model
    trained so still loads as trained.
    """
    preset = PRESETS.get(preset_name)
    if preset is None or cfg.pretrained is None:
        return None
    try:
        found = _feature_extractor_settings(cfg.pretrained)
    except ConfigError:  # an unreadable file: building the encoder names it
        return None
    if found is None or not isinstance(found[1], dict):
        return None
    file, raw = found
    expected: dict[str, int] = {"sampling_rate": SAMPLE_RATE}
    if preset.family == "whisper":
        expected.update(n_fft=_WHISPER_N_FFT, hop_length=_WHISPER_HOP)
    diffs = [f"{k}: {raw[k]!r} (sddkit gives {v})" for k, v in expected.items() if k in raw and raw[k] != v]
    if not diffs:
        return None
    return (
        f"encoder {preset_name!r}: the feature extractor of its pretrained folder ({file}) states {', '.join(diffs)}: "
        "the model was trained on other input than sddkit computes for it; use a model trained on 16 kHz audio"
    )


def ignored_override_problem(preset_name: str, cfg: EncoderConfig) -> str | None:
    """Why an override of ``cfg`` asks for what its encoder never does, or None.

    Whisper's SpecAugment (``apply_spec_augment`` with ``mask_time_prob`` / ``mask_feature_prob``) is applied by
    transformers' ``WhisperModel.forward`` to the log-Mel features it is given; the encoder alone, which this front-end
    runs, never masks: ``overrides: {apply_spec_augment: true}`` trained without any masking, without a word
    (``spec_augment: true`` is refused for Whisper at build time). Checked by training recipes only, as
    :func:`pretrained_structure_problem`: a model trained so still loads as trained. Only beside ``pretrained``: a
    self-contained spec (a ``weights: full`` directory's) holds its folder's own config values as overrides, which
    the user did not write.
    """
    preset = PRESETS.get(preset_name)
    if preset is None or preset.family != "whisper" or cfg.pretrained is None:
        return None
    if cfg.overrides.get("apply_spec_augment") is not True:
        return None
    return (
        f"encoder.overrides.apply_spec_augment: the Whisper encoder of {preset_name!r} never applies SpecAugment "
        "(transformers masks the features in WhisperModel.forward, not in the encoder this front-end runs), so it "
        "would train without masking; remove the override and mask with the training augmentations instead"
    )


def dropout_override_problem(preset_name: str, cfg: EncoderConfig) -> str | None:
    """Why an ``overrides`` entry of a dropout probability would be ignored, or None: ``dropout`` sets every one of
    them after the overrides (:func:`_apply_settings`), so ``{dropout: 0.0, overrides: {attention_dropout: 0.1}}``
    trained without attention dropout, without a word. Checked by training recipes only, as
    :func:`pretrained_structure_problem`: a self-contained spec (a ``weights: full`` directory's) may hold its folder's
    own dropout values as overrides, which the user did not write, and loads as it was trained.
    """
    preset = PRESETS.get(preset_name)
    if preset is None or cfg.dropout is None:
        return None
    keys = [k for k in _DROPOUT_KEYS[preset.family] if k in cfg.overrides]
    if not keys:
        return None
    return (
        f"encoder.overrides {keys}: dropout: {cfg.dropout} sets every dropout probability of the encoder "
        f"({', '.join(_DROPOUT_KEYS[preset.family])}), so the override would be ignored; give either dropout or "
        "the overrides"
    )


def _check_architecture(hf_cfg: Any, preset_name: str, preset: Preset) -> None:
    diffs = [
        f"{k}={getattr(hf_cfg, k, None)!r} (preset: {preset.arch[k]!r})"
        for k in _ARCH_KEYS[preset.family]
        if k in preset.arch and getattr(hf_cfg, k, None) != preset.arch[k]
    ]
    if diffs:
        fits = [
            name
            for name, other in PRESETS.items()
            if other.family == preset.family
            and all(getattr(hf_cfg, k, None) == other.arch[k] for k in _ARCH_KEYS[other.family] if k in other.arch)
        ]
        family = [name for name, other in PRESETS.items() if other.family == preset.family]
        # without a fitting preset the folder cannot be used at all (the check reads the folder's values, which
        # overrides do not change): say so, rather than leave the user looking for the preset that would fit
        hint = (
            f"; use preset {fits[0]!r}"
            if fits
            else f"; no {preset.family} preset has this architecture ({', '.join(family)}), so this folder cannot "
            "be loaded"
        )
        raise ConfigError(
            f"encoder {preset_name!r}: the pretrained model differs from the preset: {', '.join(diffs)}{hint}"
        )


def _load_pretrained(model_cls: type, directory: Path, hf_cfg: Any) -> nn.Module:
    import pickle

    from safetensors import SafetensorError

    try:
        with _no_loading_bar(), _load_report_kept() as report:
            model, info = model_cls.from_pretrained(
                directory, config=hf_cfg, local_files_only=True, output_loading_info=True, **_float32_kwarg()
            )
    # no weights file (OSError), a truncated or corrupt one (SafetensorError, UnpicklingError, EOFError),
    # tensors of other shapes (RuntimeError / ValueError): all name the directory
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as exc:
        error = _unreadable(directory, exc)
        if report:  # transformers' error then says "look at the above report": it follows in this message instead
            error = ConfigError("\n".join([f"{error} (the report follows)", *report]))
        raise error from None
    # masked_spec_embed only exists in some checkpoints; it is a SpecAugment constant.
    missing = [k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k]
    if missing:
        raise _lacking(directory, missing)
    unexpected = list(info.get("unexpected_keys", []))
    if unexpected:  # (the head's names are built only for a folder that holds more than the encoder)
        head = _head_weight_names(directory, model_cls, hf_cfg)
        _warn_unplaced(model, [k for k in unexpected if k not in head], directory)
    # what came from the file may be left out of trainable-only model directories (model_dir)
    return mark_pretrained(model, except_names=set(info.get("missing_keys", [])))


@contextlib.contextmanager
def _no_loading_bar() -> Any:
    """No progress bar of transformers while a model loads: transformers 5 draws a "Loading weights" bar on stderr
    for every ``from_pretrained``, also under ``sdd score --quiet`` (documented as no progress bar) and into every
    training and scoring log, for a load that takes a fraction of a second. Through transformers' own tqdm hook, only
    for this call: its global ``disable_progress_bar`` would also switch huggingface_hub's bars, and turning them
    back on resets the user's own settings of those."""
    from transformers.utils import logging as hf_logging

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    if set_hook is None:  # a transformers without the hook (4.x, whose single-file loads draw no such bar)
        yield
        return
    previous = set_hook(lambda factory, args, kwargs: factory(*args, **{**kwargs, "disable": True}))
    try:
        yield
    finally:
        set_hook(previous)


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@contextlib.contextmanager
def _load_report_kept() -> Any:
    """Keep transformers 5's "LOAD REPORT" of a ``from_pretrained`` call off stderr; yields the list it is put in
    (without its terminal colours), for the error of a load that fails.

    transformers logs it as a warning, a table in terminal colours, whenever the folder's weights are not exactly the
    model's: for every folder of a model with a head (the published XLS-R folders are ``Wav2Vec2ForPreTraining``:
    ``quantizer``, ``project_q``, ``project_hid``; CTC models' ``lm_head``), so it went into every training and scoring
    log and onto ``sdd score --quiet``'s stderr at each load, saying such weights are "not ok if you expect identical
    arch". What it reports is checked here instead: missing weights are refused (:func:`_lacking`), weights inside the
    model's own layers are warned about (:func:`_warn_unplaced`), a head left out is left out on purpose."""
    hf_logger = logging.getLogger("transformers.modeling_utils")
    kept: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        kept.append("\n".join(line.rstrip() for line in _ANSI_ESCAPE.sub("", message).strip().splitlines()))
        return False

    hf_logger.addFilter(keep)
    try:
        yield kept
    finally:
        hf_logger.removeFilter(keep)


def _float32_kwarg() -> dict[str, torch.dtype]:
    """``from_pretrained``'s argument for float32 weights (transformers 5 loads the file's dtype without it)."""
    import transformers

    # transformers < 4.56 knows only torch_dtype and hands an unknown dtype= to the model's __init__ (TypeError)
    major, minor = (int(part) for part in re.findall(r"\d+", transformers.__version__)[:2])
    name = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    return {name: torch.float32}


def _unreadable(directory: Path, exc: Exception) -> ConfigError:
    """The error of a weights file that cannot be read or does not fit the model, naming the folder."""
    return ConfigError(f"encoder.pretrained: cannot load weights from {directory}: {type(exc).__name__}: {exc}")


def _lacking(directory: Path, missing: list[str]) -> ConfigError:
    """The error of a folder without some of the model's weights (never filled with random values)."""
    return ConfigError(
        f"encoder.pretrained: {directory} lacks {len(missing)} weight(s) of the model "
        f"(e.g. {sorted(missing)[:3]}); refusing to fill them with random values"
    )


def _head_weight_names(directory: Path, model_cls: type, hf_cfg: Any) -> set[str]:
    """The weights of the task head that the model classes a folder's ``config.json`` lists (``architectures``) hold
    beside the encoder ``model_cls`` loads: left out on purpose. Built on the meta device (nothing allocated); a
    class that cannot be built here gives none.

    An x-vector model (``WavLMForXVector``, e.g. microsoft/wavlm-base-plus-sv) names a head layer
    ``feature_extractor``, as the encoder names its convolutions: its ``feature_extractor.weight`` was reported as a
    weight "inside the model's own layers" that did not load, as if the encoder's convolutions had not."""
    import transformers

    try:
        architectures = _read_json(directory / "config.json").get("architectures") or []
    except (ConfigError, AttributeError):
        return set()
    names: set[str] = set()
    for arch in architectures:
        cls = getattr(transformers, arch, None) if isinstance(arch, str) else None
        prefix = getattr(cls, "base_model_prefix", "")
        if not isinstance(cls, type) or cls is model_cls or not prefix:
            continue
        try:
            with torch.device("meta"):
                whole = cls(hf_cfg)
        except Exception:  # noqa: BLE001 - a head this config cannot build: its names are not needed to load
            continue
        names.update(k for k in whole.state_dict() if not k.startswith(f"{prefix}."))
    return names


def _warn_unplaced(model: nn.Module, unexpected: list[str], directory: Path) -> None:
    """Warn about weights of the folder that belong inside the model's own layers but have no place there.

    A pre-training or CTC head (``quantizer``, ``project_q``, ``lm_head``, Whisper's decoder) is left out
    on purpose; a tensor under one of the model's own modules (say LoRA factors saved into the encoder's
    folder) is dropped too, which transformers only listed in its load report (kept off the console, see
    :func:`_load_report_kept`). A warning rather than an error: a checkpoint layout not seen here must not make a
    usable encoder unloadable. The head of the folder's own model class (:func:`_head_weight_names`) is left out
    before this is asked.
    """
    own = []
    # the folder of a model with a head (XLS-R's Wav2Vec2ForPreTraining, an x-vector or CTC model) keeps the encoder's
    # weights under its prefix (`wav2vec2.`, `wavlm.`), which transformers reports unstripped for those that do not load
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    for key in unexpected:
        owner = key.removeprefix(prefix).rpartition(".")[0]
        if not owner:  # a tensor of the model itself (masked_spec_embed of a model built without masking)
            continue
        try:
            model.get_submodule(owner)
        except AttributeError:
            continue
        own.append(key)
    if own:
        log.warning(
            "encoder.pretrained: %d weight(s) of %s lie inside the model's own layers but are not among its "
            "parameters, so they are not loaded (e.g. %s)",
            len(own),
            directory,
            sorted(own)[:3],
        )


def _build_hf_model(preset_name: str, preset: Preset, cfg: EncoderConfig) -> nn.Module:
    config_cls, model_cls = _hf_class(preset.family, 0), _hf_class(preset.family, 1)
    if cfg.pretrained is None:
        hf_cfg = config_cls(**preset.arch)
        _apply_settings(hf_cfg, preset, cfg)
        try:
            return model_cls(hf_cfg)
        except (ValueError, TypeError) as exc:  # an override's value (`hidden_dropout: 2.0`): a torch traceback
            if not cfg.overrides:
                raise
            raise ConfigError(
                f"encoder.overrides: the {preset.family} model cannot be built with {cfg.overrides}: {exc}"
            ) from None
    directory, raw = _read_pretrained_config(cfg.pretrained, preset_name, preset)
    hf_cfg = _read_hf_config(config_cls, directory)
    _check_architecture(hf_cfg, preset_name, preset)
    _apply_settings(hf_cfg, preset, cfg)
    if preset.family == "whisper":
        architectures = raw.get("architectures") or []
        if "WhisperEncoder" not in architectures:
            # a checkpoint of a whole Whisper model: load it and keep its encoder. An audio classifier (a Whisper
            # detector fine-tuned with transformers) holds the encoder and its head but no decoder, which
            # WhisperModel would refuse as missing weights. Without "architectures" in config.json (a hand-written
            # or converted config), the weights' prefixes tell a whole model from an encoder (whose weights have
            # none): loaded as an encoder, a whole model's weights were all called missing.
            encoder = _load_whisper_encoder(model_cls, directory, hf_cfg)
            if encoder is not None:
                return encoder
        if architectures and "WhisperEncoder" not in architectures:
            whole = (
                "WhisperForAudioClassification" if "WhisperForAudioClassification" in architectures else "WhisperModel"
            )
            full = _load_pretrained(_import(f"transformers:{whole}"), directory, hf_cfg)
            return full.encoder
    return _load_pretrained(model_cls, directory, hf_cfg)


_WHISPER_ENCODER_PREFIXES = (
    "model.encoder.",
    "encoder.",
)  # ...ForConditionalGeneration; WhisperModel, ...Classification


def _weight_files(directory: Path) -> tuple[bool, list[Path]] | None:
    """Whether the weights transformers would load from ``directory`` are ``.bin`` (pickles), and their files
    (safetensors first, as transformers prefers them); None without any, or with an index that cannot be read
    (transformers' own loading then says what is wrong)."""
    for binary, single, index in (
        (False, "model.safetensors", "model.safetensors.index.json"),
        (True, "pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        if (directory / single).is_file():
            return binary, [directory / single]
        if (directory / index).is_file():
            try:
                weight_map = json.loads((directory / index).read_text())["weight_map"]
                return binary, [directory / f for f in sorted(set(weight_map.values()))]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return None
    return None


def _read_safetensors(directory: Path, files: list[Path]) -> dict[str, Any]:
    """Each tensor name of the safetensors ``files``, with a function that reads the tensor."""
    from safetensors import SafetensorError, safe_open

    try:
        handles = [safe_open(str(f), framework="pt") for f in files]
        return {k: functools.partial(h.get_tensor, k) for h in handles for k in h.keys()}
    except (OSError, SafetensorError) as exc:
        raise _unreadable(directory, exc) from None


def _read_bin_weights(directory: Path, files: list[Path]) -> dict[str, Any] | None:
    """Each tensor name of the ``.bin`` state dicts ``files``, with a function that returns the tensor; None when a
    file holds no state dict. Read as transformers reads them (``weights_only``), memory-mapped where the format
    allows it (the zip format of torch >= 1.6): only the encoder's tensors are then read from the disk."""
    import pickle
    import zipfile

    tensors: dict[str, Any] = {}
    for f in files:
        try:
            state = torch.load(f, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(f))
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            raise _unreadable(directory, exc) from None
        if not isinstance(state, dict):
            return None
        tensors.update({k: (lambda t=t: t) for k, t in state.items() if isinstance(t, Tensor)})
    return tensors


def _load_whisper_encoder(model_cls: type, directory: Path, hf_cfg: Any) -> nn.Module | None:
    """The encoder of a whole-model Whisper checkpoint (safetensors or ``pytorch_model.bin``, one file or shards),
    read alone: loading the whole model built its decoder only to drop it (about 900 M parameters, 3.6 GB in
    float32, for large-v3). None when the folder holds no weights of a whole model under the names transformers
    reads: the caller then lets transformers load them."""
    found = _weight_files(directory)
    if found is None:
        return None
    binary, files = found
    tensors = _read_bin_weights(directory, files) if binary else _read_safetensors(directory, files)
    if tensors is None:
        return None
    prefix = next((p for p in _WHISPER_ENCODER_PREFIXES if any(k.startswith(p) for k in tensors)), None)
    if prefix is None:
        return None
    from safetensors import SafetensorError

    try:
        # a copy of each tensor read from a .bin: not a view of the file's memory map, nor of a tensor shared in it
        state = {
            k[len(prefix) :]: get().to(torch.float32, copy=binary) for k, get in tensors.items() if k.startswith(prefix)
        }
    except (OSError, RuntimeError, SafetensorError) as exc:  # a file truncated after its header
        raise _unreadable(directory, exc) from None
    with torch.device("meta"):  # no random initialisation of weights that are read next
        model = model_cls(hf_cfg)
    own = dict(model.state_dict())
    missing = sorted(set(own) - set(state))
    if missing:
        raise _lacking(directory, [prefix + k for k in missing])
    _warn_unplaced(model, sorted(set(state) - set(own)), directory)
    try:
        model.load_state_dict({k: state[k] for k in own}, strict=True, assign=True)
    except RuntimeError as exc:  # tensors of other shapes
        raise _unreadable(directory, exc) from None
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # a tensor no checkpoint holds
        return None
    return mark_pretrained(model.eval())  # in eval mode, as from_pretrained returns a model


# transformers config entries that describe the file, not the architecture; layer drop is always 0 here
_NOT_ARCHITECTURE = frozenset(
    {"architectures", "auto_map", "dtype", "torch_dtype", "transformers_version", "_name_or_path", "model_type"}
) | frozenset(_LAYERDROP_KEYS)


def self_contained_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """An encoder spec (``{name: preset, pretrained: folder, ...}``) that builds the same architecture without
    its ``pretrained`` folder: ``pretrained: null``, the folder's transformers config values that differ from the
    preset's in ``overrides`` (the spec's own overrides still win, as they did over the folder's values), and the
    waveform normalisation the folder decided written out.

    For model directories that store every weight (``weights: full``: mixtures; a fully fine-tuned encoder still
    leaves a frozen ``masked_spec_embed`` or Whisper positional table to its folder, so its directory is
    ``weights: trainable``): their encoder's weights are in the directory, so only its architecture came from the
    folder. A spec without a ``pretrained`` folder, or not an encoder's, comes back unchanged.
    """
    from sddkit.config import from_dict

    preset_name = spec.get("name")
    if preset_name not in PRESETS or not isinstance(spec.get("pretrained"), str):
        return spec
    preset = PRESETS[preset_name]
    cfg = from_dict(EncoderConfig, {k: v for k, v in spec.items() if k != "name"}, "encoder")
    directory, _ = _read_pretrained_config(cfg.pretrained, preset_name, preset)
    config_cls = _hf_class(preset.family, 0)
    hf_cfg = _read_hf_config(config_cls, directory)
    _check_architecture(hf_cfg, preset_name, preset)  # as build_encoder refuses a folder of another size
    folder = hf_cfg.to_dict()
    preset_values = config_cls(**preset.arch).to_dict()
    overrides = {
        k: v for k, v in folder.items() if k in preset_values and k not in _NOT_ARCHITECTURE and v != preset_values[k]
    }
    overrides.update(cfg.overrides)
    resolved = {**spec, "pretrained": None, "overrides": overrides}
    if preset.family != "whisper" and cfg.normalize is None:
        resolved["normalize"] = _folder_normalize(
            cfg.pretrained, overrides.get("feat_extract_norm", preset_values.get("feat_extract_norm"))
        )
    return resolved


def _folder_normalize(pretrained: str, feat_extract_norm: Any) -> bool:
    """The waveform normalisation ``normalize: None`` gives a wav2vec2-family model of folder ``pretrained`` whose
    (overridden) config has ``feat_extract_norm``: as :func:`build_encoder` decides it."""
    normalize = _preprocessor_normalize(pretrained)
    if normalize is None:  # no word from the folder: layer-norm extractors were trained on normalised input
        normalize = feat_extract_norm == "layer"
    return normalize


def recorded_normalize_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """An encoder spec of the wav2vec2 family with ``normalize: None`` and a ``pretrained`` folder, with the waveform
    normalisation that folder decides written out (``normalize: true``/``false``); any other spec comes back unchanged,
    as does one whose folder cannot be read (loading it says why).

    For ``weights: trainable`` model directories, whose frozen encoder still loads from the folder: left ``None``,
    the normalisation was decided again at every load from the folder found then, so a copy of the folder without
    its feature-extractor file (``config.json`` and the weights only), or with another one, scored every file on other
    input than the model was trained on (wav2vec 2.0 base's folder says ``do_normalize: true`` where its group-norm
    extractor alone means false), without a word: the pretrained digest checks the weights, not that file.
    """
    from sddkit.config import from_dict

    preset_name = spec.get("name")
    if (
        preset_name not in PRESETS
        or PRESETS[preset_name].family == "whisper"
        or not isinstance(spec.get("pretrained"), str)
        or spec.get("normalize") is not None
    ):
        return spec
    preset = PRESETS[preset_name]
    try:
        cfg = from_dict(EncoderConfig, {k: v for k, v in spec.items() if k != "name"}, "encoder")
        directory, _ = _read_pretrained_config(cfg.pretrained, preset_name, preset)
        hf_cfg = _read_hf_config(_hf_class(preset.family, 0), directory)
        norm = cfg.overrides.get("feat_extract_norm", getattr(hf_cfg, "feat_extract_norm", None))
        return {**spec, "normalize": _folder_normalize(cfg.pretrained, norm)}
    except ConfigError:
        return spec


def recorded_normalize_config(config: Any) -> Any:
    """A model config (plain data) with every encoder spec made :func:`recorded_normalize_spec`."""
    return _each_spec(config, recorded_normalize_spec)


def _folder_setting_keys(family: str, cfg: EncoderConfig) -> tuple[str, ...]:
    """The transformers config keys whose value the ``pretrained`` folder's config.json decides for an encoder of
    ``cfg`` beyond its architecture and weights, unless ``cfg`` sets them: the dropout probabilities (without
    ``dropout``), SpecAugment's masking (with ``spec_augment: true``; the wav2vec2 family) and the layer norms'
    epsilon (the wav2vec2 family; Whisper's layer norms use torch's). Layer drop is always 0, and
    ``apply_spec_augment`` is ``spec_augment``'s: neither is the folder's."""
    keys: list[str] = list(_DROPOUT_KEYS[family]) if cfg.dropout is None else []
    if family != "whisper":
        keys += list(_SPEC_AUGMENT_KEYS) if cfg.spec_augment else []
        keys.append("layer_norm_eps")
    return tuple(k for k in keys if k not in cfg.overrides)


def recorded_settings_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """An encoder spec with a ``pretrained`` folder, with the values its folder's config.json decides for the keys of
    :func:`_folder_setting_keys` written into its ``overrides`` (the spec's own overrides unchanged); any other spec
    comes back unchanged, as does one whose folder cannot be read (loading it says why).

    Left to the folder, they were read again at every resume and every load of a ``weights: trainable`` model
    directory: a config.json edited or replaced since (another dropout or ``mask_time_prob``, another
    ``layer_norm_eps``) went on training, or scored, another computation than the run's, without a word: the
    pretrained digest checks the weights, not config.json. Recorded, a load builds the encoder as trained, and a resume
    compares them with the folder's values of now (:func:`folder_setting_entries`)."""
    from sddkit.config import from_dict

    preset_name = spec.get("name")
    if preset_name not in PRESETS or not isinstance(spec.get("pretrained"), str):
        return spec
    preset = PRESETS[preset_name]
    try:
        cfg = from_dict(EncoderConfig, {k: v for k, v in spec.items() if k != "name"}, "encoder")
        directory, _ = _read_pretrained_config(cfg.pretrained, preset_name, preset)
        folder = _read_hf_config(_hf_class(preset.family, 0), directory).to_dict()
    except ConfigError:
        return spec
    decided = {k: folder[k] for k in _folder_setting_keys(preset.family, cfg) if folder.get(k) is not None}
    if not decided:
        return spec
    return {**spec, "overrides": {**cfg.overrides, **decided}}


def recorded_folder_config(config: Any) -> Any:
    """A model config (plain data) with every encoder spec made :func:`recorded_normalize_spec` and
    :func:`recorded_settings_spec`: what its ``pretrained`` folders decide, written out. What a run records (its
    checkpoints, ``run.json``) and a ``weights: trainable`` model directory stores."""
    return _each_spec(config, lambda spec: recorded_settings_spec(recorded_normalize_spec(spec)))


def folder_setting_entries(config: Any, prefix: str = "model") -> dict[str, tuple[str, Any]]:
    """The values of every encoder spec of ``config`` (a model config as plain data) with a ``pretrained`` folder for
    the keys a folder may decide (:func:`_folder_setting_keys` of a spec that sets none), by their dotted override key:
    ``{"model.frontend.encoder.overrides.hidden_dropout": (folder, value)}``, the value None where the spec gives none.
    A dropout key's value is ``dropout``'s where the spec sets it (it sets them all).

    What a resume compares between the model config its checkpoint recorded (:func:`recorded_folder_config`) and
    today's, as :func:`folder_normalize_entries`; of a recipe's model, which of them the recipe sets."""

    def entries(spec: dict[str, Any], at: str) -> dict[str, tuple[str, Any]]:
        name, folder = spec.get("name"), spec.get("pretrained")
        if name not in PRESETS or not isinstance(folder, str):
            return {}
        family = PRESETS[name].family
        overrides = spec.get("overrides") if isinstance(spec.get("overrides"), dict) else {}
        dropout = spec.get("dropout")
        found = {}
        for key in _folder_setting_keys(family, EncoderConfig(spec_augment=True)):
            value = dropout if dropout is not None and key in _DROPOUT_KEYS[family] else overrides.get(key)
            found[f"{at}.overrides.{key}"] = (folder, value)
        return found

    return _entries_of_specs(config, prefix, entries)


def folder_normalize_entries(config: Any, prefix: str = "model") -> dict[str, tuple[str, Any]]:
    """Every wav2vec2-family encoder spec of ``config`` (a model config as plain data) that has a ``pretrained``
    folder, by the dotted key of its ``normalize``: ``{"model.frontend.encoder.normalize": (folder, value)}``.

    What a resume compares between the model config its checkpoint recorded (:func:`recorded_normalize_config`: the
    value the folder decided) and today's: keys as the recipe's overrides spell them."""

    def entries(spec: dict[str, Any], at: str) -> dict[str, tuple[str, Any]]:
        name, folder = spec.get("name"), spec.get("pretrained")
        if name in PRESETS and PRESETS[name].family != "whisper" and isinstance(folder, str):
            return {f"{at}.normalize": (folder, spec.get("normalize"))}
        return {}

    return _entries_of_specs(config, prefix, entries)


def _entries_of_specs(
    config: Any, prefix: str, entries: Callable[[dict[str, Any], str], dict[str, tuple[str, Any]]]
) -> dict[str, tuple[str, Any]]:
    """``entries(mapping, dotted_key)`` of every mapping inside ``config`` (plain data: dicts and lists, walked
    depth first, list items keyed by their index), merged: the walk of :func:`folder_normalize_entries` and
    :func:`folder_setting_entries`."""
    found: dict[str, tuple[str, Any]] = {}
    if isinstance(config, dict):
        found.update(entries(config, prefix))
        for key, value in config.items():
            found.update(_entries_of_specs(value, f"{prefix}.{key}", entries))
    elif isinstance(config, list):
        for i, item in enumerate(config):
            found.update(_entries_of_specs(item, f"{prefix}.{i}", entries))
    return found


def _each_spec(config: Any, spec_fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """``config`` (plain data) with ``spec_fn`` applied to every mapping, innermost first (``spec_fn`` gives back
    those that are no encoder spec unchanged)."""
    if isinstance(config, dict):
        return spec_fn({k: _each_spec(v, spec_fn) for k, v in config.items()})
    if isinstance(config, list):
        return [_each_spec(v, spec_fn) for v in config]
    return config


def self_contained_config(config: Any) -> Any:
    """A model config (plain data: a detector's, a mixture's with its experts inline) with every encoder spec
    made :func:`self_contained_spec`."""
    return _each_spec(config, self_contained_spec)


def build_encoder(cfg: EncoderConfig, *, preset: str, **context: Any) -> SpeechEncoder:
    """Build preset ``preset`` with ``cfg`` (random weights, or ``cfg.pretrained``)."""
    spec = PRESETS[preset]
    if spec.family == "whisper" and (cfg.normalize or cfg.spec_augment):
        # the Whisper encoder runs on log-Mel features and has no SpecAugment of its own
        raise ConfigError(f"encoder {preset!r}: normalize and spec_augment apply to the wav2vec2 family, not whisper")
    if spec.family != "whisper" and cfg.pad_to_30s:
        raise ConfigError(f"encoder {preset!r}: pad_to_30s applies to whisper, not the {spec.family} family")
    model = _build_hf_model(preset, spec, cfg)
    if spec.family == "whisper":
        encoder: SpeechEncoder = WhisperFamilyEncoder(model=model, layer=cfg.layer, pad_to_30s=cfg.pad_to_30s)
    else:
        normalize = cfg.normalize
        if normalize is None and cfg.pretrained is not None:
            normalize = _folder_normalize(cfg.pretrained, model.config.feat_extract_norm)
        if normalize is None:  # no folder: layer-norm extractors were trained on normalised input
            normalize = model.config.feat_extract_norm == "layer"
        encoder = Wav2Vec2FamilyEncoder(model=model, family=spec.family, layer=cfg.layer, normalize=normalize)
    encoder.set_trainable(freeze=cfg.freeze, freeze_feature_encoder=cfg.freeze_feature_encoder)
    if not cfg.spec_augment and getattr(model, "masked_spec_embed", None) is not None:
        model.masked_spec_embed.requires_grad_(False)  # unused without masking: no DDP "unused" error
    if cfg.gradient_checkpointing:
        # non-reentrant: works with frozen inputs and with the MoLEx collector (see molex.py)
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    # One mode for the whole encoder, training as any new torch module (and as a randomly initialised one):
    # from_pretrained returns its model in eval mode, so a pretrained encoder said `training` while its
    # transformer ran without dropout or SpecAugment, Whisper dropped its input embeddings but no layer's
    # activations, and spec_augment's length check refused inputs the model would not have masked.
    return encoder.train()


for _name, _preset in PRESETS.items():
    ENCODERS.register(_name, config=EncoderConfig, description=_preset.description)(
        functools.partial(build_encoder, preset=_name)
    )
del _name, _preset

__all__ = [
    "FAMILIES",
    "PRESETS",
    "PROJECTION_TARGETS",
    "EncoderConfig",
    "Preset",
    "SpeechEncoder",
    "Wav2Vec2FamilyEncoder",
    "WhisperFamilyEncoder",
    "WhisperLogMel",
    "build_encoder",
    "dropout_override_problem",
    "feature_extractor_problem",
    "folder_normalize_entries",
    "folder_setting_entries",
    "ignored_override_problem",
    "pretrained_structure_problem",
    "recorded_folder_config",
    "recorded_normalize_config",
    "recorded_normalize_spec",
    "recorded_settings_spec",
    "self_contained_config",
    "self_contained_spec",
]
