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
* Linears that share an input (q/k/v, gate/up) are swept as one matrix stacked along ``out``
  (:func:`sparsegpt_sweep_many_`): every step is row-wise, so each keeps its own result.

Defaults: ``blocksize=128``, ``percdamp=0.01``, ``true_sequential=False`` (when true, the linears of
a block are pruned in the order ``[q,k,v] -> [o] -> [gate,up] -> [down]`` with statistics
re-collected after each group, so later groups see the earlier ones already pruned).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor, nn

from slimkit.compress.calibrate import true_sequential_groups
from slimkit.compress.prune.base import PruneConfig, Pruner, register_pruner
from slimkit.compress.prune.patterns import NMPattern, Pattern, nm_mask, select_mask
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
    """
    sparsegpt_sweep_many_([weight], hinv, dead, [sparsity], pattern, blocksize)
    return weight


# columns per inner sub-block: within a block of ``blocksize`` columns the per-column rank-1 updates
# reach only the rest of their sub-block, and one matmul carries a sub-block's errors to the rest of
# the block (the same update, grouped: it only changes float summation order)
SUB_BLOCK = 32


def sparsegpt_sweep_many_(
    weights: Sequence[Tensor],
    hinv: Tensor,
    dead: Tensor,
    sparsities: Sequence[float],
    pattern: Pattern = None,
    blocksize: int = 128,
) -> None:
    """One column sweep for the linears that share an input (q/k/v, gate/up), each in place.

    The weights ``W_1 [out_1, in], W_2 [out_2, in], ...`` are stacked along ``out`` and swept as one
    matrix. Every step of the sweep is row-wise: a row's error ``err_j = (w_j - q_j) / Hinv_jj`` and
    its updates ``w_j' -= err_j * Hinv[j, j']`` depend on that row and the shared ``Hinv`` only; the
    ``N:M`` mask is chosen per row, and the unstructured mask of a block is chosen for each linear
    over its own ``[out_k, blocksize]`` part at its own ``sparsities[k]``. So each linear's result is
    its own sweep's, up to float summation order; on CPU the sweep's cost is mostly the dispatch of
    thousands of small per-column operations, which one sweep pays once instead of once per linear.

    The sweep works on ``Wᵀ`` (a column of ``W`` is a contiguous row) and, on CPU, on one thread: it
    is thousands of small sequential updates, which a second thread only slows down.

    Args:
        weights: ``[out_k, in]`` each, on one device, any float dtype (swept in fp32, cast back).
        hinv: ``U`` ``[in, in]``, the upper Cholesky factor of the damped ``H^-1``.
        dead: ``[in]`` bool, the inputs with ``H_jj = 0`` (their columns are zeroed).
        sparsities: fraction pruned, per weight (ignored with an ``N:M`` pattern).
        pattern: ``None`` (unstructured) or an ``NMPattern``; ``blocksize`` must be a multiple of M.
        blocksize: columns per lazy-update block.
    """
    if not weights or len(weights) != len(sparsities):
        raise ValueError(
            f"{len(weights)} weights and {len(sparsities)} sparsities: need one each, at least one"
        )
    cols = weights[0].shape[1]
    if any(w.dim() != 2 or w.shape[1] != cols for w in weights):
        raise ValueError(f"weights must all be [out, {cols}], got {[tuple(w.shape) for w in weights]}")
    if hinv.shape != (cols, cols):
        raise ValueError(f"hinv has shape {tuple(hinv.shape)}, expected ({cols}, {cols})")
    if pattern is not None and blocksize % pattern.m != 0:
        raise ConfigError(f"blocksize={blocksize} is not a multiple of M={pattern.m}")
    device = weights[0].device
    edges = [0]
    for w in weights:
        edges.append(edges[-1] + int(w.shape[0]))
    Wt = torch.empty((cols, edges[-1]), dtype=torch.float32, device=device)  # row j = column j of W
    for w, r0, r1 in zip(weights, edges, edges[1:], strict=False):
        Wt[:, r0:r1].copy_(w.detach().T)
    hinv = hinv.to(device)
    Wt[dead.to(device)] = 0.0
    m = pattern.m if pattern is not None else 0
    sub = max(m, SUB_BLOCK // m * m) if m else SUB_BLOCK  # N:M spans never straddle a sub-block
    with _one_thread(device):
        for b1 in range(0, cols, blocksize):
            b2 = min(b1 + blocksize, cols)
            Wb = Wt[b1:b2]  # a view: the block is updated in place
            Hinv1 = hinv[b1:b2, b1:b2]
            d = torch.diagonal(Hinv1)
            inv_d = d.reciprocal().unsqueeze(1)
            err = torch.empty_like(Wb)
            mask = torch.empty_like(Wb, dtype=torch.bool)
            if pattern is None:  # each linear's mask of the whole block, from its saliency at the block start
                for sparsity, r0, r1 in zip(sparsities, edges, edges[1:], strict=False):
                    # [out_k, block], as the reference
                    saliency = Wb[:, r0:r1].T.square() / d.square().unsqueeze(0)
                    mask[:, r0:r1] = select_mask(saliency, sparsity, None, group="matrix").T
                scale = mask.to(Wt.dtype) * inv_d  # err_j = w_j / d_j where pruned, else 0
            else:
                scale = torch.empty_like(Wb)
                inv_d2 = inv_d.square()
            for s1 in range(0, b2 - b1, sub):
                s2 = min(s1 + sub, b2 - b1)
                for j in range(s1, s2):
                    if m and j % m == 0:  # the N:M mask of the next M columns, from their current values
                        span = slice(j, j + m)
                        nm_span_mask_(Wb[span].square().mul_(inv_d2[span]), pattern.n, out=mask[span])
                        torch.mul(mask[span], inv_d[span], out=scale[span])
                    # err_j = (w_j - q_j) / d_j (q_j: w_j with its pruned entries zeroed); the block's later
                    # columns absorb it. Column j is final now; its pruned entries are zeroed below.
                    e = torch.mul(Wb[j], scale[j], out=err[j])
                    if j + 1 < s2:
                        Wb[j + 1 : s2].addr_(Hinv1[j, j + 1 : s2], e, alpha=-1.0)
                if s2 < b2 - b1:  # the sub-block's errors reach the rest of the block
                    Wb[s2:].addmm_(Hinv1[s1:s2, s2:].T, err[s1:s2], alpha=-1.0)
            Wb.masked_fill_(mask, 0.0)
            if b2 < cols:  # the lazy batch update of every column right of the block
                Wt[b2:].addmm_(hinv[b1:b2, b2:].T, err, alpha=-1.0)
    with torch.no_grad():
        for w, r0, r1 in zip(weights, edges, edges[1:], strict=False):
            w.copy_(Wt[:, r0:r1].T)


@cache
def _ranks_before(m: int, device: torch.device) -> Tensor:
    """``[m, m, 1]`` bool, ``[j, i]`` true for ``j < i``: where a tie ranks ``j`` first."""
    return torch.ones(m, m, dtype=torch.bool, device=device).triu(1).unsqueeze(-1)


def nm_span_mask_(saliency: Tensor, n: int, *, out: Tensor) -> Tensor:
    """The ``N:M`` mask of one span ``saliency [M, rows]`` (one column of M weights per row) into ``out``.

    ``True`` for the ``n`` lowest of each column, ties to the lower index: the same mask as
    :func:`~slimkit.compress.prune.patterns.nm_mask` on the transposed span, from ranks
    ``rank_i = #{j : s_j < s_i or (s_j = s_i and j < i)}`` (``M^2`` comparisons, no sort and no
    transposes; for ``M > 32`` the selection falls back to ``nm_mask``).
    """
    m = saliency.shape[0]
    if m > 32:
        out.copy_(nm_mask(saliency.T, NMPattern(n, m)).T)
        return out
    a, b = saliency.unsqueeze(1), saliency.unsqueeze(0)  # [j, 1, rows], [1, i, rows]
    ranks_first = torch.where(_ranks_before(m, saliency.device), a <= b, a < b)  # [j, i, rows]: j before i
    return torch.lt(ranks_first.sum(0, dtype=torch.int32), n, out=out)


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
        self._prune_together({name: module}, [name])

    @torch.no_grad()
    def compress_group(self, group: Mapping[str, nn.Module]) -> None:
        """Prune ``group``'s linears: one factorization and one sweep per shared Hessian (q/k/v, gate/up).

        Each report row gets its sweep's time in proportion to the linear's rows.
        """
        by_input: dict[int, list[str]] = {}  # id(Gram) -> the group's linears reading that input
        for name in group:
            by_input.setdefault(id(self.grams[name]), []).append(name)
        for names in by_input.values():
            start = time.perf_counter()
            self._prune_together(group, names)
            elapsed = time.perf_counter() - start
            rows = {n: int(linear_weight(group[n]).shape[0]) for n in names}
            for n in names:
                self.record(n, group[n], elapsed * rows[n] / sum(rows.values()))

    def _prune_together(self, modules: Mapping[str, nn.Module], names: list[str]) -> None:
        """Sweep the linears ``names`` (which share one input's Hessian) as one matrix."""
        gram = self.grams[names[0]]
        weights = [linear_weight(modules[n]).detach().float().clone() for n in names]
        factor = self._factors.get(id(gram))
        if factor is None:  # once per distinct input
            factor = hessian_inverse_chol(gram.hessian().to(weights[0].device), self.config.percdamp)
            self._factors[id(gram)] = factor
        sparsities = [self.sparsity_for[n] for n in names]
        sparsegpt_sweep_many_(weights, *factor, sparsities, self.pattern, blocksize=self.config.blocksize)
        for n, weight in zip(names, weights, strict=True):
            set_linear_weight(modules[n], weight)
            if self.grams.release(n):  # the last linear of that input: free its Hessian and factor
                del self._factors[id(gram)]
