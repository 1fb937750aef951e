"""Shared calibration statistics (compress/stats.py) and parity of the faster pruning code with the
implementation it replaced (kept below, frozen, as the reference)."""

from __future__ import annotations

import pytest
import torch

from slimkit.compress import SparseGPTConfig, WandaConfig, compress_
from slimkit.compress.calibrate import run_sequential_
from slimkit.compress.prune import select_prune_targets
from slimkit.compress.prune.patterns import NMPattern, _lowest_k, nm_mask, select_mask
from slimkit.compress.prune.sparsegpt import (
    nm_span_mask_,
    sparsegpt_prune_,
    sparsegpt_sweep_,
    sparsegpt_sweep_many_,
)
from slimkit.compress.stats import ColumnSqNorm, Gram, PerInput, hessian_inverse_chol
from slimkit.core.errors import ConfigError
from slimkit.models import tiny_model
from slimkit.models.adapters import get_adapter


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _correlated(tokens: int, width: int, seed: int) -> torch.Tensor:
    """Inputs with unequal, correlated columns (an ill-conditioned Hessian, as real activations give)."""
    g = _gen(seed)
    mix = torch.randn(width, width, generator=g) / width**0.5 + torch.eye(width)
    return (torch.randn(tokens, width, generator=g) @ mix) * torch.rand(width, generator=g).mul(3).add(0.1)


# -- the implementation before the speed-up, frozen as the parity reference ----------------------------
def _previous_sparsegpt_prune_(weight, hessian, sparsity, pattern=None, blocksize=128, percdamp=0.01):
    rows, cols = weight.shape
    W = weight.detach().to(torch.float32, copy=True)
    H = hessian.detach().to(dtype=torch.float32, copy=True)
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    torch.diagonal(H).add_(percdamp * torch.diagonal(H).mean())
    L = torch.linalg.cholesky(H)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    for b1 in range(0, cols, blocksize):
        b2 = min(b1 + blocksize, cols)
        W1 = W[:, b1:b2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[b1:b2, b1:b2]
        d = torch.diagonal(Hinv1)
        if pattern is None:
            mask1 = select_mask(W1.square() / d.square().unsqueeze(0), sparsity, None, group="matrix")
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for j in range(b2 - b1):
            if pattern is not None and j % pattern.m == 0:
                span = slice(j, j + pattern.m)
                mask1[:, span] = nm_mask(W1[:, span].square() / d[span].square().unsqueeze(0), pattern)
            w = W1[:, j]
            q = w.masked_fill(mask1[:, j], 0.0)
            err = (w - q) / d[j]
            W1[:, j:].sub_(err.unsqueeze(1) * Hinv1[j, j:].unsqueeze(0))
            W1[:, j] = q
            Err1[:, j] = err
        W[:, b1:b2] = W1
        W[:, b2:].sub_(Err1 @ Hinv[b1:b2, b2:])
    weight.copy_(W)
    return weight


def _previous_factor(hessian, percdamp=0.01):
    H = hessian.clone()
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    torch.diagonal(H).add_(percdamp * torch.diagonal(H).mean())
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True), dead


CASES = [  # rows, cols, sparsity, pattern, blocksize
    (48, 96, 0.5, None, 32),
    (64, 200, 0.7, None, 64),  # a last block narrower than blocksize
    (40, 128, 0.5, NMPattern(2, 4), 32),
    (32, 96, 0.5, NMPattern(4, 8), 48),
    (24, 64, 0.5, NMPattern(1, 2), 16),
]


@pytest.mark.parametrize("rows,cols,sparsity,pattern,blocksize", CASES)
def test_sparsegpt_equals_the_previous_implementation(rows, cols, sparsity, pattern, blocksize):
    X = _correlated(4 * cols, cols, seed=cols)
    X[:, 3] = 0  # a dead input
    H = 2 / X.shape[0] * X.T @ X
    W = torch.randn(rows, cols, generator=_gen(rows))
    H_before = H.clone()
    new = sparsegpt_prune_(W.clone(), H, sparsity, pattern, blocksize=blocksize)
    old = _previous_sparsegpt_prune_(W.clone(), H, sparsity, pattern, blocksize=blocksize)
    assert torch.equal(H, H_before)
    assert torch.equal(new == 0, old == 0)  # the same mask
    torch.testing.assert_close(new, old, rtol=0, atol=2e-5 * float(old.abs().max()))
    assert bool((new[:, 3] == 0).all())


def test_sparsegpt_on_a_real_sized_layer_keeps_the_mask():
    X = _correlated(2048, 384, seed=7)
    H = 2 / X.shape[0] * X.T @ X
    W = torch.randn(192, 384, generator=_gen(3))
    for pattern in (None, NMPattern(2, 4)):
        new = sparsegpt_prune_(W.clone(), H, 0.5, pattern)
        old = _previous_sparsegpt_prune_(W.clone(), H, 0.5, pattern)
        agree = float(((new == 0) == (old == 0)).float().mean())
        assert agree > 0.9999, agree  # a near-tie may flip under float rounding; none did when written
        rel = float((new - old).abs().max() / old.abs().max())
        assert rel < 1e-4, rel
        # and the layer output it reconstructs is as good
        err_new = float((X @ (new - W).T).square().sum())
        err_old = float((X @ (old - W).T).square().sum())
        assert err_new == pytest.approx(err_old, rel=1e-4)


def test_hessian_inverse_chol_equals_the_reference_factor():
    X = _correlated(1024, 160, seed=1)
    X[:, 10] = 0
    H = 2 / X.shape[0] * X.T @ X
    H_before = H.clone()
    U, dead = hessian_inverse_chol(H, 0.01)
    U_ref, dead_ref = _previous_factor(H)
    assert torch.equal(H, H_before) and torch.equal(dead, dead_ref) and dead.sum() == 1
    assert torch.equal(U, U.triu()) and bool((torch.diagonal(U) > 0).all())
    torch.testing.assert_close(U, U_ref, rtol=1e-4, atol=1e-5 * float(U_ref.abs().max()))
    damped = H.clone()
    damped[dead, dead] = 1.0
    torch.diagonal(damped).add_(0.01 * torch.diagonal(damped).mean())
    eye = torch.eye(160)
    torch.testing.assert_close((U.T @ U) @ damped.double().float(), eye, rtol=0, atol=1e-3)


def test_hessian_inverse_chol_not_positive_definite():
    H = -torch.eye(6)
    with pytest.raises(ConfigError, match="increase percdamp"):
        hessian_inverse_chol(H, 0.0)


def test_sweep_reuses_one_factor_for_linears_sharing_an_input():
    X = _correlated(512, 64, seed=2)
    H = 2 / X.shape[0] * X.T @ X
    factor = hessian_inverse_chol(H, 0.01)
    for seed in (0, 1, 2):  # q, k, v of one block
        W = torch.randn(32, 64, generator=_gen(seed))
        direct = sparsegpt_prune_(W.clone(), H, 0.5)
        shared = sparsegpt_sweep_(W.clone(), *factor, 0.5)
        assert torch.equal(direct, shared)


@pytest.mark.parametrize("pattern", [None, NMPattern(2, 4), NMPattern(4, 8)])
def test_one_sweep_of_linears_sharing_an_input_equals_their_own_sweeps(pattern):
    """q/k/v (and gate/up) swept as one stacked matrix: each keeps its own mask and its own sparsity."""
    X = _correlated(1024, 96, seed=5)
    X[:, 7] = 0  # a dead input
    factor = hessian_inverse_chol(2 / X.shape[0] * X.T @ X, 0.01)
    weights = [torch.randn(rows, 96, generator=_gen(rows)) for rows in (48, 16, 16)]
    sparsities = [0.5, 0.3, 0.7]  # OWL-style per-linear sparsities (unstructured only)
    alone = [
        sparsegpt_sweep_(w.clone(), *factor, s, pattern, 32) for w, s in zip(weights, sparsities, strict=True)
    ]
    together = [w.clone() for w in weights]
    sparsegpt_sweep_many_(together, *factor, sparsities, pattern, 32)
    for a, t, s in zip(alone, together, sparsities, strict=True):
        assert torch.equal(a == 0, t == 0)  # the same mask, from each linear's own selection
        torch.testing.assert_close(t, a, rtol=0, atol=1e-5 * float(a.abs().max()))
        expected = pattern.n / pattern.m if pattern is not None else s
        assert float((t[:, [j for j in range(96) if j != 7]] == 0).float().mean()) == pytest.approx(
            expected, abs=0.02
        )


def test_sweep_many_rejects_mismatched_inputs():
    factor = hessian_inverse_chol(torch.eye(8), 0.01)
    with pytest.raises(ValueError, match="one each"):
        sparsegpt_sweep_many_([torch.randn(4, 8)], *factor, [0.5, 0.5])
    with pytest.raises(ValueError, match="one each"):
        sparsegpt_sweep_many_([], *factor, [])
    with pytest.raises(ValueError, match=r"\[out, 8\]"):
        sparsegpt_sweep_many_([torch.randn(4, 8), torch.randn(4, 6)], *factor, [0.5, 0.5])
    with pytest.raises(ConfigError, match="multiple of M"):
        sparsegpt_sweep_many_([torch.randn(4, 8)], *factor, [0.5], NMPattern(2, 4), blocksize=6)


@pytest.mark.parametrize("m", [2, 4, 8, 16, 64])
def test_nm_span_mask_equals_nm_mask_with_ties(m):
    g = _gen(m)
    saliency = torch.randint(0, 3, (m, 200), generator=g).float()  # many ties
    saliency[:, :5] = 1.0  # whole columns tied
    n = m // 2
    out = torch.empty(m, 200, dtype=torch.bool)
    nm_span_mask_(saliency, n, out=out)
    assert torch.equal(out, nm_mask(saliency.T, NMPattern(n, m)).T)
    assert bool((out.sum(0) == n).all())


def test_sweep_restores_the_thread_count():
    threads = torch.get_num_threads()
    X = _correlated(256, 32, seed=4)
    sparsegpt_prune_(torch.randn(8, 32), 2 / 256 * X.T @ X, 0.5)
    assert torch.get_num_threads() == threads


# -- the mask selection fast path ---------------------------------------------------------------------
@pytest.mark.parametrize("ties", [False, True])
def test_lowest_k_equals_stable_sort(ties):
    g = _gen(5)
    scores = torch.randint(0, 6, (50, 40), generator=g).float() if ties else torch.rand(50, 40, generator=g)
    for k in (0, 1, 7, 20, 39, 40):
        expected = torch.zeros_like(scores, dtype=torch.bool)
        order = torch.sort(scores, dim=-1, stable=True).indices[:, :k]
        expected.scatter_(1, order, True)
        assert torch.equal(_lowest_k(scores, k), expected), k


# -- accumulators ---------------------------------------------------------------------------------------
def test_accumulators_equal_direct_sums():
    chunks = [torch.randn(t, 12, generator=_gen(t)) for t in (5, 9, 3)]
    X = torch.cat(chunks)
    norm, gram = ColumnSqNorm(), Gram()
    for c in chunks:
        norm.add(c)
        gram.add(c)
    assert norm.updates == gram.updates == 3 and norm.tokens == gram.tokens == 17
    torch.testing.assert_close(norm.value, X.square().sum(0))
    torch.testing.assert_close(gram.value, X.T @ X)
    torch.testing.assert_close(gram.hessian(), 2 / 17 * X.T @ X)
    with pytest.raises(ValueError, match="no inputs"):
        Gram().hessian()


def test_per_input_shares_one_accumulator_per_distinct_input():
    stats: PerInput[ColumnSqNorm] = PerInput(ColumnSqNorm)
    separate: dict[str, ColumnSqNorm] = {}
    for chunk in range(3):
        attn_in = torch.randn(6, 8, generator=_gen(chunk))
        mlp_in = torch.randn(6, 8, generator=_gen(10 + chunk))
        for name, x in (
            ("q", attn_in),
            ("k", attn_in),
            ("v", attn_in),
            ("o", mlp_in),
            ("up", mlp_in.clone()),
        ):
            stats.observe(name, x)
            separate.setdefault(name, ColumnSqNorm()).add(x)
    assert (
        stats.sharing("k") == ["q", "k", "v"]
        and stats.sharing("o") == ["o"]
        and stats.sharing("up") == ["up"]
    )
    assert stats["q"] is stats["v"] and stats["q"].updates == 3
    for name, acc in separate.items():
        torch.testing.assert_close(stats[name].value, acc.value)
    assert not stats.release("q") and not stats.release("k") and stats.release("v")
    assert "v" not in stats and "o" in stats


def test_per_input_refuses_a_group_that_stops_sharing():
    stats: PerInput[Gram] = PerInput(Gram)
    x = torch.randn(4, 3)
    stats.observe("q", x)
    stats.observe("k", x)
    stats.observe("q", torch.randn(4, 3))
    with pytest.raises(RuntimeError, match=r"\['k', 'q'\] shared one input"):
        stats.observe("k", torch.randn(4, 3))


# -- the runner: a statistics pass stops before the last linear ---------------------------------------
def test_statistics_pass_does_not_run_the_last_linear():
    model = tiny_model("llama", seed=0)
    adapter = get_adapter(model)
    blocks = adapter.blocks(model)
    calls = {i: 0 for i in range(len(blocks))}
    for i, block in enumerate(blocks):
        block.mlp.down_proj.register_forward_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
    calib = torch.randint(3, 512, (4, 16), generator=_gen(0))
    compress_(model, WandaConfig(sparsity=0.5), calib, chunk_size=2, progress=False)
    # 2 chunks: down_proj runs only when the pruned block's outputs are propagated (not in the last block)
    assert calls == {**{i: 2 for i in range(len(blocks) - 1)}, len(blocks) - 1: 0}


class _Count:
    modifies_weights = True

    def __init__(self) -> None:
        self.tokens: dict[str, int] = {}

    def observe(self, name, inputs):
        self.tokens[name] = self.tokens.get(name, 0) + inputs.shape[0]

    def compress(self, name, module):
        pass

    def reset(self):
        pass


@pytest.mark.parametrize("family", ["llama", "opt", "gpt2", "qwen2"])
def test_every_target_is_observed_on_every_token(family):
    model = tiny_model(family, seed=0)
    counter = _Count()
    targets = select_prune_targets(model, WandaConfig())
    run_sequential_(
        model, counter, torch.randint(3, 512, (3, 16), generator=_gen(1)), targets, progress=False
    )
    assert counter.tokens == {name: 3 * 16 for name in targets}


def test_sparsegpt_result_equals_the_previous_runner_on_a_tiny_model():
    """Whole-model parity: the shared Hessians/factors and the new sweep change rounding only."""
    calib = torch.randint(3, 512, (4, 16), generator=_gen(2))
    model = tiny_model("llama", seed=0)
    reference = tiny_model("llama", seed=0)
    compress_(model, SparseGPTConfig(sparsity=0.5), calib, progress=False)
    # the reference: the frozen previous sweep on per-linear Hessians, block by block
    from slimkit.compress.calibrate import capture_block_inputs, run_block

    adapter = get_adapter(reference)
    inputs = capture_block_inputs(reference, calib)
    cpu = torch.device("cpu")
    blocks = adapter.blocks(reference)

    def add_gram(grams, name):
        def hook(module, args, output):
            x = args[0].reshape(-1, args[0].shape[-1])
            grams[name] = grams.get(name, 0) + x.T @ x

        return hook

    for index, block in enumerate(blocks):
        linears = {n: m for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)}
        grams: dict[str, torch.Tensor] = {}
        handles = [m.register_forward_hook(add_gram(grams, n)) for n, m in linears.items()]
        run_block(block, inputs, cpu, cpu)
        for h in handles:
            h.remove()
        for n, m in linears.items():
            with torch.no_grad():
                _previous_sparsegpt_prune_(m.weight, grams[n] * (2 / calib.numel()), 0.5)
        if index + 1 < len(blocks):
            inputs = inputs.for_block(index + 1, run_block(block, inputs, cpu, cpu))
    for (name, new), old in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(new == 0, old == 0), name
        torch.testing.assert_close(new, old, rtol=0, atol=1e-4 * float(old.abs().max() + 1e-12))


@pytest.mark.parametrize("width", [512, 577, 1024])
def test_symmetric_gram_is_the_full_product(width):
    from slimkit.compress.stats import symmetric_gram

    x = torch.randn(300, width, generator=torch.Generator().manual_seed(width))
    got = symmetric_gram(x)
    assert torch.equal(got, got.T)  # the mirrored block is an exact transpose
    torch.testing.assert_close(got, x.T @ x, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got.double(), x.double().T @ x.double(), rtol=1e-5, atol=1e-3)
    gram = Gram()  # wide inputs take the blocked product, and the running sum adds it up
    gram.add(x[:100])
    gram.add(x[100:])
    torch.testing.assert_close(gram.value, x.T @ x, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("blocks", [1, 2, 3, 4, 5])
def test_symmetric_gram_any_block_count_and_accumulation(blocks):
    from slimkit.compress.stats import symmetric_gram

    x = torch.randn(200, 97, generator=torch.Generator().manual_seed(blocks))
    got = symmetric_gram(x, blocks)
    assert torch.equal(got, got.T)
    torch.testing.assert_close(got, x.T @ x, rtol=1e-5, atol=1e-4)
    running = symmetric_gram(x[:120], blocks)
    assert symmetric_gram(x[120:], blocks, out=running) is running  # in place
    assert torch.equal(running, running.T)
    torch.testing.assert_close(running, x.T @ x, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="expected"):
        symmetric_gram(x, blocks, out=torch.zeros(4, 4))


def test_gram_blocks_follow_the_width():
    from slimkit.compress.stats import gram_blocks

    assert [gram_blocks(w) for w in (64, 511, 512, 576, 768, 1536, 2048, 4096)] == [1, 1, 2, 2, 2, 4, 5, 11]
