"""Memory-efficient training: GaLore and Q-GaLore optimizers, their projector, layer-wise stepping.

    from slimkit.optim import GaLoreAdamW, QGaLoreAdamW, galore_param_groups
    opt = GaLoreAdamW(galore_param_groups(model, rank=128, update_proj_gap=200, scale=0.25), lr=0.01)

    prepare_int8_training_(model)                     # slimkit.nn.int8: INT8 weights for Q-GaLore
    opt = QGaLoreAdamW(galore_param_groups(model, rank=128), lr=0.015)
    LayerwiseStepper(opt, grad_accum=4)               # optional: step inside backward

In a training YAML: ``optimizer: {name: galore, rank: 128, ...}`` or ``{name: q-galore, ...}``.
See docs/qgalore.md.
"""

from slimkit.optim.builders import build_galore, build_qgalore
from slimkit.optim.config import GaLoreConfig, QGaLoreConfig
from slimkit.optim.galore import GaLoreAdamW, galore_adam_step, galore_param_groups
from slimkit.optim.layerwise import LayerwiseStepper
from slimkit.optim.qgalore import QGaLoreAdamW

__all__ = [
    "GaLoreAdamW",
    "GaLoreConfig",
    "LayerwiseStepper",
    "QGaLoreAdamW",
    "QGaLoreConfig",
    "build_galore",
    "build_qgalore",
    "galore_adam_step",
    "galore_param_groups",
]
