"""Magnitude pruning: zero the smallest ``|W|`` of each weight matrix (data-free).

The baseline of the Wanda and SparseGPT papers: score ``|W_ij|``, compared over the **whole
matrix** (a per-matrix threshold, as the reference code does, not a global one), so exactly
``int(numel * sparsity)`` weights of each matrix are zeroed (ties: lower flat index first). With an
``N:M`` pattern the ``N`` smallest of every ``M`` consecutive input weights of each row are zeroed.
Needs calibration data only when an OWL allocation is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from slimkit.compress.prune.base import PruneConfig, Pruner, apply_mask_, register_pruner
from slimkit.compress.prune.patterns import magnitude_scores, select_mask
from slimkit.models.adapters import linear_weight


@dataclass(frozen=True, kw_only=True)
class MagnitudeConfig(PruneConfig):
    """Magnitude pruning: ``score = |W|``, a per-matrix threshold. Options: see :class:`PruneConfig`."""


@register_pruner(MagnitudeConfig, "magnitude")
class MagnitudePruner(Pruner):
    needs_calibration = False

    def prune_(self, name: str, module: nn.Module, sparsity: float) -> None:
        scores = magnitude_scores(linear_weight(module))
        apply_mask_(module, select_mask(scores, sparsity, self.pattern, group="matrix"))
