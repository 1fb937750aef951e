"""LLaGA's node-sequence templates (pure functions, no modules).

LLaGA — "LLaGA: Large Language and Graph Assistant" (Chen et al., ICML 2024, arXiv 2402.08170) turns
each node into a fixed-length sequence of feature vectors that a projector maps into a frozen LLM's
embedding space. Two templates:

**Neighborhood Detail (ND).** A fixed-shape computational tree rooted at the centre node: every node
of hop ``h < H`` has ``k`` children sampled without replacement from its neighbours; when a node has
fewer than ``k`` neighbours the remaining children are placeholders (:data:`PAD`), and a placeholder's
children are all placeholders. The level-order traversal has

    L = 1 + k + k² + … + k^H = (k^{H+1} − 1) / (k − 1)          (H=2, k=10: L = 111)

slots. In the complete k-ary tree in level order the children of slot ``i`` are slots
``k·i + 1 … k·i + k``, so the shape is the same for every node and the structure is fixed. Each slot
gets the node's features (zeros for a placeholder) concatenated with a Laplacian positional encoding
of its slot: the rows of ``U`` in

    L_sym = I − D^{-1/2} A D^{-1/2} = U Λ Uᵀ                    A: the undirected tree, [L, L]

(eigenvectors of the *symmetric* normalised Laplacian, computed with ``eigh``; the reference code
builds ``I − A`` from a one-directional child→parent matrix, whose eigenvalues are all 1, so its
eigenvectors are numerically arbitrary — not copied here).

**Hop-Field Overview (HO).** ``H + 1`` tokens per node, the centre's own features propagated
``0 … H`` times with the normalised adjacency (the reference uses H = 4):

    x⁽⁰⁾ = x,   x⁽ⁱ⁺¹⁾ = D^{-1/2} A D^{-1/2} x⁽ⁱ⁾                  [N, F] each, stacked to [N, H+1, F]
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from slimkit.core.errors import ConfigError

#: the node id of a placeholder slot in a Neighborhood Detail sequence (its features are zeros)
PAD = -1
MAX_SLOTS = 100_000  # one sequence per node of this many feature vectors: a typo beyond it


def nd_length(hops: int, fanout: int) -> int:
    """Slots of a Neighborhood Detail sequence: ``1 + k + … + k^H``."""
    if hops < 0 or fanout < 1:
        raise ConfigError(f"need hops >= 0 and fanout >= 1, got hops={hops}, fanout={fanout}")
    total, level = 1, 1
    for _ in range(hops):
        level *= fanout
        total += level
        if total > MAX_SLOTS:
            raise ConfigError(f"hops={hops}, fanout={fanout} gives more than {MAX_SLOTS:,} slots per node")
    return total


def neighbor_lists(edge_index: Tensor, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the (directed as given) graph: ``(rowptr [N+1], col [E])``, neighbours sorted by id."""
    src = edge_index[0].cpu().numpy().astype(np.int64)
    dst = edge_index[1].cpu().numpy().astype(np.int64)
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    rowptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.add.at(rowptr, src + 1, 1)
    return np.cumsum(rowptr), dst


def neighbor_detail_sequence(
    rowptr: np.ndarray,
    col: np.ndarray,
    center: int,
    *,
    hops: int = 2,
    fanout: int = 10,
    rng: np.random.Generator,
    avoid: int | None = None,
) -> np.ndarray:
    """The level-order ND sequence of node ids (``PAD`` for placeholders) of ``center``: ``[L]`` int64.

    ``avoid`` (link prediction: the other endpoint of the edge asked about) is removed from the
    centre's candidates, so the answer cannot be read off the sequence.
    """
    length = nd_length(hops, fanout)
    seq = np.full(length, PAD, dtype=np.int64)
    seq[0] = center
    first_leaf = length - fanout**hops  # slots from here on have no children
    for i in range(first_leaf):
        node = seq[i]
        if node == PAD:
            continue  # a placeholder's children stay placeholders
        cand = col[rowptr[node] : rowptr[node + 1]]
        if i == 0 and avoid is not None:
            cand = cand[cand != avoid]
        if cand.size > fanout:
            cand = rng.choice(cand, size=fanout, replace=False)
        seq[fanout * i + 1 : fanout * i + 1 + cand.size] = cand
    return seq


def neighbor_detail_sequences(
    edge_index: Tensor,
    num_nodes: int,
    centers: Tensor | list[int],
    *,
    hops: int = 2,
    fanout: int = 10,
    seed: int = 0,
    avoid: Tensor | list[int] | None = None,
) -> Tensor:
    """``[B, L]`` ND sequences of ``centers``; node ``c``'s sample depends only on ``(seed, c, avoid)``,
    never on the batch it is in."""
    rowptr, col = neighbor_lists(edge_index, num_nodes)
    centers = [int(c) for c in centers]
    avoids = [None] * len(centers) if avoid is None else [int(a) for a in avoid]
    if len(avoids) != len(centers):
        raise ConfigError(f"avoid has {len(avoids)} entries for {len(centers)} centres")
    rows = []
    for c, a in zip(centers, avoids, strict=True):
        if not 0 <= c < num_nodes:
            raise ConfigError(f"centre node {c} is outside 0..{num_nodes - 1}")
        rng = np.random.default_rng([seed, c, 0 if a is None else a + 1])
        rows.append(neighbor_detail_sequence(rowptr, col, c, hops=hops, fanout=fanout, rng=rng, avoid=a))
    return (
        torch.from_numpy(np.stack(rows))
        if rows
        else torch.empty(0, nd_length(hops, fanout), dtype=torch.long)
    )


def tree_adjacency(hops: int, fanout: int) -> Tensor:
    """``[L, L]`` symmetric 0/1 adjacency of the complete ``fanout``-ary tree of depth ``hops``."""
    length = nd_length(hops, fanout)
    a = torch.zeros(length, length, dtype=torch.float64)
    for child in range(1, length):
        parent = (child - 1) // fanout
        a[parent, child] = a[child, parent] = 1.0
    return a


def sign_fix(u: Tensor, tol: float = 1e-8) -> Tensor:
    """Flip each column of ``u`` so its first entry with ``|u| > tol`` is positive (a deterministic
    choice between the two unit eigenvectors ``±u``)."""
    big = u.abs() > tol
    first = big.to(torch.int8).argmax(dim=0)  # first True per column
    signs = torch.sign(u[first, torch.arange(u.size(1))])
    signs[signs == 0] = 1.0
    return u * signs


def tree_laplacian_pe(hops: int = 2, fanout: int = 10) -> tuple[Tensor, Tensor]:
    """Laplacian positional encodings of the ND template tree: ``(U [L, L], λ [L])``.

    ``U``'s columns are the orthonormal eigenvectors of ``I − D^{-1/2} A D^{-1/2}`` in ascending order
    of eigenvalue ``λ``, sign-fixed by :func:`sign_fix`; row ``i`` is slot ``i``'s encoding. (Within a
    repeated eigenvalue — the tree has many, by symmetry — any orthonormal basis is valid; ``eigh`` on
    the same matrix returns the same one.) Float32 results, computed in float64.
    """
    a = tree_adjacency(hops, fanout)
    d = a.sum(1)
    inv_sqrt = torch.where(d > 0, d.rsqrt(), torch.zeros_like(d))
    lap = torch.eye(a.size(0), dtype=torch.float64) - inv_sqrt[:, None] * a * inv_sqrt[None, :]
    evals, evecs = torch.linalg.eigh(lap)
    return sign_fix(evecs).float(), evals.float()


def normalized_propagate(x: Tensor, edge_index: Tensor, *, self_loops: bool = False) -> Tensor:
    """``D^{-1/2} A D^{-1/2} x`` by sum aggregation (``[N, F] -> [N, F]``); isolated nodes give zeros.
    ``self_loops`` uses ``A + I`` (and its degrees) instead of ``A``."""
    n = x.size(0)
    src, dst = edge_index[0], edge_index[1]
    if self_loops:
        loop = torch.arange(n, device=x.device)
        src, dst = torch.cat([src, loop]), torch.cat([dst, loop])
    deg = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(
        0, dst, torch.ones_like(dst, dtype=x.dtype)
    )
    inv_sqrt = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    w = inv_sqrt[src] * inv_sqrt[dst]
    return torch.zeros_like(x).index_add_(0, dst, x[src] * w[:, None])


def hop_field_features(x: Tensor, edge_index: Tensor, hops: int = 4, *, self_loops: bool = False) -> Tensor:
    """Hop-Field Overview tokens ``[N, H+1, F]``: ``x, Âx, Â²x, …, Â^H x`` with ``Â = D^{-1/2} A D^{-1/2}``."""
    if hops < 0:
        raise ConfigError(f"hops must be >= 0, got {hops}")
    out = [x]
    for _ in range(hops):
        out.append(normalized_propagate(out[-1], edge_index, self_loops=self_loops))
    return torch.stack(out, dim=1)


def nd_token_features(x: Tensor, seq: Tensor, pe: Tensor) -> tuple[Tensor, Tensor]:
    """Slot inputs of ND sequences: ``(tokens [B, L, F + P], pad [B, L] bool)``.

    ``tokens[b, i] = [x[seq[b, i]] (zeros for PAD), pe[i]]`` with ``pe [L, P]`` the slot encodings.
    """
    pad = seq == PAD
    feats = x[seq.clamp_min(0)] * (~pad).unsqueeze(-1).to(x.dtype)
    pos = pe.to(x.dtype).unsqueeze(0).expand(seq.size(0), -1, -1)
    return torch.cat([feats, pos], dim=-1), pad
