"""Learning-rate schedules as pure multiplier functions, applied through ``LambdaLR``."""

from __future__ import annotations

import functools
import math

import torch


def cosine_with_warmup(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """The lr multiplier before optimizer step ``step`` (0-based): linear warmup, then cosine decay.

    f(s) = (s + 1) / warmup                                    for s < warmup
    f(s) = r + (1 - r) * (1 + cos(pi * p)) / 2,  p = (s - warmup) / (total - warmup) clipped to [0, 1]

    so the first step already moves (lr / warmup, not 0), step ``warmup - 1`` and step ``warmup``
    use the peak lr, and f(total) = r = ``min_ratio`` is where the schedule rests after the last step.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(max((step - warmup) / max(1, total - warmup), 0.0), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total: int, warmup: int, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over :func:`cosine_with_warmup` (a ``functools.partial``, so its state_dict is
    plain data and checkpoints need no pickle)."""
    fn = functools.partial(cosine_with_warmup, total=total, warmup=warmup, min_ratio=min_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


__all__ = ["cosine_schedule", "cosine_with_warmup"]
