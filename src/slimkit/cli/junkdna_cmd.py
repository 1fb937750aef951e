"""``slimkit junkdna [MODEL]``: sparsity x difficulty curves and fine-tune-after-pruning recovery."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.common import OVERWRITE, stdout
from slimkit.cli.study_cmd import _floats, _names

HELP = (
    "Junk DNA analysis (Yin, Jaiswal et al., ICML'24): prune with each method at each sparsity, evaluate the "
    "KICK tasks split by difficulty, and report accuracy normalised to the dense model, one PNG per method "
    "(a panel per difficulty axis), the sparsity at which each difficulty level first drops below 90% / 50% "
    "of dense, and fine-tuning after pruning with pruned weights frozen at zero or allowed to regrow.\n\n"
    "With no MODEL the built-in world's default model and tasks are used; difficulty axes there: popular vs "
    "rare facts, 2/4/8 options, short vs long context, one-hop vs two-hop.\n\n"
    "Examples:\n\n"
    "    slimkit junkdna --out junkdna\n\n"
    "    slimkit junkdna --methods magnitude --sparsities 0,0.2,0.4,0.6 --limit 100 --finetune-steps 0 --out quick\n\n"
    "    slimkit junkdna ./my-model --kick-data mmlu:data/mmlu --calib c4.jsonl --out junkdna-mmlu"
)


def junkdna(
    model: str | None = typer.Argument(None, help="Model directory (default: the built-in world's model)."),
    methods: str = typer.Option("magnitude,wanda,sparsegpt", "--methods", help="Comma-separated methods."),
    sparsities: str = typer.Option(
        "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7", "--sparsities", help="Unstructured sparsities (0 = dense)."
    ),
    kick_data: list[str] | None = typer.Option(
        None, "--kick-data", help="KICK reader spec(s), repeatable (default: the world's tasks)."
    ),
    tasks: str = typer.Option("", "--tasks", help="KICK tasks (default: all the data provides)."),
    limit: int | None = typer.Option(None, "--limit", help="Items per task."),
    calib: str | None = typer.Option(
        None, "--calib", help="Calibration text source (default: world corpus)."
    ),
    nsamples: int = typer.Option(64, "--nsamples", help="Calibration sequences."),
    calib_seqlen: int = typer.Option(
        128, "--calib-seqlen", help="Calibration (and fine-tuning) sequence length."
    ),
    finetune_methods: str = typer.Option(
        "magnitude", "--finetune-methods", help="Methods fine-tuned after pruning."
    ),
    finetune_sparsities: str = typer.Option("0.5", "--finetune-sparsities", help="Sparsities fine-tuned."),
    finetune_steps: int = typer.Option(150, "--finetune-steps", help="Steps per fine-tuning run (0 = none)."),
    finetune_lr: float = typer.Option(3e-4, "--finetune-lr", help="Fine-tuning learning rate."),
    finetune_data: str | None = typer.Option(
        None, "--finetune-data", help="Fine-tuning text source (default: world:corpus)."
    ),
    num_fewshot: int | None = typer.Option(
        None, "--num-fewshot", help="Solved examples before each KICK item (seeded; never the item itself)."
    ),
    chat_template: str | None = typer.Option(
        None, "--chat-template", help="auto | on | off: the tokenizer's chat template for KICK prompts."
    ),
    system_prompt: str | None = typer.Option(
        None, "--system-prompt", help="A system message before every prompt."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Calibration and fine-tuning seed."),
    out: Path = typer.Option(
        Path("slimkit-junkdna"), "--out", help="Output directory (replaced atomically when slimkit wrote it)."
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    from slimkit.pipelines.junkdna import JunkDNAConfig, run_junkdna

    cfg = JunkDNAConfig(
        model=None if model in (None, "default") else model,
        methods=_names(methods),
        sparsities=_floats(sparsities, "--sparsities"),
        data=tuple(kick_data) if kick_data else None,
        tasks=_names(tasks),
        limit=limit,
        num_fewshot=num_fewshot,
        chat_template=chat_template,
        system_prompt=system_prompt,
        calib=calib,
        nsamples=nsamples,
        calib_seqlen=calib_seqlen,
        finetune_methods=_names(finetune_methods),
        finetune_sparsities=_floats(finetune_sparsities, "--finetune-sparsities"),
        finetune_steps=finetune_steps,
        finetune_lr=finetune_lr,
        finetune_data=finetune_data,
        device=device,
        seed=seed,
    )
    results = run_junkdna(cfg, out, overwrite=overwrite)
    from slimkit.evaluate.report import junkdna_threshold_table

    stdout.print("\n".join(junkdna_threshold_table(results)))
    stdout.print(f"wrote {out / 'results.json'}, {out / 'report.md'} and plots")
