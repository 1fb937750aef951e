"""Closed-book factoid QA and two-hop compositional QA: greedy answers scored by exact match and containment.

LLM-KICK ("Compressing LLMs: The Truth is Rarely Pure and Never Simple", Jaiswal et al., ICLR'24,
arXiv 2310.01382) measures the knowledge that perplexity hides with closed-book QA. A question is
formatted into ``prompt_template`` (default ``"Question: {question}\\nAnswer:"``), the model continues
greedily for at most ``max_new_tokens`` tokens, the first line is kept, and it is compared with every
gold alias (:mod:`slimkit.evaluate.metrics`)::

    exact_match = max_a [norm(pred) == norm(a)]
    contains    = max_a [norm(a) in norm(pred)]        (LLM-KICK's FreebaseQA "exact match")
    lenient     = max_a [norm(a) in norm(pred) or norm(pred) in norm(a)]   (its TriviaQA EM)

Records (``factoid.jsonl``; FreebaseQA and TriviaQA read into the same shape)::

    {"id": "q0001", "question": "Where was Ada Vell born?", "answers": ["Lorin"], "tags": {"popularity_half": "rare"}}

The two-hop task asks questions whose answer composes two facts ("In which country was Ada Vell
born?" = in_country(born_in(Ada Vell))). Its answers are chains of thought ending in ``"So the answer
is X."``; only the text after that marker is scored, so a chain that never concludes scores zero.

``chance`` is what a guesser that knows the answer distribution scores: within each value of
``baseline_tag`` (two-hop: the composition, e.g. ``born_in.in_country``; factoid: the relation) it
always answers that group's most frequent gold answer, counted over the evaluated records themselves
(a string's count is the number of records with it among their normalised aliases; ties go to the
alphabetically first). A record without the tag falls in one group of its own kind::

    chance = mean_r [norm(majority(group(r))) in norm(aliases(r))]

It is reported overall and per tag like the other metrics, so two-hop accuracy is read against the
majority-per-composition baseline, not against zero. Prompts (few-shot, chat template, system prompt)
are rendered by :mod:`slimkit.evaluate.prompting`; a shot's answer is its ``chain`` when the record
has one, else ``"{answer_marker} {answer}."`` (or the bare first alias without a marker).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from slimkit.core.config import check_range
from slimkit.core.errors import ConfigError
from slimkit.evaluate.generation import greedy_generate
from slimkit.evaluate.metrics import (
    after_marker,
    contains_match,
    exact_match,
    lenient_match,
    normalize_answer,
)
from slimkit.evaluate.prompting import encode, render_prompts, resolve_chat
from slimkit.evaluate.tasks.base import (
    Record,
    RecordFormat,
    TaskConfig,
    TaskOutput,
    aggregate,
    check_template,
    fewshot_pool,
    load_all_records,
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
        max_new_tokens_ratio (float | None): allow at most this many new tokens per prompt token,
            capped by ``max_new_tokens`` (LLM-KICK's FreebaseQA: 2.0, its ``max_length`` being 3x
            the prompt), > 0. Default: None (``max_new_tokens`` for every prompt).
        stop_at_newline (bool): keep only the first line of the answer (leading whitespace does
            not end it). Default: True.
        answer_marker (str | None): score only the text after the last occurrence of this marker
            (chain-of-thought answers); None scores the whole first line. Default: None.
        baseline_tag (str | None): the tag within whose values ``chance`` guesses the majority
            answer. Default: ``"relation"`` (two-hop: ``"composition"``).
        group_by_tags (tuple[str, ...]): Default: ``("popularity_half",)``.
        (and ``data``, ``limit``, ``batch_size`` and the prompt options of :class:`TaskConfig`)
    """

    METRICS: ClassVar[tuple[str, ...]] = ("exact_match", "contains", "lenient", "chance")
    FEWSHOT: ClassVar[bool] = True

    prompt_template: str = "Question: {question}\nAnswer:"
    max_new_tokens: int = 16
    max_new_tokens_ratio: float | None = None
    stop_at_newline: bool = True
    answer_marker: str | None = None
    baseline_tag: str | None = "relation"
    batch_size: int = 32
    group_by_tags: tuple[str, ...] = ("popularity_half",)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("max_new_tokens", self.max_new_tokens, 1, None)
        if self.max_new_tokens_ratio is not None:
            check_range("max_new_tokens_ratio", self.max_new_tokens_ratio, 0.0, None, lo_inclusive=False)
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
    baseline_tag: str | None = "composition"
    group_by_tags: tuple[str, ...] = ("composition", "popularity_half")


def read_factoid(cfg: FactoidTaskConfig, task: str = "factoid") -> list[Record]:
    """The checked records of ``cfg.data`` (cut to ``cfg.limit``)."""
    records = load_all_records(cfg, task, FACTOID_FORMAT)
    return records[: cfg.limit] if cfg.limit is not None else records


def majority_baseline(records: Sequence[Record], tag: str | None) -> list[float]:
    """Per record, 1.0 when its group's most frequent answer is among its aliases (module docstring)."""
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(records):
        key = r.get("tags", {}).get(tag) if tag is not None else None
        groups.setdefault(key, []).append(i)
    aliases = [{normalize_answer(a) for a in r["answers"]} - {""} for r in records]
    hits = [0.0] * len(records)
    for members in groups.values():
        counts = Counter(a for i in members for a in aliases[i])
        if not counts:
            continue
        top = max(counts.values())
        guess = min(a for a, c in counts.items() if c == top)
        for i in members:
            hits[i] = float(guess in aliases[i])
    return hits


def shot_answer(record: Record, marker: str | None) -> str:
    """What a solved example answers: its chain of thought, else the marker and the first alias."""
    if isinstance(record.get("chain"), str) and record["chain"]:
        return record["chain"]
    return f"{marker} {record['answers'][0]}." if marker else record["answers"][0]


def evaluate_factoid(
    model: nn.Module, tokenizer: Any, cfg: FactoidTaskConfig, *, task: str = "factoid"
) -> TaskOutput:
    """Score ``model`` on closed-book QA (see the module docstring).

    Returns:
        :class:`TaskOutput` with ``{"exact_match", "contains", "lenient", "chance", "n"}`` plus ``metric@tag=value`` for the
        tags in ``cfg.group_by_tags``, and one example per record (id, question, prediction, answer,
        answers, exact_match, contains).
    """
    every = load_all_records(cfg, task, FACTOID_FORMAT)
    records = every[: cfg.limit] if cfg.limit is not None else every
    prompts = render_prompts(
        tokenizer,
        records,
        lambda r: cfg.prompt_template.format(question=r["question"]),
        lambda r: shot_answer(r, cfg.answer_marker),
        num_fewshot=cfg.num_fewshot,
        pool=fewshot_pool(cfg, task, FACTOID_FORMAT, every),
        seed=cfg.fewshot_seed,
        chat=resolve_chat(tokenizer, cfg.chat_template),
        system_prompt=cfg.system_prompt,
    )
    limits: int | list[int] = cfg.max_new_tokens
    if cfg.max_new_tokens_ratio is not None:
        limits = [
            max(1, min(cfg.max_new_tokens, round(cfg.max_new_tokens_ratio * len(encode(tokenizer, p)))))
            for p in prompts
        ]
    generations = greedy_generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=limits,
        batch_size=cfg.batch_size,
        stop_at_newline=cfg.stop_at_newline,
    )
    answers = [after_marker(g, cfg.answer_marker) for g in generations]
    em = [float(exact_match(a, r["answers"])) for a, r in zip(answers, records, strict=True)]
    contains = [float(contains_match(a, r["answers"])) for a, r in zip(answers, records, strict=True)]
    lenient = [float(lenient_match(a, r["answers"])) for a, r in zip(answers, records, strict=True)]
    chance = majority_baseline(records, cfg.baseline_tag)
    scores = {"exact_match": em, "contains": contains, "lenient": lenient, "chance": chance}
    metrics = aggregate(records, scores, cfg.group_by_tags)
    examples = [
        {
            "id": r["id"],
            "question": r["question"],
            "prompt": p,
            "generation": g,
            "prediction": a,
            "answers": list(r["answers"]),
            "exact_match": e,
            "contains": c,
            "tags": r.get("tags", {}),
        }
        for r, p, g, a, e, c in zip(records, prompts, generations, answers, em, contains, strict=True)
    ]
    return TaskOutput(metrics, examples)
