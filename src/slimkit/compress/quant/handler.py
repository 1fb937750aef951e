"""The ``compress_`` handlers of RTN, GPTQ and AWQ: select, quantize, swap in ``QuantizedLinear``, report.

1. select the targets (every linear in the decoder blocks unless ``targets`` / ``ignore`` say
   otherwise; embeddings and ``lm_head`` never) and check that ``group_size`` divides every input
   width, before any work;
2. choose the codes: RTN directly per matrix; GPTQ and AWQ through the sequential calibration runner
   (:func:`~slimkit.compress.calibrate.run_sequential_`), so each block is calibrated on what the
   already-quantized blocks before it produce;
3. replace each target by a :class:`~slimkit.nn.quantized.QuantizedLinear` holding the packed codes
   (or, with ``fake``, write the dequantized weight into the original layer);
4. report bits per weight, the storage reduction and each matrix's relative weight error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.compress.api import COMPRESSORS, method_name
from slimkit.compress.calibrate import check_calibration, run_sequential_
from slimkit.compress.quant.awq import AWQMethod
from slimkit.compress.quant.config import AWQConfig, GPTQConfig, QuantConfig, RTNConfig
from slimkit.compress.quant.gptq import GPTQMethod
from slimkit.compress.quant.report import QuantMatrixReport, QuantReport
from slimkit.compress.report import _block_of, calibration_record
from slimkit.core.errors import ConfigError, TargetError
from slimkit.core.progress import track
from slimkit.core.targeting import select_modules
from slimkit.models.adapters import block_linear_filter, get_adapter, linear_weight, set_linear_weight
from slimkit.nn.lowrank import replace_module_
from slimkit.nn.quant_primitives import quantize_groupwise
from slimkit.nn.quantized import QuantizedLinear


def select_quant_targets(model: nn.Module, config: QuantConfig) -> dict[str, nn.Module]:
    """The linears inside the decoder blocks that ``config`` selects, each checked against ``group_size``.

    Raises:
        TargetError: nothing selected.
        ConfigError: ``group_size`` does not divide a target's input width (all of them are named).
    """
    patterns = config.targets or ("re:.",)
    selected = select_modules(model, patterns, config.ignore, candidates=block_linear_filter(model))
    if not selected:
        raise TargetError(
            f"no linear layer left to quantize (targets={list(config.targets)}, ignore={list(config.ignore)})"
        )
    group = config.group_size
    if group is not None:
        bad = {
            name: linear_weight(m).shape[1]
            for name, m in selected.items()
            if linear_weight(m).shape[1] % group
        }
        if bad:
            widths = sorted(set(bad.values()))
            first = next(iter(bad))
            raise ConfigError(
                f"group_size={group} does not divide the input width of {len(bad)} target(s) "
                f"(widths {widths}, e.g. {first}); choose a common divisor of the widths, or "
                "group_size=None for one scale per output channel"
            )
    return selected


class _Quantizer:
    """Turns chosen codes into the stored layer and keeps the per-matrix records."""

    def __init__(self, model: nn.Module, config: QuantConfig) -> None:
        self.model = model
        self.config = config
        self.records: dict[str, QuantMatrixReport] = {}
        self.stored_bits = 0
        self.dense_bits = 0
        self.alphas: dict[str, float] = {}

    @torch.no_grad()
    def finish(
        self,
        name: str,
        module: nn.Module,
        q: Tensor,
        scale: Tensor,
        zero: Tensor,
        input_scale: Tensor | None = None,
    ) -> None:
        cfg = self.config
        weight = linear_weight(module)
        bias = getattr(module, "bias", None)
        layer = QuantizedLinear.from_codes(
            q,
            scale,
            zero,
            cfg.bits,
            cfg.group_size,
            symmetric=cfg.symmetric,
            bias=None if bias is None else bias.detach(),
            input_scale=input_scale,
            dtype=weight.dtype,
        ).to(weight.device)
        applied = layer.dense_weight(torch.float32)
        reference = weight.detach().float()
        error = float((applied - reference).norm() / reference.norm().clamp_min(1e-30))
        dense_bits = weight.element_size() * 8
        if cfg.fake:
            set_linear_weight(module, applied)
            bits_per_weight = float(dense_bits)
        else:
            replace_module_(self.model, name, layer)
            bits_per_weight = layer.bits_per_weight
        rows, cols = weight.shape
        self.stored_bits += round(bits_per_weight * rows * cols)
        self.dense_bits += dense_bits * rows * cols
        self.records[name] = QuantMatrixReport(
            name=name,
            shape=(int(rows), int(cols)),
            sparsity=0.0,
            target_sparsity=0.0,
            time_s=0.0,
            bits_per_weight=bits_per_weight,
            weight_error=error,
            dense_bits=dense_bits,
        )


class _Timed:
    """A :class:`~slimkit.compress.calibrate.CalibratedMethod` wrapper recording each compress's seconds."""

    def __init__(self, method: Any, records: dict[str, QuantMatrixReport]) -> None:
        self.method = method
        self.records = records
        self.modifies_weights = method.modifies_weights

    def observe(self, name: str, inputs: Tensor) -> None:
        self.method.observe(name, inputs)

    def reset(self) -> None:
        self.method.reset()

    def compress(self, name: str, module: nn.Module) -> None:
        start = time.perf_counter()
        self.method.compress(name, module)
        self.records[name].time_s = time.perf_counter() - start


def _rtn(
    quantizer: _Quantizer, targets: dict[str, nn.Module], device: torch.device | None, progress: bool
) -> None:
    cfg = quantizer.config
    items = track(targets.items(), "rtn") if progress else targets.items()
    for name, module in items:
        start = time.perf_counter()
        weight = linear_weight(module)
        compute = weight.to(device) if device is not None else weight
        q, scale, zero = quantize_groupwise(compute, cfg.bits, cfg.group_size, symmetric=cfg.symmetric)
        home = weight.device
        quantizer.finish(name, module, q.to(home), scale.to(home), zero.to(home))
        quantizer.records[name].time_s = time.perf_counter() - start


def _report(
    model: nn.Module, config: QuantConfig, quantizer: _Quantizer, calib: Tensor | None
) -> QuantReport:
    n_blocks = len(get_adapter(model).blocks(model))
    touched = {_block_of(name) for name in quantizer.records}
    records = list(quantizer.records.values())
    for r in records:
        r.alpha = quantizer.alphas.get(r.name)
    weights = sum(r.shape[0] * r.shape[1] for r in records)
    return QuantReport(
        method=method_name(config),
        config=config.to_dict(),
        matrices=records,
        overall_sparsity=0.0,
        block_sparsity=[0.0 if i in touched else None for i in range(n_blocks)],
        calibration=None if calib is None else calibration_record(calib),
        bits=config.bits,
        group_size=config.group_size,
        symmetric=config.symmetric,
        fake=config.fake,
        bits_per_weight=quantizer.stored_bits / weights,
        size_reduction=1.0 - quantizer.stored_bits / quantizer.dense_bits,
        mean_weight_error=sum(r.weight_error for r in records) / len(records),
        stored_bits=quantizer.stored_bits,
        dense_bits=quantizer.dense_bits,
    )


def _calibrated(
    model: nn.Module,
    config: GPTQConfig | AWQConfig,
    calib: Tensor | None,
    make: Callable[[_Quantizer, dict[str, nn.Module]], Any],
    *,
    device: torch.device | None,
    progress: bool,
    chunk_size: int,
) -> QuantReport:
    name = method_name(config)
    calib = check_calibration(calib, name)
    targets = select_quant_targets(model, config)
    quantizer = _Quantizer(model, config)
    method = make(quantizer, targets)
    run_sequential_(
        model,
        _Timed(method, quantizer.records),
        calib,
        targets,
        device=device,
        chunk_size=chunk_size,
        sequential_groups=method.sequential_groups(get_adapter(model)),
        propagate_compressed=config.sequential,
        progress=progress,
        description=name,
    )
    quantizer.alphas = dict(getattr(method, "alphas", {}))
    return _report(model, config, quantizer, calib)


@COMPRESSORS.register(RTNConfig, "rtn")
def rtn_compress_(
    model: nn.Module,
    config: RTNConfig,
    calib: Tensor | None = None,
    *,
    device: torch.device | None = None,
    progress: bool = True,
    chunk_size: int = 8,
) -> QuantReport:
    """Round-to-nearest (the ``compress_`` handler of :class:`RTNConfig`); data-free."""
    targets = select_quant_targets(model, config)
    quantizer = _Quantizer(model, config)
    _rtn(quantizer, targets, device, progress)
    return _report(model, config, quantizer, None)


@COMPRESSORS.register(GPTQConfig, "gptq")
def gptq_compress_(
    model: nn.Module,
    config: GPTQConfig,
    calib: Tensor | None = None,
    *,
    device: torch.device | None = None,
    progress: bool = True,
    chunk_size: int = 8,
) -> QuantReport:
    """GPTQ (the ``compress_`` handler of :class:`GPTQConfig`); needs calibration ids ``[nsamples, seqlen]``."""
    return _calibrated(
        model,
        config,
        calib,
        lambda quantizer, targets: GPTQMethod(config, quantizer.finish),
        device=device,
        progress=progress,
        chunk_size=chunk_size,
    )


@COMPRESSORS.register(AWQConfig, "awq")
def awq_compress_(
    model: nn.Module,
    config: AWQConfig,
    calib: Tensor | None = None,
    *,
    device: torch.device | None = None,
    progress: bool = True,
    chunk_size: int = 8,
) -> QuantReport:
    """AWQ (the ``compress_`` handler of :class:`AWQConfig`); needs calibration ids ``[nsamples, seqlen]``."""
    return _calibrated(
        model,
        config,
        calib,
        lambda quantizer, targets: AWQMethod(config, targets, quantizer.finish),
        device=device,
        progress=progress,
        chunk_size=chunk_size,
    )


__all__ = ["awq_compress_", "gptq_compress_", "rtn_compress_", "select_quant_targets"]
