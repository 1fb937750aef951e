"""Node-classification training and evaluation: mini-batch training on a view, full-graph evaluation.

Training follows the Graph Ladling reference trainer (arXiv 2306.10466, ``trainer.py``): Adam,
cross-entropy on the training nodes of each batch, gradient-norm clipping, evaluation on the full
graph every ``eval_every`` epochs, and the state of the best-validation evaluation is the one kept
(validation data only chooses; test accuracy is computed once by the caller).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from slimkit.core.config import Config, check_choice, check_range
from slimkit.graph.models import layerwise_forward
from slimkit.graph.views import View

MAX_EPOCHS = 100_000  # beyond this a run would not end: a typo, refused before any work


@dataclass(frozen=True, kw_only=True)
class GraphTrainConfig(Config):
    """Optimisation of one model.

    Attributes:
        epochs (int): passes over the view. Default: 50 (the reference default).
        lr (float): Adam learning rate. Default: 0.01 (the reference's 1e-3 is tuned for large graphs;
            on the small graphs here it underfits in 50 epochs).
        weight_decay (float): Adam L2 penalty. Default: 5e-4.
        grad_clip (float): max gradient norm, 0 = off. Default: 5.0 (the reference's GraphSAINT value).
        eval_every (int): full-graph validation every this many epochs (and after the last); 0 = never
            (the final state is kept and its ``val_acc`` is NaN: for graphs where a full-graph pass is
            too costly, or to measure training alone). Default: 5.
        select (str): ``best-val`` keeps the state of the best validation evaluation (ties: the
            earlier); ``last`` keeps the final state. Default: ``best-val``.
    """

    epochs: int = 50
    lr: float = 0.01
    weight_decay: float = 5e-4
    grad_clip: float = 5.0
    eval_every: int = 5
    select: str = "best-val"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("epochs", self.epochs, 1, MAX_EPOCHS)
        check_range("lr", self.lr, 0.0, 1e3, lo_inclusive=False)
        check_range("weight_decay", self.weight_decay, 0.0, None)
        check_range("grad_clip", self.grad_clip, 0.0, None)
        check_range("eval_every", self.eval_every, 0, MAX_EPOCHS)
        check_choice("select", self.select, ("best-val", "last"))


@dataclass
class TrainResult:
    state: dict[str, Tensor]  # the kept state dict (CPU tensors)
    val_acc: float  # validation accuracy of ``state``
    best_epoch: int
    steps: int
    seconds: float
    history: list[tuple[int, float]] = field(default_factory=list)  # (epoch, val_acc)


def num_classes_of(data: Data) -> int:
    """Classes of the whole graph: ``full_num_classes`` on a worker's subgraph (whose share may miss
    a class), else ``max(y) + 1``."""
    return int(data.full_num_classes) if "full_num_classes" in data else int(data.y.max()) + 1


def _forward(model: nn.Module, data: Data) -> Tensor:
    # a worker subgraph carries the full graph's GCN degrees (its halo's own edges are truncated)
    deg = data.gcn_deg if "gcn_deg" in data else None
    return layerwise_forward(model, data.x, data.edge_index, deg=deg)


@torch.no_grad()
def accuracy(model: nn.Module, data: Data, mask: Tensor) -> float:
    """Share of ``mask`` nodes whose arg-max prediction (the full-graph eval-mode output, computed layer
    by layer in chunks by :func:`~slimkit.graph.models.layerwise_forward`) is right."""
    pred = _forward(model, data).argmax(dim=-1)
    return float((pred[mask] == data.y[mask]).float().mean()) if mask.any() else 0.0


@torch.no_grad()
def split_accuracies(model: nn.Module, data: Data) -> dict[str, float]:
    """``{"train": acc, "val": acc, "test": acc}`` from one full-graph output (layer-wise, chunked)."""
    pred = _forward(model, data).argmax(dim=-1)
    out = {}
    for split in ("train", "val", "test"):
        mask = data[f"{split}_mask"]
        out[split] = float((pred[mask] == data.y[mask]).float().mean())
    return out


def cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train_model(
    model: nn.Module, data: Data, view: View, cfg: GraphTrainConfig, *, generator: torch.Generator
) -> TrainResult:
    """Train ``model`` (in place) on the batches of ``view``.

    ``data`` may stay on the host while the model is on an accelerator: each batch's features, labels
    and edges are moved to the model's device, and validation runs layer by layer in chunks, so the
    device never holds the whole graph. Validation scores ``data.val_mask``: on a worker's
    :func:`~slimkit.graph.views.worker_subgraph`, the share's own validation nodes.

    All randomness (batch order, samples, dropout) comes from ``generator`` and the global torch RNG,
    which the caller seeds, so a run is a function of its seeds.
    """
    device = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best_state, best_val, best_epoch, steps = cpu_state(model), -1.0, 0, 0
    history: list[tuple[int, float]] = []
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for batch in view.epoch(generator):
            nodes = batch.nodes.to(data.x.device)
            logits = model(data.x[nodes].to(device), batch.edge_index.to(device))
            loss_nodes = batch.loss_nodes.to(device)
            loss = F.cross_entropy(logits[loss_nodes], data.y[nodes].to(device)[loss_nodes])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            steps += 1
        if cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            val = accuracy(model, data, data.val_mask)
            history.append((epoch, val))
            if cfg.select == "last" or val > best_val:
                best_state, best_val, best_epoch = cpu_state(model), val, epoch
    if not cfg.eval_every:  # never validated: the final state, with no score
        best_state, best_val, best_epoch = cpu_state(model), float("nan"), cfg.epochs
    return TrainResult(best_state, best_val, best_epoch, steps, time.perf_counter() - start, history)
