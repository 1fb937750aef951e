"""Pure tensor math of WeLore and uniform-rank SVD: spectra in, kept ranks and factors out.

WeLore — "From GaLore to WeLore: How Low-Rank Weights Non-uniformly Emerge from Low-Rank Gradients"
(Jaiswal et al., arXiv 2407.11239). For a weight ``W [m, n]`` with singular values
``s_1 >= ... >= s_r`` (``r = min(m, n)``):

    ŝ_j = (s_j - min s) / (max s - min s)           min-max normalised per matrix
    p   = #{j : ŝ_j < τ}                            values below ONE global threshold τ are dropped
    k   = r - p                                     each matrix keeps its own rank

Heavy-tailed spectra have many ŝ near 0 and so lose more rank. A matrix is worth factoring only when
``k·(m + n) < m·n``. No module plumbing here; :mod:`slimkit.compress.lowrank.handler` wires it up.
"""

from __future__ import annotations

import torch
from torch import Tensor


def normalize_spectrum(s: Tensor) -> Tensor:
    """Min-max normalise singular values ``s [r]`` to [0, 1] (float64).

    A flat spectrum (max == min) maps to all ones: nothing stands out as a tail, so no threshold
    τ <= 1 drops anything (the reference's 0/0 gives NaN, which no comparison drops either).
    """
    s = s.detach().to(torch.float64)
    lo, hi = s.min(), s.max()
    if float(hi - lo) <= 0.0:
        return torch.ones_like(s)
    return (s - lo) / (hi - lo)


def welore_kept_rank(s_hat_sorted: Tensor, tau: float) -> int:
    """``r - #{ŝ < τ}`` for normalised singular values sorted ascending (``[r]``, float64).

    With ``τ <= 1`` at least one value (the largest, ŝ = 1) is kept.
    """
    dropped = int(torch.searchsorted(s_hat_sorted, torch.tensor([tau], dtype=s_hat_sorted.dtype)).item())
    return s_hat_sorted.numel() - dropped


def uniform_kept_rank(full_rank: int, fraction: float) -> int:
    """Uniform-rank SVD: keep ``round(fraction · r)`` singular values, at least 1."""
    return max(1, min(full_rank, round(fraction * full_rank)))


def factored_params(rows: int, cols: int, rank: int) -> int:
    """Weights of the two factors of a rank-``rank`` ``[rows, cols]`` matrix: ``rank · (rows + cols)``."""
    return rank * (rows + cols)


def saves_params(rows: int, cols: int, rank: int) -> bool:
    """Whether factoring at ``rank`` stores fewer weights than the dense ``rows · cols``."""
    return factored_params(rows, cols, rank) < rows * cols


def breakeven_rank_reduction(rows: int, cols: int) -> float:
    """The rank reduction above which factoring saves weights: ``1 - m·n / ((m + n)·r)``.

    0.5 for a square matrix, less for a rectangular one (0.27 for 4096 x 11008).
    """
    return 1.0 - rows * cols / ((rows + cols) * min(rows, cols))


def truncation_error(s: Tensor, rank: int) -> float:
    """Relative Frobenius error of the best rank-``rank`` approximation: ``‖s[k:]‖ / ‖s‖`` (Eckart–Young)."""
    s = s.detach().to(torch.float64)
    total = float(s.square().sum())
    return (float(s[rank:].square().sum()) / total) ** 0.5 if total > 0 else 0.0


def lowrank_factors(u: Tensor, s: Tensor, vh: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """``(up [m, k], down [k, n])`` with ``up @ down = U_k S_k V_kᵀ``, √S split between the two.

    Args:
        u: ``[m, r]`` left singular vectors; s: ``[r]`` descending; vh: ``[r, n]``; rank: ``k <= r``.
    """
    root = s[:rank].clamp_min(0).sqrt()
    return u[:, :rank] * root[None, :], root[:, None] * vh[:rank]


__all__ = [
    "breakeven_rank_reduction",
    "factored_params",
    "lowrank_factors",
    "normalize_spectrum",
    "saves_params",
    "truncation_error",
    "uniform_kept_rank",
    "welore_kept_rank",
]
