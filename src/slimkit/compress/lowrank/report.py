"""What a low-rank compression did: per-matrix kept rank, reductions, τ, and the uniform baseline.

:class:`LowRankReport` is a :class:`~slimkit.compress.report.CompressionReport`, so everything that
reads reports (the study, ``slimkit.json``) keeps working: its ``overall_sparsity`` is the parameter
reduction over the targeted matrices and each matrix's ``sparsity`` is its own parameter reduction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.table import Table

from slimkit.compress.report import CompressionReport, MatrixReport, _block_of


@dataclass
class LowRankMatrixReport(MatrixReport):
    """One targeted matrix (``sparsity`` = its parameter reduction; 0 for a dense N-LRC).

    Attributes (besides :class:`MatrixReport`'s):
        full_rank: ``min(out, in)``.
        kept_rank: the rank the rule assigned (a dense N-LRC still applies its full rank).
        factored: whether it became a ``LowRankLinear`` (an LRC).
        params_dense / params_stored: weights before and after (bias excluded).
        spectral_error: relative Frobenius error ``‖W - W_k‖ / ‖W‖`` of what is stored (0 if dense).
    """

    full_rank: int = 0
    kept_rank: int = 0
    factored: bool = False
    params_dense: int = 0
    params_stored: int = 0
    spectral_error: float = 0.0


@dataclass
class LowRankReport(CompressionReport):
    """The outcome of a WeLore or uniform-SVD ``compress_`` call.

    Attributes (besides :class:`CompressionReport`'s):
        target_kind: ``"params"`` or ``"rank"``; target: the requested reduction.
        parameter: the searched scalar — τ for WeLore, the rank reduction ``1 - f`` for uniform SVD.
        param_reduction: ``1 - Σ stored / Σ m·n`` over the targeted matrices.
        rank_reduction: ``1 - Σ k / Σ r`` with the rule's ranks (WeLore's measure).
        effective_rank_reduction: the same with dense (N-LRC) matrices at full rank.
        model_param_reduction: weights removed / all parameters of the model (embeddings included).
        model_params_before / model_params_after: parameter counts of the whole model.
        lrc / nlrc: how many targeted matrices were factored / left dense.
        mean_spectral_error: mean per-matrix relative Frobenius error.
        decomposition_time_s: seconds spent in SVDs (0 when all came from the cache).
        svd_computed: SVDs computed in this call (the rest were cache hits).
        baseline: for WeLore, uniform-rank SVD at the same parameter reduction (its rank fraction,
            reductions and mean spectral error), computed from the cached spectra; None otherwise.
    """

    target_kind: str = "params"
    target: float = 0.0
    parameter: float = 0.0
    param_reduction: float = 0.0
    rank_reduction: float = 0.0
    effective_rank_reduction: float = 0.0
    model_param_reduction: float = 0.0
    model_params_before: int = 0
    model_params_after: int = 0
    lrc: int = 0
    nlrc: int = 0
    mean_spectral_error: float = 0.0
    decomposition_time_s: float = 0.0
    svd_computed: int = 0
    baseline: dict[str, Any] | None = field(default=None)

    matrix_report: ClassVar[type[MatrixReport]] = LowRankMatrixReport

    @property
    def kept_ranks(self) -> dict[str, int]:
        """Matrix name -> the rank it applies (full rank for a dense N-LRC)."""
        return {m.name: m.kept_rank if m.factored else m.full_rank for m in self.matrices}  # type: ignore[attr-defined]

    def summary(self) -> str:
        name = "tau" if self.method == "welore" else "rank reduction x"
        lines = [
            f"{self.method}: target {self.target_kind} reduction {self.target:.3f} -> params {self.param_reduction:.4f}, "
            f"rank {self.rank_reduction:.4f} (effective {self.effective_rank_reduction:.4f}), {name}={self.parameter:.5f}",
            f"  {self.lrc} factored (LRC), {self.nlrc} dense (N-LRC); whole model {self.model_params_before:,} -> "
            f"{self.model_params_after:,} params ({self.model_param_reduction:.2%} fewer); "
            f"mean spectral error {self.mean_spectral_error:.4f}",
            f"  {self.total_time_s:.2f} s ({self.svd_computed} SVDs, {self.decomposition_time_s:.2f} s)",
        ]
        if self.baseline:
            b = self.baseline
            lines.append(
                f"  uniform SVD at the same budget: rank fraction {b['rank_fraction']:.4f}, params "
                f"{b['param_reduction']:.4f}, mean spectral error {b['mean_spectral_error']:.4f}"
            )
        return "\n".join(lines)

    def summary_table(self) -> Table:
        """One row per decoder block (factored matrices, kept / full rank, parameter reduction), then totals."""
        table = Table(title=f"{self.method}: {self.target_kind} reduction {self.target:.3f}")
        for column in ("block", "LRC / all", "kept rank / full", "param reduction", "spectral error"):
            table.add_column(column, justify="right")
        per_block: dict[int, list[Any]] = {}
        for m in self.matrices:
            per_block.setdefault(_block_of(m.name), []).append(m)
        for index in sorted(per_block):
            mats = per_block[index]
            dense = sum(m.params_dense for m in mats)
            stored = sum(m.params_stored for m in mats)
            table.add_row(
                str(index),
                f"{sum(m.factored for m in mats)} / {len(mats)}",
                f"{sum(m.kept_rank for m in mats)} / {sum(m.full_rank for m in mats)}",
                f"{1 - stored / dense:.4f}",
                f"{sum(m.spectral_error for m in mats) / len(mats):.4f}",
            )
        table.add_section()
        table.add_row(
            "all",
            f"{self.lrc} / {self.lrc + self.nlrc}",
            f"rank red. {self.rank_reduction:.4f}",
            f"{self.param_reduction:.4f}",
            f"{self.mean_spectral_error:.4f}",
        )
        table.caption = self.summary().split("\n", 1)[1]
        return table


__all__ = ["LowRankMatrixReport", "LowRankReport"]
