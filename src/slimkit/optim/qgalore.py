"""Q-GaLore's AdamW: GaLore with INT4 projections, layer-adaptive refresh and INT8 weights.

Q-GaLore — "Q-GaLore: Quantized GaLore with INT4 Projection and Layer-Adaptive Low-Rank Gradients"
(Zhang et al., arXiv 2407.08296). Same step as :func:`slimkit.optim.galore.galore_adam_step`, with:

- projections ``P`` stored as ``proj_bits`` (4) codes packed two per byte, a float32 scale and an
  int8 zero per ``proj_group_size`` (256) values; dequantised transiently for each step;
- layer-adaptive refresh: |cos| of the leading singular vectors of consecutive SVDs into a FIFO of
  ``queue_size`` (5); full FIFO with mean >= ``cos_threshold`` (0.4) multiplies the layer's
  interval by ``gamma`` (2) — see :func:`slimkit.optim.projector.next_refresh_gap`;
- weights of :class:`slimkit.nn.int8.Int8TrainingLinear` layers (see
  :func:`slimkit.nn.int8.prepare_int8_training_`) updated as ``Q_SR(Ŵ (1 - lr·wd) + Δ)`` with
  stochastic rounding, no high-precision copy kept between steps.

Unlike the reference, nothing here needs bitsandbytes; the same code runs on CPU and GPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from slimkit.optim.galore import GROUP_DEFAULTS, GaLoreAdamW

QGALORE_DEFAULTS: dict[str, Any] = {**GROUP_DEFAULTS, "proj_bits": 4, "cos_threshold": 0.4}


class QGaLoreAdamW(GaLoreAdamW):
    """:class:`GaLoreAdamW` with Q-GaLore's defaults: INT4 projections (``proj_bits=4``, group 256)
    and the adaptive interval (``cos_threshold=0.4``, ``queue_size=5``, ``gamma=2``).

    Weights must be converted with :func:`slimkit.nn.int8.prepare_int8_training_` before the
    param groups are built for them to be held as INT8; float weights are stepped as in GaLore.
    """

    _GROUP_DEFAULTS = QGALORE_DEFAULTS

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.015,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        **defaults: Any,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **defaults)


__all__ = ["QGALORE_DEFAULTS", "QGaLoreAdamW"]
