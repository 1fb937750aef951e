"""Export a quantized model in the ``compressed-tensors`` pack-quantized layout (llm-compressor's W4A16 format).

vLLM and transformers (with the ``compressed-tensors`` package) load this layout; slimkit writes it
without needing that package. For every :class:`~slimkit.nn.quantized.QuantizedLinear` ``name``:

    name.weight_packed       int32 [out, ceil(in · b / 32)]   the codes + 2^(b-1), a dense little-endian
                                                              bit stream per row (32/b codes per word for
                                                              b in {2, 4, 8}; codes may straddle words)
    name.weight_scale        float32 [out, groups]
    name.weight_shape        int64 [2] = (out, in)
    name.weight_zero_point   int32 [ceil(out · b / 32), groups]  asymmetric only: zero points packed
                                                              the same way along the output dimension

and ``config.json`` gets a ``quantization_config`` (``quant_method: compressed-tensors``, one config
group with ``format: pack-quantized``, ``strategy: group`` or ``channel``, and every linear that is not
quantized — ``lm_head`` first — under ``ignore``). slimkit's own ``weight_packed`` uint8 rows are the
same bit stream, so the export only pads each row to whole 32-bit words and reinterprets the bytes;
the dequantized weights are identical (``(q - z) · s``, in fp32).

Not exportable: AWQ layers (their per-input-channel divisor ``input_scale`` has no place in the
format; llm-compressor folds it into the preceding norm or linear, which slimkit does not), and models
whose quantized layers differ in bits, group size or symmetry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.core.errors import ConfigError
from slimkit.models.adapters import is_linear
from slimkit.models.loading import save_model
from slimkit.nn.quant_primitives import pack
from slimkit.nn.quantized import QuantizedLinear

FORMAT = "pack-quantized"


def pack_int32(q: Tensor, bits: int, dim: int = 1) -> Tensor:
    """Signed codes ``[rows, cols]`` → int32, packed along ``dim`` as ``compressed-tensors`` does.

    The little-endian bit stream of :func:`slimkit.nn.quant_primitives.pack`, zero-padded to whole
    32-bit words and read as little-endian int32.
    """
    if dim == 0:
        return pack_int32(q.T.contiguous(), bits, 1).T.contiguous()
    return bytes_as_int32(pack(q, bits))


def bytes_as_int32(packed: Tensor) -> Tensor:
    """uint8 ``[rows, n]`` → int32 ``[rows, ceil(n / 4)]`` (zero-padded; byte ``4k + i`` is bits ``8i..8i+7``)."""
    rows, width = packed.shape
    pad = (-width) % 4
    if pad:
        packed = torch.cat([packed, packed.new_zeros(rows, pad)], dim=1)
    words = packed.reshape(rows, -1, 4).to(torch.int64)
    value = words[..., 0] | (words[..., 1] << 8) | (words[..., 2] << 16) | (words[..., 3] << 24)
    return torch.where(value >= 2**31, value - 2**32, value).to(torch.int32)  # two's complement


def _scheme(layers: dict[str, QuantizedLinear]) -> tuple[int, int | None, bool]:
    schemes = {(m.bits, m.group_size, m.symmetric) for m in layers.values()}
    if len(schemes) > 1:
        raise ConfigError(
            f"the quantized layers use {len(schemes)} different schemes {sorted(schemes, key=str)}; "
            "a compressed-tensors export here writes one (bits, group_size, symmetric) scheme"
        )
    return next(iter(schemes))


def quantization_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` ``quantization_config`` describing ``model``'s quantized layers.

    Raises:
        ConfigError: no quantized layer, mixed schemes, or an AWQ layer (see the module docstring).
    """
    layers = _quantized_layers(model)
    bits, group, symmetric = _scheme(layers)
    ignore = [name for name, module in model.named_modules() if is_linear(module) and name not in layers]
    weights = {
        "num_bits": bits,
        "type": "int",
        "symmetric": symmetric,
        "strategy": "channel" if group is None else "group",
        "group_size": group,
        "dynamic": False,
        "actorder": None,
        "observer": "minmax",
        "observer_kwargs": {},
        "block_structure": None,
    }
    return {
        "quant_method": "compressed-tensors",
        "format": FORMAT,
        "quantization_status": "compressed",
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": weights,
                "input_activations": None,
                "output_activations": None,
                "format": FORMAT,
            }
        },
        "ignore": ignore,
        "kv_cache_scheme": None,
        "sparsity_config": {},
        "transform_config": {},
        "global_compression_ratio": None,
    }


def _quantized_layers(model: nn.Module) -> dict[str, QuantizedLinear]:
    layers = {name: m for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    if not layers:
        raise ConfigError(
            "the model has no QuantizedLinear layer to export (quantize it without fake=True first)"
        )
    awq = [name for name, m in layers.items() if m.input_scale is not None]
    if awq:
        raise ConfigError(
            f"{len(awq)} layer(s) (e.g. {awq[0]}) carry AWQ's per-input-channel scale, which the compressed-tensors "
            "pack-quantized format cannot hold (llm-compressor folds it into the previous norm or linear; slimkit "
            "keeps it in the layer). Export a GPTQ or RTN model, or save this one with save_compressed"
        )
    return layers


def compressed_tensors_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model.state_dict()`` with every ``QuantizedLinear`` in the pack-quantized layout (CPU tensors)."""
    layers = _quantized_layers(model)
    bits, _, symmetric = _scheme(layers)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    for name, layer in layers.items():
        for key in ("weight_packed", "weight_scale", "weight_zero_point", "input_scale"):
            state.pop(f"{name}.{key}", None)
        state[f"{name}.weight_packed"] = bytes_as_int32(layer.weight_packed.cpu())
        state[f"{name}.weight_scale"] = layer.weight_scale.detach().cpu().float().contiguous()
        state[f"{name}.weight_shape"] = torch.tensor(
            [layer.out_features, layer.in_features], dtype=torch.int64
        )
        if not symmetric:
            state[f"{name}.weight_zero_point"] = pack_int32(layer.zero_point().cpu(), bits, dim=0)
    return state


def save_compressed_tensors(
    model: nn.Module,
    tokenizer: Any,
    out_dir: str | Path,
    *,
    metadata: dict[str, Any] | None = None,
    parent: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` (with ``QuantizedLinear`` layers) as a compressed-tensors pack-quantized directory.

    The directory is a Hugging Face model directory (``config.json`` with ``quantization_config``,
    ``model.safetensors``, the tokenizer) plus ``slimkit.json`` (provenance; ``"export":
    "compressed-tensors"``). transformers loads it with ``compressed-tensors`` installed; vLLM serves it.

    Raises:
        ConfigError: nothing to export, mixed schemes, or AWQ layers (see the module docstring).
        SlimkitError: ``out_dir`` may not be written (see :func:`slimkit.models.save_model`).
    """
    qconfig = quantization_config(model)
    state = compressed_tensors_state_dict(model)
    config = model.config
    had = hasattr(config, "quantization_config")
    previous = getattr(config, "quantization_config", None)
    config.quantization_config = qconfig
    try:
        return save_model(
            model,
            tokenizer,
            out_dir,
            metadata={**(metadata or {}), "export": "compressed-tensors"},
            parent=parent,
            state_dict=state,
            overwrite=overwrite,
        )
    finally:
        if had:
            config.quantization_config = previous
        else:
            del config.quantization_config


__all__ = [
    "FORMAT",
    "bytes_as_int32",
    "compressed_tensors_state_dict",
    "pack_int32",
    "quantization_config",
    "save_compressed_tensors",
]
