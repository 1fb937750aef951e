"""torch.distributed plumbing shared by every multi-process path (``torchrun``): the process group,
the rank's device, rank-0-only side effects, and a cheap check that ranks agree on a decision.

Under ``torchrun`` (``WORLD_SIZE > 1``) the group comes from its environment (gloo on CPU, NCCL on
CUDA); a caller that already initialised one keeps it. Everything here is a no-op in one process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from slimkit.core.devices import resolve_device
from slimkit.core.errors import SlimkitError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: ``rank`` of ``world_size``; ``owns_group`` if it made the group."""

    rank: int
    world_size: int
    owns_group: bool


def is_distributed() -> bool:
    """Whether an initialised process group with more than one rank exists."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that logs, checkpoints and writes outputs."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in one process), e.g. after rank 0 wrote a file the others read."""
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def distributed_context(device: torch.device) -> Iterator[DistInfo]:
    """The process group of this run: the existing one, one made from ``torchrun``'s environment
    (gloo for CPU, NCCL for CUDA, destroyed on exit), or a single process."""
    if dist.is_available() and dist.is_initialized():
        yield DistInfo(dist.get_rank(), dist.get_world_size(), False)
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        yield DistInfo(0, 1, False)
        return
    if device.type == "cuda" and device.index is not None:
        # NCCL collectives (barrier, object broadcasts, scalar reductions) use the current device
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield DistInfo(dist.get_rank(), dist.get_world_size(), True)
    finally:
        dist.destroy_process_group()


def local_device(device: str | torch.device) -> torch.device:
    """``device``, with CUDA pinned to ``LOCAL_RANK`` under torchrun."""
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None and "LOCAL_RANK" in os.environ:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return dev


def _collective_device() -> torch.device:
    # NCCL reduces CUDA tensors only; gloo CPU ones
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(value: float) -> float:
    """The mean of ``value`` over ranks (``value`` itself in one process)."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank; ``obj`` itself in one process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_same_on_all_ranks(tensors: Sequence[Tensor], what: str) -> None:
    """Raise unless every rank holds the same integer ``tensors`` (one all-reduce of a checksum).

    The checksum is ``[count, Σ v, Σ (j + 1) * v]`` over the concatenated values ``v_j`` (int64): a
    difference in any value, or in the order, changes it; its min and max over ranks then differ.

    Raises:
        SlimkitError: the ranks disagree (they would go on training different models).
    """
    if not is_distributed():
        return
    flat = torch.cat([t.detach().flatten().to("cpu", torch.long) for t in tensors]) if tensors else None
    if flat is None or flat.numel() == 0:
        local = torch.zeros(3, dtype=torch.long)
    else:
        pos = torch.arange(1, flat.numel() + 1, dtype=torch.long)
        local = torch.stack([torch.tensor(flat.numel()), flat.sum(), (pos * flat).sum()])
    both = torch.cat([local, -local]).to(_collective_device())
    dist.all_reduce(both, op=dist.ReduceOp.MAX)  # max of x and max of -x = -min of x
    hi, neg_lo = both[:3], both[3:]
    if not torch.equal(hi, -neg_lo):
        raise SlimkitError(
            f"rank {dist.get_rank()}: the ranks disagree on {what}; their gradients or data differ "
            "(every rank must see the all-reduced gradients)"
        )


__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "check_same_on_all_ranks",
    "distributed_context",
    "is_distributed",
    "is_main_process",
    "local_device",
    "rank",
    "world_size",
]
