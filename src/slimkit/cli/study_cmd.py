"""``slimkit study [MODEL]``: the main job."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.common import stdout

HELP = (
    "Compress a model with a sweep of methods and sparsities, evaluate every variant, and write "
    "results.json, report.md and plots to --out.\n\n"
    "With no MODEL the built-in knowledge world and its default model are used (trained on first use in a "
    "few minutes on a laptop CPU, then cached). The default sweep: magnitude, Wanda and SparseGPT at "
    "30/50/70% unstructured and 2:4, plus OWL at 70%. Every variant is evaluated on perplexity and the LLM-KICK "
    "suite (factoid, multiple choice, retrieval, two-hop on the world; --kick-data for real datasets).\n\n"
    "Examples:\n\n"
    "    slimkit study\n\n"
    "    slimkit study --methods wanda,sparsegpt --sparsities 0.5 --patterns '' --out quick\n\n"
    "    slimkit study --dense-only\n\n"
    "    slimkit study --tasks factoid,mc --kick-limit 100 --out quick\n\n"
    "    slimkit study ./my-model --data wiki.test.txt --calib c4.jsonl --seqlen 2048 --calib-seqlen 2048 "
    "--kick-data mmlu:data/mmlu"
)


def _floats(text: str, flag: str) -> tuple[float, ...]:
    from slimkit.core.errors import ConfigError

    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{flag} must be a comma-separated list of numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def study(
    model: str | None = typer.Argument(None, help="Model directory (default: the built-in world's model)."),
    methods: str = typer.Option("magnitude,wanda,sparsegpt", "--methods", help="Comma-separated methods."),
    sparsities: str = typer.Option("0.3,0.5,0.7", "--sparsities", help="Unstructured sparsities."),
    patterns: str = typer.Option("2:4", "--patterns", help="N:M patterns ('' for none)."),
    owl_sparsities: str = typer.Option(
        "0.7", "--owl-sparsities", help="Sparsities also run with OWL ('' for none)."
    ),
    lowrank_reductions: str = typer.Option(
        "0.3,0.5",
        "--lowrank-reductions",
        help="Parameter reductions also run with WeLore and uniform SVD ('' for none).",
    ),
    dense_only: bool = typer.Option(False, "--dense-only", help="Evaluate the dense model only (no sweep)."),
    data: str | None = typer.Option(
        None, "--data", help="Perplexity text source (default: world held-out text)."
    ),
    calib: str | None = typer.Option(
        None, "--calib", help="Calibration text source (default: world corpus)."
    ),
    nsamples: int = typer.Option(64, "--nsamples", help="Calibration sequences."),
    calib_seqlen: int = typer.Option(128, "--calib-seqlen", help="Calibration sequence length."),
    seqlen: int = typer.Option(128, "--seqlen", help="Perplexity window length."),
    kick_data: list[str] | None = typer.Option(
        None, "--kick-data", help="KICK reader spec(s), repeatable (default: the world's tasks)."
    ),
    tasks: str = typer.Option("", "--tasks", help="KICK tasks to run (default: all the data provides)."),
    kick_limit: int = typer.Option(200, "--kick-limit", help="Items per KICK task (0 = all)."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many perplexity windows."),
    batch_size: int = typer.Option(64, "--batch-size", help="Evaluation batch size."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Calibration seed."),
    out: Path = typer.Option(
        Path("slimkit-study"), "--out", help="Output directory (replaced atomically when slimkit wrote it)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing --out directory even if slimkit did not write it."
    ),
) -> None:
    from slimkit.pipelines.study import StudyConfig, print_summary, run_study

    cfg = StudyConfig(
        model=None if model in (None, "default") else model,
        ppl_data=data,
        methods=() if dense_only else _names(methods),
        sparsities=_floats(sparsities, "--sparsities"),
        patterns=_names(patterns),
        owl_sparsities=_floats(owl_sparsities, "--owl-sparsities"),
        lowrank_reductions=() if dense_only else _floats(lowrank_reductions, "--lowrank-reductions"),
        calib=calib,
        nsamples=nsamples,
        calib_seqlen=calib_seqlen,
        seqlen=seqlen,
        kick_data=tuple(kick_data) if kick_data else None,
        kick_tasks=_names(tasks),
        kick_limit=None if kick_limit == 0 else kick_limit,
        limit=limit,
        batch_size=batch_size,
        device=device,
        seed=seed,
    )
    results = run_study(cfg, out, overwrite=overwrite)
    print_summary(results)
    stdout.print(f"wrote {out / 'results.json'}, {out / 'report.md'} and plots")
