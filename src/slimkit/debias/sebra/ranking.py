"""Sebra stage 1: self-guided spuriosity ranking (Kappiyath et al., ICLR 2025, arXiv 2501.18277).

Every training sample starts *active* (selector ``v_i = 1``). One round is a pass of ``N`` draws,
with replacement, from the active samples only, training the model on

    L_i = CE(f(x_i), y_i) · p_{y_i}(x_i)^{β⁻¹}            (p detached: a weight, not a gradient path)

which up-weights the samples the model already finds easy, so it keeps learning the most spurious
(easiest) ones first. After the round every active sample with ``p_y > p_critical`` leaves the active
set and gets **rank = the round's index** (0, 1, 2, ...). Rounds stop when no sample is active or after
``max_rounds``; samples never eliminated get the last rank (``rounds run``), as the paper appends them
to the end of the ranked list. A low rank means learned early, i.e. more spurious. Ranks are compared
within a class (stage 2 pairs samples of the same class only).

Differences from the official code, on purpose: after each round *every* active sample is checked
(the reference re-walks its random sampler, so an active sample that happens not to be drawn waits a
round); unranked samples get the last rank rather than −1 (the paper's text; the reference's −1 would
make them the most spurious).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from slimkit.core.progress import progress_bar

UNRANKED = -1


def ranking_loss(logits: Tensor, labels: Tensor, beta_inv: float) -> Tensor:
    """Per-sample ``CE(logits, y) · p_y^{β⁻¹}`` with ``p_y`` detached: ``[B, C]``, ``[B]`` -> ``[B]``."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    p_y = F.softmax(logits.detach().float(), dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
    return ce * p_y.pow(beta_inv).to(ce.dtype)


def eliminate(active: Tensor, p_y: Tensor, p_critical: float) -> Tensor:
    """The samples leaving the active set: ``active & (p_y > p_critical)`` (``[N]`` bool, ``[N]`` float)."""
    return active & (p_y > p_critical)


def finalize_ranks(ranks: Tensor, rounds_run: int) -> Tensor:
    """Give the never-eliminated samples (rank −1) the last rank, ``rounds_run``."""
    return torch.where(ranks == UNRANKED, torch.full_like(ranks, rounds_run), ranks)


@dataclass
class Ranking:
    """Stage-1 output: ``ranks`` ``[N]`` int64 (0 = most spurious), rounds run, eliminations per round."""

    ranks: Tensor
    rounds: int
    eliminated_per_round: list[int]

    @property
    def unranked(self) -> int:
        """How many samples were never eliminated (they hold the last rank)."""
        return int((self.ranks == self.rounds).sum())


def rank_by_elimination(
    num_samples: int,
    train_round: Callable[[Tensor, int], None],
    true_probs: Callable[[Tensor], Tensor],
    *,
    p_critical: float,
    max_rounds: int,
    progress: bool = False,
) -> Ranking:
    """The elimination loop, independent of how a round trains.

    Args:
        num_samples: N.
        train_round: ``train_round(active_idx, round)`` trains on the active samples (``[M]`` int64).
        true_probs: ``true_probs(idx)`` -> ``[len(idx)]`` the current model's ``p_y`` of those samples.
        p_critical: elimination threshold.
        max_rounds: round limit.
    """
    ranks = torch.full((num_samples,), UNRANKED, dtype=torch.long)
    active = torch.ones(num_samples, dtype=torch.bool)
    per_round: list[int] = []
    with progress_bar(max_rounds if progress else 0, "sebra ranking") as bar:
        for round_ in range(max_rounds):
            active_idx = torch.nonzero(active).flatten()
            if len(active_idx) == 0:
                break
            train_round(active_idx, round_)
            p_y = torch.zeros(num_samples)
            p_y[active_idx] = true_probs(active_idx).float().cpu()
            out = eliminate(active, p_y, p_critical)
            ranks[out] = round_
            active &= ~out
            per_round.append(int(out.sum()))
            if progress:
                bar.update(1, active=int(active.sum()))
    rounds = len(per_round)
    return Ranking(finalize_ranks(ranks, rounds), rounds, per_round)
