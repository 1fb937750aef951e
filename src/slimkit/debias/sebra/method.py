"""Sebra's trainer: stage 1 (ranking) then stage 2 (rank-guided contrastive training), in the shared harness."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from slimkit.debias.config import METHODS
from slimkit.debias.datasets import DebiasSplits
from slimkit.debias.sebra.config import SebraConfig
from slimkit.debias.sebra.contrastive import RankPools, rank_contrastive_loss, select_pairs
from slimkit.debias.sebra.ranking import Ranking, rank_by_elimination, ranking_loss
from slimkit.debias.training import (
    FitContext,
    Fitted,
    ModelSelector,
    build_optimizer,
    optimizer_for,
    predict_logits,
    shuffled_batches,
    train_epochs,
    true_class_probs,
)


def spuriosity_ranking(cfg: SebraConfig, splits: DebiasSplits, ctx: FitContext) -> Ranking:
    """Stage 1 on ``splits.train`` (class labels only; no bias or group label is read)."""
    train = splits.train
    n = len(train)
    model = ctx.new_model(cfg, train)
    opt = build_optimizer(model.parameters(), cfg.optimizer, cfg.rank_lr, cfg.momentum, cfg.weight_decay)

    def train_round(active_idx: Tensor, round_: int) -> None:
        # N draws with replacement from the active samples: the reference's 0/1-weighted sampler
        draws = active_idx[torch.randint(0, len(active_idx), (n,), generator=ctx.generator)]
        model.train()
        for idx in draws.split(cfg.rank_batch_size):
            logits = model(train.batch(idx, ctx.device))
            loss = ranking_loss(logits, train.labels[idx].to(ctx.device), cfg.beta_inv).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def true_probs(idx: Tensor) -> Tensor:
        return true_class_probs(predict_logits(model, train, ctx.device, idx), train.labels[idx])

    return rank_by_elimination(
        n,
        train_round,
        true_probs,
        p_critical=cfg.p_critical,
        max_rounds=cfg.max_rounds,
        progress=ctx.progress,
    )


@METHODS.register(SebraConfig, name="sebra")
def fit_sebra(cfg: SebraConfig, splits: DebiasSplits, ctx: FitContext) -> Fitted:
    """Rank the training samples, then train a fresh model with ``L_contrastive + cls_weight · CE(positives)``.

    Per step: anchors ``a`` (a shuffled pass over the training set), their positives ``p`` and
    negatives ``n`` (:func:`select_pairs`); anchor features carry gradients, positive and negative
    features come from a no-grad eval-mode pass (as the reference); the cross-entropy is on the head's
    logits of the positives' gradient-carrying features.
    """
    ranking = spuriosity_ranking(cfg, splits, ctx)
    ctx.log.update(rounds=ranking.rounds, unranked=ranking.unranked)
    train = splits.train
    pools = RankPools(ranking.ranks, train.labels)
    model = ctx.new_model(cfg, train)
    opt = optimizer_for(model, cfg)
    selector = ModelSelector(cfg, splits, ctx.device)
    all_idx = torch.arange(len(train))

    def step(anchors: Tensor) -> float:
        positives, negatives = select_pairs(anchors, pools, cfg.gap, ctx.generator)
        x_a, x_p, x_n = (train.batch(i, ctx.device) for i in (anchors, positives, negatives))
        y = train.labels[positives].to(ctx.device)
        model.train()
        f_anchor, f_positive_grad = model.features(torch.cat([x_a, x_p])).chunk(2)
        with torch.no_grad():
            model.eval()
            f_positive, f_negative = model.features(torch.cat([x_p, x_n])).chunk(2)
            model.train()
        loss = rank_contrastive_loss(f_anchor, f_positive, f_negative, cfg.temperature)
        loss = loss + cfg.cls_weight * F.cross_entropy(model.head(f_positive_grad), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    train_epochs(
        cfg.epochs,
        lambda _epoch: shuffled_batches(all_idx, cfg.batch_size, ctx.generator),
        step,
        description="sebra debiasing",
        progress=ctx.progress,
        after_epoch=lambda e: selector.after_epoch(model, e),
    )
    selector.restore(model, ctx.log)
    return Fitted(model, ranks=ranking.ranks)
