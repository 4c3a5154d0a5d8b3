"""Small explicit registries for pluggable families.

Each family (encoder, frontend, backend, router, gate, augmentation, strategy, protocol)
has one :class:`Registry`. An entry is a *builder function* plus an optional typed config
dataclass; the stable entry name is what checkpoints and recipes record. Variants are
further builder functions (e.g. ``aasist`` and ``aasist_l``), never copied classes.

    BACKENDS = Registry("backend")

    @BACKENDS.register("lcnn", config=LCNNConfig)
    def build_lcnn(cfg: LCNNConfig, **ctx) -> nn.Module: ...

    spec = BACKENDS.parse({"name": "lcnn", "channels": 32})   # strict, typed
    module = BACKENDS.build(spec, in_dim=80)
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sddkit.errors import ConfigError, UnknownNameError

# family -> package whose import registers every entry of that family
_FAMILY_PACKAGES: dict[str, str] = {
    "encoder": "sddkit.frontends",
    "frontend": "sddkit.frontends",
    "router": "sddkit.frontends",
    "backend": "sddkit.backends",
    "gate": "sddkit.detectors",
    "augmentation": "sddkit.augment",
    "strategy": "sddkit.training",
    "protocol": "sddkit.data",
}

_REGISTRIES: dict[str, Registry] = {}
# a builder function as registered: register() hands it back as it is, its signature too, for type checkers
_Builder = TypeVar("_Builder", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable[..., Any]
    config_cls: type | None
    description: str


@dataclasses.dataclass(frozen=True)
class ComponentSpec:
    """A parsed registry reference: the entry name and its typed config (or None).

    ``path`` is the config key it was read from (``model.frontend.encoder``), when a typed config read it: an
    error of its builder then names that key. It is not part of the spec's value (not compared, not recorded).
    """

    family: str
    name: str
    config: Any = None
    path: str | None = dataclasses.field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        from sddkit.config import to_dict

        out: dict[str, Any] = {"name": self.name}
        if self.config is not None:
            out.update(to_dict(self.config))
        return out


class Registry:
    """Name -> builder map for one family. Names are stable identifiers; never rename one."""

    def __init__(self, family: str):
        if family in _REGISTRIES:
            raise RuntimeError(f"registry {family!r} already exists")
        self.family = family
        self._entries: dict[str, Entry] = {}
        _REGISTRIES[family] = self

    def register(
        self, name: str, *, config: type | None = None, description: str | None = None
    ) -> Callable[[_Builder], _Builder]:
        def deco(fn: _Builder) -> _Builder:
            if name in self._entries:
                # which one holds it: a plugin (sddkit.plugins) reusing one of sddkit's names learns whose it is
                first = self._entries[name].builder
                whose = f"{getattr(first, '__module__', '?')}.{getattr(first, '__qualname__', repr(first))}"
                raise RuntimeError(
                    f"{self.family} {name!r} registered twice (first by {whose}): give the new one a name of its own"
                )
            doc = description or (fn.__doc__ or "").strip().splitlines()[0:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._entries[name] = Entry(name, fn, config, text)
            return fn

        return deco

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.family, name, self.names()) from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def parse(self, value: Any, path: str | None = None) -> ComponentSpec:
        """``"name"`` or ``{"name": ..., **params}`` (or a ComponentSpec) -> ComponentSpec."""
        from sddkit.config import did_you_mean, from_dict, shown_value

        where, a = path or self.family, article(self.family)
        if isinstance(value, ComponentSpec):
            if value.family != self.family:
                raise ConfigError(f"{where}: expected {a} {self.family}, got {article(value.family)} {value.family}")
            return value
        if isinstance(value, str):
            name, params = value, {}
        elif isinstance(value, Mapping):
            if "name" not in value:
                # e.g. `strategy.beta=0.5` on a recipe that names no strategy: the override made {beta: 0.5}
                given = ", ".join(f"{k}: {v!r}" for k, v in value.items())
                hint = (
                    f"; it has only {{{given}}}: a dotted override ({where}.KEY=VALUE) changes a field of the "
                    f"{self.family} the recipe names, and this one names none: give the whole entry, e.g. "
                    f"'{where}={{name: NAME, {given}}}'"
                    if value and "[" not in where  # a list item is no target of a dotted override
                    else ""
                )
                raise ConfigError(f"{where}: {a} {self.family} needs a 'name' (one of {self.names()}){hint}")
            params = {k: v for k, v in value.items() if k != "name"}
            name = value["name"]
        else:
            # `augment: [~]`, `[yes]`: YAML's words, not Python's
            raise ConfigError(f"{where}: expected {a} {self.family} name or mapping, got {shown_value(value)}")
        if not isinstance(name, str):  # a list or mapping would fail the lookup with a TypeError
            raise ConfigError(
                f"{where}: {a} {self.family} 'name' must be a string (one of {self.names()}), got {shown_value(name)}"
            )
        try:
            entry = self.get(name)
        except UnknownNameError as exc:
            raise ConfigError(f"{where}: {exc}") from None  # ends with the closest name, or the plugin hint
        if entry.config_cls is None:
            if params:
                raise ConfigError(f"{where}: {self.family} {name!r} takes no parameters")
            return ComponentSpec(self.family, name, None)
        fields = {f.name for f in dataclasses.fields(entry.config_cls) if f.init}
        unknown = sorted((k for k in params if k not in fields), key=repr)
        if unknown:
            # often the keys of the component this one replaced (an override of `name` alone keeps its siblings);
            # an override is only suggested for a config key (a spec built in code, or a protocol reader's
            # options, has none: `protocol={name: sddbench}` would be no override at all)
            hint = (
                f". To switch to another {self.family}, replace the whole entry (e.g. the override "
                f"'{path}={{name: {name}}}'), not its name"
                if path
                else ""
            )
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))} for {self.family} {name!r}"
                f"{did_you_mean(unknown, fields)}; valid keys: {', '.join(sorted(fields))}{hint}"
            )
        return ComponentSpec(self.family, name, from_dict(entry.config_cls, params, where))

    def build(self, spec: Any, **context: Any) -> Any:
        """Parse ``spec`` and call the builder: ``builder(config, **context)``.

        A ``ConfigError`` of the builder names the spec's config key when it has one (:attr:`ComponentSpec.path`):
        ``encoder.pretrained: ...`` reads ``mixture.experts[1].frontend.encoder.pretrained: ...``.
        """
        spec = self.parse(spec)
        entry = self.get(spec.name)
        try:
            if entry.config_cls is None:
                return entry.builder(**context)
            return entry.builder(spec.config, **context)
        except ConfigError as exc:
            if spec.path is None or type(exc) is not ConfigError:
                raise
            raise ConfigError(at_path(str(exc), self.family, spec.path)) from None


def article(word: str) -> str:
    """``an`` before a family name that starts with a vowel (an augmentation, an encoder), else ``a``."""
    return "an" if word[:1] in "aeiou" else "a"


def at_path(message: str, family: str, path: str) -> str:
    """``message`` (an error of a ``family`` builder) naming the config key ``path`` it comes from.

    ``encoder.pretrained: ...`` -> ``{path}.pretrained: ...``; a message that already names ``path`` (a nested
    component's error) is kept; any other gets ``{path}: `` in front.
    """
    if message.startswith(path) and message[len(path) : len(path) + 1] in (".", "[", ":", " "):
        return message
    if message.startswith(family) and message[len(family) : len(family) + 1] in (".", ":"):
        return path + message[len(family) :]
    return f"{path}: {message}"


def get_registry(family: str) -> Registry:
    """The registry of ``family``, with every entry of it registered."""
    package = _FAMILY_PACKAGES.get(family)
    if package is None:
        raise UnknownNameError("registry family", family, sorted(_FAMILY_PACKAGES))
    importlib.import_module(package)
    if family not in _REGISTRIES:
        raise RuntimeError(f"{package} did not create the {family!r} registry")
    return _REGISTRIES[family]


def all_registries() -> dict[str, Registry]:
    """Every family's registry, fully populated (used by ``sdd list``)."""
    return {family: get_registry(family) for family in sorted(_FAMILY_PACKAGES)}
