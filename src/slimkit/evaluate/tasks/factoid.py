"""Closed-book factoid QA and two-hop compositional QA: greedy answers scored by exact match and containment.

LLM-KICK ("Compressing LLMs: The Truth is Rarely Pure and Never Simple", Jaiswal et al., ICLR'24,
arXiv 2310.01382) measures the knowledge that perplexity hides with closed-book QA. A question is
formatted into ``prompt_template`` (default ``"Question: {question}\\nAnswer:"``), the model continues
greedily for at most ``max_new_tokens`` tokens, the first line is kept, and it is compared with every
gold alias (:mod:`slimkit.evaluate.metrics`)::

    exact_match = max_a [norm(pred) == norm(a)]
    contains    = max_a [norm(a) in norm(pred)]        (LLM-KICK's lenient exact match)

Records (``factoid.jsonl``; FreebaseQA and TriviaQA read into the same shape)::

    {"id": "q0001", "question": "Where was Ada Vell born?", "answers": ["Lorin"], "tags": {"popularity_half": "rare"}}

The two-hop task asks questions whose answer composes two facts ("In which country was Ada Vell
born?" = in_country(born_in(Ada Vell))). Its answers are chains of thought ending in ``"So the answer
is X."``; only the text after that marker is scored, so a chain that never concludes scores zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from slimkit.core.config import check_range
from slimkit.core.errors import ConfigError
from slimkit.evaluate.generation import greedy_generate
from slimkit.evaluate.metrics import after_marker, contains_match, exact_match
from slimkit.evaluate.tasks.base import (
    Record,
    RecordFormat,
    TaskConfig,
    TaskOutput,
    aggregate,
    check_template,
    load_records,
)

FACTOID_FORMAT = RecordFormat(
    "factoid",
    {"id": str, "question": str, "answers": list},
    '{"id": str, "question": str, "answers": [str, ...], "tags": {name: str|int}} per line',
)


@dataclass(frozen=True)
class FactoidTaskConfig(TaskConfig):
    """The ``factoid`` task: closed-book QA scored by exact match and containment.

    Attributes:
        prompt_template (str): must contain ``{question}`` and no other field.
            Default: ``"Question: {question}\\nAnswer:"``.
        max_new_tokens (int): answer length cap in tokens, >= 1. Default: 16.
        answer_marker (str | None): score only the text after the last occurrence of this marker
            (chain-of-thought answers); None scores the whole first line. Default: None.
        group_by_tags (tuple[str, ...]): Default: ``("popularity_half",)``.
        (and ``data``, ``limit``, ``batch_size`` from :class:`TaskConfig`)
    """

    prompt_template: str = "Question: {question}\nAnswer:"
    max_new_tokens: int = 16
    answer_marker: str | None = None
    batch_size: int = 32
    group_by_tags: tuple[str, ...] = ("popularity_half",)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("max_new_tokens", self.max_new_tokens, 1, None)
        check_template(self.prompt_template, ("question",))
        if self.answer_marker is not None and not self.answer_marker.strip():
            raise ConfigError("answer_marker must be None or a non-blank string")


@dataclass(frozen=True)
class TwoHopTaskConfig(FactoidTaskConfig):
    """The ``twohop`` task: compositional questions answered with a chain of thought.

    Same options as :class:`FactoidTaskConfig`; the defaults give room for the chain (``max_new_tokens``
    48), score the text after ``answer_marker="So the answer is"``, and split by the composition and by
    the popularity of the first fact.
    """

    max_new_tokens: int = 48
    answer_marker: str | None = "So the answer is"
    group_by_tags: tuple[str, ...] = ("composition", "popularity_half")


def read_factoid(cfg: FactoidTaskConfig, task: str = "factoid") -> list[Record]:
    """The checked records of ``cfg.data`` (cut to ``cfg.limit``)."""
    return load_records(cfg, task, FACTOID_FORMAT)


def evaluate_factoid(
    model: nn.Module, tokenizer: Any, cfg: FactoidTaskConfig, *, task: str = "factoid"
) -> TaskOutput:
    """Score ``model`` on closed-book QA (see the module docstring).

    Returns:
        :class:`TaskOutput` with ``{"exact_match", "contains", "n"}`` plus ``metric@tag=value`` for the
        tags in ``cfg.group_by_tags``, and one example per record (id, question, prediction, answer,
        answers, exact_match, contains).
    """
    records = read_factoid(cfg, task)
    prompts = [cfg.prompt_template.format(question=r["question"]) for r in records]
    generations = greedy_generate(
        model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size
    )
    answers = [after_marker(g, cfg.answer_marker) for g in generations]
    em = [float(exact_match(a, r["answers"])) for a, r in zip(answers, records, strict=True)]
    contains = [float(contains_match(a, r["answers"])) for a, r in zip(answers, records, strict=True)]
    metrics = aggregate(records, {"exact_match": em, "contains": contains}, cfg.group_by_tags)
    examples = [
        {
            "id": r["id"],
            "question": r["question"],
            "generation": g,
            "prediction": a,
            "answers": list(r["answers"]),
            "exact_match": e,
            "contains": c,
            "tags": r.get("tags", {}),
        }
        for r, g, a, e, c in zip(records, generations, answers, em, contains, strict=True)
    ]
    return TaskOutput(metrics, examples)
