"""Architecture adapters: where a model keeps its decoder blocks and linears, for every causal LM.

Compression, calibration and analysis code never hard-codes module paths; it asks the adapter:

    adapter = get_adapter(model)
    for i, block in enumerate(adapter.blocks(model)):
        for role, linear in adapter.block_linears(block).items():   # {"q": Linear, "k": ..., ...}
            W = linear_weight(linear)                               # always [out_features, in_features]

:func:`get_adapter` **discovers** the adapter of any Hugging Face causal LM from its module tree
(:mod:`slimkit.models.discovery`: the blocks are the ``ModuleList`` of the model's
``_no_split_modules`` class, the roles come from one traced forward) and caches it per model object.
Roles keep the canonical names where they apply: ``q k v o`` (or fused ``qkv``) for attention,
``gate up down`` (or fused ``gate_up``, ``down``) or ``fc1 fc2`` for the MLP.

**Hand adapters** are kept only where discovery cannot be right, registered with
:func:`register_adapter` and looked up by ``config.model_type``. Discovery cannot be right for a model
that does not list its decoder layer class in ``_no_split_modules`` (transformers' BERT-style encoders,
``openai-gpt``, ``ctrl``, ``biogpt``, ... declare none), or whose blocks differ in layout (hybrid
attention/state-space stacks). No family slimkit tests needs one: llama, mistral, qwen2, qwen3,
gemma2, gemma3, phi3, gpt_neox, falcon, opt and gpt2 are all discovered, so
:data:`OVERRIDES` starts empty. A hand adapter may leave ``groups`` empty; the trace fills them in.

:data:`LLAMA`, :data:`OPT` and :data:`GPT2` are the hand tables slimkit shipped before discovery.
They are not used for dispatch any more; the tests check that discovery reproduces them exactly.

GPT-2's ``Conv1D`` (recognised with ``isinstance``) stores its weight as [in, out]; :func:`linear_weight`
/ :func:`set_linear_weight` hide that so every method sees [out, in]. This is a property of the module,
not of the family, so adapters carry no transposition flag.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from slimkit.core.errors import UnsupportedArchitectureError
from slimkit.models.discovery import (
    TESTED_MODEL_TYPES,
    ArchitectureAdapter,
    complete,
    discover,
    find_blocks,
    is_conv1d,
    is_linear,
    skeleton_blocks_path,
)

__all__ = [
    "ADAPTERS",
    "GPT2",
    "LLAMA",
    "OPT",
    "OVERRIDES",
    "ArchitectureAdapter",
    "adapter_for_model_type",
    "block_linear_filter",
    "get_adapter",
    "is_linear",
    "linear_in_features",
    "linear_out_features",
    "linear_weight",
    "register_adapter",
    "set_linear_weight",
    "supported_model_types",
]

# -- the pre-discovery hand tables (reference only: discovery must reproduce them) --------------------------------
LLAMA = ArchitectureAdapter(
    family="llama",
    model_types=("llama", "mistral", "qwen2"),
    blocks_path="model.layers",
    roles={
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.o_proj",
        "gate": "mlp.gate_proj",
        "up": "mlp.up_proj",
        "down": "mlp.down_proj",
    },
    attention_roles=("q", "k", "v", "o"),
    mlp_roles=("gate", "up", "down"),
    embeddings=("model.embed_tokens",),
    final_norm="model.norm",
    groups=(("q", "k", "v"), ("o",), ("gate", "up"), ("down",)),
)

OPT = ArchitectureAdapter(
    family="opt",
    model_types=("opt",),
    blocks_path="model.decoder.layers",
    roles={
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.out_proj",
        "fc1": "fc1",
        "fc2": "fc2",
    },
    attention_roles=("q", "k", "v", "o"),
    mlp_roles=("fc1", "fc2"),
    embeddings=("model.decoder.embed_tokens", "model.decoder.embed_positions"),
    final_norm="model.decoder.final_layer_norm",
    groups=(("q", "k", "v"), ("o",), ("fc1",), ("fc2",)),
)

GPT2 = ArchitectureAdapter(
    family="gpt2",
    model_types=("gpt2",),
    blocks_path="transformer.h",
    roles={"qkv": "attn.c_attn", "o": "attn.c_proj", "fc1": "mlp.c_fc", "fc2": "mlp.c_proj"},
    attention_roles=("qkv", "o"),
    mlp_roles=("fc1", "fc2"),
    embeddings=("transformer.wte", "transformer.wpe"),
    final_norm="transformer.ln_f",
    groups=(("qkv",), ("o",), ("fc1",), ("fc2",)),
)

ADAPTERS: tuple[ArchitectureAdapter, ...] = (LLAMA, OPT, GPT2)

# model_type -> hand adapter, for families discovery cannot get right (none built in; see the docstring)
OVERRIDES: dict[str, ArchitectureAdapter] = {}

_DISCOVERED: weakref.WeakKeyDictionary[nn.Module, ArchitectureAdapter] = weakref.WeakKeyDictionary()


def register_adapter(adapter: ArchitectureAdapter) -> ArchitectureAdapter:
    """Use ``adapter`` instead of discovery for every ``model_type`` in ``adapter.model_types``."""
    for model_type in adapter.model_types:
        OVERRIDES[model_type] = adapter
    return adapter


def supported_model_types() -> list[str]:
    """The model types known to work: those the tests discover, plus registered hand adapters."""
    return sorted(set(TESTED_MODEL_TYPES) | set(OVERRIDES))


def adapter_for_model_type(
    model_type: str,
    *,
    model_dir: str | Path | None = None,
    trust_remote_code: bool = False,
    skeleton: nn.Module | None = None,
) -> ArchitectureAdapter | None:
    """The hand adapter registered for ``model_type``, or ``None`` when discovery serves it.

    Without a hand adapter, checks (on a ``meta``-device skeleton: no memory, no weights) that
    transformers has a causal LM for the type whose decoder blocks can be found. The config is
    ``model_dir``'s ``config.json`` when given, else transformers' default for ``model_type``;
    a ``skeleton`` the caller already built from it is searched instead of building another.

    Raises:
        UnsupportedArchitectureError: transformers does not know the type, has no causal LM for it,
            or discovery finds no decoder blocks in it (the message says what was looked for).
    """
    if model_type in OVERRIDES:
        return OVERRIDES[model_type]
    if skeleton is not None:
        find_blocks(skeleton)
        return None
    from transformers import AutoConfig

    try:
        if model_dir is not None:
            config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        else:
            config = AutoConfig.for_model(model_type)
    except Exception as e:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        if model_type in CONFIG_MAPPING:  # a known type with a bad config: the loader reports it
            return None
        raise UnsupportedArchitectureError(
            f"unsupported architecture {model_type!r}: transformers does not know this model type "
            f"({type(e).__name__}); families tested with discovery: {', '.join(supported_model_types())}"
        ) from None
    skeleton_blocks_path(config, trust_remote_code=trust_remote_code)
    return None


def get_adapter(model: nn.Module) -> ArchitectureAdapter:
    """The adapter of a Hugging Face causal LM: its registered hand adapter, else discovered.

    Discovery runs one short forward the first time a model object is seen; the result is cached
    for that object (a copy is discovered anew).

    Raises:
        UnsupportedArchitectureError: not a Hugging Face model, or discovery fails (see
            :func:`slimkit.models.discovery.discover`).
    """
    cached = _DISCOVERED.get(model)
    if cached is not None:
        return cached
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} has no Hugging Face config (config.model_type); slimkit discovers the "
            f"blocks of Hugging Face causal LMs (tested: {', '.join(supported_model_types())})"
        )
    override = OVERRIDES.get(model_type)
    adapter = complete(model, override) if override is not None else discover(model)
    _DISCOVERED[model] = adapter
    return adapter


def forget_adapter(model: nn.Module) -> None:
    """Drop the cached adapter of ``model`` (after its module tree changed: wrappers put in or taken out)."""
    _DISCOVERED.pop(model, None)


# -- weight access that hides GPT-2's transposed Conv1D ----------------------------------------------------
def linear_weight(module: nn.Module) -> torch.Tensor:
    """The weight as [out_features, in_features] (a view for ``Conv1D``; no copy)."""
    return module.weight.t() if is_conv1d(module) else module.weight


def set_linear_weight(module: nn.Module, weight: torch.Tensor) -> None:
    """Write a [out_features, in_features] weight back in place (transposing for ``Conv1D``)."""
    with torch.no_grad():
        target = module.weight
        src = weight.t() if is_conv1d(module) else weight
        target.copy_(src.to(dtype=target.dtype, device=target.device))


def linear_in_features(module: nn.Module) -> int:
    return linear_weight(module).shape[1]


def linear_out_features(module: nn.Module) -> int:
    return linear_weight(module).shape[0]


def block_linear_filter(model: nn.Module) -> Callable[[str, nn.Module], bool]:
    """A ``candidates`` filter for :func:`slimkit.core.select_modules`: linears inside decoder blocks."""
    adapter = get_adapter(model)
    prefix = adapter.blocks_path + "."
    return lambda name, module: name.startswith(prefix) and is_linear(module)
