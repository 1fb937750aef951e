"""Low-rank compression: WeLore (non-uniform ranks from singular-value heavy tails) and uniform SVD.

    from slimkit.compress import compress_
    from slimkit.compress.lowrank import WeLoreConfig, SVDUniformConfig

    report = compress_(model, WeLoreConfig(target_params=0.5))       # τ found by bisection
    print(report.summary())                                          # kept ranks, LRC count, baseline
    compress_(other, SVDUniformConfig(target_params=0.5))            # the baseline itself

Importing this package registers both with ``compress_`` (short names ``welore``, ``svd-uniform``).
LRC-only finetuning: :mod:`slimkit.compress.lowrank.finetune`. See docs/welore.md.
"""

from __future__ import annotations

from slimkit.compress.lowrank.config import LowRankConfig, SVDUniformConfig, WeLoreConfig
from slimkit.compress.lowrank.handler import (
    UnreachableTargetError,
    select_lowrank_targets,
    svd_uniform_compress_,
    uniform_baseline,
    welore_compress_,
)
from slimkit.compress.lowrank.report import LowRankMatrixReport, LowRankReport
from slimkit.compress.lowrank.search import (
    MatrixSpectrum,
    bisect_step,
    measure,
    uniform_assign,
    welore_assign,
)
from slimkit.compress.lowrank.spectral import (
    breakeven_rank_reduction,
    factored_params,
    lowrank_factors,
    normalize_spectrum,
    saves_params,
    truncation_error,
    uniform_kept_rank,
    welore_kept_rank,
)
from slimkit.compress.lowrank.svd import SVD_CACHE, NonFiniteWeightError, SVDCache

__all__ = [
    "SVD_CACHE",
    "LowRankConfig",
    "LowRankMatrixReport",
    "LowRankReport",
    "MatrixSpectrum",
    "NonFiniteWeightError",
    "SVDCache",
    "SVDUniformConfig",
    "UnreachableTargetError",
    "WeLoreConfig",
    "bisect_step",
    "breakeven_rank_reduction",
    "factored_params",
    "lowrank_factors",
    "measure",
    "normalize_spectrum",
    "saves_params",
    "select_lowrank_targets",
    "svd_uniform_compress_",
    "truncation_error",
    "uniform_assign",
    "uniform_baseline",
    "uniform_kept_rank",
    "welore_assign",
    "welore_compress_",
    "welore_kept_rank",
]
