"""``slimkit eval`` and ``slimkit generate``."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.common import (
    REAL_TEXT_CALIB,
    REAL_TEXT_EVAL,
    derives_from_world_model,
    metrics_table,
    resolve_model,
    stdout,
)
from slimkit.core.errors import ConfigError

HELP = (
    "Evaluate a model directory (or `default`, the built-in world's model) and write results JSON.\n\n"
    "Suites: `ppl` (perplexity, non-overlapping windows); `kick` (the LLM-KICK knowledge suite: factoid, "
    "mc, retrieval, twohop, summarization, instruct — every task its --data provides); or one task by name "
    "(`factoid`, `mc`, `retrieval`, `twohop`, `summarization`, `instruct`); `trust` (the eight DecodingTrust "
    "dimensions, 0-100 each: built-in probes, or a DecodingTrust-format --data DIR; docs/trust.md); `lm-eval` (any lm-evaluation-harness "
    "task, local YAMLs via --include-path).\n\n"
    "--data: a text source (ppl), a task JSONL (one task), or reader specs for kick (repeatable): a "
    "directory of task JSONL files, `freebaseqa:FILE`, `mmlu:DIR`, `triviaqa:FILE`, `cnndm:FILE`, "
    "`jsonl:TASK:FILE`, `countries:` (real questions from the countryinfo package). Without --data the built-in world is used.\n\n"
    "Prompting (kick, its tasks, lm-eval): --chat-template auto|on|off (auto: the tokenizer's template when it has one), "
    "--num-fewshot K (seeded shots from a dev split the data ships, --fewshot-file, or the task's own records; never the item "
    "itself), --system-prompt TEXT. Everything used is recorded in the results' provenance.\n\n"
    "Examples:\n\n"
    "    slimkit eval default --suite kick --out kick.json\n\n"
    "    slimkit eval smollm2-135m --suite kick --data countries: --chat-template on --limit 200 --out real.json\n\n"
    "    slimkit eval smollm2-135m --suite kick --data countries: --chat-template off --num-fewshot 2 --out real.json\n\n"
    "    slimkit eval ./pruned --suite kick --tasks factoid,mc --limit 100 --save-examples ex.json --out r.json\n\n"
    "    slimkit eval ./pruned --suite kick --data mmlu:data/mmlu --data triviaqa:data/triviaqa --out r.json\n\n"
    "    slimkit eval smollm2-135m --suite trust --out trust.json\n\n"
    "    slimkit eval ./pruned --suite trust --data dt_data/ --tasks stereotype,fairness --out trust.json\n\n"
    "    slimkit eval ./my-model --suite ppl --data wiki.test.txt --seqlen 2048 --out ppl.json\n\n"
    "    slimkit eval ./pruned --suite ppl --data notes.txt --answers notes.answers.jsonl --out ppl.json  "
    "(answer-token perplexity too)\n\n"
    "    slimkit eval ./pruned --suite lm-eval --tasks my_task --include-path my_tasks/ --allow-task-code --out r.json  (extra `eval`)"
)

GENERATE_HELP = (
    "Greedy generation from a prompt.\n\n"
    "Examples:\n\n"
    '    slimkit generate default --prompt "Question: Where was Mara Tolvin born?\\nAnswer:"\n\n'
    '    slimkit generate default --prompt "Mara Tolvin was born in" --ffn-skip 0.25 --max-new-tokens 24\n\n'
    "--ffn-skip calibrates FFN-SkipLLM's τ for that skip ratio first (docs/ffn_skip.md); a model saved with "
    "`slimkit compress --method ffn-skip` skips with its recorded τ."
)


def eval_model(
    model: str = typer.Argument(..., help="Model directory, or `default`."),
    suite: str = typer.Option("ppl", "--suite", help="ppl | kick | a task name (factoid, mc, ...)."),
    data: list[str] | None = typer.Option(
        None,
        "--data",
        help="Text source (ppl; default: the world's held-out text for `default` and models made from it, python-docs:eval for any other "
        "model), task JSONL (one task) or reader spec(s) (kick; repeatable).",
    ),
    tasks: str | None = typer.Option(
        None,
        "--tasks",
        help="kick: KICK tasks to run; trust: dimensions; lm-eval: lm-eval task names (comma-separated).",
    ),
    answer_mode: str | None = typer.Option(
        None,
        "--answer-mode",
        help="trust: loglik (pick the likeliest option, default) | generate (greedy text, options matched as phrases).",
    ),
    toxicity_scorer: str | None = typer.Option(
        None,
        "--toxicity-scorer",
        help="trust: MODULE:FUNCTION, a callable text -> toxicity probability (imported; runs your code).",
    ),
    include_path: str | None = typer.Option(
        None,
        "--include-path",
        help="lm-eval: a directory of local lm-eval task YAMLs (they can run Python: needs --allow-task-code).",
    ),
    allow_task_code: bool = typer.Option(
        False,
        "--allow-task-code",
        help="lm-eval: run the Python that --include-path's task files name (`!function`). Read them first.",
    ),
    seqlen: int | None = typer.Option(None, "--seqlen", help="Perplexity window length."),
    answers: Path | None = typer.Option(
        None,
        "--answers",
        help='ppl: a JSONL of answer spans ({"start", "end"} character offsets) for answer-token '
        "perplexity (default: the world's, or <stem>.answers.jsonl beside a <stem>.txt --data).",
    ),
    limit: int | None = typer.Option(
        None, "--limit", help="Evaluate at most this many windows / items per task."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Batch size (default: each task's own)."
    ),
    judge: str | None = typer.Option(None, "--judge", help="instruct: a local judge model directory."),
    num_fewshot: int | None = typer.Option(
        None,
        "--num-fewshot",
        help="Solved examples before each item (factoid, twohop, mc, retrieval; lm-eval).",
    ),
    fewshot_file: str | None = typer.Option(
        None,
        "--fewshot-file",
        help="Where shots come from: a task JSONL (one task) or a reader spec (kick). Default: the data's dev split, else its own records.",
    ),
    fewshot_seed: int | None = typer.Option(None, "--fewshot-seed", help="Seed of the shots (default 1234)."),
    chat_template: str | None = typer.Option(
        None,
        "--chat-template",
        help="auto | on | off: render prompts with the tokenizer's chat template (auto: when it has one; lm-eval: default off).",
    ),
    system_prompt: str | None = typer.Option(
        None, "--system-prompt", help="A system message before every prompt."
    ),
    save_examples: Path | None = typer.Option(
        None, "--save-examples", help="Write every item's prediction and scores to this JSON file."
    ),
    seed: int = typer.Option(0, "--seed", help="Recorded in provenance (evaluation is deterministic)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    dtype: str | None = typer.Option(
        None, "--dtype", help="float32 | bfloat16 | float16 (default: as saved)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Results JSON to write."),
) -> None:
    from slimkit.core.devices import resolve_device
    from slimkit.core.errors import ConfigError
    from slimkit.core.io import check_output_file, write_json
    from slimkit.evaluate import make_results, run_suite, validate_results

    resolve_device(device)
    inputs = () if model == "default" else (model,)
    for path in (out, save_examples):
        if path is not None:
            check_output_file(path, protect=inputs)

    options: dict = {"limit": limit}
    if batch_size is not None:
        options["batch_size"] = batch_size
    if seqlen is not None:
        options["seqlen"] = seqlen
    if answers is not None:
        if suite != "ppl":
            raise ConfigError("--answers (answer spans for answer-token perplexity) is for --suite ppl")
        options["answers"] = str(answers)
    if judge is not None:
        options["judge"] = judge
    if tasks is not None:
        if suite not in ("kick", "lm-eval", "trust"):
            raise ConfigError(
                "--tasks selects tasks of --suite kick, trust or lm-eval; for one task use --suite TASK"
            )
        options["tasks"] = tasks
    if include_path is not None:
        if suite != "lm-eval":
            raise ConfigError("--include-path is for --suite lm-eval")
        options["include_path"] = include_path
        options["allow_code"] = allow_task_code
    elif allow_task_code:
        raise ConfigError("--allow-task-code goes with --include-path")
    if (answer_mode is not None or toxicity_scorer is not None) and suite != "trust":
        raise ConfigError("--answer-mode and --toxicity-scorer are for --suite trust")
    if answer_mode is not None:
        options["mode"] = answer_mode
    scorer = _import_scorer(toxicity_scorer) if toxicity_scorer is not None else None
    prompting = {
        "num_fewshot": num_fewshot,
        "fewshot_seed": fewshot_seed,
        "chat_template": chat_template,
        "system_prompt": system_prompt,
        "fewshot_data": fewshot_file,
    }
    given = {k: v for k, v in prompting.items() if v is not None}
    if given:
        if suite == "ppl":
            raise ConfigError(
                "--num-fewshot, --fewshot-file, --chat-template and --system-prompt are for task suites, not ppl"
            )
        if suite == "lm-eval" and ({"fewshot_data", "fewshot_seed"} & set(given)):
            raise ConfigError(
                "--fewshot-file and --fewshot-seed are slimkit-task options; lm-eval tasks choose their own shots"
            )
        options |= given
    if data:
        if suite != "kick" and len(data) > 1:
            raise ConfigError(f"--suite {suite} reads one --data source, got {len(data)}")
        options["data"] = tuple(data) if suite == "kick" else data[0]
    elif suite == "ppl" and derives_from_world_model(model):  # the world model and what was made from it
        from slimkit.models.default import default_world_data

        options["data"] = default_world_data(suite)
    elif suite == "ppl":
        # a real model is scored on real English, not on the fictional world (docs/real_models.md)
        options["data"] = REAL_TEXT_EVAL
    # check the options before loading (or training) a model
    from slimkit.evaluate.tasks import task_config

    task_config(suite, **options)
    m, tok, name = resolve_model(model, device=device, dtype=dtype)
    run = run_suite(m, tok, suite, toxicity_scorer=scorer, **options)
    config = {
        "suite": suite,
        **_plain_config(run.config),
        "skipped": run.skipped,
        "task_configs": run.task_configs,
    }
    metrics = dict(run.metrics)
    skip = _skip_record(m)
    if skip is not None:  # a model saved with FFN-skip decoded with it: say how much it skipped
        config["ffn_skip"] = skip
        metrics["ffn_skip"] = {
            "skip_ratio": skip["skip_ratio"],
            "eligible_skip_ratio": skip["eligible_skip_ratio"],
            "n": skip["tokens"],
        }
    results = make_results(name, metrics, config=config, seed=seed)
    validate_results(results)
    stdout.print(metrics_table(metrics, title=f"{name} — {suite}"))
    for task, reason in run.skipped.items():
        stdout.print(f"skipped {task}: {reason}")
    if save_examples is not None:
        write_json(save_examples, {"model": name, "suite": suite, "examples": run.examples})
        stdout.print(f"wrote {save_examples}")
    if out is not None:
        write_json(out, results)
        stdout.print(f"wrote {out}")


def _import_scorer(spec: str):
    """``MODULE:FUNCTION`` -> the callable (ConfigError naming the spec when it is not one)."""
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f"--toxicity-scorer {spec!r} must be MODULE:FUNCTION")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"--toxicity-scorer {spec!r}: {e}") from None
    if not callable(fn):
        raise ConfigError(f"--toxicity-scorer {spec!r} is not callable")
    return fn


def _skip_record(model) -> dict | None:
    from slimkit.nn.ffn_skip import skip_stats

    return skip_stats(model)


def _plain_config(cfg) -> dict:
    # inline records (a task given a list) are summarised: provenance says where data came from
    provenance = getattr(cfg, "provenance", None)
    return provenance() if callable(provenance) else cfg.to_dict()


def generate(
    model: str = typer.Argument(..., help="Model directory, or `default`."),
    prompt: list[str] = typer.Option(
        ..., "--prompt", help="Prompt text (repeat for a batch); \\n is a newline."
    ),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Tokens to generate."),
    ffn_skip: float | None = typer.Option(
        None,
        "--ffn-skip",
        help="FFN-SkipLLM: calibrate τ for this fraction of FFN blocks skipped (on --calib prompts), then decode with it.",
    ),
    calib: str | None = typer.Option(
        None,
        "--calib",
        help="--ffn-skip calibration text (default: the world corpus, python-docs:calib for other models).",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    dtype: str | None = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16."),
) -> None:
    from slimkit.core.config import check_range
    from slimkit.evaluate import greedy_generate
    from slimkit.nn.ffn_skip import check_generation_length, get_skip_state, reset_skip_stats, skip_stats

    check_range("--max-new-tokens", max_new_tokens, 1, None)
    config = None
    if ffn_skip is not None:
        from slimkit.compress.skip import FFNSkipConfig

        config = FFNSkipConfig(target_ratio=ffn_skip)
        check_generation_length(config.warmup_tokens, max_new_tokens)
    m, tok, _ = resolve_model(model, device=device, dtype=dtype)
    if config is not None:
        from slimkit.compress import calibration_for, compress_

        if get_skip_state(m) is not None:
            raise ConfigError(f"{model} was saved with FFN-skip already; leave out --ffn-skip")
        if calib is None and not derives_from_world_model(model):
            calib = REAL_TEXT_CALIB
        ids = calibration_for(config, tok, calib, nsamples=config.prompts, seqlen=config.prompt_len, model=m)
        report = compress_(m, config, ids, progress=False)
        stdout.print(report.summary())
    state = get_skip_state(m)
    if state is not None:
        check_generation_length(state.warmup_tokens, max_new_tokens)
        reset_skip_stats(m)
    prompts = [p.replace("\\n", "\n") for p in prompt]
    outputs = greedy_generate(m, tok, prompts, max_new_tokens=max_new_tokens, stop_at_newline=False)
    for p, o in zip(prompts, outputs, strict=True):
        stdout.print(f"[bold]{p}[/bold]{o}")
    stats = skip_stats(m)
    if stats is not None:
        stdout.print(
            f"ffn-skip: τ={stats['threshold']:.6f}, skipped {stats['ffn_skipped']} FFN blocks of "
            f"{stats['layers']} x {stats['tokens']} (skip ratio {stats['skip_ratio']:.4f})"
        )
