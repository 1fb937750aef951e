"""Calibrating a decode-time threshold: greedy generation from calibration prompts, bisection on τ.

A skip (or exit) ratio is only defined on real generation: skipping at one token changes the next
token's states and the KV cache. So each τ tried is measured by decoding the calibration prompts
(:func:`decode_calibration`), and τ is bisected over the saturations the dense model produced on the
same prompts (:func:`~slimkit.compress.skip.gate.closest_threshold`), about eight decodes in all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from transformers import GenerationConfig

from slimkit.compress.skip.config import DecodeCalibration
from slimkit.compress.skip.gate import NEVER, closest_threshold
from slimkit.core.errors import ConfigError, DataError

QUANTILES = 256  # candidate thresholds: this many quantiles of the dense saturations


def calibration_prompts(calib: Tensor | None, config: DecodeCalibration, method: str) -> Tensor:
    """The first ``config.prompts`` rows of ``calib`` cut to ``config.prompt_len`` tokens: ``[n, len]``.

    Raises:
        DataError: no calibration ids, or not a 2-D integer tensor.
    """
    if calib is None:
        raise DataError(
            f"{method} calibrates its threshold on calibration prompts; pass calib= (or a threshold)"
        )
    if not isinstance(calib, Tensor) or calib.dim() != 2 or calib.is_floating_point() or calib.numel() == 0:
        raise DataError(f"{method}: calib must be a LongTensor [nsamples, seqlen] of token ids")
    return calib[: config.prompts, : config.prompt_len].long()


@torch.no_grad()
def decode_calibration(model: nn.Module, prompts: Tensor, new_tokens: int, batch_size: int) -> int:
    """Greedily decode exactly ``new_tokens`` tokens after each prompt (no early stop); returns the row count."""
    device = next(model.parameters()).device
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    config = GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=0,
        eos_token_id=eos,
    )
    was_training = model.training
    model.eval()
    try:
        for start in range(0, prompts.shape[0], batch_size):
            ids = prompts[start : start + batch_size].to(device)
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    finally:
        model.train(was_training)
    return int(prompts.shape[0])


def candidate_thresholds(saturations: list[Tensor]) -> list[float]:
    """:data:`QUANTILES` quantiles of the recorded saturations, plus :data:`NEVER` (skip nothing)."""
    if not saturations:
        return [NEVER]
    values = torch.cat(saturations).float()
    qs = torch.linspace(0, 1, QUANTILES, dtype=torch.float64)
    return sorted({*torch.quantile(values.double(), qs).tolist(), NEVER})


def calibrate(
    measure: Callable[[float], float],
    candidates: list[float],
    target: float,
    tolerance: float,
    what: str,
    hint: str,
) -> tuple[float, float, list[tuple[float, float]]]:
    """τ whose measured ratio is nearest ``target``; ``(τ, ratio, trace)``.

    Raises:
        ConfigError: even the lowest candidate stays more than ``tolerance`` below the target.
    """
    tau, got, trace = closest_threshold(candidates, measure, target)
    if got < target - tolerance:
        lowest = min(candidates)
        best = dict(trace).get(lowest)
        if best is None:
            best = measure(lowest)
            trace.append((lowest, best))
        if best < target - tolerance:
            raise ConfigError(
                f"{what} {target:g} is out of reach: at most {best:.4f} on these calibration prompts; {hint}"
            )
    return tau, got, trace


def trace_dict(trace: list[tuple[float, float]]) -> list[dict[str, Any]]:
    return [{"threshold": t, "ratio": r} for t, r in trace]


__all__ = ["calibrate", "calibration_prompts", "candidate_thresholds", "decode_calibration", "trace_dict"]
