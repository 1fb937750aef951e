"""``optimizer: galore | q-galore`` for :func:`slimkit.train.train`: builders in ``OPTIMIZERS``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from slimkit.core.errors import SlimkitError
from slimkit.nn.int8 import Int8TrainingLinear, prepare_int8_training_
from slimkit.optim.config import GaLoreConfig, QGaLoreConfig
from slimkit.optim.galore import GaLoreAdamW, galore_param_groups
from slimkit.optim.layerwise import LayerwiseStepper
from slimkit.optim.qgalore import QGaLoreAdamW
from slimkit.train.optim import OPTIMIZERS, as_param_groups


def _groups(
    model_or_groups: nn.Module | Iterable[Any], cfg: GaLoreConfig, **options: Any
) -> list[dict[str, Any]]:
    if isinstance(model_or_groups, nn.Module):
        groups = galore_param_groups(
            model_or_groups,
            rank=cfg.rank,
            targets=cfg.targets,
            ignore=cfg.ignore,
            weight_decay=cfg.weight_decay,
            update_proj_gap=cfg.update_proj_gap,
            scale=cfg.scale,
            proj_type=cfg.proj_type,
            svd=cfg.svd,
            refresh_stagger=cfg.refresh_stagger,
            **options,
        )
    else:
        groups = as_param_groups(model_or_groups, cfg.weight_decay)
    if not groups:
        raise SlimkitError("the model has no trainable parameters (every parameter has requires_grad=False)")
    return groups


def _finish(opt: GaLoreAdamW, cfg: GaLoreConfig) -> GaLoreAdamW:
    if cfg.layerwise:
        LayerwiseStepper(opt)  # the loop sets grad_accum through configure_for_loop
    return opt


@OPTIMIZERS.register(GaLoreConfig, name="galore")
def build_galore(model_or_groups: nn.Module | Iterable[Any], cfg: GaLoreConfig) -> torch.optim.Optimizer:
    """:class:`GaLoreAdamW`: the targeted linears projected, every other trainable parameter AdamW."""
    groups = _groups(model_or_groups, cfg)
    opt = GaLoreAdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return _finish(opt, cfg)


@OPTIMIZERS.register(QGaLoreConfig, name="q-galore")
def build_qgalore(model_or_groups: nn.Module | Iterable[Any], cfg: QGaLoreConfig) -> torch.optim.Optimizer:
    """:class:`QGaLoreAdamW`; with ``int8_weights`` the targeted linears are first converted to
    :class:`Int8TrainingLinear` in place (once: a model that already holds them is left as is)."""
    if (
        cfg.int8_weights
        and isinstance(model_or_groups, nn.Module)
        and not any(isinstance(m, Int8TrainingLinear) for m in model_or_groups.modules())
    ):
        prepare_int8_training_(
            model_or_groups, cfg.targets, cfg.ignore, group_size=cfg.weight_group_size, bits=cfg.weight_bits
        )
    groups = _groups(
        model_or_groups,
        cfg,
        proj_bits=cfg.proj_bits,
        proj_group_size=cfg.proj_group_size,
        queue_size=cfg.queue_size,
        cos_threshold=cfg.cos_threshold,
        gamma=cfg.gamma,
    )
    opt = QGaLoreAdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return _finish(opt, cfg)


__all__ = ["build_galore", "build_qgalore"]
