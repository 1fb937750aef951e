"""Sparsity patterns and mask selection: the pure tensor math every pruning criterion shares.

A pruning criterion produces a score per weight (higher = more important); :func:`select_mask`
turns scores into a boolean mask (``True`` = pruned) under one of two patterns:

* **unstructured**: the ``k`` lowest scores of each comparison group are pruned, with
  ``k = int(numel * sparsity)`` for ``group="matrix"`` (magnitude) and ``k = int(cols * sparsity)``
  per output row for ``group="row"`` (Wanda).
* **N:M** (semi-structured): in every run of ``M`` consecutive input columns of each row, the ``N``
  lowest scores are pruned (so the sparsity is exactly ``N/M``; 2:4 is what sparse tensor cores
  accelerate). The input width must be divisible by ``M``.

Ties are broken deterministically: among equal scores the lower flat index is pruned first (a
stable sort), so the same scores always give the same mask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from slimkit.core.errors import ConfigError

UNSTRUCTURED = "unstructured"
_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class NMPattern:
    """``n`` of every ``m`` consecutive input weights are pruned (``"2:4"`` -> n=2, m=4)."""

    n: int
    m: int

    @property
    def sparsity(self) -> float:
        return self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


Pattern = NMPattern | None  # None = unstructured


def parse_pattern(pattern: str) -> Pattern:
    """``"unstructured"`` -> ``None``; ``"N:M"`` -> :class:`NMPattern` (requires ``0 < N < M``).

    Raises:
        ConfigError: the string is neither form, or N/M are out of range.
    """
    if not isinstance(pattern, str):
        raise ConfigError(f"pattern must be 'unstructured' or 'N:M' (e.g. '2:4'), got {pattern!r}")
    if pattern.strip().lower() == UNSTRUCTURED:
        return None
    match = _NM.match(pattern)
    if match is None:
        raise ConfigError(f"pattern={pattern!r} is neither 'unstructured' nor 'N:M' (e.g. '2:4', '4:8')")
    n, m = int(match.group(1)), int(match.group(2))
    if n <= 0 or m <= 0:
        raise ConfigError(f"pattern={pattern!r}: N and M must both be positive")
    if n >= m:
        raise ConfigError(f"pattern={pattern!r}: N must be smaller than M (N of every M weights are pruned)")
    return NMPattern(n, m)


def check_nm_width(width: int, pattern: Pattern, where: str = "") -> None:
    """Raise :class:`ConfigError` when an ``N:M`` pattern cannot tile an input width."""
    if pattern is not None and width % pattern.m != 0:
        at = f" of {where}" if where else ""
        raise ConfigError(
            f"pattern {pattern}: input width {width}{at} is not divisible by M={pattern.m}; "
            f"choose an M that divides it or ignore that layer"
        )


def magnitude_scores(weight: Tensor) -> Tensor:
    """Magnitude pruning's score: ``|W|`` (any shape, returned in fp32)."""
    return weight.detach().float().abs()


def wanda_scores(weight: Tensor, col_sq_norm: Tensor) -> Tensor:
    """Wanda's score (Sun et al., arXiv 2306.11695): ``S_ij = |W_ij| * ||X_j||_2``.

    Args:
        weight: ``[out, in]``.
        col_sq_norm: ``[in]``, ``||X_j||^2`` summed over the calibration tokens (any positive
            rescaling gives the same per-row ranking).

    Returns:
        ``[out, in]`` scores in fp32.
    """
    if col_sq_norm.shape != weight.shape[1:]:
        raise ValueError(f"col_sq_norm has shape {tuple(col_sq_norm.shape)}, expected ({weight.shape[1]},)")
    # one new tensor, scaled in place (the product is the same, bit for bit)
    return weight.detach().float().abs().mul_(col_sq_norm.float().clamp_min(0).sqrt().unsqueeze(0))


def _lowest_k(scores: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` lowest entries along the last dim; ties go to the lower index.

    Same result as taking the first ``k`` of a stable ascending sort, in linear time: everything
    below the ``k``-th smallest value, plus the first few entries equal to it.
    """
    n = scores.shape[-1]
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k >= n:
        return torch.ones_like(scores, dtype=torch.bool)
    kth = scores.kthvalue(k, dim=-1, keepdim=True).values
    at_most = scores <= kth
    if bool((at_most.sum(-1, dtype=torch.int32) == k).all()):
        return at_most  # no tie straddles the k-th value (the common case): nothing to break
    below = scores < kth
    tied = scores == kth
    needed = k - below.sum(-1, keepdim=True, dtype=torch.int32)
    return below | (tied & (tied.cumsum(-1, dtype=torch.int32) <= needed))


def nm_mask(scores: Tensor, pattern: NMPattern) -> Tensor:
    """``N:M`` mask of ``[rows, cols]`` scores: the ``n`` lowest of each ``m`` consecutive columns."""
    rows, cols = scores.shape
    check_nm_width(cols, pattern)
    groups = scores.reshape(rows, cols // pattern.m, pattern.m)
    return _lowest_k(groups, pattern.n).reshape(rows, cols)


def select_mask(
    scores: Tensor,
    sparsity: float,
    pattern: Pattern = None,
    group: Literal["matrix", "row"] = "matrix",
) -> Tensor:
    """The pruning mask (``True`` = pruned) for ``[rows, cols]`` scores.

    Args:
        scores: importance of each weight, higher = keep.
        sparsity: fraction in [0, 1) pruned in each comparison group (ignored by ``N:M``, whose
            sparsity is ``N/M``).
        pattern: ``None`` (unstructured) or an :class:`NMPattern` along the input (column) dim.
        group: unstructured comparison group: the whole ``"matrix"`` (``int(numel*s)`` pruned) or
            each output ``"row"`` (``int(cols*s)`` pruned per row).

    Returns:
        A bool tensor shaped like ``scores``.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be 2-D [out, in], got shape {tuple(scores.shape)}")
    if pattern is not None:
        return nm_mask(scores, pattern)
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity={sparsity!r} is outside the allowed range [0, 1)")
    if group == "row":
        return _lowest_k(scores, int(scores.shape[1] * sparsity))
    if group == "matrix":
        return _lowest_k(scores.reshape(-1), int(scores.numel() * sparsity)).reshape(scores.shape)
    raise ValueError(f"group must be 'matrix' or 'row', got {group!r}")
