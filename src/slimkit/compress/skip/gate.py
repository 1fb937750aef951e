"""The pure math of FFN-SkipLLM and its layer-skipping baselines: saturation, skip decisions, influence.

FFN-SkipLLM — "FFN-SkipLLM: A Hidden Gem for Autoregressive Decoding with Adaptive Feed Forward
Skipping" (Jaiswal et al., arXiv 2404.03865, EMNLP 2024). For a token (one row of the batch) entering
the FFN sub-block of layer ``l`` with residual state ``h [H]`` and leaving it with ``h' = h + u``
(``u`` the FFN's residual update)::

    sat_l = cos(h, h') = <h, h'> / (|h| |h'|)                       h, h': [batch, H] -> [batch]

Once ``sat_l >= τ`` in an eligible layer, the FFNs of the following eligible layers are skipped (the
next ``extent`` of them, or all up to the cold region) and return a zero update.

ShortGPT — "ShortGPT: Layers in Large Language Models are More Redundant Than You Expect" (Men et al.,
arXiv 2403.03853): block influence ``BI_i = 1 - E_tokens[cos(x_i, x_{i+1})]`` over calibration text.

Nothing here touches modules; :mod:`slimkit.nn.ffn_skip` and :mod:`slimkit.nn.layer_skip` wire it in.
The per-token functions are defined in :mod:`slimkit.nn.skip_gate` (the runtime needs them without
``compress``) and re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from slimkit.nn.skip_gate import NEVER, next_skip_left, saturation, skip_mask


def block_influence(x_in: Tensor, x_out: Tensor) -> Tensor:
    """ShortGPT's ``1 - mean cos(x_in, x_out)`` over the rows of ``[tokens, H]`` inputs: a scalar."""
    return 1.0 - saturation(x_in, x_out).mean()


def closest_threshold(
    candidates: Sequence[float], measure: Callable[[float], float], target: float
) -> tuple[float, float, list[tuple[float, float]]]:
    """Bisect sorted (ascending) ``candidates`` for the threshold whose ``measure`` is nearest ``target``.

    ``measure(τ)`` (a skip or exit ratio) falls as ``τ`` rises; the search keeps the best point seen.
    Returns ``(τ, measure(τ), [(τ, measure), ...] in the order tried)``.
    """
    values = sorted(set(float(c) for c in candidates))
    tried: list[tuple[float, float]] = []
    lo, hi = 0, len(values) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        got = measure(values[mid])
        tried.append((values[mid], got))
        if got > target:
            lo = mid + 1  # skipping too much: raise τ
        elif got < target:
            hi = mid - 1
        else:
            break
    best = min(tried, key=lambda p: (abs(p[1] - target), -p[0]))
    return best[0], best[1], tried


__all__ = [
    "NEVER",
    "block_influence",
    "closest_threshold",
    "next_skip_left",
    "saturation",
    "skip_mask",
]
