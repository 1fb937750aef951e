"""The study: compress a model with a sweep of methods and ratios, evaluate each variant, report.

``run_study(StudyConfig(), out)`` on the built-in world loads (training on first use) the default
model, evaluates the dense model, then for every point of the sweep copies the dense model,
compresses the copy with ``compress_`` and evaluates it the same way: perplexity on held-out text and
the LLM-KICK suite (closed-book factoid QA split by fact popularity, multiple choice, in-context
retrieval, two-hop composition). It writes ``results.json`` (DESIGN.md's schema for the dense model,
with one schema-conforming entry per variant under ``variants``), ``report.md`` (perplexity and
knowledge side by side; variants whose perplexity stays within 10% of dense while a knowledge task
loses more than 10 points are flagged) and PNG plots to ``out``.

The default sweep (issue 3): magnitude, Wanda and SparseGPT at 30/50/70% unstructured and 2:4, plus
OWL allocation at 70% for Wanda and SparseGPT; (issue 5) WeLore and uniform-rank SVD at 30% and 50%
parameter reduction of the decoder-block linears. This is a pipeline: it composes ``compress`` and
``evaluate``, neither of which imports the other.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.core.config import Config, check_positive, check_range
from slimkit.core.errors import ConfigError, DataError
from slimkit.core.io import atomic_dir, check_output_dir, write_json, write_text
from slimkit.core.progress import console


@dataclass(frozen=True)
class StudyConfig(Config):
    """What the study compresses and evaluates.

    Attributes:
        model (str | None): a model directory; None = the built-in world's default model.
        ppl_data (str | None): perplexity text source; None = the world's held-out text.
        kick_data (str | tuple[str, ...] | None): KICK reader spec(s) (a directory of task JSONL files,
            ``mmlu:DIR``, ...); None = the world's tasks for the default model, and no KICK tasks for
            a model of your own.
        kick_tasks (tuple[str, ...]): KICK tasks to run; () = every one the data provides.
        kick_limit (int | None): items per KICK task (the world's files are shuffled, so the first N
            sample every difficulty level); None = all. Default: 200.
        methods (tuple[str, ...]): compression methods swept (short names). Default: magnitude,
            wanda, sparsegpt. Empty = evaluate the dense model only.
        sparsities (tuple[float, ...]): unstructured sparsities. Default: (0.3, 0.5, 0.7).
        patterns (tuple[str, ...]): N:M patterns swept per method. Default: ("2:4",).
        owl_sparsities (tuple[float, ...]): sparsities also run with OWL allocation (calibrated
            methods only). Default: (0.7,).
        owl_m, owl_lambda (float): OWL settings. Default: 5, 0.08.
        lowrank_reductions (tuple[float, ...]): parameter reductions run with WeLore and with uniform
            SVD (``Variant.sparsity`` carries the reduction). Default: (0.3, 0.5). Empty = none.
        calib (str | None): calibration text source; None = the world's training corpus.
        nsamples, calib_seqlen (int): calibration sequences and their length. Default: 64 x 128.
        seqlen (int): perplexity window. Default: 128 (the default model's training length).
        limit (int | None): cap on perplexity windows. Default: None (all).
        batch_size (int): evaluation batch size. Default: 64.
        device (str): compute device. Default: "cpu".
        seed (int): calibration sampling and question subset seed. Default: 0.
    """

    model: str | None = None
    ppl_data: str | None = None
    kick_data: str | tuple[str, ...] | None = None
    kick_tasks: tuple[str, ...] = ()
    kick_limit: int | None = 200
    methods: tuple[str, ...] = ("magnitude", "wanda", "sparsegpt")
    sparsities: tuple[float, ...] = (0.3, 0.5, 0.7)
    patterns: tuple[str, ...] = ("2:4",)
    owl_sparsities: tuple[float, ...] = (0.7,)
    owl_m: float = 5.0
    owl_lambda: float = 0.08
    lowrank_reductions: tuple[float, ...] = (0.3, 0.5)
    calib: str | None = None
    nsamples: int = 64
    calib_seqlen: int = 128
    seqlen: int = 128
    limit: int | None = None
    batch_size: int = 64
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "methods",
            "sparsities",
            "patterns",
            "owl_sparsities",
            "lowrank_reductions",
            "kick_tasks",
            "kick_data",
        ):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
            elif isinstance(value, str | int | float) and name != "kick_data":
                raise ConfigError(f"StudyConfig.{name} must be a list, got {value!r}")
        super().__post_init__()
        for s in (*self.sparsities, *self.owl_sparsities):
            check_range("sparsity", s, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False)
        for r in self.lowrank_reductions:
            check_range("lowrank_reductions", r, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False)
        for name in ("nsamples", "calib_seqlen", "seqlen", "batch_size"):
            check_positive(name, getattr(self, name))
        for name in ("kick_limit", "limit"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))


@dataclass(frozen=True)
class Variant:
    """One point of the sweep: a name for tables and the compression config that makes it."""

    name: str
    method: str
    sparsity: float
    pattern: str
    allocation: str | None
    config: Config | None  # None = dense


def plan_variants(cfg: StudyConfig) -> list[Variant]:
    """The dense model, then every (method, setting) of the sweep, with configs validated up front."""
    from slimkit.compress import build_config, needs_calibration

    variants = [Variant("dense", "dense", 0.0, "dense", None, None)]
    for method in cfg.methods:
        for s in cfg.sparsities:
            c = build_config(method, sparsity=s)
            variants.append(Variant(f"{method} {s:.0%}", method, s, "unstructured", None, c))
        for p in cfg.patterns:
            c = build_config(method, pattern=p)
            variants.append(Variant(f"{method} {p}", method, c.sparsity, p, None, c))
        if needs_calibration(build_config(method)):
            for s in cfg.owl_sparsities:
                c = build_config(
                    method, sparsity=s, allocation="owl", owl_m=cfg.owl_m, owl_lambda=cfg.owl_lambda
                )
                variants.append(Variant(f"{method}+OWL {s:.0%}", method, s, "unstructured", "owl", c))
    for r in cfg.lowrank_reductions:
        for method in ("welore", "svd-uniform"):
            c = build_config(method, target_params=r)
            variants.append(Variant(f"{method} {r:.0%} params", method, r, "low-rank", None, c))
    return variants


def run_study(cfg: StudyConfig, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Run the sweep and write its files to ``out`` (atomically: all or nothing). Returns results.

    ``out`` is checked first (see :func:`slimkit.core.io.check_output_dir`): an existing directory is
    replaced only when slimkit wrote it or with ``overwrite``, never when it holds the model.
    """
    from slimkit.evaluate import validate_results
    from slimkit.evaluate.report import write_report
    from slimkit.pipelines._sweep import load_subject, shared_calibration

    protect = (cfg.model,) if cfg.model else ()
    check_output_dir(out, protect=protect, overwrite=overwrite)
    variants = plan_variants(cfg)  # bad method names / settings fail before any work
    kick = _kick_config(cfg)
    if cfg.model is not None and cfg.ppl_data is None:
        raise DataError("a study of your own model needs --data (a text source for perplexity)")
    model, tokenizer, name = load_subject(cfg.model, cfg.device)
    ppl_data = cfg.ppl_data
    if ppl_data is None:
        from slimkit.models.default import default_world_data

        ppl_data = default_world_data("ppl")
    calib = shared_calibration(
        [v.config for v in variants],
        tokenizer,
        cfg.calib,
        nsamples=cfg.nsamples,
        seqlen=cfg.calib_seqlen,
        seed=cfg.seed,
    )

    results_per_variant: list[dict[str, Any]] = []
    for i, variant in enumerate(variants):
        console().print(f"[bold]study[/bold] [{i + 1}/{len(variants)}] {variant.name}")
        results_per_variant.append(_run_variant(cfg, variant, model, tokenizer, name, calib, ppl_data, kick))

    results = dict(results_per_variant[0])
    results["variants"] = results_per_variant
    validate_results(results)
    with atomic_dir(out, protect=protect, overwrite=overwrite) as tmp:
        write_json(tmp / "results.json", results)
        write_text(tmp / "report.md", write_report(results, tmp))
    return results


def _kick_config(cfg: StudyConfig) -> Any:
    """The KICK suite every variant runs (None: a model of your own and no --kick-data)."""
    if cfg.model is not None and cfg.kick_data is None:
        return None
    from slimkit.evaluate.kick import KickSuiteConfig

    return KickSuiteConfig(data=cfg.kick_data, tasks=cfg.kick_tasks, limit=cfg.kick_limit)


def _run_variant(cfg, variant: Variant, dense, tokenizer, name, calib, ppl_data, kick) -> dict[str, Any]:
    from slimkit.evaluate import make_results
    from slimkit.pipelines._sweep import compressed_copy

    info: dict[str, Any] = {
        "name": variant.name,
        "method": variant.method,
        "sparsity": variant.sparsity,
        "pattern": variant.pattern,
        "allocation": variant.allocation,
    }
    model = dense
    if variant.config is not None:
        model, compression = compressed_copy(dense, variant.config, calib, cfg.device)
        info |= compression
    t0 = time.perf_counter()
    metrics = _evaluate(model, tokenizer, cfg, ppl_data, kick)
    info["eval_time_s"] = time.perf_counter() - t0
    config = {
        "study": cfg.to_dict(),
        "compression": None if variant.config is None else variant.config.to_dict(),
    }
    res = make_results(f"{name} [{variant.name}]", metrics, config=config, seed=cfg.seed)
    res["variant"] = info
    return res


def _evaluate(model, tokenizer, cfg: StudyConfig, ppl_data, kick) -> dict[str, Any]:
    from slimkit.evaluate import evaluate

    metrics: dict[str, Any] = {}
    metrics.update(
        evaluate(
            model,
            tokenizer,
            suite="ppl",
            data=ppl_data,
            seqlen=cfg.seqlen,
            limit=cfg.limit,
            batch_size=cfg.batch_size,
        )
    )
    if kick is not None:
        metrics.update(evaluate(model, tokenizer, kick))
    return metrics


def print_summary(results: dict[str, Any]) -> None:
    """Print the study table (one row per variant) to stdout."""
    from rich.console import Console
    from rich.table import Table

    from slimkit.evaluate.report import summary_rows

    header, rows = summary_rows(results)
    table = Table(title=f"slimkit study — {results['model']}")
    for h in header:
        table.add_column(h, justify="left" if h == "variant" else "right", no_wrap=h == "variant")
    for row in rows:
        table.add_row(*row)
    # a pipe or a CI log has no terminal width; rich would assume 80 columns and fold the table
    Console(width=None if sys.stdout.isatty() else 120).print(table)
