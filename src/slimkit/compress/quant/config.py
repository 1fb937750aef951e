"""Configs of weight-only quantization: round-to-nearest (RTN), GPTQ and AWQ.

Every method quantizes the targeted linears' weights ``W [out, in]`` to ``bits``-bit integer codes with
one scale (and, when asymmetric, one zero point) per group of ``group_size`` input columns, in the
convention of :mod:`slimkit.nn.quant_primitives`. They differ in how the codes are chosen:

* RTN rounds every weight to its nearest level (data-free);
* GPTQ (arXiv 2210.17323) quantizes column by column and moves each column's error onto the columns
  not yet quantized through the inverse layer Hessian (calibrated);
* AWQ (arXiv 2306.00978) first scales each input channel by ``s = mean|x|^α`` (α grid-searched on
  calibration activations), so salient channels lose less, then rounds (calibrated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError
from slimkit.core.targeting import check_patterns
from slimkit.nn.quant_primitives import MAX_BITS

PER_CHANNEL = "channel"  # group_size alias for None: one scale per output channel
MIN_QUANT_BITS = 2  # 1-bit codes with a zero point are a different method (binarization)


@dataclass(frozen=True, kw_only=True)
class QuantConfig(Config):
    """Options shared by the weight-only quantization methods.

    Attributes:
        bits (int): code width, 2..8. Default: 4.
        group_size (int | None): input columns per scale group; must divide every targeted layer's
            input width (checked before any work). ``None`` (or ``"channel"``): one scale per output channel.
            Default: 128 (GPTQ's, AWQ's and compressed-tensors' W4A16 default).
        symmetric (bool): zero point 0 and a range symmetric about 0 (``s = max|W_g| / ((2^b - 1)/2)``);
            else min/max with a stored zero point. Default: True.
        fake (bool): keep ``nn.Linear`` layers holding the dequantized weights instead of packed
            :class:`~slimkit.nn.quantized.QuantizedLinear` (same numbers, no memory saving: for accuracy
            studies). Default: False.
        targets (tuple[str, ...]): module patterns (exact, class name or ``re:`` regex); ``()`` = every
            linear inside the decoder blocks. Embeddings and ``lm_head`` are never quantized. Default: ().
        ignore (tuple[str, ...]): patterns removed from the targets. Default: ().
    """

    bits: int = 4
    group_size: int | None = 128
    symmetric: bool = True
    fake: bool = False
    targets: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    needs_calibration: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.group_size, str) and self.group_size.strip().lower() == PER_CHANNEL:
            object.__setattr__(self, "group_size", None)  # the spelling a YAML sweep or the CLI can write
        super().__post_init__()
        name = type(self).__name__
        if (
            isinstance(self.bits, bool)
            or not isinstance(self.bits, int)
            or not (MIN_QUANT_BITS <= self.bits <= MAX_BITS)
        ):
            raise ConfigError(f"{name}.bits={self.bits!r} must be an integer in {MIN_QUANT_BITS}..{MAX_BITS}")
        if self.group_size is not None:
            check_range(f"{name}.group_size", self.group_size, 1, None)
        for field_name in ("targets", "ignore"):
            object.__setattr__(
                self, field_name, check_patterns(f"{name}.{field_name}", getattr(self, field_name))
            )


@dataclass(frozen=True, kw_only=True)
class RTNConfig(QuantConfig):
    """Round-to-nearest: ``q = clamp(round(W / s_g) + z_g)``, data-free. Options of :class:`QuantConfig`."""

    needs_calibration: ClassVar[bool] = False


@dataclass(frozen=True, kw_only=True)
class GPTQConfig(QuantConfig):
    """GPTQ — "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers"
    (Frantar, Ashkboos, Hoefler, Alistarh; arXiv 2210.17323). Options of :class:`QuantConfig`, plus:

    Attributes:
        blocksize (int): columns per lazy-update block; a multiple or a divisor of ``group_size``.
            Default: 128.
        percdamp (float): diagonal damping as a fraction of ``mean(diag H)``. Default: 0.01 (AutoGPTQ's;
            transformers' ``GPTQConfig`` uses 0.1).
        act_order (bool): sweep the columns in order of decreasing ``diag(H)`` (``desc_act``). The
            group scales are then fixed from the unquantized weight before the sweep (llm-compressor's
            ``actorder="weight"``), so groups stay contiguous columns and the layout does not change.
            Default: False.
        static_groups (bool): compute every group's scale and zero from the unquantized weight before
            the sweep, also in natural order (AutoGPTQ's ``static_groups``; what llm-compressor 0.14
            does, from its weight observer, in every column order). Default: False: each group's
            parameters are computed when the sweep reaches it, from its columns with every error update
            so far (the GPTQ reference's); implied by ``act_order`` and by per-channel groups.
        true_sequential (bool): quantize a block's linears in groups ``[q,k,v] -> [o] -> [gate,up] ->
            [down]``, re-collecting statistics after each so later groups see the earlier ones
            quantized. Default: True (AutoGPTQ's).
        sequential (bool): calibrate each block on the outputs of the already-quantized blocks before
            it (AutoGPTQ's and llm-compressor's sequential pipeline). ``False``: on the dense model's
            activations, as llm-compressor's ``basic`` pipeline (one block forward per group pass, no
            propagation pass). Default: True.
    """

    blocksize: int = 128
    percdamp: float = 0.01
    act_order: bool = False
    static_groups: bool = False
    true_sequential: bool = True
    sequential: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("GPTQConfig.blocksize", self.blocksize, 1, None)
        check_range("GPTQConfig.percdamp", self.percdamp, 0.0, None)
        group = self.group_size
        if group is not None and self.blocksize % group and group % self.blocksize:
            raise ConfigError(
                f"GPTQConfig.blocksize={self.blocksize} must be a multiple or a divisor of group_size={group} "
                "(a group's scale is computed from columns that hold every update so far)"
            )


@dataclass(frozen=True, kw_only=True)
class AWQConfig(QuantConfig):
    """AWQ — "AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration" (Lin et al.,
    arXiv 2306.00978). Options of :class:`QuantConfig`, plus:

    Attributes:
        grid (int): α values searched, ``α = i / grid`` for ``i = 0 .. grid - 1`` (AutoAWQ's). Default: 20.
        max_tokens (int): calibration tokens kept per input for the search (a random subset when
            there are more; the mean ``|x|`` uses every token). Default: 4096.
        sequential (bool): as :class:`GPTQConfig`'s: search each block on the quantized blocks'
            outputs (default) or, ``False``, on the dense model's activations. Default: True.
    """

    grid: int = 20
    max_tokens: int = 4096
    sequential: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("AWQConfig.grid", self.grid, 1, 1000)
        check_range("AWQConfig.max_tokens", self.max_tokens, 1, None)


__all__ = ["AWQConfig", "GPTQConfig", "MIN_QUANT_BITS", "PER_CHANNEL", "QuantConfig", "RTNConfig"]
