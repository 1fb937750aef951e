"""``slimkit study [MODEL]``: the main job."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.common import stdout

HELP = (
    "Evaluate a model and write results.json, report.md and plots to --out.\n\n"
    "With no MODEL the built-in knowledge world and its default model are used (trained on first use in a "
    "few minutes on a laptop CPU, then cached).\n\n"
    "Examples:\n\n"
    "    slimkit study\n\n"
    "    slimkit study --out my-study --limit 200\n\n"
    "    slimkit study ./my-model --data wiki.test.txt --seqlen 2048"
)


def study(
    model: str | None = typer.Argument(None, help="Model directory (default: the built-in world's model)."),
    data: str | None = typer.Option(
        None, "--data", help="Perplexity text source (default: world held-out text)."
    ),
    seqlen: int = typer.Option(128, "--seqlen", help="Perplexity window length."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many windows / questions per task."),
    batch_size: int = typer.Option(32, "--batch-size", help="Evaluation batch size."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Recorded in provenance."),
    out: Path = typer.Option(Path("slimkit-study"), "--out", help="Output directory (replaced atomically)."),
) -> None:
    from slimkit.pipelines.study import StudyConfig, print_summary, run_study

    cfg = StudyConfig(
        model=None if model in (None, "default") else model,
        ppl_data=data,
        seqlen=seqlen,
        limit=limit,
        batch_size=batch_size,
        device=device,
        seed=seed,
    )
    results = run_study(cfg, out)
    print_summary(results)
    stdout.print(f"wrote {out / 'results.json'} and {out / 'report.md'}")
