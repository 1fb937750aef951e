"""The shared quantization primitives: error bound, exact zeros, packing, stochastic rounding, bad input."""

from __future__ import annotations

import pytest
import torch

from slimkit.nn import quant_primitives as qp


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group_size", [16, None])
def test_nearest_rounding_error_within_half_step(bits, symmetric, group_size):
    w = torch.randn(12, 64, generator=torch.Generator().manual_seed(bits)) * 3 + 0.5
    q, scale, zero = qp.quantize_groupwise(w, bits, group_size, symmetric=symmetric)
    qmin, qmax = qp.qrange(bits)
    assert q.dtype == torch.int8 and int(q.min()) >= qmin and int(q.max()) <= qmax
    assert scale.shape == zero.shape == (12, 64 // (group_size or 64))
    err = (qp.dequantize(q, scale, zero, group_size) - w).abs()
    bound = qp.max_rounding_error(scale, group_size, 64)
    assert torch.all(err <= bound + 1e-6 * w.abs())  # float32 rounding of w itself
    # the bound is tight: some element sits near half a step away
    assert float((err / bound).max()) > 0.5
    if symmetric:
        assert torch.all(zero == 0)


def test_more_bits_less_error_and_zeros_stay_zero():
    w = torch.randn(8, 128, generator=torch.Generator().manual_seed(0))
    w[:, ::3] = 0.0
    errs = []
    for bits in (2, 3, 4, 8):
        for symmetric in (True, False):
            wq = qp.fake_quantize(w, bits, 32, symmetric=symmetric)
            assert torch.all(wq[:, ::3] == 0)
        errs.append(float((qp.fake_quantize(w, bits, 32) - w).pow(2).mean()))
    assert errs == sorted(errs, reverse=True)


def test_all_zero_group_round_trips():
    w = torch.zeros(2, 8)
    q, scale, zero = qp.quantize_groupwise(w, 4, 4, symmetric=False)
    assert torch.all(scale == 1) and torch.equal(qp.dequantize(q, scale, zero, 4), w)


def test_asymmetric_uses_the_whole_range_on_positive_data():
    w = torch.rand(4, 32) + 1.0  # all positive: symmetric wastes the negative half
    sym = (qp.fake_quantize(w, 3, None, symmetric=True) - w).abs().max()
    asym = (qp.fake_quantize(w, 3, None, symmetric=False) - w).abs().max()
    assert asym < sym


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("cols", [1, 7, 16, 33])
def test_pack_round_trips_and_is_dense(bits, cols):
    qmin, qmax = qp.qrange(bits)
    q = torch.randint(
        qmin, qmax + 1, (5, cols), generator=torch.Generator().manual_seed(cols), dtype=torch.int8
    )
    packed = qp.pack(q, bits)
    assert packed.dtype == torch.uint8 and packed.shape == (5, (cols * bits + 7) // 8)
    assert torch.equal(qp.unpack(packed, bits, cols), q)


def test_int4_packs_two_per_byte_low_nibble_first():
    q = torch.tensor([[-8, 7, 0, -1]], dtype=torch.int8)  # unsigned 0, 15, 8, 7
    assert qp.pack(q, 4).tolist() == [[0 | (15 << 4), 8 | (7 << 4)]]


def test_stochastic_rounding_is_unbiased_nearest_is_not():
    x = torch.full((200_000,), 0.3)
    g = torch.Generator().manual_seed(0)
    assert abs(float(qp.stochastic_round(x, generator=g).mean()) - 0.3) < 0.005
    assert float(torch.round(x).mean()) == 0.0
    # through quantize: the mean code converges to the real value in step units
    w = torch.full((1, 100_000), 0.3)
    scale, zero = torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.int8)
    q = qp.quantize(w, scale, zero, 8, None, stochastic=True, generator=g)
    assert abs(float(q.float().mean()) - 0.3) < 0.01
    assert float(qp.quantize(w, scale, zero, 8, None).float().mean()) == 0.0


@pytest.mark.parametrize("bits", [0, 9, 2.5, True])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="bits must be an integer in 1..8"):
        qp.quantize_groupwise(torch.randn(2, 8), bits, None)


def test_group_size_must_divide_the_width():
    with pytest.raises(ValueError, match="group_size 3 does not divide the input width 8"):
        qp.quantize_groupwise(torch.randn(2, 8), 4, 3)
    with pytest.raises(ValueError, match="positive integer or None"):
        qp.quantize_groupwise(torch.randn(2, 8), 4, 0)


def test_non_2d_and_bad_packing_inputs():
    with pytest.raises(ValueError, match="needs a 2-D tensor"):
        qp.quantize_groupwise(torch.randn(8), 4, None)
    with pytest.raises(ValueError, match="outside the 4-bit range"):
        qp.pack(torch.tensor([[9]], dtype=torch.int8), 4)
    with pytest.raises(ValueError, match="does not hold 5 codes"):
        qp.unpack(torch.zeros(1, 2, dtype=torch.uint8), 4, 5)
