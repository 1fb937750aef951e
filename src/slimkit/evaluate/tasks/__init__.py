"""The evaluation task registry: a task is a config type plus a runner, found by config type.

    TASKS.register(FactoidTaskConfig, name="factoid")(run_factoid)
    run(model, tokenizer, cfg, context) -> {task name: TaskOutput(metrics, examples)}

``slimkit.evaluate(model, tok, suite="mc", data="mc.jsonl", limit=50)`` turns the name into its config
class (``TASKS.config_for``), builds and validates the config from the keyword options, and calls the
runner registered for that type. A suite of several tasks (``kick``) is registered the same way and
returns one output per task. Nothing here names a task in an ``if``.

Tasks (each module documents its metrics and record layout):

==============  =========================================  ===========================================
name            what                                       metrics
==============  =========================================  ===========================================
ppl             perplexity, WikiText protocol              perplexity, mean_nll
factoid         closed-book QA, greedy                     exact_match, contains
twohop          compositional QA, chain of thought         exact_match, contains (after the marker)
mc              multiple choice by log-likelihood          accuracy, accuracy_norm, chance
retrieval       open-book QA over a passage                exact_match, lenient, f1
summarization   summarise a document                       rouge1, rouge2, rougeL
instruct        follow an instruction, judged              score, rated (skipped without a judge)
kick            the LLM-KICK suite: all of the above that  per task
                its data provides
==============  =========================================  ===========================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.config import Config
from slimkit.core.registry import Registry
from slimkit.evaluate.perplexity import PerplexityTaskConfig, run_perplexity_task
from slimkit.evaluate.tasks.base import TaskConfig, TaskOutput, TaskSkipped, aggregate
from slimkit.evaluate.tasks.factoid import FactoidTaskConfig, TwoHopTaskConfig, evaluate_factoid
from slimkit.evaluate.tasks.instruct import InstructTaskConfig, Judge, LocalJudge, evaluate_instruct
from slimkit.evaluate.tasks.multiple_choice import MultipleChoiceTaskConfig, evaluate_multiple_choice
from slimkit.evaluate.tasks.retrieval import RetrievalTaskConfig, evaluate_retrieval
from slimkit.evaluate.tasks.summarization import SummarizationTaskConfig, evaluate_summarization

__all__ = [
    "TASKS",
    "EvalContext",
    "FactoidTaskConfig",
    "InstructTaskConfig",
    "Judge",
    "LocalJudge",
    "MultipleChoiceTaskConfig",
    "RetrievalTaskConfig",
    "SummarizationTaskConfig",
    "TaskConfig",
    "TaskOutput",
    "TaskSkipped",
    "TwoHopTaskConfig",
    "aggregate",
    "task_config",
]


@dataclass
class EvalContext:
    """What a run needs besides the config: things that cannot be serialised, and notes it leaves.

    Attributes:
        judge: the callable judge of the ``instruct`` task, if any.
        skipped: task name -> why it was skipped (filled by suites).
    """

    judge: Judge | None = None
    skipped: dict[str, str] = field(default_factory=dict)


Runner = Callable[[nn.Module, Any, Any, EvalContext], dict[str, TaskOutput]]
TASKS: Registry[Runner] = Registry("evaluation task")


@TASKS.register(PerplexityTaskConfig, name="ppl")
def _run_ppl(
    model: nn.Module, tokenizer: Any, cfg: PerplexityTaskConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    return {name: TaskOutput(metrics) for name, metrics in run_perplexity_task(model, tokenizer, cfg).items()}


@TASKS.register(FactoidTaskConfig, name="factoid")
def _run_factoid(
    model: nn.Module, tokenizer: Any, cfg: FactoidTaskConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    return {"factoid": evaluate_factoid(model, tokenizer, cfg)}


@TASKS.register(TwoHopTaskConfig, name="twohop")
def _run_twohop(
    model: nn.Module, tokenizer: Any, cfg: TwoHopTaskConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    return {"twohop": evaluate_factoid(model, tokenizer, cfg, task="twohop")}


@TASKS.register(MultipleChoiceTaskConfig, name="mc")
def _run_mc(
    model: nn.Module, tokenizer: Any, cfg: MultipleChoiceTaskConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    return {"mc": evaluate_multiple_choice(model, tokenizer, cfg)}


@TASKS.register(RetrievalTaskConfig, name="retrieval")
def _run_retrieval(
    model: nn.Module, tokenizer: Any, cfg: RetrievalTaskConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    return {"retrieval": evaluate_retrieval(model, tokenizer, cfg)}


@TASKS.register(SummarizationTaskConfig, name="summarization")
def _run_summarization(
    model: nn.Module, tokenizer: Any, cfg: SummarizationTaskConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    return {"summarization": evaluate_summarization(model, tokenizer, cfg)}


@TASKS.register(InstructTaskConfig, name="instruct")
def _run_instruct(
    model: nn.Module, tokenizer: Any, cfg: InstructTaskConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    return {"instruct": evaluate_instruct(model, tokenizer, cfg, judge=ctx.judge)}


def task_config(task: str | Config, data: Any = None, **options: Any) -> Config:
    """The validated config for ``task`` (a registered name, or a config used as is plus overrides).

    Raises:
        RegistryError: unknown task name (the message lists the known ones).
        ConfigError: an unknown option or a bad value (named).
    """
    if data is not None:
        options["data"] = str(data) if isinstance(data, Path) else data
    if isinstance(task, Config):
        # through from_dict so an unknown option gets the same named-key error as a task name does
        return type(task).from_dict({**task.to_dict(), **options}) if options else task
    return TASKS.config_for(task).from_dict(options)
