"""Components of one's own for the ``sdd`` commands: plugin modules, imported before a command runs.

A plugin is a module that registers components when imported (``get_registry("backend").register("mine", ...)``).
Two routes name them, both read by :func:`load_plugins`:

- the environment variable ``SDDKIT_PLUGINS``: comma-separated importable module names
  (``SDDKIT_PLUGINS=mylab.sdd_parts,other_pkg``); child processes (torchrun's workers) inherit it;
- the entry points of group ``sddkit.plugins`` of installed packages (``[project.entry-points."sddkit.plugins"]
  mylab = "mylab.sdd_parts"`` in a ``pyproject.toml``): loading one imports its module.

``sdd`` calls :func:`load_plugins` in every process before its command runs; a script of one's own calls it
itself (or imports its modules). No torch here: the plugins import what they need.
"""

from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass
from typing import Any

from sddkit.errors import PluginError

ENV_VAR = "SDDKIT_PLUGINS"
ENTRY_POINT_GROUP = "sddkit.plugins"

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_loaded: set[tuple[str, str]] = set()  # (source, module) pairs imported by this process


@dataclass(frozen=True)
class Plugin:
    """One plugin to import: ``target`` (a module name, or an entry point's ``module:attr`` value) and where it was
    named (``source``: the environment variable, or the entry point and its distribution)."""

    target: str
    source: str
    entry_point: Any = None  # the importlib.metadata.EntryPoint, for that route


def env_plugins(value: str | None = None) -> list[Plugin]:
    """The modules ``SDDKIT_PLUGINS`` names (``value``, else the environment's), in order; empty items (a trailing
    comma) are skipped. A name that is no module name (a file path) is a :class:`PluginError`."""
    value = os.environ.get(ENV_VAR, "") if value is None else value
    plugins = []
    for item in value.split(","):
        name = item.strip()
        if not name:
            continue
        if not _MODULE_NAME.fullmatch(name):
            # `SDDKIT_PLUGINS=./mylab/parts.py` would otherwise fail as "No module named './mylab/parts'"
            raise PluginError(
                f"{ENV_VAR}: {name!r} is not a module name: give importable module names separated by commas "
                f"(e.g. {ENV_VAR}=mylab.sdd_parts), with their folder on the Python path (PYTHONPATH)"
            )
        plugins.append(Plugin(name, ENV_VAR))
    return plugins


def entry_point_plugins() -> list[Plugin]:
    """The entry points of group ``sddkit.plugins`` of the installed distributions (each once: a distribution
    found twice on the path lists its entry points twice)."""
    from importlib.metadata import entry_points

    plugins, seen = [], set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if (ep.name, ep.value) in seen:
            continue
        seen.add((ep.name, ep.value))
        dist = getattr(ep, "dist", None)
        of = f" of {dist.name}" if dist is not None and getattr(dist, "name", None) else ""
        plugins.append(Plugin(ep.value, f"entry point {ep.name!r}{of} (group {ENTRY_POINT_GROUP})", ep))
    return plugins


def load_plugins() -> list[str]:
    """Import every plugin ``SDDKIT_PLUGINS`` and the ``sddkit.plugins`` entry points name (each once per process);
    returns their targets, in the order imported. A plugin that fails to import is a :class:`PluginError` naming
    it, where it was named, and the original exception (a name registered twice is the registry's own error)."""
    targets = []
    for plugin in env_plugins() + entry_point_plugins():
        key = (plugin.source, plugin.target)
        if key not in _loaded:
            _import(plugin)
            _loaded.add(key)
        targets.append(plugin.target)
    return targets


def _import(plugin: Plugin) -> None:
    import importlib

    try:
        if plugin.entry_point is not None:
            plugin.entry_point.load()
        else:
            importlib.import_module(plugin.target)
    except Exception as exc:  # anything a module can raise at import: say which plugin, not a bare traceback
        raise PluginError(_failure(plugin, exc)) from exc


def _failure(plugin: Plugin, exc: Exception) -> str:
    module = plugin.target.partition(":")[0]
    lead = f"plugin {module!r} (from {plugin.source})"
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing is not None and (module == missing or module.startswith(missing + ".")):
        # the plugin itself (or its package) is not found, as opposed to a module the plugin imports
        return (
            f"{lead} could not be imported: {type(exc).__name__}: {exc}; install it, or put the folder that holds "
            "it on the Python path (PYTHONPATH)"
        )
    return f"{lead} failed to import: {type(exc).__name__}: {exc}{_where(exc)}"


def _where(exc: BaseException) -> str:
    """`` (at FILE:LINE)``: the plugin's line that raised ``exc``, the last one outside sddkit and the import
    machinery (a name registered twice is raised in sddkit's registry: the plugin's line registered it). A
    SyntaxError's own place (its message names the file without its folder)."""
    if isinstance(exc, SyntaxError):
        return f" (at {exc.filename}:{exc.lineno})" if exc.filename else ""
    import importlib

    ours = (os.path.dirname(__file__), os.path.dirname(importlib.__file__))
    frames = traceback.extract_tb(exc.__traceback__)
    theirs = [f for f in frames if not f.filename.startswith(ours) and not f.filename.startswith("<frozen")]
    frame = (theirs or frames or [None])[-1]
    return "" if frame is None else f" (at {frame.filename}:{frame.lineno})"
