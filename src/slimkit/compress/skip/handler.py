"""The ``compress_`` handler of FFN-SkipLLM: find the eligible FFNs, wrap them, calibrate τ, report.

1. discovery gives the blocks and their MLPs (:func:`~slimkit.compress.skip.sites.ffn_sites`);
2. :func:`~slimkit.nn.ffn_skip.attach_ffn_skip_` wraps each eligible MLP in an ``FFNSkip``;
3. with ``target_ratio``, τ is calibrated by greedy decoding (:mod:`slimkit.compress.skip.calibration`);
   with ``threshold``, τ is that value (data-free);
4. the report gives τ, the achieved skip ratio on the calibration decode (when there was one), the FFN
   share of the block FLOPs and the FLOP fraction saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from rich.table import Table
from torch import nn

from slimkit.compress.api import COMPRESSORS
from slimkit.compress.report import CompressionReport, calibration_record
from slimkit.compress.skip.calibration import (
    calibrate,
    calibration_prompts,
    candidate_thresholds,
    decode_calibration,
    trace_dict,
)
from slimkit.compress.skip.config import FFNSkipConfig
from slimkit.compress.skip.gate import NEVER
from slimkit.compress.skip.sites import BlockFlops, block_flops, ffn_sites
from slimkit.core.errors import ConfigError
from slimkit.nn.ffn_skip import (
    attach_ffn_skip_,
    get_skip_state,
    reset_skip_stats,
    set_threshold_,
    skip_stats,
)


@dataclass
class SkipReport(CompressionReport):
    """A decode-time method's report: its threshold and what it skipped on the calibration decode.

    Attributes (beside :class:`CompressionReport`'s, whose matrix fields stay empty: no weight changes):
        threshold: τ in use.
        target: the ratio asked for (``None``: τ was given).
        achieved: the ratio measured on the calibration decode (``None``: no decode ran).
        stats: the method's statistics from that decode.
        compute_fraction_saved: share of the decoder-block linear FLOPs skipped on that decode.
        trace: the thresholds tried, with their ratios.
    """

    threshold: float = NEVER
    target: float | None = None
    achieved: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    compute_fraction_saved: float | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        achieved = "not measured" if self.achieved is None else f"{self.achieved:.4f}"
        saved = (
            ""
            if self.compute_fraction_saved is None
            else f", block FLOPs saved {self.compute_fraction_saved:.4f}"
        )
        return (
            f"{self.method}: threshold {self.threshold:.6f}, target {self.target}, achieved {achieved}{saved}, "
            f"{self.total_time_s:.2f} s"
        )

    def summary_table(self) -> Table:
        table = Table(title=f"{self.method}: threshold {self.threshold:.6f}")
        table.add_column("target", justify="right")
        table.add_column("achieved", justify="right")
        table.add_column("block FLOPs saved", justify="right")
        table.add_column("time (s)", justify="right")
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        table.add_row(
            fmt(self.target), fmt(self.achieved), fmt(self.compute_fraction_saved), f"{self.total_time_s:.2f}"
        )
        return table


def ffn_compute_saved(stats: dict[str, Any], flops: list[BlockFlops]) -> float:
    """Share of decoder-block linear FLOPs FFN-skip saved: ``Σ_l ratio_l · ffn_l / Σ_l total_l``."""
    total = sum(f.total for f in flops)
    return (
        sum(r * f.ffn for r, f in zip(stats["layer_skip_ratio"], flops, strict=True)) / total
        if total
        else 0.0
    )


def measure_skip_ratio(
    model: nn.Module, prompts: torch.Tensor, config: FFNSkipConfig, batch_size: int
) -> dict[str, Any]:
    """Decode the calibration prompts once and return the skip statistics of that decode alone."""
    reset_skip_stats(model)
    decode_calibration(model, prompts, config.new_tokens, batch_size)
    stats = skip_stats(model)
    assert stats is not None  # the caller attached FFN-skip
    return stats


@COMPRESSORS.register(FFNSkipConfig, "ffn-skip")
def ffn_skip_compress_(
    model: nn.Module,
    config: FFNSkipConfig,
    calib: torch.Tensor | None = None,
    *,
    device: torch.device | None = None,
    progress: bool = True,
    chunk_size: int = 8,
) -> SkipReport:
    """FFN-SkipLLM (the ``compress_`` handler of :class:`FFNSkipConfig`).

    The model is wrapped where it is (``device`` is not used: nothing is computed per block);
    calibration decodes ``chunk_size`` prompts at a time.
    """
    if get_skip_state(model) is not None:
        raise ConfigError("this model has FFN-skip wrappers already; remove_skip_(model) first")
    blocks_path, n_layers, sites = ffn_sites(model, config.cold_start, config.cold_end)
    flops = block_flops(model)
    state = attach_ffn_skip_(
        model,
        sites,
        blocks_path=blocks_path,
        n_layers=n_layers,
        threshold=NEVER if config.threshold is None else config.threshold,
        warmup_tokens=config.warmup_tokens,
        extent=config.extent,
    )
    report = SkipReport(
        method="ffn-skip", config=config.to_dict(), threshold=state.threshold, target=config.target_ratio
    )
    if config.threshold is not None and calib is None:
        return report
    prompts = calibration_prompts(calib, config, "ffn-skip")
    report.calibration = calibration_record(prompts)
    if config.target_ratio is not None:
        state.recorded = []
        measure_skip_ratio(model, prompts, config, chunk_size)  # dense: τ never reached
        candidates = candidate_thresholds(state.recorded)
        state.recorded = None

        def ratio_at(tau: float) -> float:
            set_threshold_(model, tau)
            return float(measure_skip_ratio(model, prompts, config, chunk_size)["skip_ratio"])

        tau, _, trace = calibrate(
            ratio_at,
            candidates,
            config.target_ratio,
            config.tolerance,
            "ffn-skip target_ratio",
            f"{len(sites)} of {n_layers} layers are eligible and {config.warmup_tokens} of {config.new_tokens} "
            "tokens are warm-up: lower the target, cold_start/cold_end or warmup_tokens",
        )
        set_threshold_(model, tau)
        report.threshold = tau
        report.trace = trace_dict(trace)
    stats = measure_skip_ratio(model, prompts, config, chunk_size)
    reset_skip_stats(model)
    state = get_skip_state(model)
    report.threshold = state.threshold if state is not None else report.threshold
    report.achieved = float(stats["skip_ratio"])
    report.stats = stats
    report.compute_fraction_saved = ffn_compute_saved(stats, flops)
    return report


__all__ = ["SkipReport", "ffn_compute_saved", "ffn_skip_compress_", "measure_skip_ratio"]
