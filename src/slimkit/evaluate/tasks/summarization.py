"""In-context summarization scored with ROUGE-1/2/L and, where records name them, key-fact recall.

LLM-KICK (arXiv 2310.01382) asks the model to summarise CNN/DailyMail stories and has GPT-4 rate the
summaries; no external API is called here, so the summaries are scored against the reference
highlights with ROUGE F-measures (``rouge-score``, stemmed; :func:`slimkit.evaluate.metrics.rouge_scores`)::

    rouge1 / rouge2 = F1 of unigram / bigram overlap;   rougeL = F1 of the longest common subsequence

Records that list the passage's ``key_facts`` (the built-in world's ``summarization.jsonl``: each
person's name, birthplace, home city, employer and birth year) are also scored by how many of them
the summary mentions (:func:`slimkit.evaluate.metrics.key_fact_recall`)::

    key_fact_recall = |{k in key_facts : norm(k) occurs in norm(summary) as whole words}| / |key_facts|

ROUGE rewards wording like the reference's; key-fact recall rewards keeping the facts however they
are worded, which is what compression damage to reading shows in.

Generation is greedy (LLM-KICK samples at T=0.7; greedy keeps the numbers reproducible) and is not
cut at the first newline. The default prompt is LLM-KICK's instruction.

Records (the CNN/DailyMail reader writes this shape; ``key_facts`` is optional, on all records or none)::

    {"id": "cnn-1", "document": "(CNN) ...", "summary": "Reference highlights ...", "tags": {"length": "small"}}
    {"id": "summarization-00000", "document": "Ther Zamrer was born in Lamkiso. ...",
     "summary": "Ther Zamrer was born in 1968 in Lamkiso, ...", "key_facts": ["Ther Zamrer", "Lamkiso", ...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from slimkit.core.config import check_range
from slimkit.core.errors import DataError
from slimkit.evaluate.generation import greedy_generate
from slimkit.evaluate.metrics import key_fact_recall, rouge_scores
from slimkit.evaluate.prompting import render_prompts, resolve_chat
from slimkit.evaluate.tasks.base import (
    RecordFormat,
    TaskConfig,
    TaskOutput,
    aggregate,
    check_template,
    load_records,
)

SUMMARIZATION_FORMAT = RecordFormat(
    "summarization",
    {"id": str, "document": str, "summary": str},
    '{"id": str, "document": str, "summary": str, "key_facts": [str, ...] (optional), '
    '"tags": {name: str|int}} per line',
    optional={"key_facts": list},
)
KICK_SUMMARY_TEMPLATE = (
    "Summarize the given story in less than 150 words while preserving high coherence, consistency, "
    "fluency, and relevance.\n\n{document}\n\nSummary:"
)


@dataclass(frozen=True)
class SummarizationTaskConfig(TaskConfig):
    """The ``summarization`` task.

    Attributes:
        prompt_template (str): must contain ``{document}`` and nothing else. Default: LLM-KICK's
            instruction followed by the story and ``"Summary:"``.
        max_new_tokens (int): summary length cap in tokens, >= 1. Default: 128.
        max_document_chars (int | None): cut each document to this many characters. Default: None.
        group_by_tags (tuple[str, ...]): Default: ``("length",)``.
        batch_size (int): Default: 8.
    """

    METRICS: ClassVar[tuple[str, ...]] = ("rouge1", "rouge2", "rougeL", "key_fact_recall")

    prompt_template: str = KICK_SUMMARY_TEMPLATE
    max_new_tokens: int = 128
    max_document_chars: int | None = None
    batch_size: int = 8
    group_by_tags: tuple[str, ...] = ("length",)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("max_new_tokens", self.max_new_tokens, 1, None)
        if self.max_document_chars is not None:
            check_range("max_document_chars", self.max_document_chars, 1, None)
        check_template(self.prompt_template, ("document",))


def evaluate_summarization(model: nn.Module, tokenizer: Any, cfg: SummarizationTaskConfig) -> TaskOutput:
    """Generate a summary of every document and score it with ROUGE-1/2/L F-measures.

    Returns:
        :class:`TaskOutput` with ``{"rouge1", "rouge2", "rougeL", "n"}`` (and ``"key_fact_recall"``
        when the records list key facts) plus per-tag values.

    Raises:
        DataError: some records list ``key_facts`` and others do not.
    """
    records = load_records(cfg, "summarization", SUMMARIZATION_FORMAT)
    with_facts = sum(1 for r in records if r.get("key_facts"))
    if 0 < with_facts < len(records):
        raise DataError(
            f"summarization: {with_facts} of {len(records)} records list key_facts; give them on all or none"
        )
    prompts = render_prompts(
        tokenizer,
        records,
        lambda r: cfg.prompt_template.format(document=r["document"][: cfg.max_document_chars]),
        lambda r: r["summary"],
        chat=resolve_chat(tokenizer, cfg.chat_template),
        system_prompt=cfg.system_prompt,
    )
    summaries = greedy_generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        stop_at_newline=False,
    )
    per_record = [rouge_scores(s.strip(), r["summary"]) for s, r in zip(summaries, records, strict=True)]
    if with_facts:
        for p, s, r in zip(per_record, summaries, records, strict=True):
            p["key_fact_recall"] = key_fact_recall(s, r["key_facts"])
    scores = {name: [p[name] for p in per_record] for name in per_record[0]}
    metrics = aggregate(records, scores, cfg.group_by_tags)
    examples = [
        {"id": r["id"], "prediction": s, "summary": r["summary"], **p, "tags": r.get("tags", {})}
        for r, s, p in zip(records, summaries, per_record, strict=True)
    ]
    return TaskOutput(metrics, examples)
