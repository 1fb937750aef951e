"""GaLore projector and Q-GaLore INT4 projection storage / adaptive refresh (pure math)."""

from __future__ import annotations

import pytest
import torch

from slimkit.core.errors import ConfigError
from slimkit.optim import projector as pj


def low_rank(m: int, n: int, r: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, r, generator=g) @ torch.randn(r, n, generator=g)


@pytest.mark.parametrize(
    ("shape", "proj_type", "side"),
    [
        ((40, 24), "std", "right"),
        ((24, 40), "std", "left"),
        ((40, 24), "left", "left"),
        ((24, 40), "right", "right"),
    ],
)
def test_side_selection(shape, proj_type, side):
    assert pj.projection_side(shape, 4, proj_type) == side


def test_full_rank_on_projected_side_is_identity():
    assert pj.projection_side((40, 24), 24, "std") == "identity"
    assert (
        pj.projection_side((40, 24), 24, "left") == "left"
    )  # U[:, :24] of a 40-row matrix is a real projection


@pytest.mark.parametrize("method", ["full", "randomized"])
@pytest.mark.parametrize("shape", [(48, 30), (30, 48)])
def test_rank_r_matrix_is_reproduced_exactly(method, shape):
    g = low_rank(*shape, r=5)
    side = pj.projection_side(shape, 5)
    p = pj.svd_projector(g, 5, side, method=method)
    assert torch.allclose(p.T @ p, torch.eye(5), atol=1e-5)  # orthonormal columns
    low = pj.project(g, p, side)
    assert low.shape == ((5, shape[1]) if side == "left" else (shape[0], 5))
    back = pj.project_back(low, p, side, scale=1.0)
    assert torch.allclose(back, g, atol=1e-3 * g.abs().max())
    assert torch.allclose(pj.project_back(low, p, side, scale=0.25), 0.25 * back)


def test_projection_keeps_the_top_singular_subspace():
    # a rank-8 matrix: projecting to rank 3 keeps exactly the energy of the top 3 singular values
    g = low_rank(32, 20, 8, seed=3)
    s = torch.linalg.svdvals(g)
    side = pj.projection_side(g.shape, 3)
    back = pj.project_back(
        pj.project(g, pj.svd_projector(g, 3, side), side), pj.svd_projector(g, 3, side), side
    )
    assert torch.allclose(back.norm() ** 2, (s[:3] ** 2).sum(), rtol=1e-4)
    assert torch.allclose((g - back).norm() ** 2, (s[3:] ** 2).sum(), rtol=1e-3)


@pytest.mark.parametrize("rank", [0, -1, 21, 2.5])
def test_bad_rank(rank):
    with pytest.raises(ConfigError, match="rank"):
        pj.projection_side((32, 20), rank)


def test_non_2d_and_bad_proj_type():
    with pytest.raises(ConfigError, match="2-D"):
        pj.projection_side((4, 4, 4), 2)
    with pytest.raises(ConfigError, match="2-D"):
        pj.projection_side((16,), 2)
    with pytest.raises(ConfigError, match="proj_type"):
        pj.projection_side((8, 8), 2, "full")
    with pytest.raises(ConfigError, match="svd method"):
        pj.svd_projector(torch.randn(8, 8), 2, "left", method="qr")


def test_int4_projection_packed_two_per_byte_and_error_bounded():
    p = pj.svd_projector(torch.randn(512, 96), 64, "left")  # [512, 64]: 128 groups of 256
    stored = pj.quantize_projection(p, bits=4, group_size=256)
    assert stored["codes"].dtype == torch.uint8 and stored["codes"].numel() == p.numel() // 2
    assert pj.projection_bytes(stored) == p.numel() // 2 + 128 * (4 + 1)
    p_hat = pj.dequantize_projection(stored, p.shape, bits=4)
    bound = (stored["scale"] / 2).expand(-1, 256).reshape(p.shape)
    err = (p - p_hat).abs()
    assert torch.all(err <= bound + 1e-6)
    assert err.max() > 0  # really quantized
    # the bound is (max - min) / (2 * 15) per group
    flat = p.reshape(-1, 256)
    rng = flat.amax(1).clamp(min=0) - flat.amin(1).clamp(max=0)
    assert torch.allclose(stored["scale"].squeeze(1), rng / 15)


def test_group_size_must_divide():
    with pytest.raises(ConfigError, match="does not divide"):
        pj.quantize_projection(torch.randn(10, 3), 4, 256)
    with pytest.raises(ConfigError, match="positive integer"):
        pj.check_quantizable(256, 0)


def test_leading_cosine_ignores_sign():
    a = torch.randn(10, 3)
    assert pj.leading_cosine(a, -a) == pytest.approx(1.0)
    b = torch.zeros(10, 3)
    b[:, 0] = torch.linalg.svd(a)[0][:, 0]  # something else
    assert 0 <= pj.leading_cosine(a, b) <= 1


def test_gap_doubles_exactly_as_specified():
    # the FIFO (size 5) must be full and its mean >= 0.4; the gap then doubles at every later SVD
    gap, queue, gaps = 10, [], []
    for cos in [0.9, 0.9, 0.9, 0.9, 0.0, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.5]:
        queue = pj.push_cosine(queue, cos, queue_size=5)
        gap = pj.next_refresh_gap(queue, gap, threshold=0.4, gamma=2, queue_size=5)
        gaps.append(gap)
    # means once the FIFO is full: .72, .72, .56, .40 (double each), then .24, .26, .10, .18 (keep)
    assert gaps == [10, 10, 10, 10, 20, 40, 80, 160, 160, 160, 160, 160]
    assert len(queue) == 5
    assert pj.next_refresh_gap([0.4] * 5, 7) == 14  # mean exactly at the threshold doubles
    assert pj.next_refresh_gap([0.9] * 4, 7) == 7  # not full


@pytest.mark.parametrize("bits", [4, 8])
def test_packing_round_trips(bits):
    from slimkit.nn import quant_primitives as qp

    qmin, qmax = qp.qrange(bits)
    q = torch.randint(qmin, qmax + 1, (6, 256), dtype=torch.int8)
    packed = qp.pack(q, bits)
    assert packed.dtype == torch.uint8 and packed.shape == (6, 256 * bits // 8)
    assert torch.equal(qp.unpack(packed, bits, 256), q)
    # a stored projection re-quantizes to the very same codes (dequantise -> quantise is idempotent)
    p = pj.svd_projector(torch.randn(64, 40), 16, "left")
    stored = pj.quantize_projection(p, bits, 256)
    again = pj.quantize_projection(pj.dequantize_projection(stored, p.shape, bits), bits, 256)
    assert torch.equal(again["codes"], stored["codes"])


def test_optimizer_doubles_the_gap_of_a_stable_layer():
    # a constant gradient: every SVD finds the same leading vector (|cos| = 1), so after the FIFO
    # fills (5 cosines = 6 SVDs) the interval doubles at each SVD: SVDs at 0,1,2,3,4,5, 7, 11, 19
    from slimkit.optim import GaLoreAdamW, QGaLoreAdamW

    g = low_rank(32, 64, 4, seed=5)
    for cls, kw in ((QGaLoreAdamW, {"proj_group_size": 64}), (GaLoreAdamW, {"cos_threshold": 0.4})):
        w = torch.nn.Parameter(torch.zeros(32, 64))
        opt = cls([{"params": [w], "rank": 4, "update_proj_gap": 1, **kw}], lr=1e-3)
        for _ in range(20):
            w.grad = g.clone()
            opt.step()
        st = opt.state[w]
        assert opt.svd_counts() == {0: 9} and st["gap"] == 16 and st["next_svd"] == 35
    # without cos_threshold (plain GaLore) the interval is fixed
    w = torch.nn.Parameter(torch.zeros(32, 64))
    opt = GaLoreAdamW([{"params": [w], "rank": 4, "update_proj_gap": 1}], lr=1e-3)
    for _ in range(20):
        w.grad = g.clone()
        opt.step()
    assert opt.svd_counts() == {0: 20}
