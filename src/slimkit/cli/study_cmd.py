"""``slimkit study [MODEL] [--sweep FILE]``: the main job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from slimkit.cli.common import OVERWRITE, stdout

HELP = (
    "Compress a model with a sweep of variants, evaluate every variant, and write results.json, "
    "report.md and plots to --out.\n\n"
    "The sweep is a YAML file (--sweep): the variants (method + options, e.g. wanda at sparsity 0.5) and "
    "the evaluation (perplexity source, KICK data, limits, calibration). Shipped sweeps can be named: "
    "`default` (the built-in world: magnitude, Wanda and SparseGPT at 30/50/70% and 2:4, OWL at 70%, "
    "WeLore and uniform SVD at 30/50% parameter reduction; 19 variants) and `real-quick` (SmolLM2-135M, "
    "perplexity on Python's documentation and questions about countries, 7 variants; "
    "`slimkit models install smollm2-135m` first).\n\n"
    "With no MODEL and no --sweep: the default sweep on the built-in knowledge world and its default model "
    "(trained on first use in a few minutes on a laptop CPU, then cached). Flags override the sweep's "
    "settings; --methods / --sparsities / --patterns / --owl-sparsities / --lowrank-reductions replace its "
    "variants with that grid (unset ones take the default sweep's values).\n\n"
    "Examples:\n\n"
    "    slimkit study\n\n"
    "    slimkit study --sweep real-quick --out quick\n\n"
    "    slimkit study ./my-model --sweep my-sweep.yaml --data wiki.test.txt --out my-study\n\n"
    "    slimkit study --methods wanda,sparsegpt --sparsities 0.5 --patterns '' --lowrank-reductions '' --out quick\n\n"
    "    slimkit study --dense-only\n\n"
    "    slimkit study --tasks factoid,mc --kick-limit 100 --out quick\n\n"
    "    slimkit study ./my-model --data wiki.test.txt --calib c4.jsonl --seqlen 2048 --calib-seqlen 2048 "
    "--kick-data mmlu:data/mmlu"
)

# the variant grid the flags build when any of them is given (the default sweep's grid)
FLAG_DEFAULTS = {
    "methods": "magnitude,wanda,sparsegpt",
    "sparsities": "0.3,0.5,0.7",
    "patterns": "2:4",
    "owl_sparsities": "0.7",
    "lowrank_reductions": "0.3,0.5",
}
LOWRANK_METHODS = ("welore", "svd-uniform")


def _floats(text: str, flag: str) -> tuple[float, ...]:
    from slimkit.core.errors import ConfigError

    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{flag} must be a comma-separated list of numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def flag_variants(
    methods: tuple[str, ...],
    sparsities: tuple[float, ...],
    patterns: tuple[str, ...],
    owl_sparsities: tuple[float, ...],
    lowrank_reductions: tuple[float, ...],
) -> list[dict[str, Any]]:
    """Sweep entries (the ``variants:`` format) for the grid flags: every method at every sparsity and
    pattern, OWL for the calibrated ones, and both low-rank methods at every parameter reduction."""
    from slimkit.compress import build_config, needs_calibration

    entries: list[dict[str, Any]] = []
    for method in methods:
        for s in sparsities:
            entries.append(
                {"name": f"{method} {s:.0%}", "method": method, "series": method, "options": {"sparsity": s}}
            )
        for p in patterns:
            entries.append({"name": f"{method} {p}", "method": method, "options": {"pattern": p}})
        if owl_sparsities and needs_calibration(build_config(method)):  # OWL needs activations
            for s in owl_sparsities:
                entries.append(
                    {
                        "name": f"{method}+OWL {s:.0%}",
                        "method": method,
                        "series": f"{method}+OWL",
                        "options": {"sparsity": s, "allocation": "owl"},
                    }
                )
    for r in lowrank_reductions:
        for method in LOWRANK_METHODS:
            entries.append(
                {
                    "name": f"{method} {r:.0%} params",
                    "method": method,
                    "series": method,
                    "options": {"target_params": r},
                }
            )
    return entries


def study(
    model: str | None = typer.Argument(
        None, help="Model directory or named model (default: the sweep's model, else the built-in world's)."
    ),
    sweep: str = typer.Option(
        "default", "--sweep", help="Sweep YAML file, or a shipped sweep's name (default, real-quick)."
    ),
    methods: str | None = typer.Option(
        None, "--methods", help="Comma-separated methods (replaces the sweep's variants)."
    ),
    sparsities: str | None = typer.Option(
        None, "--sparsities", help="Unstructured sparsities (default 0.3,0.5,0.7)."
    ),
    patterns: str | None = typer.Option(None, "--patterns", help="N:M patterns ('' for none; default 2:4)."),
    owl_sparsities: str | None = typer.Option(
        None, "--owl-sparsities", help="Sparsities also run with OWL ('' for none; default 0.7)."
    ),
    lowrank_reductions: str | None = typer.Option(
        None,
        "--lowrank-reductions",
        help="Parameter reductions run with WeLore and uniform SVD ('' for none; default 0.3,0.5).",
    ),
    dense_only: bool = typer.Option(
        False, "--dense-only", help="Evaluate the dense model only (no variants)."
    ),
    data: str | None = typer.Option(None, "--data", help="Perplexity text source (default: the sweep's)."),
    calib: str | None = typer.Option(None, "--calib", help="Calibration text source (default: the sweep's)."),
    nsamples: int | None = typer.Option(None, "--nsamples", help="Calibration sequences."),
    calib_seqlen: int | None = typer.Option(None, "--calib-seqlen", help="Calibration sequence length."),
    seqlen: int | None = typer.Option(None, "--seqlen", help="Perplexity window length."),
    kick_data: list[str] | None = typer.Option(
        None, "--kick-data", help="KICK reader spec(s), repeatable (default: the sweep's)."
    ),
    tasks: str | None = typer.Option(
        None, "--tasks", help="KICK tasks to run (default: all the data provides)."
    ),
    kick_limit: int | None = typer.Option(None, "--kick-limit", help="Items per KICK task (0 = all)."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many perplexity windows."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Perplexity batch size."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    seed: int | None = typer.Option(None, "--seed", help="Calibration seed."),
    out: Path = typer.Option(
        Path("slimkit-study"), "--out", help="Output directory (replaced atomically when slimkit wrote it)."
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    from slimkit.pipelines.study import StudyConfig, print_summary, run_study

    grid = {
        "methods": methods,
        "sparsities": sparsities,
        "patterns": patterns,
        "owl_sparsities": owl_sparsities,
        "lowrank_reductions": lowrank_reductions,
    }
    variants = None
    if dense_only:
        variants = ()
    elif any(v is not None for v in grid.values()):
        text = {k: FLAG_DEFAULTS[k] if v is None else v for k, v in grid.items()}
        variants = tuple(
            flag_variants(
                _names(text["methods"]),
                _floats(text["sparsities"], "--sparsities"),
                _names(text["patterns"]),
                _floats(text["owl_sparsities"], "--owl-sparsities"),
                _floats(text["lowrank_reductions"], "--lowrank-reductions"),
            )
        )
    cfg = StudyConfig(
        model=model,
        sweep=sweep,
        variants=variants,
        ppl_data=data,
        seqlen=seqlen,
        limit=limit,
        batch_size=batch_size,
        kick_data=tuple(kick_data) if kick_data else None,
        kick_tasks=None if tasks is None else _names(tasks),
        kick_limit=kick_limit,
        calib=calib,
        nsamples=nsamples,
        calib_seqlen=calib_seqlen,
        seed=seed,
        device=device,
    )
    results = run_study(cfg, out, overwrite=overwrite)
    print_summary(results)
    stdout.print(f"wrote {out / 'results.json'}, {out / 'report.md'} and plots")
