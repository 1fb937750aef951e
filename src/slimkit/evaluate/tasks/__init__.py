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
lm-eval         lm-evaluation-harness tasks (extra eval)   as lm-eval reports them
==============  =========================================  ===========================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError
from slimkit.core.registry import Registry
from slimkit.evaluate.perplexity import PerplexityTaskConfig, run_perplexity_task
from slimkit.evaluate.tasks.base import RecordFormat, TaskConfig, TaskOutput, TaskSkipped, aggregate
from slimkit.evaluate.tasks.factoid import (
    FACTOID_FORMAT,
    FactoidTaskConfig,
    TwoHopTaskConfig,
    evaluate_factoid,
)
from slimkit.evaluate.tasks.instruct import (
    INSTRUCT_FORMAT,
    InstructTaskConfig,
    Judge,
    LocalJudge,
    evaluate_instruct,
)
from slimkit.evaluate.tasks.multiple_choice import (
    MC_FORMAT,
    MultipleChoiceTaskConfig,
    evaluate_multiple_choice,
)
from slimkit.evaluate.tasks.retrieval import RETRIEVAL_FORMAT, RetrievalTaskConfig, evaluate_retrieval
from slimkit.evaluate.tasks.summarization import (
    SUMMARIZATION_FORMAT,
    SummarizationTaskConfig,
    evaluate_summarization,
)

RECORD_FORMATS: dict[str, RecordFormat] = {
    "factoid": FACTOID_FORMAT,
    "twohop": FACTOID_FORMAT,
    "mc": MC_FORMAT,
    "retrieval": RETRIEVAL_FORMAT,
    "summarization": SUMMARIZATION_FORMAT,
    "instruct": INSTRUCT_FORMAT,
}
"""The record format each task reads: tasks check their data with it, and so do the readers."""

__all__ = [
    "RECORD_FORMATS",
    "TASKS",
    "RecordFormat",
    "EvalContext",
    "FactoidTaskConfig",
    "InstructTaskConfig",
    "Judge",
    "LmEvalTaskConfig",
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
        toxicity_scorer: ``text -> probability`` for the trust suite's toxicity dimension, if any.
        skipped: task name -> why it was skipped (filled by suites).
        task_configs: task name -> the config it ran with (inline records replaced by their count)
            and how its prompts were built (chat template applied, tokenizer BOS), for provenance.
    """

    judge: Judge | None = None
    toxicity_scorer: Callable[[str], float] | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    task_configs: dict[str, dict[str, Any]] = field(default_factory=dict)


Runner = Callable[[nn.Module, Any, Any, EvalContext], dict[str, TaskOutput]]
TASKS: Registry[Runner] = Registry("evaluation task")


@TASKS.register(PerplexityTaskConfig, name="ppl")
def _run_ppl(
    model: nn.Module, tokenizer: Any, cfg: PerplexityTaskConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    return {name: TaskOutput(metrics) for name, metrics in run_perplexity_task(model, tokenizer, cfg).items()}


def _one_task(name: str, evaluate_fn: Callable[..., TaskOutput]) -> Runner:
    """The runner of a task that needs only (model, tokenizer, config) and reports under ``name``."""

    def run(model: nn.Module, tokenizer: Any, cfg: Any, ctx: EvalContext) -> dict[str, TaskOutput]:
        record_config(ctx, name, cfg, tokenizer)
        return {name: evaluate_fn(model, tokenizer, cfg)}

    return run


def record_config(ctx: EvalContext, name: str, cfg: TaskConfig, tokenizer: Any) -> None:
    """Note in ``ctx`` what ``name`` runs with: its config, the resolved prompting, the headline metric."""
    from slimkit.evaluate.kick import headline_metric
    from slimkit.evaluate.prompting import describe, resolve_chat

    ctx.task_configs[name] = {
        **cfg.provenance(),
        "prompting": describe(tokenizer, resolve_chat(tokenizer, cfg.chat_template)),
        "headline": headline_metric(name, cfg),
    }


TASKS.register(FactoidTaskConfig, name="factoid")(_one_task("factoid", evaluate_factoid))
TASKS.register(TwoHopTaskConfig, name="twohop")(_one_task("twohop", partial(evaluate_factoid, task="twohop")))
TASKS.register(MultipleChoiceTaskConfig, name="mc")(_one_task("mc", evaluate_multiple_choice))
TASKS.register(RetrievalTaskConfig, name="retrieval")(_one_task("retrieval", evaluate_retrieval))
TASKS.register(SummarizationTaskConfig, name="summarization")(
    _one_task("summarization", evaluate_summarization)
)


@TASKS.register(InstructTaskConfig, name="instruct")
def _run_instruct(
    model: nn.Module, tokenizer: Any, cfg: InstructTaskConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    record_config(ctx, "instruct", cfg, tokenizer)
    return {"instruct": evaluate_instruct(model, tokenizer, cfg, judge=ctx.judge)}


@dataclass(frozen=True)
class LmEvalTaskConfig(Config):
    """The ``lm-eval`` suite: lm-evaluation-harness tasks run on the model through ``SlimkitLM``.

    Needs the ``eval`` extra. Attributes:
        tasks (tuple[str, ...]): lm-eval task names (a comma-separated string is accepted).
        include_path (str | None): a directory of local task YAMLs. lm-eval YAMLs run Python from
            their directory (``!function`` tags, ``process_docs``), so it needs ``allow_code``. Default: None.
        allow_code (bool): run the Python code that ``include_path``'s task files name. Default: False.
        include_defaults (bool): also index lm-eval's built-in tasks. Default: True.
        limit (int | None): documents per task. Default: all.
        num_fewshot (int | None): lm-eval's few-shot override. Default: the task's.
        batch_size (int | str): contexts per forward pass, or ``"auto"``. Default: 16.
        max_batch_size (int): where ``"auto"`` starts. Default: 64.
        chat_template (str): ``"off"`` (lm-eval's default), ``"on"``, or ``"auto"`` (when the
            tokenizer has one): lm-eval's ``apply_chat_template`` with few-shot as multi-turn.
            Default: ``"off"``.
        system_prompt (str | None): lm-eval's ``system_instruction``. Default: None.
    """

    tasks: tuple[str, ...] = ()
    include_path: str | None = None
    allow_code: bool = False
    include_defaults: bool = True
    limit: int | None = None
    num_fewshot: int | None = None
    batch_size: int | str = 16
    max_batch_size: int = 64
    chat_template: str = "off"
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            object.__setattr__(self, "tasks", tuple(t for t in self.tasks.split(",") if t))
        elif isinstance(self.tasks, list):
            object.__setattr__(self, "tasks", tuple(self.tasks))
        super().__post_init__()
        if not self.tasks:
            raise ConfigError("the lm-eval suite needs tasks (lm-eval task names, e.g. tasks='arc_easy')")
        if self.limit is not None:
            check_range("limit", self.limit, 1, None)
        if isinstance(self.batch_size, str):
            if not self.batch_size.startswith("auto"):
                raise ConfigError(f"batch_size must be an integer >= 1 or 'auto', got {self.batch_size!r}")
        else:
            check_range("batch_size", self.batch_size, 1, None)
        check_range("max_batch_size", self.max_batch_size, 1, None)
        from slimkit.evaluate.prompting import check_chat_mode

        check_chat_mode(self.chat_template)
        if self.include_path is not None:
            check_include_path(self.include_path, self.allow_code)


def check_include_path(include_path: str, allow_code: bool) -> None:
    """An lm-eval task directory may run code: refuse it unless the user said so (``--allow-task-code``).

    lm-eval's YAML loader turns ``!function module.name`` into an import of ``module.py`` from the
    task directory, so pointing at a downloaded task folder runs whatever Python it ships.

    Raises:
        ConfigError: not a directory, or ``allow_code`` is off.
    """
    path = Path(include_path)
    if not path.is_dir():
        raise ConfigError(f"include_path={include_path!r} is not a directory of lm-eval task YAMLs")
    if not allow_code:
        raise ConfigError(
            f"--include-path {include_path}: lm-eval task files can run Python from their directory "
            "(!function tags); read them, then pass --allow-task-code to run them"
        )


@TASKS.register(LmEvalTaskConfig, name="lm-eval")
def _run_lm_eval(
    model: nn.Module, tokenizer: Any, cfg: LmEvalTaskConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    from slimkit.evaluate.lm_eval import SlimkitLM, lm_eval_metrics, run_lm_eval
    from slimkit.evaluate.prompting import describe, resolve_chat

    chat = resolve_chat(tokenizer, cfg.chat_template)
    ctx.task_configs["lm-eval"] = {**cfg.to_dict(), "prompting": describe(tokenizer, chat)}
    results = run_lm_eval(
        SlimkitLM(model, tokenizer, batch_size=cfg.batch_size, max_batch_size=cfg.max_batch_size),
        cfg.tasks,
        include_path=cfg.include_path,
        allow_code=cfg.allow_code,
        include_defaults=cfg.include_defaults,
        limit=cfg.limit,
        num_fewshot=cfg.num_fewshot,
        apply_chat_template=chat,
        fewshot_as_multiturn=chat,
        system_instruction=cfg.system_prompt,
    )
    return {task: TaskOutput(metrics) for task, metrics in lm_eval_metrics(results).items()}


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
