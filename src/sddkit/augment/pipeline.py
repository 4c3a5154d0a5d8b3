"""Composition: ``compose`` (in series), ``one_of`` (a random choice), and the per-item pipeline.

A pipeline is written as a list of specs, e.g. in a recipe::

    augment:
      - {name: rawboost, p: 0.5, algo: 5}
      - name: one_of
        choices:
          - {name: codec, codec: mp3, bitrate_kbps: [16, 64]}
          - {name: codec, codec: opus, bitrate_kbps: [8, 32]}
      - {name: noise, snr_db: [5, 30], p: 0.3}

``AugmentationPipeline(specs, seed)`` is cheap to build and picklable (configs and small
objects only), so a Dataset can own one and call it in DataLoader workers; items are seeded
by ``(seed, epoch, index)`` with :func:`~sddkit.augment.base.item_rng`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sddkit.augment import AUGMENTATIONS
from sddkit.augment.base import (
    Augmentation,
    ProbabilityConfig,
    as_waveform,
    check_probability,
    item_rng,
    to_generator,
)
from sddkit.augment.codecs import CodecUnavailableError
from sddkit.config import to_dict
from sddkit.errors import ConfigError
from sddkit.registry import ComponentSpec


def _not_waveform(name: str, domain: str) -> str:
    return (
        f"augmentation {name!r} works on {domain}, not waveforms; a spectral front-end applies it to its "
        f"features in training: set model.frontend.{name} (e.g. 'model.frontend.{name}={{freq_width: [0, 16]}}')"
    )


def build_augmentation(spec: Any) -> Augmentation:
    """``"name"``, ``{"name": ..., **params}`` or a ComponentSpec -> a waveform augmentation."""
    aug = AUGMENTATIONS.build(spec)
    if getattr(aug, "domain", "waveform") != "waveform":
        raise ConfigError(_not_waveform(AUGMENTATIONS.parse(spec).name, aug.domain))
    return aug


def _built_domain(name: str) -> str:
    """The ``domain`` of what the builder of augmentation ``name`` returns, read from its return annotation (nothing
    is built: a noise folder or a codec is only looked at when the pipeline is built); ``waveform`` when unknown."""
    import typing

    try:
        built = typing.get_type_hints(AUGMENTATIONS.get(name).builder).get("return")
    except Exception:  # an annotation that does not resolve: the check at build time still applies
        return "waveform"
    return str(getattr(built, "domain", "waveform")) if isinstance(built, type) else "waveform"


def check_waveform_specs(specs: Sequence[ComponentSpec], key: str) -> None:
    """A ValueError naming ``key[i]`` (and the place inside a ``compose``/``one_of``) for a feature-domain augmentation
    (``spec_augment``) among waveform augmentation specs: building the pipeline refuses it, but only when training
    starts, after the data has been read (and a ``preload`` decoded)."""
    for i, spec in enumerate(specs):
        at = f"{key}[{i}]"
        domain = _built_domain(spec.name)
        if domain != "waveform":
            raise ValueError(f"{at}: {_not_waveform(spec.name, domain)}")
        if isinstance(spec.config, ComposeConfig):
            check_waveform_specs(spec.config.augmentations, f"{at}.augmentations")
        elif isinstance(spec.config, OneOfConfig):
            check_waveform_specs(spec.config.choices, f"{at}.choices")


def _build_at(spec: ComponentSpec, key: str) -> Augmentation:
    """``build_augmentation`` whose configuration errors name the spec's place (``data.augment[2]: ...``): what
    building checks (a noise folder's files, a codec's availability) is not seen when the spec is parsed."""
    try:
        return build_augmentation(spec)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    except CodecUnavailableError as exc:
        # the same type (callers catch it), now saying which spec asked for the codec: before, a recipe with several
        # codec specs (or one inside a one_of or launder_chain) was refused without a word on which one
        raise CodecUnavailableError(f"{key}: {exc}") from None


def _parse_specs(values: Sequence[Any], key: str) -> list[ComponentSpec]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{key} must be a list of augmentation specs, got {values!r}")
    return [AUGMENTATIONS.parse(v, path=f"{key}[{i}]") for i, v in enumerate(values)]


@dataclass
class ComposeConfig:
    """augmentations: specs applied in series (each with its own ``p``); p: probability of the whole chain."""

    augmentations: list[Any] = field(default_factory=list)
    p: float = 1.0

    def __post_init__(self) -> None:
        self.augmentations = _parse_specs(self.augmentations, "augmentations")
        check_probability(self.p)


@dataclass
class OneOfConfig:
    """choices: specs of which exactly one is applied; weights: relative odds (default equal); p: probability."""

    choices: list[Any]  # no default: a recipe must give it (`sdd list augmentation one_of` showed `= []`)
    weights: list[float] | None = None
    p: float = 1.0

    def __post_init__(self) -> None:
        self.choices = _parse_specs(self.choices, "choices")
        if not self.choices:
            raise ValueError("choices must list at least one augmentation for one_of, got []")
        if self.weights is not None:
            if len(self.weights) != len(self.choices):
                raise ValueError(
                    f"weights: {len(self.weights)} given for {len(self.choices)} choices: give one per choice"
                )
            total = sum(float(w) for w in self.weights)  # plain floats: an overflow gives inf, without a warning
            # an infinite weight (or a sum that overflows) made the odds NaN: the run failed at its first item
            if any(w < 0 for w in self.weights) or not 0.0 < total < np.inf:
                raise ValueError(f"weights must be >= 0 with a positive, finite sum, got {self.weights}")
        check_probability(self.p)


class Compose(Augmentation):
    """Apply augmentations in series. Each child gets its own generator spawned from ``rng``, so
    changing one child's parameters never changes the random draws of the others. Spawning reads
    ``rng``'s SeedSequence and spawn counter, not its state: a restored state or a ``jumped()``
    generator does not repeat the output."""

    def __init__(self, augmentations: Sequence[Augmentation], p: float = 1.0):
        super().__init__(ProbabilityConfig(p=p))
        self.augmentations = list(augmentations)

    @classmethod
    def from_specs(cls, specs: Sequence[Any], p: float = 1.0) -> Compose:
        """Build from a list of specs (``[{name: rawboost, p: 0.5, algo: 5}, ...]``)."""
        parsed = _parse_specs_or_raise(specs)
        return cls([build_augmentation(s) for s in parsed], p=p)

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        y = x
        for aug, child in zip(self.augmentations, rng.spawn(len(self.augmentations))):
            y = aug(y, sr, child)
        return y

    def prepare(self, sr: int) -> None:
        for aug in self.augmentations:
            aug.prepare(sr)

    def __repr__(self) -> str:
        return f"Compose({self.augmentations!r}, p={self.cfg.p})"


class OneOf(Augmentation):
    """Apply exactly one of the augmentations, chosen with the given weights."""

    def __init__(self, augmentations: Sequence[Augmentation], weights: Sequence[float] | None = None, p: float = 1.0):
        if not augmentations:
            raise ConfigError("one_of needs at least one choice")
        super().__init__(ProbabilityConfig(p=p))
        self.augmentations = list(augmentations)
        w = np.ones(len(self.augmentations)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(self.augmentations),) or (w < 0).any() or not 0.0 < sum(w.tolist()) < np.inf:
            raise ConfigError(f"invalid one_of weights {weights!r} for {len(self.augmentations)} choices")
        self.weights = w / w.sum()

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        k = int(rng.choice(len(self.augmentations), p=self.weights))
        return self.augmentations[k](x, sr, rng)

    def prepare(self, sr: int) -> None:
        for aug in self.augmentations:
            aug.prepare(sr)

    def __repr__(self) -> str:
        return f"OneOf({self.augmentations!r}, weights={self.weights.tolist()}, p={self.cfg.p})"


class Identity(Augmentation):
    """Returns the input unchanged (the ``clean`` condition, or a no-op choice inside ``one_of``)."""

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return x.copy()


def _parse_specs_or_raise(specs: Sequence[Any], key: str = "augmentations") -> list[ComponentSpec]:
    try:
        return _parse_specs(specs, key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@AUGMENTATIONS.register("compose", config=ComposeConfig)
def build_compose(cfg: ComposeConfig, **_: object) -> Compose:
    """Apply a list of augmentations in series."""
    return Compose([build_augmentation(s) for s in cfg.augmentations], p=cfg.p)


@AUGMENTATIONS.register("one_of", config=OneOfConfig)
def build_one_of(cfg: OneOfConfig, **_: object) -> OneOf:
    """Apply one augmentation chosen at random (optionally weighted) from a list."""
    return OneOf([build_augmentation(s) for s in cfg.choices], weights=cfg.weights, p=cfg.p)


@AUGMENTATIONS.register("clean", config=ProbabilityConfig)
def build_identity(cfg: ProbabilityConfig, **_: object) -> Identity:
    """No change (the clean condition; a no-op choice for one_of)."""
    return Identity(cfg)


class AugmentationPipeline:
    """A list of augmentation specs applied in series, seeded per dataset item.

    pipe = AugmentationPipeline([{"name": "rawboost", "p": 0.5, "algo": 5}], seed=1234)
    y = pipe(x, 16000, index=i, epoch=e)       # (T,) float32 -> (T,) float32
    y = pipe.apply(x, 16000, rng)              # or with an explicit generator
    """

    def __init__(self, specs: Sequence[Any] = (), seed: int = 0, key: str = "augmentations"):
        """``key``: where the specs come from (``data.augment`` in a recipe), to name in parse and build errors."""
        # before: parse errors named ``augmentations[i]`` whatever ``key`` said; only build errors named it
        self.specs = _parse_specs_or_raise(specs, key)
        self.seed = int(seed)
        self.compose = Compose([_build_at(s, f"{key}[{i}]") for i, s in enumerate(self.specs)])

    def __call__(self, x: np.ndarray, sr: int, index: int, epoch: int = 0) -> np.ndarray:
        """Augment dataset item ``index`` at ``epoch`` (deterministic in (seed, epoch, index))."""
        return self.apply(x, sr, item_rng(self.seed, index, epoch))

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator | int) -> np.ndarray:
        if not self.specs:
            return as_waveform(x).copy()
        return self.compose(x, sr, to_generator(rng))

    def prepare(self, sample_rate: int) -> AugmentationPipeline:
        """Measure now what the augmentations would otherwise measure on first use at ``sample_rate`` (the codec
        delay of every bit rate they can draw), so that DataLoader workers forked afterwards inherit it rather than
        each measuring it again, every epoch. The outputs do not change. Returns the pipeline."""
        self.compose.prepare(int(sample_rate))
        return self

    def __len__(self) -> int:
        return len(self.specs)

    def to_list(self) -> list[dict[str, Any]]:
        """The specs as plain dicts (what a recipe or checkpoint records)."""
        return [to_dict(s) for s in self.specs]

    def __repr__(self) -> str:
        return f"AugmentationPipeline({self.to_list()!r}, seed={self.seed})"
