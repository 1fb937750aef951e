"""Configs of the memory-efficient optimizers, plugged into ``TrainConfig(optimizer=...)``.

``optimizer: {name: galore, ...}`` / ``{name: q-galore, ...}`` in a training YAML builds these.
"""

from __future__ import annotations

from dataclasses import dataclass

from slimkit.core.config import check_choice, check_range
from slimkit.core.errors import ConfigError
from slimkit.core.targeting import check_patterns
from slimkit.nn.int8 import BLOCK_LINEARS
from slimkit.optim.projector import PROJ_TYPES, SVD_METHODS
from slimkit.train.config import OptimizerConfig


@dataclass(frozen=True)
class GaLoreConfig(OptimizerConfig):
    """GaLore — "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection" (arXiv 2403.03507).

    The weights of the targeted linears are trained with Adam moments of the projected gradient
    ``R = Pᵀ G`` (or ``G P``), ``W <- W - lr · scale · P (m̂ / (sqrt(v̂) + eps))``; every other trainable
    parameter (embeddings, norms, head) gets plain AdamW. Defaults are the GaLore paper's 60M-1B
    pretraining settings.

    Attributes:
        lr (float): peak learning rate. Default: 0.01.
        weight_decay (float): decoupled decay on weight matrices. Default: 0.0.
        betas (tuple[float, float]): Adam moment decays. Default: (0.9, 0.999).
        eps (float): Adam denominator guard. Default: 1e-6.
        rank (int): projection rank r, in [1, min(m, n)] of every targeted matrix. Default: 128.
        update_proj_gap (int): steps between subspace refreshes (SVDs), >= 1. Default: 200.
        scale (float): alpha multiplying the projected-back update, > 0. Default: 0.25.
        proj_type (str): ``std`` (the smaller side), ``left`` or ``right``. Default: ``std``.
        svd (str): ``full`` (``torch.linalg.svd``) or ``randomized`` (``torch.svd_lowrank``). Default: ``full``.
        targets (tuple[str, ...]): modules whose weights are projected. Default: attention/MLP linears.
        ignore (tuple[str, ...]): patterns removed from ``targets``. Default: ().
        refresh_stagger (int): spread the projected weights' first SVDs (and so their later refreshes)
            over this many steps; each weight takes no update until its first SVD. 0 = every SVD at
            step 0, as the GaLore paper and galore-torch do. Default: 0.
        layerwise (bool): step each parameter inside backward (``slimkit.optim.layerwise``) so full
            gradients never coexist; incompatible with global gradient clipping and DDP. Default: False.
    """

    lr: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    rank: int = 128
    update_proj_gap: int = 200
    scale: float = 0.25
    proj_type: str = "std"
    svd: str = "full"
    targets: tuple[str, ...] = BLOCK_LINEARS
    ignore: tuple[str, ...] = ()
    refresh_stagger: int = 0
    layerwise: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if not isinstance(self.betas, tuple | list) or len(self.betas) != 2:
            raise ConfigError(f"{name}.betas must be two numbers (beta1, beta2), got {self.betas!r}")
        object.__setattr__(self, "betas", tuple(self.betas))
        for i, beta in enumerate(self.betas):
            check_range(f"{name}.betas[{i}]", beta, 0.0, 1.0, hi_inclusive=False)
        check_range(f"{name}.eps", self.eps, 0.0, None, lo_inclusive=False)
        check_range(f"{name}.rank", self.rank, 1, None)
        check_range(f"{name}.update_proj_gap", self.update_proj_gap, 1, None)
        if isinstance(self.refresh_stagger, bool) or not isinstance(self.refresh_stagger, int):
            raise ConfigError(f"{name}.refresh_stagger must be an integer, got {self.refresh_stagger!r}")
        check_range(f"{name}.refresh_stagger", self.refresh_stagger, 0, None)
        check_range(f"{name}.scale", self.scale, 0.0, None, lo_inclusive=False)
        check_choice(f"{name}.proj_type", self.proj_type, PROJ_TYPES)
        check_choice(f"{name}.svd", self.svd, SVD_METHODS)
        object.__setattr__(self, "targets", check_patterns(f"{name}.targets", self.targets))
        object.__setattr__(self, "ignore", check_patterns(f"{name}.ignore", self.ignore))


@dataclass(frozen=True)
class QGaLoreConfig(GaLoreConfig):
    """Q-GaLore — "Q-GaLore: Quantized GaLore with INT4 Projection and Layer-Adaptive Low-Rank
    Gradients" (arXiv 2407.08296).

    GaLore plus: projections stored as ``proj_bits`` codes packed densely (two per byte at 4 bits)
    with a scale/zero per ``proj_group_size`` values; the targeted linears' weights stored as
    ``weight_bits`` integers per ``weight_group_size`` columns, updated by dequantise -> add ->
    requantise with stochastic rounding; each layer's refresh interval multiplied by ``gamma`` once
    the mean |cosine| of its last ``queue_size`` leading singular vectors is >= ``cos_threshold``.

    Attributes (beyond :class:`GaLoreConfig`):
        lr (float): Default: 0.015 (the Q-GaLore 60M/130M setting).
        proj_bits (int): projection code width, 1..8. Default: 4.
        proj_group_size (int): values per projection scale/zero group (must divide rank x side). Default: 256.
        queue_size (int): cosine FIFO length, >= 1. Default: 5.
        cos_threshold (float): mean |cos| at or above which the interval grows, in [0, 1]. Default: 0.4.
        gamma (float): interval multiplier, >= 1. Default: 2.0.
        int8_weights (bool): store the targeted linears' weights as integers. Default: True.
        weight_bits (int): weight code width. Default: 8.
        weight_group_size (int | None): input columns per weight scale/zero group (must divide every
            targeted layer's ``in_features``); None = one group per row. Default: 256.
    """

    lr: float = 0.015
    proj_bits: int = 4
    proj_group_size: int = 256
    queue_size: int = 5
    cos_threshold: float = 0.4
    gamma: float = 2.0
    int8_weights: bool = True
    weight_bits: int = 8
    weight_group_size: int | None = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("QGaLoreConfig.proj_bits", self.proj_bits, 1, 8)
        check_range("QGaLoreConfig.proj_group_size", self.proj_group_size, 1, None)
        check_range("QGaLoreConfig.queue_size", self.queue_size, 1, None)
        check_range("QGaLoreConfig.cos_threshold", self.cos_threshold, 0.0, 1.0)
        check_range("QGaLoreConfig.gamma", self.gamma, 1.0, None)
        check_range("QGaLoreConfig.weight_bits", self.weight_bits, 2, 8)
        if self.weight_group_size is not None:  # None: one scale/zero per row
            check_range("QGaLoreConfig.weight_group_size", self.weight_group_size, 1, None)


__all__ = ["GaLoreConfig", "QGaLoreConfig"]
