"""OWL: outlier-weighed layer-wise sparsity, an *allocation* any pruning config can take.

Yin et al., "Outlier Weighed Layerwise Sparsity (OWL): A Missing Secret Sauce for Pruning LLMs to
High Sparsity" (arXiv 2310.05175). Blocks with more activation outliers are pruned less:

1. Pass 1 over the dense model (the sequential runner, nothing pruned): for every target linear of
   block ``l`` the Wanda score ``A = |W| * ||X_j||_2``; all of block ``l``'s scores together give
   the outlier ratio ``D_l = 100 * mean(A > m * mean(A))``.
2. ``r = (D - min D) / (max D - min D) * 2*lam`` and ``sparsity_l = 1 - (r_l - mean(r) + (1 - S))``,
   i.e. ``sparsity_l = S - r_l + mean(r)``: the mean over blocks is exactly ``S`` and every block lies
   within ``[S - 2*lam, S + 2*lam]`` (within ``[S - lam, S + lam]`` when the ratios are spread evenly).
   When every block has the same outlier ratio the allocation is uniform.
3. Pass 2 prunes with the chosen criterion, block ``l``'s linears all at ``sparsity_l``.

Unlike the reference (which clamps), a block pushed outside ``[0, 1)`` is an error that names the
block and the largest ``lam`` that fits. The reference's N:M variant (shifting N per block) is not
implemented; OWL with an ``N:M`` pattern is refused.

Defaults: ``m=5.0``, ``lam=0.08`` (the OWL README's settings at 70% sparsity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimkit.compress.api import ALLOCATIONS
from slimkit.compress.calibrate import group_targets_by_block, run_sequential_
from slimkit.compress.prune.patterns import wanda_scores
from slimkit.compress.stats import ColumnSqNorm, PerInput
from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError
from slimkit.models.adapters import get_adapter, linear_weight


@dataclass(frozen=True, kw_only=True)
class OWLConfig(Config):
    """Outlier-weighed layer-wise sparsity (arXiv 2310.05175).

    Attributes:
        m (float): a score is an outlier when above ``m`` times its block's mean score. Default: 5.0.
        lam (float): half-width of the sparsity range around the target: block sparsities span
            ``2*lam`` at most. Default: 0.08.
    """

    m: float = 5.0
    lam: float = 0.08

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("OWLConfig.m", self.m, 0.0, None, lo_inclusive=False)
        check_range("OWLConfig.lam", self.lam, 0.0, 0.5, hi_inclusive=False)


ALLOCATIONS.register(OWLConfig, "owl")(OWLConfig)


def outlier_ratio(scores: Sequence[Tensor], m: float) -> float:
    """``100 * mean(A > m * mean(A))`` over the concatenation of ``scores`` (no copy is made)."""
    total = sum(s.numel() for s in scores)
    if total == 0:
        raise ValueError("outlier_ratio needs at least one score")
    mean = sum(float(s.sum(dtype=torch.float64)) for s in scores) / total  # fp64 sum, no fp64 copy
    count = sum(int((s > m * mean).sum()) for s in scores)
    return 100.0 * count / total


def owl_block_sparsities(
    outlier_ratios: Sequence[float], sparsity: float, lam: float, *, block_names: Sequence[str] | None = None
) -> list[float]:
    """Per-block sparsities from outlier ratios: ``s_l = S - r_l + mean(r)``, ``r = norm(D) * 2*lam``.

    Args:
        outlier_ratios: ``D_l`` per block (percent).
        sparsity: the target mean sparsity ``S``.
        lam: the OWL ``lambda``.
        block_names: labels for error messages (default: ``block <index>``).

    Raises:
        ConfigError: some block would leave ``[0, 1)``; names it and the largest ``lam`` that fits.
    """
    d = torch.tensor(list(outlier_ratios), dtype=torch.float64)
    if d.numel() == 0:
        return []
    spread = float(d.max() - d.min())
    u = (d - d.min()) / spread if spread > 0 else torch.zeros_like(d)
    r = u * 2 * lam
    result = (sparsity - r + r.mean()).tolist()
    names = list(block_names) if block_names is not None else [f"block {i}" for i in range(len(result))]
    for i, s in enumerate(result):
        if not 0.0 <= s < 1.0:
            raise ConfigError(
                f"OWL: {names[i]} would get sparsity {s:.4f}, outside [0, 1) "
                f"(sparsity={sparsity}, lam={lam}); use lam < {_largest_fitting_lam(u, sparsity):.4g}"
            )
    return result


def _largest_fitting_lam(u: Tensor, sparsity: float) -> float:
    """The supremum of ``lam`` keeping every ``S + 2*lam*(mean(u) - u_l)`` inside ``[0, 1)``."""
    offsets = u.mean() - u  # s_l = S + 2*lam*offset_l
    bounds = [float("inf")]
    for off in offsets.tolist():
        if off > 0:
            bounds.append((1.0 - sparsity) / (2 * off))
        elif off < 0:
            bounds.append(sparsity / (2 * -off))
    return min(bounds)


class _OutlierScan:
    """Pass 1 of OWL: collect ``||X_j||^2`` of every target on the dense model (nothing changes)."""

    modifies_weights = False

    def __init__(self) -> None:
        self._running: PerInput[ColumnSqNorm] = PerInput(ColumnSqNorm)
        self.col_sq_norm: dict[str, Tensor] = {}

    def observe(self, name: str, inputs: Tensor) -> None:
        self._running.observe(name, inputs)

    def compress(self, name: str, module: nn.Module) -> None:
        value = self._running[name].value
        assert value is not None  # observed before compress, by the runner's contract
        self.col_sq_norm[name] = value.cpu()  # linears sharing an input share this tensor (read-only)

    def reset(self) -> None:
        self._running.clear()


def owl_outlier_ratios(
    model: nn.Module,
    calib: Tensor,
    targets: Mapping[str, nn.Module],
    config: OWLConfig,
    *,
    device: torch.device | str | None = None,
    chunk_size: int = 8,
    progress: bool = True,
) -> dict[int, float]:
    """OWL pass 1: ``{block index: D_l}`` for every block holding targets (the model is not changed)."""
    adapter = get_adapter(model)
    scan = _OutlierScan()
    run_sequential_(
        model,
        scan,
        calib,
        targets,
        device=device,
        chunk_size=chunk_size,
        progress=progress,
        description="OWL outlier scan",
    )
    ratios: dict[int, float] = {}
    for index, block_targets in sorted(group_targets_by_block(targets, adapter).items()):
        scores = []
        for name, module in block_targets.items():
            weight = linear_weight(module).detach()
            scores.append(wanda_scores(weight, scan.col_sq_norm[name].to(weight.device)))
        ratios[index] = outlier_ratio(scores, config.m)
    return ratios
