"""Instruction following scored by a pluggable judge (LLM-KICK's Vicuna-bench protocol, without an API).

LLM-KICK (arXiv 2310.01382) has GPT-4 rate a compressed model's answers to 80 Vicuna-bench questions
on a 1-10 scale. slimkit never calls an external service: a judge is

* any callable ``judge(instruction, response, reference) -> float | None`` (None = could not rate), or
* a local judge model (:class:`LocalJudge`, e.g. a larger instruction-tuned model on disk) prompted
  with ``JUDGE_TEMPLATE`` and read greedily: the first integer in ``[low, high]`` of its reply is the
  rating, anything else counts as unrated.

Without a judge the task raises :class:`~slimkit.evaluate.tasks.base.TaskSkipped` and the suite
reports it as skipped; a score is never invented. Metrics::

    score    = mean rating over the rated responses
    rated    = share of responses the judge could rate

Records::

    {"id": "v-1", "instruction": "Write a haiku about pruning.", "reference": "(optional)", "tags": {"category": "writing"}}
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from slimkit.core.config import check_range
from slimkit.core.errors import ConfigError
from slimkit.evaluate.generation import greedy_generate
from slimkit.evaluate.prompting import render_prompts, resolve_chat
from slimkit.evaluate.tasks.base import (
    RecordFormat,
    TaskConfig,
    TaskOutput,
    TaskSkipped,
    aggregate,
    check_template,
    load_records,
)

Judge = Callable[[str, str, "str | None"], "float | None"]
INSTRUCT_FORMAT = RecordFormat(
    "instruct",
    {"id": str, "instruction": str},
    '{"id": str, "instruction": str, "reference": str (optional), "tags": {"category": str, ...}} per line',
    optional={"reference": str},
)
JUDGE_TEMPLATE = (
    "Rate the response to the instruction on a scale of {low} to {high} for helpfulness, relevance, "
    "accuracy and level of detail. Reply with the number only.\n\n"
    "Instruction: {instruction}\n\nResponse: {response}\n\nRating:"
)
_INTEGER = re.compile(r"\d+")


@dataclass(frozen=True)
class InstructTaskConfig(TaskConfig):
    """The ``instruct`` task: respond to instructions; a judge rates each response.

    Attributes:
        prompt_template (str): must contain ``{instruction}`` and nothing else.
            Default: ``"### Instruction:\\n{instruction}\\n\\n### Response:\\n"``.
        max_new_tokens (int): response length cap, >= 1. Default: 256.
        judge (str | None): a local judge model directory (see :class:`LocalJudge`); a callable judge
            is passed to :func:`slimkit.evaluate.evaluate` as ``judge=`` instead. Default: None.
        group_by_tags (tuple[str, ...]): Default: ``("category",)``.
        batch_size (int): Default: 8.
    """

    METRICS: ClassVar[tuple[str, ...]] = ("score", "rated")

    prompt_template: str = "### Instruction:\n{instruction}\n\n### Response:\n"
    max_new_tokens: int = 256
    judge: str | None = None
    batch_size: int = 8
    group_by_tags: tuple[str, ...] = ("category",)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("max_new_tokens", self.max_new_tokens, 1, None)
        check_template(self.prompt_template, ("instruction",))


class LocalJudge:
    """A judge model on this machine: prompted with ``template``, its first in-range integer is the rating.

    Args:
        model, tokenizer: the judge (any causal LM slimkit or transformers loads).
        low, high: the rating scale. Default: 1..10 (LLM-KICK's).
        template: must contain ``{instruction}``, ``{response}``, ``{low}``, ``{high}``; may use
            ``{reference}``. Default: ``JUDGE_TEMPLATE``.
        max_new_tokens: tokens the judge may write. Default: 8.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        low: int = 1,
        high: int = 10,
        template: str = JUDGE_TEMPLATE,
        max_new_tokens: int = 8,
    ) -> None:
        if not low < high:
            raise ConfigError(f"judge scale needs low < high, got {low}..{high}")
        self.model, self.tokenizer = model, tokenizer
        self.low, self.high, self.template, self.max_new_tokens = low, high, template, max_new_tokens

    @classmethod
    def from_dir(cls, path: str, **kwargs: Any) -> LocalJudge:
        """Load the judge from a model directory (:func:`slimkit.models.load_model`)."""
        from slimkit.models.loading import load_model

        model, tokenizer = load_model(path)
        return cls(model, tokenizer, **kwargs)

    def parse(self, reply: str) -> float | None:
        """The first integer of ``reply`` inside the scale, or None."""
        for match in _INTEGER.finditer(reply):
            value = int(match.group())
            if self.low <= value <= self.high:
                return float(value)
        return None

    def rate_all(self, items: list[tuple[str, str, str | None]]) -> list[float | None]:
        """Ratings of many ``(instruction, response, reference)`` triples, batched."""
        prompts = [
            self.template.format(instruction=i, response=r, reference=ref or "", low=self.low, high=self.high)
            for i, r, ref in items
        ]
        replies = greedy_generate(self.model, self.tokenizer, prompts, max_new_tokens=self.max_new_tokens)
        return [self.parse(reply) for reply in replies]

    def __call__(self, instruction: str, response: str, reference: str | None = None) -> float | None:
        return self.rate_all([(instruction, response, reference)])[0]


def evaluate_instruct(
    model: nn.Module, tokenizer: Any, cfg: InstructTaskConfig, judge: Judge | None = None
) -> TaskOutput:
    """Generate a response to every instruction and have ``judge`` (or ``cfg.judge``) rate it.

    Raises:
        TaskSkipped: no judge was given.
    """
    if judge is None and cfg.judge is None:
        raise TaskSkipped(
            "instruct needs a judge (a callable judge=..., or a local judge model: --judge MODEL_DIR); "
            "skipped rather than scored without one"
        )
    records = load_records(cfg, "instruct", INSTRUCT_FORMAT)
    prompts = render_prompts(
        tokenizer,
        records,
        lambda r: cfg.prompt_template.format(instruction=r["instruction"]),
        lambda r: r.get("reference") or "",
        chat=resolve_chat(tokenizer, cfg.chat_template),
        system_prompt=cfg.system_prompt,
    )
    responses = greedy_generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        stop_at_newline=False,
    )
    items = [
        (r["instruction"], s.strip(), r.get("reference")) for r, s in zip(records, responses, strict=True)
    ]
    if judge is None:
        ratings = LocalJudge.from_dir(cfg.judge).rate_all(items)  # type: ignore[arg-type]
    elif isinstance(judge, LocalJudge):
        ratings = judge.rate_all(items)
    else:
        ratings = [judge(*item) for item in items]

    rated = [i for i, value in enumerate(ratings) if value is not None]
    rated_records = [records[i] for i in rated]
    metrics = aggregate(rated_records, {"score": [float(ratings[i]) for i in rated]}, cfg.group_by_tags)
    # n counts the rated responses (what "score" averages); "rated" is their share of all responses
    metrics["rated"] = len(rated) / len(records)
    metrics["n_responses"] = len(records)
    examples = [
        {
            "id": r["id"],
            "instruction": r["instruction"],
            "response": s,
            "rating": value,
            "tags": r.get("tags", {}),
        }
        for r, s, value in zip(records, responses, ratings, strict=True)
    ]
    return TaskOutput(metrics, examples)
