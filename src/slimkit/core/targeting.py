"""One targeting vocabulary for every method: ``targets`` / ``ignore`` over module names.

A pattern is either an exact fully-qualified module name (``model.layers.0.mlp.up_proj``), a
module class name (``Linear``), or a regular expression prefixed with ``re:`` searched anywhere in
the name (``re:mlp\\.(up|gate)_proj$``). A module is selected when it matches some target and no
ignore pattern. A target pattern that matches nothing is an error, so typos never silently select
zero layers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

from torch import nn

from slimkit.core.errors import ConfigError, TargetError


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise TargetError(f"invalid regex in target pattern 're:{pattern}': {e}") from None


def check_patterns(field: str, value: object) -> tuple[str, ...]:
    """Validate a ``targets`` / ``ignore`` value when a config is built; returns it as a tuple.

    Raises:
        ConfigError: not a list of strings, an empty pattern, or a ``re:`` pattern that does not compile
            (named with the regex error), so a typo fails at construction rather than mid-run.
    """
    if (
        isinstance(value, str)
        or not isinstance(value, list | tuple)
        or not all(isinstance(p, str) for p in value)
    ):
        raise ConfigError(f"{field} must be a list of pattern strings, got {value!r}")
    for pattern in value:
        if not pattern.strip() or pattern == "re:":
            raise ConfigError(f"{field} holds an empty pattern: {list(value)!r}")
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as e:
                raise ConfigError(f"{field}: invalid regex in pattern {pattern!r}: {e}") from None
    return tuple(value)


def matches(name: str, module: nn.Module | None, pattern: str) -> bool:
    """Whether the module called ``name`` matches one ``pattern`` (exact, class name, or ``re:``)."""
    if pattern.startswith("re:"):
        return _compile(pattern[3:]).search(name) is not None
    if name == pattern:
        return True
    return module is not None and type(module).__name__ == pattern


def matches_any(name: str, module: nn.Module | None, patterns: Iterable[str]) -> bool:
    return any(matches(name, module, p) for p in patterns)


def select_modules(
    model: nn.Module,
    targets: Sequence[str],
    ignore: Sequence[str] = (),
    *,
    candidates: Callable[[str, nn.Module], bool] | None = None,
) -> dict[str, nn.Module]:
    """Modules of ``model`` selected by ``targets`` minus ``ignore``, in definition order.

    Args:
        model: the model to search.
        targets: patterns; a module matching any is selected.
        ignore: patterns; a module matching any is dropped (wins over ``targets``).
        candidates: an optional filter applied first (e.g. "linear layers inside decoder blocks").

    Raises:
        TargetError: a target pattern matched no candidate module.
    """
    if isinstance(targets, str) or isinstance(ignore, str):
        raise TargetError("targets and ignore must be lists of patterns, not a single string")
    pool = [(n, m) for n, m in model.named_modules() if candidates is None or candidates(n, m)]
    for pattern in targets:
        if not any(matches(n, m, pattern) for n, m in pool):
            raise TargetError(
                f"target pattern {pattern!r} matches no candidate module "
                f"(e.g. {', '.join(n for n, _ in pool[:3]) or 'none'})"
            )
    return {n: m for n, m in pool if matches_any(n, m, targets) and not matches_any(n, m, ignore)}
