"""Data views for soup ingredients: partitions and samplers in plain PyTorch over ``edge_index``.

Graph Ladling (Jaiswal et al., "Graph Ladling: Shockingly Simple Parallel GNN Training without
Intermediate Communication", ICML 2023, arXiv 2306.10466) trains every ingredient on its own view of
the graph: different clusters, sampled neighbourhoods or random-walk subgraphs per epoch. The
reference code uses PyG loaders that need compiled extensions (torch-sparse, pyg-lib); everything
here is vectorised PyTorch, and METIS comes from ``pymetis``.

Views (``ViewConfig.kind``):

- ``full``: the whole graph every epoch (ingredients differ only by seed).
- ``metis``: ClusterGCN batches (Chiang et al., arXiv 1905.07953) over a METIS partition into
  ``num_parts`` clusters; each step trains on the induced subgraph of ``clusters_per_batch``
  random clusters, drawn anew each epoch with the ingredient's own seed. Three readings of the
  paper's "partition soup": by default every ingredient visits every cluster (a *cluster-sampled*
  soup: ingredients differ only in the order and pairing of clusters); with ``disjoint`` each
  ingredient only ever sees its own share of the clusters, the shares balanced by training nodes
  (:func:`assign_parts`; *strictly partitioned*); with ``cluster_fraction < 1`` each ingredient keeps
  to its own random subset of that fraction of the clusters (overlapping subsets, drawn from the
  run seed and the ingredient index). A share with no training node is a ``DataError``.
  A disjoint ingredient can train on :func:`worker_subgraph` — its share plus an ``halo``-hop
  neighbourhood, re-indexed — instead of the whole graph (:meth:`ClusterView.on`): its cluster
  batches only ever touch the share's nodes, so training is unchanged.
- ``random``: the same over a random balanced node partition.
- ``neighbor``: GraphSAGE neighbour sampling: ``batch_size`` training seeds, ``fanouts[l]``
  neighbours per node at hop ``l`` (without replacement; all when fewer; -1 = all); loss on the seeds.
- ``saint-rw``: GraphSAINT random-walk subgraphs (Zeng et al., arXiv 1907.04931): ``roots``
  training nodes, each walking ``walk_length`` uniform steps; the induced subgraph of the visited
  nodes, loss on its training nodes, no normalisation (the reference's ``use_norm=False``).

A :class:`Batch` is ``nodes [n]`` (global ids), ``edge_index [2, e]`` (local ids) and ``loss_nodes
[m]`` (local ids of the nodes the loss is taken on).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from slimkit.core.config import Config, check_choice, check_positive, check_range
from slimkit.core.errors import ConfigError, DataError

VIEW_KINDS = ("full", "metis", "random", "neighbor", "saint-rw")
MAX_SAMPLES = 10_000_000  # cap of batch sizes, walk roots, partitions (more than any graph slimkit reads)


@dataclass(frozen=True, kw_only=True)
class ViewConfig(Config):
    """How each ingredient sees the graph (see the module docstring).

    Attributes:
        kind (str): one of ``full``, ``metis``, ``random``, ``neighbor``, ``saint-rw``. Default: ``metis``.
        num_parts (int): clusters of the ``metis`` / ``random`` partition; 0 = ``max(ingredients, N // 100)``
            (about 100 nodes per cluster, at least one per ingredient). Default: 0.
        clusters_per_batch (int): clusters per ClusterGCN step. Default: 2.
        disjoint (bool): ``metis`` / ``random``: each ingredient keeps to its own disjoint share of the
            clusters. Default: False.
        cluster_fraction (float): ``metis`` / ``random``: each ingredient keeps to a random subset of
            this fraction of the clusters, in (0, 1]; 1 = all (not with ``disjoint``). Default: 1.0.
        fanouts (tuple[int, ...]): ``neighbor`` sampling per hop (-1 = all); its length is the number
            of hops and should equal the model's layers. Default: (25, 10) (the reference's first two).
        batch_size (int): ``neighbor`` seed nodes per step. Default: 256.
        roots (int): ``saint-rw`` walk roots per subgraph. Default: 256.
        walk_length (int): ``saint-rw`` steps per walk. Default: 2 (the reference default).
        halo (int): ``disjoint``: hops of in-neighbourhood a worker holds around its share
            (:func:`worker_subgraph`); 0 = the share's induced subgraph alone, so validation during
            training runs inside the share (the sampled inference of ClusterGCN; the soups are still
            chosen on the whole validation set at the end); -1 = the model's depth, so validation on
            the share's nodes is the full-graph output exactly (on a graph without community
            structure that halo is most of the graph). Training is the same either way. Default: 0.
    """

    kind: str = "metis"
    num_parts: int = 0
    clusters_per_batch: int = 2
    disjoint: bool = False
    cluster_fraction: float = 1.0
    fanouts: tuple[int, ...] = (25, 10)
    batch_size: int = 256
    roots: int = 256
    walk_length: int = 2
    halo: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("kind", self.kind, VIEW_KINDS)
        check_range("num_parts", self.num_parts, 0, MAX_SAMPLES)
        check_range("clusters_per_batch", self.clusters_per_batch, 1, MAX_SAMPLES)
        if not isinstance(self.fanouts, tuple) or not self.fanouts:
            raise ConfigError(f"fanouts must be a non-empty tuple of ints, got {self.fanouts!r}")
        for k in self.fanouts:
            if isinstance(k, bool) or not isinstance(k, int) or (k < 1 and k != -1) or k > MAX_SAMPLES:
                raise ConfigError(f"fanouts entries must be positive ints or -1 (all), got {k!r}")
        check_range("batch_size", self.batch_size, 1, MAX_SAMPLES)
        check_range("roots", self.roots, 1, MAX_SAMPLES)
        check_range("walk_length", self.walk_length, 0, 1_000)
        if self.disjoint and self.kind not in ("metis", "random"):
            # a sampler that ignores the flag would train every ingredient on the whole graph
            raise ConfigError(f"disjoint applies to the metis and random views only, not {self.kind!r}")
        check_range("cluster_fraction", self.cluster_fraction, 0.0, 1.0, lo_inclusive=False)
        check_range("halo", self.halo, -1, 64)
        if self.halo != 0 and not self.disjoint:
            # only a disjoint worker drops the rest of the graph; elsewhere the flag would do nothing
            raise ConfigError(f"halo applies to disjoint views only, got halo={self.halo} without disjoint")
        if self.cluster_fraction < 1.0:
            if self.kind not in ("metis", "random"):
                raise ConfigError(
                    f"cluster_fraction applies to the metis and random views only, not {self.kind!r}"
                )
            if self.disjoint:
                raise ConfigError("cluster_fraction < 1 and disjoint are two different views; choose one")


@dataclass(frozen=True)
class Batch:
    nodes: Tensor  # [n] global node ids
    edge_index: Tensor  # [2, e] local ids into ``nodes``
    loss_nodes: Tensor  # [m] local ids of the nodes the loss is taken on


class View:
    """One ingredient's view: ``epoch(generator)`` yields that epoch's batches."""

    def __init__(
        self, name: str, epoch_fn: Callable[[torch.Generator], Iterator[Batch]], train_nodes: int
    ) -> None:
        self.name = name
        self._epoch_fn = epoch_fn
        self.train_nodes = train_nodes  # training nodes this view can ever reach (for reporting)

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        return self._epoch_fn(generator)

    def __repr__(self) -> str:
        return f"View({self.name}, train_nodes={self.train_nodes})"


class ClusterView(View):
    """A ClusterGCN view: each epoch, ``per_batch`` random clusters at a time, as their induced subgraph.

    ``clusters[j]`` are the (sorted) node ids of the view's ``j``-th cluster in ``data``; ``data`` is
    the graph they index (the whole graph, or a worker's subgraph after :meth:`on`).
    """

    def __init__(
        self, name: str, clusters: list[Tensor], per_batch: int, data: Data, train_nodes: int
    ) -> None:
        super().__init__(name, _cluster_epoch(clusters, per_batch, data), train_nodes)
        self.clusters, self.per_batch = clusters, per_batch

    @property
    def share(self) -> Tensor:
        """Every node the view's batches can touch, sorted ``[n]``."""
        return torch.cat(self.clusters).sort().values

    def on(self, sub: Data) -> ClusterView:
        """The same view over ``sub``, a :func:`worker_subgraph` holding the share (``sub.n_id``: its
        sorted global ids). The local ids keep the global order, so every batch has the same nodes,
        the same edges in the same order and the same loss nodes: training is bit-identical."""
        missing = sum(int((~torch.isin(c, sub.n_id)).sum()) for c in self.clusters)
        if missing:
            raise DataError(f"the subgraph lacks {missing} nodes of the view's share")
        local = [torch.searchsorted(sub.n_id, c) for c in self.clusters]
        return ClusterView(self.name, local, self.per_batch, sub, self.train_nodes)


# -- graph structure helpers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CSR:
    """Row-compressed adjacency of an ``edge_index``: neighbours of ``i`` are ``col[ptr[i]:ptr[i+1]]``."""

    ptr: Tensor  # [N + 1]
    col: Tensor  # [E]

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: int) -> CSR:
        row, col = edge_index
        order = torch.argsort(row * num_nodes + col)
        counts = torch.bincount(row, minlength=num_nodes)
        ptr = torch.zeros(num_nodes + 1, dtype=torch.long)
        ptr[1:] = torch.cumsum(counts, 0)
        return cls(ptr, col[order].contiguous())

    @property
    def degree(self) -> Tensor:
        return self.ptr[1:] - self.ptr[:-1]


def induced_subgraph(nodes: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
    """Edges of ``edge_index`` with both ends in ``nodes`` (unique ids), relabelled to positions in ``nodes``."""
    local = torch.full((num_nodes,), -1, dtype=torch.long)
    local[nodes] = torch.arange(nodes.numel())
    src, dst = local[edge_index[0]], local[edge_index[1]]
    keep = (src >= 0) & (dst >= 0)
    return torch.stack([src[keep], dst[keep]])


def sample_neighbors(csr: CSR, targets: Tensor, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Up to ``k`` distinct neighbours of each target, uniformly without replacement (all if ``k == -1``
    or the degree is at most ``k``). Returns ``(neighbours [S], their_targets [S])`` as global ids.
    """
    starts, degrees = csr.ptr[targets], csr.degree[targets]
    total = int(degrees.sum())
    if total == 0:
        empty = torch.empty(0, dtype=torch.long)
        return empty, empty
    segment = torch.repeat_interleave(torch.arange(targets.numel()), degrees)
    offsets = torch.cumsum(degrees, 0) - degrees
    within = torch.arange(total) - offsets[segment]
    if k != -1:
        # a random key per incident edge; the k smallest keys of each segment are a uniform k-subset
        keys = segment.double() + torch.rand(total, generator=generator, dtype=torch.float64)
        order = torch.argsort(keys)
        segment, within = segment[order], within[order]
        rank = torch.arange(total) - offsets[segment]
        keep = rank < k
        segment, within = segment[keep], within[keep]
    return csr.col[starts[segment] + within], targets[segment]


def neighbor_batch(
    csr: CSR, seeds: Tensor, fanouts: tuple[int, ...], num_nodes: int, generator: torch.Generator
) -> Batch:
    """The sampled computation graph of ``seeds``: hop ``l`` samples ``fanouts[l]`` neighbours of the
    nodes first reached at hop ``l - 1``; edges point neighbour → target. Seeds come first."""
    local = torch.full((num_nodes,), -1, dtype=torch.long)
    local[seeds] = torch.arange(seeds.numel())
    nodes, frontier, src_all, dst_all = [seeds], seeds, [], []
    count = seeds.numel()
    for k in fanouts:
        if frontier.numel() == 0:
            break
        nbr, tgt = sample_neighbors(csr, frontier, k, generator)
        src_all.append(nbr)
        dst_all.append(tgt)
        new = torch.unique(nbr[local[nbr] < 0])
        local[new] = torch.arange(count, count + new.numel())
        count += new.numel()
        nodes.append(new)
        frontier = new
    src = torch.cat(src_all) if src_all else torch.empty(0, dtype=torch.long)
    dst = torch.cat(dst_all) if dst_all else torch.empty(0, dtype=torch.long)
    return Batch(torch.cat(nodes), torch.stack([local[src], local[dst]]), torch.arange(seeds.numel()))


def random_walks(csr: CSR, roots: Tensor, walk_length: int, generator: torch.Generator) -> Tensor:
    """Nodes visited by uniform random walks of ``walk_length`` steps from ``roots`` ([R, L + 1]);
    a walk at a node without neighbours stays there."""
    path, current = [roots], roots
    degree = csr.degree
    for _ in range(walk_length):
        deg = degree[current]
        pick = (torch.rand(current.numel(), generator=generator, dtype=torch.float64) * deg).long()
        step = csr.col[(csr.ptr[current] + pick).clamp_max(max(csr.col.numel() - 1, 0))]
        current = torch.where(deg > 0, step, current)
        path.append(current)
    return torch.stack(path, dim=1)


def in_neighborhood(edge_index: Tensor, nodes: Tensor, num_nodes: int, hops: int) -> Tensor:
    """Hop distance ``[N]`` from ``nodes`` along incoming edges (``j → i`` reaches ``j`` from ``i``):
    0 on ``nodes``, ``k`` for nodes ``k`` hops upstream, -1 beyond ``hops``."""
    dist = torch.full((num_nodes,), -1, dtype=torch.long)
    dist[nodes] = 0
    src, dst = edge_index
    for k in range(1, hops + 1):
        frontier = dist == k - 1
        new = src[frontier[dst]]
        new = new[dist[new] < 0]
        if new.numel() == 0:
            break
        dist[new] = k
    return dist


def worker_subgraph(data: Data, share: Tensor, hops: int) -> Data:
    """What a disjoint worker holds: its ``share`` of the nodes plus their ``hops``-hop halo, re-indexed.

    A node's output after L message-passing layers depends only on its L-hop in-neighbourhood. With
    ``S`` the share and ``H_k`` the nodes at most ``k`` hops upstream of it (``H_0 = S``), the subgraph
    keeps the nodes ``H_hops`` (in global order) and the edges ``j → i`` with ``j ∈ H_hops`` and
    ``i ∈ H_{max(hops-1, 0)}`` (the edges into the outermost ring feed no node within ``hops - 1``
    hops). So for an L-layer model and ``hops = L`` the output on ``S`` is the full-graph output,
    exactly; ``gcn_deg`` carries the full graph's degrees for GCN's normalisation, which the ring
    nodes' truncated edges would change.

    Returns a ``Data`` with ``x [n, F]``, ``y [n]``, ``edge_index [2, e]`` (local ids, the original
    edge order), the masks restricted to the share (a halo node is never trained, validated or tested
    on), ``share_mask [n]``, ``n_id [n]`` (global ids, sorted), ``gcn_deg [n]``, and
    ``full_num_nodes`` / ``full_num_classes`` of the whole graph.
    """
    from slimkit.graph.models import gcn_degree

    n = data.num_nodes
    share = share.unique()
    dist = in_neighborhood(data.edge_index, share, n, hops)
    keep_node = dist >= 0
    inner = keep_node & (dist <= max(hops - 1, 0))
    src, dst = data.edge_index
    keep_edge = keep_node[src] & inner[dst]
    n_id = keep_node.nonzero().view(-1)  # sorted, so local ids keep the global order
    local = torch.full((n,), -1, dtype=torch.long)
    local[n_id] = torch.arange(n_id.numel())
    share_mask = dist[n_id] == 0
    sub = Data(
        x=data.x[n_id],
        y=data.y[n_id],
        edge_index=torch.stack([local[src[keep_edge]], local[dst[keep_edge]]]),
        num_nodes=n_id.numel(),
    )
    for split in ("train", "val", "test"):
        sub[f"{split}_mask"] = data[f"{split}_mask"][n_id] & share_mask
    sub.share_mask, sub.n_id = share_mask, n_id
    sub.gcn_deg = gcn_degree(data.edge_index, n, data.x.dtype)[n_id]
    sub.full_num_nodes, sub.full_num_classes = n, int(data.y.max()) + 1
    return sub


# -- partitions ----------------------------------------------------------------------------------------
def _check_parts(num_parts: int, num_nodes: int) -> None:
    if num_parts < 1:
        raise ConfigError(f"num_parts={num_parts} must be >= 1")
    if num_parts > num_nodes:
        raise DataError(
            f"cannot split a graph of {num_nodes} nodes into {num_parts} partitions (more parts than nodes)"
        )


def metis_partition(edge_index: Tensor, num_nodes: int, num_parts: int, *, seed: int = 0) -> Tensor:
    """METIS k-way partition (Karypis & Kumar 1998) via ``pymetis``: ``part [N]`` in ``0..num_parts-1``.

    ``edge_index`` must be undirected (both directions present), as the loaders return it. Each node
    gets exactly one part. Deterministic for a given ``seed``.
    """
    _check_parts(num_parts, num_nodes)
    if num_parts == 1:
        return torch.zeros(num_nodes, dtype=torch.long)
    from slimkit.graph._extra import require_graph_extra

    require_graph_extra("pymetis")
    import pymetis

    mask = edge_index[0] != edge_index[1]  # METIS rejects self-loops
    csr = CSR.from_edge_index(edge_index[:, mask], num_nodes)
    options = pymetis.Options(seed=seed)
    _, parts = pymetis.part_graph(num_parts, xadj=csr.ptr.tolist(), adjncy=csr.col.tolist(), options=options)
    return torch.as_tensor(parts, dtype=torch.long)


def random_partition(num_nodes: int, num_parts: int, *, seed: int = 0) -> Tensor:
    """A uniformly random balanced partition: ``part [N]``, part sizes differ by at most one."""
    _check_parts(num_parts, num_nodes)
    perm = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed))
    part = torch.empty(num_nodes, dtype=torch.long)
    part[perm] = torch.arange(num_nodes) % num_parts
    return part


def assign_parts(part: Tensor, train_mask: Tensor, num_parts: int, num_ingredients: int) -> list[Tensor]:
    """Disjoint shares of the parts, balanced by training nodes: ``shares[i]`` = part ids of ingredient i.

    METIS balances node counts, not training nodes, and can return empty parts (Karate with 12 / 16 /
    20 parts: 3 / 7 / 14 empty), so ``part j -> ingredient j mod K`` can leave an ingredient with no
    training node. Longest-processing-time assignment instead: parts by training count, descending
    (ties: fewer nodes first, then lower id), each to the ingredient with the fewest training nodes so
    far (ties: fewer parts, then lower index). Parts with no node are dropped. Deterministic.
    """
    train_count = torch.bincount(part[train_mask], minlength=num_parts).tolist()
    size = torch.bincount(part, minlength=num_parts).tolist()
    order = sorted((p for p in range(num_parts) if size[p]), key=lambda p: (-train_count[p], size[p], p))
    load = [(0, 0, i) for i in range(num_ingredients)]  # (training nodes, parts, index)
    shares: list[list[int]] = [[] for _ in range(num_ingredients)]
    for p in order:
        t, k, i = min(load)
        shares[i].append(p)
        load[i] = (t + train_count[p], k + 1, i)
    return [torch.tensor(sorted(s), dtype=torch.long) for s in shares]


def random_part_subsets(
    num_parts: int, fraction: float, num_ingredients: int, *, seed: int = 0
) -> list[Tensor]:
    """``shares[i]``: a random ``max(1, round(fraction · num_parts))`` of the part ids, sorted, drawn from
    ``(seed, i)`` alone (so an ingredient's subset does not depend on how many others there are)."""
    k = max(1, round(fraction * num_parts))
    out = []
    for i in range(num_ingredients):
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, i, 17]).generate_state(1)[0]))
        out.append(torch.randperm(num_parts, generator=g)[:k].sort().values)
    return out


# -- views ---------------------------------------------------------------------------------------------
def make_views(cfg: ViewConfig, data: Data, num_ingredients: int, *, seed: int = 0) -> list[View]:
    """One :class:`View` per ingredient. Partitions are computed once (from ``seed``) and shared."""
    check_positive("num_ingredients", num_ingredients)
    n = data.num_nodes
    edge_index = data.edge_index
    train_idx = data.train_mask.nonzero().view(-1)
    if cfg.kind == "full":
        full = Batch(torch.arange(n), edge_index, train_idx)
        return [View("full", lambda g: iter([full]), train_idx.numel())] * num_ingredients
    if cfg.kind in ("metis", "random"):
        num_parts = cfg.num_parts or max(num_ingredients, n // 100)
        if cfg.disjoint and num_parts < num_ingredients:
            raise ConfigError(
                f"disjoint views need num_parts >= ingredients, got {num_parts} < {num_ingredients}"
            )
        if cfg.kind == "metis":
            part = metis_partition(edge_index, n, num_parts, seed=seed)
        else:
            part = random_partition(n, num_parts, seed=seed)
        if cfg.disjoint:
            shares = assign_parts(part, data.train_mask, num_parts, num_ingredients)
        elif cfg.cluster_fraction < 1.0:
            shares = random_part_subsets(num_parts, cfg.cluster_fraction, num_ingredients, seed=seed)
        else:
            shares = [torch.arange(num_parts)] * num_ingredients
        views = []
        for i, own in enumerate(shares):
            reach = int((data.train_mask & torch.isin(part, own)).sum())
            if reach == 0:
                # an ingredient that never takes a step would be souped as if it had been trained
                raise DataError(
                    f"the {cfg.kind} view of ingredient {i} reaches 0 training nodes "
                    f"({int(data.train_mask.sum())} training nodes, {num_parts} parts, "
                    f"{num_ingredients} ingredients); use fewer ingredients or a non-disjoint view"
                )
            clusters = [(part == p).nonzero().view(-1) for p in own.tolist()]
            views.append(ClusterView(cfg.kind, clusters, cfg.clusters_per_batch, data, reach))
        return views
    csr = CSR.from_edge_index(edge_index, n)
    if cfg.kind == "neighbor":
        fn = _neighbor_epoch(csr, train_idx, cfg.fanouts, cfg.batch_size, n)
    else:
        fn = _saint_epoch(csr, train_idx, cfg.roots, cfg.walk_length, data)
    return [View(cfg.kind, fn, train_idx.numel())] * num_ingredients


def _cluster_epoch(
    members: list[Tensor], per_batch: int, data: Data
) -> Callable[[torch.Generator], Iterator[Batch]]:
    def epoch(g: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(members), generator=g).tolist()
        for start in range(0, len(order), per_batch):
            nodes = torch.cat([members[j] for j in order[start : start + per_batch]])
            loss_nodes = data.train_mask[nodes].nonzero().view(-1)
            if loss_nodes.numel():
                yield Batch(nodes, induced_subgraph(nodes, data.edge_index, data.num_nodes), loss_nodes)

    return epoch


def _neighbor_epoch(
    csr: CSR, train_idx: Tensor, fanouts: tuple[int, ...], batch_size: int, num_nodes: int
) -> Callable[[torch.Generator], Iterator[Batch]]:
    def epoch(g: torch.Generator) -> Iterator[Batch]:
        shuffled = train_idx[torch.randperm(train_idx.numel(), generator=g)]
        for seeds in shuffled.split(batch_size):
            yield neighbor_batch(csr, seeds, fanouts, num_nodes, g)

    return epoch


def _saint_epoch(
    csr: CSR, train_idx: Tensor, roots: int, walk_length: int, data: Data
) -> Callable[[torch.Generator], Iterator[Batch]]:
    # roots are training nodes so every subgraph carries loss; enough subgraphs per epoch that each
    # training node is a root about once in expectation
    steps = max(1, math.ceil(train_idx.numel() / roots))

    def epoch(g: torch.Generator) -> Iterator[Batch]:
        for _ in range(steps):
            chosen = train_idx[torch.randint(0, train_idx.numel(), (roots,), generator=g)]
            nodes = torch.unique(random_walks(csr, chosen, walk_length, g))
            loss_nodes = data.train_mask[nodes].nonzero().view(-1)
            yield Batch(nodes, induced_subgraph(nodes, data.edge_index, data.num_nodes), loss_nodes)

    return epoch
