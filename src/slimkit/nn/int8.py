"""INT8 training linears: Q-GaLore's weights, stored as int8 codes and updated in the integer domain.

Q-GaLore — "Q-GaLore: Quantized GaLore with INT4 Projection and Layer-Adaptive Low-Rank Gradients"
(Zhang et al., arXiv 2407.08296), section 3: the weights of the targeted linears live as INT8 with a
scale and zero point per group of ``group_size`` input columns (``slimkit.nn.quant_primitives``,
the same codes ``compress.quant`` writes), and no high-precision copy is kept between steps:

    forward:   y = x Ŵᵀ + b,          Ŵ = (q - z) · s           (dequantised on the fly, transient)
    backward:  dx = dy Ŵ,   dW = dyᵀ x  (float32, accumulated in ``weight.grad``)
    update:    q ← SR((Ŵ + Δ) / s') + z'                         (s', z' from the new group range)

``SR`` is stochastic rounding (``floor(x + u)``, ``u ~ U[0,1)``): an update smaller than half a
quantisation step moves the weight with probability proportional to its size, so small updates
accumulate in expectation instead of being rounded away (nearest rounding would freeze them).

The int8 ``weight`` is an ``nn.Parameter`` with ``requires_grad=False`` (integer tensors cannot
require grad) whose ``grad_dtype`` is float32: the backward writes the float gradient into
``weight.grad`` so ``zero_grad``, gradient clipping and the optimizers see an ordinary gradient.
Hooks registered with :meth:`Int8TrainingLinear.register_weight_grad_hook` run after each
accumulation, the way ``register_post_accumulate_grad_hook`` does for float parameters.

Shapes: ``weight`` int8 ``[out, in]``; ``weight_scale`` float32 and ``weight_zero`` int8
``[out, in // group_size]``; ``bias`` float ``[out]`` (trainable as usual).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from slimkit.core.errors import ConfigError
from slimkit.core.targeting import select_modules
from slimkit.nn import quant_primitives as qp

# The linears of attention and MLP blocks (LLaMA-style names; GaLore's "attn"/"mlp" rule).
BLOCK_LINEARS: tuple[str, ...] = (r"re:(attn|attention|mlp)\.",)


class _Int8LinearFn(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: Tensor, anchor: Tensor, bias: Tensor | None, module: Int8TrainingLinear
    ) -> Tensor:
        w = module.dequantized_weight(x.dtype)
        ctx.module = module
        ctx.save_for_backward(x)
        ctx.has_bias = bias is not None
        return torch.nn.functional.linear(x, w, bias.to(x.dtype) if bias is not None else None)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        module: Int8TrainingLinear = ctx.module
        grad_x = grad_out @ module.dequantized_weight(grad_out.dtype) if ctx.needs_input_grad[0] else None
        g2 = grad_out.reshape(-1, grad_out.shape[-1]).float()
        grad_w = g2.T @ x.reshape(-1, x.shape[-1]).float()
        module._accumulate_weight_grad(grad_w)
        grad_b = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, None, grad_b, None


class Int8TrainingLinear(nn.Module):
    """A linear layer whose weight is stored as group-wise INT8 and trained in place (Q-GaLore).

    Args:
        in_features, out_features: as ``nn.Linear``.
        bias: whether to hold a (float, trainable) bias. Default: True.
        group_size: input columns per scale/zero group, dividing ``in_features``; None = per row.
            Default: 256.
        bits: code width (8 for Q-GaLore). Default: 8.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        group_size: int | None = 256,
        bits: int = 8,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if group_size is not None and (
            isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1
        ):
            raise ConfigError(
                f"Int8TrainingLinear: group_size must be a positive integer or None, got {group_size!r}"
            )
        if group_size is not None and in_features % group_size:
            raise ConfigError(
                f"Int8TrainingLinear: group_size {group_size} does not divide in_features {in_features}"
            )
        try:
            qp.check_bits(bits)
        except ValueError as e:
            raise ConfigError(f"Int8TrainingLinear: {e}") from None
        self.in_features, self.out_features = in_features, out_features
        self.group_size, self.bits = group_size, bits
        groups = qp.num_groups(in_features, group_size)
        self.weight = nn.Parameter(
            torch.zeros(out_features, in_features, dtype=torch.int8, device=device), requires_grad=False
        )
        self.register_buffer("weight_scale", torch.ones(out_features, groups, device=device))
        self.register_buffer(
            "weight_zero", torch.zeros(out_features, groups, dtype=torch.int8, device=device)
        )
        self.bias = nn.Parameter(torch.zeros(out_features, device=device)) if bias else None
        # an OrderedDict, not a dict: RemovableHandle keeps a weak reference to it
        self._weight_grad_hooks: OrderedDict[int, Callable[[Tensor], None]] = OrderedDict()
        self._tag_weight()

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, *, group_size: int | None = 256, bits: int = 8
    ) -> Int8TrainingLinear:
        """Quantize ``linear``'s weight (nearest rounding) into a new training linear."""
        new = cls(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            group_size=group_size,
            bits=bits,
            device=linear.weight.device,
        )
        new.set_weight_(linear.weight.detach())
        if linear.bias is not None:
            new.bias.data.copy_(linear.bias.detach().float())
            new.bias.requires_grad_(linear.bias.requires_grad)
        return new

    # -- state ---------------------------------------------------------------------------------------
    def _tag_weight(self) -> None:
        # lets optimizers find the owner of an int8 weight (a Parameter's attributes do not survive
        # deepcopy or `.to()`, so it is refreshed in every forward)
        self.weight._int8_owner = self  # type: ignore[attr-defined]

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """``Ŵ = (q - z) · s`` as ``dtype`` ``[out, in]`` (a transient tensor)."""
        return qp.dequantize(self.weight, self.weight_scale, self.weight_zero, self.group_size, dtype=dtype)

    def set_weight_(
        self, w: Tensor, *, stochastic: bool = False, generator: torch.Generator | None = None
    ) -> None:
        """Re-quantize float ``w [out, in]`` into the int8 codes (new per-group scale and zero)."""
        scale, zero = qp.group_params(w, self.bits, self.group_size, symmetric=False)
        q = qp.quantize(
            w, scale, zero, self.bits, self.group_size, stochastic=stochastic, generator=generator
        )
        self.weight.data.copy_(q)
        self.weight_scale.copy_(scale)
        self.weight_zero.copy_(zero)

    def add_(
        self, delta: Tensor, *, stochastic: bool = True, generator: torch.Generator | None = None
    ) -> None:
        """``W ← Q_SR(Ŵ + delta)``: dequantise, add, requantise (stochastic rounding by default)."""
        self.set_weight_(
            self.dequantized_weight() + delta.float(), stochastic=stochastic, generator=generator
        )

    def to_linear(self) -> nn.Linear:
        """An ``nn.Linear`` holding the dequantised weight (for export)."""
        lin = nn.Linear(self.in_features, self.out_features, self.bias is not None, device=self.weight.device)
        lin.weight.data.copy_(self.dequantized_weight())
        if self.bias is not None:
            lin.bias.data.copy_(self.bias.detach())
        return lin

    # -- gradients -----------------------------------------------------------------------------------
    def register_weight_grad_hook(self, hook: Callable[[Tensor], None]) -> RemovableHandle:
        """``hook(weight)`` after each accumulation of ``weight.grad`` (cf. ``register_post_accumulate_grad_hook``)."""
        handle = RemovableHandle(self._weight_grad_hooks)
        self._weight_grad_hooks[handle.id] = hook
        return handle

    def _accumulate_weight_grad(self, grad_w: Tensor) -> None:
        w = self.weight
        if w.grad is None:
            w.grad_dtype = torch.float32  # deepcopy / load reset it to the tensor's dtype
            w.grad = grad_w
        else:
            w.grad.add_(grad_w)
        for hook in list(self._weight_grad_hooks.values()):
            hook(w)

    def forward(self, x: Tensor) -> Tensor:
        self._tag_weight()
        # the empty anchor makes the backward run even when neither input nor bias requires grad
        anchor = torch.empty(0, device=x.device, requires_grad=True)
        return _Int8LinearFn.apply(x, anchor, self.bias, self)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, bits={self.bits}, group_size={self.group_size}"
        )


def int8_owner(p: Tensor) -> Int8TrainingLinear | None:
    """The :class:`Int8TrainingLinear` an int8 weight belongs to, or None for an ordinary parameter."""
    if p.dtype != torch.int8:
        return None
    return getattr(p, "_int8_owner", None)


def is_int8_training_weight(p: Tensor) -> bool:
    return int8_owner(p) is not None


def prepare_int8_training_(
    model: nn.Module,
    targets: Sequence[str] = BLOCK_LINEARS,
    ignore: Sequence[str] = (),
    *,
    group_size: int | None = 256,
    bits: int = 8,
) -> list[str]:
    """Replace the selected ``nn.Linear`` modules of ``model`` by :class:`Int8TrainingLinear` in place.

    Args:
        model: modified in place.
        targets / ignore: the shared targeting vocabulary over module names (only ``nn.Linear``
            modules are candidates). Default targets: attention and MLP linears.
        group_size: columns per group (must divide each selected layer's ``in_features``). Default: 256.
        bits: code width. Default: 8.

    Returns:
        The names of the replaced modules.

    Raises:
        TargetError: a target matched no linear. ConfigError: ``group_size`` does not divide a layer.
    """
    chosen = select_modules(model, targets, ignore, candidates=lambda _, m: isinstance(m, nn.Linear))
    for name, linear in chosen.items():
        assert isinstance(linear, nn.Linear)
        if group_size is not None and linear.in_features % group_size:
            raise ConfigError(
                f"prepare_int8_training_: group_size {group_size} does not divide in_features "
                f"{linear.in_features} of {name}"
            )
    for name, linear in chosen.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int8TrainingLinear.from_linear(linear, group_size=group_size, bits=bits))
    return list(chosen)


def restore_linears_(model: nn.Module) -> list[str]:
    """Replace every :class:`Int8TrainingLinear` by an ``nn.Linear`` with its dequantised weight."""
    names = [n for n, m in model.named_modules() if isinstance(m, Int8TrainingLinear)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, getattr(parent, child).to_linear())
    return names


__all__ = [
    "BLOCK_LINEARS",
    "Int8TrainingLinear",
    "int8_owner",
    "is_int8_training_weight",
    "prepare_int8_training_",
    "restore_linears_",
]
