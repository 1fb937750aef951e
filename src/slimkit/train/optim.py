"""Optimizer builders, looked up by optimizer-config type.

To plug in an optimizer, define a config (subclass :class:`~slimkit.train.config.OptimizerConfig`)
and register a builder; ``TrainConfig(optimizer=MyConfig(...))`` then trains with it::

    @OPTIMIZERS.register(MyConfig, name="mine")
    def build_mine(model_or_groups, cfg: MyConfig) -> torch.optim.Optimizer:
        groups = as_param_groups(model_or_groups, cfg.weight_decay)
        return MyOptimizer(groups, lr=cfg.lr, ...)

Only parameters with ``requires_grad`` are handed to the optimizer, so frozen parameters never get
optimizer state (a frozen LLM under a trained projector costs no Adam moments).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from slimkit.core.errors import SlimkitError
from slimkit.core.registry import Registry
from slimkit.train.config import AdamWConfig, OptimizerConfig

ParamGroups = list[dict[str, Any]]
OptimizerBuilder = Callable[[nn.Module | Iterable[Any], OptimizerConfig], torch.optim.Optimizer]

OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")


def weight_decay_groups(model: nn.Module, weight_decay: float) -> ParamGroups:
    """Split the trainable parameters of ``model`` into a decayed and a non-decayed group.

    Decay applies to weight matrices (``ndim >= 2``) of layers that are not embeddings. Norm gains,
    biases and embedding tables are left alone: decay pulls a norm gain towards 0 (towards a dead
    channel, not towards "simpler"), biases have no scale to regularise, and an embedding row only
    gets gradient when its token occurs, so decay would shrink rare tokens' vectors on every step
    in which they are not seen. A tied output head shares the embedding table and so is not decayed.

    Returns:
        ``[{"params": decayed, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]``,
        with empty groups dropped; parameters in ``model.named_parameters()`` order.
    """
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and id(p) not in embedding_ids else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def as_param_groups(model_or_groups: nn.Module | Iterable[Any], weight_decay: float) -> ParamGroups:
    """Param groups for a builder: from a module via :func:`weight_decay_groups`, or the caller's
    own parameters / group dicts (frozen parameters dropped in both cases)."""
    if isinstance(model_or_groups, nn.Module):
        return weight_decay_groups(model_or_groups, weight_decay)
    items = list(model_or_groups)
    if items and not isinstance(items[0], dict):
        items = [{"params": items}]
    groups = []
    for g in items:
        params = [p for p in g["params"] if p.requires_grad]
        if params:
            groups.append({**g, "params": params})
    return groups


@OPTIMIZERS.register(AdamWConfig, name="adamw")
def build_adamw(model_or_groups: nn.Module | Iterable[Any], cfg: AdamWConfig) -> torch.optim.Optimizer:
    """``torch.optim.AdamW`` over the trainable parameters (decay only on weight matrices)."""
    groups = as_param_groups(model_or_groups, cfg.weight_decay)
    if not groups:
        raise SlimkitError("the model has no trainable parameters (every parameter has requires_grad=False)")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def build_optimizer(model: nn.Module | Iterable[Any], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimizer registered for ``type(cfg)``, built over the trainable parameters of ``model``.

    Raises:
        RegistryError: nothing is registered for this config type.
    """
    return OPTIMIZERS.lookup(cfg)(model, cfg)


__all__ = ["OPTIMIZERS", "as_param_groups", "build_adamw", "build_optimizer", "weight_decay_groups"]
