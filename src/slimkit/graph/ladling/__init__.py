"""Graph Ladling — "Graph Ladling: Shockingly Simple Parallel GNN Training without Intermediate
Communication" (Jaiswal et al., ICML 2023, arXiv 2306.10466).

>>> from slimkit.graph import load_dataset
>>> from slimkit.graph.ladling import LadlingConfig, run_ladling
>>> data = load_dataset("csbm")
>>> result = run_ladling(LadlingConfig(ingredients=4), data)     # doctest: +SKIP
>>> result.soup_test["greedy-interp"]                             # doctest: +SKIP
"""

from slimkit.graph.ladling.config import INITS, SOUP_NAMES, LadlingConfig
from slimkit.graph.ladling.ingredients import Ingredient, ingredient_seeds, train_ingredient
from slimkit.graph.ladling.report import plot_ladling, results_dict, save_run
from slimkit.graph.ladling.runner import (
    BaselineResult,
    Evaluator,
    LadlingResult,
    gather_ingredients,
    run_ladling,
    train_full_graph_baseline,
)
from slimkit.graph.ladling.soups import (
    Soup,
    average,
    check_compatible,
    greedy_interpolation_soup,
    greedy_soup,
    interpolate,
    make_soup,
    uniform_soup,
)

__all__ = [
    "INITS",
    "SOUP_NAMES",
    "BaselineResult",
    "Evaluator",
    "Ingredient",
    "LadlingConfig",
    "LadlingResult",
    "Soup",
    "average",
    "check_compatible",
    "gather_ingredients",
    "greedy_interpolation_soup",
    "greedy_soup",
    "ingredient_seeds",
    "interpolate",
    "make_soup",
    "plot_ladling",
    "results_dict",
    "run_ladling",
    "save_run",
    "train_full_graph_baseline",
    "train_ingredient",
    "uniform_soup",
]
