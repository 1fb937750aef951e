"""The study: compress a model with a declared sweep of variants, evaluate each one, report.

A sweep is a YAML file (``configs/study/*.yaml``, shipped inside the package too): the variants —
each a registered compression method and the options of its config — and the evaluation every
variant gets::

    description: what this sweep is for
    model: null                      # a model directory or name; null = the built-in world's model
    calibration: {data: null, nsamples: 64, seqlen: 128, seed: 0}     # data null = world:corpus
    evaluation:
      ppl: {data: null, seqlen: 128, batch_size: 64}                   # PerplexityTaskConfig fields
      kick:                                                            # KickSuiteConfig fields, or null
        limit: 200
        task_defaults: {num_fewshot: 0}      # given to every KICK task whose config takes the option
        task_options: {retrieval: {max_context_chars: 3072}}
    variants:
      - {name: "wanda {sparsity:.0%}", method: wanda, grid: {sparsity: [0.3, 0.5, 0.7]}}
      - {name: "wanda+OWL 70%", method: wanda, options: {sparsity: 0.7, allocation: owl}}
      - {name: "welore 30% params", method: welore, options: {target_params: 0.3}}

``evaluation.ppl`` and ``evaluation.kick`` are passed to the evaluation configs as they are, so any
option those configs (or the KICK task configs, through ``task_options`` / ``task_defaults``) gain is
usable in a sweep without a change here; a variant's ``options`` go to
:func:`slimkit.compress.build_config` the same way (see :func:`slimkit.pipelines._sweep.expand_variants`).
A new compression family joins the study by adding variants to a YAML file. Everything is validated
when the sweep is loaded, before any model is touched.

``run_study(StudyConfig(), out)`` runs the shipped ``default.yaml`` on the built-in world: it loads
(training on first use) the default model, evaluates it, then for every variant copies the dense
model, compresses the copy with ``compress_`` and evaluates it the same way: perplexity on held-out
text and the LLM-KICK suite. It writes ``results.json`` (DESIGN.md's schema for the dense model, with
one schema-conforming entry per variant under ``variants``, the resolved ``sweep`` and each metric's
direction under ``higher_is_better``), ``report.md`` and PNG plots to ``out``. This is a pipeline: it
composes ``compress`` and ``evaluate``, neither of which imports the other.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.core.config import Config, check_positive, check_range
from slimkit.core.errors import ConfigError, DataError, SlimkitError
from slimkit.core.io import atomic_dir, check_output_dir, write_json, write_text
from slimkit.core.progress import console
from slimkit.pipelines._sweep import DENSE, Variant, dense_variant, expand_variants

DEFAULT_SWEEP = "default"
SWEEP_KEYS = ("description", "model", "calibration", "evaluation", "variants")
EVALUATION_KEYS = ("ppl", "kick")
TASK_DEFAULTS = "task_defaults"
"""The one ``evaluation.kick`` key that is the study's own: options for every KICK task that takes them."""


@dataclass(frozen=True)
class CalibrationSettings(Config):
    """The calibration set every calibrated variant of a sweep shares.

    Attributes:
        data (str | None): a text source spec (:func:`slimkit.data.sources.read_documents`);
            None = the built-in world's training corpus. Default: None.
        nsamples (int): sequences, >= 1. Default: 64.
        seqlen (int): tokens per sequence, >= 1. Default: 128.
        seed (int): sampling seed. Default: 0.
    """

    data: str | None = None
    nsamples: int = 64
    seqlen: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("calibration.nsamples", self.nsamples)
        check_positive("calibration.seqlen", self.seqlen)


@dataclass(frozen=True)
class Sweep:
    """A loaded, validated sweep.

    Attributes:
        source: where it came from (a path, or ``<shipped>/default.yaml``).
        description: the file's one-line purpose.
        model: the model it is meant for (a directory or named model); None = the built-in world's.
        variants: the dense baseline first, then every declared variant with its config built.
        calibration: see :class:`CalibrationSettings`.
        ppl: the perplexity config (``data=None``: the world's held-out text).
        kick: the KICK suite config, or None for perplexity only.
    """

    source: str
    description: str
    model: str | None
    variants: tuple[Variant, ...]
    calibration: CalibrationSettings
    ppl: Config
    kick: Config | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: what ``results.json`` records as the study's configuration."""
        return {
            "source": self.source,
            "description": self.description,
            "model": self.model,
            "calibration": self.calibration.to_dict(),
            "evaluation": {
                "ppl": self.ppl.to_dict(),
                "kick": None if self.kick is None else self.kick.to_dict(),
            },
            "variants": [
                {**v.info(), "config": None if v.config is None else v.config.to_dict()}
                for v in self.variants
            ],
        }


def shipped_sweeps() -> dict[str, Any]:
    """The sweeps shipped inside the package, by name (``default`` -> its ``default.yaml`` resource)."""
    from importlib.resources import files

    folder = files("slimkit").joinpath("configs", "study")
    if not folder.is_dir():
        return {}
    return {p.name.removesuffix(".yaml"): p for p in folder.iterdir() if p.name.endswith(".yaml")}


def read_sweep_file(spec: str | Path) -> tuple[Any, str, Path | None]:
    """``(parsed YAML, source label, directory relative paths resolve against)`` of a sweep.

    ``spec`` is a YAML file, or the name of a shipped sweep (``default``, ``real-quick``).

    Raises:
        ConfigError: no such file or shipped sweep (the message lists the shipped ones), or bad YAML.
    """
    from slimkit.core.config import MAX_YAML_BYTES, load_yaml_text
    from slimkit.core.io import read_text_file

    path = Path(spec)
    if path.is_file() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        if not path.exists():
            raise ConfigError(f"sweep file not found: {path}")
        text = read_text_file(path, max_bytes=MAX_YAML_BYTES, error=ConfigError)
        return load_yaml_text(text, source=str(path)), str(path), path.resolve().parent
    shipped = shipped_sweeps()
    if str(spec) not in shipped:
        raise ConfigError(
            f"no sweep file {str(spec)!r} and no shipped sweep of that name; shipped: {sorted(shipped)}"
        )
    resource = shipped[str(spec)]
    source = f"<shipped>/{resource.name}"
    return load_yaml_text(resource.read_text(encoding="utf-8"), source=source), source, None


def load_sweep(spec: str | Path = DEFAULT_SWEEP) -> Sweep:
    """Read and validate a sweep file or shipped sweep (see the module docstring)."""
    data, source, base = read_sweep_file(spec)
    return parse_sweep(data, source, base_dir=base)


def parse_sweep(data: Any, source: str = "<sweep>", *, base_dir: Path | None = None) -> Sweep:
    """A :class:`Sweep` from the parsed YAML mapping ``data``; every config is built and validated.

    Relative file paths in ``data`` specs that exist beside the sweep file (``base_dir``) are
    resolved against it; other specs (``world:heldout``, ``python-docs:eval``, paths relative to the
    working directory) are kept as written.

    Raises:
        ConfigError / RegistryError: one line naming the file and the bad key, method or option.
    """
    from slimkit.evaluate import KickSuiteConfig, PerplexityTaskConfig

    data = _section(data, source, None)
    _check_keys(data, SWEEP_KEYS, source)
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ConfigError(f"{source}: model must be a model directory or name, got {model!r}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError(f"{source}: description must be a string, got {description!r:.80}")
    evaluation = _section(data.get("evaluation"), source, "evaluation")
    _check_keys(evaluation, EVALUATION_KEYS, f"{source}: evaluation")

    calibration = _section(data.get("calibration"), source, "calibration")
    calibration = _build(CalibrationSettings, _resolved(calibration, base_dir), f"{source}: calibration")
    ppl = _section(evaluation.get("ppl"), source, "evaluation.ppl")
    ppl = _build(PerplexityTaskConfig, _resolved(ppl, base_dir), f"{source}: evaluation.ppl")
    kick = None
    if "kick" not in evaluation or evaluation["kick"] is not None:
        options = _kick_options(_section(evaluation.get("kick"), source, "evaluation.kick"), source)
        kick = _build(KickSuiteConfig, _resolved(options, base_dir), f"{source}: evaluation.kick")
    variants = expand_variants(data.get("variants", []), source)
    return Sweep(
        source=source,
        description=" ".join(description.split()),
        model=model,
        variants=(dense_variant(), *variants),
        calibration=calibration,
        ppl=ppl,
        kick=kick,
    )


def _section(value: Any, source: str, name: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        where = f"{source}: {name}" if name else source
        raise ConfigError(f"{where} must be a mapping, got {value!r:.80}")
    return dict(value)


def _check_keys(data: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {list(known)}")


def _build(cls: type[Config], options: dict[str, Any], where: str) -> Any:
    try:
        return cls.from_dict(options)
    except SlimkitError as e:
        raise type(e)(f"{where}: {e}") from None


def _resolved(options: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """``options`` with a relative ``data`` path that exists beside the sweep file made absolute."""
    if base_dir is None or "data" not in options:
        return options

    def resolve(spec: Any) -> Any:
        if isinstance(spec, str) and spec and not Path(spec).is_absolute() and (base_dir / spec).exists():
            return str(base_dir / spec)
        return spec

    data = options["data"]
    return {**options, "data": [resolve(s) for s in data] if isinstance(data, list) else resolve(data)}


def _kick_options(kick: dict[str, Any], source: str) -> dict[str, Any]:
    """``evaluation.kick`` with ``task_defaults`` folded into ``task_options`` of every task that takes them."""
    from dataclasses import fields

    from slimkit.evaluate import KICK_TASKS, TASKS

    defaults = kick.pop(TASK_DEFAULTS, None)
    if defaults is None:
        return kick
    where = f"{source}: evaluation.kick.{TASK_DEFAULTS}"
    if not isinstance(defaults, dict) or not all(isinstance(k, str) for k in defaults):
        raise ConfigError(f"{where} must be a mapping of task options to values, got {defaults!r:.80}")
    tasks = kick.get("tasks") or KICK_TASKS
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    per_task = kick.get("task_options") or {}
    if not isinstance(per_task, dict) or not all(isinstance(v, dict) for v in per_task.values()):
        raise ConfigError(f"{source}: evaluation.kick.task_options must be {{task: {{option: value}}}}")
    merged = {task: dict(options) for task, options in per_task.items()}
    taken: set[str] = set()
    every: set[str] = set()
    for task in tasks:
        if task not in KICK_TASKS:
            continue  # KickSuiteConfig names the unknown task
        names = {f.name for f in fields(TASKS.config_for(task)) if f.init} - {"data", "version"}
        every |= names
        for option, value in defaults.items():
            if option in names:
                merged.setdefault(task, {}).setdefault(option, value)
                taken.add(option)
    unused = sorted(set(defaults) - taken)
    if unused:
        raise ConfigError(
            f"{where}: no KICK task {tasks} takes option(s) {unused}; their options: {sorted(every)}"
        )
    return {**kick, "task_options": merged}


# -- the study config: a sweep plus overrides ---------------------------------------------------------------
@dataclass(frozen=True)
class StudyConfig(Config):
    """What the study runs: a sweep (file or shipped name) and overrides of its settings.

    Every override left at ``None`` keeps the sweep's value.

    Attributes:
        model (str | None): a model directory or named model (``smollm2-135m``); ``"default"`` = the
            built-in world's model; None = the sweep's ``model`` (the world's when it has none).
        sweep (str): a sweep YAML file or a shipped sweep's name. Default: ``"default"``.
        variants (tuple[dict, ...] | None): variant entries replacing the sweep's (same format as a
            file's ``variants:``); ``()`` = the dense model only. Default: None.
        ppl_data (str | None): perplexity text source (``evaluation.ppl.data``).
        seqlen, limit (int | None): perplexity window length and window cap.
        batch_size (int | None): perplexity batch size.
        kick_data (str | tuple[str, ...] | None): KICK reader spec(s); sets up KICK even when the sweep
            has none.
        kick_tasks (tuple[str, ...] | None): KICK tasks to run (``()`` = all the data provides).
        kick_limit (int | None): items per KICK task; 0 = all.
        calib (str | None), nsamples, calib_seqlen (int | None), seed (int | None): calibration.
        device (str): compute device. Default: "cpu".
    """

    model: str | None = None
    sweep: str = DEFAULT_SWEEP
    variants: tuple[dict[str, Any], ...] | None = None
    ppl_data: str | None = None
    seqlen: int | None = None
    limit: int | None = None
    batch_size: int | None = None
    kick_data: str | tuple[str, ...] | None = None
    kick_tasks: tuple[str, ...] | None = None
    kick_limit: int | None = None
    calib: str | None = None
    nsamples: int | None = None
    calib_seqlen: int | None = None
    seed: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("variants", "kick_tasks", "kick_data"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.sweep, Path):
            object.__setattr__(self, "sweep", str(self.sweep))
        super().__post_init__()
        if isinstance(self.kick_tasks, str):
            raise ConfigError(f"StudyConfig.kick_tasks must be a list, got {self.kick_tasks!r}")
        if self.variants is not None and not isinstance(self.variants, tuple):
            raise ConfigError(f"StudyConfig.variants must be a list of entries, got {self.variants!r:.80}")
        for name in ("nsamples", "calib_seqlen", "seqlen", "batch_size", "limit"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        if self.kick_limit is not None:
            check_range("kick_limit", self.kick_limit, 0, None)


def resolve_sweep(cfg: StudyConfig) -> Sweep:
    """The sweep ``cfg`` names with ``cfg``'s overrides applied, validated (no model is loaded)."""
    data, source, base = read_sweep_file(cfg.sweep)
    data = _section(data, source, None)
    _check_keys(data, SWEEP_KEYS, source)
    evaluation = _section(data.get("evaluation"), source, "evaluation")
    calibration = _section(data.get("calibration"), source, "calibration")
    ppl = _section(evaluation.get("ppl"), source, "evaluation.ppl")
    _set(calibration, data=cfg.calib, nsamples=cfg.nsamples, seqlen=cfg.calib_seqlen, seed=cfg.seed)
    _set(ppl, data=cfg.ppl_data, seqlen=cfg.seqlen, limit=cfg.limit, batch_size=cfg.batch_size)
    evaluation["ppl"] = ppl
    kick = evaluation.get("kick", {})
    if kick is not None or cfg.kick_data is not None:
        kick = _section(kick, source, "evaluation.kick")
        kick_limit = None if cfg.kick_limit is None else (cfg.kick_limit or _ALL)
        data_spec = list(cfg.kick_data) if isinstance(cfg.kick_data, tuple) else cfg.kick_data
        tasks = None if cfg.kick_tasks is None else list(cfg.kick_tasks)
        _set(kick, data=data_spec, tasks=tasks, limit=kick_limit)
        evaluation["kick"] = kick
    data = {**data, "evaluation": evaluation, "calibration": calibration}
    if cfg.variants is not None:
        data["variants"] = list(cfg.variants)
    where = source if cfg.variants is None else f"{source} (variants from the command line)"
    sweep = parse_sweep(data, where, base_dir=base)
    if cfg.model is not None:
        from dataclasses import replace

        sweep = replace(sweep, model=None if cfg.model == "default" else cfg.model)
    return sweep


_ALL = object()  # an override that clears a value (kick_limit=0: every item)


def _set(section: dict[str, Any], **overrides: Any) -> None:
    for key, value in overrides.items():
        if value is _ALL:
            section[key] = None
        elif value is not None:
            section[key] = value


def plan_variants(cfg: StudyConfig) -> list[Variant]:
    """The dense model, then every variant of the sweep, with configs validated up front."""
    return list(resolve_sweep(cfg).variants)


def run_study(cfg: StudyConfig, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Run the sweep and write its files to ``out`` (atomically: all or nothing). Returns results.

    ``out`` is checked first (see :func:`slimkit.core.io.check_output_dir`): an existing directory is
    replaced only when slimkit wrote it or with ``overwrite``, never when it holds the model. A bad
    sweep (unknown key, method or option, a bad value) fails before any model is loaded.
    """
    from slimkit.evaluate import validate_results
    from slimkit.evaluate.report import metric_directions, write_report
    from slimkit.pipelines._sweep import load_subject, shared_calibration

    sweep = resolve_sweep(cfg)  # bad keys / methods / options fail before any work
    protect = (sweep.model,) if sweep.model else ()
    check_output_dir(out, protect=protect, overwrite=overwrite)
    ppl, kick = _evaluation_configs(sweep)
    model, tokenizer, name = load_subject(sweep.model, cfg.device)
    calib = shared_calibration(
        [v.config for v in sweep.variants],
        tokenizer,
        sweep.calibration.data,
        nsamples=sweep.calibration.nsamples,
        seqlen=sweep.calibration.seqlen,
        seed=sweep.calibration.seed,
    )

    study = {**sweep.to_dict(), "device": cfg.device}
    if calib is not None:  # what of the calibration source the shared windows cover
        study["calibration_coverage"] = calib.coverage.to_dict()
        console().print(f"[bold]study[/bold] calibration: {calib.coverage}")
    results_per_variant: list[dict[str, Any]] = []
    for i, variant in enumerate(sweep.variants):
        console().print(f"[bold]study[/bold] [{i + 1}/{len(sweep.variants)}] {variant.name}")
        results_per_variant.append(
            _run_variant(variant, model, tokenizer, name, calib, ppl, kick, study, cfg.device, sweep)
        )

    results = dict(results_per_variant[0])
    results["variants"] = results_per_variant
    results["sweep"] = study
    results["higher_is_better"] = metric_directions(results_per_variant)
    validate_results(results)
    with atomic_dir(out, protect=protect, overwrite=overwrite) as tmp:
        write_json(tmp / "results.json", results)
        write_text(tmp / "report.md", write_report(results, tmp))
    return results


def _evaluation_configs(sweep: Sweep) -> tuple[Config, Config | None]:
    """The perplexity config (its data filled in) and the KICK config every variant runs (or None)."""
    ppl, kick = sweep.ppl, sweep.kick
    if getattr(ppl, "data", None) is None:
        if sweep.model is not None:
            raise DataError(
                "a study of your own model needs a perplexity text source: --data, or evaluation.ppl.data "
                f"in {sweep.source}"
            )
        from slimkit.models.default import default_world_data

        ppl = ppl.replace(data=default_world_data("ppl"))
    if kick is not None and sweep.model is not None and getattr(kick, "data", None) is None:
        kick = None  # the world's tasks are about the world: a model of your own gets them only on request
    return ppl, kick


def _run_variant(
    variant: Variant, dense, tokenizer, name, calib, ppl, kick, study, device, sweep
) -> dict[str, Any]:
    from slimkit.evaluate import evaluate, make_results
    from slimkit.pipelines._sweep import compressed_copy

    info: dict[str, Any] = variant.info()
    model = dense
    if variant.config is None:
        info |= {"achieved_sparsity": 0.0, "size_fraction": 1.0, "size_basis": DENSE}
    else:
        model, compression = compressed_copy(dense, variant.config, calib, device)
        info |= compression
    t0 = time.perf_counter()
    metrics = dict(evaluate(model, tokenizer, ppl))
    if kick is not None:
        metrics.update(evaluate(model, tokenizer, kick))
    info["eval_time_s"] = time.perf_counter() - t0
    config = {
        "study": study,
        "compression": None if variant.config is None else variant.config.to_dict(),
    }
    res = make_results(f"{name} [{variant.name}]", metrics, config=config, seed=sweep.calibration.seed)
    res["variant"] = info
    return res


def print_summary(results: dict[str, Any]) -> None:
    """Print the study table (one row per variant) to stdout."""
    from rich.console import Console
    from rich.table import Table

    from slimkit.evaluate.report import summary_rows

    header, rows = summary_rows(results)
    table = Table(title=f"slimkit study — {results['model']}")
    for h in header:
        # headers fold between words but never inside one ("perpl…" would hide the metric)
        width = max(len(word) for word in h.split())
        table.add_column(
            h, justify="left" if h == "variant" else "right", no_wrap=h == "variant", min_width=width
        )
    for row in rows:
        table.add_row(*row)
    if sys.stdout.isatty():
        Console().print(table)
        return
    # a pipe or a CI log has no terminal width; rich would assume 80 columns and fold or crop the table,
    # so give it the width it needs to show every column unfolded
    from rich.measure import Measurement

    wide = Console(width=1000)
    Console(width=max(120, Measurement.get(wide, wide.options, table).maximum)).print(table)


__all__ = [
    "DENSE",
    "CalibrationSettings",
    "StudyConfig",
    "Sweep",
    "Variant",
    "load_sweep",
    "parse_sweep",
    "plan_variants",
    "print_summary",
    "resolve_sweep",
    "run_study",
    "shipped_sweeps",
]
