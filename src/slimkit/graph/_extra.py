"""The optional ``graph`` extra (torch-geometric, pymetis): one clear error when it is missing.

``import slimkit`` never imports torch-geometric; only ``slimkit.graph`` does, and it calls
:func:`require_graph_extra` first so a missing package reads as an install instruction, not a traceback.
"""

from __future__ import annotations

import importlib.util

from slimkit.core.errors import SlimkitError

INSTALL_HINT = "pip install 'slimkit[graph]'"


class MissingExtraError(SlimkitError, ImportError):
    """An optional dependency of the ``graph`` extra is not installed."""


def require_graph_extra(*modules: str) -> None:
    """Raise :class:`MissingExtraError` (naming the install command) unless ``modules`` import.

    Default: ``torch_geometric``. pymetis is checked where METIS partitions are asked for.
    """
    for module in modules or ("torch_geometric",):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(
                f"slimkit.graph needs the {module!r} package; install it with {INSTALL_HINT}"
            )
