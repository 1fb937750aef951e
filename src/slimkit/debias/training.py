"""The training primitives every debiasing method shares: optimisers, batch plans, the epoch loop,
prediction and model selection.

A method supplies only what differs: which sample indices make up each epoch's batches
(:func:`shuffled_batches`, :func:`sampled_batches`) and one ``step(idx) -> loss`` closure.
:func:`train_epochs` runs them, evaluates on validation data after each epoch when the config asks
for model selection, and restores the selected weights at the end.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.core.errors import ConfigError
from slimkit.core.progress import progress_bar
from slimkit.debias.config import DebiasConfig
from slimkit.debias.datasets import BiasDataset, DebiasSplits
from slimkit.debias.metrics import accuracy, group_accuracies, worst_group_accuracy
from slimkit.debias.models import Classifier, build_model


@dataclass
class Fitted:
    """A trainer's output: the final model, and Sebra's stage-1 ranks (``[N_train]``) when it has them."""

    model: Classifier
    ranks: Tensor | None = None


@dataclass
class FitContext:
    """What a method's trainer gets besides its config and data: device, RNG, progress switch."""

    device: torch.device
    generator: torch.Generator
    progress: bool = True
    log: dict[str, float | int] = field(default_factory=dict)  # method-specific numbers for the results

    def new_model(self, cfg: DebiasConfig, data: BiasDataset) -> Classifier:
        return build_model(cfg.model, data.input_shape, data.num_classes).to(self.device)


def build_optimizer(
    params: Iterable[nn.Parameter], name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def optimizer_for(model: nn.Module, cfg: DebiasConfig) -> torch.optim.Optimizer:
    return build_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)


def shuffled_batches(indices: Tensor, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """One epoch: ``indices`` (``[M]``, repeats allowed) in random order, cut into batches."""
    return list(indices[torch.randperm(len(indices), generator=generator)].split(batch_size))


def sampled_batches(
    weights: Tensor, num_draws: int, batch_size: int, generator: torch.Generator
) -> list[Tensor]:
    """One epoch of ``num_draws`` indices drawn with replacement with probability ∝ ``weights`` (``[N]``).

    The ``WeightedRandomSampler(weights, num_draws, replacement=True)`` of the reference code.
    """
    draws = torch.multinomial(weights.double(), num_draws, replacement=True, generator=generator)
    return list(draws.split(batch_size))


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    data: BiasDataset,
    device: torch.device,
    idx: Tensor | None = None,
    batch_size: int = 512,
) -> Tensor:
    """``[len(idx), num_classes]`` logits (all samples when ``idx`` is None), in eval mode.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    idx = torch.arange(len(data)) if idx is None else idx
    out = [model(data.batch(chunk, device)).float().cpu() for chunk in idx.split(batch_size)]
    model.train(was_training)
    return torch.cat(out)


def true_class_probs(logits: Tensor, labels: Tensor) -> Tensor:
    """``p_y = softmax(logits)[i, y_i]``: ``[B, C]``, ``[B]`` -> ``[B]``."""
    return F.softmax(logits.float(), dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)


class ModelSelector:
    """Keeps the weights of the best epoch by the config's ``model_selection`` rule."""

    def __init__(self, cfg: DebiasConfig, splits: DebiasSplits, device: torch.device) -> None:
        self.rule = cfg.model_selection
        if self.rule != "last" and splits.val is None:
            raise ConfigError(
                f"model_selection={self.rule!r} needs a validation split; this dataset has none"
            )
        self.val = splits.val
        self.device = device
        self.best_score = -1.0
        self.best_state: dict[str, Tensor] | None = None
        self.best_epoch = -1

    def score(self, model: nn.Module) -> float:
        assert self.val is not None
        pred = predict_logits(model, self.val, self.device).argmax(1)
        if self.rule == "val-accuracy":
            return accuracy(pred, self.val.labels)
        # opt-in use of validation group labels
        return worst_group_accuracy(
            group_accuracies(pred, self.val.labels, self.val.group_ids, self.val.num_groups)
        )

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        if self.rule == "last":
            return
        score = self.score(model)
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.best_state = copy.deepcopy(model.state_dict())

    def restore(self, model: nn.Module, log: dict[str, float | int]) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
            log["selected_epoch"] = self.best_epoch
            log["selection_score"] = self.best_score


def train_epochs(
    epochs: int,
    batches: Callable[[int], list[Tensor]],
    step: Callable[[Tensor], float],
    *,
    description: str,
    progress: bool = True,
    after_epoch: Callable[[int], None] | None = None,
) -> list[float]:
    """Run ``step`` on every batch of ``batches(epoch)`` for each epoch; returns the mean loss per epoch."""
    history: list[float] = []
    with progress_bar(epochs if progress else 0, description) as bar:
        for epoch in range(epochs):
            losses = [step(idx) for idx in batches(epoch)]
            history.append(sum(losses) / max(1, len(losses)))
            if after_epoch is not None:
                after_epoch(epoch)
            if progress:
                bar.update(1, loss=history[-1])
    return history


def train_supervised(
    cfg: DebiasConfig,
    splits: DebiasSplits,
    ctx: FitContext,
    batches: Callable[[int], list[Tensor]],
    *,
    description: str,
    epochs: int | None = None,
    select: bool = True,
) -> Classifier:
    """A fresh model trained with plain cross-entropy on the given batch plan (ERM, JTT, group-balanced)."""
    train = splits.train
    model = ctx.new_model(cfg, train)
    opt = optimizer_for(model, cfg)
    model.train()

    def step(idx: Tensor) -> float:
        loss = F.cross_entropy(model(train.batch(idx, ctx.device)), train.labels[idx].to(ctx.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    selector = ModelSelector(cfg, splits, ctx.device) if select else None
    train_epochs(
        epochs or cfg.epochs,
        batches,
        step,
        description=description,
        progress=ctx.progress,
        after_epoch=(lambda e: selector.after_epoch(model, e)) if selector else None,
    )
    if selector is not None:
        selector.restore(model, ctx.log)
    return model
