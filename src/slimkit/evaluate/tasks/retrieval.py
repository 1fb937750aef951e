"""In-context (open-book) retrieval QA: answer from a passage given in the prompt.

LLM-KICK (arXiv 2310.01382) gives TriviaQA questions with their evidence in the prompt and keeps the
first line of a 32-token greedy answer; its exact match is lenient (gold inside the prediction or the
prediction inside the gold) and it reports token F1, both maximised over the aliases
(:mod:`slimkit.evaluate.metrics`)::

    exact_match = max_a [norm(pred) == norm(a)]
    lenient     = max_a [norm(a) in norm(pred) or norm(pred) in norm(a)]     (LLM-KICK's EM)
    f1          = max_a token-F1(pred, a)

LLM-KICK's prompt is ``"{context}\\n\\nBased on these texts, answer these questions:\\n\\nQ: {question}\\nA:"``
with the context cut to 3072 characters (``max_context_chars``); the default template here is the
built-in world's ``"{context}\\nQuestion: {question}\\nAnswer:"``. A prompt longer than the model's
positions keeps its end (the question) and loses the start of the context.

Records (``retrieval.jsonl``; the TriviaQA reader writes the same shape)::

    {"id": "r-1", "context": "Ada Vell was born in Lorin. ...", "question": "Where was Ada Vell born?",
     "answers": ["Lorin"], "tags": {"context_length": "short"}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from slimkit.core.config import check_range
from slimkit.evaluate.generation import greedy_generate
from slimkit.evaluate.metrics import after_marker, exact_match, lenient_match, token_f1
from slimkit.evaluate.prompting import render_prompts, resolve_chat
from slimkit.evaluate.tasks.base import (
    RecordFormat,
    TaskConfig,
    TaskOutput,
    aggregate,
    check_template,
    fewshot_pool,
    load_all_records,
)

RETRIEVAL_FORMAT = RecordFormat(
    "retrieval",
    {"id": str, "context": str, "question": str, "answers": list},
    '{"id": str, "context": str, "question": str, "answers": [str, ...], "tags": {name: str|int}} per line',
)
KICK_RETRIEVAL_TEMPLATE = "{context}\n\nBased on these texts, answer these questions:\n\nQ: {question}\nA:"


@dataclass(frozen=True)
class RetrievalTaskConfig(TaskConfig):
    """The ``retrieval`` task: open-book QA over a passage.

    Attributes:
        prompt_template (str): must contain ``{context}`` and ``{question}`` and nothing else.
            Default: ``"{context}\\nQuestion: {question}\\nAnswer:"`` (LLM-KICK's is
            ``KICK_RETRIEVAL_TEMPLATE``).
        max_new_tokens (int): answer length cap, >= 1. Default: 32 (LLM-KICK's).
        max_context_chars (int | None): cut each context to this many characters, >= 1
            (LLM-KICK: 3072). Default: None (no cut).
        answer_marker (str | None): score only the text after the last occurrence of this marker
            (the built-in world's answers quote the passage, then conclude ``"So the answer is X."``);
            None scores the whole first line. Default: None.
        group_by_tags (tuple[str, ...]): Default: ``("context_length",)``.
        (and ``data``, ``limit``, ``batch_size`` and the prompt options of :class:`TaskConfig`; a
        shot is a whole passage, question and first answer)
    """

    METRICS: ClassVar[tuple[str, ...]] = ("exact_match", "lenient", "f1")
    FEWSHOT: ClassVar[bool] = True

    prompt_template: str = "{context}\nQuestion: {question}\nAnswer:"
    max_new_tokens: int = 32
    max_context_chars: int | None = None
    answer_marker: str | None = None
    group_by_tags: tuple[str, ...] = ("context_length",)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("max_new_tokens", self.max_new_tokens, 1, None)
        if self.max_context_chars is not None:
            check_range("max_context_chars", self.max_context_chars, 1, None)
        check_template(self.prompt_template, ("context", "question"))


def evaluate_retrieval(model: nn.Module, tokenizer: Any, cfg: RetrievalTaskConfig) -> TaskOutput:
    """Score ``model`` on open-book QA (see the module docstring).

    Returns:
        :class:`TaskOutput` with ``{"exact_match", "lenient", "f1", "n"}`` plus per-tag values, and one
        example per record.
    """
    every = load_all_records(cfg, "retrieval", RETRIEVAL_FORMAT)
    records = every[: cfg.limit] if cfg.limit is not None else every
    prompts = render_prompts(
        tokenizer,
        records,
        lambda r: cfg.prompt_template.format(
            context=r["context"][: cfg.max_context_chars], question=r["question"]
        ),
        lambda r: f"{cfg.answer_marker} {r['answers'][0]}." if cfg.answer_marker else r["answers"][0],
        num_fewshot=cfg.num_fewshot,
        pool=fewshot_pool(cfg, "retrieval", RETRIEVAL_FORMAT, every),
        seed=cfg.fewshot_seed,
        chat=resolve_chat(tokenizer, cfg.chat_template),
        system_prompt=cfg.system_prompt,
    )
    generations = greedy_generate(
        model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size
    )
    predictions = [after_marker(g, cfg.answer_marker) for g in generations]
    em = [float(exact_match(p, r["answers"])) for p, r in zip(predictions, records, strict=True)]
    lenient = [float(lenient_match(p, r["answers"])) for p, r in zip(predictions, records, strict=True)]
    f1 = [token_f1(p, r["answers"]) for p, r in zip(predictions, records, strict=True)]
    metrics = aggregate(records, {"exact_match": em, "lenient": lenient, "f1": f1}, cfg.group_by_tags)
    examples = [
        {
            "id": r["id"],
            "question": r["question"],
            "generation": g,
            "prediction": p,
            "answers": list(r["answers"]),
            "exact_match": e,
            "lenient": le,
            "f1": f,
            "tags": r.get("tags", {}),
        }
        for r, g, p, e, le, f in zip(records, generations, predictions, em, lenient, f1, strict=True)
    ]
    return TaskOutput(metrics, examples)
