"""Where FFN-skip wraps a model, and what each decoder block costs: found by discovery, any family.

* :func:`ffn_sites`: per eligible block, the module holding its MLP linears (``mlp``) or, where those
  sit on the block itself (OPT), each MLP linear; and the module whose output is the FFN's residual
  update (the MLP, or the module the block feeds its output to: Gemma's post-FFN norm), found by one
  traced forward that watches which module receives the MLP's output tensor.
* :func:`block_flops`: multiply-adds x 2 of each block's linears per token, split into attention,
  K/V projections and FFN. Attention scores over the context are not counted (they grow with the
  context, the linears do not), so the fractions are of the decoder-block linear FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slimkit.core.errors import ConfigError
from slimkit.models.adapters import get_adapter, linear_in_features, linear_out_features
from slimkit.nn.ffn_skip import SkipSite

TRACE_IDS = 8


@dataclass(frozen=True)
class BlockFlops:
    """Linear FLOPs per token of one decoder block: ``attention`` (q/k/v/o), of which ``kv`` (k/v), ``ffn``.

    ``kv_pass``: what a row that exited earlier still computes here to fill the KV cache: the K/V
    projections, or the whole fused QKV projection where the family fuses them (``kv`` when 0).
    """

    attention: float
    kv: float
    ffn: float
    kv_pass: float = 0.0

    @property
    def exit_kept(self) -> float:
        return self.kv_pass or self.kv

    @property
    def total(self) -> float:
        return self.attention + self.ffn


def eligible_layers(n_layers: int, cold_start: int, cold_end: int) -> list[int]:
    """Blocks ``cold_start .. n_layers - cold_end - 1``.

    Raises:
        ConfigError: the cold regions leave no eligible layer, or only one (nothing could follow a trigger).
    """
    layers = list(range(cold_start, n_layers - cold_end))
    if len(layers) < 2:
        raise ConfigError(
            f"cold_start={cold_start} and cold_end={cold_end} leave {max(len(layers), 0)} eligible layer(s) of "
            f"{n_layers}; FFN-skip needs at least 2 (one to measure saturation, one to skip)"
        )
    return layers


def _common_parent(paths: list[str]) -> str:
    parts = [p.split(".")[:-1] for p in paths]
    common: list[str] = []
    for tokens in zip(*parts, strict=False):
        if len(set(tokens)) != 1:
            break
        common.append(tokens[0])
    return ".".join(common)


def _update_source(model: nn.Module, block: nn.Module, exit_name: str) -> str:
    """The block-relative name of the module fed ``exit_name``'s output (itself when none is)."""
    exit_module = block.get_submodule(exit_name)
    seen: dict[str, Any] = {}
    consumer: list[str] = []

    def on_exit(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        seen["out"] = out

    def on_input(name: str):
        def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
            if not consumer and args and "out" in seen and args[0] is seen["out"]:
                consumer.append(name)

        return hook

    handles = [exit_module.register_forward_hook(on_exit)]
    prefix = exit_name + "."
    for name, mod in block.named_modules():
        if (
            name
            and name != exit_name
            and not name.startswith(prefix)
            and not exit_name.startswith(name + ".")
        ):
            handles.append(mod.register_forward_pre_hook(on_input(name)))
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or 16
    ids = (torch.arange(TRACE_IDS) % max(int(vocab) - 3, 1) + 3).unsqueeze(0)
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(ids.to(device), use_cache=False)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return consumer[0] if consumer else exit_name


def _mlp_modules(adapter: Any, block: nn.Module) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The block-relative module(s) an FFN-skip wrapper goes on, and their output widths."""
    mlp_paths = [adapter.roles[r] for r in adapter.mlp_roles]
    if not mlp_paths:
        raise ConfigError(f"{adapter.family}: discovery found no MLP linears to skip")
    attn_paths = [adapter.roles[r] for r in adapter.attention_roles]
    parent = _common_parent(mlp_paths)
    if parent and not any(p.startswith(parent + ".") for p in attn_paths):
        return (parent,), (linear_out_features(block.get_submodule(mlp_paths[-1])),)
    # the MLP linears sit on the block itself: wrap each
    return tuple(mlp_paths), tuple(linear_out_features(block.get_submodule(p)) for p in mlp_paths)


def ffn_sites(model: nn.Module, cold_start: int, cold_end: int) -> tuple[str, int, list[SkipSite]]:
    """``(blocks_path, n_layers, sites)`` for the eligible layers of ``model``.

    Raises:
        ConfigError: no eligible layer (see :func:`eligible_layers`), or a block without MLP linears.
    """
    adapter = get_adapter(model)
    blocks = adapter.blocks(model)
    layers = eligible_layers(len(blocks), cold_start, cold_end)
    modules, widths = _mlp_modules(adapter, blocks[0])
    update_from = _update_source(model, blocks[layers[0]], modules[-1])
    sites = [SkipSite(layer, modules, widths, update_from) for layer in layers]
    return adapter.blocks_path, len(blocks), sites


def exit_sites(model: nn.Module, min_layer: int) -> tuple[str, list[SkipSite]]:
    """``(blocks_path, sites)``: what an exited row skips in each block after ``min_layer``.

    An exited row needs a later block's K/V only (CALM's state propagation), so the block's query
    projection (where it is a module of its own), output projection and MLP are wrapped to run on the
    rows still in flight. A fused QKV projection (Phi-3, GPT-NeoX, Falcon, GPT-2) is left whole: its
    query rows cost what they cost, and :func:`block_flops` counts them as kept (``kv_pass``).

    Raises:
        ConfigError: discovery found no output projection or no MLP to wrap.
    """
    adapter = get_adapter(model)
    blocks = adapter.blocks(model)
    mlp, mlp_widths = _mlp_modules(adapter, blocks[0])
    if "o" not in adapter.roles:
        raise ConfigError(
            f"{adapter.family}: discovery found no attention output projection; early exit cannot "
            "limit the blocks after an exit to their K/V"
        )
    attn = [adapter.roles[r] for r in ("q", "o") if r in adapter.roles]
    widths = tuple(linear_out_features(blocks[0].get_submodule(p)) for p in attn)
    modules = (*attn, *mlp)
    sites = [
        SkipSite(layer, modules, (*widths, *mlp_widths), modules[-1])
        for layer in range(min_layer + 1, len(blocks))
    ]
    return adapter.blocks_path, sites


def block_flops(model: nn.Module) -> list[BlockFlops]:
    """Per-token linear FLOPs (``2 x in x out`` per linear) of every decoder block."""
    adapter = get_adapter(model)
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None) or 1
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    out = []
    for block in adapter.blocks(model):
        attn = kv = kv_pass = ffn = 0.0
        for role, module in adapter.block_linears(block).items():
            flops = 2.0 * linear_in_features(module) * linear_out_features(module)
            if role in adapter.attention_roles:
                attn += flops
                if role in ("k", "v"):
                    kv += flops
                    kv_pass += flops
                elif role == "qkv":  # fused: k and v take 2 x kv_heads of heads + 2 x kv_heads rows
                    kv += flops * 2 * kv_heads / (heads + 2 * kv_heads)
                    kv_pass += flops  # an exited row cannot run only the K/V part of one matmul
            else:
                ffn += flops
        out.append(BlockFlops(attn, kv, ffn, kv_pass))
    return out


__all__ = ["BlockFlops", "block_flops", "eligible_layers", "exit_sites", "ffn_sites"]
