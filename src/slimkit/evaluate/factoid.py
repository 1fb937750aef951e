"""Closed-book factoid QA: greedy answers scored by exact match and by containment.

LLM-KICK ("Compressing LLMs: The Truth is Rarely Pure and Never Simple", arXiv 2310.01382) measures
knowledge that perplexity hides with closed-book QA. A question is formatted into
``prompt_template`` (default ``"Question: {question}\\nAnswer:"``), the model continues greedily for
at most ``max_new_tokens`` tokens, the first line is kept, and it is compared with every gold alias
after SQuAD normalisation (:func:`normalize_answer`):

    exact_match = 1 if norm(pred) == norm(a) for some alias a
    contains    = 1 if norm(a) is a substring of norm(pred) for some alias a   (LLM-KICK's lenient EM)

Records are the JSONL lines of factworld's ``factoid.jsonl``::

    {"id": "q0001", "question": "Where was Ada Vell born?", "answers": ["Lorin"], "tags": {"popularity_half": "rare"}}

Scores are averaged over records and, for every tag named in ``group_by_tags``, over each tag value
(``exact_match@popularity_half=rare``), so easy and hard facts are reported apart.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.config import Config, check_range
from slimkit.core.errors import ConfigError, DataError
from slimkit.data.sources import jsonl_rows
from slimkit.evaluate.generation import greedy_generate

FACTOID_FIELDS = ("id", "question", "answers")
_FACTOID_LAYOUT = '{"id": str, "question": str, "answers": [str, ...], "tags": {name: value}} per line'
_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass(frozen=True)
class FactoidTaskConfig(Config):
    """The ``factoid`` suite: closed-book QA scored by exact match and containment.

    Attributes:
        data (str | tuple[dict, ...] | None): a ``factoid.jsonl`` path, or the records themselves (a
            list is accepted and stored as a tuple). Required by :func:`slimkit.evaluate`.
            Default: None.
        prompt_template (str): must contain ``{question}`` and no other field.
            Default: ``"Question: {question}\\nAnswer:"``.
        max_new_tokens (int): answer length cap in tokens, >= 1. Default: 16.
        batch_size (int): prompts per generation batch, >= 1. Default: 32.
        limit (int | None): score only the first ``limit`` records, >= 1. Default: all.
        group_by_tags (tuple[str, ...]): tags whose values get their own scores.
            Default: ``("popularity_half",)``.
    """

    data: str | tuple[dict[str, Any], ...] | None = None
    prompt_template: str = "Question: {question}\nAnswer:"
    max_new_tokens: int = 16
    batch_size: int = 32
    limit: int | None = None
    group_by_tags: tuple[str, ...] = ("popularity_half",)

    def __post_init__(self) -> None:
        if isinstance(self.data, Path):
            object.__setattr__(self, "data", str(self.data))
        if isinstance(self.data, list):
            object.__setattr__(self, "data", tuple(self.data))
        if isinstance(self.group_by_tags, list | str):
            tags = (self.group_by_tags,) if isinstance(self.group_by_tags, str) else tuple(self.group_by_tags)
            object.__setattr__(self, "group_by_tags", tags)
        super().__post_init__()
        if not (self.data is None or isinstance(self.data, str | tuple)):
            raise ConfigError(
                f"FactoidTaskConfig.data must be a JSONL path or a list of records, got {type(self.data).__name__}"
            )
        check_range("max_new_tokens", self.max_new_tokens, 1, None)
        check_range("batch_size", self.batch_size, 1, None)
        if self.limit is not None:
            check_range("limit", self.limit, 1, None)
        if not all(isinstance(t, str) and t for t in self.group_by_tags):
            raise ConfigError(f"group_by_tags must be non-empty strings, got {self.group_by_tags!r}")
        try:
            self.prompt_template.format(question="")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(
                f"prompt_template={self.prompt_template!r} may only use the field {{question}} ({e!r})"
            ) from None
        if "{question}" not in self.prompt_template:
            raise ConfigError(f"prompt_template={self.prompt_template!r} must contain {{question}}")


# -- answer matching (pure string functions) -----------------------------------------------------------
def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation, drop articles a/an/the, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(pred: str, answers: Sequence[str]) -> bool:
    """True when the normalised prediction equals some normalised answer."""
    norm = normalize_answer(pred)
    return any(norm == normalize_answer(a) for a in answers)


def contains_match(pred: str, answers: Sequence[str]) -> bool:
    """True when some normalised answer occurs inside the normalised prediction (LLM-KICK's lenient EM).

    An answer that normalises to nothing (e.g. ``"The"``) only matches an empty prediction; otherwise
    the empty string would be "contained" in everything.
    """
    norm = normalize_answer(pred)
    for a in answers:
        gold = normalize_answer(a)
        if (gold in norm) if gold else (norm == ""):
            return True
    return False


# -- records -------------------------------------------------------------------------------------------
def read_jsonl(path: str | Path, required_fields: Sequence[str]) -> list[dict[str, Any]]:
    """The objects of a JSONL file, each checked to have ``required_fields``.

    Raises:
        DataError: missing file, a malformed line, or a line missing fields (the message names the
            line, the missing fields and the expected layout).
    """
    records = []
    for lineno, row in jsonl_rows(path):
        missing = [f for f in required_fields if f not in row]
        if missing:
            raise DataError(
                f"{path}:{lineno}: missing field(s) {missing}; each line needs {list(required_fields)} "
                f"(has {sorted(row)})"
            )
        records.append(row)
    return records


def read_factoid(path: str | Path) -> list[dict[str, Any]]:
    """Factoid records from a JSONL file (``id``, ``question``, ``answers``; optional ``tags``)."""
    records = read_jsonl(path, FACTOID_FIELDS)
    return check_factoid_records(records, where=str(path))


def check_factoid_records(
    records: Sequence[dict[str, Any]], *, where: str = "records"
) -> list[dict[str, Any]]:
    """Validate factoid records (types of every field); DataError naming the record and field."""
    records = list(records)
    if not records:
        raise DataError(f"{where}: the factoid task is empty; expected {_FACTOID_LAYOUT}")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise DataError(
                f"{where}[{i}]: expected a mapping, got {type(r).__name__}; layout: {_FACTOID_LAYOUT}"
            )
        missing = [f for f in FACTOID_FIELDS if f not in r]
        if missing:
            raise DataError(f"{where}[{i}]: missing field(s) {missing}; layout: {_FACTOID_LAYOUT}")
        if not isinstance(r["question"], str):
            raise DataError(f"{where}[{i}] (id {r['id']!r}): 'question' must be a string")
        answers = r["answers"]
        if not (isinstance(answers, list | tuple) and answers and all(isinstance(a, str) for a in answers)):
            raise DataError(f"{where}[{i}] (id {r['id']!r}): 'answers' must be a non-empty list of strings")
        if not isinstance(r.get("tags", {}), dict):
            raise DataError(f"{where}[{i}] (id {r['id']!r}): 'tags' must be a mapping")
    return records


# -- evaluation ----------------------------------------------------------------------------------------
def evaluate_factoid(
    model: nn.Module,
    tokenizer: Any,
    records: str | Path | Sequence[dict[str, Any]] | None = None,
    cfg: FactoidTaskConfig | None = None,
    *,
    return_examples: bool = False,
) -> dict[str, Any]:
    """Score ``model`` on factoid QA (see the module docstring).

    Args:
        model, tokenizer: a Hugging Face causal LM and its tokenizer.
        records: a ``factoid.jsonl`` path or the records. Default: ``cfg.data``.
        cfg: prompt, lengths, limit, grouping. Default: ``FactoidTaskConfig()``.
        return_examples: also return ``"examples"``: one dict per record with ``id``, ``question``,
            ``prediction``, ``answers``, ``exact_match``, ``contains``.

    Returns:
        ``{"exact_match": float, "contains": float, "n": int}`` plus, for every tag ``t`` in
        ``cfg.group_by_tags`` and each of its values ``v``, ``exact_match@t=v``, ``contains@t=v`` and
        ``n@t=v`` (records without the tag are left out of its groups).
    """
    cfg = cfg or FactoidTaskConfig()
    source = records if records is not None else cfg.data
    if source is None:
        raise DataError("factoid evaluation needs data: a factoid.jsonl path or a list of records")
    items = read_factoid(source) if isinstance(source, str | Path) else check_factoid_records(source)
    if cfg.limit is not None:
        items = items[: cfg.limit]
    prompts = [cfg.prompt_template.format(question=r["question"]) for r in items]
    predictions = greedy_generate(
        model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size
    )
    em = [exact_match(p, r["answers"]) for p, r in zip(predictions, items, strict=True)]
    contains = [contains_match(p, r["answers"]) for p, r in zip(predictions, items, strict=True)]

    metrics: dict[str, Any] = {"exact_match": _mean(em), "contains": _mean(contains), "n": len(items)}
    for tag in cfg.group_by_tags:
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(items):
            if tag in r.get("tags", {}):
                groups.setdefault(str(r["tags"][tag]), []).append(i)
        for value in sorted(groups):
            idx = groups[value]
            metrics[f"exact_match@{tag}={value}"] = _mean([em[i] for i in idx])
            metrics[f"contains@{tag}={value}"] = _mean([contains[i] for i in idx])
            metrics[f"n@{tag}={value}"] = len(idx)
    if return_examples:
        metrics["examples"] = [
            {
                "id": r["id"],
                "question": r["question"],
                "prediction": p,
                "answers": list(r["answers"]),
                "exact_match": e,
                "contains": c,
            }
            for r, p, e, c in zip(items, predictions, em, contains, strict=True)
        ]
    return metrics


def run_factoid_task(model: nn.Module, tokenizer: Any, cfg: FactoidTaskConfig) -> dict[str, dict[str, Any]]:
    """The ``factoid`` suite: ``{"factoid": evaluate_factoid(...)}``."""
    return {"factoid": evaluate_factoid(model, tokenizer, None, cfg)}


def _mean(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0
