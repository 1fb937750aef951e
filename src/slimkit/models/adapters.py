"""Architecture adapters: where each supported family keeps its decoder blocks and linears.

Compression, calibration and analysis code never hard-codes module paths; it asks the adapter:

    adapter = get_adapter(model)
    for i, block in enumerate(adapter.blocks(model)):
        for role, linear in adapter.block_linears(block).items():   # {"q": Linear, "k": ..., ...}
            W = linear_weight(linear)                               # always [out_features, in_features]

Supported: the llama family (Llama, Mistral, Qwen2 share module names), OPT, GPT-2. GPT-2's
``Conv1D`` stores its weight as [in, out]; :func:`linear_weight` / :func:`set_linear_weight` hide
that so every method sees [out, in]. GPT-2's fused query/key/value projection has the role ``qkv``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from slimkit.core.errors import UnsupportedArchitectureError


def _get(root: nn.Module, path: str) -> nn.Module:
    mod = root
    for part in path.split("."):
        mod = getattr(mod, part)
    return mod


@dataclass(frozen=True)
class ArchitectureAdapter:
    """Module paths of one architecture family (paths relative to the ``*ForCausalLM`` model).

    Attributes:
        family: short name (``llama``, ``opt``, ``gpt2``).
        model_types: the ``config.model_type`` values this adapter serves.
        blocks_path: dotted path of the ``nn.ModuleList`` of decoder blocks.
        roles: canonical role -> dotted path inside a block.
        attention_roles / mlp_roles: which roles belong to attention and to the MLP.
        embeddings: dotted paths of the input embeddings (token, and position where learned).
        final_norm: dotted path of the norm after the last block.
        lm_head: dotted path of the output projection.
    """

    family: str
    model_types: tuple[str, ...]
    blocks_path: str
    roles: dict[str, str]
    attention_roles: tuple[str, ...]
    mlp_roles: tuple[str, ...]
    embeddings: tuple[str, ...]
    final_norm: str
    lm_head: str = "lm_head"
    transposed_weights: bool = False

    def blocks(self, model: nn.Module) -> nn.ModuleList:
        """The decoder blocks, in order."""
        return _get(model, self.blocks_path)  # type: ignore[return-value]

    def block_prefix(self, index: int) -> str:
        """Fully-qualified name of block ``index`` (``model.layers.3``)."""
        return f"{self.blocks_path}.{index}"

    def block_linears(self, block: nn.Module) -> dict[str, nn.Module]:
        """Role -> linear module of one block, attention roles first (the forward order)."""
        return {role: _get(block, path) for role, path in self.roles.items()}

    def role_of(self, relative_name: str) -> str | None:
        """The role of a module given its name inside a block (``self_attn.q_proj`` -> ``q``)."""
        for role, path in self.roles.items():
            if path == relative_name:
                return role
        return None

    def linear_names(self, model: nn.Module) -> list[str]:
        """Fully-qualified names of every role linear in every block."""
        n = len(self.blocks(model))
        return [f"{self.block_prefix(i)}.{p}" for i in range(n) for p in self.roles.values()]

    def embedding_modules(self, model: nn.Module) -> list[nn.Module]:
        return [_get(model, p) for p in self.embeddings]

    def lm_head_module(self, model: nn.Module) -> nn.Module:
        return _get(model, self.lm_head)

    def final_norm_module(self, model: nn.Module) -> nn.Module:
        return _get(model, self.final_norm)


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
    transposed_weights=True,
)

ADAPTERS: tuple[ArchitectureAdapter, ...] = (LLAMA, OPT, GPT2)


def supported_model_types() -> list[str]:
    return sorted(t for a in ADAPTERS for t in a.model_types)


def adapter_for_model_type(model_type: str) -> ArchitectureAdapter:
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    raise UnsupportedArchitectureError(
        f"unsupported architecture {model_type!r}; supported model types: {', '.join(supported_model_types())}"
    )


def get_adapter(model: nn.Module) -> ArchitectureAdapter:
    """The adapter for a Hugging Face causal LM (by ``model.config.model_type``)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} has no Hugging Face config; supported model types: "
            f"{', '.join(supported_model_types())}"
        )
    return adapter_for_model_type(model_type)


# -- weight access that hides GPT-2's transposed Conv1D ----------------------------------------------------
def is_linear(module: nn.Module) -> bool:
    """``nn.Linear`` or transformers' ``Conv1D`` (a linear layer with a transposed weight)."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def _is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D"


def linear_weight(module: nn.Module) -> torch.Tensor:
    """The weight as [out_features, in_features] (a view for ``Conv1D``; no copy)."""
    return module.weight.t() if _is_conv1d(module) else module.weight


def set_linear_weight(module: nn.Module, weight: torch.Tensor) -> None:
    """Write a [out_features, in_features] weight back in place (transposing for ``Conv1D``)."""
    with torch.no_grad():
        target = module.weight
        src = weight.t() if _is_conv1d(module) else weight
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
