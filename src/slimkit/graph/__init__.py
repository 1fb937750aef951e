"""Graph learning: node-classification datasets, GNN models, data views, and Graph Ladling.

Needs the ``graph`` extra (``pip install 'slimkit[graph]'``: torch-geometric and pymetis); importing
this package without it raises a :class:`~slimkit.core.errors.SlimkitError` that says so.
``import slimkit`` never imports it.

>>> from slimkit.graph import load_dataset, GNNConfig, build_model
>>> data = load_dataset("csbm:nodes=200")
>>> model = build_model(GNNConfig(arch="gcn"), data.num_features, int(data.y.max()) + 1)
"""

from slimkit.graph._extra import INSTALL_HINT, MissingExtraError, require_graph_extra

require_graph_extra()

from slimkit.graph.datasets import (  # noqa: E402
    DATASETS,
    CSBMConfig,
    KarateConfig,
    OGBConfig,
    PlanetoidConfig,
    WorldGraphConfig,
    dataset_name,
    load_dataset,
    parse_dataset_spec,
)
from slimkit.graph.models import GNN, GNNConfig, build_model, recompute_norm_stats_  # noqa: E402
from slimkit.graph.train import GraphTrainConfig, accuracy, split_accuracies, train_model  # noqa: E402
from slimkit.graph.views import (  # noqa: E402
    ViewConfig,
    make_views,
    metis_partition,
    random_partition,
)

__all__ = [
    "DATASETS",
    "GNN",
    "INSTALL_HINT",
    "CSBMConfig",
    "GNNConfig",
    "KarateConfig",
    "MissingExtraError",
    "OGBConfig",
    "PlanetoidConfig",
    "GraphTrainConfig",
    "ViewConfig",
    "WorldGraphConfig",
    "accuracy",
    "build_model",
    "dataset_name",
    "load_dataset",
    "make_views",
    "metis_partition",
    "parse_dataset_spec",
    "random_partition",
    "recompute_norm_stats_",
    "require_graph_extra",
    "split_accuracies",
    "train_model",
]
