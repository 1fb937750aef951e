"""Load and save Hugging Face causal LMs from local directories, safely.

    model, tok = load_model("path/to/model")                       # eval mode, on "cpu"
    save_model(model, tok, "out", metadata={"method": "wanda", "config": cfg}, parent="path/to/model")

A model directory is a plain Hugging Face directory (``config.json``, ``model.safetensors`` or
``model.safetensors.index.json`` with its shards, tokenizer files, ``generation_config.json``) plus
``slimkit.json`` (see :mod:`slimkit.models.metadata`). Only safetensors are read: pickle weights
(``pytorch_model.bin``, ``*.pt``, ...) can run arbitrary code when loaded and are refused.

Every problem with the directory is found before transformers touches it and raised as a
:class:`ModelLoadError` (or :class:`UnsupportedArchitectureError`) whose one-line message names it.
Directories whose ``slimkit.json`` names a ``storage`` reader or ``restore`` steps are rebuilt as the
restorer contract in :mod:`slimkit.models.metadata` describes.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from slimkit.core.devices import resolve_device
from slimkit.core.errors import ConfigError, ModelLoadError, SlimkitError
from slimkit.core.io import atomic_dir, parse_json
from slimkit.models.adapters import adapter_for_model_type
from slimkit.models.metadata import (
    get_restorer,
    get_storage_reader,
    model_hash,
    needs_restore,
    read_slimkit_json,
    write_slimkit_json,
)

DTYPES: dict[str, torch.dtype | str] = {
    "auto": "auto",
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")
SAFETENSORS_INDEX = "model.safetensors.index.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_CONFIG_BYTES = 1 << 20
# config fields that size the model: checked against the weights before anything is allocated
SIZE_FIELDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size")
_BLOCK_INDEX = re.compile(r"^(.*?)\.(\d+)\.")


# -- options ---------------------------------------------------------------------------------------------------
def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str:
    """``"float32"`` / ``"bfloat16"`` / ``"float16"`` (or fp32/bf16/fp16) / ``"auto"`` / a floating
    ``torch.dtype`` -> the ``dtype`` argument of ``from_pretrained``. ``None`` means ``"auto"``: the
    dtype stored in ``config.json`` (float32 when none is stored), as in transformers 5.

    Raises:
        ConfigError: an unknown name or a non-floating dtype.
    """
    if dtype is None:
        return "auto"
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ConfigError(
                f"dtype={dtype} is not a floating-point dtype; use float32, bfloat16 or float16"
            )
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise ConfigError(f"dtype={dtype!r} is not one of {sorted(DTYPES)} (or a torch.dtype)")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' own progress bars and load reports (slimkit checks and reports itself)."""
    bars_were_on = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_were_on:
            hf_logging.enable_progress_bar()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


# -- directory checks (all before transformers runs) ----------------------------------------------------------
def _check_dir(path: str | Path) -> Path:
    model_dir = Path(path).expanduser()
    if not model_dir.exists():
        raise ModelLoadError(f"model path does not exist: {model_dir}")
    if not model_dir.is_dir():
        raise ModelLoadError(
            f"model path is not a directory: {model_dir} (give the Hugging Face model folder)"
        )
    return model_dir


def _read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"no config.json in {model_dir}; is this a Hugging Face model directory?")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ModelLoadError(f"{path} is {path.stat().st_size:,} bytes; a config.json is a few KB")
        config = parse_json(path.read_text(encoding="utf-8"), str(path), error=ModelLoadError)
    except UnicodeDecodeError as e:
        raise ModelLoadError(f"{path} is not UTF-8 text: {_first_line(e)}") from None
    if not isinstance(config, dict) or not config.get("model_type"):
        raise ModelLoadError(f"{path} has no 'model_type'; cannot tell the architecture")
    return config


def _weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files the weights live in; refuses pickle-only, missing and corrupt weights."""
    index = model_dir / SAFETENSORS_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            names = set(weight_map.values())
            if not all(isinstance(name, str) for name in names):
                raise TypeError("shard names must be strings")
        except (
            json.JSONDecodeError,
            UnicodeDecodeError,
            KeyError,
            TypeError,
            AttributeError,
            RecursionError,
            ValueError,
        ) as e:
            raise ModelLoadError(
                f"{index} is malformed (need a 'weight_map' object): {_first_line(e)}"
            ) from None
        shards = sorted(_shard_path(model_dir, index, name) for name in names)
        missing = [p.name for p in shards if not p.is_file()]
        if missing:
            raise ModelLoadError(f"{index} lists shard(s) missing from the directory: {', '.join(missing)}")
        files = shards
    else:
        files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ModelLoadError(
                f"{model_dir} has only pickle weights ({', '.join(pickles)}), which slimkit refuses because "
                "loading pickle can run arbitrary code; convert once where you trust the file: "
                "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir) writes model.safetensors"
            )
        raise ModelLoadError(f"no weights in {model_dir}: expected model.safetensors or {SAFETENSORS_INDEX}")
    for path in files:
        _check_safetensors(path)
    return files


def _shard_path(model_dir: Path, index: Path, name: str) -> Path:
    # a shard is a file of this directory: an index naming "../x" or "/etc/x" (or a link leading out)
    # would make slimkit read, hash and copy files from elsewhere
    path = model_dir / name
    if Path(name).is_absolute() or len(Path(name).parts) != 1 or name in (".", ".."):
        raise ModelLoadError(f"{index} names shard {name!r}, which is not a file name inside {model_dir}")
    if path.exists() and path.resolve().parent != model_dir.resolve():
        raise ModelLoadError(f"{index} names shard {name!r}, a link that leads outside {model_dir}")
    return path


def _check_safetensors(path: Path) -> None:
    # the header lists every tensor's byte range; safetensors refuses a file those ranges do not cover,
    # so reading the keys catches truncation and garbage without reading the data
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(
            f"{path} is not a readable safetensors file (truncated or corrupt? {_first_line(e)}); "
            "copy or export it again"
        ) from None


def _stored_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    # shapes come from the safetensors headers: nothing is read from the data section
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def _stored_block_count(shapes: dict[str, tuple[int, ...]]) -> int | None:
    """Blocks in the weights: 1 + the largest index under the prefix with the most indices (``model.layers``)."""
    indices: dict[str, set[int]] = {}
    for key in shapes:
        match = _BLOCK_INDEX.match(key)
        if match:
            indices.setdefault(match.group(1), set()).add(int(match.group(2)))
    if not indices:
        return None
    return max(max(found) for found in indices.values() if len(found) == max(map(len, indices.values()))) + 1


def _check_config_sizes(model_dir: Path, files: list[Path], trust_remote_code: bool) -> None:
    """Refuse a config.json whose sizes cannot describe the stored weights, before anything is built.

    A config claiming 10^6 layers would build them for minutes (even on the ``meta`` device), and one
    with fewer layers than the weights silently evaluates a truncated model. So the sizing fields must
    be positive integers and the layer count must equal the stored block count. A config transformers
    cannot read at all is left to the architecture check, which names the model type.
    """
    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except Exception:
        return
    for field in SIZE_FIELDS:
        value = getattr(config, field, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelLoadError(f"{model_dir}/config.json: {field}={value!r} must be a positive integer")
    layers = getattr(config, "num_hidden_layers", None)
    stored = _stored_block_count(_stored_shapes(files))
    if layers is not None and stored is not None and layers != stored:
        raise ModelLoadError(
            f"{model_dir}/config.json: num_hidden_layers={layers} but the weights hold {stored} blocks; "
            "config.json does not match the weights"
        )


def _meta_skeleton(model_dir: Path, trust_remote_code: bool) -> tuple[nn.Module | None, str | None]:
    """The model ``config.json`` describes, built on the ``meta`` device (no memory), or why it cannot be."""
    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code), None
    except Exception as e:
        return None, _first_line(e)


def _check_shapes_on_meta(model_dir: Path, files: list[Path], skeleton: nn.Module) -> None:
    """Every tensor the stored weights and the ``meta`` skeleton both name must have one shape: a config
    claiming a larger hidden size would otherwise allocate the larger model before transformers
    compares shapes."""
    shapes = _stored_shapes(files)
    for key, tensor in skeleton.state_dict().items():
        saved = shapes.get(key)
        if saved is not None and saved != tuple(tensor.shape):
            raise ModelLoadError(
                f"{model_dir}: tensor {key} has shape {saved} but config.json implies {tuple(tensor.shape)}; "
                "config.json does not match the weights"
            )


def _check_finite(model: nn.Module, model_dir: Path) -> None:
    # a NaN/inf weight makes every metric NaN; say which tensor instead of reporting garbage
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelLoadError(f"{model_dir}: tensor {name} holds NaN or infinite values")


def _check_tokenizer_files(model_dir: Path) -> None:
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"no tokenizer files in {model_dir} (looked for {', '.join(TOKENIZER_FILES)}); "
            "add them, or pass with_tokenizer=False to load the model alone"
        )


# -- loading ----------------------------------------------------------------------------------------------------
def load_model(
    path: str | Path,
    *,
    dtype: str | torch.dtype | None = None,
    device: str = "cpu",
    trust_remote_code: bool = False,
    with_tokenizer: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Load a causal LM (and its tokenizer) from a local model directory, in eval mode.

    Args:
        path: the model directory (plain Hugging Face, or written by :func:`save_model`), a ``.gguf``
            file (converted once into the cache, :mod:`slimkit.models.gguf`) or the name of a named
            offline model such as ``"smollm2-135m"`` (:mod:`slimkit.models.named`).
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"`` or a ``torch.dtype``.
            Default: ``None`` = ``"auto"`` (the dtype recorded in ``config.json``).
        device: where the model goes. Default: ``"cpu"``.
        trust_remote_code: allow model code shipped inside the directory. Default: ``False``.
        with_tokenizer: also load the tokenizer (an error when its files are missing). Default: ``True``.

    Returns:
        ``(model, tokenizer)``; the tokenizer is ``None`` when ``with_tokenizer=False``.

    Raises:
        ModelLoadError: missing path/config/weights/tokenizer, pickle-only or corrupt weights, a
            slimkit.json asking for an unknown restorer, or weights that do not fit the model.
        UnsupportedArchitectureError: ``config.model_type`` has no adapter (message lists the supported).
        ConfigError: a bad ``dtype`` or ``device``.
    """
    torch_dtype = resolve_dtype(dtype)
    target = resolve_device(device)
    from slimkit.models.named import resolve_model_source  # lazy: named -> gguf -> loading

    # a .gguf file or a named offline model (smollm2-135m) -> its converted directory in the cache
    model_dir = _check_dir(resolve_model_source(path))
    model_type = _read_config(model_dir)["model_type"]
    files = _weight_files(model_dir)
    # sizes first: the architecture check below builds the model on the meta device
    _check_config_sizes(model_dir, files, trust_remote_code)
    # one meta-device skeleton serves the architecture check and the shape check
    skeleton, why_not = _meta_skeleton(model_dir, trust_remote_code)
    adapter_for_model_type(
        model_type, model_dir=model_dir, trust_remote_code=trust_remote_code, skeleton=skeleton
    )
    if skeleton is None:
        raise ModelLoadError(f"transformers could not build the model of {model_dir}: {why_not}")
    meta = read_slimkit_json(model_dir)
    if with_tokenizer:
        _check_tokenizer_files(model_dir)
    _check_shapes_on_meta(model_dir, files, skeleton)

    with _quiet_transformers():
        if needs_restore(meta):
            model = _load_restored(model_dir, meta, files, torch_dtype, trust_remote_code)
        else:
            model = _load_plain(model_dir, torch_dtype, trust_remote_code)
        tokenizer = _load_tokenizer(model_dir, trust_remote_code) if with_tokenizer else None
    _check_finite(model, model_dir)
    return model.to(target).eval(), tokenizer


def _load_plain(model_dir: Path, dtype: torch.dtype | str, trust_remote_code: bool) -> PreTrainedModel:
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            model_dir,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported below, with the shapes, instead of a bare RuntimeError
        )
    except SlimkitError:
        raise
    except Exception as e:  # anything transformers raises about the files is the directory's fault
        raise ModelLoadError(f"transformers could not load {model_dir}: {_first_line(e)}") from e
    mismatched = sorted(info.get("mismatched_keys", ()), key=lambda item: item[0])
    if mismatched:
        key, saved, expected = mismatched[0]
        raise ModelLoadError(
            f"{model_dir}: tensor {key} has shape {tuple(saved)} but config.json implies {tuple(expected)} "
            f"({len(mismatched)} mismatched); config.json does not match the weights"
        )
    # transformers fills missing tensors with random init and only warns; that would silently
    # evaluate a broken model, e.g. a low-rank export whose slimkit.json was lost
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise ModelLoadError(
            f"{model_dir}: the weights lack {len(missing)} tensor(s) the model needs (e.g. {missing[0]}); "
            "is slimkit.json missing, or the export incomplete?"
        )
    return model


def _load_restored(
    model_dir: Path,
    meta: dict[str, Any],
    files: list[Path],
    dtype: torch.dtype | str,
    trust_remote_code: bool,
) -> PreTrainedModel:
    # look every name up first so an unknown one fails before any work
    restorers = [get_restorer(name) for name in meta.get("restore", [])]
    reader = get_storage_reader(meta["storage"]) if meta.get("storage") else None
    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        kwargs = {} if dtype == "auto" else {"dtype": dtype}
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code, **kwargs)
    except Exception as e:
        raise ModelLoadError(
            f"transformers could not build the model of {model_dir}: {_first_line(e)}"
        ) from e
    for restore in restorers:
        restore(model, model_dir, meta)
    state_dict = reader(model_dir) if reader is not None else _read_safetensors(files)
    load_state_dict_strict_(model, state_dict, source=str(model_dir))
    return model


def _read_safetensors(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                    state[key] = f.get_tensor(key)
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(
                f"{path} could not be read (truncated or corrupt? {_first_line(e)})"
            ) from None
    return state


def load_state_dict_strict_(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str) -> None:
    """Copy ``state_dict`` into ``model``; every tensor must fit and every parameter/buffer be covered.

    A key absent from ``state_dict`` is fine when it shares storage with a key that is present (tied
    input/output embeddings are saved once).

    Raises:
        ModelLoadError: unexpected keys, uncovered parameters, or shape mismatches (names the first).
    """
    own = model.state_dict(keep_vars=True)
    unexpected = sorted(set(state_dict) - set(own))
    if unexpected:
        raise ModelLoadError(
            f"{source}: {len(unexpected)} saved tensor(s) have no place in the model (e.g. {unexpected[0]}); "
            "slimkit.json may lack a 'restore' step"
        )
    for key, tensor in state_dict.items():
        if tuple(own[key].shape) != tuple(tensor.shape):
            raise ModelLoadError(
                f"{source}: tensor {key} has shape {tuple(tensor.shape)}, the model expects {tuple(own[key].shape)}"
            )
    loaded_storage = {id(own[k]) for k in state_dict}
    # non-persistent buffers (rotary tables) are not in own; tied twins are covered by identity
    uncovered = sorted(k for k in own if k not in state_dict and id(own[k]) not in loaded_storage)
    if uncovered:
        raise ModelLoadError(
            f"{source}: the weights lack {len(uncovered)} tensor(s) the model needs (e.g. {uncovered[0]})"
        )
    with torch.no_grad():
        model.load_state_dict(state_dict, strict=False)
    if isinstance(model, PreTrainedModel):
        model.tie_weights()


def _load_tokenizer(model_dir: Path, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelLoadError(
            f"the tokenizer files in {model_dir} could not be loaded: {_first_line(e)}"
        ) from e


# -- saving -------------------------------------------------------------------------------------------------------
def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: str | Path,
    *,
    metadata: dict[str, Any] | None = None,
    parent: str | Path | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model directory atomically: HF files + tokenizer + ``slimkit.json``; returns its path.

    Args:
        model: a transformers causal LM (possibly with slimkit modules inside).
        tokenizer: saved beside it when given.
        out_dir: the directory to write; an existing one is replaced only once everything is written,
            and only when slimkit wrote it (or ``overwrite``); never when it is or contains ``parent``.
        metadata: extra ``slimkit.json`` fields (method, config, report, ``storage``, ``restore``, ...).
        parent: the directory the model came from (its :func:`model_hash` is recorded) or that hash.
        state_dict: tensors to store instead of ``model.state_dict()`` (e.g. a compact encoding read
            back by a storage reader).
        overwrite: replace an existing ``out_dir`` even if slimkit did not write it. Default: ``False``.

    Raises:
        ModelLoadError: ``parent`` is neither a model directory nor a sha256 hash.
        ConfigError: ``metadata`` is not JSON-serialisable or reuses a standard field.
        SlimkitError: ``out_dir`` cannot be written or may not be replaced (see
            :func:`slimkit.core.io.check_output_dir`).
    """
    out_dir = Path(out_dir)
    parent_hash, parent_path = _parent_fields(parent)
    protect = (parent,) if parent is not None and Path(parent).is_dir() else ()
    with atomic_dir(out_dir, overwrite=overwrite, protect=protect) as tmp, _quiet_transformers():
        # transformers writes config.json, generation_config.json and the (sharded) safetensors,
        # saving tied embeddings once
        # a directory slimkit restores itself (low-rank factors, bitmask storage) is read key by key, so
        # its keys must be the module names: transformers' "original format" renames some on save
        # (GPT-NeoX's lm_head -> embed_out) and renames them back only inside from_pretrained
        restored = bool(metadata and (metadata.get("restore") or metadata.get("storage")))
        model.save_pretrained(tmp, state_dict=state_dict, save_original_format=not restored)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_slimkit_json(
            tmp, metadata, model_hash=model_hash(tmp), parent_hash=parent_hash, parent=parent_path
        )
    return out_dir


def _parent_fields(parent: str | Path | None) -> tuple[str | None, str | None]:
    if parent is None:
        return None, None
    if Path(parent).is_dir():
        return model_hash(parent), str(parent)
    if isinstance(parent, str) and _SHA256.fullmatch(parent):
        return parent, None
    raise ModelLoadError(f"parent={str(parent)!r} is neither a model directory nor a sha256 model hash")
