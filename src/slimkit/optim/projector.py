"""GaLore's low-rank gradient projector and Q-GaLore's INT4 projection storage (pure tensor math).

GaLore — "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection" (Zhao et al.,
arXiv 2403.03507). Q-GaLore — "Q-GaLore: Quantized GaLore with INT4 Projection and Layer-Adaptive
Low-Rank Gradients" (Zhang et al., arXiv 2407.08296).

For a gradient ``G [m, n]`` and rank ``r`` the subspace is the top-``r`` singular vectors of ``G``:

    side "left":   P = U[:, :r]  [m, r],   R = Pᵀ G  [r, n],   back(N) = α · P N      [m, n]
    side "right":  P = V[:, :r]  [n, r],   R = G P   [m, r],   back(N) = α · N Pᵀ     [m, n]

``proj_type="std"`` projects the smaller side (right when ``m >= n``, else left), so the Adam moments
of ``R`` cost ``2 · r · max(m, n)`` numbers instead of ``2 · m · n``. ``P`` always has orthonormal
columns. The subspace comes from a full SVD (``torch.linalg.svd``) or a randomized one
(``torch.svd_lowrank`` with ``oversample`` extra columns and ``niter`` power iterations).

When ``r`` equals the projected side's full dimension the subspace is the whole space; the projector
is then the identity (no SVD is run), so the step is exactly Adam's: Adam is not rotation invariant,
and an arbitrary orthonormal basis of the full space would give a different (not better) update.

Q-GaLore's layer-adaptive refresh: after each SVD the absolute cosine between the new and previous
leading singular vector (column 0 of ``P``; absolute because singular vectors are defined up to sign)
enters a FIFO of ``queue_size`` (default 5). When the FIFO is full and its mean is >= ``threshold``
(default 0.4) the layer's refresh interval is multiplied by ``gamma`` (default 2). The FIFO is not
cleared, so a layer that stays stable keeps doubling at each later SVD; the interval never shrinks.

Q-GaLore's INT4 storage: ``P`` flattened and cut into groups of ``group_size`` (default 256)
consecutive values, each group asymmetric min-max quantized (``slimkit.nn.quant_primitives``) and the
4-bit codes packed two per byte: ``numel / 2`` bytes plus one float32 scale and one int8 zero per group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from slimkit.core.errors import ConfigError
from slimkit.nn import quant_primitives as qp

ProjType = Literal["std", "left", "right"]
Side = Literal["left", "right", "identity"]
PROJ_TYPES = ("std", "left", "right")
SVD_METHODS = ("full", "randomized")


def check_projectable(shape: Sequence[int], rank: int, where: str = "GaLore") -> None:
    """Raise :class:`ConfigError` unless a ``shape`` matrix can be projected to ``rank``.

    ``rank`` must be an integer in ``[1, min(m, n)]`` and the tensor 2-D.
    """
    if len(shape) != 2:
        raise ConfigError(
            f"{where}: low-rank projection needs a 2-D matrix, got shape {tuple(shape)}; "
            "leave this parameter out of the projected group"
        )
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"{where}: rank must be a positive integer, got {rank!r}")
    if rank > min(shape):
        raise ConfigError(
            f"{where}: rank {rank} exceeds the smaller side {min(shape)} of shape {tuple(shape)}"
        )


def projection_side(shape: Sequence[int], rank: int, proj_type: str = "std") -> Side:
    """Which side of an ``[m, n]`` matrix ``proj_type`` projects (``identity`` when rank is full)."""
    if proj_type not in PROJ_TYPES:
        raise ConfigError(f"proj_type must be one of {PROJ_TYPES}, got {proj_type!r}")
    check_projectable(shape, rank)
    m, n = shape
    side: Side = ("right" if m >= n else "left") if proj_type == "std" else proj_type  # type: ignore[assignment]
    if rank == (m if side == "left" else n):
        return "identity"
    return side


def svd_projector(
    grad: Tensor,
    rank: int,
    side: Side,
    *,
    method: str = "full",
    oversample: int = 8,
    niter: int = 2,
) -> Tensor:
    """Orthonormal basis ``P`` of the top-``rank`` singular subspace of ``grad [m, n]`` on ``side``.

    Returns:
        float32 ``[m, rank]`` (left) or ``[n, rank]`` (right). ``side="identity"`` returns an empty
        tensor (the identity is never materialised).
    """
    if side == "identity":
        return grad.new_zeros(0, dtype=torch.float32)
    if method not in SVD_METHODS:
        raise ConfigError(f"svd method must be one of {SVD_METHODS}, got {method!r}")
    g = grad.detach().float()
    if method == "full":
        u, _, vh = torch.linalg.svd(g, full_matrices=False)
        p = u[:, :rank] if side == "left" else vh[:rank].T
    else:
        q = min(rank + oversample, min(g.shape))
        u, _, v = torch.svd_lowrank(g, q=q, niter=niter)
        p = u[:, :rank] if side == "left" else v[:, :rank]
    return p.contiguous()


def project(grad: Tensor, p: Tensor, side: Side) -> Tensor:
    """``R = Pᵀ G`` (left, ``[r, n]``), ``G P`` (right, ``[m, r]``) or ``G`` (identity), in float32."""
    g = grad.float()
    if side == "identity":
        return g
    return p.T @ g if side == "left" else g @ p


def project_back(low: Tensor, p: Tensor, side: Side, scale: float = 1.0) -> Tensor:
    """``α · P N`` (left) or ``α · N Pᵀ`` (right), ``[m, n]``; ``α · N`` for the identity."""
    full = low if side == "identity" else (p @ low if side == "left" else low @ p.T)
    return full * scale if scale != 1.0 else full


def leading_cosine(p_new: Tensor, p_old: Tensor) -> float:
    """``|cos(p_new[:, 0], p_old[:, 0])|``: how much the dominant direction moved between refreshes."""
    a, b = p_new[:, 0].float(), p_old[:, 0].float()
    denom = (a.norm() * b.norm()).clamp_min(1e-12)
    return float((a @ b).abs() / denom)


def push_cosine(queue: list[float], cosine: float, queue_size: int = 5) -> list[float]:
    """The FIFO after appending ``cosine`` (oldest dropped beyond ``queue_size``); a new list."""
    return ([*queue, float(cosine)])[-queue_size:]


def next_refresh_gap(
    queue: Sequence[float], gap: int, *, threshold: float = 0.4, gamma: float = 2.0, queue_size: int = 5
) -> int:
    """Q-GaLore's layer-adaptive interval: ``int(gap · gamma)`` when the cosine FIFO is full
    (``len(queue) >= queue_size``) and ``mean(queue) >= threshold``; otherwise ``gap`` unchanged."""
    if len(queue) >= queue_size and sum(queue) / len(queue) >= threshold:
        return int(gap * gamma)
    return gap


# ------------------------------------------------------------------------------------ INT4 storage


def check_quantizable(numel: int, group_size: int, where: str = "projection") -> None:
    """Raise :class:`ConfigError` unless ``group_size`` is a positive integer dividing ``numel``."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ConfigError(f"{where}: group size must be a positive integer, got {group_size!r}")
    if numel % group_size:
        raise ConfigError(
            f"{where}: group size {group_size} does not divide its {numel} elements; "
            "choose a group size that divides rank x side length"
        )


def quantize_projection(p: Tensor, bits: int = 4, group_size: int = 256) -> dict[str, Tensor]:
    """Asymmetric group quantization of ``P`` (flattened, ``group_size`` consecutive values per group),
    codes packed ``8 / bits`` per byte.

    Returns:
        ``{"codes": uint8 [groups, group_size * bits / 8], "scale": float32 [groups, 1],
        "zero": int8 [groups, 1]}``; with nearest rounding ``|P - P̂| <= scale / 2`` elementwise.
    """
    check_quantizable(p.numel(), group_size)
    flat = p.detach().float().reshape(-1, group_size)
    q, scale, zero = qp.quantize_groupwise(flat, bits, group_size, symmetric=False)
    return {"codes": qp.pack(q, bits), "scale": scale, "zero": zero}


def dequantize_projection(stored: dict[str, Tensor], shape: Sequence[int], bits: int = 4) -> Tensor:
    """Inverse of :func:`quantize_projection`: float32 ``P̂`` of ``shape``."""
    scale = stored["scale"]
    numel = 1
    for d in shape:
        numel *= int(d)
    group_size = numel // scale.shape[0]
    q = qp.unpack(stored["codes"], bits, group_size)
    return qp.dequantize(q, scale, stored["zero"], group_size).reshape(tuple(shape))


def projection_bytes(stored: dict[str, Tensor]) -> int:
    """Bytes the stored projection occupies (codes + scales + zeros)."""
    return sum(t.numel() * t.element_size() for t in stored.values())


__all__ = [
    "PROJ_TYPES",
    "SVD_METHODS",
    "check_projectable",
    "check_quantizable",
    "dequantize_projection",
    "leading_cosine",
    "next_refresh_gap",
    "project",
    "project_back",
    "projection_bytes",
    "projection_side",
    "push_cosine",
    "quantize_projection",
    "svd_projector",
]
