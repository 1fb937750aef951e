"""The LLM-KICK suite: knowledge-intensive tasks that show what perplexity hides.

Jaiswal et al., "Compressing LLMs: The Truth is Rarely Pure and Never Simple" (ICLR'24, arXiv
2310.01382) evaluate compressed models on closed-book factoid QA, multiple-choice QA, in-context
retrieval QA, in-context summarization and instruction following, and find that knowledge-intensive
tasks degrade at sparsities where perplexity barely moves. ``suite="kick"`` runs every one of those
tasks that its data provides (plus two-hop compositional QA on the built-in world):

    slimkit.evaluate(model, tok, suite="kick")                               # the built-in world
    slimkit.evaluate(model, tok, suite="kick", data=("mmlu:data/mmlu", "triviaqa:data/triviaqa"))

``data`` is one reader spec or several (:func:`slimkit.evaluate.readers.load_task_data`: a directory of
task JSONL files, ``freebaseqa:``, ``mmlu:``, ``triviaqa:``, ``cnndm:``, ``countries:``,
``jsonl:TASK:``); without it the built-in world's task files are used. Each task's options come, in
increasing priority, from: the task's defaults; what the reader ships for its dataset (LLM-KICK's
templates, generation lengths, headline metric and difficulty tags, e.g. containment for FreebaseQA)
or a dataset directory's ``task_options.json`` (``{task: {option: value}}``, e.g. the built-in
world's answer marker); the suite's prompting options (``num_fewshot``, ``chat_template``,
``system_prompt``, ``fewshot_data``, ``fewshot_seed``), applied to every task that takes them; and
``task_options``. A reader may ship a dev split (``"<task>:fewshot"`` records) that few-shot examples
are drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from torch import nn

from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError, DataError
from slimkit.core.progress import console
from slimkit.evaluate.prompting import check_chat_mode
from slimkit.evaluate.tasks import TASKS, EvalContext, TaskOutput, TaskSkipped

KICK_TASKS = ("factoid", "mc", "retrieval", "twohop", "summarization", "instruct")
PRIMARY_METRIC = {
    "factoid": "exact_match",
    "twohop": "exact_match",
    "mc": "accuracy",
    "retrieval": "exact_match",
    "summarization": "rougeL",
    "instruct": "score",
}
"""The one number per task that tables, difficulty curves and the knowledge-loss flag use, unless a
task's ``headline_metric`` (set by the readers per dataset) names another."""
FEWSHOT_SPLIT = ":fewshot"
"""A reader's ``"<task>:fewshot"`` records are a dev split for that task's few-shot examples."""


def headline_metric(task: str, cfg: Any = None) -> str | None:
    """The headline metric of ``task`` run with ``cfg``: its ``headline_metric``, else ``PRIMARY_METRIC``."""
    chosen = getattr(cfg, "headline_metric", None)
    return chosen if chosen is not None else PRIMARY_METRIC.get(task)


@dataclass(frozen=True)
class KickSuiteConfig(Config):
    """The ``kick`` suite.

    Attributes:
        data (str | tuple[str, ...] | None): reader spec(s); None = the built-in world's task files.
        tasks (tuple[str, ...]): which of ``KICK_TASKS`` to run; () = every one the data provides.
            Default: ().
        limit (int | None): items per task, >= 1. Default: all.
        batch_size (int | None): overrides every task's batch size, >= 1. Default: each task's own.
        judge (str | None): a local judge model directory for ``instruct``. Default: None.
        task_options (dict[str, dict]): per-task config overrides, e.g.
            ``{"retrieval": {"max_context_chars": 3072}}``. Default: {}.
        num_fewshot (int | None): shots for every task that takes them (factoid, twohop, mc,
            retrieval), >= 0. Default: None (each task's own, 0).
        fewshot_data (str | None): a reader spec whose records of each task serve as its shots.
            Default: None (a dev split the data ships, else the task's own records).
        fewshot_seed (int | None): Default: None (each task's, 1234).
        chat_template (str | None): ``auto`` / ``on`` / ``off`` for every task. Default: None
            (each task's, ``auto``).
        system_prompt (str | None): for every task. Default: None.
    """

    data: str | tuple[str, ...] | None = None
    tasks: tuple[str, ...] = ()
    limit: int | None = None
    batch_size: int | None = None
    judge: str | None = None
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_fewshot: int | None = None
    fewshot_data: str | None = None
    fewshot_seed: int | None = None
    chat_template: str | None = None
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data, list):
            object.__setattr__(self, "data", tuple(self.data))
        if isinstance(self.tasks, str):
            object.__setattr__(self, "tasks", tuple(t for t in self.tasks.split(",") if t))
        elif isinstance(self.tasks, list):
            object.__setattr__(self, "tasks", tuple(self.tasks))
        super().__post_init__()
        for name in (*self.tasks, *self.task_options):
            if name not in KICK_TASKS:
                raise ConfigError(f"unknown KICK task {name!r}; known: {', '.join(KICK_TASKS)}")
        if self.limit is not None:
            check_range("limit", self.limit, 1, None)
        if self.batch_size is not None:
            check_range("batch_size", self.batch_size, 1, None)
        if self.num_fewshot is not None:
            check_range("num_fewshot", self.num_fewshot, 0, None)
        if self.chat_template is not None:
            check_chat_mode(self.chat_template)

    def prompting(self, task_cls: type) -> dict[str, Any]:
        """The suite-level prompting options that apply to a task of config class ``task_cls``."""
        names = {f.name for f in fields(task_cls)}
        out: dict[str, Any] = {}
        for name in ("chat_template", "system_prompt", "fewshot_seed"):
            if getattr(self, name) is not None and name in names:
                out[name] = getattr(self, name)
        if self.num_fewshot is not None and getattr(task_cls, "FEWSHOT", False):
            out["num_fewshot"] = self.num_fewshot
        return out

    def specs(self) -> tuple[str, ...]:
        """The data specs to read (the built-in world's directory when none was given)."""
        if self.data is None:
            from slimkit.models.default import default_world_dir

            return (str(default_world_dir()),)
        return (self.data,) if isinstance(self.data, str) else self.data


@TASKS.register(KickSuiteConfig, name="kick")
def run_kick(
    model: nn.Module, tokenizer: Any, cfg: KickSuiteConfig, ctx: EvalContext
) -> dict[str, TaskOutput]:
    """Run every requested KICK task on its records; a task that cannot run is noted in ``ctx.skipped``."""
    from slimkit.evaluate.readers import load_task_data

    available: dict[str, list[dict[str, Any]]] = {}
    dev: dict[str, list[dict[str, Any]]] = {}
    origin: dict[str, str] = {}
    shipped: dict[str, dict[str, Any]] = {}
    for spec in cfg.specs():
        for task, records in load_task_data(spec).items():
            if task.endswith(FEWSHOT_SPLIT):
                dev[task[: -len(FEWSHOT_SPLIT)]] = records
                continue
            if task in available:
                raise DataError(f"two data sources give {task!r} records: {origin[task]} and {spec}")
            available[task], origin[task] = records, spec
        for task, options in dataset_task_options(spec).items():
            shipped.setdefault(task, {}).update(options)
    if cfg.fewshot_data is not None:
        given = load_task_data(cfg.fewshot_data)
        # a source with a dev split gives that; otherwise its records are the shots
        dev = {t: r for t, r in given.items() if not t.endswith(FEWSHOT_SPLIT)}
        dev |= {t.removesuffix(FEWSHOT_SPLIT): r for t, r in given.items() if t.endswith(FEWSHOT_SPLIT)}
    wanted = cfg.tasks or tuple(t for t in KICK_TASKS if t in available)
    if not wanted:
        raise DataError(
            f"{', '.join(cfg.specs())} provides none of the KICK tasks ({', '.join(KICK_TASKS)}); "
            f"found: {sorted(available) or 'nothing'}"
        )
    outputs: dict[str, TaskOutput] = {}
    for task in wanted:
        if task not in available:
            raise DataError(
                f"no {task!r} data in {', '.join(cfg.specs())}; it provides {sorted(available) or 'nothing'}"
            )
        task_cls = TASKS.config_for(task)
        options: dict[str, Any] = {
            "data": available[task],
            **shipped.get(task, {}),
            **cfg.prompting(task_cls),
            **cfg.task_options.get(task, {}),
        }
        if task in dev and options.get("num_fewshot", 0):
            options.setdefault("fewshot_data", dev[task])
        if cfg.limit is not None:
            options.setdefault("limit", cfg.limit)
        if cfg.batch_size is not None:
            options.setdefault("batch_size", cfg.batch_size)
        if cfg.judge is not None and "judge" in {f.name for f in fields(task_cls)}:
            options.setdefault("judge", cfg.judge)
        task_cfg = task_cls.from_dict(options)
        try:
            outputs |= TASKS.lookup(task_cfg)(model, tokenizer, task_cfg, ctx)
        except TaskSkipped as skip:
            ctx.skipped[task] = str(skip)
            console().print(f"[yellow]skipped[/yellow] {task}: {skip}")
    return outputs


TASK_OPTIONS_FILE = "task_options.json"


def dataset_task_options(spec: str) -> dict[str, dict[str, Any]]:
    """The task options a dataset ships: its reader's (:func:`slimkit.evaluate.readers.reader_task_options`)
    for a ``scheme:`` spec, the ``task_options.json`` of a dataset directory (``{}`` without one).

    Raises:
        DataError: the file is not a JSON object of objects.
    """
    from pathlib import Path

    from slimkit.core.io import parse_json, read_text_file
    from slimkit.evaluate.readers import reader_task_options

    path = Path(spec) / TASK_OPTIONS_FILE
    if ":" in spec.split("/")[0] and not Path(spec).exists():
        return reader_task_options(spec)
    if not path.is_file():
        return {}
    options = parse_json(read_text_file(path, max_bytes=1 << 20, error=DataError), str(path), error=DataError)
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise DataError(f"{path}: expected {{task: {{option: value}}}}, got {str(options)[:80]}")
    return options
