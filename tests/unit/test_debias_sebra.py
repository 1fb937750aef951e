"""Sebra: stage-1 elimination and ranks, the weighted loss, pair selection, the contrastive loss, and
the end-to-end claims on coloured digits (ranking AUROC, bias-conflicting accuracy above ERM)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from slimkit.core.errors import ConfigError
from slimkit.debias import ColoredDigitsConfig, ERMConfig, SebraConfig, colored_digits, run_method
from slimkit.debias.sebra import (
    RankPools,
    eliminate,
    finalize_ranks,
    rank_by_elimination,
    rank_contrastive_loss,
    ranking_loss,
    select_pairs,
)


# -- stage 1 -------------------------------------------------------------------------------------------------
def test_ranking_loss_equals_formula_and_detaches_the_weight():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, requires_grad=True)
    labels = torch.tensor([0, 3, 1, 1, 2])
    beta_inv = 0.7
    loss = ranking_loss(logits, labels, beta_inv)
    probs = logits.detach().softmax(1)
    for i in range(5):
        p_y = probs[i, labels[i]].item()
        assert loss[i].item() == pytest.approx(-math.log(p_y) * p_y**beta_inv, rel=1e-5)
    # the weight is a constant: d loss_i / d logits = p_y^b * d CE_i / d logits
    loss.sum().backward()
    ce_logits = logits.detach().clone().requires_grad_(True)
    F.cross_entropy(ce_logits, labels, reduction="none").mul(
        probs.gather(1, labels[:, None]).squeeze(1) ** beta_inv
    ).sum().backward()
    torch.testing.assert_close(logits.grad, ce_logits.grad)


def test_eliminate_needs_active_and_strictly_above_threshold():
    active = torch.tensor([True, True, False, True])
    p_y = torch.tensor([0.9, 0.7, 0.99, 0.2])
    assert eliminate(active, p_y, 0.7).tolist() == [True, False, False, False]


def test_elimination_and_ranks_follow_a_known_learning_order():
    # sample i becomes confident (p_y = 0.9) once `learned_at[i]` rounds have been trained; -1 never
    learned_at = torch.tensor([0, 0, 1, 3, 3, 1, -1])
    seen_active: list[list[int]] = []
    state = {"round": -1}

    def train_round(active_idx, round_):
        seen_active.append(active_idx.tolist())
        state["round"] = round_

    def true_probs(idx):
        learned = (learned_at[idx] >= 0) & (learned_at[idx] <= state["round"])
        return torch.where(learned, 0.9, 0.1)

    ranking = rank_by_elimination(7, train_round, true_probs, p_critical=0.75, max_rounds=6)
    # rounds 0..5 run (sample 6 is never learned); it gets the last rank, 6
    assert ranking.rounds == 6
    assert ranking.ranks.tolist() == [0, 0, 1, 3, 3, 1, 6]
    assert ranking.eliminated_per_round == [2, 2, 0, 2, 0, 0]
    assert ranking.unranked == 1
    # eliminated samples are never trained on again
    assert seen_active[0] == [0, 1, 2, 3, 4, 5, 6]
    assert seen_active[1] == [2, 3, 4, 5, 6]
    assert seen_active[2] == [3, 4, 6]
    assert seen_active[4] == [6]


def test_elimination_stops_when_every_sample_is_ranked():
    calls = []
    ranking = rank_by_elimination(
        3,
        lambda idx, r: calls.append(r),
        lambda idx: torch.full((len(idx),), 0.99),
        p_critical=0.5,
        max_rounds=50,
    )
    assert calls == [0] and ranking.rounds == 1 and ranking.ranks.tolist() == [0, 0, 0]


def test_finalize_ranks_puts_unranked_last():
    assert finalize_ranks(torch.tensor([2, -1, 0, -1]), 5).tolist() == [2, 5, 0, 5]


# -- stage 2: pairs ------------------------------------------------------------------------------------------
def _pools():
    # class 0: ranks 0 (idx 0,1,2), 1 (idx 3), 4 (idx 4,5); class 1: ranks 0 (idx 6,7), 2 (idx 8)
    ranks = torch.tensor([0, 0, 0, 1, 4, 4, 0, 0, 2])
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1])
    return RankPools(ranks, labels), ranks, labels


def test_positive_rank_is_rank_plus_gap_clamped_then_next_occupied():
    pools, _, _ = _pools()
    assert pools.positive_rank(0, 0, 1) == 1  # r + gap occupied
    assert pools.positive_rank(0, 0, 2) == 4  # rank 2 empty in class 0 -> next occupied (4)
    assert pools.positive_rank(0, 1, 10) == 4  # clamped to the class's max rank
    assert pools.positive_rank(0, 4, 3) == 4  # max-rank anchors pair with their own rank
    assert pools.positive_rank(1, 0, 1) == 2  # ranks are per class: class 1 has no rank 1


def test_select_pairs_follows_the_ranks():
    pools, ranks, labels = _pools()
    gen = torch.Generator().manual_seed(0)
    anchors = torch.arange(9).repeat(40)
    pos, neg = select_pairs(anchors, pools, gap=2, generator=gen)
    assert (labels[pos] == labels[anchors]).all() and (labels[neg] == labels[anchors]).all()
    assert (ranks[neg] == ranks[anchors]).all()
    expected_pos_rank = torch.tensor([pools.positive_rank(int(labels[a]), int(ranks[a]), 2) for a in anchors])
    assert (ranks[pos] == expected_pos_rank).all()
    # a negative is never the anchor itself when its rank pool has other members ...
    multi = torch.tensor([a not in (3, 8) for a in anchors.tolist()])
    assert (neg[multi] != anchors[multi]).all()
    # ... and every other member is drawn (uniform over the others)
    assert set(neg[anchors == 0].tolist()) == {1, 2}
    assert set(pos[anchors == 0].tolist()) == {4, 5}
    # a rank held by one sample pairs the anchor with itself
    assert (neg[anchors == 3] == 3).all() and (neg[anchors == 8] == 8).all()


def test_contrastive_loss_equals_formula():
    torch.manual_seed(1)
    a, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    tau = 0.1
    sp = [F.cosine_similarity(a[i], p[i], dim=0).item() / tau for i in range(4)]
    sn = [F.cosine_similarity(a[i], n[i], dim=0).item() / tau for i in range(4)]
    log_den = math.log(sum(math.exp(s) for s in sp) + sum(math.exp(s) for s in sn))
    expected = -sum(s - log_den for s in sp) / 4
    assert rank_contrastive_loss(a, p, n, tau).item() == pytest.approx(expected, rel=1e-5)
    # pulling the anchor towards its positive lowers the loss
    assert rank_contrastive_loss(p.clone(), p, n, tau) < rank_contrastive_loss(a, p, n, tau)


@pytest.mark.parametrize(
    "field, value",
    [("p_critical", 1.0), ("p_critical", 0.0), ("gap", 0), ("temperature", 0.0), ("beta_inv", -1.0)],
)
def test_sebra_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=field):
        SebraConfig(**{field: value})


# -- end to end on coloured digits ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_099():
    # the benchmark's data: 3291 training images, 33 of them bias-conflicting
    return colored_digits(ColoredDigitsConfig(alignment=0.99))


@pytest.fixture(scope="module")
def sebra_run(digits_099):
    return run_method(SebraConfig(epochs=15, max_rounds=30), digits_099, seed=0)


def test_ranking_separates_bias_conflicting_samples(sebra_run, digits_099):
    ranking = sebra_run.metrics["ranking"]
    assert digits_099.train.conflicting.sum() == 33
    assert ranking["auroc"] > 0.85, ranking
    assert ranking["mean_rank_conflicting"] > ranking["mean_rank_aligned"] + 1


def test_sebra_beats_erm_on_bias_conflicting_accuracy(sebra_run, digits_099):
    erm = run_method(ERMConfig(epochs=15), digits_099, seed=0)
    sebra_acc = sebra_run.metrics["test"]["bias_conflicting_accuracy"]
    erm_acc = erm.metrics["test"]["bias_conflicting_accuracy"]
    assert sebra_acc > erm_acc + 0.05, (sebra_acc, erm_acc)
    assert sebra_run.metrics["test"]["unbiased_accuracy"] > erm.metrics["test"]["unbiased_accuracy"]
