"""Post-training pruning: magnitude, Wanda, SparseGPT; unstructured and N:M; OWL allocation.

    from slimkit.compress import compress_
    from slimkit.compress.prune import WandaConfig, OWLConfig

    compress_(model, WandaConfig(sparsity=0.7, allocation=OWLConfig(m=5, lam=0.08)), calib)
    compress_(model, SparseGPTConfig(pattern="2:4"), calib)

Importing this package registers every method with ``compress_`` (short names ``magnitude``,
``wanda``, ``sparsegpt``).
"""

from __future__ import annotations

from slimkit.compress.prune.base import (
    PRUNERS,
    PruneConfig,
    Pruner,
    prune_model_,
    register_pruner,
    select_prune_targets,
)
from slimkit.compress.prune.magnitude import MagnitudeConfig, MagnitudePruner
from slimkit.compress.prune.owl import OWLConfig, outlier_ratio, owl_block_sparsities, owl_outlier_ratios
from slimkit.compress.prune.patterns import (
    NMPattern,
    magnitude_scores,
    nm_mask,
    parse_pattern,
    select_mask,
    wanda_scores,
)
from slimkit.compress.prune.sparsegpt import SparseGPTConfig, SparseGPTPruner, sparsegpt_prune_
from slimkit.compress.prune.wanda import WandaConfig, WandaPruner

__all__ = [
    "PRUNERS",
    "MagnitudeConfig",
    "MagnitudePruner",
    "NMPattern",
    "OWLConfig",
    "PruneConfig",
    "Pruner",
    "SparseGPTConfig",
    "SparseGPTPruner",
    "WandaConfig",
    "WandaPruner",
    "magnitude_scores",
    "nm_mask",
    "outlier_ratio",
    "owl_block_sparsities",
    "owl_outlier_ratios",
    "parse_pattern",
    "prune_model_",
    "register_pruner",
    "select_mask",
    "select_prune_targets",
    "sparsegpt_prune_",
    "wanda_scores",
]
