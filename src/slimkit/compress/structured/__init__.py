"""Structured FFN-neuron pruning: scores, width schedules, masks and physical removal.

    from slimkit.compress import compress_
    from slimkit.compress.structured import FFNStructuredConfig

    report = compress_(model, FFNStructuredConfig(prune_ratio=0.25), calib)   # a smaller dense model
    model.config.intermediate_size                                           # 0.75 x what it was

Importing this package registers ``ffn-structured`` with ``compress_``. The iterative version used
during training (IDEA Prune) is :class:`~slimkit.compress.structured.iterative.IterativeFFNPrune`, a
training-loop callback. See docs/idea_prune.md.
"""

from __future__ import annotations

from slimkit.compress.structured.config import IMPORTANCES, FFNStructuredConfig
from slimkit.compress.structured.ffn import (
    FFNSite,
    NeuronMasks,
    ffn_sites,
    ffn_width,
    shrink_ffn_,
    width_field,
)
from slimkit.compress.structured.importance import (
    WIDTH_SCHEDULES,
    activation_importance,
    ema_,
    keep_top,
    neuron_sensitivity,
    scheduled_width,
)
from slimkit.compress.structured.iterative import IterativeFFNPrune
from slimkit.compress.structured.oneshot import StructuredReport, count_parameters, ffn_structured_compress_

__all__ = [
    "IMPORTANCES",
    "WIDTH_SCHEDULES",
    "FFNSite",
    "FFNStructuredConfig",
    "IterativeFFNPrune",
    "NeuronMasks",
    "StructuredReport",
    "activation_importance",
    "count_parameters",
    "ema_",
    "ffn_sites",
    "ffn_structured_compress_",
    "ffn_width",
    "keep_top",
    "neuron_sensitivity",
    "scheduled_width",
    "shrink_ffn_",
    "width_field",
]
