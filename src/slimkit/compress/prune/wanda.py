"""Wanda: pruning by weights and activations.

Sun, Liu, Bair, Kolter, "A Simple and Effective Pruning Approach for Large Language Models"
(arXiv 2306.11695). The score of weight ``W_ij`` (``W: [out, in]``) is

    S_ij = |W_ij| * ||X_j||_2,    ||X_j||_2^2 = sum over calibration tokens of x_j^2,

compared **within each output row** ``i``: the ``int(in * sparsity)`` lowest scores of every row
are zeroed (with ``N:M``, the ``N`` lowest of every ``M`` consecutive inputs). No weight update.
Statistics come from the dense block (every linear of a block is scored on the same dense inputs)
and are accumulated in fp32 (:class:`slimkit.compress.stats.ColumnSqNorm`, one per distinct input).

``true_sequential=True`` (not the paper's; off by default) instead scores a block's linears group by
group, ``[q,k,v] -> [o] -> [gate,up] -> [down]``, each on the inputs the already-pruned groups give,
as SparseGPT's and GPTQ's option of that name does. The runner's output replay serves every linear
already final, so each linear runs once per chunk (pruned) and only attention repeats in the later
passes, where the paper's rule runs a dense statistics pass and a pruned propagation pass. On
SmolLM2-135M it was neither fast enough nor as accurate to replace the paper's rule (docs/real_models.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from slimkit.compress.calibrate import true_sequential_groups
from slimkit.compress.prune.base import PruneConfig, Pruner, apply_mask_, register_pruner
from slimkit.compress.prune.patterns import select_mask, wanda_scores
from slimkit.compress.stats import ColumnSqNorm, PerInput
from slimkit.models.adapters import ArchitectureAdapter, linear_weight


@dataclass(frozen=True, kw_only=True)
class WandaConfig(PruneConfig):
    """Wanda (arXiv 2306.11695): ``S = |W| * ||X_j||_2`` per output row. Options: see :class:`PruneConfig`.

    Args:
        true_sequential (bool): score a block's linears group by group on the inputs of the groups
            pruned before them (see the module docstring); ``False`` (default) is the paper's rule.
    """

    true_sequential: bool = False


@register_pruner(WandaConfig, "wanda")
class WandaPruner(Pruner):
    config: WandaConfig

    def __init__(self, config: PruneConfig, sparsity_for: Mapping[str, float]) -> None:
        super().__init__(config, sparsity_for)
        self.norms: PerInput[ColumnSqNorm] = PerInput(ColumnSqNorm)  # one per distinct input (q/k/v share)

    def sequential_groups(self, adapter: ArchitectureAdapter) -> list[tuple[str, ...]] | None:
        return true_sequential_groups(adapter) if self.config.true_sequential else None

    def observe(self, name: str, inputs: Tensor) -> None:
        self.norms.observe(name, inputs)

    def reset(self) -> None:
        self.norms.clear()

    def prune_(self, name: str, module: nn.Module, sparsity: float) -> None:
        weight = linear_weight(module)
        col_sq_norm = self.norms[name].value
        assert col_sq_norm is not None  # observed before compress, by the runner's contract
        scores = wanda_scores(weight, col_sq_norm.to(weight.device))
        apply_mask_(module, select_mask(scores, sparsity, self.pattern, group="row"))
