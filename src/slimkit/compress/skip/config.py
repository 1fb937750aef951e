"""Configs of FFN-SkipLLM and of the two layer-skipping baselines it is compared with."""

from __future__ import annotations

import math
from dataclasses import dataclass

from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError


def _check_int(name: str, value: int, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{name}={value!r} must be an integer >= {lo}")


@dataclass(frozen=True, kw_only=True)
class DecodeCalibration(Config):
    """How a decode-time threshold is calibrated: greedy generation from calibration prompts.

    The first ``prompts`` calibration sequences, cut to their first ``prompt_len`` tokens, are decoded
    greedily for exactly ``new_tokens`` tokens, ``batch_size`` at a time, for each threshold tried.

    Attributes:
        prompts (int): calibration prompts used (at most the calibration set's size). Default: 16.
        prompt_len (int): prompt tokens (at most the calibration sequence length). Default: 32.
        new_tokens (int): tokens generated per prompt. Default: 32.
        tolerance (float): a calibrated ratio further than this from the target is reported as missed
            when it falls short (raised as an error), kept when it overshoots by the threshold's
            granularity. Default: 0.02.
        warmup_tokens (int): full-model tokens at the start of each generation, >= 1 (the prompt pass
            is the first). Default: 2.
    """

    prompts: int = 16
    prompt_len: int = 32
    new_tokens: int = 32
    tolerance: float = 0.02
    warmup_tokens: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        for field_name in ("prompts", "prompt_len", "new_tokens", "warmup_tokens"):
            _check_int(f"{name}.{field_name}", getattr(self, field_name), 1)
        check_range(f"{name}.tolerance", self.tolerance, 0.0, 0.5, lo_inclusive=False)
        if self.warmup_tokens >= self.new_tokens:
            raise ConfigError(
                f"{name}: warmup_tokens={self.warmup_tokens} is not shorter than the calibration generation "
                f"(new_tokens={self.new_tokens}); nothing would ever be skipped"
            )

    def _check_target(self, field_name: str, value: float | None) -> None:
        if value is not None:
            check_range(f"{type(self).__name__}.{field_name}", value, 0.0, 1.0, hi_inclusive=False)

    def _check_threshold(self, value: float | None) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value)
        ):
            raise ConfigError(f"{type(self).__name__}.threshold={value!r} must be a number (above 1: never)")


@dataclass(frozen=True, kw_only=True)
class FFNSkipConfig(DecodeCalibration):
    """FFN-SkipLLM — "FFN-SkipLLM: A Hidden Gem for Autoregressive Decoding with Adaptive Feed Forward
    Skipping" (Jaiswal et al., arXiv 2404.03865).

    Per row and generated token past the warm-up, in the eligible layers (all but the first
    ``cold_start`` and last ``cold_end``): ``cos(h, h + FFN(h)) >= τ`` skips the FFNs of the next
    ``extent`` eligible layers (``None``: all of them, up to the cold region). Attention and the KV
    cache always run. Give ``threshold`` (τ, data-free) or ``target_ratio`` (τ calibrated by greedy
    decoding so that the fraction of FFN blocks skipped, over all layers and generated tokens, is
    nearest it); neither: ``target_ratio=0.25``.

    Attributes:
        threshold (float | None): τ; above 1 never skips. Default: None.
        target_ratio (float | None): skip ratio to calibrate for, in [0, 1). Default: None (0.25).
        cold_start / cold_end (int): layers at the bottom / top never skipped. Default: 1 / 1.
        extent (int | None): eligible FFNs skipped after a trigger, >= 1; None: up to the cold region.
            Default: None.
        (and the :class:`DecodeCalibration` fields: warm-up and calibration generation)
    """

    threshold: float | None = None
    target_ratio: float | None = None
    cold_start: int = 1
    cold_end: int = 1
    extent: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threshold is not None and self.target_ratio is not None:
            raise ConfigError(
                f"FFNSkipConfig: give threshold or target_ratio, not both (got {self.threshold} and {self.target_ratio})"
            )
        if self.threshold is None and self.target_ratio is None:
            object.__setattr__(self, "target_ratio", 0.25)
        self._check_threshold(self.threshold)
        self._check_target("target_ratio", self.target_ratio)
        _check_int("FFNSkipConfig.cold_start", self.cold_start, 0)
        _check_int("FFNSkipConfig.cold_end", self.cold_end, 0)
        if self.extent is not None:
            _check_int("FFNSkipConfig.extent", self.extent, 1)

    @property
    def needs_calibration(self) -> bool:
        return self.threshold is None


@dataclass(frozen=True, kw_only=True)
class LayerDropConfig(Config):
    """ShortGPT — "ShortGPT: Layers in Large Language Models are More Redundant Than You Expect" (Men
    et al., arXiv 2403.03853): remove whole decoder blocks, lowest block influence first.

    ``BI_i = 1 - E[cos(x_i, x_{i+1})]`` over the calibration tokens (``x_i`` block ``i``'s input). The
    blocks with the lowest BI are bypassed (their input passes through, their KV cache stays empty)
    until the removed share of decoder-block linear FLOPs is nearest ``compute_ratio``; block 0 is
    always kept (transformers reads the cache length from it). Calibrated.

    Attributes:
        compute_ratio (float): share of decoder-block linear FLOPs to remove, in [0, 1). Default: 0.15.
    """

    compute_ratio: float = 0.15

    needs_calibration = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("LayerDropConfig.compute_ratio", self.compute_ratio, 0.0, 1.0, hi_inclusive=False)


@dataclass(frozen=True, kw_only=True)
class EarlyExitConfig(DecodeCalibration):
    """CALM-style early exit — "Confident Adaptive Language Modeling" (Schuster et al., arXiv
    2207.07061), with its hidden-state saturation confidence and state propagation.

    Per row and generated token past the warm-up: after block ``l >= min_layer``, ``cos(x_l, x_{l+1})
    >= τ`` exits; every later block gets the exited state copied in: it still runs on that state to
    fill its KV cache (CALM's propagation, the thing FFN-SkipLLM avoids) and its output is replaced by
    its input, so the final norm and LM head read the exited state. Saved compute is everything but
    the K/V projections of the blocks after the exit. Give ``threshold`` or ``compute_ratio`` (τ
    calibrated for that share of decoder-block linear FLOPs); neither: ``compute_ratio=0.15``.

    Attributes:
        threshold (float | None): τ; above 1 never exits. Default: None.
        compute_ratio (float | None): share of decoder-block linear FLOPs to save, in [0, 1). Default: None.
        min_layer (int): first block after which a row may exit, >= 0. Default: 1.
        (and the :class:`DecodeCalibration` fields)
    """

    threshold: float | None = None
    compute_ratio: float | None = None
    min_layer: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threshold is not None and self.compute_ratio is not None:
            raise ConfigError(
                f"EarlyExitConfig: give threshold or compute_ratio, not both (got {self.threshold} and {self.compute_ratio})"
            )
        if self.threshold is None and self.compute_ratio is None:
            object.__setattr__(self, "compute_ratio", 0.15)
        self._check_threshold(self.threshold)
        self._check_target("compute_ratio", self.compute_ratio)
        _check_int("EarlyExitConfig.min_layer", self.min_layer, 0)

    @property
    def needs_calibration(self) -> bool:
        return self.threshold is None


__all__ = ["DecodeCalibration", "EarlyExitConfig", "FFNSkipConfig", "LayerDropConfig"]
