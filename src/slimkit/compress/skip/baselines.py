"""The ``compress_`` handlers of the baselines: ShortGPT layer removal and CALM-style early exit.

Both are set by the share of decoder-block linear FLOPs they save (``compute_ratio``), so that they can
be put at the compute FFN-skip saves (:func:`~slimkit.compress.skip.handler.ffn_compute_saved`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimkit.compress.api import COMPRESSORS
from slimkit.compress.calibrate import check_calibration
from slimkit.compress.report import calibration_record
from slimkit.compress.skip.calibration import (
    calibrate,
    calibration_prompts,
    candidate_thresholds,
    decode_calibration,
    trace_dict,
)
from slimkit.compress.skip.config import EarlyExitConfig, LayerDropConfig
from slimkit.compress.skip.gate import NEVER, block_influence
from slimkit.compress.skip.handler import SkipReport
from slimkit.compress.skip.sites import BlockFlops, block_flops, exit_sites
from slimkit.models.adapters import get_adapter
from slimkit.nn.layer_skip import attach_early_exit_, bypass_blocks_


@torch.no_grad()
def block_influences(model: nn.Module, calib: torch.Tensor, chunk_size: int) -> list[float]:
    """ShortGPT's ``BI_i = 1 - E[cos(x_i, x_{i+1})]`` per block, over every calibration token."""
    adapter = get_adapter(model)
    blocks = adapter.blocks(model)
    sums = [0.0] * len(blocks)
    count = 0
    inputs: dict[int, torch.Tensor] = {}

    def pre(i: int):
        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            inputs[i] = args[0] if args else kwargs["hidden_states"]

        return hook

    def post(i: int):
        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            h_out = output[0] if isinstance(output, tuple) else output
            width = h_out.shape[-1]
            bi = block_influence(inputs[i].reshape(-1, width), h_out.reshape(-1, width))
            sums[i] += float(bi) * h_out.reshape(-1, width).shape[0]

        return hook

    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(pre(i), with_kwargs=True))
        handles.append(block.register_forward_hook(post(i)))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for start in range(0, calib.shape[0], chunk_size):
            ids = calib[start : start + chunk_size].to(device)
            model(ids, use_cache=False)
            count += ids.numel()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [s / count for s in sums]


def drop_order(influence: list[float]) -> list[int]:
    """Blocks by rising influence, block 0 left out (transformers reads the cache length from it)."""
    return sorted(range(1, len(influence)), key=lambda i: (influence[i], i))


def layers_for_compute(order: list[int], flops: list[BlockFlops], compute_ratio: float) -> list[int]:
    """The shortest prefix of ``order`` whose FLOP share is nearest ``compute_ratio``."""
    total = sum(f.total for f in flops)
    best: list[int] = []
    best_gap = compute_ratio
    share = 0.0
    for n, layer in enumerate(order, start=1):
        share += flops[layer].total / total
        if abs(share - compute_ratio) < best_gap - 1e-12:
            best, best_gap = order[:n], abs(share - compute_ratio)
    return best


@COMPRESSORS.register(LayerDropConfig, "layer-drop")
def layer_drop_compress_(
    model: nn.Module,
    config: LayerDropConfig,
    calib: torch.Tensor | None = None,
    *,
    device: torch.device | None = None,
    progress: bool = True,
    chunk_size: int = 8,
) -> SkipReport:
    """ShortGPT layer removal (the ``compress_`` handler of :class:`LayerDropConfig`)."""
    calib = check_calibration(calib, "layer-drop")  # blocks are ranked by influence on calibration text
    adapter = get_adapter(model)
    influence = block_influences(model, calib, chunk_size)
    flops = block_flops(model)
    layers = sorted(layers_for_compute(drop_order(influence), flops, config.compute_ratio))
    bypass_blocks_(model, adapter.blocks_path, layers, adapter.block_output_len)
    total = sum(f.total for f in flops)
    saved = sum(flops[i].total for i in layers) / total
    return SkipReport(
        method="layer-drop",
        config=config.to_dict(),
        target=config.compute_ratio,
        achieved=saved,
        compute_fraction_saved=saved,
        stats={"block_influence": influence, "removed_layers": layers, "layers": len(flops)},
        calibration=calibration_record(calib),
    )


def exit_compute_saved(stats: dict[str, Any], flops: list[BlockFlops]) -> float:
    """Share of block linear FLOPs early exit saves: a block after the exit still computes its K/V
    (the whole fused QKV projection where the family fuses it)."""
    total = sum(f.total for f in flops)
    return (
        sum(r * (f.total - f.exit_kept) for r, f in zip(stats["layer_exit_ratio"], flops, strict=True))
        / total
        if total
        else 0.0
    )


@COMPRESSORS.register(EarlyExitConfig, "early-exit")
def early_exit_compress_(
    model: nn.Module,
    config: EarlyExitConfig,
    calib: torch.Tensor | None = None,
    *,
    device: torch.device | None = None,
    progress: bool = True,
    chunk_size: int = 8,
) -> SkipReport:
    """CALM-style early exit with state propagation (the ``compress_`` handler of :class:`EarlyExitConfig`)."""
    flops = block_flops(model)  # before wrapping: discovery sees the plain blocks
    blocks_path, sites = exit_sites(model, config.min_layer)
    state = attach_early_exit_(
        model,
        blocks_path,
        threshold=NEVER if config.threshold is None else config.threshold,
        warmup_tokens=config.warmup_tokens,
        min_layer=config.min_layer,
        sites=sites,
    )
    report = SkipReport(
        method="early-exit", config=config.to_dict(), threshold=state.threshold, target=config.compute_ratio
    )
    if config.threshold is not None and calib is None:
        return report
    prompts = calibration_prompts(calib, config, "early-exit")
    report.calibration = calibration_record(prompts)

    def run() -> dict[str, Any]:
        state.reset_stats()
        decode_calibration(model, prompts, config.new_tokens, chunk_size)
        return state.stats()

    if config.compute_ratio is not None:
        state.recorded = []
        run()
        candidates = candidate_thresholds(state.recorded)
        state.recorded = None

        def saved_at(tau: float) -> float:
            state.threshold = tau
            return exit_compute_saved(run(), flops)

        tau, _, trace = calibrate(
            saved_at,
            candidates,
            config.compute_ratio,
            config.tolerance,
            "early-exit compute_ratio",
            "lower the target, min_layer or warmup_tokens",
        )
        state.threshold = tau
        report.trace = trace_dict(trace)
    stats = run()
    state.reset_stats()
    report.threshold = state.threshold
    report.stats = stats
    report.compute_fraction_saved = exit_compute_saved(stats, flops)
    report.achieved = report.compute_fraction_saved
    return report


__all__ = [
    "block_influences",
    "drop_order",
    "early_exit_compress_",
    "exit_compute_saved",
    "layer_drop_compress_",
    "layers_for_compute",
]
