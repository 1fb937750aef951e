"""Weight-only quantization: round-to-nearest (RTN), GPTQ and AWQ, stored packed in ``QuantizedLinear``.

    from slimkit.compress import compress_, calibration_for
    from slimkit.compress.quant import GPTQConfig, RTNConfig

    report = compress_(model, RTNConfig(bits=8))                      # data-free
    calib = calibration_for(model, tok, nsamples=128, seqlen=2048)
    report = compress_(model, GPTQConfig(bits=4, group_size=128), calib)
    print(report.summary())                                           # bits per weight, weight error

Importing this package registers the three with ``compress_`` (short names ``rtn``, ``gptq``, ``awq``).
Export for vLLM / transformers: :func:`slimkit.compress.quant.export.save_compressed_tensors`.
See docs/quantization.md.
"""

from __future__ import annotations

from slimkit.compress.quant.awq import AWQMethod, awq_quantize, awq_scales, awq_search
from slimkit.compress.quant.config import AWQConfig, GPTQConfig, QuantConfig, RTNConfig
from slimkit.compress.quant.gptq import GPTQMethod, gptq_quantize, gptq_sweep, layer_output_error
from slimkit.compress.quant.handler import awq_compress_, gptq_compress_, rtn_compress_, select_quant_targets
from slimkit.compress.quant.report import QuantMatrixReport, QuantReport

__all__ = [
    "AWQConfig",
    "AWQMethod",
    "GPTQConfig",
    "GPTQMethod",
    "QuantConfig",
    "QuantMatrixReport",
    "QuantReport",
    "RTNConfig",
    "awq_compress_",
    "awq_quantize",
    "awq_scales",
    "awq_search",
    "gptq_compress_",
    "gptq_quantize",
    "gptq_sweep",
    "layer_output_error",
    "rtn_compress_",
    "select_quant_targets",
]
