"""Saving compressed models: dense (plain Hugging Face) or compact bitmask storage.

``save_compressed(model, tok, out_dir, report, storage=...)`` writes a model directory with
``slimkit.json`` recording the method, its config and the :class:`CompressionReport`.

* ``storage="dense"``: a plain Hugging Face directory whose pruned weights are zeros. It loads in
  plain ``transformers`` and in :func:`slimkit.models.load_model`; the file is as large as the dense
  model.
* ``storage="bitmask"``: every pruned matrix ``W`` (as stored in the state dict, shape ``S``) is
  replaced in ``model.safetensors`` by three tensors:

  - ``<name>.bitmask_values``: the kept entries of ``W.flatten()`` in row-major order, in the
    weight's dtype;
  - ``<name>.bitmask_packed``: ``uint8 [ceil(numel / 8)]``, bit ``j`` (value ``2**j``, i.e.
    little-endian bit order, as ``numpy.packbits(..., bitorder="little")``) of byte ``b`` says
    whether flat element ``8*b + j`` is kept; padding bits are 0;
  - ``<name>.bitmask_shape``: ``int64 [ndim]``, ``S``.

  "Kept" means the stored bit pattern is not all zeros, so ``-0.0`` survives and the round trip is
  bit-identical. A matrix is encoded only when that is smaller than storing it dense (for fp16 above
  ~6% sparsity, fp32 above ~3%). Every other tensor is stored as is. ``slimkit.json`` says
  ``"storage": "bitmask"`` and :func:`slimkit.models.load_model` rebuilds the dense state dict through
  the registered storage reader :func:`read_bitmask_state_dict`. Plain ``transformers`` cannot load
  this format.

Low-rank models (WeLore, uniform SVD) store each factored matrix as its two factors
``<name>.down.weight [k, in]`` and ``<name>.up.weight [out, k]`` (+ ``<name>.up.bias``);
``slimkit.json`` gets ``"restore": ["lowrank"]`` and ``"lowrank": {"modules": {name: {in_features,
out_features, rank, bias}}}`` (see :mod:`slimkit.nn.lowrank`), so :func:`slimkit.models.load_model`
rebuilds the ``LowRankLinear`` modules. Such models are saved with ``storage="dense"`` only.

Quantized models (RTN, GPTQ, AWQ) store each ``QuantizedLinear``'s packed codes and group parameters
(``<name>.weight_packed`` uint8, ``<name>.weight_scale`` fp32, ``<name>.weight_zero_point`` int8 when
asymmetric, ``<name>.input_scale`` for AWQ); ``slimkit.json`` gets ``"restore": ["quantized"]`` and
``"quantized": {"modules": {name: spec}, "bits_per_weight": b}`` (see :mod:`slimkit.nn.quantized`).
For serving elsewhere, :func:`slimkit.compress.quant.export.save_compressed_tensors` writes the
``compressed-tensors`` pack-quantized layout instead.

FFN-skip models (:mod:`slimkit.nn.ffn_skip`) keep their dense weights under the wrapped names
(``<mlp>.inner.*``); ``slimkit.json`` gets ``"ffn-skip"`` in ``restore`` and the gate's settings
(calibrated τ, warm-up, extent, wrapped sites) under ``"ffn-skip"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.compress.report import CompressionReport
from slimkit.core.config import check_choice
from slimkit.core.errors import ConfigError, ModelLoadError
from slimkit.core.io import load_tensors
from slimkit.models.loading import save_model
from slimkit.models.metadata import register_storage_reader
from slimkit.nn.ffn_skip import RESTORER as FFN_SKIP_RESTORER
from slimkit.nn.ffn_skip import ffn_skip_metadata
from slimkit.nn.lowrank import RESTORER as LOWRANK_RESTORER
from slimkit.nn.lowrank import lowrank_metadata
from slimkit.nn.quantized import RESTORER as QUANTIZED_RESTORER
from slimkit.nn.quantized import quantized_metadata

BITMASK = "bitmask"
COMPRESSED_TENSORS = "compressed-tensors"
STORAGES = ("dense", BITMASK, COMPRESSED_TENSORS)
VALUES, PACKED, SHAPE = ".bitmask_values", ".bitmask_packed", ".bitmask_shape"
_BIT_WEIGHTS = torch.tensor([1 << j for j in range(8)], dtype=torch.uint8)
_SAME_WIDTH_INT = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def pack_bitmask(mask: Tensor) -> Tensor:
    """Pack a bool tensor (flattened row-major) into ``uint8 [ceil(numel/8)]``, little-endian bit order."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.reshape(-1, 8) * _BIT_WEIGHTS.to(flat.device)).sum(dim=1, dtype=torch.uint8)


def unpack_bitmask(packed: Tensor, numel: int) -> Tensor:
    """Inverse of :func:`pack_bitmask`: bool ``[numel]``."""
    bits = packed.reshape(-1, 1).bitwise_and(_BIT_WEIGHTS.to(packed.device)).ne(0)
    return bits.reshape(-1)[:numel]


def kept_mask(weight: Tensor) -> Tensor:
    """Entries whose bit pattern is not all zeros (so ``-0.0`` counts as kept)."""
    int_dtype = _SAME_WIDTH_INT.get(weight.dtype)
    return weight.view(int_dtype).ne(0) if int_dtype is not None else weight.ne(0)


def encode_bitmask(weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(values, packed, shape)`` of a weight (see the module docstring)."""
    kept = kept_mask(weight.detach()).reshape(-1)
    values = weight.detach().reshape(-1)[kept].clone()
    return values, pack_bitmask(kept), torch.tensor(list(weight.shape), dtype=torch.int64)


def decode_bitmask(values: Tensor, packed: Tensor, shape: Tensor) -> Tensor:
    """Rebuild the dense weight from :func:`encode_bitmask`'s output (bit-identical)."""
    dims = [int(d) for d in shape.tolist()]
    numel = 1
    for d in dims:
        numel *= d
    kept = unpack_bitmask(packed, numel)
    if int(kept.sum()) != values.numel():
        raise ModelLoadError(
            f"bitmask storage is inconsistent: {int(kept.sum())} mask bits set but {values.numel()} values"
        )
    dense = torch.zeros(numel, dtype=values.dtype)
    dense[kept] = values
    return dense.reshape(dims)


def _encoded_bytes(values: Tensor, packed: Tensor, shape: Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in (values, packed, shape))


def compact_state_dict(model: nn.Module, names: list[str]) -> dict[str, Tensor]:
    """``model.state_dict()`` with ``<name>.weight`` of each module in ``names`` bitmask-encoded."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    for name in names:
        key = f"{name}.weight"
        weight = state[key]
        values, packed, shape = encode_bitmask(weight)
        if _encoded_bytes(values, packed, shape) < weight.numel() * weight.element_size():
            del state[key]
            state[key + VALUES], state[key + PACKED], state[key + SHAPE] = values, packed, shape
    return state


def save_compressed(
    model: nn.Module,
    tokenizer: Any,
    out_dir: str | Path,
    report: CompressionReport,
    *,
    storage: str = "dense",
    parent: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a compressed model directory (atomically) and return its path.

    Args:
        model: the compressed model.
        tokenizer: saved beside it (or ``None``).
        out_dir: the directory to write.
        report: what ``compress_`` returned; stored in ``slimkit.json`` with the method and config.
        storage: ``"dense"`` (plain HF, zeros stored), ``"bitmask"`` (non-zeros + packed mask) or
            ``"compressed-tensors"`` (a quantized model in the pack-quantized layout, see
            :mod:`slimkit.compress.quant.export`).
        parent: the directory (or model hash) the model was made from, recorded for provenance;
            ``out_dir`` may never be or contain it.
        overwrite: replace an existing ``out_dir`` that slimkit did not write. Default: ``False``.

    Raises:
        ConfigError: unknown ``storage``.
    """
    check_choice("storage", storage, STORAGES)
    metadata: dict[str, Any] = {"method": report.method, "config": report.config, "report": report.to_dict()}
    if storage == COMPRESSED_TENSORS:
        from slimkit.compress.quant.export import save_compressed_tensors

        return save_compressed_tensors(
            model, tokenizer, out_dir, metadata=metadata, parent=parent, overwrite=overwrite
        )
    for restorer, describe, what in (
        (LOWRANK_RESTORER, lowrank_metadata, "a low-rank model is saved with storage='dense' (its factors)"),
        (
            QUANTIZED_RESTORER,
            quantized_metadata,
            "a quantized model is saved with storage='dense' (its packed codes)",
        ),
    ):
        entry = describe(model)
        if not entry["modules"]:
            continue
        if storage != "dense":
            raise ConfigError(f"{what}, not {storage!r}")
        metadata["restore"] = [*metadata.get("restore", []), restorer]
        metadata[restorer] = entry
    skip = ffn_skip_metadata(model)
    if skip:  # FFN-skip wrappers (their weights are the dense ones, under ``<mlp>.inner.``)
        metadata["restore"] = [*metadata.get("restore", []), FFN_SKIP_RESTORER]
        metadata[FFN_SKIP_RESTORER] = skip
    state_dict = None
    if storage == BITMASK:
        metadata["storage"] = BITMASK
        state_dict = compact_state_dict(model, [m.name for m in report.matrices])
    return save_model(
        model,
        tokenizer,
        out_dir,
        metadata=metadata,
        parent=parent,
        state_dict=state_dict,
        overwrite=overwrite,
    )


@register_storage_reader(BITMASK)
def read_bitmask_state_dict(model_dir: str | Path) -> dict[str, Tensor]:
    """The dense state dict of a ``storage="bitmask"`` directory (all ``*.safetensors`` files).

    Raises:
        ModelLoadError: no weights file, a corrupt file, or an incomplete bitmask triple.
    """
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"{model_dir} has no *.safetensors file")
    raw: dict[str, Tensor] = {}
    for path in files:
        raw.update(load_tensors(path))
    state: dict[str, Tensor] = {}
    for key, tensor in raw.items():
        if key.endswith(VALUES):
            base = key[: -len(VALUES)]
            if base + PACKED not in raw or base + SHAPE not in raw:
                raise ModelLoadError(f"{model_dir}: bitmask tensors of {base} are incomplete")
            state[base] = decode_bitmask(tensor, raw[base + PACKED], raw[base + SHAPE])
        elif not key.endswith((PACKED, SHAPE)):
            state[key] = tensor
    return state
