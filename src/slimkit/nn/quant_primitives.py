"""Group-wise integer quantization, bit packing and stochastic rounding: the one copy of this math.

Weight-only quantization (RTN, GPTQ, AWQ — ``compress/quant``), Q-GaLore's INT4 projections and INT8
training weights (``optim``) and the stored ``QuantizedLinear`` all go through these functions, so the
codes a layer stores, the codes an optimizer re-quantizes and the codes an export writes are the same.

Convention (the one ``compressed-tensors`` uses, so that an export is a relabelling, not a conversion).
A 2-D tensor ``W [rows, cols]`` is cut along its last dimension into groups of ``group_size`` columns
(``group_size=None``: one group per row, i.e. per channel). Each group ``g`` has a scale ``s_g`` and an
integer zero point ``z_g``; codes are *signed* integers in ``[qmin, qmax] = [-2^(b-1), 2^(b-1) - 1]``:

    q = clamp(round(W / s_g) + z_g, qmin, qmax)            (quantize)
    Ŵ = (q - z_g) · s_g                                     (dequantize)

    symmetric:   s_g = max|W_g| / ((2^b - 1) / 2),          z_g = 0
    asymmetric:  lo = min(min W_g, 0), hi = max(max W_g, 0)
                 s_g = (hi - lo) / (2^b - 1),               z_g = clamp(qmin - round(lo / s_g), qmin, qmax)

The range always contains 0, so an exact zero (a pruned weight, a padded column) stays exactly zero.
With nearest rounding every element inside its group's range satisfies ``|W - Ŵ| <= s_g / 2``
(:func:`max_rounding_error` gives that bound per element).

Shapes: ``W [rows, cols]`` → ``q [rows, cols]`` (int8), ``scale``/``zero`` ``[rows, cols // group_size]``
(``[rows, 1]`` per channel). :func:`pack` stores ``b``-bit codes densely, ``8 / b`` per byte for
``b`` in {1, 2, 4, 8} and as a little-endian bit stream otherwise (3-bit codes take 3 bits, not 8).
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_BITS, MAX_BITS = 1, 8


def check_bits(bits: int) -> int:
    """``bits`` as an int in ``[1, 8]``, or a ValueError naming the allowed range."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    return bits


def qrange(bits: int) -> tuple[int, int]:
    """The signed code range ``(qmin, qmax) = (-2^(b-1), 2^(b-1) - 1)``."""
    check_bits(bits)
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def num_groups(cols: int, group_size: int | None) -> int:
    """How many groups a row of ``cols`` values splits into; a ValueError when they do not divide."""
    if group_size is None:
        return 1
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer or None (per channel), got {group_size!r}")
    if cols % group_size:
        raise ValueError(
            f"group_size {group_size} does not divide the input width {cols}; "
            "choose a divisor or None (per channel)"
        )
    return cols // group_size


def _grouped(w: Tensor, group_size: int | None) -> Tensor:
    """``[rows, cols] -> [rows, groups, group]`` (a view)."""
    if w.dim() != 2:
        raise ValueError(f"group-wise quantization needs a 2-D tensor, got shape {tuple(w.shape)}")
    rows, cols = w.shape
    groups = num_groups(cols, group_size)
    return w.reshape(rows, groups, cols // groups)


def group_params(
    w: Tensor, bits: int, group_size: int | None = 128, *, symmetric: bool = True
) -> tuple[Tensor, Tensor]:
    """Scale and zero point per group, from the group's range (see the module docstring).

    Args:
        w: ``[rows, cols]`` floating tensor.
        bits: code width in ``[1, 8]``.
        group_size: columns per group, dividing ``cols``; None for one group per row.
        symmetric: zero point 0 and a range symmetric about 0; else min/max (with 0 included).

    Returns:
        ``(scale, zero)``, each ``[rows, groups]``: scale in float32 (never 0: an all-zero group gets
        scale 1), zero as int8.
    """
    qmin, qmax = qrange(bits)
    g = _grouped(w.detach(), group_size).float()
    levels = float(qmax - qmin)  # 2^b - 1
    if symmetric:
        scale = g.abs().amax(dim=-1) / (levels / 2)
        zero = torch.zeros_like(scale)
    else:
        lo = g.amin(dim=-1).clamp(max=0)
        hi = g.amax(dim=-1).clamp(min=0)
        scale = (hi - lo) / levels
    # an all-zero group: any scale reproduces it exactly; 1 avoids dividing by zero
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    if not symmetric:
        zero = (qmin - torch.round(lo / scale)).clamp(qmin, qmax)
    return scale, zero.to(torch.int8)


def stochastic_round(x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """``floor(x + u)``, ``u ~ U[0, 1)``: rounds up with probability ``frac(x)``, so ``E[result] = x``.

    Nearest rounding is biased for a value repeatedly nudged by less than half a step (Q-GaLore's INT8
    weights under small updates would never move); stochastic rounding is unbiased.
    """
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.floor(x + noise)


def quantize(
    w: Tensor,
    scale: Tensor,
    zero: Tensor,
    bits: int,
    group_size: int | None = 128,
    *,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Codes ``q = clamp(round(w / s) + z, qmin, qmax)`` as int8 ``[rows, cols]`` for given group params.

    ``stochastic=True`` rounds with :func:`stochastic_round` instead of to nearest.
    """
    qmin, qmax = qrange(bits)
    g = _grouped(w.detach(), group_size).float()
    x = g / scale.unsqueeze(-1)
    x = stochastic_round(x, generator=generator) if stochastic else torch.round(x)
    q = (x + zero.unsqueeze(-1).float()).clamp_(qmin, qmax)
    return q.to(torch.int8).reshape(w.shape)


def dequantize(
    q: Tensor,
    scale: Tensor,
    zero: Tensor,
    group_size: int | None = 128,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``Ŵ = (q - z) · s`` as ``dtype`` ``[rows, cols]``."""
    g = _grouped(q, group_size)
    w = (g.float() - zero.unsqueeze(-1).float()) * scale.unsqueeze(-1).float()
    return w.reshape(q.shape).to(dtype)


def quantize_groupwise(
    w: Tensor,
    bits: int,
    group_size: int | None = 128,
    *,
    symmetric: bool = True,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Round-to-nearest (or stochastic) group quantization: ``(q int8, scale, zero)``; see :func:`group_params`."""
    scale, zero = group_params(w, bits, group_size, symmetric=symmetric)
    q = quantize(w, scale, zero, bits, group_size, stochastic=stochastic, generator=generator)
    return q, scale, zero


def fake_quantize(w: Tensor, bits: int, group_size: int | None = 128, *, symmetric: bool = True) -> Tensor:
    """``dequantize(quantize(w))`` in ``w``'s dtype: the weight a quantized layer computes with."""
    q, scale, zero = quantize_groupwise(w, bits, group_size, symmetric=symmetric)
    return dequantize(q, scale, zero, group_size, dtype=w.dtype)


def max_rounding_error(scale: Tensor, group_size: int | None, cols: int) -> Tensor:
    """The nearest-rounding bound ``s_g / 2`` broadcast to every element ``[rows, cols]``."""
    per_group = cols if group_size is None else group_size
    return (scale / 2).repeat_interleave(per_group, dim=-1)


# ---------------------------------------------------------------------------------------------- packing


def packed_cols(cols: int, bits: int) -> int:
    """Bytes per row that :func:`pack` writes for ``cols`` codes of ``bits`` bits."""
    check_bits(bits)
    return (cols * bits + 7) // 8


def pack(q: Tensor, bits: int) -> Tensor:
    """Signed ``bits``-bit codes ``[rows, cols]`` → uint8 ``[rows, ceil(cols·bits/8)]``, bits dense.

    Codes are offset by ``2^(b-1)`` to unsigned first. Code ``j`` of a row occupies bits
    ``[j·b, (j+1)·b)`` of the row's little-endian bit stream (for ``b=4``: low nibble first).
    """
    qmin, qmax = qrange(bits)
    if q.dim() != 2:
        raise ValueError(f"pack needs a 2-D tensor of codes, got shape {tuple(q.shape)}")
    if q.numel() and (int(q.min()) < qmin or int(q.max()) > qmax):
        raise ValueError(f"codes outside the {bits}-bit range [{qmin}, {qmax}]")
    u = (q.to(torch.int16) - qmin).to(torch.uint8)
    rows, cols = u.shape
    if bits == 8:
        return u.contiguous()
    if 8 % bits == 0:  # 1, 2, 4 bits: a whole number of codes per byte, shifts only
        per = 8 // bits
        pad = (-cols) % per
        if pad:
            u = torch.cat([u, u.new_zeros(rows, pad)], dim=1)
        u = u.reshape(rows, -1, per).to(torch.int32)
        shifts = torch.arange(per, dtype=torch.int32, device=u.device) * bits
        return (u << shifts).sum(dim=-1).to(torch.uint8)
    # 3, 5, 6, 7 bits: expand to bits, regroup by 8, collapse
    bit_idx = torch.arange(bits, device=u.device, dtype=torch.uint8)
    stream = ((u.unsqueeze(-1) >> bit_idx) & 1).reshape(rows, cols * bits)
    pad = (-stream.shape[1]) % 8
    if pad:
        stream = torch.cat([stream, stream.new_zeros(rows, pad)], dim=1)
    weights = (1 << torch.arange(8, device=u.device, dtype=torch.int32)).to(torch.int32)
    return (stream.reshape(rows, -1, 8).to(torch.int32) * weights).sum(dim=-1).to(torch.uint8)


def unpack(packed: Tensor, bits: int, cols: int) -> Tensor:
    """Inverse of :func:`pack`: uint8 ``[rows, packed_cols]`` → signed int8 codes ``[rows, cols]``."""
    qmin, _ = qrange(bits)
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise ValueError(f"unpack needs a 2-D uint8 tensor, got {packed.dtype} {tuple(packed.shape)}")
    if packed.shape[1] != packed_cols(cols, bits):
        raise ValueError(
            f"packed width {packed.shape[1]} does not hold {cols} codes of {bits} bits "
            f"(expected {packed_cols(cols, bits)} bytes per row)"
        )
    rows = packed.shape[0]
    p = packed.to(torch.int32)
    if bits == 8:
        u = p
    elif 8 % bits == 0:
        per = 8 // bits
        shifts = torch.arange(per, dtype=torch.int32, device=p.device) * bits
        u = ((p.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)).reshape(rows, -1)[:, :cols]
    else:
        stream = ((p.unsqueeze(-1) >> torch.arange(8, device=p.device, dtype=torch.int32)) & 1).reshape(
            rows, -1
        )
        stream = stream[:, : cols * bits].reshape(rows, cols, bits)
        u = (stream << torch.arange(bits, device=p.device, dtype=torch.int32)).sum(dim=-1)
    return (u + qmin).to(torch.int8)
