"""Layer-wise stepping: update each parameter inside backward, so full gradients never coexist.

GaLore (arXiv 2403.03507) section 4.3, "per-layer weight updates": with a hook that runs as soon as a
parameter's gradient is accumulated, the optimizer steps that parameter and frees its gradient, so
peak memory holds one layer's gradient instead of the model's. torch calls the hook through
``Tensor.register_post_accumulate_grad_hook``; the INT8 weights of
:class:`slimkit.nn.int8.Int8TrainingLinear` call it through ``register_weight_grad_hook``.

Two bugs of the reference per-layer mode are avoided: the hook is registered on *every* parameter
of the optimizer (embeddings, norms and head included), and with gradient accumulation over ``k``
micro-batches a parameter is stepped only on its ``k``-th accumulation (the last micro-batch), with
the gradient summed over all ``k`` before that.

Global gradient clipping needs the norm of all gradients before any step, which layer-wise stepping
never has; it is refused. So is DDP: the hook runs before DDP's all-reduce finishes, so ranks would
step on their local gradients.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from slimkit.core.errors import ConfigError, SlimkitError
from slimkit.nn.int8 import int8_owner


class LayerwiseStepper:
    """Attach per-parameter stepping to a :class:`slimkit.optim.galore.GaLoreAdamW` (or Q-GaLore).

    After ``LayerwiseStepper(opt, grad_accum=k)``, each ``backward`` accumulates gradients and every
    ``k``-th accumulation of a parameter steps it with ``opt.step_param`` and frees its ``.grad``;
    ``opt.step()`` becomes a no-op (call it as usual; it checks that no parameter is left half-way).

    Args:
        optimizer: an optimizer with ``step_param(p, group)``.
        grad_accum: micro-batches per optimizer step, >= 1. Default: 1.

    Raises:
        ConfigError: the optimizer cannot step one parameter, ``grad_accum`` < 1, or
            torch.distributed is initialised with more than one rank.
    """

    def __init__(self, optimizer: Any, grad_accum: int = 1) -> None:
        if not hasattr(optimizer, "step_param"):
            raise ConfigError(
                f"layer-wise stepping needs an optimizer with step_param (GaLoreAdamW, QGaLoreAdamW), "
                f"got {type(optimizer).__name__}"
            )
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            raise ConfigError(
                "layer-wise stepping cannot run under DDP (each parameter would step on its local gradient "
                "before the all-reduce); set layerwise: false"
            )
        self.optimizer = optimizer
        self.grad_accum = 1
        self.set_grad_accum(grad_accum)
        self._counts: dict[int, int] = {}
        self._names: dict[int, str] = {}
        self._handles = []
        for i, group in enumerate(optimizer.param_groups):
            for j, p in enumerate(group["params"]):
                self._counts[id(p)] = 0
                self._names[id(p)] = f"group {i} param {j} {tuple(p.shape)}"
                owner = int8_owner(p)
                hook = self._make_hook(group)
                if owner is not None:
                    self._handles.append(owner.register_weight_grad_hook(hook))
                else:
                    self._handles.append(p.register_post_accumulate_grad_hook(hook))
        optimizer._layerwise = True
        optimizer.layerwise = self

    def set_grad_accum(self, grad_accum: int) -> None:
        if isinstance(grad_accum, bool) or not isinstance(grad_accum, int) or grad_accum < 1:
            raise ConfigError(f"layer-wise stepping: grad_accum must be an integer >= 1, got {grad_accum!r}")
        self.grad_accum = grad_accum

    def _make_hook(self, group: dict[str, Any]) -> Any:
        def hook(p: Tensor) -> None:
            count = self._counts[id(p)] + 1
            if count >= self.grad_accum:
                with torch.no_grad():
                    self.optimizer.step_param(p, group)
                p.grad = None
                count = 0
            self._counts[id(p)] = count

        return hook

    def check_complete(self) -> None:
        """Raise unless every parameter is at a step boundary (no accumulation left half-way)."""
        pending = [self._names[k] for k, c in self._counts.items() if c]
        if pending:
            raise SlimkitError(
                f"layer-wise stepping: {len(pending)} parameter(s) received gradients on fewer micro-batches "
                f"than grad_accum={self.grad_accum} (e.g. {pending[0]})"
            )

    def check_clipping(self, clip_norm: float | None) -> None:
        if clip_norm:
            raise ConfigError(
                f"grad_clip={clip_norm}: global gradient clipping needs every gradient before any step, and "
                "layer-wise stepping frees each gradient as it steps; set grad_clip: 0 (or null) or layerwise: false"
            )

    def remove(self) -> None:
        """Unhook; the optimizer steps normally again."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.optimizer._layerwise = False
        self.optimizer.layerwise = None


__all__ = ["LayerwiseStepper"]
