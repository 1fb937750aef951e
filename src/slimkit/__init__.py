"""slimkit: make neural networks smaller, cheaper to train and faster to run — and measure the cost.

Public API (everything else is reachable through the subpackages)::

    model, tok = slimkit.load_model("path/to/hf-dir")
    report = slimkit.compress_(model, slimkit.WandaConfig(sparsity=0.5), calib=...)
    results = slimkit.evaluate(model, tok, suite="ppl")
    slimkit.save_model(model, tok, "out-dir")

Imports are lazy so ``slimkit --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "slimkit.models",
    "save_model": "slimkit.models",
    "default_model": "slimkit.models",
    "evaluate": "slimkit.evaluate",
    "compress_": "slimkit.compress",
    "SlimkitError": "slimkit.core.errors",
    "Config": "slimkit.core.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    # config classes of registered methods, e.g. slimkit.WandaConfig
    if name.endswith("Config"):
        from slimkit.core.config import config_types

        for module in ("slimkit.compress", "slimkit.train", "slimkit.data.factworld"):
            try:
                importlib.import_module(module)
            except ImportError:
                continue
        types_ = config_types()
        if name in types_:
            return types_[name]
    raise AttributeError(f"module 'slimkit' has no attribute {name!r}")


__all__ = [
    "Config",
    "SlimkitError",
    "__version__",
    "compress_",
    "default_model",
    "evaluate",
    "load_model",
    "save_model",
]
