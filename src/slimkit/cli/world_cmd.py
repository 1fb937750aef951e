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
        "    slimkit world build --out big-world/ --seed 3 --people 2000\n\n"
        "    slimkit world build --out reader-world/ --recipe reader"
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
    recipe: str = typer.Option(
        "default", "--recipe", help="Whose world: 'default' or 'reader' (the opt-in reading world)."
    ),
) -> None:
    from slimkit.core.io import check_output_dir
    from slimkit.data.factworld import WorldConfig, build_world

    changes = {**_recipe(recipe).world, "seed": seed}
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
        "    slimkit world model --retrain\n\n"
        "    slimkit world model --recipe reader      # the opt-in model that reads its context"
    ),
)
def model(
    retrain: bool = typer.Option(False, "--retrain", help="Train again even if a cached model exists."),
    recipe: str = typer.Option("default", "--recipe", help="'default' or 'reader' (docs/factworld.md)."),
) -> None:
    from slimkit.models.default import default_model_dir

    stdout.print(str(default_model_dir(_recipe(recipe), retrain=retrain)))


@app.command(
    "probe",
    help=(
        "The copy probe: train a world recipe for a few hundred steps and measure whether it copies from "
        "its context (induction accuracy on repeated world-word sequences, open-book exact match on 20 "
        "short passages). A few CPU minutes; the gate before a full training run.\n\n"
        "Examples:\n\n"
        "    slimkit world probe --recipe reader\n\n"
        "    slimkit world probe --recipe default --steps 100 --passages 10"
    ),
)
def probe(
    recipe: str = typer.Option("reader", "--recipe", help="'default' or 'reader'."),
    steps: int = typer.Option(250, "--steps", help="Training steps, >= 1."),
    passages: int = typer.Option(20, "--passages", help="Short retrieval passages scored, >= 1."),
) -> None:
    from slimkit.models.reader import PROBE_GATE, copy_probe

    result = copy_probe(_recipe(recipe), steps=steps, n_passages=passages)
    stdout.print(
        f"{recipe}: induction {result.induction:.3f} (no-copy floor {result.induction_floor:.3f}), "
        f"retrieval EM on {result.n_passages} short passages {result.retrieval_short:.3f} after "
        f"{result.steps} steps ({result.train_cpu_s:.0f} CPU s); gate {PROBE_GATE}: "
        f"{'pass' if result.passed else 'fail'}"
    )


def _recipe(name: str):  # -> DefaultModelRecipe
    from slimkit.core.errors import ConfigError
    from slimkit.models.default import DEFAULT_RECIPE
    from slimkit.models.reader import READER_RECIPE

    recipes = {"default": DEFAULT_RECIPE, "reader": READER_RECIPE}
    if name not in recipes:
        raise ConfigError(f"--recipe {name!r} is not one of {sorted(recipes)}")
    return recipes[name]
