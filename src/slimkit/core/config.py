"""Validated, serializable configs: the one way every slimkit method is parameterised.

A config is a frozen dataclass that inherits :class:`Config`. It validates itself in
``__post_init__`` (a bad value raises :class:`ConfigError` naming the field and its allowed range)
and round-trips through plain dicts, JSON and YAML. Serialized configs carry their type name and a
``version`` so a stored run says exactly what produced it::

    @dataclass(frozen=True)
    class WandaConfig(Config):
        sparsity: float = 0.5

        def __post_init__(self):
            check_range("sparsity", self.sparsity, 0.0, 1.0, hi_inclusive=False)

    cfg = WandaConfig(sparsity=0.5)
    assert Config.from_dict(cfg.to_dict()) == cfg

Nested configs (e.g. an allocation inside a pruning config) serialize as nested dicts with their own
``type`` key. Every ``Config`` subclass is indexed by class name on definition, so ``from_dict``
needs no import table.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml

from slimkit.core.errors import ConfigError

_CONFIG_TYPES: dict[str, type[Config]] = {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Base of every slimkit config.

    Attributes:
        version (int): schema version of this config type; bumped when a field changes meaning.
            Loading a dict written by a newer version is refused. Default: the class's ``VERSION``.
    """

    VERSION: ClassVar[int] = 1
    version: int = 0  # 0 means "the class's current VERSION"; filled in by __post_init__

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CONFIG_TYPES[cls.__name__] = cls

    def __post_init__(self) -> None:
        if self.version == 0:
            object.__setattr__(self, "version", type(self).VERSION)
        if not isinstance(self.version, int) or not 1 <= self.version <= type(self).VERSION:
            raise ConfigError(
                f"{type(self).__name__}.version: {self.version!r} is not supported "
                f"(this slimkit reads versions 1..{type(self).VERSION})"
            )
        _check_field_types(self)

    # -- serialization -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: ``{"type": ClassName, "version": v, field: value, ...}``."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            out[f.name] = _to_plain(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build a config from :meth:`to_dict` output (or hand-written YAML).

        Called on :class:`Config` itself the ``type`` key picks the class; called on a subclass the
        ``type`` key may be omitted. Unknown keys are an error naming the key and the known ones.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        type_name = data.pop("type", None)
        target: type[Config] = cls
        if type_name is not None:
            if type_name not in _CONFIG_TYPES:
                raise ConfigError(f"unknown config type {type_name!r}; known: {sorted(_CONFIG_TYPES)}")
            target = _CONFIG_TYPES[type_name]
            if not issubclass(target, cls):
                raise ConfigError(f"config type {type_name!r} is not a {cls.__name__}")
        elif cls is Config:
            raise ConfigError("config mapping has no 'type' key; cannot tell which config it is")
        names = {f.name: f for f in dataclasses.fields(target) if f.init}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{target.__name__}: unknown key(s) {unknown}; known keys: {sorted(names)}")
        hints = typing.get_type_hints(target)
        kwargs = {k: _from_plain(v, hints.get(k)) for k, v in data.items()}
        try:
            return target(**kwargs)  # type: ignore[return-value]
        except TypeError as e:  # a missing required field
            raise ConfigError(f"{target.__name__}: {e}") from None

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> Self:
        from slimkit.core.io import parse_json

        return cls.from_dict(parse_json(text, "malformed JSON config", error=ConfigError))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Self:
        return cls.from_dict(load_yaml_text(text))

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a ``.yaml``/``.yml``/``.json`` file."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        from slimkit.core.io import read_text_file

        text = read_text_file(path, max_bytes=MAX_YAML_BYTES, error=ConfigError)
        if path.suffix == ".json":
            return cls.from_json(text)
        return cls.from_dict(load_yaml_text(text, source=str(path)))

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


MAX_YAML_BYTES = 16 << 20
MAX_YAML_NODES = 1_000_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``3e-4`` as a float (YAML 1.2), not a string as YAML 1.1 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml_text(text: str, source: str = "<string>") -> Any:
    """``yaml.safe_load`` with a :class:`ConfigError` (naming the line) for malformed YAML.

    Scientific notation without a dot (``3e-4``) is read as a float.
    """
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_expanded_size(node, source)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except RecursionError:
        raise ConfigError(f"YAML in {source} is nested too deeply to read") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML in {source}{where}: {getattr(e, 'problem', e)}") from None
    return data


def _check_expanded_size(root: yaml.Node, source: str) -> None:
    """Refuse YAML whose aliases expand past ``MAX_YAML_NODES`` nodes (the "billion laughs").

    PyYAML builds an alias as a shared reference, so loading is cheap; the blow-up comes when the
    value is walked (validated, copied, written to provenance). The expanded size is counted on the
    node graph, each distinct node once (memoised), so the count itself stays linear.
    """
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = MAX_YAML_NODES + 1  # a node inside itself (a recursive alias) is too large
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        total = min(total, MAX_YAML_NODES + 1)
        sizes[id(node)] = total
        return total

    if size(root) > MAX_YAML_NODES:
        raise ConfigError(
            f"YAML in {source} expands to more than {MAX_YAML_NODES:,} values through its aliases (&/*); "
            "write the values out"
        )


def config_types() -> dict[str, type[Config]]:
    """Every defined config class, by name."""
    return dict(_CONFIG_TYPES)


# -- validation helpers (used by subclasses' __post_init__) --------------------------------------------
def check_range(
    name: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_inclusive: bool = True,
    hi_inclusive: bool = True,
) -> None:
    """Raise :class:`ConfigError` unless ``lo <= value <= hi`` (bounds optional, inclusivity per side)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if value != value:  # NaN
        raise ConfigError(f"{name} must be a number, got NaN")
    ok = True
    if lo is not None:
        ok &= value >= lo if lo_inclusive else value > lo
    if hi is not None:
        ok &= value <= hi if hi_inclusive else value < hi
    if not ok:
        left = "-inf" if lo is None else f"{'[' if lo_inclusive else '('}{lo}"
        right = "inf" if hi is None else f"{hi}{']' if hi_inclusive else ')'}"
        if lo is None:
            left = "(-inf"
        if hi is None:
            right = "inf)"
        raise ConfigError(f"{name}={value!r} is outside the allowed range {left}, {right}")


def check_positive(name: str, value: int | float) -> None:
    """Raise :class:`ConfigError` unless ``value > 0``."""
    check_range(name, value, 0, None, lo_inclusive=False)


def check_choice(name: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {choices}")


# -- internals ------------------------------------------------------------------------------------------
def _to_plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _from_plain(value: Any, hint: Any) -> Any:
    if isinstance(value, dict) and "type" in value and value["type"] in _CONFIG_TYPES:
        return Config.from_dict(value)
    if isinstance(value, list):
        origin = typing.get_origin(hint)
        if origin is tuple or (origin in (types.UnionType, typing.Union) and _union_has(hint, tuple)):
            return tuple(_from_plain(v, None) for v in value)
        return [_from_plain(v, None) for v in value]
    return value


def _union_has(hint: Any, kind: type) -> bool:
    return any(typing.get_origin(a) is kind or a is kind for a in typing.get_args(hint))


def _check_field_types(cfg: Config) -> None:
    """Catch the common type mistakes (a string where a number belongs) with a clear message."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        hint = hints.get(f.name)
        value = getattr(cfg, f.name)
        allowed = _simple_types(hint)
        if allowed is None:
            continue
        if isinstance(value, bool) and bool not in allowed:
            raise ConfigError(f"{type(cfg).__name__}.{f.name} must be {_names(allowed)}, got {value!r}")
        if not isinstance(value, tuple(allowed)):
            raise ConfigError(f"{type(cfg).__name__}.{f.name} must be {_names(allowed)}, got {value!r}")


def _simple_types(hint: Any) -> set[type] | None:
    """The runtime types a simple annotation admits, or None when it is not simple."""
    if hint is None:
        return None
    args = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else (hint,)
    out: set[type] = set()
    for a in args:
        if a is type(None):
            out.add(type(None))
        elif a is float:
            out |= {float, int}
        elif a in (int, str, bool):
            out.add(a)
        else:
            return None
    return out


def _names(types_: set[type]) -> str:
    return " or ".join(sorted("None" if t is type(None) else t.__name__ for t in types_))
