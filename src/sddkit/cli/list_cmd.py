"""``sdd list``: print every registry family and its registered names; ``sdd list FAMILY NAME``: one component's
options (config keys, types, defaults)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered components (encoders, back-ends, gates, ...), or one's options")
    p.add_argument("family", nargs="?", help="only this family")
    p.add_argument("name", nargs="?", help="one component of FAMILY: print its options (keys, types, defaults)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sddkit.registry import all_registries, get_registry

    if args.name is not None:
        return _run_component(get_registry(args.family), args.name, args.json)
    # `is not None`: `sdd list ""` (an unset shell variable) names no family; it listed every one
    regs = {args.family: get_registry(args.family)} if args.family is not None else all_registries()
    if args.json:
        print(json.dumps({fam: reg.names() for fam, reg in regs.items()}, indent=2))
        return 0
    for fam, reg in regs.items():
        print(f"{fam}:")
        for entry in reg.entries():
            print(f"  {entry.name:<24} {entry.description}")
            if fam == "protocol":  # on a line of its own: the first stays "name  description"
                print(f"  {'':<24} options: {_reader_options(entry.name)}")
    return 0


@dataclasses.dataclass(frozen=True)
class Option:
    """One config key of a component: its dotted ``key`` (``lora.rank`` inside a section), its type as a recipe
    writes it, and its default (None and ``required`` when a recipe must give it)."""

    key: str
    type: str
    default: Any
    required: bool


def component_options(family: str, name: str) -> list[Option]:
    """The config keys component ``name`` of ``family`` takes, in its config's order: a section's keys (``lora`` of
    the ``ssl`` front-end) follow it as ``section.key``. A protocol reader's are those a recipe's ``options:`` and
    ``--protocol-option`` give (not the one its path fills)."""
    from sddkit.registry import get_registry

    entry = get_registry(family).get(name)
    if entry.config_cls is None:
        return []
    options = _fields(entry.config_cls, "")
    if family == "protocol":
        from sddkit.data.protocols import reader_options

        given = {o.name for o in reader_options(name)}
        options = [o for o in options if o.key.split(".")[0] in given]
    return options


def _fields(cls: type, prefix: str) -> list[Option]:
    from sddkit.config import _REGISTRY_KEY, field_default, to_dict

    hints = typing.get_type_hints(cls)
    out: list[Option] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints.get(f.name)
        default, required = field_default(f)
        family = f.metadata.get(_REGISTRY_KEY)
        type_text = f"{family} (sdd list {family})" if family else _type_name(hint)
        out.append(Option(prefix + f.name, type_text, to_dict(default), required))
        section = None if family else _section_class(hint)  # a component's keys: `sdd list FAMILY NAME` of it
        if section is not None:  # the keys of a nested section: `lora.rank=16` overrides one of them
            out.extend(_fields(section, f"{prefix}{f.name}."))
    return out


def _section_class(hint: Any) -> type | None:
    """The dataclass a field of type ``hint`` holds (``LoRAConfig | None`` -> LoRAConfig), else None."""
    candidates = typing.get_args(hint) if _is_union(hint) else (hint,)
    found = [c for c in candidates if isinstance(c, type) and dataclasses.is_dataclass(c)]
    return found[0] if len(found) == 1 else None


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _type_name(hint: Any) -> str:
    """A type as a recipe's author reads it: ``int | null``, ``list[str]``, ``mp3|aac`` for a choice."""
    if hint is None or hint is type(None):
        return "null"
    if hint is typing.Any:
        return "any"
    if _is_union(hint):
        return " | ".join(_type_name(a) for a in typing.get_args(hint))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "|".join(map(str, args))
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if args else getattr(origin, "__name__", "")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return "mapping"  # its keys follow, as section.key
    return getattr(hint, "__name__", str(hint))


def _run_component(registry: Any, name: str, as_json: bool) -> int:
    entry = registry.get(name)  # an unknown name: UnknownNameError, listing the family's names
    options = component_options(registry.family, name)
    if as_json:
        shown = [dataclasses.asdict(o) for o in options]
        print(
            json.dumps(
                {"family": registry.family, "name": name, "description": entry.description, "options": shown},
                indent=2,
                default=str,
            )
        )
        return 0
    print(f"{registry.family} {name}: {entry.description}")
    if not options:
        print("  (no options)")
    for o in options:
        default = "(required)" if o.required else _yaml_value(o.default)
        print(f"  {o.key}: {o.type} = {default}")
    return 0


def _reader_options(fmt: str) -> str:
    """``root=null, codecs=null, corpus=asvspoof5``: reader ``fmt``'s options with their defaults as a recipe writes
    them (a choice's values after it), which were named nowhere but in an unknown key's error."""
    from sddkit.data.protocols import reader_options

    shown = []
    for option in reader_options(fmt):
        text = f"{option.name}=" + ("(required)" if option.required else _yaml_value(option.default))
        shown.append(text + (f" ({'|'.join(option.choices)})" if option.choices else ""))
    return ", ".join(shown) or "none"


def _yaml_value(value: object) -> str:
    """A default as a recipe (YAML) spells it: null, true, [validated]."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_yaml_value, value)) + "]"
    if isinstance(value, dict):  # a component's default (`{name: softmax, level: token}`), an overrides mapping
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)
