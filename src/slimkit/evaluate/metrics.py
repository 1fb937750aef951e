"""Answer-matching metrics, as pure string functions (SQuAD normalisation, LLM-KICK's lenient variants).

All comparisons use :func:`normalize_answer` (lowercase, no punctuation, no articles, single spaces)
and take the best score over the gold aliases:

    exact_match(p, A) = max_a [norm(p) == norm(a)]
    contains(p, A)    = max_a [norm(a) in norm(p)]                      (LLM-KICK factoid QA)
    lenient(p, A)     = max_a [norm(a) in norm(p) or norm(p) in norm(a)] (LLM-KICK TriviaQA, p != "")
    token_f1(p, A)    = max_a 2·P·R / (P + R), P, R over the multiset of normalised tokens (SQuAD)

Key-fact recall (summaries of the built-in world's passages) asks whether a summary keeps the facts:

    key_fact_recall(p, K) = |{k in K : norm(k) occurs in norm(p) as whole words}| / |K|

ROUGE-1/2/L F-measures come from the ``rouge-score`` package (Google's reimplementation of
ROUGE-1.5.5) with Porter stemming.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


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


def lenient_match(pred: str, answers: Sequence[str]) -> bool:
    """LLM-KICK's retrieval EM: gold inside prediction or prediction inside gold (never an empty prediction)."""
    norm = normalize_answer(pred)
    if not norm:
        return False
    return any((gold := normalize_answer(a)) and (gold in norm or norm in gold) for a in answers)


def token_f1(pred: str, answers: Sequence[str]) -> float:
    """SQuAD token F1 against the best alias (0.0 when either side has no tokens, unless both are empty)."""
    pred_tokens = normalize_answer(pred).split()
    best = 0.0
    for a in answers:
        gold_tokens = normalize_answer(a).split()
        if not pred_tokens or not gold_tokens:
            best = max(best, float(pred_tokens == gold_tokens))
            continue
        common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
        if common == 0:
            continue
        precision, recall = common / len(pred_tokens), common / len(gold_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def after_marker(text: str, marker: str | None) -> str:
    """The text after the last ``marker`` (a chain of thought's final answer), first line, no final period.

    Without a marker the text is returned unchanged; a text that lacks the marker gives ``""``, so an
    answer that never states its conclusion scores zero rather than being matched by luck.
    """
    if marker is None:
        return text
    if marker not in text:
        return ""
    answer = text.rsplit(marker, 1)[1].split("\n", 1)[0].strip()
    return answer[:-1] if answer.endswith(".") else answer


def key_fact_recall(prediction: str, key_facts: Sequence[str]) -> float:
    """Share of ``key_facts`` (names, places, years) that the normalised prediction mentions as whole
    words: ``"Lorin"`` is found in ``"born in Lorin."`` but not in ``"born in Lorinta"``.

    Raises:
        ValueError: no key facts, or one that normalises to nothing (it could never be found).
    """
    if not key_facts:
        raise ValueError("key_fact_recall needs at least one key fact")
    padded = f" {normalize_answer(prediction)} "
    found = 0
    for fact in key_facts:
        norm = normalize_answer(fact)
        if not norm:
            raise ValueError(f"key fact {fact!r} is empty after normalisation")
        found += f" {norm} " in padded
    return found / len(key_facts)


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measures of ``prediction`` against ``reference`` (``rouge-score``, stemmed)."""
    scores = _rouge_scorer().score(reference, prediction)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
