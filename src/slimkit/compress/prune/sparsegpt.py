"""SparseGPT: one-shot pruning with optimal-brain-surgeon weight updates.

Frantar, Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot"
(arXiv 2301.00774). For a linear ``W: [out, in]`` with calibration inputs ``X: [in, N tokens]``:

* Hessian of the layer-wise reconstruction loss ``||WX - ŴX||^2``: ``H = 2/N * X Xᵀ`` (fp32,
  ``[in, in]``). Dead inputs (``H_jj = 0``) get ``H_jj = 1`` and their column of ``W`` zeroed.
  Damping: ``H += percdamp * mean(diag H) * I``.
* ``Hinv = chol(H^-1)ᵀ`` (the upper Cholesky factor of the inverse), so the OBS updates of a column
  sweep are rows of ``Hinv`` (:func:`slimkit.compress.stats.hessian_inverse_chol`, which gets it
  from one factorization of the index-reversed ``H``). Linears fed the same input (q/k/v, gate/up)
  share one Hessian and one factor.
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

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimkit.compress.calibrate import true_sequential_groups
from slimkit.compress.prune.base import PruneConfig, Pruner, register_pruner
from slimkit.compress.prune.patterns import Pattern, nm_mask, select_mask
from slimkit.compress.stats import Gram, PerInput, hessian_inverse_chol
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
    cols = weight.shape[1]
    if hessian.shape != (cols, cols):
        raise ValueError(f"hessian has shape {tuple(hessian.shape)}, expected ({cols}, {cols})")
    if pattern is not None and blocksize % pattern.m != 0:
        raise ConfigError(f"blocksize={blocksize} is not a multiple of M={pattern.m}")
    hinv, dead = hessian_inverse_chol(hessian.to(weight.device), percdamp)
    return sparsegpt_sweep_(weight, hinv, dead, sparsity, pattern, blocksize)


def sparsegpt_sweep_(
    weight: Tensor,
    hinv: Tensor,
    dead: Tensor,
    sparsity: float,
    pattern: Pattern = None,
    blocksize: int = 128,
) -> Tensor:
    """SparseGPT's column sweep on ``weight`` ``[out, in]`` (in place), from a prepared Hessian.

    Args:
        weight: the layer's weight, any float dtype (the sweep runs in fp32, the result is cast back).
        hinv: ``U`` ``[in, in]``, the upper Cholesky factor of the damped ``H^-1``.
        dead: ``[in]`` bool, the inputs with ``H_jj = 0`` (their columns are zeroed). ``hinv`` and
            ``dead`` come from :func:`~slimkit.compress.stats.hessian_inverse_chol`; linears that share
            an input share them.
        sparsity: fraction pruned (ignored with an ``N:M`` pattern).
        pattern: ``None`` (unstructured) or an ``NMPattern``; ``blocksize`` must be a multiple of M.
        blocksize: columns per lazy-update block.

    The sweep works on ``Wᵀ`` (a column of ``W`` is a contiguous row) and, on CPU, on one thread: it
    is thousands of small sequential updates, which a second thread only slows down.
    """
    rows, cols = weight.shape
    if hinv.shape != (cols, cols):
        raise ValueError(f"hinv has shape {tuple(hinv.shape)}, expected ({cols}, {cols})")
    Wt = torch.empty((cols, rows), dtype=torch.float32, device=weight.device)  # row j = column j of W
    Wt.copy_(weight.detach().T)
    hinv = hinv.to(Wt.device)
    Wt[dead.to(Wt.device)] = 0.0
    m = pattern.m if pattern is not None else 0
    with _one_thread(Wt.device):
        for b1 in range(0, cols, blocksize):
            b2 = min(b1 + blocksize, cols)
            Wb = Wt[b1:b2]  # a view: the block is updated in place
            Hinv1 = hinv[b1:b2, b1:b2]
            d = torch.diagonal(Hinv1)
            err = torch.empty_like(Wb)
            if pattern is None:  # the mask of the whole block, from its saliency at the block start
                saliency = Wb.T.square() / d.square().unsqueeze(0)  # [out, block], as the reference
                mask = select_mask(saliency, sparsity, None, group="matrix").T
                scale = mask.to(Wt.dtype) / d.unsqueeze(1)  # err_j = w_j / d_j where pruned, else 0
            else:
                mask = torch.empty_like(Wb, dtype=torch.bool)
                scale = torch.empty_like(Wb)
            for j in range(b2 - b1):
                if m and j % m == 0:  # the N:M mask of the next M columns, from their current values
                    span = slice(j, j + m)
                    saliency = Wb[span].T.square() / d[span].square().unsqueeze(0)
                    mask[span] = nm_mask(saliency, pattern).T
                    scale[span] = mask[span].to(Wt.dtype) / d[span].unsqueeze(1)
                # err_j = (w_j - q_j) / d_j (q_j: w_j with its pruned entries zeroed); the block's later
                # columns absorb it. Column j is final now; its pruned entries are zeroed below.
                e = torch.mul(Wb[j], scale[j], out=err[j])
                if j + 1 < b2 - b1:
                    Wb[j + 1 :].addr_(Hinv1[j, j + 1 :], e, alpha=-1.0)
            Wb.masked_fill_(mask, 0.0)
            if b2 < cols:  # the lazy batch update of every column right of the block
                Wt[b2:].sub_(hinv[b1:b2, b2:].T @ err)
    with torch.no_grad():
        weight.copy_(Wt.T)
    return weight


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run the CPU sweep's small updates on one intra-op thread (restored after)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@register_pruner(SparseGPTConfig, "sparsegpt")
class SparseGPTPruner(Pruner):
    config: SparseGPTConfig

    def __init__(self, config: PruneConfig, sparsity_for: Mapping[str, float]) -> None:
        super().__init__(config, sparsity_for)
        self.grams: PerInput[Gram] = PerInput(Gram)
        self._factors: dict[int, tuple[Tensor, Tensor]] = {}  # id(Gram) -> (Hinv, dead), shared

    def sequential_groups(self, adapter: ArchitectureAdapter) -> list[tuple[str, ...]] | None:
        return true_sequential_groups(adapter) if self.config.true_sequential else None

    def observe(self, name: str, inputs: Tensor) -> None:
        self.grams.observe(name, inputs)

    def reset(self) -> None:
        self.grams.clear()
        self._factors.clear()

    def prune_(self, name: str, module: nn.Module, sparsity: float) -> None:
        gram = self.grams[name]
        weight = linear_weight(module).detach().float().clone()
        factor = self._factors.get(id(gram))
        if factor is None:  # once per distinct input: q/k/v (and gate/up) reuse it
            factor = hessian_inverse_chol(gram.hessian().to(weight.device), self.config.percdamp)
            self._factors[id(gram)] = factor
        if self.grams.release(name):  # the last linear of that input: free its Hessian and factor
            del self._factors[id(gram)]
        sparsegpt_sweep_(weight, *factor, sparsity, self.pattern, blocksize=self.config.blocksize)
        set_linear_weight(module, weight)
