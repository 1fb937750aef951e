"""``slimkit finetune MODEL --lrc-only CONFIG.yaml``."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.common import stdout

HELP = (
    "Finetune a model directory with the training loop, as CONFIG.yaml says (sections data, train, out).\n\n"
    "--lrc-only (WeLore): train only the low-rank components (LowRankLinear factors) and the norms; "
    "embeddings, lm_head and the dense (N-LRC) matrices are frozen and get no optimizer state. "
    "--full trains every weight. The model is saved to OUT/model and reloads with slimkit.load_model.\n\n"
    "Examples:\n\n"
    "    slimkit compress default --method welore --target-params 0.5 --out welore50\n\n"
    "    slimkit finetune welore50 --lrc-only finetune.yaml\n\n"
    "    slimkit finetune welore50 --full finetune.yaml --out runs/full-ft"
)


def finetune(
    model: Path = typer.Argument(
        ..., help="Model directory (e.g. written by `slimkit compress --method welore`)."
    ),
    config: Path = typer.Argument(..., help="YAML with data, train (TrainConfig fields) and out."),
    lrc_only: bool = typer.Option(
        True, "--lrc-only/--full", help="Train only the low-rank factors and norms (default), or everything."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run directory (overrides the YAML's out)."),
) -> None:
    from slimkit.compress.lowrank.finetune import finetune_from_yaml

    result, info, run_dir = finetune_from_yaml(model, config, lrc_only=lrc_only, out=out)
    stdout.print(
        f"{'LRC-only' if lrc_only else 'full'} finetuning: {info['trainable']:,} trainable / "
        f"{info['trainable'] + info['frozen']:,} parameters, optimizer state "
        f"{info['optimizer_state_bytes'] / 2**20:.2f} MiB; {len(result.losses)} steps, final loss "
        f"{result.losses[-1]:.4f}, {result.tokens_per_s:,.0f} tokens/s; model in {run_dir / 'model'}"
    )
