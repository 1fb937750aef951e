"""Sebra — "Sebra: Debiasing through Self-Guided Bias Ranking" (Kappiyath et al., ICLR 2025, arXiv 2501.18277).

Stage 1 (:mod:`.ranking`) ranks training samples by spuriosity without bias labels; stage 2
(:mod:`.contrastive`) trains a fresh model with a rank-guided contrastive loss. ``fit_sebra`` wires
both into the shared debiasing harness (registered as ``sebra``).
"""

from slimkit.debias.sebra.config import SebraConfig
from slimkit.debias.sebra.contrastive import RankPools, rank_contrastive_loss, select_pairs
from slimkit.debias.sebra.method import fit_sebra, spuriosity_ranking
from slimkit.debias.sebra.ranking import (
    Ranking,
    eliminate,
    finalize_ranks,
    rank_by_elimination,
    ranking_loss,
)

__all__ = [
    "RankPools",
    "Ranking",
    "SebraConfig",
    "eliminate",
    "finalize_ranks",
    "fit_sebra",
    "rank_by_elimination",
    "rank_contrastive_loss",
    "ranking_loss",
    "select_pairs",
    "spuriosity_ranking",
]
