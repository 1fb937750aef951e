"""``slimkit report RESULTS.json ...``: results JSON files -> report.md with tables and plots."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.common import OVERWRITE, stdout

HELP = (
    "Turn results JSON files into a markdown report with tables and PNG plots.\n\n"
    "One file from `slimkit study` or `slimkit junkdna` is reported as that run; several `slimkit eval` "
    "results are put side by side, one row per file.\n\n"
    "Examples:\n\n"
    "    slimkit report slimkit-study/results.json --out report\n\n"
    "    slimkit report dense.json wanda50.json sparsegpt50.json --out compare"
)


def report(
    results: list[Path] = typer.Argument(..., help="Results JSON files."),
    out: Path = typer.Option(
        Path("slimkit-report"),
        "--out",
        help="Output directory (replaced atomically when slimkit wrote it; never one holding the inputs).",
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    from slimkit.core.io import atomic_dir, check_output_dir, write_text
    from slimkit.evaluate.report import combine_results, write_junkdna_report, write_report

    inputs = tuple(results)
    check_output_dir(out, protect=inputs, overwrite=overwrite)
    combined = combine_results(results)
    with atomic_dir(out, protect=inputs, overwrite=overwrite) as tmp:
        text = write_junkdna_report(combined, tmp) if "junkdna" in combined else write_report(combined, tmp)
        write_text(tmp / "report.md", text)
    stdout.print(f"wrote {out / 'report.md'}")
