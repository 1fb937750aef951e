"""Sebra stage 2: rank-guided pair selection and contrastive loss (Kappiyath et al., arXiv 2501.18277).

For an anchor ``a`` of class ``y`` with rank ``r`` (stage 1):

- **negative** ``n``: a random sample of class ``y`` with the **same rank** ``r`` (it shares the
  anchor's spurious cue; pushing it away discourages that cue);
- **positive** ``p``: a random sample of class ``y`` with rank ``t = min(r + gap, R_y)``, ``R_y`` the
  class's highest rank; if no sample of class ``y`` has rank ``t``, the next higher occupied rank.
  Anchors at ``R_y`` get a positive of their own rank.

Pairs avoid the anchor itself whenever the pool has another sample (a rank held by one sample
pairs it with itself; the official code drops such anchors).

With ``s(u, v)`` the cosine similarity and τ the temperature, over a batch of B anchors:

    L = −(1/B) Σ_i [ s(a_i, p_i)/τ − log( Σ_j e^{s(a_j, n_j)/τ} + Σ_j e^{s(a_j, p_j)/τ} ) ]

The denominator pools the batch's *paired* similarities only (it is not SupCon).
"""

from __future__ import annotations

import bisect

import torch
import torch.nn.functional as F
from torch import Tensor


class RankPools:
    """Sample indices by (class, rank), for drawing positives and negatives quickly."""

    def __init__(self, ranks: Tensor, labels: Tensor) -> None:
        self.ranks = ranks
        self.labels = labels
        self.pools: dict[tuple[int, int], Tensor] = {}
        keys = torch.stack([labels, ranks], dim=1)
        uniq, inverse = torch.unique(keys, dim=0, return_inverse=True)
        order = torch.argsort(inverse, stable=True)
        counts = torch.bincount(inverse, minlength=len(uniq)).tolist()
        for (y, r), members in zip(uniq.tolist(), order.split(counts), strict=True):
            self.pools[(y, r)] = members
        self.class_ranks: dict[int, list[int]] = {}
        for y, r in sorted(self.pools):
            self.class_ranks.setdefault(y, []).append(r)

    def positive_rank(self, y: int, r: int, gap: int) -> int:
        """The occupied rank of class ``y`` nearest at or above ``min(r + gap, R_y)``."""
        ranks = self.class_ranks[y]
        target = min(r + gap, ranks[-1])
        return ranks[bisect.bisect_left(ranks, target)]

    def draw(self, y: int, r: int, anchor: int, generator: torch.Generator) -> int:
        """A uniform random member of pool (y, r) other than ``anchor`` (unless it is the only member)."""
        pool = self.pools[(y, r)]
        if int(self.ranks[anchor]) != r:  # the anchor is not in this pool
            return int(pool[int(torch.randint(0, len(pool), (1,), generator=generator))])
        if len(pool) == 1:
            return anchor
        candidate = int(pool[int(torch.randint(0, len(pool) - 1, (1,), generator=generator))])
        # uniform over the others: the anchor's draw goes to the last member, which is never drawn otherwise
        return int(pool[-1]) if candidate == anchor else candidate


def select_pairs(
    anchors: Tensor, pools: RankPools, gap: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Positive and negative indices ``[B]``, ``[B]`` for anchor indices ``[B]`` (see module docstring)."""
    positives, negatives = [], []
    for i in anchors.tolist():
        y, r = int(pools.labels[i]), int(pools.ranks[i])
        positives.append(pools.draw(y, pools.positive_rank(y, r, gap), i, generator))
        negatives.append(pools.draw(y, r, i, generator))
    return torch.tensor(positives, dtype=torch.long), torch.tensor(negatives, dtype=torch.long)


def rank_contrastive_loss(anchor: Tensor, positive: Tensor, negative: Tensor, temperature: float) -> Tensor:
    """Sebra's contrastive loss (module docstring) for features ``[B, D]`` each; returns a scalar.

    Gradients flow through whichever inputs carry them (the trainer passes detached positives and
    negatives, as the reference does).
    """
    sim_pos = F.cosine_similarity(anchor, positive, dim=1) / temperature  # [B]
    sim_neg = F.cosine_similarity(anchor, negative, dim=1) / temperature  # [B]
    log_denominator = torch.logsumexp(torch.cat([sim_neg, sim_pos]), dim=0)
    return -(sim_pos - log_denominator).mean()
