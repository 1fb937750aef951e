"""AWQ: activation-aware per-channel scaling before round-to-nearest quantization.

Lin, Tang, Tang, Yang, Chen, Wang, Xiao, Dang, Gan, Han, "AWQ: Activation-aware Weight Quantization for
LLM Compression and Acceleration" (arXiv 2306.00978). About 1% of a linear's input channels are
salient, and saliency follows the *activation* magnitude. Scaling input channel ``j`` of ``W`` up by
``s_j`` before quantizing and the input down by it,

    y = Q(W · diag(s)) · (diag(s)⁻¹ · x),

shrinks the relative rounding error of the salient channels (their weights span more levels) at
the cost of the others. The scales are ``s = s_X^α`` with ``s_X = mean_t |x_tj|`` ``[in]``, normalised
by ``sqrt(max s · min s)`` (AutoAWQ's), and ``α`` is grid-searched (``α = i / grid``) to minimise the
output error of all linears that read the same input (the paper's Eq. 4, summed over q/k/v or
gate/up):

    L(s) = Σ_linears || Q(W · diag(s)) (diag(s)⁻¹ X)ᵀ - W Xᵀ ||²            X: [tokens, in]

``α = 0`` (``s = 1``) is plain RTN, so the search never does worse than RTN on its calibration tokens.
slimkit keeps ``s`` in the layer (``QuantizedLinear.input_scale``) instead of folding it into the
previous norm or linear as the reference does: exact, one division per input, and it needs no
knowledge of what produced the input. The paper's extra weight-clipping search is not implemented.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.compress.quant.config import AWQConfig
from slimkit.compress.stats import PerInput
from slimkit.models.adapters import linear_weight
from slimkit.nn.quant_primitives import fake_quantize, quantize_groupwise


def awq_scales(x_absmean: Tensor, alpha: float) -> Tensor:
    """``s = x_absmean^α / sqrt(max · min)`` ``[in]`` (fp32; channels that never fired get ``1e-4^α``)."""
    s = x_absmean.float().clamp_min(1e-4).pow(alpha)
    return s / (s.max() * s.min()).sqrt()


def awq_search(
    weights: Sequence[Tensor],
    inputs: Tensor,
    x_absmean: Tensor,
    bits: int,
    group_size: int | None = 128,
    *,
    symmetric: bool = True,
    grid: int = 20,
) -> tuple[Tensor, float, list[float]]:
    """The AWQ scale of linears that share one input (see the module docstring).

    Args:
        weights: the ``[out_i, in]`` weights reading that input.
        inputs: ``[tokens, in]`` calibration activations the loss is measured on.
        x_absmean: ``[in]`` mean absolute activation per channel (over every calibration token).
        bits / group_size / symmetric: the quantizer.
        grid: α values ``i / grid``, ``i = 0 .. grid - 1``.

    Returns:
        ``(s [in], α, losses)``: the best scale, its α and the loss of every α tried (``losses[0]`` is RTN's).
    """
    x = inputs.float()
    refs = [x @ w.float().T for w in weights]
    losses: list[float] = []
    best: tuple[float, float, Tensor] | None = None
    for i in range(grid):
        alpha = i / grid
        s = awq_scales(x_absmean, alpha)
        xs = x / s
        loss = 0.0
        for w, ref in zip(weights, refs, strict=True):
            wq = fake_quantize(w.float() * s, bits, group_size, symmetric=symmetric)
            loss += float((xs @ wq.T - ref).square().mean())
        losses.append(loss)
        if best is None or loss < best[0]:
            best = (loss, alpha, s)
    assert best is not None
    return best[2], best[1], losses


def awq_quantize(
    weight: Tensor, s: Tensor, bits: int, group_size: int | None, *, symmetric: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Codes and group params of ``W · diag(s)`` (RTN); the layer divides its input by ``s``."""
    return quantize_groupwise(weight.float() * s.to(weight.device), bits, group_size, symmetric=symmetric)


class InputStats:
    """Mean ``|x|`` over every token and a uniform sample of at most ``max_tokens`` tokens of one input
    (an :class:`~slimkit.compress.stats.Accumulator`, so :class:`~slimkit.compress.stats.PerInput`
    shares it between the linears that read the same tensor)."""

    def __init__(self, max_tokens: int, generator: torch.Generator) -> None:
        self.abs_sum: Tensor | None = None
        self.tokens = 0
        self.updates = 0
        self.kept: list[Tensor] = []
        self.max_tokens = max_tokens
        self.generator = generator

    def add(self, inputs: Tensor) -> None:
        part = inputs.abs().sum(0)
        self.abs_sum = part if self.abs_sum is None else self.abs_sum.add_(part)
        self.tokens += int(inputs.shape[0])
        self.updates += 1
        self.kept.append(inputs.detach().to("cpu", copy=True))
        if sum(t.shape[0] for t in self.kept) > 2 * self.max_tokens:  # bound memory as chunks arrive
            self.kept = [self.sample()]

    def sample(self) -> Tensor:
        """``[<= max_tokens, in]`` tokens, drawn without replacement (every token when there are fewer)."""
        x = torch.cat(self.kept) if len(self.kept) > 1 else self.kept[0]
        if x.shape[0] <= self.max_tokens:
            return x
        idx = torch.randperm(x.shape[0], generator=self.generator)[: self.max_tokens]
        return x[idx.sort().values]

    def absmean(self) -> Tensor:
        """``[in]`` mean ``|x|`` over every token seen."""
        assert self.abs_sum is not None
        return self.abs_sum / self.tokens


class AWQMethod:
    """The :class:`~slimkit.compress.calibrate.CalibratedMethod` of AWQ.

    Linears that read the same tensor (q/k/v, gate/up: the runner hands them the same object) share
    their statistics and one scale search, done when the first of them is compressed, on the
    unquantized weights of all of them (looked up by name in ``targets``).

    Attributes:
        alphas: the α chosen for each linear (for the report).
    """

    modifies_weights = True

    def __init__(
        self, config: AWQConfig, targets: Mapping[str, nn.Module], finish: Any, *, seed: int = 0
    ) -> None:
        self.config = config
        self.targets = dict(targets)
        self.finish = finish  # (name, module, q, scale, zero, input_scale) -> None
        generator = torch.Generator().manual_seed(seed)
        self.stats: PerInput[InputStats] = PerInput(lambda: InputStats(config.max_tokens, generator))
        self._scales: dict[int, Tensor] = {}
        self.alphas: dict[str, float] = {}

    def sequential_groups(self, adapter: Any) -> None:
        return None  # every linear is scaled on the dense block's inputs, as the reference

    def observe(self, name: str, inputs: Tensor) -> None:
        self.stats.observe(name, inputs)

    def reset(self) -> None:
        self.stats.clear()
        self._scales.clear()

    @torch.no_grad()
    def compress(self, name: str, module: nn.Module) -> None:
        cfg = self.config
        acc = self.stats[name]
        s = self._scales.get(id(acc))
        weight = linear_weight(module)
        if s is None:
            siblings = self.stats.sharing(name)
            s, alpha, _ = awq_search(
                [linear_weight(self.targets[n]) for n in siblings],
                acc.sample().to(weight.device),
                acc.absmean().to(weight.device),
                cfg.bits,
                cfg.group_size,
                symmetric=cfg.symmetric,
                grid=cfg.grid,
            )
            self._scales[id(acc)] = s
            self.alphas.update(dict.fromkeys(siblings, alpha))
        if self.stats.release(name):
            del self._scales[id(acc)]
        q, scale, zero = awq_quantize(weight, s, cfg.bits, cfg.group_size, symmetric=cfg.symmetric)
        self.finish(name, module, q, scale, zero, s)


__all__ = ["AWQMethod", "InputStats", "awq_quantize", "awq_scales", "awq_search"]
