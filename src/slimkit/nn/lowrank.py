"""``LowRankLinear``: a linear layer stored as two thin factors, and its load-time restorer.

WeLore — "From GaLore to WeLore: How Low-Rank Weights Non-uniformly Emerge from Low-Rank Gradients"
(Jaiswal et al., arXiv 2407.11239). A weight ``W [out, in]`` with SVD ``W = U S Vᵀ`` truncated to rank
``k`` is stored as

    down.weight = diag(√S_k) · V_kᵀ     [k, in]
    up.weight   = U_k · diag(√S_k)      [out, k]        (up.bias = the original bias, if any)

    y = up(down(x)) = U_k S_k V_kᵀ x + b                x: [..., in] -> y: [..., out]

Splitting √S between the two factors (as the reference does) keeps both factors on the same scale,
which matters when they are trained. Storing costs ``k·(in + out)`` weights instead of ``in·out``, a
saving only when ``k < in·out / (in + out)``.

A model directory holding such layers records them in ``slimkit.json`` under ``"lowrank"``
(:func:`lowrank_metadata`) with ``"restore": ["lowrank"]``; :func:`slimkit.models.load_model` calls the
restorer :func:`restore_lowrank` to swap the listed modules for empty ``LowRankLinear`` of the recorded
shapes before loading the state dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.core.errors import ModelLoadError
from slimkit.models.metadata import register_restorer

RESTORER = "lowrank"


class LowRankLinear(nn.Module):
    """``y = up(down(x))``: a rank-``rank`` linear map ``[..., in_features] -> [..., out_features]``.

    Args:
        in_features / out_features: the dense layer's shape.
        rank: inner dimension ``k`` (>= 1).
        bias: whether ``up`` carries the dense layer's bias. Default: False.
        dtype / device: of the factors. Default: torch's defaults.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        *,
        bias: bool = False,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LowRankLinear rank must be >= 1, got {rank}")
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False, dtype=dtype, device=device)
        self.up = nn.Linear(rank, out_features, bias=bias, dtype=dtype, device=device)

    @classmethod
    def from_factors(
        cls,
        u: Tensor,
        s: Tensor,
        vh: Tensor,
        *,
        bias: Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> LowRankLinear:
        """Build from truncated SVD factors ``u [out, k]``, ``s [k]``, ``vh [k, in]`` (any float dtype).

        The factors are multiplied in their own precision, then cast to ``dtype`` (default: ``u``'s).
        """
        rank = int(s.numel())
        dtype = dtype or u.dtype
        layer = cls(vh.shape[1], u.shape[0], rank, bias=bias is not None, dtype=dtype, device=u.device)
        root = s.clamp_min(0).sqrt()
        with torch.no_grad():
            layer.down.weight.copy_((root[:, None] * vh).to(dtype))
            layer.up.weight.copy_((u * root[None, :]).to(dtype))
            if bias is not None:
                layer.up.bias.copy_(bias.to(dtype))
        return layer

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.down(x))

    def dense_weight(self) -> Tensor:
        """``up.weight @ down.weight``: the ``[out, in]`` matrix this layer applies."""
        return self.up.weight @ self.down.weight

    @property
    def factor_params(self) -> int:
        """Weights stored in the two factors (bias excluded): ``rank * (in + out)``."""
        return self.rank * (self.in_features + self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def lowrank_metadata(model: nn.Module) -> dict[str, Any]:
    """``{"modules": {name: {in_features, out_features, rank, bias}}}`` of every ``LowRankLinear``
    in ``model`` (empty ``modules`` when there is none): what :func:`restore_lowrank` needs."""
    modules = {
        name: {
            "in_features": m.in_features,
            "out_features": m.out_features,
            "rank": m.rank,
            "bias": m.up.bias is not None,
        }
        for name, m in model.named_modules()
        if isinstance(m, LowRankLinear)
    }
    return {"modules": modules}


def replace_module_(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` where the submodule called ``name`` is; return the module it replaced."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


@register_restorer(RESTORER)
def restore_lowrank(model: nn.Module, model_dir: Path, meta: dict[str, Any]) -> None:
    """Swap every module listed in ``meta["lowrank"]["modules"]`` for an empty ``LowRankLinear``.

    Raises:
        ModelLoadError: the entry is missing or malformed, or names a module the model lacks.
    """
    entry = meta.get(RESTORER)
    modules = entry.get("modules") if isinstance(entry, dict) else None
    if not isinstance(modules, dict):
        raise ModelLoadError(
            f"{model_dir}: slimkit.json asks to restore 'lowrank' but has no lowrank.modules"
        )
    for name, spec in modules.items():
        try:
            old = model.get_submodule(name)
            shape = (int(spec["in_features"]), int(spec["out_features"]), int(spec["rank"]))
            bias = bool(spec.get("bias", False))
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ModelLoadError(f"{model_dir}: bad lowrank entry for {name!r}: {e}") from None
        reference = next(old.parameters(), None)
        dtype = reference.dtype if reference is not None else None
        device = reference.device if reference is not None else None
        replace_module_(model, name, LowRankLinear(*shape, bias=bias, dtype=dtype, device=device))


__all__ = ["RESTORER", "LowRankLinear", "lowrank_metadata", "replace_module_", "restore_lowrank"]
