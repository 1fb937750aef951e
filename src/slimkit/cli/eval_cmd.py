"""``slimkit eval`` and ``slimkit generate``."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.common import metrics_table, resolve_model, stdout

HELP = (
    "Evaluate a model directory (or `default`, the built-in world's model) and write results JSON.\n\n"
    "Suites: `ppl` (perplexity, non-overlapping windows), `factoid` (closed-book QA, exact match).\n"
    "Without --data the built-in world's held-out text / questions are used.\n\n"
    "Examples:\n\n"
    "    slimkit eval default --suite factoid --out factoid.json\n\n"
    "    slimkit eval ./my-model --suite ppl --data wiki.test.txt --seqlen 2048 --out ppl.json"
)

GENERATE_HELP = (
    "Greedy generation from a prompt.\n\n"
    "Examples:\n\n"
    '    slimkit generate default --prompt "Question: Where was Mara Tolvin born?\\nAnswer:"'
)


def eval_model(
    model: str = typer.Argument(..., help="Model directory, or `default`."),
    suite: str = typer.Option("ppl", "--suite", help="Evaluation suite: ppl | factoid."),
    data: str | None = typer.Option(None, "--data", help="Text source (ppl) or task JSONL (factoid)."),
    seqlen: int | None = typer.Option(None, "--seqlen", help="Perplexity window length."),
    limit: int | None = typer.Option(None, "--limit", help="Evaluate at most this many windows / questions."),
    batch_size: int = typer.Option(16, "--batch-size", help="Batch size."),
    seed: int = typer.Option(0, "--seed", help="Recorded in provenance (evaluation is deterministic)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    dtype: str | None = typer.Option(
        None, "--dtype", help="float32 | bfloat16 | float16 (default: as saved)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Results JSON to write."),
) -> None:
    from slimkit.core.io import write_json
    from slimkit.evaluate import evaluate, make_results, validate_results

    m, tok, name = resolve_model(model, device=device, dtype=dtype)
    if data is None and model == "default":
        from slimkit.models.default import default_world_data

        data = default_world_data(suite)
    options = {"data": data, "limit": limit, "batch_size": batch_size}
    if seqlen is not None:
        options["seqlen"] = seqlen
    metrics = evaluate(m, tok, suite=suite, **options)
    results = make_results(name, metrics, config={"suite": suite, **options}, seed=seed)
    validate_results(results)
    stdout.print(metrics_table(metrics, title=f"{name} — {suite}"))
    if out is not None:
        write_json(out, results)
        stdout.print(f"wrote {out}")


def generate(
    model: str = typer.Argument(..., help="Model directory, or `default`."),
    prompt: list[str] = typer.Option(
        ..., "--prompt", help="Prompt text (repeat for a batch); \\n is a newline."
    ),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Tokens to generate."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    dtype: str | None = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16."),
) -> None:
    from slimkit.evaluate import greedy_generate

    m, tok, _ = resolve_model(model, device=device, dtype=dtype)
    prompts = [p.replace("\\n", "\n") for p in prompt]
    outputs = greedy_generate(m, tok, prompts, max_new_tokens=max_new_tokens, stop_at_newline=False)
    for p, o in zip(prompts, outputs, strict=True):
        stdout.print(f"[bold]{p}[/bold]{o}")
