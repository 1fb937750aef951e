"""SparseGPT: one-shot pruning with optimal-brain-surgeon weight updates.

Frantar, Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot"
(arXiv 2301.00774). For a linear ``W: [out, in]`` with calibration inputs ``X: [in, N tokens]``:

* Hessian of the layer-wise reconstruction loss ``||WX - ŴX||^2``: ``H = 2/N * X Xᵀ`` (fp32,
  ``[in, in]``). Dead inputs (``H_jj = 0``) get ``H_jj = 1`` and their column of ``W`` zeroed.
  Damping: ``H += percdamp * mean(diag H) * I``.
* ``Hinv = chol(H^-1)ᵀ`` (the upper Cholesky factor of the inverse), so the OBS updates of a column
  sweep are rows of ``Hinv``.
* Columns are swept left to right in blocks of ``blocksize``. Unstructured: at each block start the
  mask is chosen over the whole ``[out, blocksize]`` block from the saliency ``w^2 / Hinv_jj^2``
  (exactly ``int(out * blocksize * sparsity)`` pruned). ``N:M``: at every column ``j ≡ 0 (mod M)``
  the ``N`` lowest-saliency weights of the next ``M`` columns of each row are masked.
* For each column ``j``: ``q = w`` with masked entries zeroed, ``err = (w - q) / Hinv_jj``, and the
  not-yet-visited columns of the block absorb it: ``W[:, j:] -= err ⊗ Hinv[j, j:]``. After the block,
  the columns to its right get the lazy batch update ``W[:, b2:] -= Err @ Hinv[b1:b2, b2:]``.

Defaults: ``blocksize=128``, ``percdamp=0.01``, ``true_sequential=False`` (when true, the linears of
a block are pruned in the order ``[q,k,v] -> [o] -> [gate,up] -> [down]`` with statistics
re-collected after each group, so later groups see the earlier ones already pruned).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimkit.compress.calibrate import true_sequential_groups
from slimkit.compress.prune.base import PruneConfig, Pruner, register_pruner
from slimkit.compress.prune.patterns import Pattern, nm_mask, select_mask
from slimkit.core.config import check_range
from slimkit.core.errors import ConfigError
from slimkit.models.adapters import ArchitectureAdapter, linear_weight, set_linear_weight


@dataclass(frozen=True, kw_only=True)
class SparseGPTConfig(PruneConfig):
    """SparseGPT (arXiv 2301.00774). Options of :class:`PruneConfig`, plus:

    Attributes:
        blocksize (int): columns per lazy-update block (the unstructured mask is chosen per block).
            Default: 128.
        percdamp (float): diagonal damping as a fraction of ``mean(diag H)``. Default: 0.01.
        true_sequential (bool): prune a block's linears in groups ``[q,k,v] -> [o] -> [gate,up] ->
            [down]``, re-collecting statistics after each group. Default: False.
    """

    blocksize: int = 128
    percdamp: float = 0.01
    true_sequential: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("SparseGPTConfig.blocksize", self.blocksize, 1, None)
        check_range("SparseGPTConfig.percdamp", self.percdamp, 0.0, None)
        nm = self.nm
        if nm is not None and self.blocksize % nm.m != 0:
            raise ConfigError(
                f"SparseGPTConfig.blocksize={self.blocksize} is not a multiple of M={nm.m} of pattern {nm}"
            )


def sparsegpt_prune_(
    weight: Tensor,
    hessian: Tensor,
    sparsity: float,
    pattern: Pattern = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> Tensor:
    """Prune ``weight`` ``[out, in]`` in place with SparseGPT and return it (see the module docstring).

    Args:
        weight: the layer's weight, any float dtype (the sweep runs in fp32, the result is cast back).
        hessian: ``[in, in]``, ``2/N * X Xᵀ`` (not modified).
        sparsity: fraction pruned (ignored with an ``N:M`` pattern).
        pattern: ``None`` (unstructured) or an ``NMPattern``; ``blocksize`` must be a multiple of M.
        blocksize: columns per lazy-update block.
        percdamp: damping as a fraction of ``mean(diag H)``.

    Raises:
        ConfigError: ``H`` is not positive definite even after damping (raise ``percdamp``).
    """
    rows, cols = weight.shape
    if hessian.shape != (cols, cols):
        raise ValueError(f"hessian has shape {tuple(hessian.shape)}, expected ({cols}, {cols})")
    if pattern is not None and blocksize % pattern.m != 0:
        raise ConfigError(f"blocksize={blocksize} is not a multiple of M={pattern.m}")
    W = weight.detach().to(torch.float32, copy=True)
    H = hessian.detach().to(device=W.device, dtype=torch.float32, copy=True)
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    torch.diagonal(H).add_(percdamp * torch.diagonal(H).mean())
    try:
        L = torch.linalg.cholesky(H)
        Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    except RuntimeError:  # torch.linalg.LinAlgError subclasses RuntimeError
        raise ConfigError(
            f"SparseGPT: the Hessian is not positive definite with percdamp={percdamp}; increase percdamp"
        ) from None

    for b1 in range(0, cols, blocksize):
        b2 = min(b1 + blocksize, cols)
        W1 = W[:, b1:b2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[b1:b2, b1:b2]
        d = torch.diagonal(Hinv1)
        if pattern is None:
            mask1 = select_mask(W1.square() / d.square().unsqueeze(0), sparsity, None, group="matrix")
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for j in range(b2 - b1):
            if pattern is not None and j % pattern.m == 0:
                span = slice(j, j + pattern.m)
                saliency = W1[:, span].square() / d[span].square().unsqueeze(0)
                mask1[:, span] = nm_mask(saliency, pattern)
            w = W1[:, j]
            q = w.masked_fill(mask1[:, j], 0.0)
            err = (w - q) / d[j]
            W1[:, j:].sub_(err.unsqueeze(1) * Hinv1[j, j:].unsqueeze(0))
            W1[:, j] = q
            Err1[:, j] = err
        W[:, b1:b2] = W1
        W[:, b2:].sub_(Err1 @ Hinv[b1:b2, b2:])
    with torch.no_grad():
        weight.copy_(W)
    return weight


@register_pruner(SparseGPTConfig, "sparsegpt")
class SparseGPTPruner(Pruner):
    config: SparseGPTConfig

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gram: dict[str, Tensor] = {}
        self.tokens: dict[str, int] = {}
        self._last: tuple[Tensor, Tensor] | None = None

    def sequential_groups(self, adapter: ArchitectureAdapter) -> list[tuple[str, ...]] | None:
        return true_sequential_groups(adapter) if self.config.true_sequential else None

    def observe(self, name: str, inputs: Tensor) -> None:
        # q/k/v (and gate/up) share their inputs: one X^T X per chunk for all of them
        if self._last is None or self._last[0] is not inputs:
            self._last = (inputs, inputs.T @ inputs)
        acc = self.gram.get(name)
        self.gram[name] = self._last[1].clone() if acc is None else acc.add_(self._last[1])
        self.tokens[name] = self.tokens.get(name, 0) + inputs.shape[0]

    def reset(self) -> None:
        self.gram.clear()
        self.tokens.clear()
        self._last = None

    def prune_(self, name: str, module: nn.Module, sparsity: float) -> None:
        hessian = self.gram.pop(name).mul_(2.0 / self.tokens[name])
        weight = linear_weight(module).detach().float().clone()
        sparsegpt_prune_(
            weight,
            hessian,
            sparsity,
            self.pattern,
            blocksize=self.config.blocksize,
            percdamp=self.config.percdamp,
        )
        set_linear_weight(module, weight)
