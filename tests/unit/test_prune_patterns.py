"""Pure mask math: exact counts, N:M groups, Wanda brute force, SparseGPT reconstruction, OWL formula."""

from __future__ import annotations

import pytest
import torch

from slimkit.compress.prune import (
    MagnitudeConfig,
    NMPattern,
    OWLConfig,
    SparseGPTConfig,
    WandaConfig,
    magnitude_scores,
    outlier_ratio,
    owl_block_sparsities,
    parse_pattern,
    select_mask,
    sparsegpt_prune_,
    wanda_scores,
)
from slimkit.compress.prune.patterns import _lowest_k
from slimkit.core.config import Config
from slimkit.core.errors import ConfigError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- patterns and configs ------------------------------------------------------------------------------------------
def test_parse_pattern():
    assert parse_pattern("unstructured") is None
    assert parse_pattern("2:4") == NMPattern(2, 4)
    assert parse_pattern(" 4 : 8 ").sparsity == 0.5


@pytest.mark.parametrize("bad", ["4:4", "5:4", "0:4", "2:0", "2-4", "half", ""])
def test_bad_patterns_rejected(bad):
    with pytest.raises(ConfigError, match="pattern"):
        parse_pattern(bad)


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_outside_range(sparsity):
    with pytest.raises(ConfigError, match="sparsity"):
        WandaConfig(sparsity=sparsity)


def test_nm_sparsity_derived_and_checked():
    assert WandaConfig(pattern="2:4").sparsity == 0.5
    assert MagnitudeConfig(pattern="1:4").sparsity == 0.25
    with pytest.raises(ConfigError, match="contradicts"):
        WandaConfig(sparsity=0.7, pattern="2:4")
    with pytest.raises(ConfigError, match="N:M variant"):
        WandaConfig(pattern="2:4", allocation=OWLConfig())
    with pytest.raises(ConfigError, match="blocksize"):
        SparseGPTConfig(pattern="3:5")  # 128 is not a multiple of 5


def test_config_round_trip():
    cfg = SparseGPTConfig(
        sparsity=0.7, allocation=OWLConfig(m=5, lam=0.05), ignore=["re:down_proj"], true_sequential=True
    )
    again = Config.from_dict(cfg.to_dict())
    assert again == cfg and isinstance(again.allocation, OWLConfig) and again.ignore == ("re:down_proj",)
    assert Config.from_json(WandaConfig(pattern="2:4").to_json()) == WandaConfig(pattern="2:4")


# -- select_mask -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.77])
def test_exact_count_per_matrix_and_row(sparsity):
    scores = torch.rand(24, 40, generator=_gen())
    mask = select_mask(scores, sparsity, group="matrix")
    assert int(mask.sum()) == int(scores.numel() * sparsity)
    if mask.any():
        assert scores[mask].max() <= scores[~mask].min()
    rows = select_mask(scores, sparsity, group="row")
    assert (rows.sum(1) == int(40 * sparsity)).all()


def test_ties_broken_deterministically():
    scores = torch.zeros(4, 8)
    mask = select_mask(scores, 0.5, group="row")
    assert mask[:, :4].all() and not mask[:, 4:].any()  # lower index pruned first


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 2), (5, 8)])
def test_nm_holds_in_every_group(n, m):
    scores = torch.rand(16, 64, generator=_gen(1))
    mask = select_mask(scores, 0.0, NMPattern(n, m))
    groups = mask.reshape(16, 64 // m, m)
    assert (groups.sum(-1) == n).all()
    # the pruned ones are the lowest of their group
    s = scores.reshape(16, 64 // m, m)
    assert (s.masked_fill(~groups, -1).amax(-1) <= s.masked_fill(groups, 2).amin(-1)).all()


def test_nm_width_not_divisible():
    with pytest.raises(ConfigError, match="not divisible by M=8"):
        select_mask(torch.rand(4, 12), 0.5, NMPattern(4, 8))


def test_wanda_mask_equals_brute_force():
    W = torch.randn(12, 20, generator=_gen(2))
    X = torch.randn(50, 20, generator=_gen(3)) * torch.linspace(0.1, 3, 20)
    mask = select_mask(wanda_scores(W, X.square().sum(0)), 0.5, group="row")
    for i in range(12):
        scores = [abs(W[i, j].item()) * X[:, j].norm().item() for j in range(20)]
        pruned = sorted(range(20), key=lambda j: scores[j])[:10]
        assert set(torch.nonzero(mask[i]).flatten().tolist()) == set(pruned)


def test_magnitude_scores():
    W = torch.tensor([[-3.0, 1.0], [0.5, -0.1]])
    assert torch.equal(magnitude_scores(W), W.abs())


# -- SparseGPT -----------------------------------------------------------------------------------------------------
def _correlated(tokens: int, width: int, seed: int) -> torch.Tensor:
    g = _gen(seed)
    mixing = torch.randn(width, width, generator=g) / width**0.5 + torch.eye(width)
    return (torch.randn(tokens, width, generator=g) @ mixing) * torch.linspace(0.2, 2.0, width)


@pytest.mark.parametrize("pattern", [None, NMPattern(2, 4)])
def test_sparsegpt_reconstructs_better_than_magnitude_and_wanda(pattern):
    W = torch.randn(32, 64, generator=_gen(4))
    X = _correlated(512, 64, seed=5)
    H = 2.0 / X.shape[0] * X.T @ X
    # one column block: with narrow blocks the unstructured mask must be 50% in each block, a handicap
    # against Wanda when input scales vary along the columns as much as here
    pruned_sgpt = sparsegpt_prune_(W.clone(), H, 0.5, pattern, blocksize=128)
    pruned_mag = W.masked_fill(select_mask(magnitude_scores(W), 0.5, pattern, group="matrix"), 0)
    pruned_wanda = W.masked_fill(
        select_mask(wanda_scores(W, X.square().sum(0)), 0.5, pattern, group="row"), 0
    )

    def error(Wp: torch.Tensor) -> float:
        return float((X @ W.T - X @ Wp.T).norm())

    assert abs(float((pruned_sgpt == 0).float().mean()) - 0.5) < 0.01
    assert error(pruned_sgpt) < error(pruned_wanda) < error(pruned_mag)
    if pattern is not None:
        assert ((pruned_sgpt == 0).reshape(32, 16, 4).sum(-1) >= 2).all()


def test_sparsegpt_lazy_block_updates_match_one_block():
    # N:M masks do not depend on the block split, so any blocksize must give the same weights
    W = torch.randn(16, 64, generator=_gen(8))
    X = _correlated(256, 64, seed=9)
    H = X.T @ X
    one = sparsegpt_prune_(W.clone(), H, 0.5, NMPattern(2, 4), blocksize=64)
    many = sparsegpt_prune_(W.clone(), H, 0.5, NMPattern(2, 4), blocksize=8)
    torch.testing.assert_close(one, many, rtol=1e-4, atol=1e-5)
    assert torch.equal(one == 0, many == 0)


def test_sparsegpt_dead_inputs_and_exact_block_count():
    W = torch.randn(8, 32, generator=_gen(6))
    X = torch.randn(100, 32, generator=_gen(7))
    X[:, 3] = 0  # a dead input
    out = sparsegpt_prune_(W.clone(), X.T @ X, 0.5, None, blocksize=8)
    assert (out[:, 3] == 0).all()
    # mask chosen per 8-column block: exactly int(8*8*0.5) per block (dead column counted within its block)
    zeros = (out == 0).reshape(8, 4, 8).sum(dim=(0, 2))
    assert zeros.tolist() == [32, 32, 32, 32]


def test_sparsegpt_not_positive_definite():
    H = -torch.eye(8)
    with pytest.raises(ConfigError, match="percdamp"):
        sparsegpt_prune_(torch.randn(4, 8), H, 0.5, percdamp=0.0)


# -- OWL -----------------------------------------------------------------------------------------------------------
def test_owl_formula_and_mean():
    D = [2.0, 5.0, 3.5, 9.0, 4.0]
    S, lam = 0.6, 0.08
    result = owl_block_sparsities(D, S, lam)
    r = [(d - 2.0) / 7.0 * 2 * lam for d in D]
    expected = [1 - (ri - sum(r) / len(r) + (1 - S)) for ri in r]
    assert result == pytest.approx(expected)
    assert sum(result) / len(result) == pytest.approx(S)
    assert max(result) - min(result) == pytest.approx(2 * lam)
    assert result[3] == min(result)  # most outliers -> least pruned


def test_owl_uniform_when_ratios_equal():
    assert owl_block_sparsities([3.0, 3.0], 0.5, 0.1) == [0.5, 0.5]


def test_owl_out_of_range_names_block_and_lam():
    with pytest.raises(ConfigError, match=r"block 0 .*use lam < 0\.05"):
        owl_block_sparsities([0.0, 10.0], 0.95, 0.2)
    with pytest.raises(ConfigError, match="my-block"):
        owl_block_sparsities([0.0, 10.0], 0.05, 0.2, block_names=["a", "my-block"])
    with pytest.raises(ConfigError, match="lam"):
        OWLConfig(lam=0.5)


def test_outlier_ratio_over_concatenation():
    a = torch.tensor([1.0, 1.0, 1.0, 100.0])
    b = torch.tensor([1.0, 1.0, 1.0, 1.0])
    # mean over both = 108/8 = 13.5; one entry above 5 * 13.5? no (100 > 67.5 yes)
    assert outlier_ratio([a, b], 5.0) == pytest.approx(100 * 1 / 8)
    assert outlier_ratio([a], 5.0) == pytest.approx(0.0)  # mean 25.75, 100 < 128.75


@pytest.mark.parametrize("seed", range(5))
def test_lowest_k_equals_stable_sort_with_many_ties(seed):
    g = _gen(seed)
    scores = torch.randint(0, 4, (6, 40), generator=g).float()  # heavy ties
    for k in (0, 1, 13, 39, 40):
        order = torch.argsort(scores, dim=-1, stable=True)[:, :k]
        expected = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, order, True)
        assert torch.equal(_lowest_k(scores, k), expected)
    assert torch.equal(select_mask(scores, 0.5, group="row"), _lowest_k(scores, 20))
    flat = scores.reshape(-1)
    expected = torch.zeros_like(flat, dtype=torch.bool)
    expected[torch.argsort(flat, stable=True)[:120]] = True
    assert torch.equal(select_mask(scores, 0.5, group="matrix").reshape(-1), expected)
