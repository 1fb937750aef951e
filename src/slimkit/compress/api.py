"""``compress_``: the one in-place entry point of every compression method.

    from slimkit.compress import compress_, WandaConfig
    from slimkit.data.calibration import sample_calibration

    calib = sample_calibration(tok, documents, nsamples=128, seqlen=2048, seed=0)
    report = compress_(model, WandaConfig(sparsity=0.5), calib, device="cuda")
    print(report.summary())

Dispatch is by config type through :data:`COMPRESSORS` (each method's package registers its
handler with a short CLI name). The CLI maps ``--method wanda`` to a config class with
``COMPRESSORS.config_for("wanda")``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

from slimkit.compress.report import CompressionReport, measure
from slimkit.core.config import Config
from slimkit.core.devices import model_device, resolve_device
from slimkit.core.errors import ConfigError, DataError
from slimkit.core.limits import check_fits_in_memory
from slimkit.core.registry import Registry
from slimkit.models.limits import hidden_width, max_positions, vocab_size

if TYPE_CHECKING:
    from slimkit.data.calibration import CalibrationSet


class Compressor(Protocol):
    """A registered handler: compress ``model`` in place as ``config`` says and report what it did."""

    def __call__(
        self,
        model: nn.Module,
        config: Config,
        calib: Tensor | None,
        *,
        device: torch.device | None,
        progress: bool,
        chunk_size: int,
    ) -> CompressionReport: ...


COMPRESSORS: Registry[Compressor] = Registry("compression method")
"""Config type -> handler; short names (``wanda``) for the CLI."""

ALLOCATIONS: Registry[type[Config]] = Registry("sparsity allocation")
"""Allocation config types by short name (``owl``), for :func:`build_config`."""

DEFAULT_CALIBRATION_SOURCE = "world:corpus"


def method_name(config: Config | type[Config]) -> str:
    """The short name ``config``'s type is registered under (``WandaConfig`` -> ``"wanda"``)."""
    cls = config if isinstance(config, type) else type(config)
    for name in COMPRESSORS.names():
        if COMPRESSORS.config_for(name) is cls:
            return name
    return cls.__name__.removesuffix("Config").lower()


def compress_(
    model: nn.Module,
    config: Config,
    calib: Tensor | CalibrationSet | None = None,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
    chunk_size: int = 8,
) -> CompressionReport:
    """Compress ``model`` in place with the method ``config`` selects.

    Args:
        model: a Hugging Face causal LM (llama, mistral, qwen2, opt, gpt2).
        config: a registered method config (``MagnitudeConfig``, ``WandaConfig``, ``SparseGPTConfig``, ...).
        calib: ``LongTensor [nsamples, seqlen]`` of token ids (:func:`slimkit.data.calibration.sample_calibration`),
            or the :class:`~slimkit.data.calibration.CalibrationSet` of :func:`calibration_for`, whose
            source and coverage then go into ``report.calibration``; data-free methods ignore it,
            calibrated ones raise :class:`~slimkit.core.errors.DataError` without it.
        device: compute device. Each decoder block is moved there for its turn and back afterwards, so
            the model may stay on CPU. ``None`` computes wherever the model is.
        progress: show a progress bar over blocks.
        chunk_size: calibration sequences per forward pass (memory vs speed).

    Returns:
        A :class:`CompressionReport` (per-matrix and overall sparsity, time, peak memory).
    """
    if not isinstance(config, Config):
        raise ConfigError(
            f"compress_ needs a method config (e.g. WandaConfig(...)), got {type(config).__name__}"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size!r} must be a positive integer")
    handler = COMPRESSORS.lookup(config)
    compute = resolve_device(device) if device is not None else None
    drawn = None
    if calib is not None and not isinstance(calib, Tensor):
        drawn, calib = calib, calib.ids
    if calib is not None and needs_calibration(config):
        check_calibration_fits(model, calib, method_name(config))
    with measure(compute or model_device(model)) as stats:
        report = handler(model, config, calib, device=compute, progress=progress, chunk_size=chunk_size)
    report.total_time_s = stats["time_s"]
    report.peak_memory_bytes = stats["peak_bytes"]
    report.peak_memory_kind = stats["kind"]
    if drawn is not None and report.calibration is not None:  # the method did use it
        report.calibration = {**report.calibration, **drawn.describe()}
    return report


def check_calibration_size(model: nn.Module, nsamples: int, seqlen: int) -> None:
    """Refuse a calibration set the model cannot take or the machine cannot hold, before sampling it.

    The sequential runner keeps every sequence's hidden states at a block's input and output:
    ``2 * nsamples * seqlen * hidden`` values.

    Raises:
        ConfigError: a non-positive count, ``seqlen`` beyond the model's positions, or too little memory.
    """
    for name, value in (("nsamples", nsamples), ("seqlen", seqlen)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")
    limit = max_positions(model)
    if limit is not None and seqlen > limit:
        raise ConfigError(
            f"seqlen={seqlen} is longer than the model's {limit} positions; use --seqlen {limit} or less"
        )
    width = hidden_width(model) or 1
    itemsize = next((p.element_size() for p in model.parameters() if p.is_floating_point()), 4)
    check_fits_in_memory(
        2 * nsamples * seqlen * width * itemsize,
        f"nsamples={nsamples} x seqlen={seqlen} calibration activations",
    )


def check_calibration_fits(model: nn.Module, calib: Tensor, method: str) -> None:
    """Check calibration ids against ``model`` before any block runs (positions, memory, vocabulary).

    Raises:
        DataError: not a ``LongTensor [nsamples, seqlen]`` (see :func:`~slimkit.compress.calibrate.check_calibration`),
            or an id the embedding cannot look up.
        ConfigError: see :func:`check_calibration_size`.
    """
    from slimkit.compress.calibrate import check_calibration

    calib = check_calibration(calib, method)
    check_calibration_size(model, int(calib.shape[0]), int(calib.shape[1]))
    vocab = vocab_size(model)
    low, high = int(calib.min()), int(calib.max())
    if low < 0 or (vocab is not None and high >= vocab):
        raise DataError(
            f"calib holds token id {low if low < 0 else high}, outside the model's vocabulary [0, {vocab}); "
            "was it tokenized with another tokenizer?"
        )


def needs_calibration(config: Config) -> bool:
    """Whether ``compress_`` with ``config`` needs calibration token ids (configs say so themselves)."""
    return bool(getattr(config, "needs_calibration", True))


def build_config(
    method: str,
    *,
    allocation: str | None = None,
    owl_m: float = 5.0,
    owl_lambda: float = 0.08,
    **options: Any,
) -> Config:
    """The config of the method registered as ``method``, from flat (CLI) options.

    Args:
        method: a short name from ``COMPRESSORS.names()`` (``magnitude``, ``wanda``, ``sparsegpt``).
        allocation: ``None`` or an allocation name from ``ALLOCATIONS.names()`` (``owl``).
        owl_m / owl_lambda: OWL's ``m`` and ``lam`` when ``allocation="owl"``.
        **options: config fields (``sparsity``, ``pattern``, ``targets``, ``ignore``, ...). ``None``
            values are left out (the config's default applies); a value for a field the method does
            not have is an error, so a flag is never silently ignored.

    Raises:
        RegistryError: unknown method or allocation (the message lists the known ones).
        ConfigError: a bad value (from the config's validation).
    """
    cls = COMPRESSORS.config_for(method)
    fields = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in options.items() if v is not None}
    foreign = sorted(set(given) - fields)
    if foreign:
        raise ConfigError(
            f"method {method!r} has no option(s) {foreign}; its options: {sorted(fields - {'version'})}"
        )
    kwargs = given
    if allocation is not None:
        alloc_cls = ALLOCATIONS.config_for(allocation)
        if "allocation" not in fields:
            raise ConfigError(f"method {method!r} takes no allocation (got --allocation {allocation})")
        kwargs["allocation"] = alloc_cls(m=owl_m, lam=owl_lambda)
    return cls(**kwargs)


def calibration_for(
    config: Config,
    tokenizer: Any,
    source: str | None = None,
    *,
    nsamples: int = 128,
    seqlen: int = 2048,
    seed: int = 0,
    model: nn.Module | None = None,
) -> CalibrationSet | None:
    """Calibration windows for ``config`` and what of the source they cover, or ``None`` when the
    method is data-free.

    Pass the result to :func:`compress_` as ``calib``: the report then records the source and the
    coverage (``report.calibration``) besides ``nsamples`` and ``seqlen``.

    Args:
        config: the method config (see :func:`needs_calibration`).
        tokenizer: the model's tokenizer.
        source: a text source spec for :func:`slimkit.data.sources.read_documents`; default: the
            built-in world's training corpus (``world:corpus``).
        nsamples / seqlen / seed: see :func:`slimkit.data.calibration.draw_calibration`.
        model: when given, ``nsamples`` and ``seqlen`` are checked against it (positions, memory)
            before any text is read (see :func:`check_calibration_size`).

    Returns:
        A :class:`~slimkit.data.calibration.CalibrationSet` (``.ids``: ``LongTensor [nsamples, seqlen]``).
    """
    if not needs_calibration(config):
        return None
    if model is not None:
        check_calibration_size(model, nsamples, seqlen)
    from slimkit.data.calibration import draw_calibration
    from slimkit.data.sources import read_documents

    spec = source or DEFAULT_CALIBRATION_SOURCE
    drawn = draw_calibration(tokenizer, read_documents(spec), nsamples=nsamples, seqlen=seqlen, seed=seed)
    return dataclasses.replace(drawn, source=str(spec))
