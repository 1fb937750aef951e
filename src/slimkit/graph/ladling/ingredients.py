"""Training one soup ingredient: a pure function of (run config, ingredient index, data).

Seeds: ingredient ``i`` of a run with seed ``s`` draws its training randomness (batch order,
samples, dropout) from ``SeedSequence([s, i])`` and its initialisation from ``s`` (``init="shared"``)
or from the same per-ingredient sequence (``init="independent"``). Which process trains it, and in
which order, does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from slimkit.graph.ladling.config import LadlingConfig
from slimkit.graph.models import build_model
from slimkit.graph.train import num_classes_of, train_model
from slimkit.graph.views import View


@dataclass
class Ingredient:
    """A trained ingredient. ``peak_memory_mb`` is measured on CUDA only (NaN on CPU)."""

    index: int
    state: dict[str, Tensor]
    val_acc: float
    best_epoch: int
    steps: int
    seconds: float
    peak_memory_mb: float
    train_nodes: int


def ingredient_seeds(seed: int, index: int) -> tuple[int, int]:
    """``(init_seed, train_seed)`` of ingredient ``index`` under ``init="independent"``."""
    init_seed, train_seed = np.random.SeedSequence([seed, index]).generate_state(2)
    return int(init_seed), int(train_seed)


def init_seed_for(cfg: LadlingConfig, index: int) -> int:
    return cfg.seed if cfg.init == "shared" else ingredient_seeds(cfg.seed, index)[0]


def train_ingredient(
    cfg: LadlingConfig, data: Data, view: View, index: int, *, device: torch.device | None = None
) -> Ingredient:
    """Build ingredient ``index`` from its initialisation seed and train it on ``view``.

    The model lives on ``device`` (default: ``data``'s); ``data`` may stay on the host, since only the
    view's batches and chunks of the layer-wise validation are moved to the device. ``data`` may also
    be a :func:`~slimkit.graph.views.worker_subgraph` with ``view`` moved onto it
    (:meth:`~slimkit.graph.views.ClusterView.on`): the same batches, so the same training, with
    validation on the share's own validation nodes. The global RNG is forked, so the caller's state
    is kept.
    """
    device = device if device is not None else data.x.device
    num_classes = num_classes_of(data)
    model = build_model(cfg.model, data.num_features, num_classes, seed=init_seed_for(cfg, index)).to(device)
    _, train_seed = ingredient_seeds(cfg.seed, index)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.manual_seed(train_seed)  # dropout draws from the global generator
        generator = torch.Generator().manual_seed(train_seed)  # batch order and samples (CPU)
        result = train_model(model, data, view, cfg.train, generator=generator)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else float("nan")
    return Ingredient(
        index,
        result.state,
        result.val_acc,
        result.best_epoch,
        result.steps,
        result.seconds,
        peak,
        view.train_nodes,
    )
