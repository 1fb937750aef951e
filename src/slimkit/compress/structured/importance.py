"""Importance of FFN intermediate neurons, and the width schedule of iterative pruning (pure tensor math).

An FFN block maps ``x [.., H]`` through ``n_in`` input projections (gate and up, or one fc1), each with
weight ``W_in [I, H]``, to the intermediate activation ``h [.., I]``, and back with ``W_out [H, I]``.
Neuron ``i`` owns row ``i`` of every ``W_in`` (and entry ``i`` of their biases) and column ``i`` of
``W_out``; removing it removes exactly those parameters.

* Sensitivity (the first-order Taylor estimate of the loss change when a parameter is zeroed, as in
  PLATON, arXiv 2206.12562, and LoSparse, arXiv 2306.11222, from the group of IDEA Prune, arXiv 2503.05920):

      s_i = sum_k |W_in^k ⊙ ∇W_in^k|[i, :].sum() + |b_in^k ⊙ ∇b_in^k|[i] + |W_out ⊙ ∇W_out|[:, i].sum()

  smoothed over training steps by an exponential moving average ``ema <- beta * ema + (1 - beta) * s``.
* Activation magnitude (Minitron, arXiv 2407.14679): on calibration text, ``a_i = || mean_t |h_{b,t,i}| ||_2``
  over the batch ``b`` (mean over a sequence's tokens, L2 over sequences, Minitron's best aggregation).
* The width schedule takes the kept width from ``initial`` to ``final`` over a pruning phase: with
  progress ``p = (step - start) / (end - start)`` in [0, 1],

      width(p) = final + ceil((initial - final) * r(p)),   r_cubic(p) = (1 - p)^3,  r_linear(p) = 1 - p

  so the width is ``initial`` at the start and exactly ``final`` at the end (r(1) = 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from slimkit.core.errors import ConfigError

#: remaining fraction of the removable neurons at pruning progress ``p`` in [0, 1]; r(0) = 1, r(1) = 0
WIDTH_SCHEDULES: dict[str, Callable[[float], float]] = {
    "cubic": lambda p: (1.0 - p) ** 3,
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
}


def neuron_sensitivity(
    w_in: Sequence[Tensor],
    g_in: Sequence[Tensor],
    w_out: Tensor,
    g_out: Tensor,
    b_in: Sequence[Tensor | None] = (),
    gb_in: Sequence[Tensor | None] = (),
) -> Tensor:
    """``s [I]``: the summed ``|θ ⊙ ∇θ|`` of each neuron's parameters (see the module docstring).

    Args:
        w_in / g_in: input-projection weights and their gradients, each ``[I, H]``.
        w_out / g_out: output-projection weight and gradient, ``[H, I]``.
        b_in / gb_in: input-projection biases and gradients ``[I]`` (``None`` entries: no bias).

    Raises:
        ConfigError: the shapes do not describe one FFN of width ``I``.
    """
    width = w_out.shape[1]
    score = (w_out * g_out).abs().sum(dim=0, dtype=torch.float32)
    for w, g in zip(w_in, g_in, strict=True):
        if w.shape != g.shape or w.shape[0] != width:
            raise ConfigError(f"input projection {tuple(w.shape)} does not match the FFN width {width}")
        score += (w * g).abs().sum(dim=1, dtype=torch.float32)
    for b, gb in zip(b_in, gb_in, strict=False):
        if b is not None and gb is not None:
            score += (b * gb).abs().float()
    return score


def ema_(avg: Tensor, value: Tensor, beta: float) -> Tensor:
    """``avg <- beta * avg + (1 - beta) * value`` in place; returns ``avg``."""
    return avg.mul_(beta).add_(value, alpha=1.0 - beta)


def activation_importance(abs_mean_per_seq: Tensor) -> Tensor:
    """Minitron's neuron score ``[I]`` from ``[n_seq, I]`` per-sequence mean ``|h|``: L2 over sequences."""
    return abs_mean_per_seq.float().pow(2).sum(dim=0).sqrt()


def scheduled_width(step: int, start: int, end: int, initial: int, final: int, shape: str = "cubic") -> int:
    """The FFN width after ``step`` (completed steps) of a pruning phase ``(start, end]``.

    ``initial`` up to ``start``, ``final`` from ``end`` on, monotone in between (see the module docstring).

    Raises:
        ConfigError: an unknown shape, ``end <= start``, or ``final > initial``.
    """
    if shape not in WIDTH_SCHEDULES:
        raise ConfigError(f"width schedule {shape!r} is unknown; known: {sorted(WIDTH_SCHEDULES)}")
    if end <= start:
        raise ConfigError(f"pruning phase end step {end} must come after its start step {start}")
    if final > initial:
        raise ConfigError(f"target width {final} is larger than the starting width {initial}")
    p = min(max((step - start) / (end - start), 0.0), 1.0)
    # the remaining fraction is rounded up so the width never drops below the schedule; r(1) = 0 exactly
    return final + math.ceil((initial - final) * WIDTH_SCHEDULES[shape](p) - 1e-9)


def keep_top(scores: Tensor, width: int, alive: Tensor | None = None) -> Tensor:
    """Sorted indices ``[width]`` of the highest ``scores`` among the ``alive`` neurons (ties: lower index).

    Raises:
        ConfigError: fewer alive neurons than ``width``.
    """
    scores = scores.detach().float().clone()
    n_alive = scores.numel() if alive is None else int(alive.sum())
    if not 0 <= width <= n_alive:
        raise ConfigError(f"cannot keep {width} neurons of {n_alive} alive")
    if alive is not None:
        scores[~alive.bool()] = -math.inf
    # a stable descending sort: equal scores keep the lower index, so the choice is deterministic
    order = torch.sort(scores, descending=True, stable=True).indices[:width]
    return torch.sort(order).values


__all__ = [
    "WIDTH_SCHEDULES",
    "activation_importance",
    "ema_",
    "keep_top",
    "neuron_sensitivity",
    "scheduled_width",
]
