"""What every evaluation task shares: the config fields, record loading, and per-tag aggregation.

A task is a :class:`TaskConfig` subclass (its options), a record checker, and a runner registered in
:data:`slimkit.evaluate.tasks.TASKS`. The runner scores each record and hands the per-record values to
:func:`aggregate`, which averages them overall and within every value of the tags named in
``group_by_tags`` — that split (popular vs rare facts, 2 vs 8 options, short vs long context) is what
the Junk DNA analysis reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError, DataError, SlimkitError
from slimkit.data.sources import jsonl_rows
from slimkit.evaluate.prompting import check_chat_mode

Record = dict[str, Any]
Metrics = dict[str, float | int]


class TaskSkipped(SlimkitError):
    """A task that cannot be scored as asked (e.g. instruction following without a judge).

    Suites catch it, print the reason and go on; the task is left out of the results rather than
    given an invented score.
    """


@dataclass(frozen=True)
class TaskConfig(Config):
    """Options every task has.

    Attributes:
        data (str | tuple[dict, ...] | None): a JSONL path, or the records themselves (a list is
            stored as a tuple). Required when the task runs. Default: None.
        limit (int | None): score only the first ``limit`` records, >= 1. Default: all.
        batch_size (int): prompts per forward pass / ``generate`` call, >= 1. Default: 16.
        group_by_tags (tuple[str, ...]): record tags whose values get their own scores
            (``metric@tag=value`` with ``n@tag=value``). Default: none (each task sets its own).
        num_fewshot (int): solved examples before each item, >= 0 (tasks that take them:
            factoid, twohop, mc, retrieval). Default: 0.
        fewshot_data (str | tuple[dict, ...] | None): where shots come from: a JSONL file of the
            task's records, a reader spec (``freebaseqa:dev.json``), or the records themselves.
            Default: None = a dev split the data ships, else the task's own records (never the item
            itself; :mod:`slimkit.evaluate.prompting`).
        fewshot_seed (int): seeds the shots of each item (with its id). Default: 1234 (lm-eval's).
        chat_template (str): ``"auto"`` (the tokenizer's template when it has one), ``"on"``
            (required) or ``"off"``. Default: ``"auto"``.
        system_prompt (str | None): a system message before the prompt. Default: None.
        headline_metric (str | None): the one number tables and difficulty curves use; one of the
            task's metrics. Default: None = the task's usual one
            (:data:`slimkit.evaluate.kick.PRIMARY_METRIC`); readers set LLM-KICK's per dataset.
    """

    METRICS: ClassVar[tuple[str, ...]] = ()
    """The metrics the task reports (what ``headline_metric`` may name); () = not checked."""
    FEWSHOT: ClassVar[bool] = False
    """Whether the task takes few-shot examples."""

    data: str | tuple[Record, ...] | None = None
    limit: int | None = None
    batch_size: int = 16
    group_by_tags: tuple[str, ...] = ()
    num_fewshot: int = 0
    fewshot_data: str | tuple[Record, ...] | None = None
    fewshot_seed: int = 1234
    chat_template: str = "auto"
    system_prompt: str | None = None
    headline_metric: str | None = None

    def __post_init__(self) -> None:
        for name in ("data", "fewshot_data"):
            value = getattr(self, name)
            if isinstance(value, Path):
                object.__setattr__(self, name, str(value))
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.group_by_tags, list | str):
            tags = (self.group_by_tags,) if isinstance(self.group_by_tags, str) else tuple(self.group_by_tags)
            object.__setattr__(self, "group_by_tags", tags)
        super().__post_init__()
        if not (self.data is None or isinstance(self.data, str | tuple)):
            raise ConfigError(
                f"{type(self).__name__}.data must be a JSONL path or a list of records, "
                f"got {type(self.data).__name__}"
            )
        check_range("batch_size", self.batch_size, 1, None)
        if self.limit is not None:
            check_range("limit", self.limit, 1, None)
        if not all(isinstance(t, str) and t for t in self.group_by_tags):
            raise ConfigError(f"group_by_tags must be non-empty strings, got {self.group_by_tags!r}")
        if not (self.fewshot_data is None or isinstance(self.fewshot_data, str | tuple)):
            raise ConfigError(
                f"{type(self).__name__}.fewshot_data must be a JSONL path, a reader spec or a list of "
                f"records, got {type(self.fewshot_data).__name__}"
            )
        check_range("num_fewshot", self.num_fewshot, 0, None)
        if self.num_fewshot and not self.FEWSHOT:
            raise ConfigError(f"{type(self).__name__} takes no few-shot examples (num_fewshot must be 0)")
        check_chat_mode(self.chat_template)
        if self.headline_metric is not None and self.METRICS and self.headline_metric not in self.METRICS:
            raise ConfigError(
                f"headline_metric={self.headline_metric!r} is not a metric of this task; "
                f"it reports {list(self.METRICS)}"
            )

    def provenance(self) -> dict[str, Any]:
        """The config as a JSON-safe dict for the results, with inline records replaced by their count."""
        out = self.to_dict()
        for name in ("data", "fewshot_data"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                out[name] = f"<{len(value)} records>"
        return out


@dataclass
class TaskOutput:
    """A task's metrics (``{metric: value, "n": count, ...}``) and, when asked, one dict per record."""

    metrics: Metrics
    examples: list[Record] = field(default_factory=list)


def check_template(template: str, fields: Sequence[str], *, name: str = "prompt_template") -> None:
    """ConfigError unless ``template`` uses every one of ``fields`` and nothing else."""
    try:
        template.format(**dict.fromkeys(fields, ""))
    except (KeyError, IndexError, ValueError) as e:
        allowed = ", ".join("{" + f + "}" for f in fields)
        raise ConfigError(f"{name}={template!r} may only use the fields {allowed} ({e!r})") from None
    for f in fields:
        if "{" + f + "}" not in template:
            raise ConfigError(f"{name}={template!r} must contain {{{f}}}")


_TYPE_NAMES = {str: "a string", int: "int"}


@dataclass(frozen=True)
class RecordFormat:
    """The layout of one kind of task record, checked in one place for tasks and readers alike.

    Attributes:
        kind: the format's name (``twohop`` records use the ``factoid`` format).
        required: field -> type every record must have. A ``list`` field must be a non-empty list
            of strings.
        optional: field -> type of fields that may be present (``None`` allowed).
        layout: the expected layout, quoted in every error.
        check: value checks beyond types (e.g. ``answer_index`` in range), ``check(record, where)``.

    Every record may also carry ``tags``: a flat mapping of name -> str | int (scores are grouped by
    tag values).
    """

    kind: str
    required: dict[str, type]
    layout: str
    optional: dict[str, type] = field(default_factory=dict)
    check: Callable[[Record, str], None] | None = None

    def check_record(self, record: Any, where: str) -> None:
        """DataError naming ``where``, the field and the layout unless ``record`` fits the format."""
        expected = f"expected layout: {self.layout}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}; {expected}")
        missing = [name for name in self.required if name not in record]
        if missing:
            raise DataError(f"{where}: missing field(s) {missing} (has {sorted(record)}); {expected}")
        present = {k: t for k, t in self.optional.items() if record.get(k) is not None}
        for name, kind in (self.required | present).items():
            value = record[name]
            if kind is list:
                if not (isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value)):
                    raise DataError(
                        f"{where}: field {name!r} must be a non-empty list of strings, got {value!r:.60}; {expected}"
                    )
            # bool is an int subclass, but True is no answer index
            elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise DataError(
                    f"{where}: field {name!r} must be {_TYPE_NAMES.get(kind, kind.__name__)}, "
                    f"got {type(value).__name__}; {expected}"
                )
        tags = record.get("tags", {})
        if not isinstance(tags, dict):
            raise DataError(
                f"{where}: 'tags' must be an object of name -> str|int, got {type(tags).__name__}"
            )
        for name, value in tags.items():
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise DataError(
                    f"{where}: tag {name!r} must be a string or an integer (scores are grouped by its "
                    f"value), got {type(value).__name__}"
                )
        if self.check is not None:
            self.check(record, where)

    def check_records(self, items: Sequence[tuple[str, Any]], *, task: str, source: str) -> list[Record]:
        """The records of ``(where, record)`` pairs, each checked; ids must be unique.

        Raises:
            DataError: no records, a record that does not fit, or a repeated id.
        """
        if not items:
            raise DataError(f"no {task} questions in {source}: the task is empty; expected {self.layout}")
        seen: set[str] = set()
        for where, record in items:
            self.check_record(record, where)
            if record["id"] in seen:
                raise DataError(f"{where}: id {record['id']!r} repeats; every record needs a unique id")
            seen.add(record["id"])
        return [record for _, record in items]


def load_records(cfg: TaskConfig, task: str, fmt: RecordFormat) -> list[Record]:
    """The records of ``cfg.data`` (a JSONL path or records), checked against ``fmt``, cut to ``cfg.limit``.

    Raises:
        DataError: no data, an empty task, or a record that does not fit the format (the message
            names the line or record, the field and the expected layout).
    """
    records = load_all_records(cfg, task, fmt)
    return records[: cfg.limit] if cfg.limit is not None else records


def load_all_records(cfg: TaskConfig, task: str, fmt: RecordFormat) -> list[Record]:
    """Every record of ``cfg.data``, checked (:func:`load_records` without the limit)."""
    if cfg.data is None:
        raise DataError(f"the {task} task needs data: a JSONL path or a list of records ({fmt.layout})")
    return _checked(cfg.data, task, fmt)


def _checked(data: str | Sequence[Record], task: str, fmt: RecordFormat) -> list[Record]:
    if isinstance(data, str):
        items = [(f"{data}:{lineno}", row) for lineno, row in jsonl_rows(data)]
        source = data
    else:
        source = f"{task} records"
        items = [(f"{source}[{i}]", row) for i, row in enumerate(data)]
    return fmt.check_records(items, task=task, source=source)


def fewshot_pool(cfg: TaskConfig, task: str, fmt: RecordFormat, records: list[Record]) -> list[Record]:
    """The records shots are drawn from: ``cfg.fewshot_data`` when given, else ``records``.

    ``fewshot_data`` may be a ``.jsonl`` file of the task's records, any reader spec
    (:func:`slimkit.evaluate.readers.load_task_data`; its ``task`` records are used), or records.

    Raises:
        DataError: the source has no records for ``task``, or they do not fit the format.
    """
    data = cfg.fewshot_data
    if data is None or cfg.num_fewshot == 0:
        return records
    if isinstance(data, str) and not (data.endswith(".jsonl") and Path(data).is_file()):
        from slimkit.evaluate.readers import load_task_data

        found = load_task_data(data)
        if task not in found:
            raise DataError(f"few-shot source {data} has no {task} records (it has {sorted(found)})")
        data = found[task]
    return _checked(data, task, fmt)


def aggregate(
    records: Sequence[Record], scores: dict[str, Sequence[float]], group_by_tags: Sequence[str]
) -> Metrics:
    """Mean of every per-record score overall and within each value of each grouping tag.

    Args:
        records: the scored records (their ``tags`` are read).
        scores: metric name -> one value per record.
        group_by_tags: tags to split by; records without the tag are left out of its groups.

    Returns:
        ``{metric: mean, "n": len(records)}`` plus ``{metric@tag=value: mean, n@tag=value: count}``.
    """
    metrics: Metrics = {name: _mean(values) for name, values in scores.items()}
    metrics["n"] = len(records)
    for tag in group_by_tags:
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            tags = r.get("tags", {})
            if tag in tags:
                groups.setdefault(str(tags[tag]), []).append(i)
        for value in sorted(groups, key=_natural_key):
            idx = groups[value]
            for name, values in scores.items():
                metrics[f"{name}@{tag}={value}"] = _mean([values[i] for i in idx])
            metrics[f"n@{tag}={value}"] = len(idx)
    return metrics


def _natural_key(value: str) -> tuple[int, float | str]:
    # "2" < "4" < "16" as numbers; other labels alphabetically after them
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
