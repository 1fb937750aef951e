"""GPTQ: column-by-column quantization with optimal-brain-surgeon error feedback.

Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers" (arXiv 2210.17323). For a linear ``W [out, in]`` with calibration inputs
``X [N tokens, in]`` it minimises the layer's output error ``||W Xᵀ - Ŵ Xᵀ||²``:

* ``H = 2/N · Xᵀ X`` ``[in, in]`` (fp32), dead inputs (``H_jj = 0``) get ``H_jj = 1`` and a zeroed
  column; damping ``H += percdamp · mean(diag H) · I``; ``U = chol(H⁻¹)ᵀ`` (upper), shared with
  SparseGPT through :func:`slimkit.compress.stats.hessian_inverse_chol`.
* Columns ``j`` are swept in order (or by decreasing ``H_jj`` with ``act_order``), in blocks of
  ``blocksize``: ``q_j = Q(w_j)`` with the group's scale and zero, ``e_j = (w_j - q_j) / U_jj``, and the
  not-yet-quantized columns of the block absorb it, ``W[:, k] -= e_j · U_jk`` for ``k > j``; after the
  block the columns right of it get the lazy update ``W[:, b2:] -= E · U[b1:b2, b2:]``.
* Group parameters: by default a group's scale/zero are computed when the sweep reaches its first
  column, from the columns as updated so far (the reference's dynamic groups, AutoGPTQ's
  ``static_groups=False``). With ``static_groups``, with ``act_order`` and per channel they are computed
  once from the unquantized ``W`` before the sweep (static groups: what llm-compressor 0.14 does in
  every column order, from its weight observer), so the stored groups stay contiguous.

The result is the codes, the group parameters and the dequantized weight (written into ``weight``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from slimkit.compress.calibrate import true_sequential_groups
from slimkit.compress.prune.sparsegpt import _one_thread
from slimkit.compress.quant.config import GPTQConfig
from slimkit.compress.stats import Gram, PerInput, hessian_inverse_chol
from slimkit.models.adapters import ArchitectureAdapter, linear_weight
from slimkit.nn.quant_primitives import group_params, num_groups, qrange


def gptq_quantize(
    weight: Tensor,
    hessian: Tensor,
    bits: int,
    group_size: int | None = 128,
    *,
    symmetric: bool = True,
    blocksize: int = 128,
    percdamp: float = 0.01,
    act_order: bool = False,
    static_groups: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """GPTQ-quantize ``weight`` ``[out, in]`` (not modified) given its Hessian ``[in, in]``.

    Returns:
        ``(q, scale, zero)``: int8 codes ``[out, in]`` and ``[out, groups]`` group parameters, in the
        convention of :mod:`slimkit.nn.quant_primitives` (``dequantize(q, scale, zero)`` is ``Ŵ``).

    Raises:
        ConfigError: ``H`` is not positive definite even after damping.
        ValueError: shapes do not match, or ``group_size`` does not divide ``in``.
    """
    cols = weight.shape[1]
    if hessian.shape != (cols, cols):
        raise ValueError(f"hessian has shape {tuple(hessian.shape)}, expected ({cols}, {cols})")
    num_groups(cols, group_size)
    H = hessian.detach().to(weight.device, torch.float32)
    perm = torch.argsort(torch.diagonal(H), descending=True) if act_order else None
    if perm is not None:
        H = H[perm][:, perm]
    hinv, dead = hessian_inverse_chol(H, percdamp)
    return gptq_sweep(
        weight,
        hinv,
        dead,
        bits,
        group_size,
        symmetric=symmetric,
        blocksize=blocksize,
        perm=perm,
        static_groups=static_groups,
    )


def gptq_sweep(
    weight: Tensor,
    hinv: Tensor,
    dead: Tensor,
    bits: int,
    group_size: int | None = 128,
    *,
    symmetric: bool = True,
    blocksize: int = 128,
    perm: Tensor | None = None,
    static_groups: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """GPTQ's column sweep from a prepared Hessian factor (see :func:`gptq_quantize`).

    Args:
        weight: ``[out, in]``, any float dtype (the sweep runs in fp32 on ``Wᵀ``); not modified.
        hinv / dead: from :func:`~slimkit.compress.stats.hessian_inverse_chol` of the (permuted) Hessian.
        perm: the sweep order of the columns (``act_order``), or ``None`` for natural order; ``hinv``
            and ``dead`` are in that order.
        static_groups: group parameters from the unquantized ``W`` before the sweep, in any order
            (always so with ``perm`` or per channel).
    """
    rows, cols = weight.shape
    if hinv.shape != (cols, cols):
        raise ValueError(f"hinv has shape {tuple(hinv.shape)}, expected ({cols}, {cols})")
    qmin, qmax = qrange(bits)
    group = cols if group_size is None else group_size
    groups = num_groups(cols, group_size)
    W = weight.detach().float()
    if perm is not None:
        dead = dead[torch.argsort(perm)]  # back to natural column order
    W = W.masked_fill(dead.to(W.device).unsqueeze(0), 0.0)
    # fixed group parameters from the unquantized weight: asked for, act order (groups are not visited
    # in order) and per channel (one group spans the whole row), as the reference does for groupsize -1
    fixed = static_groups or perm is not None or group_size is None
    if fixed:
        scale, zero = group_params(W, bits, group_size, symmetric=symmetric)
    else:
        scale = torch.empty(rows, groups, dtype=torch.float32, device=W.device)
        zero = torch.empty(rows, groups, dtype=torch.int8, device=W.device)
    order = perm.to(W.device) if perm is not None else torch.arange(cols, device=W.device)
    Wt = W.T[order].contiguous()  # row j = column order[j] of W, the j-th in the sweep
    hinv = hinv.to(Wt.device)
    codes_t = torch.empty(cols, rows, dtype=torch.int8, device=W.device)
    column_group = (order // group).tolist()
    with _one_thread(Wt.device):
        for b1 in range(0, cols, blocksize):
            b2 = min(b1 + blocksize, cols)
            Wb = Wt[b1:b2]  # a view: updated in place
            Hinv1 = hinv[b1:b2, b1:b2]
            d = torch.diagonal(Hinv1)
            err = torch.empty_like(Wb)
            for j in range(b2 - b1):
                col = b1 + j
                g = column_group[col]
                if not fixed and col % group == 0:  # entering group g: its columns hold every update so far
                    s, z = group_params(Wt[col : col + group].T, bits, None, symmetric=symmetric)
                    scale[:, g], zero[:, g] = s[:, 0], z[:, 0]
                s_g, z_g = scale[:, g], zero[:, g].float()
                w = Wb[j]
                q = (torch.round(w / s_g) + z_g).clamp_(qmin, qmax)
                codes_t[col] = q.to(torch.int8)
                dq = (q - z_g) * s_g
                e = torch.sub(w, dq, out=err[j]).div_(d[j])
                if j + 1 < b2 - b1:
                    Wb[j + 1 :].addr_(Hinv1[j, j + 1 :], e, alpha=-1.0)
            if b2 < cols:
                Wt[b2:].sub_(hinv[b1:b2, b2:].T @ err)
    codes = torch.empty(rows, cols, dtype=torch.int8, device=W.device)
    codes[:, order] = codes_t.T
    return codes, scale, zero


class GPTQMethod:
    """The :class:`~slimkit.compress.calibrate.CalibratedMethod` of GPTQ: a Hessian per distinct input."""

    modifies_weights = True

    def __init__(self, config: GPTQConfig, finish: Any) -> None:
        self.config = config
        self.finish = finish  # (name, module, q, scale, zero) -> None: swaps in the quantized layer
        self.grams: PerInput[Gram] = PerInput(Gram)
        self._factors: dict[int, tuple[Tensor, Tensor, Tensor | None]] = {}

    def sequential_groups(self, adapter: ArchitectureAdapter) -> list[tuple[str, ...]] | None:
        return true_sequential_groups(adapter) if self.config.true_sequential else None

    def observe(self, name: str, inputs: Tensor) -> None:
        self.grams.observe(name, inputs)

    def reset(self) -> None:
        self.grams.clear()
        self._factors.clear()

    @torch.no_grad()
    def compress(self, name: str, module: nn.Module) -> None:
        cfg = self.config
        gram = self.grams[name]
        weight = linear_weight(module)
        factor = self._factors.get(id(gram))
        if factor is None:  # once per distinct input: q/k/v and gate/up share it
            H = gram.hessian().to(weight.device)
            perm = torch.argsort(torch.diagonal(H), descending=True) if cfg.act_order else None
            if perm is not None:
                H = H[perm][:, perm]
            factor = (*hessian_inverse_chol(H, cfg.percdamp), perm)
            self._factors[id(gram)] = factor
        if self.grams.release(name):
            del self._factors[id(gram)]
        hinv, dead, perm = factor
        q, scale, zero = gptq_sweep(
            weight,
            hinv,
            dead,
            cfg.bits,
            cfg.group_size,
            symmetric=cfg.symmetric,
            blocksize=cfg.blocksize,
            perm=perm,
            static_groups=cfg.static_groups,
        )
        self.finish(name, module, q, scale, zero)


def layer_output_error(weight: Tensor, approx: Tensor, inputs: Tensor) -> float:
    """``||X Wᵀ - X Ŵᵀ||² / ||X Wᵀ||²``: the relative output error GPTQ minimises (for tests, reports)."""
    ref = inputs.float() @ weight.float().T
    return float(
        (inputs.float() @ approx.float().T - ref).square().sum() / ref.square().sum().clamp_min(1e-30)
    )


__all__ = ["GPTQMethod", "gptq_quantize", "gptq_sweep", "layer_output_error"]
