from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from sddkit.config import apply_overrides, component_field, from_dict, load_yaml, to_dict
from sddkit.errors import ConfigError, UnknownNameError
from sddkit.registry import ComponentSpec, Registry, all_registries, get_registry


@dataclass
class Inner:
    rank: int = 4
    alpha: float = 2.0
    targets: tuple[str, ...] = ("q", "v")


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    mode: Literal["a", "b"] = "a"
    lr: float | None = None


def test_from_dict_nested_and_types():
    cfg = from_dict(Outer, {"name": "x", "inner": {"rank": 8, "targets": ["q", "k"]}, "lr": 1})
    assert cfg.inner.rank == 8 and cfg.inner.targets == ("q", "k") and cfg.lr == 1.0
    assert isinstance(cfg.lr, float)
    assert to_dict(cfg) == {
        "name": "x",
        "inner": {"rank": 8, "alpha": 2.0, "targets": ["q", "k"]},
        "mode": "a",
        "lr": 1.0,
    }


def test_unknown_key_raises_with_path():
    with pytest.raises(ConfigError, match=r"inner: unknown key\(s\) 'rnak'.*valid keys: alpha, rank, targets"):
        from_dict(Outer, {"name": "x", "inner": {"rnak": 8}})


@pytest.mark.parametrize(
    "bad",
    [
        {"name": 3},
        {"name": "x", "mode": "c"},
        {"name": "x", "inner": {"rank": 2.5}},
        {"name": "x", "inner": {"rank": True}},
        {},
    ],
)
def test_bad_values_raise(bad):
    with pytest.raises(ConfigError):
        from_dict(Outer, bad)


def test_nan_is_not_a_number_anywhere_in_a_config():
    import yaml

    # YAML's .nan would pass every `x <= 0` style check of __post_init__ (NaN compares false)
    with pytest.raises(ConfigError, match=r"inner.alpha: expected a number, got NaN"):
        from_dict(Outer, {"name": "x", "inner": {"alpha": float("nan")}})
    with pytest.raises(ConfigError, match=r"lr: .*NaN"):
        from_dict(Outer, yaml.safe_load("name: x\nlr: .nan\n"))
    assert from_dict(Outer, {"name": "x", "lr": float("inf")}).lr == float("inf")  # only NaN is refused


def test_overrides():
    base = {"a": {"b": 1}, "c": "lcnn"}
    out = apply_overrides(base, ["a.b=2", "a.d=[1, 2]", "c.channels=16", "e=text"])
    assert out == {"a": {"b": 2, "d": [1, 2]}, "c": {"name": "lcnn", "channels": 16}, "e": "text"}
    assert base == {"a": {"b": 1}, "c": "lcnn"}  # not mutated
    with pytest.raises(ConfigError):
        apply_overrides(base, ["novalue"])


def test_overrides_index_lists():
    base = {"data": {"train": [{"protocol": "a"}, {"protocol": "b"}], "augment": ["gain", {"name": "noise"}]}}
    out = apply_overrides(
        base,
        [
            "data.train.1.folds={n: 4, keep: [3]}",
            "data.train.-2.protocol=z",
            "data.augment.0.p=0.5",
            "data.augment.1=x",
        ],
    )
    assert out["data"]["train"] == [{"protocol": "z"}, {"protocol": "b", "folds": {"n": 4, "keep": [3]}}]
    assert out["data"]["augment"] == [{"name": "gain", "p": 0.5}, "x"]
    assert base["data"]["train"][1] == {"protocol": "b"}  # not mutated
    with pytest.raises(ConfigError, match="use an integer"):
        apply_overrides(base, ["data.train.protocol=c"])
    with pytest.raises(ConfigError, match="out of range"):
        apply_overrides(base, ["data.train.2.protocol=c"])
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides({"a": [1]}, ["a.0.b=2"])


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such recipe"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(lst)


def test_registry_parse_build_and_component_field():
    reg = Registry("testfamily_for_unit_test")

    @reg.register("double", config=Inner)
    def build_double(cfg: Inner, scale: int = 1):
        """Doubles the rank."""
        return cfg.rank * 2 * scale

    @reg.register("plain")
    def build_plain():
        return "plain"

    assert reg.names() == ["double", "plain"]
    assert reg.build({"name": "double", "rank": 3}, scale=10) == 60
    assert reg.build("plain") == "plain"
    spec = reg.parse({"name": "double", "rank": 3})
    assert spec == ComponentSpec("testfamily_for_unit_test", "double", Inner(rank=3))
    assert spec.to_dict() == {"name": "double", "rank": 3, "alpha": 2.0, "targets": ["q", "v"]}
    assert reg.entries()[0].description == "Doubles the rank."
    with pytest.raises(UnknownNameError, match="registered: double, plain"):
        reg.get("triple")
    with pytest.raises(ConfigError, match="unknown key"):
        reg.parse({"name": "double", "rnak": 3})
    with pytest.raises(ConfigError, match="takes no parameters"):
        reg.parse({"name": "plain", "x": 1})
    with pytest.raises(ConfigError, match="needs a 'name'"):
        reg.parse({"rank": 1})
    with pytest.raises(RuntimeError, match="'plain' registered twice"):
        reg.register("plain")(build_plain)


def test_all_families_exist():
    regs = all_registries()
    assert {"encoder", "frontend", "router", "backend", "gate", "augmentation", "strategy", "protocol"} <= set(regs)
    with pytest.raises(UnknownNameError):
        get_registry("nope")


def test_component_field_unknown_name():
    @dataclass
    class WithComponent:
        backend: ComponentSpec = component_field("backend")

    with pytest.raises(ConfigError, match="unknown backend 'definitely_not_registered'"):
        from_dict(WithComponent, {"backend": {"name": "definitely_not_registered"}})


def test_an_override_of_a_component_name_alone_says_to_replace_the_whole_entry():
    # `model.backend.name=resnet18` keeps lcnn's `channels`: the refusal named the key but not the way out
    recipe = {"model": {"backend": {"name": "lcnn", "channels": 16}}}
    spec = apply_overrides(recipe, ["model.backend.name=resnet18"])["model"]["backend"]
    with pytest.raises(ConfigError, match=r"'channels' for backend 'resnet18'.*model\.backend=\{name: resnet18\}"):
        get_registry("backend").parse(spec, "model.backend")
