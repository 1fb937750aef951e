"""``slimkit train CONFIG.yaml [--resume]``."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.common import stdout

HELP = (
    "Train a causal LM from a YAML config (model, tokenizer, data, train, out).\n\n"
    "Checkpoints are written atomically every `checkpoint_every` steps; `--resume` continues from the last "
    "one and reproduces the uninterrupted loss curve exactly.\n\n"
    "Examples:\n\n"
    "    slimkit train configs/train_tiny.yaml\n\n"
    "    slimkit train my-run.yaml --resume\n\n"
    "Under torchrun the run uses DDP: each rank trains on its slice of every global batch (`batch_size`, a "
    "multiple of the rank count), rank 0 writes checkpoints and the model:\n\n"
    "    torchrun --nproc-per-node 2 -m slimkit.cli.main train configs/train_tiny.yaml"
)


def train(
    config: Path = typer.Argument(..., help="YAML training config (see docs/training.md)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the last checkpoint in the run's out dir."
    ),
) -> None:
    import os

    from slimkit.train.recipe import train_from_yaml

    result, out_dir = train_from_yaml(config, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun rank 0 reports
    if resume and result.tokens_per_s == 0:
        stdout.print(
            f"nothing to train: the run already completed {len(result.losses)} steps; model in {Path(out_dir) / 'model'}"
        )
        return
    stdout.print(
        f"trained {len(result.losses)} steps, final loss {result.losses[-1]:.4f}, "
        f"{result.tokens_per_s:,.0f} tokens/s; model in {Path(out_dir) / 'model'}"
    )
