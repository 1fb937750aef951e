"""Wanda: pruning by weights and activations.

Sun, Liu, Bair, Kolter, "A Simple and Effective Pruning Approach for Large Language Models"
(arXiv 2306.11695). The score of weight ``W_ij`` (``W: [out, in]``) is

    S_ij = |W_ij| * ||X_j||_2,    ||X_j||_2^2 = sum over calibration tokens of x_j^2,

compared **within each output row** ``i``: the ``int(in * sparsity)`` lowest scores of every row
are zeroed (with ``N:M``, the ``N`` lowest of every ``M`` consecutive inputs). No weight update.
Statistics come from the dense block (every linear of a block is scored on the same dense inputs)
and are accumulated in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from slimkit.compress.prune.base import PruneConfig, Pruner, apply_mask_, register_pruner
from slimkit.compress.prune.patterns import select_mask, wanda_scores
from slimkit.models.adapters import linear_weight


@dataclass(frozen=True, kw_only=True)
class WandaConfig(PruneConfig):
    """Wanda (arXiv 2306.11695): ``S = |W| * ||X_j||_2`` per output row. Options: see :class:`PruneConfig`."""


@register_pruner(WandaConfig, "wanda")
class WandaPruner(Pruner):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.col_sq_norm: dict[str, Tensor] = {}
        self._last: tuple[Tensor, Tensor] | None = None

    def observe(self, name: str, inputs: Tensor) -> None:
        # q/k/v (and gate/up) see the same inputs object: square-sum it once
        if self._last is None or self._last[0] is not inputs:
            self._last = (inputs, inputs.square().sum(0))
        acc = self.col_sq_norm.get(name)
        self.col_sq_norm[name] = self._last[1].clone() if acc is None else acc.add_(self._last[1])

    def reset(self) -> None:
        self.col_sq_norm.clear()
        self._last = None

    def prune_(self, name: str, module: nn.Module, sparsity: float) -> None:
        weight = linear_weight(module)
        scores = wanda_scores(weight, self.col_sq_norm[name].to(weight.device))
        apply_mask_(module, select_mask(scores, sparsity, self.pattern, group="row"))
