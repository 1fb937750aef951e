"""``slimkit.evaluate``: run a registered task or suite on a model and collect its outputs.

metrics = slimkit.evaluate(model, tok, suite="kick")                 # {task: {metric: value, "n": n}}
run = run_suite(model, tok, "mc", data="mc.jsonl", limit=50)         # metrics + per-example outputs
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.config import Config
from slimkit.evaluate.tasks import TASKS, EvalContext, Judge, TaskConfig, TaskOutput, task_config

Metrics = dict[str, dict[str, Any]]


@dataclass
class SuiteRun:
    """What a run produced: the config used, every task's output, the tasks skipped (with why), and
    the config each task ran with (its prompting resolved: chat template applied, BOS, headline)."""

    config: Config
    outputs: dict[str, TaskOutput]
    skipped: dict[str, str] = field(default_factory=dict)
    task_configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def metrics(self) -> Metrics:
        """``{task: {metric: value, "n": count}}`` — what the results JSON stores."""
        return {name: out.metrics for name, out in self.outputs.items()}

    @property
    def examples(self) -> dict[str, list[dict[str, Any]]]:
        """Per-record outputs of every task that keeps them."""
        return {name: out.examples for name, out in self.outputs.items() if out.examples}


def run_suite(
    model: nn.Module,
    tokenizer: Any,
    suite: str | Config = "ppl",
    data: Any = None,
    *,
    judge: Judge | None = None,
    toxicity_scorer: Any = None,
    **options: Any,
) -> SuiteRun:
    """Run one registered task or suite (see :func:`evaluate`) and keep per-example outputs."""
    cfg = task_config(suite, data, **options)
    if isinstance(cfg, TaskConfig) and cfg.data is None and isinstance(suite, str):
        # a single world task with no data reads the built-in world's file for it
        from slimkit.models.default import default_world_data

        default = default_world_data(suite)
        if default is not None:
            from slimkit.evaluate.kick import dataset_task_options

            shipped = dataset_task_options(str(Path(default).parent)).get(suite, {})
            # the world's own settings (answer marker) unless the caller chose otherwise
            cfg = task_config(suite, default, **{**shipped, **options})
    ctx = EvalContext(judge=judge, toxicity_scorer=toxicity_scorer)
    outputs = TASKS.lookup(cfg)(model, tokenizer, cfg, ctx)
    return SuiteRun(cfg, outputs, ctx.skipped, ctx.task_configs)


def evaluate(
    model: nn.Module,
    tokenizer: Any,
    suite: str | Config = "ppl",
    data: Any = None,
    *,
    judge: Judge | None = None,
    toxicity_scorer: Any = None,
    **options: Any,
) -> Metrics:
    """Run one evaluation task or suite on ``model``.

    Args:
        model, tokenizer: a causal LM and its tokenizer (any model; nothing is compressed here).
        suite: a registered name (``"ppl"``, ``"factoid"``, ``"mc"``, ``"retrieval"``, ``"twohop"``,
            ``"summarization"``, ``"instruct"``, ``"kick"``) or a task config.
        data: the task's data (a text source for ``ppl``, a JSONL path or records for a task, reader
            spec(s) for ``kick``); fills the config's ``data`` field. A world task given no data reads
            the built-in world's file.
        judge: a callable judge for ``instruct`` (``judge(instruction, response, reference) -> float``).
        toxicity_scorer: ``text -> probability`` for the ``trust`` suite's toxicity dimension.
        **options: other config fields, e.g. ``seqlen=128``, ``limit=50``, ``tasks=("mc",)``.

    Returns:
        ``{task: {metric: value, ..., "n": count}}``, ready for :func:`slimkit.evaluate.make_results`.
    """
    return run_suite(
        model, tokenizer, suite, data, judge=judge, toxicity_scorer=toxicity_scorer, **options
    ).metrics
