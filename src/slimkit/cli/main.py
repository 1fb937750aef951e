"""``slimkit``: the command-line entry point.

Every command is thin: parse flags, call the library, print a table or a path. Shared flag names
(``--out``, ``--data``, ``--calib``, ``--nsamples``, ``--seqlen``, ``--seed``, ``--device``, ``--dtype``,
``--limit``) mean the same thing everywhere.
"""

from __future__ import annotations

import sys

import typer

from slimkit.cli import (
    compress_cmd,
    debias_cmd,
    eval_cmd,
    finetune_cmd,
    graph_cmd,
    idea_cmd,
    junkdna_cmd,
    models_cmd,
    report_cmd,
    study_cmd,
    train_cmd,
    world_cmd,
)
from slimkit.cli.errors import run_cli

app = typer.Typer(
    name="slimkit",
    help=(
        "Make models smaller, cheaper to train and faster to run, and measure what that cost.\n\n"
        "Quick start: `slimkit study` trains (once, ~4 min on 2 CPU cores), prunes and evaluates the built-in "
        "world's default model and writes a report to ./slimkit-study/."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.add_typer(world_cmd.app, name="world")
app.command("train", help=train_cmd.HELP)(train_cmd.train)
app.command("compress", help=compress_cmd.HELP)(compress_cmd.compress)
app.command("finetune", help=finetune_cmd.HELP)(finetune_cmd.finetune)
app.command("eval", help=eval_cmd.HELP)(eval_cmd.eval_model)
app.command("generate", help=eval_cmd.GENERATE_HELP)(eval_cmd.generate)
app.command("study", help=study_cmd.HELP)(study_cmd.study)
app.command("junkdna", help=junkdna_cmd.HELP)(junkdna_cmd.junkdna)
app.command("idea-prune", help=idea_cmd.HELP)(idea_cmd.idea_prune)
app.command("report", help=report_cmd.HELP)(report_cmd.report)
app.add_typer(graph_cmd.app, name="graph")
app.add_typer(debias_cmd.app, name="debias")
app.command("import", help=models_cmd.IMPORT_HELP)(models_cmd.import_model)
app.add_typer(models_cmd.app, name="models")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``slimkit``)."""
    sys.exit(run_cli(typer.main.get_command(app), argv))


if __name__ == "__main__":
    main()
