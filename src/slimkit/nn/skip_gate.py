"""The per-token math of FFN-SkipLLM's gate, used at decode time by :mod:`slimkit.nn.ffn_skip`.

FFN-SkipLLM — "FFN-SkipLLM: A Hidden Gem for Autoregressive Decoding with Adaptive Feed Forward
Skipping" (Jaiswal et al., arXiv 2404.03865). For a token entering the FFN sub-block of layer ``l``
with residual state ``h`` and leaving it with ``h' = h + u``::

    sat_l = cos(h, h') = <h, h'> / (|h| |h'|)                       h, h': [batch, H] -> [batch]

These functions live in ``nn`` (not ``compress/skip``) because a saved FFN-skip model is rebuilt by
``nn``'s restorer, and ``nn`` sits below ``compress`` in the layering; :mod:`slimkit.compress.skip.gate`
re-exports them beside the calibration-time math. Pure tensor functions, no modules.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEVER = 2.0
"""A threshold no cosine reaches (cos <= 1): the wrapper never skips. JSON has no infinity."""


def saturation(h_in: Tensor, h_out: Tensor, eps: float = 1e-12) -> Tensor:
    """``cos(h_in, h_out)`` per row: ``[batch, H], [batch, H] -> [batch]`` (computed in float32).

    A zero row (norm below ``eps``) has saturation 0, so it never triggers a skip.
    """
    a, b = h_in.float(), h_out.float()
    dot = (a * b).sum(-1)
    norms = a.norm(dim=-1) * b.norm(dim=-1)
    return torch.where(norms > eps, dot / norms.clamp_min(eps), torch.zeros_like(dot))


def skip_mask(cos: Tensor, threshold: float, eligible: Tensor) -> Tensor:
    """Rows whose saturation reached ``threshold`` in a layer that may trigger a skip: ``[batch]`` bool."""
    return eligible & (cos >= threshold)


def next_skip_left(
    skip_left: Tensor, ran: Tensor, cos: Tensor | None, threshold: float, extent: int
) -> Tensor:
    """Per-row count of FFNs still to skip after one eligible layer: ``[batch]`` int.

    A row that skipped this layer counts down by one; a row that ran it starts skipping the next
    ``extent`` eligible layers when its saturation reached ``threshold`` (``cos`` ``None``: no trigger,
    the last eligible layer). ``extent`` >= the number of eligible layers means "up to the cold region".
    """
    left = torch.where(ran, torch.zeros_like(skip_left), (skip_left - 1).clamp_min(0))
    if cos is not None:
        left = torch.where(skip_mask(cos, threshold, ran), torch.full_like(left, extent), left)
    return left


__all__ = ["NEVER", "next_skip_left", "saturation", "skip_mask"]
