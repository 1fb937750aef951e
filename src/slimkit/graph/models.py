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


#: target nodes per chunk of :func:`layerwise_forward`; its per-edge messages are what bound the memory
LAYERWISE_CHUNK = 8192


def gcn_degree(edge_index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``d̂ [N]``: in-degree with a self-loop added where none is (``Â = A + I``), as GCNConv counts it."""
    from torch_geometric.utils import add_remaining_self_loops

    loops, _ = add_remaining_self_loops(edge_index, num_nodes=num_nodes)
    return torch.bincount(loops[1], minlength=num_nodes).to(dtype)


@torch.no_grad()
def layerwise_forward(
    model: GNN,
    x: Tensor,
    edge_index: Tensor,
    *,
    chunk: int = LAYERWISE_CHUNK,
    deg: Tensor | None = None,
) -> Tensor:
    """The eval-mode output of ``model(x, edge_index)`` ``[N, C]``, computed layer by layer over chunks of
    target nodes, so memory is bounded by one layer's node states plus one chunk's edges.

    A full-graph forward materialises one message per edge and feature, ``[E, F]`` (on a 100k-node
    graph with 1.6M edges and 128 features: 800 MB), and that, not the node states, is what limits
    full-graph validation. Layer ``l`` here computes ``h_l[T]`` for each chunk ``T`` of at most
    ``chunk`` target nodes from ``h_{l-1}`` restricted to ``T`` and its in-neighbours, with the edges
    into ``T`` only. That is exact for every architecture: SAGE's mean and GAT's attention softmax run
    over a node's incoming edges, which the chunk holds whole, and GCN's symmetric normalisation
    ``d_i^{-1/2} d_j^{-1/2}`` is computed once from the full graph's degrees. The sub-batch puts
    ``T`` first, so self-loops that GAT and GCN add to the first ``|T|`` nodes land on the targets.
    ``x`` and ``edge_index`` may live on the CPU while the model is on an accelerator: only one
    chunk at a time is moved. ``deg [N]`` overrides GCN's degrees (:func:`gcn_degree` of the graph
    ``x`` was cut from, for a :func:`~slimkit.graph.views.worker_subgraph`).
    """
    from torch_geometric.utils import add_remaining_self_loops

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = x.size(0)
    # incoming edges grouped by target: the edges of chunk [a, b) are one slice
    order = torch.argsort(edge_index[1], stable=True)
    src, dst = edge_index[0][order], edge_index[1][order]
    ptr = torch.searchsorted(dst, torch.arange(0, n + 1, device=dst.device))
    gcn = isinstance(model.convs[0], GCNConv)
    if gcn:  # global symmetric normalisation, as GCNConv(normalize=True) computes it on the whole graph
        if deg is None:
            deg = gcn_degree(torch.stack([src, dst]), n, x.dtype)
        dinv = deg.pow(-0.5).masked_fill_(deg == 0, 0.0)
    h = x
    try:
        for i, conv in enumerate(model.convs):
            outs = []
            for a in range(0, n, chunk):
                b = min(a + chunk, n)
                targets = torch.arange(a, b, device=src.device)
                e_src, e_dst = src[ptr[a] : ptr[b]], dst[ptr[a] : ptr[b]] - a
                others = torch.unique(e_src[(e_src < a) | (e_src >= b)])
                nodes = torch.cat([targets, others])
                local = torch.empty(n, dtype=torch.long, device=src.device)
                local[nodes] = torch.arange(nodes.numel(), device=src.device)
                sub = torch.stack([local[e_src], e_dst])
                hx = h[nodes].to(device)
                if gcn:
                    sub, _ = add_remaining_self_loops(sub, num_nodes=b - a)
                    weight = dinv[nodes][sub[0]] * dinv[a:b][sub[1]]
                    conv.normalize = False  # the weights are the full graph's; restored below
                    try:
                        out = conv(hx, sub.to(device), weight.to(device))[: b - a]
                    finally:
                        conv.normalize = True
                else:
                    out = conv((hx, hx[: b - a]), sub.to(device))
                if i < len(model.norms):
                    out = torch.relu(model.norms[i](out))  # dropout is the identity in eval mode
                outs.append(out.to(x.device))
            h = torch.cat(outs)
    finally:
        model.train(was_training)
    return h


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
    device = next(model.parameters()).device
    # one train-mode pass over the whole graph (batch statistics need every node at once)
    model(x.to(device), edge_index.to(device))
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    model.train(was_training)
    return True
