"""Multiple-choice QA scored by the log-likelihood of each option (lm-eval's convention).

Each option ``o_i`` is scored as a continuation of the prompt, ``option_delimiter + o_i`` (default a
space), and the prediction is the best-scoring option::

    accuracy      = [argmax_i  log p(o_i | prompt)              == gold]
    accuracy_norm = [argmax_i  log p(o_i | prompt) / chars(o_i) == gold]   (lm-eval's acc_norm)
    chance        = 1 / number of options                                  (what guessing scores)

The prompt is run once per question and its KV cache shared by the options
(:func:`slimkit.evaluate.scoring.score_continuations`). LLM-KICK's MMLU protocol generates one token
and compares it with the gold letter; scoring the letters " A".." D" as options picks the same
letter whenever the model's most likely next token is one of them, and never picks a non-letter.

Records (``mc.jsonl``; the MMLU reader writes the same shape with a full few-shot ``prompt``)::

    {"id": "mc-1", "question": "Where was Ada Vell born?", "options": ["Lorin", "Voro"], "answer_index": 0,
     "tags": {"n_options": 2}}

A record may carry ``"prompt"``: the whole prompt, used instead of ``prompt_template`` (and given no
further shots: an MMLU prompt holds its own k dev examples). Few-shot examples show the gold option
after the delimiter; with a chat template the prompt is the user turn, the options are scored as the
start of the assistant's reply, and the delimiter is ``""`` (lm-eval's ``target_delimiter`` under
``--apply_chat_template``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from slimkit.core.errors import DataError
from slimkit.core.progress import console
from slimkit.evaluate.prompting import render_prompts, resolve_chat
from slimkit.evaluate.scoring import score_continuations
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


@dataclass(frozen=True)
class MultipleChoiceTaskConfig(TaskConfig):
    """The ``mc`` task: pick the most likely option.

    Attributes:
        prompt_template (str): must contain ``{question}`` and no other field; records with a
            ``prompt`` use that instead. Default: ``"Question: {question}\\nAnswer:"``.
        option_delimiter (str): put between the prompt and each option (``""`` under a chat
            template). Default: ``" "``.
        group_by_tags (tuple[str, ...]): Default: ``("n_options", "popularity_half")``.
        (and ``data``, ``limit``, ``batch_size`` and the prompt options of :class:`TaskConfig`)
    """

    METRICS: ClassVar[tuple[str, ...]] = ("accuracy", "accuracy_norm", "chance")
    FEWSHOT: ClassVar[bool] = True

    prompt_template: str = "Question: {question}\nAnswer:"
    option_delimiter: str = " "
    group_by_tags: tuple[str, ...] = ("n_options", "popularity_half")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_template(self.prompt_template, ("question",))


def _check_mc_values(record: Record, where: str) -> None:
    """At least 2 options, ``answer_index`` pointing at one, and a prompt the option can follow."""
    n = len(record["options"])
    if n < 2:
        raise DataError(
            f"{where}: 'options' must be a non-empty list of strings (at least 2 options), got {n}"
        )
    if not 0 <= record["answer_index"] < n:
        raise DataError(
            f"{where}: answer_index {record['answer_index']} is out of range for {n} options "
            f"(must be in [0, {n - 1}])"
        )
    if record.get("prompt", "").endswith(" "):
        raise DataError(f"{where}: 'prompt' must not end with a space (the option follows after one)")


MC_FORMAT = RecordFormat(
    "mc",
    {"id": str, "question": str, "options": list, "answer_index": int},
    '{"id": str, "question": str, "options": [str, ...], "answer_index": int, "prompt": str (optional), '
    '"tags": {name: str|int}} per line',
    optional={"prompt": str},
    check=_check_mc_values,
)


def evaluate_multiple_choice(model: nn.Module, tokenizer: Any, cfg: MultipleChoiceTaskConfig) -> TaskOutput:
    """Score ``model`` on multiple-choice questions (see the module docstring).

    Returns:
        :class:`TaskOutput` with ``{"accuracy", "accuracy_norm", "chance", "n"}`` plus per-tag values,
        and one example per record (id, prediction index, gold index, option log-likelihoods).
    """
    every = load_all_records(cfg, "mc", MC_FORMAT)
    records = every[: cfg.limit] if cfg.limit is not None else every
    prompts = mc_prompts(cfg, tokenizer, records, fewshot_pool(cfg, "mc", MC_FORMAT, every))
    delimiter = "" if resolve_chat(tokenizer, cfg.chat_template) else cfg.option_delimiter
    requests = [(p, [delimiter + o for o in r["options"]]) for p, r in zip(prompts, records, strict=True)]
    scores = score_continuations(model, tokenizer, requests, batch_size=cfg.batch_size)
    accuracy, accuracy_norm, chance, examples = [], [], [], []
    for r, prompt, option_scores in zip(records, prompts, scores, strict=True):
        logprobs = [s.logprob for s in option_scores]
        per_char = [s.logprob / max(1, len(o)) for s, o in zip(option_scores, r["options"], strict=True)]
        pick, pick_norm = _argmax(logprobs), _argmax(per_char)
        accuracy.append(float(pick == r["answer_index"]))
        accuracy_norm.append(float(pick_norm == r["answer_index"]))
        chance.append(1.0 / len(r["options"]))
        examples.append(
            {
                "id": r["id"],
                "question": r["question"],
                "options": list(r["options"]),
                "answer_index": r["answer_index"],
                "prompt": prompt,
                "prediction": pick,
                "prediction_norm": pick_norm,
                "logprobs": logprobs,
                "tags": r.get("tags", {}),
            }
        )
    metrics = aggregate(
        records, {"accuracy": accuracy, "accuracy_norm": accuracy_norm, "chance": chance}, cfg.group_by_tags
    )
    return TaskOutput(metrics, examples)


def mc_prompts(
    cfg: MultipleChoiceTaskConfig, tokenizer: Any, records: list[Record], pool: list[Record]
) -> list[str]:
    """Every record's prompt; records with their own complete ``prompt`` get no further shots."""
    chat = resolve_chat(tokenizer, cfg.chat_template)
    own = [i for i, r in enumerate(records) if r.get("prompt")]
    if own and cfg.num_fewshot:
        console().print(
            f"[yellow]note[/yellow]: {len(own)} mc record(s) carry complete prompts with their own "
            "examples (e.g. MMLU's dev shots); num_fewshot adds none to them"
        )
    prompts: list[str] = [""] * len(records)
    rest = sorted(set(range(len(records))) - set(own))
    for group, shots in ((own, 0), (rest, cfg.num_fewshot)):
        if not group:
            continue
        rendered = render_prompts(
            tokenizer,
            [records[i] for i in group],
            lambda r: r.get("prompt") or cfg.prompt_template.format(question=r["question"]),
            lambda r: r["options"][r["answer_index"]],
            num_fewshot=shots,
            pool=pool,
            seed=cfg.fewshot_seed,
            chat=chat,
            system_prompt=cfg.system_prompt,
            delimiter=cfg.option_delimiter,
        )
        for i, p in zip(group, rendered, strict=True):
            prompts[i] = p
    return prompts


def _argmax(values: list[float]) -> int:
    # first index on ties, so the result never depends on anything but the scores
    return max(range(len(values)), key=lambda i: (values[i], -i))
