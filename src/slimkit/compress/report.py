"""What a compression run did: per-matrix and overall sparsity, time and peak memory.

``compress_`` returns a :class:`CompressionReport`; the CLI prints :meth:`CompressionReport.summary`
and stores :meth:`CompressionReport.to_dict` in the output directory's ``slimkit.json``.

Peak memory is measured two ways, and ``peak_memory_kind`` says which:

* ``"cuda_max_allocated"``: ``torch.cuda.max_memory_allocated`` on the compute device, reset at the
  start of the run (tensor memory only; the CUDA context and allocator cache are not counted).
* ``"rss_peak_delta"``: growth of the process's peak resident set size (``ru_maxrss``) during the
  run. The OS never resets that peak, so a run that stays below an earlier high-water mark reports
  0; it is an upper bound on nothing and a lower bound on the extra memory the run needed.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import torch
from rich.table import Table


def calibration_record(calib: torch.Tensor) -> dict[str, Any]:
    """What a report records of calibration ids ``[nsamples, seqlen]`` (``compress_`` adds source and
    coverage when it was given a :class:`~slimkit.data.calibration.CalibrationSet`)."""
    return {"nsamples": int(calib.shape[0]), "seqlen": int(calib.shape[1])}


@dataclass
class MatrixReport:
    """One compressed weight matrix.

    Attributes:
        name: fully-qualified module name (``model.layers.0.mlp.up_proj``).
        shape: weight shape as ``[out, in]``.
        sparsity: achieved fraction of exact zeros after compression.
        target_sparsity: the sparsity this matrix was asked for (differs by block under OWL).
        time_s: seconds spent compressing this matrix (excludes calibration forward passes).
    """

    name: str
    shape: tuple[int, int]
    sparsity: float
    target_sparsity: float
    time_s: float

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["shape"] = list(self.shape)
        return out


@dataclass
class CompressionReport:
    """The outcome of one ``compress_`` call.

    Attributes:
        method: the short method name (``wanda``).
        config: the config as :meth:`slimkit.core.config.Config.to_dict`.
        matrices: one :class:`MatrixReport` per compressed matrix, in model order.
        overall_sparsity: zeros / weights over all targeted matrices.
        block_sparsity: achieved sparsity of each decoder block's targeted matrices (``None`` for a
            block with no target).
        block_target_sparsity: the per-block sparsity the allocation asked for (OWL), else ``None``.
        total_time_s: wall time of the whole call, calibration passes included.
        peak_memory_bytes / peak_memory_kind: see the module docstring.
        calibration: ``{"nsamples": N, "seqlen": L}`` (plus ``"source"`` and ``"coverage"`` when
            :func:`~slimkit.compress.calibration_for` drew it), or ``None`` for a data-free run.
    """

    method: str
    config: dict[str, Any]
    matrices: list[MatrixReport] = field(default_factory=list)
    overall_sparsity: float = 0.0
    block_sparsity: list[float | None] = field(default_factory=list)
    block_target_sparsity: list[float | None] | None = None
    total_time_s: float = 0.0
    peak_memory_bytes: int = 0
    peak_memory_kind: str = "rss_peak_delta"
    calibration: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["matrices"] = [m.to_dict() for m in self.matrices]
        return out

    #: the per-matrix record type a subclass stores (``LowRankMatrixReport``, ``QuantMatrixReport``)
    matrix_report: ClassVar[type[MatrixReport]] = MatrixReport

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        data = dict(data)
        data["matrices"] = [
            cls.matrix_report(**{**m, "shape": tuple(m["shape"])}) for m in data.get("matrices", [])
        ]
        return cls(**data)

    def summary(self) -> str:
        """A few human-readable lines: method, overall sparsity, time, memory, per-block sparsity."""
        mib = self.peak_memory_bytes / 2**20
        lines = [
            f"{self.method}: {len(self.matrices)} matrices, overall sparsity {self.overall_sparsity:.4f}, "
            f"{self.total_time_s:.2f} s, peak memory {mib:.1f} MiB ({self.peak_memory_kind})"
        ]
        blocks = ", ".join("-" if s is None else f"{s:.3f}" for s in self.block_sparsity)
        lines.append(f"  block sparsity: [{blocks}]")
        return "\n".join(lines)

    def summary_table(self) -> Table:
        """A rich table: one row per decoder block (target and achieved sparsity), then the totals."""
        table = Table(
            title=f"{self.method}: {self.config.get('pattern', '')} {self.config.get('sparsity', '')}".strip()
        )
        table.add_column("block", justify="right")
        table.add_column("matrices", justify="right")
        table.add_column("target", justify="right")
        table.add_column("sparsity", justify="right")
        table.add_column("time (s)", justify="right")
        per_block: dict[int, list[MatrixReport]] = {}
        for m in self.matrices:
            per_block.setdefault(_block_of(m.name), []).append(m)
        for index, achieved in enumerate(self.block_sparsity):
            if achieved is None:
                continue
            mats = per_block.get(index, [])
            target = mats[0].target_sparsity if mats else float("nan")
            table.add_row(
                str(index),
                str(len(mats)),
                f"{target:.4f}",
                f"{achieved:.4f}",
                f"{sum(m.time_s for m in mats):.3f}",
            )
        table.add_section()
        table.add_row(
            "all",
            str(len(self.matrices)),
            f"{self.config.get('sparsity', float('nan')):.4f}",
            f"{self.overall_sparsity:.4f}",
            f"{self.total_time_s:.3f}",
        )
        table.caption = (
            f"peak memory {self.peak_memory_bytes / 2**20:.1f} MiB ({self.peak_memory_kind}); total time includes "
            "calibration passes"
        )
        return table


def _block_of(name: str) -> int:
    """The block index in a name like ``model.layers.3.mlp.up_proj`` (the first integer component)."""
    for part in name.split("."):
        if part.isdigit():
            return int(part)
    return -1


def _rss_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux reports KiB


@contextmanager
def measure(device: torch.device | None) -> Iterator[dict[str, Any]]:
    """Time a block and record its peak memory into the yielded dict (keys ``time_s``, ``peak_bytes``, ``kind``)."""
    stats: dict[str, Any] = {}
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _rss_peak_bytes()
    start = time.perf_counter()
    try:
        yield stats
    finally:
        if cuda:
            torch.cuda.synchronize(device)
            stats["peak_bytes"] = int(torch.cuda.max_memory_allocated(device))
            stats["kind"] = "cuda_max_allocated"
        else:
            stats["peak_bytes"] = max(0, _rss_peak_bytes() - rss_before)
            stats["kind"] = "rss_peak_delta"
        stats["time_s"] = time.perf_counter() - start
