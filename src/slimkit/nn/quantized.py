"""``QuantizedLinear``: a linear layer stored as packed ``b``-bit codes with group scales and zeros.

Weight-only quantization (RTN; GPTQ, Frantar et al., arXiv 2210.17323; AWQ, Lin et al., arXiv
2306.00978) replaces a weight ``W [out, in]`` by integer codes ``q`` and per-group parameters
(:mod:`slimkit.nn.quant_primitives` has the one copy of that math):

    Ŵ = (q - z_g) · s_g                       q: signed b-bit codes, groups of ``group_size`` columns
    y = (x ⊙ a⁻¹) Ŵᵀ + b                      x: [..., in] -> y: [..., out]

``a`` is AWQ's per-input-channel scale (``input_scale [in]``; absent for RTN/GPTQ): AWQ quantizes
``W · diag(a)`` and divides the input by ``a``, which is exact in real arithmetic.

Stored buffers (the names of ``compressed-tensors``' pack-quantized format, so an export relabels them):

    weight_packed      uint8 [out, ceil(in · b / 8)]    codes, little-endian bit stream per row
    weight_scale       float32 [out, groups]            groups = in // group_size (1 per channel)
    weight_zero_point  int8 [out, groups]               asymmetric only
    input_scale        float32 [in]                     AWQ only
    bias               the dense layer's bias, in its dtype

The forward dequantizes into the input's dtype on every call: memory holds only the packed codes
(``b`` bits per weight plus ``32 / group_size`` bits of scale, :attr:`bits_per_weight`), at the cost of
the unpack. A model directory with such layers records them in ``slimkit.json`` under
``"quantized"`` (:func:`quantized_metadata`) with ``"restore": ["quantized"]``, and
:func:`slimkit.models.load_model` rebuilds them with :func:`restore_quantized`. Nothing here needs
torchao or compressed-tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.core.errors import ModelLoadError
from slimkit.models.metadata import register_restorer
from slimkit.nn.lowrank import replace_module_
from slimkit.nn.quant_primitives import check_bits, dequantize, num_groups, pack, packed_cols, unpack

RESTORER = "quantized"


class QuantizedLinear(nn.Module):
    """A ``[..., in_features] -> [..., out_features]`` linear map with ``bits``-bit packed weights.

    Args:
        in_features / out_features: the dense layer's shape.
        bits: code width in ``[1, 8]``.
        group_size: columns per scale group (dividing ``in_features``); ``None``: one per output channel.
        symmetric: zero points are 0 and not stored. Default: True.
        bias: whether the layer has a bias. Default: False.
        input_scale: keep a per-input-channel divisor (AWQ). Default: False.
        dtype: of the bias (and the default compute dtype). Default: torch's default.
        device: of every buffer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bits: int,
        group_size: int | None = 128,
        *,
        symmetric: bool = True,
        bias: bool = False,
        input_scale: bool = False,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        check_bits(bits)
        groups = num_groups(in_features, group_size)
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.symmetric = bits, group_size, symmetric
        self.compute_dtype = dtype or torch.get_default_dtype()
        pcols = packed_cols(in_features, bits)
        self.register_buffer(
            "weight_packed", torch.zeros(out_features, pcols, dtype=torch.uint8, device=device)
        )
        self.register_buffer(
            "weight_scale", torch.ones(out_features, groups, dtype=torch.float32, device=device)
        )
        if symmetric:
            self.weight_zero_point: Tensor | None = None
        else:
            self.register_buffer(
                "weight_zero_point", torch.zeros(out_features, groups, dtype=torch.int8, device=device)
            )
        if input_scale:
            self.register_buffer("input_scale", torch.ones(in_features, dtype=torch.float32, device=device))
        else:
            self.input_scale: Tensor | None = None
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    def from_codes(
        cls,
        q: Tensor,
        scale: Tensor,
        zero: Tensor,
        bits: int,
        group_size: int | None,
        *,
        symmetric: bool,
        bias: Tensor | None = None,
        input_scale: Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> QuantizedLinear:
        """Build from codes ``q [out, in]`` (int8) and group params ``scale``/``zero [out, groups]``.

        ``dtype`` is the compute dtype (default: ``bias``'s, else torch's default).
        """
        out_features, in_features = q.shape
        dtype = dtype or (bias.dtype if bias is not None else None)
        layer = cls(
            in_features,
            out_features,
            bits,
            group_size,
            symmetric=symmetric,
            bias=bias is not None,
            input_scale=input_scale is not None,
            dtype=dtype,
            device=q.device,
        )
        if symmetric and bool((zero != 0).any()):
            raise ValueError("symmetric QuantizedLinear needs all-zero zero points")
        with torch.no_grad():
            layer.weight_packed.copy_(pack(q, bits))
            layer.weight_scale.copy_(scale.float())
            if layer.weight_zero_point is not None:
                layer.weight_zero_point.copy_(zero.to(torch.int8))
            if input_scale is not None:
                layer.input_scale.copy_(input_scale.float())
            if bias is not None:
                layer.bias.copy_(bias)
        return layer

    def codes(self) -> Tensor:
        """The signed int8 codes ``[out, in]``."""
        return unpack(self.weight_packed, self.bits, self.in_features)

    def zero_point(self) -> Tensor:
        """``[out, groups]`` int8 (zeros when symmetric)."""
        if self.weight_zero_point is not None:
            return self.weight_zero_point
        return torch.zeros_like(self.weight_scale, dtype=torch.int8)

    def dequantize(self, dtype: torch.dtype | None = None) -> Tensor:
        """``Ŵ = (q - z) · s`` ``[out, in]``: the matrix applied to ``x ⊙ a⁻¹``."""
        return dequantize(
            self.codes(),
            self.weight_scale,
            self.zero_point(),
            self.group_size,
            dtype=dtype or self.compute_dtype,
        )

    def dense_weight(self, dtype: torch.dtype | None = None) -> Tensor:
        """The ``[out, in]`` matrix this layer applies to ``x`` itself (``Ŵ · diag(a⁻¹)``)."""
        w = self.dequantize(torch.float32)
        if self.input_scale is not None:
            w = w / self.input_scale
        return w.to(dtype or self.compute_dtype)

    def forward(self, x: Tensor) -> Tensor:
        if self.input_scale is not None:
            x = x / self.input_scale.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantize(x.dtype), bias)

    @property
    def weight_bits(self) -> int:
        """Bits stored for the weight: codes, scales, zero points, input scale (bias excluded)."""
        total = self.weight_packed.numel() * 8 + self.weight_scale.numel() * 32
        if self.weight_zero_point is not None:
            total += self.weight_zero_point.numel() * 8
        if self.input_scale is not None:
            total += self.input_scale.numel() * 32
        return total

    @property
    def bits_per_weight(self) -> float:
        """:attr:`weight_bits` per weight of the dense matrix (e.g. 4.25 for 4 bits, group 128)."""
        return self.weight_bits / (self.in_features * self.out_features)

    def spec(self) -> dict[str, Any]:
        """What :func:`restore_quantized` needs to rebuild this layer's shape."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bits": self.bits,
            "group_size": self.group_size,
            "symmetric": self.symmetric,
            "bias": self.bias is not None,
            "input_scale": self.input_scale is not None,
        }

    def extra_repr(self) -> str:
        group = "per-channel" if self.group_size is None else f"group_size={self.group_size}"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, {group}, "
            f"symmetric={self.symmetric}, awq={self.input_scale is not None}"
        )


def quantized_metadata(model: nn.Module) -> dict[str, Any]:
    """``{"modules": {name: spec}, "bits_per_weight": float | None}`` of every ``QuantizedLinear``."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    weights = sum(m.in_features * m.out_features for m in layers.values())
    stored = sum(m.weight_bits for m in layers.values())
    return {
        "modules": {name: m.spec() for name, m in layers.items()},
        "bits_per_weight": stored / weights if weights else None,
    }


@register_restorer(RESTORER)
def restore_quantized(model: nn.Module, model_dir: Path, meta: dict[str, Any]) -> None:
    """Swap every module listed in ``meta["quantized"]["modules"]`` for an empty ``QuantizedLinear``.

    Raises:
        ModelLoadError: the entry is missing or malformed, or names a module the model lacks.
    """
    entry = meta.get(RESTORER)
    modules = entry.get("modules") if isinstance(entry, dict) else None
    if not isinstance(modules, dict):
        raise ModelLoadError(
            f"{model_dir}: slimkit.json asks to restore 'quantized' but has no quantized.modules"
        )
    for name, spec in modules.items():
        try:
            old = model.get_submodule(name)
            group = spec["group_size"]
            layer_args = (int(spec["in_features"]), int(spec["out_features"]), int(spec["bits"]))
            options = {
                "symmetric": bool(spec["symmetric"]),
                "bias": bool(spec.get("bias", False)),
                "input_scale": bool(spec.get("input_scale", False)),
            }
            reference = next(old.parameters(), None)
            layer = QuantizedLinear(
                *layer_args,
                None if group is None else int(group),
                dtype=reference.dtype if reference is not None else None,
                device=reference.device if reference is not None else None,
                **options,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ModelLoadError(f"{model_dir}: bad quantized entry for {name!r}: {e}") from None
        replace_module_(model, name, layer)


__all__ = ["RESTORER", "QuantizedLinear", "quantized_metadata", "restore_quantized"]
