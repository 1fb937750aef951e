"""The configuration of a Graph Ladling run: model, view, optimisation, ingredients, soup."""

from __future__ import annotations

from dataclasses import dataclass, field

from slimkit.core.config import Config, check_choice, check_range
from slimkit.core.errors import ConfigError
from slimkit.graph.models import GNNConfig
from slimkit.graph.train import GraphTrainConfig
from slimkit.graph.views import ViewConfig

INITS = ("shared", "independent")
SOUP_NAMES = ("uniform", "greedy", "greedy-interp")
MAX_INGREDIENTS = 1_024  # each ingredient is a full model held in memory until the soup is made
MAX_INTERP_GRID = 1_001
MAX_SEED = 2**32 - 1


@dataclass(frozen=True, kw_only=True)
class LadlingConfig(Config):
    """Graph Ladling — "Graph Ladling: Shockingly Simple Parallel GNN Training without Intermediate
    Communication" (Jaiswal et al., ICML 2023, arXiv 2306.10466).

    ``ingredients`` models are trained with no communication, each from its own seed on its own data
    view, then merged into one model by weight averaging (a *soup*). Ingredient ``i`` depends only on
    ``(seed, i)``, never on which process trained it.

    Attributes:
        model (GNNConfig): architecture of every ingredient. Default: ``GNNConfig()`` (2-layer SAGE).
        view (ViewConfig): how each ingredient sees the graph. Default: ``ViewConfig()`` (METIS clusters).
        train (GraphTrainConfig): optimisation of each ingredient. Default: ``GraphTrainConfig()``.
        ingredients (int): K. Default: 8.
        init (str): ``shared`` — every ingredient starts from the same initialisation (drawn from
            ``seed``), as weight-space averaging usually needs; ``independent`` — each its own (the
            reference code's behaviour: it seeds each run before building the model). Default: ``shared``.
        soup (str): the soup the run returns as its result: ``uniform``, ``greedy`` or ``greedy-interp``
            (all three are always measured). Default: ``greedy-interp``.
        interp_grid (int): α values ``linspace(0, 1, G)`` tried per ingredient by the greedy
            interpolation soup (the reference leaves G open; a fork uses 10). Default: 11.
        seed (int): the run seed. Default: 0.
    """

    model: GNNConfig = field(default_factory=GNNConfig)
    view: ViewConfig = field(default_factory=ViewConfig)
    train: GraphTrainConfig = field(default_factory=GraphTrainConfig)
    ingredients: int = 8
    init: str = "shared"
    soup: str = "greedy-interp"
    interp_grid: int = 11
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("ingredients", self.ingredients, 1, MAX_INGREDIENTS)
        check_choice("init", self.init, INITS)
        check_choice("soup", self.soup, SOUP_NAMES)
        check_range("interp_grid", self.interp_grid, 2, MAX_INTERP_GRID)
        check_range("seed", self.seed, 0, MAX_SEED)
        if self.view.kind == "neighbor" and len(self.view.fanouts) != self.model.layers:
            # one sampled hop per message-passing layer: fewer hops leave the outer layers aggregating
            # truncated neighbourhoods, more hops sample nodes no layer reaches
            raise ConfigError(
                f"neighbor sampling has {len(self.view.fanouts)} fanouts {list(self.view.fanouts)} for a "
                f"{self.model.layers}-layer model; give one fanout per layer"
            )
