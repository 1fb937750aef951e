"""The config of the built-in knowledge world: how big it is, how skewed, how many task items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slimkit.core.config import Config, check_choice, check_positive, check_range
from slimkit.core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class WorldConfig(Config):
    """A deterministic fictional world (people, cities, countries, companies) and its task files.

    Popularity is a power law in rank (Zipf anchored at the tail): the entity of rank ``r`` among
    ``n`` of its kind has every one of its facts written ``count(r) = clip(floor(min_mentions *
    (n / r) ** popularity_exponent), min_mentions, max_mentions)`` times in the training corpus.
    With the defaults about 30% of facts are written exactly once and about 25% have
    ``max_mentions``. A fact written ``c`` times appears as ``c - floor(c * qa_fraction)``
    statements and ``floor(c * qa_fraction)`` question-answer pairs, so a fact seen once is a
    statement only.

    Attributes:
        seed (int): seeds every random choice; the same seed gives byte-identical files. Default: 0.
        n_people (int): people in the world (4 facts each). Default: 80.
        n_cities (int): cities (1 fact each: in_country). Default: 30.
        n_countries (int): countries (1 fact each: capital); at most ``n_cities``. Default: 8.
        n_companies (int): companies (2 facts each: founded_in, headquartered_in). Default: 20.
        popularity_exponent (float): Zipf exponent ``alpha`` of ``count(r)``. Default: 2.0.
        min_mentions (int): corpus count of the rarest facts. Default: 1.
        max_mentions (int): corpus count cap of the most popular facts. Default: 16.
        qa_fraction (float): share of a fact's mentions written as a training QA pair. Default: 0.5.
        n_reading_docs (int): training reading-comprehension documents (a context of facts about
            invented people, then a question on it) that teach in-context retrieval; their people
            are never used by the retrieval task. 0 disables them. Default: 0 — at the default
            model's 4-minute CPU budget 150 of them did not teach retrieval (0.5-3.5% exact match)
            and took a fifth of the corpus tokens that closed-book facts need.
        n_factoid (int): closed-book factoid questions, at most one per fact. Default: 1000.
        n_mc (int): multiple-choice questions, split evenly over ``mc_options``. Default: 600.
        mc_options (tuple[int, ...]): option counts of the multiple-choice questions. Default: (2, 4, 8).
        n_retrieval (int): in-context retrieval questions, split evenly over ``retrieval_context_facts``.
            Default: 400.
        retrieval_context_facts (tuple[int, ...]): facts per retrieval context (short vs long). Default: (2, 16).
        n_twohop (int): most two-hop compositional questions (there are at most the untrained share
            of ``3 * n_people`` compositions). Default: 400.
        twohop_train_fraction (float): share of the (person, composition) pairs whose answer the
            corpus writes out as a chain of thought (``"X was born in C. C lies in K. So the answer is
            K."``); the twohop task asks about the rest only. Small models do not compose two facts
            silently, but they do learn to state the hops. 0 writes none. Default: 0.5.
        canary_repeats (tuple[int, ...]): how often each canary group is written into the corpus.
            Default: (1, 4, 16).
        canaries_per_repeat (int): canaries per repeat level (phone numbers and emails alternate). Default: 8.

    Reader options (issue 13 item 5: a world whose model reads its context). All default off, and
    :meth:`to_dict` leaves them out while they are at their defaults, so the default world's
    ``world.json``, its cache key and every file it writes stay byte-identical:

        reading_answer (str): how a reading document answers: ``"quote"`` (quote the sentence, then
            ``"So the answer is X."``) or ``"bare"`` (the object alone, exactly the retrieval task's
            format; the retrieval task is then scored on the whole first line). Default: ``"quote"``.
        reading_questions (int): question-answer pairs after each reading passage, 1..8 (several
            questions on one passage give several copy targets for the passage's tokens). Default: 1.
        reading_max_facts (int): most facts in a reading passage (drawn uniformly from 1..this), 1..64;
            0 means ``max(retrieval_context_facts)``. Default: 0.
        n_copy_docs (int): induction documents: a sequence of ``copy_words`` world words (entity
            names, years) written twice, ``"A B C. A B C."``; the second half can only be predicted by
            copying the first. 0 disables. Default: 0.
        copy_words (int): words per copy sequence, 2..64. Default: 10.
        twohop_chain (str): how a two-hop answer is written: ``"statements"`` (``"X was born in L. L
            lies in K. So the answer is K."``) or ``"bridge"`` (``"Born in L. L lies in K. So the
            answer is K."``: the subject is not copied, the first hop is recalled at once).
            Default: ``"statements"``.
        qa_per_fact (int): when >= 1, every fact is stated ``count`` times and asked exactly this many
            times as a training QA pair (``qa_fraction`` is ignored), so every fact has the same
            question-format exposure and popularity lives in the statements alone; 0 keeps
            ``qa_fraction``. 0..16. Default: 0.
        corpus_repeats (int): the world's own documents (statements, QA pairs, chains, canaries) are
            written this many times, reading and copy documents once, 1..100. A training run that
            sees the corpus about once then sees each fact ``corpus_repeats`` times as often as its
            ``count`` says and each reading passage once: a passage seen in every epoch is
            memorised as a closed-book fact about its fresh people instead of read. Popularity tags
            keep ``count`` (per repeat). Default: 1.
    """

    seed: int = 0
    n_people: int = 80
    n_cities: int = 30
    n_countries: int = 8
    n_companies: int = 20
    popularity_exponent: float = 2.0
    min_mentions: int = 1
    max_mentions: int = 16
    qa_fraction: float = 0.5
    n_reading_docs: int = 0
    n_factoid: int = 1000
    n_mc: int = 600
    mc_options: tuple[int, ...] = (2, 4, 8)
    n_retrieval: int = 400
    retrieval_context_facts: tuple[int, ...] = (2, 16)
    n_twohop: int = 400
    twohop_train_fraction: float = 0.5
    canary_repeats: tuple[int, ...] = (1, 4, 16)
    canaries_per_repeat: int = 8
    reading_answer: str = "quote"
    reading_questions: int = 1
    reading_max_facts: int = 0
    n_copy_docs: int = 0
    copy_words: int = 10
    twohop_chain: str = "statements"
    qa_per_fact: int = 0
    corpus_repeats: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("seed", self.seed, 0, None)
        for name in (
            "n_people",
            "n_cities",
            "n_countries",
            "n_companies",
            "min_mentions",
            "max_mentions",
            "n_factoid",
            "n_mc",
            "n_retrieval",
            "n_twohop",
            "canaries_per_repeat",
        ):
            check_positive(name, getattr(self, name))
            # generation is in-memory Python: a typo such as --people 1000000000 would run for hours
            check_range(name, getattr(self, name), 1, MAX_COUNTS.get(name, MAX_COUNT))
        check_range("n_reading_docs", self.n_reading_docs, 0, MAX_COUNT)
        check_range("n_countries", self.n_countries, 1, self.n_cities)
        check_range("max_mentions", self.max_mentions, self.min_mentions, None)
        check_range("popularity_exponent", self.popularity_exponent, 0.0, None, lo_inclusive=False)
        check_range("qa_fraction", self.qa_fraction, 0.0, 1.0)
        check_range("twohop_train_fraction", self.twohop_train_fraction, 0.0, 1.0, hi_inclusive=False)
        if self.n_people < 8:
            raise ConfigError(f"n_people={self.n_people} is too small; need at least 8 (mc uses 8 options)")
        _check_int_tuple("mc_options", self.mc_options, lo=2, hi=min(8, self.n_cities))
        _check_int_tuple("retrieval_context_facts", self.retrieval_context_facts, lo=1, hi=64)
        _check_int_tuple("canary_repeats", self.canary_repeats, lo=1, hi=1000)
        check_choice("reading_answer", self.reading_answer, READING_ANSWERS)
        check_range("reading_questions", self.reading_questions, 1, 8)
        check_range("reading_max_facts", self.reading_max_facts, 0, 64)
        check_range("n_copy_docs", self.n_copy_docs, 0, MAX_COUNT)
        check_range("copy_words", self.copy_words, 2, 64)
        check_choice("twohop_chain", self.twohop_chain, TWOHOP_CHAINS)
        check_range("qa_per_fact", self.qa_per_fact, 0, 16)
        check_range("corpus_repeats", self.corpus_repeats, 1, 100)

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Config.to_dict`, without the reader options that are at their defaults (the
        default world's ``world.json`` and cache key predate them and must not change)."""
        out = super().to_dict()
        for name, default in READER_DEFAULTS.items():
            if out[name] == default:
                del out[name]
        return out

    def reading_facts(self) -> int:
        """The most facts a reading passage holds (``reading_max_facts``, or the longest retrieval context)."""
        return self.reading_max_facts or max(self.retrieval_context_facts)


READING_ANSWERS = ("quote", "bare")
TWOHOP_CHAINS = ("statements", "bridge")
READER_DEFAULTS: dict[str, Any] = {
    "reading_answer": "quote",
    "reading_questions": 1,
    "reading_max_facts": 0,
    "n_copy_docs": 0,
    "copy_words": 10,
    "twohop_chain": "statements",
    "qa_per_fact": 0,
    "corpus_repeats": 1,
}
"""The opt-in reader options and the defaults that leave the world as it was before them."""

MAX_COUNT = 100_000
MAX_COUNTS = {"n_people": 50_000, "min_mentions": 1_000, "max_mentions": 1_000, "canaries_per_repeat": 1_000}


def _check_int_tuple(name: str, values: tuple[int, ...], *, lo: int, hi: int) -> None:
    if not isinstance(values, tuple) or not values:
        raise ConfigError(f"{name} must be a non-empty tuple of integers, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{name} must hold integers, got {v!r}")
        check_range(name, v, lo, hi)
    if len(set(values)) != len(values):
        raise ConfigError(f"{name}={values!r} has duplicates")
