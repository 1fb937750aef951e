"""Pieces every compress-then-evaluate sweep shares (the study, the Junk DNA analysis).

One model is loaded once; each point of a sweep compresses a fresh copy of it with one shared
calibration set (so differences come from the methods alone) and evaluates the copy.

A sweep's points are declared as data, never as fields in code: each entry of a ``variants:`` list
names a registered compression method and the options its config takes, and
:func:`expand_variants` builds every config up front with :func:`slimkit.compress.build_config`::

    - {name: "wanda {sparsity:.0%}", method: wanda, grid: {sparsity: [0.3, 0.5, 0.7]}}
    - {name: "wanda 2:4", method: wanda, options: {pattern: "2:4"}}
    - {name: "welore 30% params", method: welore, options: {target_params: 0.3}}

A new compression family joins a sweep by being registered with ``COMPRESSORS``; nothing here knows
any method by name. How much a variant stores is measured from its compression report
(:func:`storage_size`), so pruned, low-rank and (later) quantized variants share one size axis.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slimkit.core.config import Config
from slimkit.core.errors import ConfigError, SlimkitError

DENSE = "dense"
"""The name, method and family of the uncompressed baseline every sweep starts with."""

VARIANT_KEYS = ("name", "method", "options", "grid", "series", "family")


@dataclass(frozen=True)
class Variant:
    """One point of a sweep.

    Attributes:
        name: the row label in tables (unique within a sweep).
        method: the registered short name (``wanda``), or ``"dense"`` for the baseline.
        options: the options given to :func:`slimkit.compress.build_config` (JSON-safe).
        config: the validated compression config; ``None`` for the dense baseline.
        family: the panel the variant is plotted in: the entry's ``family``, else the compression
            package its config comes from (``prune``, ``lowrank``, ...).
        series: the curve the variant joins in plots: the entry's ``series``, else its name with the
            grid placeholders removed (``"wanda {sparsity:.0%}"`` -> ``wanda``) for a grid entry, and
            its own name for a single one.
    """

    name: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    config: Config | None = None
    family: str = DENSE
    series: str = DENSE

    def info(self) -> dict[str, Any]:
        """What the results JSON records about the variant (before compression adds its numbers)."""
        return {
            "name": self.name,
            "method": self.method,
            "family": self.family,
            "series": self.series,
            "options": self.options,
        }


def dense_variant() -> Variant:
    return Variant(DENSE, DENSE)


def family_of(config: Config) -> str:
    """The compression package a config type lives in (``slimkit.compress.prune.wanda`` -> ``prune``)."""
    parts = type(config).__module__.split(".")
    if "compress" in parts[:-1]:
        return parts[parts.index("compress") + 1]
    return parts[-1]


def expand_variants(entries: Any, where: str) -> list[Variant]:
    """The variants declared by ``entries`` (a ``variants:`` list), every config built and validated.

    Each entry is a mapping with ``method`` (a name from ``COMPRESSORS.names()``) and optionally
    ``options`` (config fields, passed to :func:`slimkit.compress.build_config` as they are; a mapping
    with a ``type`` key becomes that :class:`Config`), ``grid`` (option -> list of values; one variant
    per combination, in order), ``name`` (a :meth:`str.format` template over the options and
    ``method``), ``series`` and ``family`` (plot grouping, see :class:`Variant`).

    Raises:
        ConfigError / RegistryError: the first bad entry — not a mapping, an unknown key, an unknown
            method or option, a bad value, a name template naming no option, or a duplicate name —
            with ``where`` and the entry's position in the message.
    """
    if not isinstance(entries, list):
        raise ConfigError(
            f"{where}: 'variants' must be a list of {{method, options}} entries, got {entries!r:.80}"
        )
    variants: list[Variant] = []
    for i, entry in enumerate(entries):
        label = f"{where}: variants[{i}]"
        try:
            variants.extend(_expand_entry(entry, label))
        except SlimkitError as e:
            if str(e).startswith(label):
                raise
            raise type(e)(f"{label}: {e}") from None
    seen: dict[str, int] = {DENSE: -1}
    for i, v in enumerate(variants):
        if v.name in seen:
            what = "is reserved for the baseline" if v.name == DENSE else "is used twice"
            raise ConfigError(f"{where}: variant name {v.name!r} {what}; give each variant its own name")
        seen[v.name] = i
    return variants


def _expand_entry(entry: Any, label: str) -> list[Variant]:
    from slimkit.compress import COMPRESSORS

    if not isinstance(entry, dict):
        raise ConfigError(f"{label} must be a mapping with 'method' and 'options', got {entry!r:.80}")
    unknown = sorted(set(entry) - set(VARIANT_KEYS))
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {unknown}; a variant takes {list(VARIANT_KEYS)}")
    method = entry.get("method")
    if not isinstance(method, str):
        raise ConfigError(f"{label}: 'method' must be one of {COMPRESSORS.names()}, got {method!r}")
    if method == DENSE:
        raise ConfigError(f"{label}: the dense baseline is always evaluated first; do not list it")
    COMPRESSORS.config_for(method)  # an unknown method fails here, listing the known ones
    options = _mapping(entry.get("options"), f"{label}.options")
    grid = _mapping(entry.get("grid"), f"{label}.grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{label}.grid.{key} must be a non-empty list of values, got {values!r:.80}")
        if key in options:
            raise ConfigError(f"{label}: option {key!r} is given in both 'options' and 'grid'")
    for key in ("name", "series", "family"):
        if entry.get(key) is not None and (not isinstance(entry[key], str) or not entry[key].strip()):
            raise ConfigError(f"{label}.{key} must be a non-empty string, got {entry[key]!r}")
    template = entry.get("name")
    if template is None:
        fixed = _default_name(method, options, template=True)
        template = " ".join([fixed, *(f"{k}={{{k}}}" for k in grid)])
    fields = _template_fields(template, label)
    missing = sorted(fields - set(options) - set(grid) - {"method"})
    if missing:
        raise ConfigError(
            f"{label}: name {template!r} refers to {missing}, which are not options of the entry"
        )
    if grid and not fields & set(grid):
        raise ConfigError(
            f"{label}: name {template!r} must include a grid option (e.g. '{{{next(iter(grid))}}}') "
            "so that every point gets its own name"
        )
    out = []
    for point in itertools.product(*grid.values()):
        opts = {**options, **dict(zip(grid, point, strict=True))}
        try:
            name = " ".join(template.format(method=method, **opts).split())
            series = entry.get("series")
            if series is None and grid:
                named = entry.get("name") is not None
                series = _series_name(template, grid, {"method": method, **opts}) if named else None
                series = series or _default_name(method, options)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
            raise ConfigError(f"{label}: cannot format name {template!r} with {opts}: {e}") from None
        try:
            config = _build(method, {k: _option_value(v) for k, v in opts.items()})
        except TypeError as e:  # a value of a type the builder cannot take at all
            raise ConfigError(f"{label}: {e}") from None
        out.append(
            Variant(
                name=name,
                method=method,
                options=opts,
                config=config,
                family=entry.get("family") or family_of(config),
                series=series or name,
            )
        )
    return out


def _build(method: str, options: dict[str, Any]) -> Config:
    """``build_config(method, **options)``; options given as configs (``{type: OWLConfig, lam: 0.05}``)
    are set on the result as fields, so they need no flat spelling in ``build_config``."""
    from slimkit.compress import build_config

    nested = {k: v for k, v in options.items() if isinstance(v, Config)}
    config = build_config(method, **{k: v for k, v in options.items() if k not in nested})
    if nested:
        fields = {f.name for f in dataclasses.fields(config)} - {"version"}
        unknown = sorted(set(nested) - fields)
        if unknown:
            raise ConfigError(f"method {method!r} has no option(s) {unknown}; its options: {sorted(fields)}")
        config = config.replace(**nested)
    return config


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where} must be a mapping of option names to values, got {value!r:.80}")
    return dict(value)


def _default_name(method: str, options: Mapping[str, Any], *, template: bool = False) -> str:
    """``wanda sparsity=0.5``; as a ``str.format`` template, braces in the values are escaped."""
    text = " ".join([method, *(f"{k}={v}" for k, v in options.items())])
    return text.replace("{", "{{").replace("}", "}}") if template else text


def _template_fields(template: str, label: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ConfigError(f"{label}: malformed name template {template!r}: {e}") from None
    names = set()
    for _, field_name, _, _ in parsed:
        if field_name is None:
            continue
        base = field_name.split(".")[0].split("[")[0]
        if not base.isidentifier():
            raise ConfigError(
                f"{label}: name {template!r} needs option names in braces, got {{{field_name}}}"
            )
        names.add(base)
    return names


def _series_name(template: str, grid: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """``template`` without its grid fields, the other fields filled in (``"{method} {sparsity:.0%}"`` -> ``wanda``)."""
    parts = []
    for literal, field_name, spec, conversion in string.Formatter().parse(template):
        parts.append(literal)
        if field_name is not None and field_name.split(".")[0].split("[")[0] not in grid:
            field = (
                "{"
                + field_name
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            parts.append(field.format(**values))
    return " ".join("".join(parts).split())


def _option_value(value: Any) -> Any:
    """A YAML value as a config field takes it: lists as tuples, ``{type: ...}`` mappings as configs."""
    if isinstance(value, list):
        return tuple(_option_value(v) for v in value)
    if isinstance(value, dict) and "type" in value:
        return Config.from_dict(value)
    return value


# -- size: stored bits / dense bits --------------------------------------------------------------------------
def storage_size(report: Any, weight_bits: int) -> dict[str, Any]:
    """How many bits the compressed matrices of ``report`` take when stored, against dense.

    Measured over the matrices the method compressed (embeddings and ``lm_head`` are never among them),
    in the format slimkit saves them in:

    * a report that knows its own storage (attributes ``stored_bits`` and ``dense_bits``, e.g. packed
      integer weights) is taken at its word (``basis="reported"``);
    * a matrix stored as factors (per-matrix ``params_stored`` / ``params_dense``: low rank) counts
      its stored parameters at ``weight_bits`` each (``basis="factors"``);
    * a masked (pruned) matrix counts as :func:`slimkit.compress.export.save_compressed` writes it
      with ``storage="bitmask"``: the kept values at ``weight_bits``, one mask bit per weight (whole
      bytes) and its shape; a matrix for which that is larger stays dense (``basis="bitmask"``).
      In memory, and with ``storage="dense"``, a masked model still holds every weight.

    Returns:
        ``{"stored_bits", "dense_bits", "size_fraction" (= stored / dense; 1.0 when nothing was
        compressed), "size_basis"}``.
    """
    stored, dense = getattr(report, "stored_bits", None), getattr(report, "dense_bits", None)
    if isinstance(stored, int | float) and isinstance(dense, int | float) and dense > 0:
        return _size(int(stored), int(dense), "reported")
    stored = dense = 0
    bases = set()
    for m in getattr(report, "matrices", []):
        numel = math.prod(m.shape)
        params_stored, params_dense = getattr(m, "params_stored", None), getattr(m, "params_dense", None)
        if params_stored is not None and params_dense:
            stored += params_stored * weight_bits
            dense += params_dense * weight_bits
            bases.add("factors")
            continue
        kept = round((1.0 - m.sparsity) * numel)
        bitmask = kept * weight_bits + 8 * math.ceil(numel / 8) + 64 * len(m.shape)
        stored += min(bitmask, numel * weight_bits)
        dense += numel * weight_bits
        bases.add("bitmask")
    return _size(stored, dense, "+".join(sorted(bases)) or "unchanged")


def _size(stored: int, dense: int, basis: str) -> dict[str, Any]:
    return {
        "stored_bits": stored,
        "dense_bits": dense,
        "size_fraction": stored / dense if dense else 1.0,
        "size_basis": basis,
    }


def weight_bits(model: Any) -> int:
    """Bits per weight of ``model``'s floating-point parameters (32 for float32, 16 for bf16)."""
    import torch

    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return torch.finfo(dtype).bits


# -- running ---------------------------------------------------------------------------------------------------
def load_subject(model: str | None, device: str) -> tuple[Any, Any, str]:
    """(model in eval mode, tokenizer, display name); None = the built-in world's default model."""
    if model is None:
        from slimkit.models.default import default_model

        m, tok = default_model(device=device)
        name = "factworld-default"
    else:
        from slimkit.models.loading import load_model

        m, tok = load_model(model, device=device)
        name = model
    m.eval()
    return m, tok, name


def shared_calibration(
    configs: Sequence[Config | None],
    tokenizer: Any,
    source: str | None,
    *,
    nsamples: int,
    seqlen: int,
    seed: int,
) -> Any:
    """One calibration set for every calibrated config of a sweep (None when none needs one)."""
    from slimkit.compress import calibration_for, needs_calibration

    calibrated = next((c for c in configs if c is not None and needs_calibration(c)), None)
    if calibrated is None:
        return None
    return calibration_for(calibrated, tokenizer, source, nsamples=nsamples, seqlen=seqlen, seed=seed)


def compressed_copy(dense: Any, config: Config, calib: Any, device: str) -> tuple[Any, dict[str, Any]]:
    """A compressed deep copy of ``dense`` and what the compression reported: achieved sparsity, time,
    per-block sparsity and the stored size (:func:`storage_size`)."""
    from slimkit.compress import compress_, needs_calibration

    model = copy.deepcopy(dense)
    report = compress_(model, config, calib if needs_calibration(config) else None, device=device)
    return model, {
        "achieved_sparsity": report.overall_sparsity,
        "compress_time_s": report.total_time_s,
        "block_sparsity": report.block_sparsity,
        **storage_size(report, weight_bits(dense)),
    }
