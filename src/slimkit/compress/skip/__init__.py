"""Decode-time skipping: FFN-SkipLLM, and the layer-skipping baselines it is compared with.

    from slimkit.compress import compress_
    from slimkit.compress.skip import FFNSkipConfig
    from slimkit.nn.ffn_skip import skip_stats, remove_skip_

    report = compress_(model, FFNSkipConfig(target_ratio=0.25), calib)   # τ calibrated by decoding
    model.generate(...)                                                  # skips FFNs per row and token
    print(skip_stats(model)["skip_ratio"]); remove_skip_(model)           # the dense model again

Importing this package registers ``ffn-skip`` and the baselines ``layer-drop`` (ShortGPT) and
``early-exit`` (CALM-style) with ``compress_``. See docs/ffn_skip.md.
"""

from __future__ import annotations

from slimkit.compress.skip.baselines import early_exit_compress_, layer_drop_compress_
from slimkit.compress.skip.config import DecodeCalibration, EarlyExitConfig, FFNSkipConfig, LayerDropConfig
from slimkit.compress.skip.handler import SkipReport, ffn_compute_saved, ffn_skip_compress_
from slimkit.compress.skip.sites import BlockFlops, block_flops, eligible_layers, ffn_sites

__all__ = [
    "BlockFlops",
    "DecodeCalibration",
    "EarlyExitConfig",
    "FFNSkipConfig",
    "LayerDropConfig",
    "SkipReport",
    "block_flops",
    "early_exit_compress_",
    "eligible_layers",
    "ffn_compute_saved",
    "ffn_sites",
    "ffn_skip_compress_",
    "layer_drop_compress_",
]
