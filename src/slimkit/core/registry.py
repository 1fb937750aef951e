"""A registry keyed by config type: how ``compress_``, tasks and trainers find their handler.

    PRUNERS = Registry("pruning method")

    @PRUNERS.register(WandaConfig)
    class Wanda: ...

    handler_cls = PRUNERS.lookup(cfg)        # by the config's type (subclasses resolve via MRO)

No dispatch on method-name strings: the config type *is* the key. ``names()`` maps the CLI's
short names (``--method wanda``) to config classes through the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from slimkit.core.config import Config
from slimkit.core.errors import RegistryError

H = TypeVar("H")


class Registry(Generic[H]):
    """Maps config types (and a short name for each) to handlers."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._by_type: dict[type[Config], H] = {}
        self._by_name: dict[str, type[Config]] = {}

    def register(self, config_type: type[Config], name: str | None = None) -> Callable[[H], H]:
        """Decorator: register ``handler`` for ``config_type`` (and the CLI ``name``, if given)."""
        if not (isinstance(config_type, type) and issubclass(config_type, Config)):
            raise TypeError(f"{self.kind} registry keys must be Config subclasses, got {config_type!r}")

        def deco(handler: H) -> H:
            if config_type in self._by_type:
                raise RegistryError(f"{self.kind} for {config_type.__name__} is already registered")
            self._by_type[config_type] = handler
            if name is not None:
                self._by_name[name] = config_type
            return handler

        return deco

    def lookup(self, config: Config | type[Config]) -> H:
        cls = config if isinstance(config, type) else type(config)
        for klass in cls.__mro__:
            if klass in self._by_type:
                return self._by_type[klass]  # type: ignore[index]
        raise RegistryError(
            f"no {self.kind} registered for {cls.__name__}; known: "
            f"{sorted(c.__name__ for c in self._by_type)}"
        )

    def config_for(self, name: str) -> type[Config]:
        """The config class registered under the short ``name`` (e.g. ``"wanda"``)."""
        if name not in self._by_name:
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {sorted(self._by_name)}")
        return self._by_name[name]

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __contains__(self, config: Any) -> bool:
        try:
            self.lookup(config)
        except RegistryError:
            return False
        return True

    def __len__(self) -> int:
        return len(self._by_type)
