"""Baselines in the same harness as Sebra: ERM, JTT, LfF and the group-balanced oracle.

All of them train the model given by the shared :class:`~slimkit.debias.config.DebiasConfig` fields
with the same optimiser, batch size and epoch budget; only the sampling or the loss differs.
Group labels reach training only in :class:`GroupBalancedConfig` (the oracle upper bound).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from slimkit.core.config import check_range
from slimkit.debias.config import MAX_EPOCHS, METHODS, DebiasConfig
from slimkit.debias.datasets import DebiasSplits
from slimkit.debias.training import (
    FitContext,
    Fitted,
    ModelSelector,
    optimizer_for,
    predict_logits,
    sampled_batches,
    shuffled_batches,
    train_epochs,
    train_supervised,
    true_class_probs,
)


# -- ERM ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ERMConfig(DebiasConfig):
    """Empirical risk minimisation: mean cross-entropy over uniformly shuffled epochs."""


@METHODS.register(ERMConfig, name="erm")
def fit_erm(cfg: ERMConfig, splits: DebiasSplits, ctx: FitContext) -> Fitted:
    all_idx = torch.arange(len(splits.train))
    batches = lambda _e: shuffled_batches(all_idx, cfg.batch_size, ctx.generator)  # noqa: E731
    return Fitted(train_supervised(cfg, splits, ctx, batches, description="erm"))


# -- JTT ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class JTTConfig(DebiasConfig):
    """JTT — Liu et al., "Just Train Twice: Improving Group Robustness without Training Group Information"
    (ICML 2021, arXiv 2107.09044).

    Train ERM for ``id_epochs`` (T); the misclassified training samples form the error set E; train a
    fresh model on the training set with every sample of E repeated ``upweight`` (λ_up) times.

    Attributes:
        id_epochs (int): T, epochs of the identification model. Default: 2 (Waterbirds 60, CelebA 1).
        upweight (int): λ_up, copies of each error-set sample. Default: 20 (Waterbirds 100, CelebA 50).
    """

    id_epochs: int = 2
    upweight: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("id_epochs", self.id_epochs, 1, MAX_EPOCHS)
        # the upsampled index list holds N + (upweight - 1)·|errors| entries
        check_range("upweight", self.upweight, 1, 10_000)


def jtt_upsampled_indices(errors: Tensor, upweight: int) -> Tensor:
    """Training indices with each error sample (``errors`` ``[N]`` bool) repeated ``upweight`` times.

    Returns ``[N + (upweight - 1)·|E|]`` int64: every index once, plus ``upweight - 1`` extra copies of
    each index in E.
    """
    counts = torch.where(errors, upweight, 1)
    return torch.repeat_interleave(torch.arange(len(errors)), counts)


@METHODS.register(JTTConfig, name="jtt")
def fit_jtt(cfg: JTTConfig, splits: DebiasSplits, ctx: FitContext) -> Fitted:
    train = splits.train
    all_idx = torch.arange(len(train))
    identify = train_supervised(
        cfg,
        splits,
        ctx,
        lambda _e: shuffled_batches(all_idx, cfg.batch_size, ctx.generator),
        description="jtt identification",
        epochs=cfg.id_epochs,
        select=False,
    )
    errors = predict_logits(identify, train, ctx.device).argmax(1) != train.labels
    ctx.log["error_set"] = int(errors.sum())
    upsampled = jtt_upsampled_indices(errors, cfg.upweight)
    batches = lambda _e: shuffled_batches(upsampled, cfg.batch_size, ctx.generator)  # noqa: E731
    return Fitted(train_supervised(cfg, splits, ctx, batches, description="jtt retraining"))


# -- LfF ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LfFConfig(DebiasConfig):
    """LfF — Nam et al., "Learning from Failure: Training Debiased Classifier from Biased Classifier"
    (NeurIPS 2020, arXiv 2007.02561).

    A biased model f_B trained with generalized cross-entropy ``GCE = CE · p_y^q · q`` and a debiased
    model f_D trained at the same time with per-sample weights ``W = CE_B / (CE_B + CE_D)``; the
    per-sample losses are exponential moving averages (factor ``ema``) normalised by their class-wise
    maximum.

    Attributes:
        q (float): GCE exponent. Default: 0.7.
        ema (float): EMA factor of the per-sample losses. Default: 0.7.
    """

    q: float = 0.7
    ema: float = 0.7

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("q", self.q, 0.0, 1.0, lo_inclusive=False)
        check_range("ema", self.ema, 0.0, 1.0, hi_inclusive=False)


def gce_loss(logits: Tensor, labels: Tensor, q: float) -> Tensor:
    """Per-sample generalized cross-entropy as LfF trains it: ``CE · p_y^q · q`` (``p_y`` detached); ``[B]``."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    return ce * true_class_probs(logits.detach(), labels).pow(q) * q


class LossEMA:
    """Per-sample EMA of a loss, normalised by the class-wise maximum (LfF's ``EMA`` + ``max_loss``)."""

    def __init__(self, labels: Tensor, num_classes: int, alpha: float) -> None:
        self.labels = labels
        self.num_classes = num_classes
        self.alpha = alpha
        self.values = torch.zeros(len(labels))
        self.seen = torch.zeros(len(labels), dtype=torch.bool)

    def update(self, idx: Tensor, loss: Tensor) -> None:
        # the first observation is taken as is, later ones are blended
        blended = self.alpha * self.values[idx] + (1 - self.alpha) * loss
        self.values[idx] = torch.where(self.seen[idx], blended, loss)
        self.seen[idx] = True

    def normalized(self, idx: Tensor) -> Tensor:
        class_max = torch.zeros(self.num_classes).scatter_reduce(
            0, self.labels, self.values, reduce="amax", include_self=True
        )
        return self.values[idx] / class_max[self.labels[idx]].clamp(min=1e-8)


def lff_weights(biased_loss: Tensor, debiased_loss: Tensor) -> Tensor:
    """``W = L_B / (L_B + L_D)`` per sample (``[B]`` each), in [0, 1]; high where the biased model fails."""
    return biased_loss / (biased_loss + debiased_loss + 1e-8)


@METHODS.register(LfFConfig, name="lff")
def fit_lff(cfg: LfFConfig, splits: DebiasSplits, ctx: FitContext) -> Fitted:
    train = splits.train
    biased, debiased = ctx.new_model(cfg, train), ctx.new_model(cfg, train)
    opt_b, opt_d = optimizer_for(biased, cfg), optimizer_for(debiased, cfg)
    ema_b = LossEMA(train.labels, train.num_classes, cfg.ema)
    ema_d = LossEMA(train.labels, train.num_classes, cfg.ema)
    selector = ModelSelector(cfg, splits, ctx.device)
    all_idx = torch.arange(len(train))

    def step(idx: Tensor) -> float:
        x, y = train.batch(idx, ctx.device), train.labels[idx].to(ctx.device)
        logits_b, logits_d = biased(x), debiased(x)
        ce_b = F.cross_entropy(logits_b.detach(), y, reduction="none").cpu()
        ce_d = F.cross_entropy(logits_d.detach(), y, reduction="none").cpu()
        ema_b.update(idx, ce_b)
        ema_d.update(idx, ce_d)
        weight = lff_weights(ema_b.normalized(idx), ema_d.normalized(idx)).to(ctx.device)
        loss_b = gce_loss(logits_b, y, cfg.q).mean()
        loss_d = (F.cross_entropy(logits_d, y, reduction="none") * weight).mean()
        opt_b.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        (loss_b + loss_d).backward()
        opt_b.step()
        opt_d.step()
        return loss_d.item()

    biased.train()
    debiased.train()
    train_epochs(
        cfg.epochs,
        lambda _e: shuffled_batches(all_idx, cfg.batch_size, ctx.generator),
        step,
        description="lff",
        progress=ctx.progress,
        after_epoch=lambda e: selector.after_epoch(debiased, e),
    )
    selector.restore(debiased, ctx.log)
    return Fitted(debiased)


# -- group-balanced oracle ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class GroupBalancedConfig(DebiasConfig):
    """Group-balanced ERM with the **true group labels** (an oracle upper bound, not an unsupervised method).

    Each epoch draws N samples with replacement with probability ∝ 1/|group|, so every (class,
    aligned/conflicting) group is equally likely.
    """

    @property
    def uses_group_labels(self) -> bool:
        return True


def group_balanced_weights(groups: Tensor) -> Tensor:
    """Per-sample weights ``1 / |group(i)|`` (``[N]`` int64 -> ``[N]`` float): every group sums to 1."""
    counts = torch.bincount(groups).float()
    return 1.0 / counts[groups]


@METHODS.register(GroupBalancedConfig, name="group-balanced")
def fit_group_balanced(cfg: GroupBalancedConfig, splits: DebiasSplits, ctx: FitContext) -> Fitted:
    train = splits.train
    weights = group_balanced_weights(train.group_ids)
    batches = lambda _e: sampled_batches(weights, len(train), cfg.batch_size, ctx.generator)  # noqa: E731
    return Fitted(train_supervised(cfg, splits, ctx, batches, description="group-balanced"))
