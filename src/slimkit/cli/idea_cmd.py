"""``slimkit idea-prune CONFIG.yaml [--baselines] --out DIR [--resume]``."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.common import stdout

HELP = (
    "IDEA Prune (docs/idea_prune.md): train a model with FFNs `enlarge` x wider than the target, prune the FFN "
    "width back to the target gradually inside the same run (EMA of |θ·∇θ| per neuron, cubic width schedule), "
    "remove the pruned neurons and recover, all under one warm-up + cosine learning-rate schedule. The result "
    "is an ordinary dense model of the target size (`<out>/idea/model`).\n\n"
    "With --baselines the same token budget also trains the target from scratch and the naive pipeline "
    "(enlarged model to the end of its own schedule, one-shot pruning, recovery with a re-warmed schedule); "
    "`comparison.json` and `comparison.md` hold perplexity, factoid accuracy (popular / rare) and the speed "
    "of the pruned model against the enlarged one.\n\n"
    "Every stage checkpoints; --resume continues an interrupted run at the stage and step it reached.\n\n"
    "Under torchrun the training runs with DDP (train.parallel: ddp): each rank trains on its slice of every "
    "global batch (train.batch_size, a multiple of the rank count), every rank makes the same pruning "
    "decisions, rank 0 writes the outputs. FSDP is refused (docs/idea_prune.md).\n\n"
    "Examples:\n\n"
    "    slimkit idea-prune configs/idea_prune_world.yaml --out runs/idea\n\n"
    "    slimkit idea-prune configs/idea_prune_world.yaml --baselines --out runs/idea-cmp\n\n"
    "    slimkit idea-prune configs/idea_prune_world.yaml --baselines --out runs/idea-cmp --resume\n\n"
    "    torchrun --nproc-per-node 2 -m slimkit.cli.main idea-prune configs/idea_prune_world.yaml --out runs/idea-2p"
)


def idea_prune(
    config: Path = typer.Argument(..., help="YAML config (see configs/idea_prune_world.yaml)."),
    baselines: bool = typer.Option(
        False, "--baselines", help="Also run the from-scratch and naive pipelines on the same budget."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default: the config's `out`)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Train only; skip perplexity, factoid and speed."),
) -> None:
    import os

    from slimkit.pipelines.idea_prune import comparison_markdown, load_idea_config, run_idea_prune

    cfg = load_idea_config(config, out=out)
    comparison = run_idea_prune(cfg, baselines=baselines, resume=resume, evaluate=not no_eval)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun rank 0 reports
    stdout.print(comparison_markdown(comparison))
    stdout.print(
        f"wrote {Path(cfg.out) / 'comparison.json'}; IDEA model in {Path(cfg.out) / 'idea' / 'model'}"
    )
