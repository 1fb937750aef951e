"""What a weight-only quantization run did: bits per weight, storage, per-matrix error.

:class:`QuantReport` is a :class:`~slimkit.compress.report.CompressionReport`, so everything that reads
reports (the study, ``slimkit.json``) keeps working. Quantization removes no weight, so
``overall_sparsity`` and each matrix's ``sparsity`` are 0; the size reduction is in
:attr:`QuantReport.size_reduction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.table import Table

from slimkit.compress.report import CompressionReport, MatrixReport, _block_of


@dataclass
class QuantMatrixReport(MatrixReport):
    """One quantized matrix (``sparsity`` 0).

    Attributes (besides :class:`MatrixReport`'s):
        bits_per_weight: stored bits (codes, scales, zero points, AWQ input scale) per weight.
        weight_error: ``||W - W_q||_F / ||W||_F`` of the matrix the layer applies to its input.
        dense_bits: bits per weight of the matrix before (its dtype's width).
        alpha: AWQ's chosen exponent for this matrix's input (``None`` for RTN and GPTQ).
    """

    bits_per_weight: float = 0.0
    weight_error: float = 0.0
    dense_bits: int = 32
    alpha: float | None = None


@dataclass
class QuantReport(CompressionReport):
    """The outcome of an RTN, GPTQ or AWQ ``compress_`` call.

    Attributes (besides :class:`CompressionReport`'s):
        bits / group_size / symmetric / fake: the quantizer (``group_size`` ``None``: per channel).
        bits_per_weight: stored bits per weight over the targeted matrices (``bits + 32/group_size``
            for symmetric groups, plus 8/group_size for zero points; the bits of the dense dtype when
            ``fake``, which stores floats).
        size_reduction: ``1 - stored / dense`` bits of the targeted matrices (0 when ``fake``).
        mean_weight_error: mean of the matrices' ``weight_error``.
        stored_bits / dense_bits: bits of the targeted matrices as stored and as dense floats (the
            study's size column reads them: :func:`slimkit.pipelines._sweep.storage_size`).
    """

    bits: int = 0
    group_size: int | None = None
    symmetric: bool = True
    fake: bool = False
    bits_per_weight: float = 0.0
    size_reduction: float = 0.0
    mean_weight_error: float = 0.0
    stored_bits: int = 0
    dense_bits: int = 0

    matrix_report: ClassVar[type[MatrixReport]] = QuantMatrixReport

    def _quantizer(self) -> str:
        group = "per channel" if self.group_size is None else f"group {self.group_size}"
        kind = "symmetric" if self.symmetric else "asymmetric"
        return f"{self.bits}-bit {kind}, {group}" + (" (fake: dequantized floats)" if self.fake else "")

    def summary(self) -> str:
        mib = self.peak_memory_bytes / 2**20
        return "\n".join(
            [
                f"{self.method}: {len(self.matrices)} matrices, {self._quantizer()}",
                f"  {self.bits_per_weight:.3f} bits per weight stored ({self.size_reduction:.1%} smaller than dense); "
                f"mean relative weight error {self.mean_weight_error:.4f}",
                f"  {self.total_time_s:.2f} s, peak memory {mib:.1f} MiB ({self.peak_memory_kind})",
            ]
        )

    def summary_table(self) -> Table:
        """One row per decoder block (matrices, bits per weight, mean weight error), then the totals."""
        table = Table(title=f"{self.method}: {self._quantizer()}")
        for column in ("block", "matrices", "bits/weight", "weight error", "time (s)"):
            table.add_column(column, justify="right")
        per_block: dict[int, list[Any]] = {}
        for m in self.matrices:
            per_block.setdefault(_block_of(m.name), []).append(m)
        for index in sorted(per_block):
            mats = per_block[index]
            weights = sum(m.shape[0] * m.shape[1] for m in mats)
            table.add_row(
                str(index),
                str(len(mats)),
                f"{sum(m.bits_per_weight * m.shape[0] * m.shape[1] for m in mats) / weights:.3f}",
                f"{sum(m.weight_error for m in mats) / len(mats):.4f}",
                f"{sum(m.time_s for m in mats):.3f}",
            )
        table.add_section()
        table.add_row(
            "all",
            str(len(self.matrices)),
            f"{self.bits_per_weight:.3f}",
            f"{self.mean_weight_error:.4f}",
            f"{self.total_time_s:.3f}",
        )
        table.caption = self.summary().split("\n", 1)[1]
        return table


__all__ = ["QuantMatrixReport", "QuantReport"]
