"""What every pruning method shares: the config base, target selection, and the driver.

A pruning method is a :class:`PruneConfig` subclass plus a :class:`Pruner` subclass registered with
:func:`register_pruner`; the driver :func:`prune_model_` (the ``compress_`` handler of every pruning
config) selects the target linears, resolves each one's sparsity (uniform, or per block from an
OWL allocation), runs the pruner (through the sequential calibration runner when it needs data) and
builds the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from slimkit.compress.api import COMPRESSORS, method_name
from slimkit.compress.calibrate import block_index_of, check_calibration, run_sequential_
from slimkit.compress.prune.owl import OWLConfig, owl_block_sparsities, owl_outlier_ratios
from slimkit.compress.prune.patterns import Pattern, check_nm_width, parse_pattern
from slimkit.compress.report import CompressionReport, MatrixReport, calibration_record
from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError, TargetError
from slimkit.core.registry import Registry
from slimkit.core.targeting import check_patterns, select_modules
from slimkit.models.adapters import ArchitectureAdapter, block_linear_filter, get_adapter, linear_weight


@dataclass(frozen=True, kw_only=True)
class PruneConfig(Config):
    """Options every pruning method takes.

    Attributes:
        sparsity (float | None): fraction of each comparison group's weights set to zero, in [0, 1).
            With an ``N:M`` pattern it is ``N/M`` (leave it unset or give exactly that).
            Default: 0.5 (unstructured).
        pattern (str): ``"unstructured"`` or ``"N:M"`` (``N`` of every ``M`` consecutive input
            weights pruned, ``0 < N < M``; e.g. ``"2:4"``). Default: ``"unstructured"``.
        allocation (OWLConfig | None): per-block sparsity allocation; ``None`` = uniform. Default: None.
        targets (tuple[str, ...]): module patterns to prune (exact name, class name or ``re:`` regex,
            as in :func:`slimkit.core.targeting.select_modules`); ``()`` = every linear inside the
            decoder blocks. Embeddings and ``lm_head`` are never pruned. Default: ().
        ignore (tuple[str, ...]): patterns excluded from the targets. Default: ().
        sequential (bool): calibrate each block on the outputs of the already-pruned blocks before
            it (the Wanda/SparseGPT reference behaviour). ``False``: on the dense model's activations,
            one block forward instead of two per block (about half the calibration time). Default: True.
    """

    sparsity: float | None = None
    pattern: str = "unstructured"
    allocation: OWLConfig | None = None
    targets: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    sequential: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        nm = parse_pattern(self.pattern)
        if self.sparsity is None:
            object.__setattr__(self, "sparsity", nm.sparsity if nm is not None else 0.5)
        check_range(f"{name}.sparsity", self.sparsity, 0.0, 1.0, hi_inclusive=False)
        if nm is not None and abs(self.sparsity - nm.sparsity) > 1e-9:
            raise ConfigError(
                f"{name}: sparsity={self.sparsity} contradicts pattern {nm} (which prunes {nm.sparsity:g}); "
                f"leave sparsity unset or set it to {nm.sparsity:g}"
            )
        if self.allocation is not None and not isinstance(self.allocation, OWLConfig):
            raise ConfigError(f"{name}.allocation must be an OWLConfig or None, got {self.allocation!r}")
        if self.allocation is not None and nm is not None:
            raise ConfigError(
                f"{name}: OWL allocation with pattern {nm} is not supported (the reference's N:M variant, "
                "which shifts N per block, is not implemented); use pattern='unstructured'"
            )
        for field_name in ("targets", "ignore"):
            object.__setattr__(
                self, field_name, check_patterns(f"{name}.{field_name}", getattr(self, field_name))
            )

    @property
    def needs_calibration(self) -> bool:
        """Whether pruning needs calibration data (every criterion but magnitude, and any allocation)."""
        return PRUNERS.lookup(self).needs_calibration or self.allocation is not None

    @property
    def nm(self) -> Pattern:
        """The parsed pattern: an :class:`~slimkit.compress.prune.patterns.NMPattern` or ``None``."""
        return parse_pattern(self.pattern)


class Pruner:
    """Base of the pruning handlers: per-matrix sparsity lookup, timing and the per-matrix report.

    A subclass implements :meth:`prune_` (and :meth:`observe` / :meth:`reset` when it needs data).
    It also satisfies :class:`slimkit.compress.calibrate.CalibratedMethod`.
    """

    needs_calibration: ClassVar[bool] = True
    modifies_weights: ClassVar[bool] = True

    def __init__(self, config: PruneConfig, sparsity_for: Mapping[str, float]) -> None:
        self.config = config
        self.pattern = config.nm
        self.sparsity_for = dict(sparsity_for)
        self.records: dict[str, MatrixReport] = {}
        self.zeros: dict[str, int] = {}  # zeros of each matrix right after pruning it (the report's count)

    def observe(self, name: str, inputs: Tensor) -> None:
        """Accumulate statistics from one chunk of the linear's inputs ``[tokens, in]`` (fp32)."""

    def reset(self) -> None:
        """Drop accumulated statistics."""

    def sequential_groups(self, adapter: ArchitectureAdapter) -> list[tuple[str, ...]] | None:
        """Role groups to compress one after another inside a block (``None``: all at once)."""
        return None

    def prune_(self, name: str, module: nn.Module, sparsity: float) -> None:
        """Zero weights of ``module`` (in place) at ``sparsity`` under ``self.pattern``."""
        raise NotImplementedError

    @torch.no_grad()
    def compress(self, name: str, module: nn.Module) -> None:
        sparsity = self.sparsity_for[name]
        start = time.perf_counter()
        self.prune_(name, module, sparsity)
        self.record(name, module, time.perf_counter() - start)

    def compress_group(self, group: Mapping[str, nn.Module]) -> None:
        """Compress the linears of one sequential group (the runner's call); one by one by default.

        A pruner that can prune several linears together (SparseGPT: one sweep for the linears that
        share a Hessian) overrides this and calls :meth:`record` for each.
        """
        for name, module in group.items():
            self.compress(name, module)

    def record(self, name: str, module: nn.Module, elapsed: float) -> None:
        """Keep the report row of ``name``, just pruned in ``elapsed`` seconds."""
        weight = linear_weight(module)
        if weight.device.type == "cuda":
            torch.cuda.synchronize(weight.device)
        self.zeros[name] = weight.numel() - int(torch.count_nonzero(weight))
        self.records[name] = MatrixReport(
            name=name,
            shape=(int(weight.shape[0]), int(weight.shape[1])),
            sparsity=self.zeros[name] / weight.numel(),
            target_sparsity=float(self.sparsity_for[name]),
            time_s=elapsed,
        )


PRUNERS: Registry[type[Pruner]] = Registry("pruning criterion")


def register_pruner(config_type: type[PruneConfig], name: str) -> Callable[[type[Pruner]], type[Pruner]]:
    """Class decorator: register a :class:`Pruner` for ``config_type`` and make ``compress_`` route to it."""

    def deco(pruner_cls: type[Pruner]) -> type[Pruner]:
        PRUNERS.register(config_type)(pruner_cls)
        COMPRESSORS.register(config_type, name)(prune_model_)
        return pruner_cls

    return deco


def apply_mask_(module: nn.Module, mask: Tensor) -> None:
    """Zero the weights of ``module`` where ``mask`` (``[out, in]``, True = pruned) is set."""
    with torch.no_grad():
        linear_weight(module).masked_fill_(mask.to(module.weight.device), 0)


def select_prune_targets(model: nn.Module, config: PruneConfig) -> dict[str, nn.Module]:
    """The linears inside the decoder blocks that ``config.targets`` / ``config.ignore`` select.

    Raises:
        TargetError: a target pattern matches no such linear, or nothing is left after ``ignore``.
    """
    patterns = config.targets or ("re:.",)
    selected = select_modules(model, patterns, config.ignore, candidates=block_linear_filter(model))
    if not selected:
        raise TargetError(
            f"no linear layer left to prune (targets={list(config.targets)}, ignore={list(config.ignore)})"
        )
    return selected


def _resolve_sparsities(
    model: nn.Module,
    config: PruneConfig,
    targets: Mapping[str, nn.Module],
    calib: Tensor | None,
    *,
    device: torch.device | None,
    progress: bool,
    chunk_size: int,
) -> tuple[dict[str, float], list[float | None] | None]:
    """Per-matrix sparsity, and the per-block allocation when there is one."""
    assert config.sparsity is not None  # filled in by PruneConfig.__post_init__
    if config.allocation is None:
        return {name: config.sparsity for name in targets}, None
    adapter = get_adapter(model)
    ratios = owl_outlier_ratios(
        model, calib, targets, config.allocation, device=device, chunk_size=chunk_size, progress=progress
    )
    indices = sorted(ratios)
    per_block = owl_block_sparsities(
        [ratios[i] for i in indices],
        config.sparsity,
        config.allocation.lam,
        block_names=[f"block {i} ({adapter.block_prefix(i)})" for i in indices],
    )
    by_index = dict(zip(indices, per_block, strict=True))
    allocation: list[float | None] = [by_index.get(i) for i in range(len(adapter.blocks(model)))]
    return {name: by_index[block_index_of(name, adapter)] for name in targets}, allocation


def prune_model_(
    model: nn.Module,
    config: PruneConfig,
    calib: Tensor | None,
    *,
    device: torch.device | None = None,
    progress: bool = True,
    chunk_size: int = 8,
) -> CompressionReport:
    """Prune ``model`` in place as ``config`` says (the ``compress_`` handler of every pruning config)."""
    adapter = get_adapter(model)
    targets = select_prune_targets(model, config)
    for name, module in targets.items():  # fail before any work is done
        check_nm_width(linear_weight(module).shape[1], config.nm, name)
    pruner_cls = PRUNERS.lookup(config)
    name = method_name(config)
    if pruner_cls.needs_calibration or config.allocation is not None:
        calib = check_calibration(calib, name)
    sparsity_for, allocation = _resolve_sparsities(
        model, config, targets, calib, device=device, progress=progress, chunk_size=chunk_size
    )
    pruner = pruner_cls(config, sparsity_for)
    if pruner_cls.needs_calibration:
        assert calib is not None
        run_sequential_(
            model,
            pruner,
            calib,
            targets,
            device=device,
            chunk_size=chunk_size,
            sequential_groups=pruner.sequential_groups(adapter),
            propagate_compressed=config.sequential,
            progress=progress,
            description=name,
        )
    else:
        for target_name, module in targets.items():
            home = module.weight.device
            if device is not None:
                module.to(device)
            pruner.compress(target_name, module)
            if device is not None:
                module.to(home)
    used_calib = calib if pruner_cls.needs_calibration or allocation is not None else None
    return build_report(model, config, targets, pruner.records, allocation, used_calib, zeros=pruner.zeros)


def build_report(
    model: nn.Module,
    config: PruneConfig,
    targets: Mapping[str, nn.Module],
    records: Mapping[str, MatrixReport],
    allocation: list[float | None] | None,
    calib: Tensor | None,
    *,
    zeros: Mapping[str, int] | None = None,
) -> CompressionReport:
    """Count the zeros actually present in every target and assemble the report.

    ``zeros`` gives counts already taken (by the pruner, right after each matrix was pruned; no later
    step touches a pruned matrix); the other targets are counted here.
    """
    zeros = zeros or {}
    adapter = get_adapter(model)
    n_blocks = len(adapter.blocks(model))
    block_zeros = [0] * n_blocks
    sizes = [0] * n_blocks
    for name, module in targets.items():
        weight = linear_weight(module)
        index = block_index_of(name, adapter)
        counted = zeros.get(name)
        block_zeros[index] += (
            weight.numel() - int(torch.count_nonzero(weight)) if counted is None else counted
        )
        sizes[index] += weight.numel()
    total = sum(sizes)
    return CompressionReport(
        method=method_name(config),
        config=config.to_dict(),
        matrices=[records[n] for n in targets if n in records],
        overall_sparsity=sum(block_zeros) / total if total else 0.0,
        block_sparsity=[z / s if s else None for z, s in zip(block_zeros, sizes, strict=True)],
        block_target_sparsity=allocation,
        calibration=None if calib is None else calibration_record(calib),
    )
