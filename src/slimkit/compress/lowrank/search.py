"""Rank assignment and the bisection that makes it hit a target (pure: spectra in, ranks out).

The reference ships hand-tuned τ tables for LLaMA-2 7B and 13B only. Here the rule's one scalar —
WeLore's threshold τ, or the uniform baseline's rank reduction ``x = 1 - f`` — is found by bisection
on [0, 1]. Both measures (parameter and rank reduction) are non-decreasing step functions of that
scalar, so bisection brackets the step where the target is crossed; the closer side wins, and when
neither side lies within the tolerance the step is reported (a small model has few matrices, and a
matrix turning into factors changes the parameter count in one jump).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from slimkit.compress.lowrank.spectral import (
    factored_params,
    normalize_spectrum,
    saves_params,
    truncation_error,
    uniform_kept_rank,
    welore_kept_rank,
)

BISECTION_STEPS = 60  # 2^-60: far below the gap between two distinct normalised singular values


@dataclass(frozen=True)
class MatrixSpectrum:
    """One targeted matrix: name, shape ``[rows, cols]`` and singular values (descending, float64)."""

    name: str
    rows: int
    cols: int
    s: Tensor
    s_hat_sorted: Tensor  # normalised, ascending (for counting values below τ)

    @classmethod
    def of(cls, name: str, rows: int, cols: int, s: Tensor) -> MatrixSpectrum:
        return cls(name, rows, cols, s, torch.sort(normalize_spectrum(s)).values)

    @property
    def full_rank(self) -> int:
        return min(self.rows, self.cols)

    @property
    def dense_params(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class Assignment:
    """What the rule gives one matrix: its rank ``k`` and whether it is factored (an LRC)."""

    rank: int
    factored: bool


@dataclass(frozen=True)
class Measures:
    """Reductions of an assignment over the targeted matrices (fractions in [0, 1]).

    Attributes:
        params: ``1 - Σ stored / Σ m·n`` (factored: ``k·(m+n)``, dense: ``m·n``).
        rank: ``1 - Σ k / Σ r`` with the rule's ``k`` (WeLore's measure; dense matrices counted at k).
        effective_rank: ``1 - Σ k_eff / Σ r`` where a dense (N-LRC) matrix keeps ``k_eff = r``.
        params_stored / params_dense: the two sums.
    """

    params: float
    rank: float
    effective_rank: float
    params_stored: int
    params_dense: int

    def of_kind(self, kind: str) -> float:
        return self.params if kind == "params" else self.rank


def welore_assign(spectra: Sequence[MatrixSpectrum], tau: float, min_ratio: float) -> list[Assignment]:
    """WeLore's rule at threshold ``tau``: ``k = r - #{ŝ < τ}``; factored when the rank reduction
    ``(r - k) / r`` exceeds ``min_ratio`` and the factors are smaller than the matrix."""
    out = []
    for m in spectra:
        k = welore_kept_rank(m.s_hat_sorted, tau)
        reduction = (m.full_rank - k) / m.full_rank
        out.append(Assignment(k, reduction > min_ratio and saves_params(m.rows, m.cols, k)))
    return out


def uniform_assign(spectra: Sequence[MatrixSpectrum], reduction: float) -> list[Assignment]:
    """Uniform-rank SVD: ``k = round((1 - reduction) · r)``; factored when that stores fewer weights."""
    out = []
    for m in spectra:
        k = uniform_kept_rank(m.full_rank, 1.0 - reduction)
        out.append(Assignment(k, saves_params(m.rows, m.cols, k)))
    return out


def measure(spectra: Sequence[MatrixSpectrum], assignment: Sequence[Assignment]) -> Measures:
    """The reductions ``assignment`` achieves on ``spectra``."""
    stored = dense = kept = kept_eff = full = 0
    for m, a in zip(spectra, assignment, strict=True):
        dense += m.dense_params
        stored += factored_params(m.rows, m.cols, a.rank) if a.factored else m.dense_params
        full += m.full_rank
        kept += a.rank
        kept_eff += a.rank if a.factored else m.full_rank
    return Measures(
        params=1.0 - stored / dense,
        rank=1.0 - kept / full,
        effective_rank=1.0 - kept_eff / full,
        params_stored=stored,
        params_dense=dense,
    )


def mean_spectral_error(spectra: Sequence[MatrixSpectrum], assignment: Sequence[Assignment]) -> float:
    """Mean over matrices of the relative Frobenius error ``‖W - W_k‖ / ‖W‖`` (0 for dense ones).

    Data-free: Eckart–Young gives it from the singular values alone.
    """
    errors = [
        truncation_error(m.s, a.rank) if a.factored else 0.0 for m, a in zip(spectra, assignment, strict=True)
    ]
    return sum(errors) / len(errors) if errors else 0.0


@dataclass(frozen=True)
class Bracket:
    """The bisection's outcome: the chosen point and the two sides of the step around the target."""

    x: float
    value: float
    below: tuple[float, float]  # (x, value) with value < target, or the lower end
    above: tuple[float, float]  # (x, value) with value >= target, or the upper end


def bisect_step(fn: Callable[[float], float], target: float, lo: float = 0.0, hi: float = 1.0) -> Bracket:
    """Bisect a non-decreasing step function ``fn`` on [lo, hi] for ``target``; pick the closer side."""
    f_lo, f_hi = fn(lo), fn(hi)
    if f_lo >= target:
        return Bracket(lo, f_lo, (lo, f_lo), (lo, f_lo))
    if f_hi < target:
        return Bracket(hi, f_hi, (hi, f_hi), (hi, f_hi))
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        f_mid = fn(mid)
        if f_mid >= target:
            hi, f_hi = mid, f_mid
        else:
            lo, f_lo = mid, f_mid
        if hi - lo < 1e-15:
            break
    x, value = (hi, f_hi) if f_hi - target <= target - f_lo else (lo, f_lo)
    return Bracket(x, value, (lo, f_lo), (hi, f_hi))


__all__ = [
    "Assignment",
    "Bracket",
    "MatrixSpectrum",
    "Measures",
    "bisect_step",
    "mean_spectral_error",
    "measure",
    "uniform_assign",
    "welore_assign",
]
