"""The ``compress_`` handler of :class:`FFNStructuredConfig`: score every FFN neuron once, remove the weakest.

1. the calibration windows run through the whole model in chunks of ``chunk_size``: with
   ``sensitivity`` forward and backward of the LM loss (the |θ ⊙ ∇θ| of each chunk is accumulated),
   with ``activation`` forward only (hooks record each sequence's mean |h| per neuron);
2. every block keeps its top-``w`` neurons (:func:`~slimkit.compress.structured.importance.keep_top`);
3. :func:`~slimkit.compress.structured.ffn.shrink_ffn_` removes the rest from the weights.

Unlike the layer-wise pruning methods this needs the whole model on the compute device at once (the
loss gradient reaches every block), which is cheap at the sizes it targets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from rich.table import Table
from torch import Tensor, nn

from slimkit.compress.api import COMPRESSORS
from slimkit.compress.report import CompressionReport, calibration_record
from slimkit.compress.structured.config import FFNStructuredConfig
from slimkit.compress.structured.ffn import FFNSite, ffn_sites, shrink_ffn_
from slimkit.compress.structured.importance import activation_importance, keep_top, neuron_sensitivity
from slimkit.core.devices import model_device
from slimkit.core.errors import DataError


@dataclass
class StructuredReport(CompressionReport):
    """What structured FFN pruning did (beside :class:`CompressionReport`'s fields, whose per-matrix
    list stays empty: no weight is zeroed, whole neurons are removed).

    Attributes:
        width_before / width_after: FFN intermediate width per block before and after.
        params_before / params_after: parameters of the whole model before and after.
        importance: the neuron criterion used.
        weight_bits: bits per stored parameter (its dtype); ``overall_sparsity`` is the fraction of
            the model's parameters removed, ``stored_bits`` / ``dense_bits`` the whole model's size.
    """

    width_before: int = 0
    width_after: int = 0
    params_before: int = 0
    params_after: int = 0
    importance: str = ""
    weight_bits: int = 32

    @property
    def stored_bits(self) -> int:
        """Bits of the whole pruned model as stored (dense, ``weight_bits`` per parameter)."""
        return self.params_after * self.weight_bits

    @property
    def dense_bits(self) -> int:
        return self.params_before * self.weight_bits

    def summary(self) -> str:
        return (
            f"{self.method}: FFN width {self.width_before} -> {self.width_after} per block ({self.importance}), "
            f"parameters {self.params_before:,} -> {self.params_after:,} "
            f"({1 - self.params_after / max(self.params_before, 1):.1%} fewer), {self.total_time_s:.2f} s"
        )

    def summary_table(self) -> Table:
        table = Table(title=f"{self.method} ({self.importance})")
        for col in ("FFN width", "parameters", "removed", "time (s)"):
            table.add_column(col, justify="right")
        table.add_row(
            f"{self.width_before} -> {self.width_after}",
            f"{self.params_before:,} -> {self.params_after:,}",
            f"{1 - self.params_after / max(self.params_before, 1):.1%}",
            f"{self.total_time_s:.2f}",
        )
        return table


@contextlib.contextmanager
def _grad_enabled(model: nn.Module) -> Iterator[None]:
    """Gradients on for every parameter (the CLI may run under inference mode), restored afterwards."""
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    try:
        with torch.inference_mode(False), torch.enable_grad():
            for p in flags:
                p.requires_grad_(True)
            model.eval()  # dropout off: the score of one fixed function
            yield
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
            p.grad = None
        model.train(was_training)


def sensitivity_scores(
    model: nn.Module, sites: list[FFNSite], calib: Tensor, chunk_size: int
) -> list[Tensor]:
    """Per block ``[I]``: the |θ ⊙ ∇θ| score averaged over chunks of calibration windows."""
    from slimkit.train.loop import causal_lm_loss

    device = model_device(model)
    totals = [torch.zeros(s.width) for s in sites]
    chunks = list(calib.split(chunk_size))
    with _grad_enabled(model):
        for chunk in chunks:
            model.zero_grad(set_to_none=True)
            causal_lm_loss(model, chunk.to(device)).backward()
            for total, site in zip(totals, sites, strict=True):
                total += site_sensitivity(site).cpu()
    return [t / len(chunks) for t in totals]


def site_sensitivity(site: FFNSite) -> Tensor:
    """``[I]``: the |θ ⊙ ∇θ| score of one FFN from the gradients its parameters hold now."""
    w_in, g_in, b_in, gb_in = [], [], [], []
    for mod in site.inputs:
        w = mod.weight.detach()
        g = mod.weight.grad if mod.weight.grad is not None else torch.zeros_like(w)
        if w.shape[0] != site.width:  # Conv1D: [H, I]
            w, g = w.t(), g.t()
        w_in.append(w)
        g_in.append(g)
        bias = getattr(mod, "bias", None)
        b_in.append(None if bias is None else bias.detach())
        gb_in.append(None if bias is None or bias.grad is None else bias.grad)
    w_out = site.output.weight.detach()
    g_out = site.output.weight.grad if site.output.weight.grad is not None else torch.zeros_like(w_out)
    if w_out.shape[1] != site.width:  # Conv1D: [I, H]
        w_out, g_out = w_out.t(), g_out.t()
    return neuron_sensitivity(w_in, g_in, w_out, g_out, b_in, gb_in)


@torch.no_grad()
def activation_scores(model: nn.Module, sites: list[FFNSite], calib: Tensor, chunk_size: int) -> list[Tensor]:
    """Per block ``[I]``: Minitron's activation score (mean |h| over a sequence's tokens, L2 over sequences)."""
    device = model_device(model)
    per_seq: list[list[Tensor]] = [[] for _ in sites]
    batch = [0]

    def hook(i: int):
        def record(module: nn.Module, args: tuple[Any, ...]) -> None:
            # OPT feeds fc2 flattened [batch * seq, I]: restore the sequences of the current chunk
            h = args[0].detach().float().reshape(batch[0], -1, args[0].shape[-1])
            per_seq[i].append(h.abs().mean(dim=1).cpu())  # [batch, I]

        return record

    handles = [s.output.register_forward_pre_hook(hook(i)) for i, s in enumerate(sites)]
    was_training = model.training
    model.eval()
    try:
        for chunk in calib.split(chunk_size):
            batch[0] = chunk.shape[0]
            model(input_ids=chunk.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [activation_importance(torch.cat(rows)) for rows in per_seq]


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (``parameters()`` already yields a tied head once)."""
    return sum(p.numel() for p in model.parameters())


@COMPRESSORS.register(FFNStructuredConfig, "ffn-structured")
def ffn_structured_compress_(
    model: nn.Module,
    config: FFNStructuredConfig,
    calib: Tensor | None = None,
    *,
    device: torch.device | None = None,
    progress: bool = True,
    chunk_size: int = 8,
) -> StructuredReport:
    """Structured FFN-neuron pruning in one shot (the ``compress_`` handler of :class:`FFNStructuredConfig`).

    The model is moved to ``device`` for the scoring passes and back to where it was.

    Raises:
        DataError: no calibration windows.
        ConfigError: ``target_width`` larger than the model's FFN width.
        UnsupportedArchitectureError: an MLP layout without separate in/out projections (fused gate_up).
    """
    sites = ffn_sites(model)
    width = sites[0].width
    kept = config.kept_width(width)
    if calib is None:
        raise DataError("ffn-structured needs calibration windows (compress_(..., calib=ids))")
    home = model_device(model)
    if device is not None:
        model.to(device)
    params_before = count_parameters(model)
    bits = next((torch.finfo(p.dtype).bits for p in model.parameters() if p.is_floating_point()), 32)
    try:
        scorer = sensitivity_scores if config.importance == "sensitivity" else activation_scores
        scores = scorer(model, sites, calib, chunk_size)
        keep = [keep_top(s, kept) for s in scores]
        shrink_ffn_(model, keep, sites=sites)
    finally:
        model.to(home)
    params_after = count_parameters(model)
    return StructuredReport(
        method="ffn-structured",
        config=config.to_dict(),
        calibration=calibration_record(calib),
        # the share of the model's parameters removed: what a sweep compares against other methods
        overall_sparsity=1.0 - params_after / params_before,
        width_before=width,
        width_after=kept,
        params_before=params_before,
        params_after=params_after,
        importance=config.importance,
        weight_bits=bits,
        block_sparsity=[None] * len(sites),
    )


__all__ = [
    "StructuredReport",
    "activation_scores",
    "count_parameters",
    "ffn_structured_compress_",
    "sensitivity_scores",
    "site_sensitivity",
]
