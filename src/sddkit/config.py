"""Typed dataclass configs: strict parsing from YAML/JSON-like dicts, and ``key=value`` overrides.

Recipes hold values only. ``from_dict`` maps a plain mapping onto a (possibly nested)
dataclass, checks types, and raises :class:`ConfigError` on unknown keys, naming the
dotted path and the valid keys. A field can name a registry family with
:func:`component_field`; its value is then a ``{"name": ..., **params}`` mapping parsed by
that registry into a :class:`~sddkit.registry.ComponentSpec`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from sddkit.errors import ConfigError

T = TypeVar("T")

_REGISTRY_KEY = "sddkit_registry"


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-5`` and ``1.0e5`` as floats, as YAML 1.2 does.

    PyYAML follows YAML 1.1, whose floats need a dot and a signed exponent: ``lr: 1e-5`` would be
    the string ``'1e-5'`` and fail the type check.

    A key written twice in one mapping is an error: PyYAML would silently keep the last value, so
    ``trainer: {epochs: 1, ..., epochs: 50}`` would train 50 epochs with no word. Keys brought in by a
    ``<<: *anchor`` merge may still be overridden (that is what merging is for).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        f"first at line {first.start_mark.line + 1}",
                        node.start_mark,
                        f"duplicate key {key!r}",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


# Numbers as YAML 1.2 reads them. YAML 1.1 (PyYAML) also reads a leading zero as octal and colons as base 60, so
# `max_steps: 0100` was 64 and `n_mels: 1:20` was 80, silently; here 0100 is 100 and 1:20 is the string "1:20"
# (refused where a number belongs). Hex (0x10), 0o/0b prefixes, underscores (1_000) and .inf / .nan stay.
# No timestamps either (YAML 1.2 has none): no setting is a date, and `trainer.out_dir=2026-12-03` is a folder name,
# which YAML 1.1 made a datetime.date that every string setting refused.
_INT_TAG, _FLOAT_TAG, _TIMESTAMP_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    # a prefixed number needs a digit: `0x_` is text (int() refused it: a ValueError out of the YAML reader)
    _INT_TAG,
    re.compile(r"^[-+]?(?:[0-9][0-9_]*|0x_*[0-9a-fA-F][0-9a-fA-F_]*|0o_*[0-7][0-7_]*|0b_*[01][01_]*)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        # a digit after a leading dot: `._` is text (float('.') refused it: a ValueError out of the YAML reader)
        r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\._*[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"  # 1.5, .5, 1.0e5
        r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"  # 1e-5
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    raw = str(loader.construct_scalar(node))
    text = raw.replace("_", "")
    sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    try:
        return sign * (int(digits, 0) if digits[:2].lower() in ("0x", "0o", "0b") else int(digits, 10))
    except ValueError:  # over Python's 4300 digits for a decimal string, or `!!int abc`: not a ValueError traceback
        problem = (
            f"an integer of {len(digits)} digits is too long" if digits.isdigit() else f"{raw!r} is not an integer"
        )
        raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def _checked(construct: Any, what: str) -> Any:
    """``construct`` with a YAML error, not a ValueError or KeyError traceback, for a value an explicit tag forces on
    it (``!!float abc``, ``!!bool maybe``)."""

    def checked(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, KeyError):
            text = loader.construct_scalar(node)
            raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not {what}", node.start_mark) from None

    return checked


def _construct_str(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    """A string, with a character beyond the Basic Multilingual Plane escaped as JSON escapes it (a surrogate pair,
    ``"\\ud83d\\ude00"``) read as that character: PyYAML reads each half on its own, so a path in a recipe printed
    by ``sdd train --print-config`` (JSON, ASCII only) read back as two lone surrogates, a name no file system has."""
    text = loader.construct_scalar(node)
    if any("\ud800" <= c <= "\udfff" for c in text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return text


_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_Loader.add_constructor(_INT_TAG, _construct_int)
_Loader.add_constructor(_FLOAT_TAG, _checked(yaml.SafeLoader.construct_yaml_float, "a number"))
_Loader.add_constructor("tag:yaml.org,2002:bool", _checked(yaml.SafeLoader.construct_yaml_bool, "true or false"))
del _Loader.yaml_constructors[_TIMESTAMP_TAG]  # no setting is a date: `!!timestamp ...` is refused, not a crash


def component_field(family: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field whose value is a component of registry ``family``.

    In YAML it is written ``{name: lora_encoder, rank: 8, ...}`` (or just the name);
    ``from_dict`` parses it with that family's registry into a ``ComponentSpec``.
    """
    metadata = {_REGISTRY_KEY: family}
    if default is dataclasses.MISSING and "default_factory" not in kwargs:
        return dataclasses.field(metadata=metadata, **kwargs)
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    return dataclasses.field(metadata=metadata, **kwargs)


def from_dict(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or _top_name(cls)}: expected a mapping, got {shown_value(data)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields), key=repr)  # YAML keys may be bools or numbers
    if unknown:
        where = path or _top_name(cls)
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}{did_you_mean(unknown, fields)}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    required = [
        n for n, f in fields.items() if dataclasses.MISSING is f.default and dataclasses.MISSING is f.default_factory
    ]
    missing = [n for n in required if n not in data]
    if missing:  # not the dataclass's own "__init__() missing 1 required positional argument"
        raise ConfigError(f"{path or _top_name(cls)}: missing required key(s) {', '.join(map(repr, missing))}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        f = fields[name]
        sub = f"{path}.{name}" if path else name
        family = f.metadata.get(_REGISTRY_KEY)
        if family is not None:
            from sddkit.registry import article, get_registry

            if value is None and not _allows_none(hints[name]):
                raise ConfigError(f"{sub}: {article(family)} {family} is required here, got null")
            # the spec keeps its key, so that an error of its builder (a missing pretrained folder) names it
            spec = None if value is None else get_registry(family).parse(value, path=sub)
            kwargs[name] = None if spec is None else dataclasses.replace(spec, path=sub)
        else:
            kwargs[name] = _convert(hints[name], value, sub)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required fields
        raise ConfigError(f"{path or _top_name(cls)}: {exc}") from None
    except ValueError as exc:  # __post_init__ validation
        raise ConfigError(_post_init_message(path, _top_name(cls), str(exc), fields)) from None


def _top_name(cls: type) -> str:
    """What a message calls a config read at top level: its ``CONFIG_NAME`` (a recipe says ``recipe``, not the
    class name a recipe writer never sees), else the class name."""
    return getattr(cls, "CONFIG_NAME", cls.__name__)


def _post_init_message(path: str, where: str, message: str, fields: Mapping[str, Any]) -> str:
    """``where: message``, or one dotted key path when ``message`` starts with a key path (``field[2].key: ...``
    or ``field must ...``) from one of the class's own fields.

    A ``__post_init__`` that parses nested specs (augmentations, a sampler's options) or checks a range names
    the field relative to its class (``augment[2].snr_db: ...``, ``snr_db: low 30 is above high 5``, ``epochs must
    be >= 1``); prefixed as it stands that would read ``data: augment[2]...`` or ``trainer: epochs must ...``, not
    the key a recipe writer looks for (``trainer.epochs must be >= 1, got 0``).
    """
    match = re.match(r"(?P<key>([A-Za-z_]\w*)(?:\.[A-Za-z_]\w*|\[-?\d+\])*)(?:: | must )", message)
    if match and match.group(2) in fields:
        if not path:
            return message
        # an override the message suggests for that key (`'augment[0]={name: noise}'`) needs the whole key too
        key = match.group("key")
        return f"{path}.{message}".replace(f"'{key}=", f"'{path}.{key}=")
    return f"{path or where}: {message}"


def field_default(f: dataclasses.Field) -> tuple[Any, bool]:
    """(the default of config field ``f``, whether a config must give it): its default or a fresh default_factory
    value; (None, True) for a field without either (as ``sdd list FAMILY NAME`` and ``sdd list protocol`` show it)."""
    if f.default is not dataclasses.MISSING:
        return f.default, False
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory(), False
    return None, True


def set_away_from_default(cfg: Any, names: Iterable[str]) -> list[str]:
    """The fields of dataclass ``cfg`` among ``names`` whose value is not their default (a list compared as a
    tuple): what a config refuses when the variant it selects never reads them, so the recipe cannot say one thing
    and train another."""
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    changed = []
    for name in names:
        value, default = getattr(cfg, name), defaults[name]
        if (tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value) != default:
            changed.append(name)
    return changed


def did_you_mean(given: Sequence[Any], choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to each misspelt string of ``given``, or ``""``."""
    import difflib

    options = list(choices)
    # compared in lower case: `device: CPU`, `sampler: Domain_Balanced` had no suggestion (difflib sees no letter in
    # common between CPU and cpu)
    lowered = {o.lower(): o for o in reversed(options)}
    close = [
        lowered[m[0]]
        for g in given
        if isinstance(g, str)
        for m in [difflib.get_close_matches(g.lower(), list(lowered), n=1)]
        if m
    ]
    close = list(dict.fromkeys(close))
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


def missing_relative_hint(path: str | Path) -> str:
    """`` (read against the working directory /x, not the recipe's folder)`` for a relative ``path`` that does not
    exist, else ``""``: a recipe's relative paths are read against the working directory, so a recipe run from
    another folder than the one its paths assume names files that are not there."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return ""
    return f" (read against the working directory {Path.cwd()}, not the recipe's folder)"


def _allows_none(tp: Any) -> bool:
    return tp is Any or (get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp))


def _refuses_null(tp: Any) -> bool:
    """Whether a value of type ``tp`` cannot be null: a scalar, list, mapping, dataclass section or union of them
    without None (other types are left to their own checks).

    A section given as null (``data:`` with nothing under it: its keys indented one level too little, or commented
    out) read as all its defaults: a recipe saying ``data: null`` trained, or printed with ``--print-config``, as if
    it had no data section, with no word. A section left out still takes its defaults."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return type(None) not in get_args(tp)
    if origin is Literal:
        return None not in get_args(tp)
    if dataclasses.is_dataclass(tp):
        return True
    return tp in (int, float, bool, str, Path) or origin in (list, Sequence, tuple, typing.Sequence, dict, Mapping)


def _fits(tp: Any, value: Any) -> bool:
    """Whether ``value``'s shape (mapping, list or scalar) is one type ``tp`` can be parsed from."""
    origin = get_origin(tp)
    mapping_type = dataclasses.is_dataclass(tp) or origin in (dict, Mapping)
    list_type = origin in (list, Sequence, tuple, typing.Sequence)
    if tp is Any or origin in (Union, types.UnionType, Literal):
        return True
    if isinstance(value, Mapping) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return mapping_type
    if isinstance(value, (list, tuple)):
        return list_type
    return not (mapping_type or list_type)


def _shape_words(tp: Any) -> str:
    """What a value of type ``tp`` is written as in YAML: ``a mapping``, ``a list of 2 numbers``, ``null``, ..."""
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp) or origin in (dict, Mapping):
        return "a mapping"
    if origin is tuple and get_args(tp) and get_args(tp)[-1] is not Ellipsis:
        items = {_shape_words(a) for a in get_args(tp)}
        plural = {"a number": "numbers", "an integer": "integers", "a string": "strings"}
        kind = plural.get(next(iter(items)), "items") if len(items) == 1 else "items"
        return f"a list of {len(get_args(tp))} {kind}"
    if origin in (list, Sequence, tuple, typing.Sequence):
        return "a list"
    if origin is Literal:
        return f"one of {list(get_args(tp))}"
    words = {float: "a number", int: "an integer", bool: "true/false", str: "a string", Path: "a path"}
    return words.get(tp, getattr(tp, "__name__", str(tp)))


def shown_value(value: Any) -> str:
    """``value`` as a message shows a value that has the wrong type: YAML's words for its booleans and null (``off``
    read as false, not Python's ``False``), else ``repr``."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (YAML reads an unquoted yes/no/on/off/true/false as true or false)"
    return "null" if value is None else repr(value)


_JSON_NON_FINITE = ("Infinity", "-Infinity", "NaN")  # how Python's json module writes inf, -inf and nan


def convert_value(tp: Any, value: Any, path: str) -> Any:
    """``value`` read as type ``tp`` the way recipe fields are (a ConfigError naming ``path`` when it is not one):
    for options typed by a signature rather than by a dataclass field (e.g. a sampler's keyword arguments)."""
    return _convert(tp, value, path)


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if value is None and _refuses_null(tp):
        # `epochs:` with its value left out read "expected an integer, got None": YAML's null, in Python's words
        args = get_args(tp) if origin in (Union, types.UnionType) else (tp,)
        expected = " or ".join(_shape_words(a) for a in args)
        # a section: its keys go under it, indented; left out, it takes its defaults (a list's item has none)
        section = (
            f": indent its keys under {path}, or leave {path} out for its defaults"
            if dataclasses.is_dataclass(tp) and not path.endswith("]")
            else ""
        )
        raise ConfigError(f"{path}: expected {expected}, got null (a value left empty is null{section})")
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, path)
    if origin is Literal:
        return _convert_literal(tp, value, path)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin in (list, Sequence, tuple, typing.Sequence):
        return _convert_sequence(tp, value, path)
    if origin in (dict, Mapping):
        return _convert_mapping(tp, value, path)
    return _convert_scalar(tp, value, path)


def _convert_union(tp: Any, value: Any, path: str) -> Any:
    """``value`` as one of a Union's (or an Optional's) alternatives."""
    args = get_args(tp)
    if value is None and type(None) in args:
        return None
    alternatives = [a for a in args if a is not type(None)]
    if (
        type(None) in args
        and isinstance(value, str)
        and value in ("None", "none")
        and not _takes_text(alternatives, value)
    ):
        # Python's word (`trainer.patience=None`) is text in YAML: it read "expected an integer, got 'None'", as if the
        # key could not be null
        expected = " or ".join(_shape_words(a) for a in args)
        raise ConfigError(f"{path}: expected {expected}, got {value!r} (YAML's none is null or ~; {value} is text)")
    # the alternatives a value of this shape could be (a mapping: a section; a list: a list): when only one
    # can, its own error is the whole story (not the value dumped and every alternative's complaint)
    fitting = [a for a in alternatives if _fits(a, value)]
    if len(fitting) == 1:
        return _convert(fitting[0], value, path)
    if not fitting:  # `data.train=/data/LA/p.txt`: the shapes in words, not the typing expression twice over
        expected = " or ".join(_shape_words(a) for a in args)
        raise ConfigError(f"{path}: expected {expected}, got {shown_value(value)}")
    errors = []
    for arg in fitting:
        try:
            return _convert(arg, value, path)
        except ConfigError as exc:
            errors.append(str(exc))
    if all(a in (int, float, str, bool, Path) or get_origin(a) is Literal for a in fitting):
        # scalars only (an encoder's `layer: lst`): what may be written, not the typing expression and each
        # alternative's complaint with the key path repeated
        expected = " or ".join(_shape_words(a) for a in args)
        names = [v for a in fitting if get_origin(a) is Literal for v in get_args(a) if isinstance(v, str)]
        raise ConfigError(f"{path}: expected {expected}, got {shown_value(value)}{did_you_mean([value], names)}")
    raise ConfigError(f"{path}: {value!r} matches none of {tp}: {'; '.join(errors)}")


def _takes_text(alternatives: Sequence[Any], text: str) -> bool:
    """Whether one of a union's ``alternatives`` can hold ``text`` itself: a string or path, or a choice it names."""
    return any(a in (str, Path) or (get_origin(a) is Literal and text in get_args(a)) for a in alternatives)


def _convert_literal(tp: Any, value: Any, path: str) -> Any:
    choices = list(get_args(tp))
    if isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
        # `decode_cache: no`, `device: off`: YAML's booleans (and True == 1 would pass a choice of 1)
        raise ConfigError(
            f"{path}: expected one of {choices}, got {str(value).lower()} (YAML reads an unquoted "
            "yes/no/on/off/true/false as true or false)"
        )
    if value not in choices:
        names = [c for c in choices if isinstance(c, str)]
        raise ConfigError(f"{path}: {value!r} is not one of {choices}{did_you_mean([value], names)}")
    return value


def _convert_sequence(tp: Any, value: Any, path: str) -> Any:
    """``value`` as a list, a tuple of any length or a tuple of fixed length."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{path}: expected a list, got {shown_value(value)}")
    origin, args = get_origin(tp), get_args(tp)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return _convert_fixed_tuple(args, value, path)
    item = args[0] if args else Any
    items = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _convert_fixed_tuple(args: tuple[Any, ...], value: Sequence[Any], path: str) -> tuple[Any, ...]:
    if len(args) != len(value):
        raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
    return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


def _convert_mapping(tp: Any, value: Any, path: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {shown_value(value)}")
    kt, vt = get_args(tp) or (Any, Any)
    return {_convert(kt, k, f"{path} key {k!r}"): _convert(vt, v, f"{path}.{k}") for k, v in value.items()}


def _convert_scalar(tp: Any, value: Any, path: str) -> Any:
    """``value`` as a float, int, bool, str or Path; a value of any other type is kept as it is."""
    if tp is float:
        return _convert_float(value, path)
    if tp is int:
        return _convert_int(value, path)
    if tp is bool:
        return _convert_bool(value, path)
    if tp is str:
        return _convert_str(value, path)
    if tp is Path:
        return _convert_path(value, path)
    return value


def _convert_float(value: Any, path: str) -> float:
    if isinstance(value, str) and value in _JSON_NON_FINITE:
        # `sdd train --print-config` prints the recipe as JSON, where Python writes `.inf` as Infinity: read back
        # as a recipe, YAML took it for text that every number setting refused (a text setting keeps the text)
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}: expected a number, got {shown_value(value)}")
    if value != value:  # NaN (YAML .nan): every range check compares false, so it would pass them all
        raise ConfigError(f"{path}: expected a number, got NaN")
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range (1 and 400 zeros): not a traceback
        raise ConfigError(f"{path}: {value} is beyond the range of a float") from None


def _convert_int(value: Any, path: str) -> int:
    if isinstance(value, float) and value.is_integer():
        # a whole number written as a float (`max_steps: 1e5`, `batch_size: 8.0`): YAML 1.2 reads 1e5 as a float, and
        # a count written so was refused while a sampler's `num_samples: 1e4` was taken
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}: expected an integer, got {shown_value(value)}")
    return value


def _convert_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true/false, got {shown_value(value)}")
    return value


def _convert_str(value: Any, path: str) -> str:
    if isinstance(value, bool):  # `trainer.out_dir=off`, `expert_names: [yes, no]`: YAML's booleans
        raise ConfigError(
            f"{path}: expected a string, got {str(value).lower()} (YAML reads an unquoted yes/no/on/off/true/false "
            "as true or false: quote it for the text)"
        )
    if isinstance(value, int | float):  # `where: {speaker: 001}`: YAML reads 001 as 1 (and 010 as 8)
        raise ConfigError(
            f"{path}: expected a string, got the number {value!r} (YAML reads an unquoted number as a number, "
            "dropping leading zeros: quote it for the text, e.g. '001')"
        )
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {shown_value(value)}")
    return value


def _convert_path(value: Any, path: str) -> Path:
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"{path}: expected a path, got {shown_value(value)}")
    return Path(value)


def plain_config(value: Any) -> Any:
    """``value`` as the plain data a model directory records: a config dataclass instance (a ``DetectorConfig``)
    through :func:`to_dict`, anything else (a dict already, None) as it is."""
    return to_dict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def to_dict(obj: Any) -> Any:
    """Plain JSON/YAML-serialisable form of a config (inverse of ``from_dict``)."""
    from sddkit.registry import ComponentSpec

    if isinstance(obj, ComponentSpec):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message (with a source excerpt and caret) as one line: what, and where."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{problem}{where}" + (f" ({context})" if context else "")


# No recipe comes near this; the cap only bounds a read from a pipe whose writer never stops.
_MAX_RECIPE_BYTES = 16 << 20


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe; an empty file is an empty mapping."""
    path = Path(path)
    if path.is_dir():  # it exists: "no such recipe file" sent the user looking for a file that is there
        raise ConfigError(f"{path}: a folder, not a recipe file (YAML)")
    if not path.exists():  # not `is_file()`: a pipe (`sdd train <(envsubst < r.yaml)`) is no file, and is there
        raise ConfigError(f"{path}: no such recipe file")
    try:
        mode = path.stat().st_mode
        if stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
            kind = "a socket" if stat.S_ISSOCK(mode) else "a device"
            raise ConfigError(f"{path}: {kind}, not a recipe file (YAML): give a file or a pipe")
        with path.open("rb") as f:
            # /dev/zero would be read without end; a terminal (`sdd train /dev/stdin`, the recipe typed or pasted
            # and ended with Ctrl-D) is a device too, read as before
            if stat.S_ISCHR(mode) and not f.isatty():
                raise ConfigError(f"{path}: a device, not a recipe file (YAML): give a file or a pipe")
            raw = f.read(_MAX_RECIPE_BYTES + 1)  # capped: a pipe from an endless writer is refused, not read forever
        if len(raw) > _MAX_RECIPE_BYTES:
            raise ConfigError(f"{path}: over {_MAX_RECIPE_BYTES >> 20} MiB, too large for a recipe (YAML)")
        text = raw.decode("utf-8")  # not the locale's encoding: a recipe reads the same everywhere
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the recipe: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        # a UTF-16 byte-order mark: Windows PowerShell 5's `>` writes that (`sdd train ... --print-config > r.yaml`)
        utf16 = " (UTF-16 text: save it as UTF-8)" if exc.object[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line}){utf16}"
        ) from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {_yaml_reason(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping at top level")
    return data


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested mapping copy.

    A list item is indexed as error messages name it, ``data.train[0].folds={n: 4, keep: [3]}``, or by an
    integer part, ``data.train.0.folds=...``: either changes the first protocol spec of a recipe that lists
    several.

    A key given twice with different values (``trainer.epochs=3 ... trainer.epochs=5``), or a key replaced whole
    after a dotted override inside it (``trainer.epochs=3 trainer={...}``), is refused: only the last would count,
    silently, as a YAML key written twice would (which the recipe reader refuses too). A key replaced whole and then
    changed by a dotted override (``trainer={...} trainer.epochs=3``) is what overriding is for.
    """
    import copy

    out = copy.deepcopy(dict(data))
    given: dict[tuple[Any, ...], tuple[str, Any]] = {}  # each key set so far, as slots: (its override, its value)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        parts = _override_parts(key, item)
        if not raw.strip():  # `trainer.out_dir=` left the value out (a shell variable that was empty?)
            raise ConfigError(
                f"override {item!r} has no value: write {key}=null for none, or {key}=\"''\" for an empty string"
            )
        try:
            value = yaml.load(raw, Loader=_Loader)
        except yaml.YAMLError as exc:
            # `trainer.out_dir=@runs`, `...protocol=[2020] x.csv`: text that YAML reads as something else
            example = raw if not set(raw) & set("'\"$`\\") else "..."
            raise ConfigError(
                f"override {item!r}: invalid value: {_yaml_reason(exc)}; a value is read as YAML: quote text, "
                f"e.g. {key}=\"'{example}'\""
            ) from None
        node: Any = out
        at: list[Any] = []  # the slots walked: `data.train[0]` and `data.train.-1` of a list of one are one key
        for i, (part, indexed) in enumerate(parts):
            where = _override_key(parts[:i])  # the key up to `node`, in the form written
            if isinstance(node, list):
                slot: Any = _list_index(node, part, item, where)
                at.append(slot % len(node))
            elif indexed:  # `data.train[0]` where train is one spec, not a list
                raise ConfigError(f"override {item!r}: [{part}] indexes a list, but {where} is a mapping")
            else:
                slot = part
                at.append(part)
            if i == len(parts) - 1:
                _check_not_given(given, tuple(at), item, key, value)
                given[tuple(at)] = (item, value)
                node[slot] = value
                break
            child = node[slot] if isinstance(node, list) else node.get(part)
            if child is None:
                # `molex.old_eval[0].protocol=...` or `data.augment.0.p=...` without that list: no item to change (a
                # new mapping with a key '0' was refused as "expected a list, got {'0': {'p': 0.5}}")
                if parts[i + 1][1] or _is_index(parts[i + 1][0]):
                    raise ConfigError(
                        f"override {item!r}: {_override_key(parts[: i + 1])} is not set: no list to index (give the "
                        f"whole list, e.g. {_override_key(parts[: i + 1])}=[...])"
                    )
                child = node[slot] = {}
            if isinstance(child, str):  # a component given by name only: expand to a mapping
                child = {"name": child}
            elif not isinstance(child, (dict, list)):
                raise ConfigError(f"override {item!r}: {part!r} is not a mapping or a list")
            # a copy of each mapping or list on the way: a YAML alias (`options: *opts`) or merge (`<<: *common`)
            # shares it with another key, which the override must leave as it was
            child = node[slot] = dict(child) if isinstance(child, dict) else list(child)
            node = child
    return out


def _check_not_given(
    given: Mapping[tuple[Any, ...], tuple[str, Any]], at: tuple[Any, ...], item: str, key: str, value: Any
) -> None:
    """A ConfigError when override ``item`` (of ``key``, at slots ``at``) would silently undo an earlier one of
    ``given``: the same key with another value, or a key inside it whose value ``value`` does not keep."""
    for earlier_at, (earlier, earlier_value) in given.items():
        if earlier_at == at and not _same_value(earlier_value, value):
            raise ConfigError(
                f"override {item!r}: {key} is already given, as {earlier!r}; only the last would count: give "
                "each key once"
            )
        if len(earlier_at) > len(at) and earlier_at[: len(at)] == at:
            held = _value_at(value, earlier_at[len(at) :])
            if held is _NOT_HELD or not _same_value(held, earlier_value):
                raise ConfigError(
                    f"override {item!r} replaces the whole of {key}, dropping the earlier {earlier!r}: give "
                    f"{key}=... first and the dotted override after it (or put that value inside {key}=...)"
                )


_NOT_HELD = object()


def _value_at(value: Any, slots: Sequence[Any]) -> Any:
    """What ``value`` (an override's, parsed) holds at ``slots`` (mapping keys and list indices), or ``_NOT_HELD``."""
    for slot in slots:
        if isinstance(slot, int) and isinstance(value, list) and slot < len(value):
            value = value[slot]
        elif isinstance(value, dict) and slot in value:
            value = value[slot]
        else:
            return _NOT_HELD
    return value


def _same_value(a: Any, b: Any) -> bool:
    """Whether two parsed override values are the same setting: equal and of one type (``1`` is not ``true``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_value, a, b))
    return type(a) is type(b) and a == b


_OVERRIDE_PART = re.compile(r"([^.\[\]]*)((?:\[-?\d+\])*)")


def _override_parts(key: str, item: str) -> list[tuple[str, bool]]:
    """``data.train[0].folds`` -> ``[("data", False), ("train", False), ("0", True), ("folds", False)]``: each
    part, and whether it was written as a ``[i]`` list index."""
    parts: list[tuple[str, bool]] = []
    for dotted in key.split("."):
        match = _OVERRIDE_PART.fullmatch(dotted)
        if match is None:
            raise ConfigError(f"override {item!r}: {dotted!r} in the key {key!r} is not a name or name[index]")
        name, indices = match.groups()
        if not name:  # `a..b=1` or `a.=1` would create a key named '' (silently, inside an options mapping)
            raise ConfigError(f"override {item!r}: the key {key!r} has an empty part")
        parts += [(name, False), *((index, True) for index in re.findall(r"-?\d+", indices))]
    return parts


def _is_index(part: str) -> bool:
    """Whether a dotted key part is an integer (``0``, ``-1``): a list item, as ``data.train.0.folds`` indexes one."""
    return re.fullmatch(r"-?\d+", part) is not None


def _override_key(parts: Sequence[tuple[str, bool]]) -> str:
    """The key of ``parts`` as error messages write it: ``data.train[0]``."""
    text = ""
    for part, indexed in parts:
        text += f"[{part}]" if indexed else (f".{part}" if text else part)
    return text


def _list_index(node: list, part: str, item: str, where: str) -> int:
    try:
        index = int(part)
    except ValueError:
        # `data.train.protocol=...` where train is a list of specs: say which key to write
        hint = f" ({where} is a list of {len(node)}: e.g. {where}[0].{part}=...)" if where and node else ""
        raise ConfigError(f"override {item!r}: {part!r} indexes a list; use an integer{hint}") from None
    if not -len(node) <= index < len(node):
        raise ConfigError(f"override {item!r}: index {index} is out of range for a list of {len(node)}")
    return index


def expand_home(path: str) -> str:
    """A recipe's path with a leading ``~`` (or ``~user``) expanded as a shell would: YAML values never pass through
    one, so ``~/data/x.csv`` named a folder called ``~`` under the working directory."""
    return os.path.expanduser(path) if path.startswith("~") else path


def expand_root_options(options: dict[str, Any]) -> dict[str, Any]:
    """A protocol reader's options with :func:`expand_home` applied to its folder options (``root`` and every
    ``*_root``: the bona fide corpora beside a spoof-only one, ``bonafide_root``, ``ljspeech_root``), as a recipe's
    and ``--protocol-option`` values give them: neither passes through a shell that would expand ``~``."""
    return {
        k: expand_home(v) if isinstance(v, str) and (k == "root" or k.endswith("_root")) else v
        for k, v in options.items()
    }


# --- value checks shared by config dataclasses (a ValueError becomes a ConfigError in from_dict) ---------
def check_range(name: str, value: Sequence[float], lo: float | None = None, hi: float | None = None) -> None:
    """Validate a ``(low, high)`` parameter range: finite, ordered, within ``[lo, hi]`` when given."""
    if len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    a, b = value
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if a > b:
        raise ValueError(f"{name}: low {a} is above high {b}")
    if lo is not None and a < lo:
        raise ValueError(f"{name}: values must be >= {lo}, got {value!r}")
    if hi is not None and b > hi:
        raise ValueError(f"{name}: values must be <= {hi}, got {value!r}")


def check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
