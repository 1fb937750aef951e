"""Run Graph Ladling: train the ingredients (in one process, or spread over ``torchrun`` ranks with no
communication until the end), gather them once, cook every soup, measure test accuracy once.

Under ``torchrun`` (``WORLD_SIZE > 1``) rank ``r`` trains ingredients ``i ≡ r (mod world_size)``; the
states are gathered in a single collective after training (gloo on CPU, NCCL on CUDA) and rank 0
makes the soups. Every ingredient is a function of ``(seed, i)`` only, so the sequential path in one
process gives the same ingredients and the same soup.

With a disjoint view an ingredient trains on its share of the graph plus an L-hop halo
(:func:`~slimkit.graph.views.worker_subgraph`), and a rank other than 0 that loaded the graph itself
(``data`` a loader) frees the rest before training: only rank 0 needs the whole graph, for the soups.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torch_geometric.data import Data

from slimkit.core.devices import resolve_device
from slimkit.core.distributed import DistInfo, distributed_context, local_device
from slimkit.core.limits import release_freed_memory
from slimkit.core.progress import track
from slimkit.graph.ladling.config import SOUP_NAMES, LadlingConfig
from slimkit.graph.ladling.ingredients import Ingredient, train_ingredient
from slimkit.graph.ladling.soups import Soup, check_compatible, make_soup
from slimkit.graph.models import GNN, build_model, recompute_norm_stats_
from slimkit.graph.train import accuracy, num_classes_of, train_model
from slimkit.graph.views import ClusterView, View, ViewConfig, make_views, worker_subgraph

State = dict[str, Tensor]
_METRIC_FIELDS = ("index", "val_acc", "best_epoch", "steps", "seconds", "peak_memory_mb", "train_nodes")


@dataclass
class LadlingResult:
    """Everything a run measured (on rank 0).

    Attributes:
        config: the run's config.
        ingredients: by index; ``val_acc`` as the soups saw it.
        ingredient_test: test accuracy of each ingredient (measured once, after all choices).
        soups: name -> :class:`Soup` (uniform, greedy, greedy-interp); states have recomputed BatchNorm
            statistics where the model has BatchNorm.
        soup_test: name -> test accuracy.
        world_size: processes that trained ingredients.
        train_seconds: wall-clock of the ingredient phase including the final gather.
        soup_seconds: wall-clock of cooking the three soups.
        n_val, n_test: validation / test node counts.
    """

    config: LadlingConfig
    ingredients: list[Ingredient]
    ingredient_test: list[float]
    soups: dict[str, Soup]
    soup_test: dict[str, float]
    world_size: int
    train_seconds: float
    soup_seconds: float
    n_val: int
    n_test: int

    @property
    def best_ingredient(self) -> int:
        """Index of the ingredient with the best validation accuracy (ties: lower index)."""
        return max(range(len(self.ingredients)), key=lambda i: (self.ingredients[i].val_acc, -i))

    @property
    def soup(self) -> Soup:
        """The soup the config asked for."""
        return self.soups[self.config.soup]


class Evaluator:
    """Scores a state on the full graph: load it into one template model, recompute BatchNorm
    statistics (averaged running statistics belong to no model), take the accuracy on a mask."""

    def __init__(self, model: GNN, data: Data) -> None:
        self.model, self.data = model, data

    def load(self, state: State) -> GNN:
        self.model.load_state_dict(state)
        recompute_norm_stats_(self.model, self.data.x, self.data.edge_index)
        return self.model

    def val(self, state: State) -> float:
        return accuracy(self.load(state), self.data, self.data.val_mask)

    def test(self, state: State) -> float:
        return accuracy(self.load(state), self.data, self.data.test_mask)

    def finalised(self, state: State) -> State:
        """``state`` with the BatchNorm statistics the evaluator uses (unchanged without BatchNorm)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.load(state).state_dict().items()}


def run_ladling(
    cfg: LadlingConfig,
    data: Data | Callable[[], Data],
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> LadlingResult | None:
    """Train ``cfg.ingredients`` ingredients and cook the soups. Returns the result on rank 0 (or in a
    single process) and ``None`` on the other ranks.

    ``data`` is the graph, or a callable that loads it. With a disjoint view every ingredient trains
    on its :func:`~slimkit.graph.views.worker_subgraph` (its share plus ``halo`` hops, default 0;
    -1 = the model's depth) instead of the whole graph: the same batches, so the same training; validation
    during training scores the share's own validation nodes (the soups are still chosen on the full
    validation set, on rank 0). A rank other than 0 given a loader then keeps only its ingredients'
    subgraphs and frees the rest of the graph before training; rank 0 keeps it for the soups.
    """
    dev = local_device(device)
    with distributed_context(dev) as ctx:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        # a graph this function loaded is one it may free (a ``Data`` is itself callable: test the type)
        owned = not isinstance(data, Data)
        # the graph stays on the host: ingredients move their batches, evaluation its chunks, so a
        # device holds one ingredient's share (and the model), never the whole graph
        graph: Data | None = (data() if owned else data).cpu()  # type: ignore[operator]
        del data
        in_dim, num_classes = graph.num_features, num_classes_of(graph)
        views = make_views(cfg.view, graph, cfg.ingredients, seed=cfg.seed)
        mine = list(range(ctx.rank, cfg.ingredients, ctx.world_size))
        work = _worker_inputs(cfg, graph, views, mine)
        if owned and ctx.rank != 0:
            # what this rank trains on is in ``work`` already; the views' closures held the graph too
            work, graph, views = list(work), None, None
            release_freed_memory()
        start = time.perf_counter()
        iterator = track(work, f"ingredients (rank {ctx.rank})", total=len(mine)) if progress else work
        local = [train_ingredient(cfg, sub, view, i, device=dev) for i, sub, view in iterator]
        if ctx.world_size > 1:
            ingredients = gather_ingredients(local, cfg, in_dim, num_classes, ctx, dev)
        else:
            ingredients = local
        train_seconds = time.perf_counter() - start
        if ctx.rank != 0:
            return None
    assert graph is not None
    return _cook(cfg, graph, ingredients, ctx.world_size, train_seconds, dev)


def _worker_inputs(
    cfg: LadlingConfig, data: Data, views: list[View], indices: list[int]
) -> Iterator[tuple[int, Data, View]]:
    """``(index, graph, view)`` each ingredient trains on: the whole graph, or for a disjoint view its
    share plus halo with the view moved onto it (built one at a time, so one subgraph is alive)."""
    hops = cfg.view.halo if cfg.view.halo >= 0 else cfg.model.layers
    for i in indices:
        view = views[i]
        if cfg.view.disjoint and isinstance(view, ClusterView):
            sub = worker_subgraph(data, view.share, hops)
            yield i, sub, view.on(sub)
        else:
            yield i, data, view


def _cook(
    cfg: LadlingConfig,
    data: Data,
    ingredients: list[Ingredient],
    world_size: int,
    train_seconds: float,
    device: torch.device,
) -> LadlingResult:
    states = [ing.state for ing in ingredients]
    check_compatible(states)
    num_classes = int(data.y.max()) + 1
    evaluator = Evaluator(build_model(cfg.model, data.num_features, num_classes).to(device), data)
    start = time.perf_counter()
    for ing in ingredients:  # the score the soups compare against, BatchNorm treated alike
        ing.val_acc = evaluator.val(ing.state)
    val_accs = [ing.val_acc for ing in ingredients]
    soups = {
        name: make_soup(name, states, evaluator.val, grid=cfg.interp_grid, val_accs=val_accs)
        for name in SOUP_NAMES
    }
    for soup in soups.values():
        soup.state = evaluator.finalised(soup.state)
    soup_seconds = time.perf_counter() - start
    # test accuracy: measured once, after every choice is made
    ingredient_test = [evaluator.test(ing.state) for ing in ingredients]
    soup_test = {name: evaluator.test(soup.state) for name, soup in soups.items()}
    return LadlingResult(
        cfg,
        ingredients,
        ingredient_test,
        soups,
        soup_test,
        world_size,
        train_seconds,
        soup_seconds,
        int(data.val_mask.sum()),
        int(data.test_mask.sum()),
    )


def gather_ingredients(
    local: list[Ingredient],
    cfg: LadlingConfig,
    in_dim: int,
    num_classes: int,
    ctx: DistInfo,
    device: torch.device,
) -> list[Ingredient]:
    """All ingredients on every rank, by index, from one all-gather per state entry.

    Tensors, not pickled objects, travel: each rank sends ``ceil(K / world)`` slots per state key
    (padding marked by index -1), which NCCL and gloo both support.
    """
    slots = math.ceil(cfg.ingredients / ctx.world_size)
    template = build_model(cfg.model, in_dim, num_classes).state_dict()
    comm = device if device.type == "cuda" else torch.device("cpu")

    def all_gather(buf: Tensor) -> list[Tensor]:
        buf = buf.to(comm)
        out = [torch.empty_like(buf) for _ in range(ctx.world_size)]
        dist.all_gather(out, buf)
        return [t.cpu() for t in out]

    metrics = torch.full((slots, len(_METRIC_FIELDS)), -1.0, dtype=torch.float64)
    for j, ing in enumerate(local):
        metrics[j] = torch.tensor([getattr(ing, f) for f in _METRIC_FIELDS], dtype=torch.float64)
    gathered_metrics = all_gather(metrics)
    gathered_states = {}
    for key in sorted(template):
        buf = torch.zeros((slots, *template[key].shape), dtype=template[key].dtype)
        for j, ing in enumerate(local):
            buf[j] = ing.state[key]
        gathered_states[key] = all_gather(buf)

    out: list[Ingredient] = []
    for r in range(ctx.world_size):
        for j in range(slots):
            row = dict(zip(_METRIC_FIELDS, gathered_metrics[r][j].tolist(), strict=True))
            if row["index"] < 0:
                continue
            state = {key: gathered_states[key][r][j].clone() for key in template}
            out.append(
                Ingredient(
                    index=int(row["index"]),
                    state=state,
                    val_acc=row["val_acc"],
                    best_epoch=int(row["best_epoch"]),
                    steps=int(row["steps"]),
                    seconds=row["seconds"],
                    peak_memory_mb=row["peak_memory_mb"],
                    train_nodes=int(row["train_nodes"]),
                )
            )
    out.sort(key=lambda ing: ing.index)
    return out


@dataclass
class BaselineResult:
    """One model trained on the full graph (full batch) for the ingredients' total epochs."""

    state: State
    val_acc: float
    test_acc: float
    epochs: int
    seconds: float
    peak_memory_mb: float


def train_full_graph_baseline(
    cfg: LadlingConfig, data: Data, *, epochs: int | None = None, device: str | torch.device = "cpu"
) -> BaselineResult:
    """The comparison the paper makes: one model, the whole graph every epoch, ``epochs`` epochs
    (default ``ingredients × train.epochs``: the ingredients' total), initialised from ``cfg.seed``."""
    dev = resolve_device(device)
    data = data.to(dev)
    epochs = epochs or cfg.ingredients * cfg.train.epochs
    num_classes = int(data.y.max()) + 1
    model = build_model(cfg.model, data.num_features, num_classes, seed=cfg.seed).to(dev)
    view = make_views(ViewConfig(kind="full"), data, 1)[0]
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    with torch.random.fork_rng(devices=[dev] if cuda else []):
        torch.manual_seed(cfg.seed)
        train_cfg = cfg.train.replace(epochs=epochs)
        result = train_model(model, data, view, train_cfg, generator=torch.Generator().manual_seed(cfg.seed))
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else float("nan")
    evaluator = Evaluator(model, data)
    return BaselineResult(
        result.state, evaluator.val(result.state), evaluator.test(result.state), epochs, result.seconds, peak
    )
