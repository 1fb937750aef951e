"""``slimkit.json``: what was done to a model directory, and how to rebuild its modules on load.

A slimkit model directory is a plain Hugging Face directory plus one ``slimkit.json``::

    {
      "schema": 1,                          # this file's layout version; newer ones are refused
      "slimkit_version": "0.1.0",
      "created": "2026-01-01T12:00:00+00:00",
      "format": "hf" | "slimkit",           # "hf": plain transformers loads it; "slimkit": needs load_model
      "model_hash": "<sha256>",             # model_hash() of this directory's safetensors
      "parent_hash": "<sha256>" | null,     # model_hash() of the model it was made from
      "parent": "path/of/parent" | null,
      "storage": "bitmask",                 # optional: a registered storage reader builds the state dict
      "restore": ["lowrank", ...],          # optional: registered restorers rebuild modules, in order
      ...                                   # whatever the writer adds: method, config, report, ...
    }

**Restorer contract.** Some compressed models are not made of stock ``nn.Linear`` layers (low-rank
factors, packed integer weights, FFN-skip wrappers) or store their tensors compactly (bitmask
pruning). :func:`slimkit.models.load_model` handles a directory whose ``slimkit.json`` names a
``storage`` or a non-empty ``restore`` list like this:

1. build the dense skeleton with ``AutoModelForCausalLM.from_config(config)``;
2. call each restorer ``fn(model, model_dir, meta) -> None`` named in ``meta["restore"]``, in order.
   A restorer only rebuilds structure in place (swaps modules so the names and shapes match the saved
   tensors), reading what it needs from ``meta`` — by convention from ``meta[name]``. It must not
   rely on the skeleton's weights: they are uninitialised;
3. get the state dict: ``reader(model_dir) -> dict[str, Tensor]`` of the storage reader named by
   ``meta["storage"]``, or, with no storage named, the directory's safetensors files (sharded too);
4. load it strictly: every tensor must find its place and every parameter and buffer must be
   covered (tied weights count as covered through their twin).

The writer side needs nothing special: :func:`slimkit.models.save_model` saves ``model.state_dict()``
of the rebuilt model (or the compact ``state_dict`` it is given) and puts ``storage`` / ``restore``
from its ``metadata`` argument into ``slimkit.json``.

Restorers and storage readers are registered by name with :func:`register_restorer` and
:func:`register_storage_reader` in the package that defines the module types (``slimkit.nn``) or the
storage format (``slimkit.compress.export``). When a name is not registered yet, those provider
modules are imported once so a fresh process can load any directory slimkit wrote.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch import nn

from slimkit import __version__
from slimkit.core.errors import ConfigError, ModelLoadError, RegistryError
from slimkit.core.io import write_json

SLIMKIT_JSON = "slimkit.json"
SCHEMA_VERSION = 1

Restorer: TypeAlias = Callable[[nn.Module, Path, dict[str, Any]], None]
StorageReader: TypeAlias = Callable[[Path], dict[str, torch.Tensor]]

# Modules that register restorers / storage readers when imported. Looked up by name only when a
# slimkit.json asks for something unregistered, so `models` never depends on them at import time.
RESTORER_PROVIDERS: tuple[str, ...] = (
    "slimkit.nn",
    "slimkit.nn.lowrank",
    "slimkit.nn.ffn_skip",
    "slimkit.nn.quantized",
    "slimkit.compress.export",
)

_RESTORERS: dict[str, Restorer] = {}
_STORAGE_READERS: dict[str, StorageReader] = {}
_HASH_CHUNK = 1 << 20


# -- registries ---------------------------------------------------------------------------------------------
def _registering(table: dict[str, Any], kind: str, name: str) -> Callable[[Any], Any]:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a {kind} name must be a non-empty string, got {name!r}")

    def deco(fn: Any) -> Any:
        old = table.get(name)
        # re-running the same definition (a module reload) is fine; two different functions are not
        if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
            raise RegistryError(
                f"{kind} {name!r} is already registered ({old.__module__}.{old.__qualname__})"
            )
        table[name] = fn
        return fn

    return deco


def register_restorer(name: str) -> Callable[[Restorer], Restorer]:
    """Decorator: register ``fn(model, model_dir, meta) -> None`` as the restorer called ``name``."""
    return _registering(_RESTORERS, "restorer", name)


def register_storage_reader(name: str) -> Callable[[StorageReader], StorageReader]:
    """Decorator: register ``fn(model_dir) -> state_dict`` as the storage reader called ``name``."""
    return _registering(_STORAGE_READERS, "storage reader", name)


def _lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    if name not in table:
        for module in RESTORER_PROVIDERS:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as e:
                # a provider that does not exist (yet) is skipped; a broken import inside one is a bug
                if e.name is None or not module.startswith(e.name):
                    raise
    if name not in table:
        raise ModelLoadError(
            f"slimkit.json asks for {kind} {name!r}, which this slimkit does not know "
            f"(known: {sorted(table) or 'none'}); upgrade slimkit or re-export the model"
        )
    return table[name]


def get_restorer(name: str) -> Restorer:
    """The restorer registered as ``name`` (importing the provider modules if needed)."""
    return _lookup(_RESTORERS, "restorer", name)


def get_storage_reader(name: str) -> StorageReader:
    """The storage reader registered as ``name`` (importing the provider modules if needed)."""
    return _lookup(_STORAGE_READERS, "storage reader", name)


def needs_restore(meta: dict[str, Any]) -> bool:
    """Whether a directory with this ``slimkit.json`` needs :func:`load_model` (not plain transformers)."""
    return bool(meta.get("storage")) or bool(meta.get("restore"))


# -- slimkit.json ---------------------------------------------------------------------------------------------
def write_slimkit_json(
    model_dir: str | Path,
    metadata: dict[str, Any] | None = None,
    *,
    model_hash: str | None = None,
    parent_hash: str | None = None,
    parent: str | None = None,
) -> dict[str, Any]:
    """Write ``model_dir/slimkit.json`` atomically: the standard fields plus ``metadata``; returns it.

    Raises:
        ConfigError: ``metadata`` is not JSON-serialisable, overrides a standard field, or has a
            malformed ``storage`` / ``restore`` entry.
    """
    metadata = dict(metadata or {})
    standard = {
        "schema": SCHEMA_VERSION,
        "slimkit_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "format": "slimkit" if needs_restore(metadata) else "hf",
        "model_hash": model_hash,
        "parent_hash": parent_hash,
        "parent": parent,
    }
    clash = sorted(set(standard) & set(metadata))
    if clash:
        raise ConfigError(f"metadata keys {clash} are written by slimkit itself; rename them")
    _check_restore_fields(metadata, "metadata")
    meta = {**standard, **metadata}
    try:
        # serialise first so a bad value fails with a clear message rather than mid-file
        text = json.dumps(meta, default=_json_default)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"metadata is not JSON-serialisable: {e}") from None
    meta = json.loads(text)
    write_json(Path(model_dir) / SLIMKIT_JSON, meta)
    return meta


def read_slimkit_json(model_dir: str | Path) -> dict[str, Any]:
    """The ``slimkit.json`` of ``model_dir`` as a dict, or ``{}`` when the directory has none.

    Raises:
        ModelLoadError: the file is malformed, not an object, or written by a newer slimkit schema.
    """
    path = Path(model_dir) / SLIMKIT_JSON
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    schema = meta.get("schema", SCHEMA_VERSION)
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise ModelLoadError(
            f"{path} has schema {schema!r}; this slimkit reads schema <= {SCHEMA_VERSION}, upgrade slimkit"
        )
    _check_restore_fields(meta, str(path), error=ModelLoadError)
    return meta


def _check_restore_fields(meta: dict[str, Any], where: str, error: type[Exception] = ConfigError) -> None:
    storage = meta.get("storage")
    if storage is not None and not (isinstance(storage, str) and storage):
        raise error(f"{where}: 'storage' must be a registered storage reader name, got {storage!r}")
    restore = meta.get("restore", [])
    if not (isinstance(restore, list | tuple) and all(isinstance(n, str) and n for n in restore)):
        raise error(f"{where}: 'restore' must be a list of restorer names, got {restore!r}")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if hasattr(obj, "to_dict"):  # slimkit configs and reports
        return obj.to_dict()
    if isinstance(obj, set | frozenset | tuple):
        return sorted(obj) if isinstance(obj, set | frozenset) else list(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} object {obj!r} is not JSON serialisable")


# -- provenance ----------------------------------------------------------------------------------------------
def model_hash(model_dir: str | Path) -> str:
    """sha256 over every ``*.safetensors`` file of ``model_dir`` (names and bytes, sorted, streamed).

    Two directories hash alike exactly when they hold the same safetensors files byte for byte, so the
    hash identifies the weights a derived model was made from (config and tokenizer are not included).

    Raises:
        ModelLoadError: the directory does not exist or holds no safetensors file.
    """
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors")) if model_dir.is_dir() else []
    if not files:
        raise ModelLoadError(f"cannot hash {model_dir}: no *.safetensors files there")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        update_digest(digest, path)
    return digest.hexdigest()


def update_digest(digest: Any, path: str | Path) -> Any:
    """Feed a file's bytes into ``digest`` in 1 MiB chunks (never the whole file in memory); returns it."""
    with Path(path).open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest
