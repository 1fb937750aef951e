"""Sebra's configuration."""

from __future__ import annotations

from dataclasses import dataclass

from slimkit.core.config import check_range
from slimkit.debias.config import MAX_BATCH, MAX_EPOCHS, DebiasConfig


@dataclass(frozen=True, kw_only=True)
class SebraConfig(DebiasConfig):
    """Sebra — Kappiyath et al., "Sebra: Debiasing through Self-Guided Bias Ranking" (ICLR 2025, arXiv 2501.18277).

    Stage 1 ranks training samples by spuriosity without bias labels: rounds of training on the
    still-active samples with the loss ``CE · p_y^{beta_inv}`` (``p_y`` detached), each round
    eliminating the active samples with ``p_y > p_critical`` and giving them that round's index as
    rank. Stage 2 trains a fresh model with the rank-guided contrastive loss plus
    ``cls_weight · CE`` (see :mod:`slimkit.debias.sebra.contrastive`). The inherited fields
    (:class:`~slimkit.debias.config.DebiasConfig`) set stage 2's training.

    Defaults in parentheses are the official code's per-dataset launch settings
    (UrbanCars / CelebA / BAR); the defaults here were chosen for coloured digits at ρ = 0.99 with the
    MLP (docs/sebra.md).

    Attributes:
        beta_inv (float): exponent of ``p_y`` in the stage-1 weight; the paper's β is ``1/beta_inv``.
            Default: 0.7 (0.7 / 0.8 / 0.7).
        p_critical (float): elimination threshold on ``p_y``, in (0, 1). Default: 0.7 (0.75 / 0.7 / 0.75).
        max_rounds (int): stage-1 round limit; samples never eliminated get the last rank. Default: 100.
        rank_lr (float): stage-1 learning rate (optimizer type and momentum shared with stage 2).
            Default: 1e-3 (SGD 1e-3 / SGD 1e-3 / Adam 1e-4).
        rank_batch_size (int): stage-1 batch size. Default: 64 (128 / 256 / 64).
        gap (int): the positive's rank is ``min(r + gap, max rank of the class)``. Default: 3 (5 / 3 / 2).
        temperature (float): τ of the contrastive loss. Default: 0.1 (0.05 / 0.05 / 0.15).
        cls_weight (float): weight of the cross-entropy on the positives. Default: 1.0 (0.5 / 1 / 0.5).
    """

    VERSION = 1
    beta_inv: float = 0.7
    p_critical: float = 0.7
    max_rounds: int = 100
    rank_lr: float = 1e-3
    rank_batch_size: int = 64
    gap: int = 3
    temperature: float = 0.1
    cls_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("beta_inv", self.beta_inv, 0.0, None)
        check_range("p_critical", self.p_critical, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False)
        check_range("max_rounds", self.max_rounds, 1, MAX_EPOCHS)
        check_range("rank_lr", self.rank_lr, 0.0, 1e3, lo_inclusive=False)
        check_range("rank_batch_size", self.rank_batch_size, 1, MAX_BATCH)
        check_range("gap", self.gap, 1, MAX_BATCH)
        check_range("temperature", self.temperature, 0.0, None, lo_inclusive=False)
        check_range("cls_weight", self.cls_weight, 0.0, None)
