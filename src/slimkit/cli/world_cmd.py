"""``slimkit world``: the built-in knowledge world (build its files; train or locate its default model)."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.common import OVERWRITE, stdout

app = typer.Typer(
    help="The built-in fictional knowledge world (factworld) and its default model.", no_args_is_help=True
)


@app.command(
    "build",
    help=(
        "Write the world's corpus, held-out text and task files (JSONL) to --out.\n\n"
        "Examples:\n\n"
        "    slimkit world build --out world/\n\n"
        "    slimkit world build --out big-world/ --seed 3 --people 2000"
    ),
)
def build(
    out: Path = typer.Option(
        ..., "--out", help="Directory to write (replaced atomically when slimkit wrote it)."
    ),
    overwrite: bool = OVERWRITE,
    seed: int = typer.Option(0, "--seed", help="World seed: same seed, byte-identical files."),
    people: int | None = typer.Option(
        None, "--people", help="Number of people (default: the default world's)."
    ),
) -> None:
    from slimkit.core.io import check_output_dir
    from slimkit.data.factworld import WorldConfig, build_world

    changes = {"seed": seed}
    if people is not None:
        changes["n_people"] = people
    cfg = WorldConfig(**changes)
    check_output_dir(out, overwrite=overwrite)
    path = build_world(out, cfg, overwrite=overwrite)
    stdout.print(f"wrote world (seed {seed}) to {path}")
    for f in sorted(path.rglob("*")):
        if f.is_file() and not f.name.startswith("."):
            stdout.print(f"  {f.relative_to(path)}  ({f.stat().st_size:,} bytes)")


@app.command(
    "model",
    help=(
        "Train (first use, a few minutes on a CPU) or locate the cached default model and print its directory.\n\n"
        "The cache lives in the user cache dir; set SLIMKIT_CACHE to move it.\n\n"
        "Examples:\n\n"
        "    slimkit world model\n\n"
        "    slimkit world model --retrain"
    ),
)
def model(
    retrain: bool = typer.Option(False, "--retrain", help="Train again even if a cached model exists."),
) -> None:
    from slimkit.models.default import default_model_dir

    stdout.print(str(default_model_dir(retrain=retrain)))
