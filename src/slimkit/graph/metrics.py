"""Link-prediction ranking metrics: AUC and Hits@K over scored positive and negative pairs.

Used by LLaGA's ``lprank`` evaluation (the score of a pair is the LLM's log-odds of "yes" over "no",
``s = log p(yes | prompt) − log p(no | prompt)``; LLaGA issue #4 asked for AUC / Hits@K beside
accuracy) and by the GNN link-prediction baselines (the decoder's logit), so both are ranked alike.

    AUC      = P(s⁺ > s⁻) + ½ P(s⁺ = s⁻)          over all (positive, negative) pairs
    Hits@K   = |{i : s⁺_i > s⁻_(K)}| / P            s⁻_(K): the K-th highest negative score
                                                    (OGB's definition; 1.0 when there are < K negatives)

Shapes: ``pos [P]``, ``neg [Q]`` scores; higher means "more likely an edge".
"""

from __future__ import annotations

import torch
from torch import Tensor

from slimkit.core.errors import DataError

HITS_K = (1, 10)


def link_auc(pos: Tensor, neg: Tensor) -> float:
    """``P(s⁺ > s⁻) + ½ P(s⁺ = s⁻)`` over every positive-negative pair (the Mann-Whitney U statistic)."""
    pos, neg = _check(pos, neg)
    diff = pos[:, None] - neg[None, :]  # [P, Q]
    return float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean())


def hits_at_k(pos: Tensor, neg: Tensor, k: int) -> float:
    """Share of positives scored strictly above the ``k``-th highest negative (OGB's Hits@K)."""
    pos, neg = _check(pos, neg)
    if k < 1:
        raise DataError(f"Hits@K needs K >= 1, got {k}")
    if neg.numel() < k:
        return 1.0
    kth = torch.topk(neg, k).values[-1]
    return float((pos > kth).double().mean())


def link_ranking_metrics(pos: Tensor, neg: Tensor, ks: tuple[int, ...] = HITS_K) -> dict[str, float]:
    """``{"auc": …, "hits@K": …}`` for each K in ``ks``."""
    out = {"auc": link_auc(pos, neg)}
    for k in ks:
        out[f"hits@{k}"] = hits_at_k(pos, neg, k)
    return out


def _check(pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
    pos, neg = torch.as_tensor(pos).double().flatten(), torch.as_tensor(neg).double().flatten()
    if pos.numel() == 0 or neg.numel() == 0:
        raise DataError(f"ranking metrics need positives and negatives, got {pos.numel()} and {neg.numel()}")
    if not (torch.isfinite(pos).all() and torch.isfinite(neg).all()):
        raise DataError("ranking scores must be finite")
    return pos, neg
