"""Compression: ``compress_(model, config, calib)`` and the methods it dispatches to.

Importing this package registers every built-in method with :data:`COMPRESSORS`.
"""

from __future__ import annotations

from slimkit.compress.api import (
    ALLOCATIONS,
    COMPRESSORS,
    build_config,
    calibration_for,
    compress_,
    method_name,
    needs_calibration,
)
from slimkit.compress.calibrate import CalibratedMethod, capture_block_inputs, run_sequential_
from slimkit.compress.export import read_bitmask_state_dict, save_compressed
from slimkit.compress.lowrank import SVDUniformConfig, WeLoreConfig
from slimkit.compress.prune import (
    MagnitudeConfig,
    OWLConfig,
    PruneConfig,
    SparseGPTConfig,
    WandaConfig,
)
from slimkit.compress.quant import AWQConfig, GPTQConfig, QuantConfig, QuantReport, RTNConfig
from slimkit.compress.report import CompressionReport, MatrixReport
from slimkit.compress.skip import EarlyExitConfig, FFNSkipConfig, LayerDropConfig
from slimkit.compress.structured import FFNStructuredConfig, StructuredReport

__all__ = [
    "ALLOCATIONS",
    "AWQConfig",
    "COMPRESSORS",
    "CalibratedMethod",
    "CompressionReport",
    "EarlyExitConfig",
    "FFNSkipConfig",
    "FFNStructuredConfig",
    "GPTQConfig",
    "LayerDropConfig",
    "MagnitudeConfig",
    "MatrixReport",
    "OWLConfig",
    "PruneConfig",
    "QuantConfig",
    "QuantReport",
    "RTNConfig",
    "SVDUniformConfig",
    "SparseGPTConfig",
    "StructuredReport",
    "WandaConfig",
    "WeLoreConfig",
    "build_config",
    "calibration_for",
    "capture_block_inputs",
    "compress_",
    "method_name",
    "needs_calibration",
    "read_bitmask_state_dict",
    "run_sequential_",
    "save_compressed",
]
