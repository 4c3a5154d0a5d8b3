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

    regs = {args.family: get_registry(args.family)} if args.family else all_registries()
    if args.json:
        print(json.dumps({fam: reg.names() for fam, reg in regs.items()}, indent=2))
        return 0
    for fam, reg in regs.items():
        print(f"{fam}:")
        for entry in reg.entries():
            print(f"  {entry.name:<24} {entry.description}")
    return 0
