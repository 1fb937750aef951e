"""Node classifiers on PyTorch Geometric layers: GCN, GraphSAGE, GAT.

Each model is a stack of ``layers`` message-passing layers ``in → hidden → … → classes``; between
layers: optional normalisation, ReLU, dropout (the layout of the Graph Ladling ingredients, which
are SAGEConv stacks with ReLU and dropout between layers)::

    h⁰ = x                                                   [N, F]
    hˡ = dropout(relu(norm(convˡ(hˡ⁻¹, edge_index))))        [N, hidden],  l = 1 … L−1
    logits = convᴸ(hᴸ⁻¹, edge_index)                         [N, C]

- ``gcn``: Kipf & Welling, "Semi-Supervised Classification with Graph Convolutional Networks"
  (arXiv 1609.02907): ``H' = D̂^{-1/2} Â D̂^{-1/2} H W`` with self-loops.
- ``sage``: Hamilton et al., "Inductive Representation Learning on Large Graphs" (arXiv 1706.02216):
  ``h'_i = W₁ h_i + W₂ mean_{j∈N(i)} h_j``.
- ``gat``: Veličković et al., "Graph Attention Networks" (arXiv 1710.10903): hidden layers have
  ``heads`` concatenated heads of width ``hidden / heads``; the output layer one head.

Only plain-PyTorch code paths of PyG are used (no torch-sparse, torch-scatter or pyg-lib).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from slimkit.core.config import Config, check_choice, check_range
from slimkit.core.errors import ConfigError

ARCHITECTURES = ("gcn", "sage", "gat")
NORMS = ("none", "batch", "layer")
MAX_HIDDEN = 65_536  # a width beyond this is a typo: one hidden×hidden layer would be 16 GiB


@dataclass(frozen=True, kw_only=True)
class GNNConfig(Config):
    """Architecture of a node classifier.

    Attributes:
        arch (str): ``gcn``, ``sage`` or ``gat``. Default: ``sage``.
        layers (int): message-passing layers L (>= 1). Default: 2.
        hidden (int): width of the hidden layers. Default: 64.
        dropout (float): dropout between layers (and on GAT attention), in [0, 1). Default: 0.5.
        norm (str): ``none``, ``batch`` (BatchNorm1d) or ``layer`` (LayerNorm) after each hidden
            layer. Default: ``none``.
        heads (int): GAT attention heads per hidden layer; must divide ``hidden``. Default: 4.
    """

    arch: str = "sage"
    layers: int = 2
    hidden: int = 64
    dropout: float = 0.5
    norm: str = "none"
    heads: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("arch", self.arch, ARCHITECTURES)
        check_range("layers", self.layers, 1, 64)
        check_range("hidden", self.hidden, 1, MAX_HIDDEN)
        check_range("dropout", self.dropout, 0.0, 1.0, hi_inclusive=False)
        check_choice("norm", self.norm, NORMS)
        check_range("heads", self.heads, 1, 256)
        if self.arch == "gat" and self.hidden % self.heads:
            raise ConfigError(f"hidden={self.hidden} must be divisible by heads={self.heads} for gat")


class GNN(nn.Module):
    """The stack described in the module docstring. ``forward(x [N, F], edge_index [2, E]) -> [N, C]``."""

    def __init__(self, cfg: GNNConfig, in_dim: int, num_classes: int) -> None:
        super().__init__()
        if in_dim < 1 or num_classes < 2:
            raise ConfigError(f"need in_dim >= 1 and num_classes >= 2, got {in_dim}, {num_classes}")
        self.cfg = cfg
        widths = [in_dim] + [cfg.hidden] * (cfg.layers - 1) + [num_classes]
        self.convs = nn.ModuleList(
            _conv(cfg, w_in, w_out, last=i == cfg.layers - 1)
            for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )
        self.norms = nn.ModuleList(_norm(cfg.norm, cfg.hidden) for _ in range(cfg.layers - 1))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            if i < len(self.norms):
                x = self.dropout(torch.relu(self.norms[i](x)))
        return x


def _conv(cfg: GNNConfig, w_in: int, w_out: int, *, last: bool) -> nn.Module:
    if cfg.arch == "gcn":
        # cached=False: ingredients see a different subgraph every step
        return GCNConv(w_in, w_out, cached=False)
    if cfg.arch == "sage":
        return SAGEConv(w_in, w_out)
    if last:
        return GATConv(w_in, w_out, heads=1, concat=False, dropout=cfg.dropout)
    return GATConv(w_in, w_out // cfg.heads, heads=cfg.heads, concat=True, dropout=cfg.dropout)


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    return nn.Identity()


def build_model(cfg: GNNConfig, in_dim: int, num_classes: int, *, seed: int | None = None) -> GNN:
    """A freshly initialised :class:`GNN`; with ``seed`` the initialisation depends on nothing else."""
    if seed is None:
        return GNN(cfg, in_dim, num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GNN(cfg, in_dim, num_classes)


@torch.no_grad()
def recompute_norm_stats_(model: nn.Module, x: Tensor, edge_index: Tensor) -> bool:
    """Reset every BatchNorm's running statistics and recompute them from one full-graph pass.

    Averaging running means/variances of several models (a soup) gives statistics that belong to
    none of them; the soup's own activations are what its BatchNorms should normalise. Dropout stays
    off during the pass. Returns whether the model had any BatchNorm.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    was_training = model.training
    momenta = [bn.momentum for bn in norms]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one pass gives exactly the full-graph statistics
        bn.train()
    model(x, edge_index)
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    model.train(was_training)
    return True
