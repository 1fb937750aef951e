"""The ``compress_`` handlers of WeLore and uniform-rank SVD: decompose, search, factor, report.

1. select the targets (every linear in the decoder blocks unless ``targets`` / ``ignore`` say
   otherwise; embeddings and ``lm_head`` never);
2. singular values of each, one matrix at a time on the compute device (content-cached,
   :mod:`slimkit.compress.lowrank.svd`);
3. bisect the rule's scalar (τ, or the uniform rank reduction) to hit the target within tolerance;
4. replace every factored matrix by a :class:`~slimkit.nn.lowrank.LowRankLinear` (the factors come
   from the same cache), leave the rest untouched;
5. report per-matrix kept ranks, the reductions, and for WeLore the uniform baseline at the same
   parameter budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from slimkit.compress.api import COMPRESSORS, method_name
from slimkit.compress.lowrank.config import LowRankConfig, SVDUniformConfig, WeLoreConfig
from slimkit.compress.lowrank.report import LowRankMatrixReport, LowRankReport
from slimkit.compress.lowrank.search import (
    Assignment,
    Bracket,
    MatrixSpectrum,
    bisect_step,
    mean_spectral_error,
    measure,
    uniform_assign,
    welore_assign,
)
from slimkit.compress.lowrank.spectral import truncation_error
from slimkit.compress.lowrank.svd import SVD_CACHE, SVD_DTYPES, check_finite
from slimkit.compress.report import _block_of
from slimkit.core.errors import ConfigError, TargetError
from slimkit.core.progress import track
from slimkit.core.targeting import select_modules
from slimkit.models.adapters import block_linear_filter, get_adapter, linear_weight
from slimkit.nn.lowrank import LowRankLinear, replace_module_

Rule = Callable[[Sequence[MatrixSpectrum], float], list[Assignment]]


class UnreachableTargetError(ConfigError):
    """The requested reduction cannot be reached (within tolerance) by the rule on these matrices."""


def select_lowrank_targets(model: nn.Module, config: LowRankConfig) -> dict[str, nn.Module]:
    """The linears inside the decoder blocks that ``config.targets`` / ``config.ignore`` select."""
    patterns = config.targets or ("re:.",)
    selected = select_modules(model, patterns, config.ignore, candidates=block_linear_filter(model))
    if not selected:
        raise TargetError(
            f"no linear layer left to factor (targets={list(config.targets)}, ignore={list(config.ignore)})"
        )
    return selected


def collect_spectra(
    targets: dict[str, nn.Module], config: LowRankConfig, device: torch.device | None, progress: bool
) -> list[MatrixSpectrum]:
    """Singular values of every target (NaN/Inf anywhere fails before any SVD)."""
    for name, module in targets.items():
        check_finite(name, linear_weight(module))
    dtype = SVD_DTYPES[config.svd_dtype]
    items = track(targets.items(), "svd") if progress else targets.items()
    spectra = []
    for name, module in items:
        weight = linear_weight(module)
        s = SVD_CACHE.spectrum(name, weight, dtype=dtype, device=device)
        spectra.append(MatrixSpectrum.of(name, int(weight.shape[0]), int(weight.shape[1]), s))
    return spectra


def welore_rule(config: WeLoreConfig) -> Rule:
    return lambda spectra, tau: welore_assign(spectra, tau, config.min_ratio)


def uniform_rule(config: SVDUniformConfig) -> Rule:
    return uniform_assign


def search(spectra: Sequence[MatrixSpectrum], rule: Rule, kind: str, target: float) -> Bracket:
    """Bisect the rule's scalar on [0, 1] so that the ``kind`` reduction is closest to ``target``."""
    return bisect_step(lambda x: measure(spectra, rule(spectra, x)).of_kind(kind), target)


def _check_reached(
    bracket: Bracket, config: LowRankConfig, spectra: Sequence[MatrixSpectrum], method: str
) -> None:
    target, kind = config.target, config.target_kind
    if abs(bracket.value - target) <= config.tolerance:
        return
    what = f"{method} cannot reach {kind} reduction {target:g}"
    if bracket.above[1] < target:  # even the strongest setting stays below
        hint = "lower the target"
        if isinstance(config, WeLoreConfig) and config.min_ratio > 0:
            best = measure(spectra, welore_assign(spectra, 1.0, 0.0)).of_kind(kind)
            if best >= target - config.tolerance:
                hint = f"lower min_ratio (with min_ratio=0 up to {best:.4f} is reachable) or the target"
            else:
                hint = f"lower the target (at most {best:.4f} even with min_ratio=0)"
        raise UnreachableTargetError(
            f"{what}: at most {bracket.value:.4f} on these {len(spectra)} matrices"
            + (f" with min_ratio={config.min_ratio}" if isinstance(config, WeLoreConfig) else "")
            + f"; {hint}"
        )
    raise UnreachableTargetError(
        f"{what} within tolerance {config.tolerance:g}: the nearest reachable values are "
        f"{bracket.below[1]:.4f} and {bracket.above[1]:.4f} (matrices switch to factors in steps that large "
        f"on these {len(spectra)} matrices); pick one of them or raise tolerance"
        + (", or lower min_ratio" if isinstance(config, WeLoreConfig) else "")
    )


@torch.no_grad()
def apply_assignment_(
    model: nn.Module,
    targets: dict[str, nn.Module],
    spectra: Sequence[MatrixSpectrum],
    assignment: Sequence[Assignment],
    config: LowRankConfig,
    device: torch.device | None,
) -> list[LowRankMatrixReport]:
    """Swap every factored target for a ``LowRankLinear``; return the per-matrix records."""
    dtype = SVD_DTYPES[config.svd_dtype]
    records = []
    for spec, a in zip(spectra, assignment, strict=True):
        module = targets[spec.name]
        weight = linear_weight(module)
        start = time.perf_counter()
        stored = spec.dense_params
        if a.factored:
            u, s, vh = SVD_CACHE.factors(spec.name, weight, dtype=dtype, device=device)
            k = a.rank
            layer = LowRankLinear.from_factors(
                u[:, :k], s[:k], vh[:k], bias=getattr(module, "bias", None), dtype=weight.dtype
            ).to(weight.device)
            replace_module_(model, spec.name, layer)
            stored = layer.factor_params
        records.append(
            LowRankMatrixReport(
                name=spec.name,
                shape=(spec.rows, spec.cols),
                sparsity=1.0 - stored / spec.dense_params,
                target_sparsity=config.target,
                time_s=time.perf_counter() - start,
                full_rank=spec.full_rank,
                kept_rank=a.rank,
                factored=a.factored,
                params_dense=spec.dense_params,
                params_stored=stored,
                spectral_error=truncation_error(spec.s, a.rank) if a.factored else 0.0,
            )
        )
    return records


def uniform_baseline(spectra: Sequence[MatrixSpectrum], param_reduction: float) -> dict[str, float]:
    """Uniform-rank SVD at (the nearest reachable point to) ``param_reduction``: its numbers."""
    bracket = search(spectra, uniform_assign, "params", param_reduction)
    assignment = uniform_assign(spectra, bracket.x)
    m = measure(spectra, assignment)
    return {
        "rank_fraction": 1.0 - bracket.x,
        "param_reduction": m.params,
        "rank_reduction": m.rank,
        "effective_rank_reduction": m.effective_rank,
        "mean_spectral_error": mean_spectral_error(spectra, assignment),
        "lrc": sum(a.factored for a in assignment),
    }


def _compress(
    model: nn.Module,
    config: LowRankConfig,
    rule: Rule,
    *,
    device: torch.device | None,
    progress: bool,
) -> LowRankReport:
    method = method_name(config)
    targets = select_lowrank_targets(model, config)
    model_before = sum(p.numel() for p in model.parameters())
    computed_before = SVD_CACHE.decompositions
    t0 = time.perf_counter()
    spectra = collect_spectra(targets, config, device, progress)
    decomposition_time = time.perf_counter() - t0

    bracket = search(spectra, rule, config.target_kind, config.target)
    _check_reached(bracket, config, spectra, method)
    assignment = rule(spectra, bracket.x)
    measures = measure(spectra, assignment)
    computed_in_search = SVD_CACHE.decompositions
    t1 = time.perf_counter()
    records = apply_assignment_(model, targets, spectra, assignment, config, device)
    if SVD_CACHE.decompositions > computed_in_search:  # factors evicted from the cache were recomputed
        decomposition_time += time.perf_counter() - t1

    n_blocks = len(get_adapter(model).blocks(model))
    dense_by_block, stored_by_block = [0] * n_blocks, [0] * n_blocks
    for r in records:
        dense_by_block[_block_of(r.name)] += r.params_dense
        stored_by_block[_block_of(r.name)] += r.params_stored
    model_after = sum(p.numel() for p in model.parameters())
    lrc = sum(a.factored for a in assignment)
    return LowRankReport(
        method=method,
        config=config.to_dict(),
        matrices=list(records),
        overall_sparsity=measures.params,
        block_sparsity=[
            1 - s / d if d else None for s, d in zip(stored_by_block, dense_by_block, strict=True)
        ],
        target_kind=config.target_kind,
        target=config.target,
        parameter=bracket.x,
        param_reduction=measures.params,
        rank_reduction=measures.rank,
        effective_rank_reduction=measures.effective_rank,
        model_param_reduction=1.0 - model_after / model_before,
        model_params_before=model_before,
        model_params_after=model_after,
        lrc=lrc,
        nlrc=len(assignment) - lrc,
        mean_spectral_error=mean_spectral_error(spectra, assignment),
        decomposition_time_s=decomposition_time,
        svd_computed=SVD_CACHE.decompositions - computed_before,
        baseline=uniform_baseline(spectra, measures.params) if isinstance(config, WeLoreConfig) else None,
    )


@COMPRESSORS.register(WeLoreConfig, "welore")
def welore_compress_(
    model: nn.Module,
    config: WeLoreConfig,
    calib: torch.Tensor | None = None,
    *,
    device: torch.device | None = None,
    progress: bool = True,
    chunk_size: int = 8,
) -> LowRankReport:
    """WeLore (the ``compress_`` handler of :class:`WeLoreConfig`); ``calib`` and ``chunk_size`` unused."""
    return _compress(model, config, welore_rule(config), device=device, progress=progress)


@COMPRESSORS.register(SVDUniformConfig, "svd-uniform")
def svd_uniform_compress_(
    model: nn.Module,
    config: SVDUniformConfig,
    calib: torch.Tensor | None = None,
    *,
    device: torch.device | None = None,
    progress: bool = True,
    chunk_size: int = 8,
) -> LowRankReport:
    """Uniform-rank SVD (the ``compress_`` handler of :class:`SVDUniformConfig`); data-free."""
    return _compress(model, config, uniform_rule(config), device=device, progress=progress)


__all__ = [
    "UnreachableTargetError",
    "apply_assignment_",
    "collect_spectra",
    "search",
    "select_lowrank_targets",
    "svd_uniform_compress_",
    "uniform_baseline",
    "welore_compress_",
]
