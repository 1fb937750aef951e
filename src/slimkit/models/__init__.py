"""Hugging Face causal LMs in slimkit: safe load/save of model directories, architecture adapters,
``slimkit.json`` metadata and restorers, GGUF import, named offline models (``smollm2-135m``), and
tiny models for tests.

``default_model`` (the factworld model, trained on first use) is imported only when asked for.
"""

from __future__ import annotations

from typing import Any

from slimkit.models.adapters import (
    ArchitectureAdapter,
    get_adapter,
    is_linear,
    linear_weight,
    set_linear_weight,
)
from slimkit.models.gguf import convert_gguf, read_gguf_info
from slimkit.models.loading import load_model, resolve_device, resolve_dtype, save_model
from slimkit.models.metadata import (
    model_hash,
    read_slimkit_json,
    register_restorer,
    register_storage_reader,
    write_slimkit_json,
)
from slimkit.models.named import install_named_model, known_model_names, list_named_models
from slimkit.models.tiny import tiny_config, tiny_model, tiny_tokenizer


def __getattr__(name: str) -> Any:
    # default_model trains a model on first use and pulls in the data stack; import it on demand only
    if name == "default_model":
        from slimkit.models.default import default_model

        return default_model
    raise AttributeError(f"module 'slimkit.models' has no attribute {name!r}")


__all__ = [
    "ArchitectureAdapter",
    "convert_gguf",
    "default_model",
    "get_adapter",
    "install_named_model",
    "is_linear",
    "known_model_names",
    "linear_weight",
    "list_named_models",
    "load_model",
    "model_hash",
    "read_gguf_info",
    "read_slimkit_json",
    "register_restorer",
    "register_storage_reader",
    "resolve_device",
    "resolve_dtype",
    "save_model",
    "set_linear_weight",
    "tiny_config",
    "tiny_model",
    "tiny_tokenizer",
    "write_slimkit_json",
]
