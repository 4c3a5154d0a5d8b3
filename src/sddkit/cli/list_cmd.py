"""``sdd list``: print every registry family and its registered names."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered components (encoders, back-ends, gates, ...)")
    p.add_argument("family", nargs="?", help="only this family")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sddkit.registry import all_registries, get_registry

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
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)
