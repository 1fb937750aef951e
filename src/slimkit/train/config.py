"""Training configs: the optimizer (the plug-in point) and the loop.

``TrainConfig.optimizer`` holds any registered optimizer config. AdamW ships here; memory-efficient
optimizers (GaLore, Q-GaLore in :mod:`slimkit.optim`) subclass :class:`OptimizerConfig` and register
a builder in :data:`slimkit.train.optim.OPTIMIZERS`; the loop never names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from slimkit.core.config import Config, check_choice, check_range
from slimkit.core.errors import ConfigError


@dataclass(frozen=True)
class OptimizerConfig(Config):
    """Base of every optimizer config: the two fields the loop and the schedule rely on.

    Attributes:
        lr (float): peak learning rate (the schedule multiplies it). Default: 3e-4.
        weight_decay (float): decoupled weight decay on matrices (never on norms, biases,
            embeddings; see :func:`slimkit.train.optim.weight_decay_groups`). Default: 0.0.
    """

    lr: float = 3e-4
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        check_range(f"{name}.lr", self.lr, 0.0, None, lo_inclusive=False)
        check_range(f"{name}.weight_decay", self.weight_decay, 0.0, None)


@dataclass(frozen=True)
class AdamWConfig(OptimizerConfig):
    """AdamW — "Decoupled Weight Decay Regularization" (Loshchilov & Hutter, arXiv 1711.05101).

    m_t = b1 m + (1-b1) g;  v_t = b2 v + (1-b2) g^2;  w <- w - lr (m_hat / (sqrt(v_hat) + eps) + wd w).

    Attributes:
        lr (float): peak learning rate. Default: 3e-4.
        betas (tuple[float, float]): moment decay rates, each in [0, 1). Default: (0.9, 0.95).
        eps (float): denominator guard, > 0. Default: 1e-8.
        weight_decay (float): decoupled decay on weight matrices only. Default: 0.0.
    """

    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.betas, tuple | list) or len(self.betas) != 2:
            raise ConfigError(f"AdamWConfig.betas must be two numbers (beta1, beta2), got {self.betas!r}")
        object.__setattr__(self, "betas", tuple(self.betas))
        for i, beta in enumerate(self.betas):
            check_range(f"AdamWConfig.betas[{i}]", beta, 0.0, 1.0, hi_inclusive=False)
        check_range("AdamWConfig.eps", self.eps, 0.0, None, lo_inclusive=False)


# Fields that may differ between a checkpointed run and its resumption without changing the
# trajectory (everything else must match for the resume to be exact).
# ``parallel`` too: DDP gives each step the same global batch as one process (equal up to float rounding).
RESUME_MUTABLE_FIELDS = frozenset({"checkpoint_every", "log_every", "device", "version", "parallel"})


@dataclass(frozen=True)
class TrainConfig(Config):
    """The causal-LM training loop (:func:`slimkit.train.train`).

    One optimizer step consumes ``batch_size * grad_accum`` windows of ``seqlen`` predicted tokens.
    The learning rate follows linear warmup then cosine decay to ``lr * min_lr_ratio``.

    Attributes:
        optimizer (OptimizerConfig): any registered optimizer config; a mapping is accepted too
            (``{"name": "adamw", "lr": 1e-3}``; ``name`` defaults to ``adamw``). Default: AdamWConfig().
        steps (int): optimizer steps, >= 1. Default: 1000.
        batch_size (int): windows per micro-batch, >= 1. Default: 8.
        grad_accum (int): micro-batches per optimizer step (loss scaled by 1/grad_accum), >= 1. Default: 1.
        seqlen (int): tokens per window (the model sees ``seqlen``, predicts ``seqlen``), >= 1. Default: 256.
        warmup_steps (int): linear warmup steps, in [0, steps]. Default: 0.
        min_lr_ratio (float): cosine floor as a fraction of the peak lr, in [0, 1]. Default: 0.1.
        grad_clip (float | None): max global grad L2 norm; None or 0 disables clipping. Default: 1.0.
        bf16 (bool): bfloat16 autocast for forward/backward (also on CPU); weights and optimizer
            state stay float32. Default: False.
        checkpoint_every (int): save a checkpoint every this many steps; 0 = only at the end
            (and on Ctrl-C). Needs an output directory. Default: 0.
        log_every (int): refresh the progress bar's loss and tokens/s every this many steps. Default: 10.
        random_offset (bool): shift the packed-window grid by a random offset each epoch, so a
            document cut by a window boundary in one epoch is seen whole in another. Default: True.
        seed (int): seeds the data order and every RNG. Default: 0.
        device (str): torch device, e.g. ``cpu``, ``cuda``, ``cuda:1``. Default: ``cpu``.
        parallel (str): how ``torchrun`` ranks share the work: ``ddp`` (each rank holds the whole model
            and trains on its slice of every global batch, gradients all-reduced). ``fsdp`` is refused
            (see docs/training.md). Ignored in one process. Default: ``ddp``.
    """

    optimizer: OptimizerConfig = field(default_factory=AdamWConfig)
    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    seqlen: int = 256
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    grad_clip: float | None = 1.0
    bf16: bool = False
    checkpoint_every: int = 0
    log_every: int = 10
    random_offset: bool = True
    seed: int = 0
    device: str = "cpu"
    parallel: str = "ddp"

    def __post_init__(self) -> None:
        if isinstance(self.optimizer, Mapping):
            object.__setattr__(self, "optimizer", _optimizer_from_mapping(self.optimizer))
        super().__post_init__()
        if not isinstance(self.optimizer, OptimizerConfig):
            raise ConfigError(
                f"TrainConfig.optimizer must be an optimizer config (e.g. AdamWConfig), got {self.optimizer!r}"
            )
        from slimkit.train.optim import OPTIMIZERS  # late: optim imports this module

        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"TrainConfig.optimizer: no optimizer registered for {type(self.optimizer).__name__}; "
                f"known: {OPTIMIZERS.names()}"
            )
        for name in ("steps", "batch_size", "grad_accum", "seqlen", "log_every"):
            check_range(f"TrainConfig.{name}", getattr(self, name), 1, None)
        check_range("TrainConfig.warmup_steps", self.warmup_steps, 0, self.steps)
        check_range("TrainConfig.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        if self.grad_clip is not None:
            check_range("TrainConfig.grad_clip", self.grad_clip, 0.0, None)
        check_range("TrainConfig.checkpoint_every", self.checkpoint_every, 0, None)
        if getattr(self.optimizer, "layerwise", False) and self.clip_norm:
            # layer-wise stepping (slimkit.optim) steps each parameter inside backward, before the
            # global gradient norm exists
            raise ConfigError(
                f"TrainConfig.grad_clip={self.grad_clip} cannot be combined with optimizer.layerwise=true: "
                "global clipping needs every gradient before any step, and layer-wise stepping frees each "
                "gradient as it steps; set grad_clip: 0 or layerwise: false"
            )
        check_range("TrainConfig.seed", self.seed, 0, None)
        if self.parallel == "fsdp":
            raise ConfigError(
                "TrainConfig.parallel=fsdp is not supported: FSDP shards each parameter over the ranks, and the "
                "train loop's callbacks (IDEA pruning's |θ·∇θ| scores, masks, neuron removal, optimizer-state "
                "slicing) read and reshape whole parameters; use parallel: ddp (the model must fit one device)"
            )
        check_choice("TrainConfig.parallel", self.parallel, ("ddp",))
        try:
            torch.device(self.device)
        except RuntimeError:
            raise ConfigError(
                f"TrainConfig.device={self.device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')"
            ) from None

    @property
    def tokens_per_step(self) -> int:
        """Predicted tokens per optimizer step: batch_size * grad_accum * seqlen."""
        return self.batch_size * self.grad_accum * self.seqlen

    @property
    def clip_norm(self) -> float | None:
        """The clipping threshold, or None when clipping is off (None or 0)."""
        return self.grad_clip or None


def _optimizer_from_mapping(data: Mapping[str, Any]) -> Config:
    from slimkit.train.optim import OPTIMIZERS

    data = dict(data)
    if "type" in data:
        return OptimizerConfig.from_dict(data)
    name = data.pop("name", "adamw")
    try:
        cls = OPTIMIZERS.config_for(name)
    except KeyError:
        raise ConfigError(
            f"TrainConfig.optimizer.name={name!r} is unknown; known: {OPTIMIZERS.names()}"
        ) from None
    return cls.from_dict(data)


__all__ = ["RESUME_MUTABLE_FIELDS", "AdamWConfig", "OptimizerConfig", "TrainConfig"]
