"""Generate the knowledge world in memory: entities, facts, corpus, held-out text and task records.

Everything is drawn from one ``random.Random(cfg.seed)``, in a fixed order, so the same config gives
the same world (and byte-identical files, see :mod:`.build`).

Popularity. Entities of each kind are ranked 1..n; every fact of the entity of rank ``r`` is written

    count(r) = clip(floor(min_mentions * (n / r) ** alpha), min_mentions, max_mentions)

times in the training corpus (a Zipf law anchored so the rarest rank gets ``min_mentions``). Of those
``c`` mentions, ``floor(c * qa_fraction)`` are question-answer pairs in a *training* phrasing and the
rest are statement paraphrases, so a fact written once is a single statement and never a QA pair.
Questions in the task files use *held-out* phrasings that never occur in the corpus.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from slimkit.data.factworld.config import WorldConfig
from slimkit.data.factworld.templates import (
    CANARY_KINDS,
    CANARY_PREFIXES,
    CHAIN_FORMAT,
    QA_FORMAT,
    QUOTE_FORMAT,
    RELATIONS,
    TWO_HOPS,
    Relation,
    TwoHop,
    render,
)

ENTITY_KINDS = ("person", "city", "country", "company")
YEAR_RANGES: dict[str, tuple[int, int]] = {"birth_year": (1930, 1999), "founded_in": (1850, 1999)}
COMPANY_SUFFIXES = ("Labs", "Works", "Systems", "Group", "Foods", "Motors", "Textiles", "Media")
PERSON_RELATIONS = tuple(r for r in RELATIONS.values() if r.subject_kind == "person")

_ONSETS = (
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "kr",
    "st",
    "tr",
    "th",
)
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o")
_CODAS = ("", "", "", "", "n", "r", "l", "s", "m", "k")

GENERATOR_VERSION = 4
"""Bumped whenever the same config would produce different files (caches key on it).
4: chain-of-thought two-hop answers for part of the compositions; the twohop task asks only the rest.
3: held-out text is one training-phrased statement per fact (1: unseen phrasings in multi-fact
paragraphs; 2: training phrasings in multi-fact paragraphs)."""


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple and how often the training corpus states it."""

    id: str
    subject: str
    relation: str
    object: str
    count: int
    popularity_half: str  # "popular" | "rare" (halves of all facts ordered by count)
    popularity_quartile: str  # "q1" (rarest) .. "q4" (most popular)


@dataclass
class World:
    """The generated world: entities, facts, corpus, held-out text and task records.

    Attributes:
        config: the :class:`WorldConfig` it was generated from.
        entities: kind -> names, in popularity order (index 0 is rank 1, the most popular).
        facts: every fact of the world.
        unseen_people: people that never occur in the training corpus (retrieval contexts).
        tasks: task name (``factoid``, ``mc``, ``retrieval``, ``twohop``, ``canaries``) -> records.
    """

    config: WorldConfig
    entities: dict[str, list[str]]
    facts: list[Fact]
    unseen_people: list[str]
    tasks: dict[str, list[dict[str, Any]]]
    documents: list[str] = field(repr=False)
    heldout: list[str] = field(repr=False)

    def corpus_documents(self) -> list[str]:
        """Training documents in corpus order; none contains a blank line."""
        return list(self.documents)

    def heldout_documents(self) -> list[str]:
        """Held-out documents (one paragraph per entity, held-out phrasings), e.g. for perplexity."""
        return list(self.heldout)

    def fact(self, subject: str, relation: str) -> Fact:
        """The fact ``relation`` of ``subject`` (``KeyError`` if the world has none)."""
        return self._index[(subject, relation)]

    @functools.cached_property
    def _index(self) -> dict[tuple[str, str], Fact]:
        return {(f.subject, f.relation): f for f in self.facts}

    def to_dict(self) -> dict[str, Any]:
        """What ``world.json`` holds: the config, every entity and every fact."""
        return {
            "config": self.config.to_dict(),
            "entities": self.entities,
            "unseen_people": self.unseen_people,
            "facts": [asdict(f) for f in self.facts],
        }


def mention_count(rank: int, n: int, cfg: WorldConfig) -> int:
    """Corpus count of each fact of the entity of ``rank`` (1-based) among ``n`` of its kind."""
    raw = math.floor(cfg.min_mentions * (n / rank) ** cfg.popularity_exponent + 1e-9)
    return max(cfg.min_mentions, min(cfg.max_mentions, raw))


def generate_world(cfg: WorldConfig | None = None) -> World:
    """Build the whole world for ``cfg`` (default :class:`WorldConfig`) in memory."""
    cfg = cfg or WorldConfig()
    rng = random.Random(cfg.seed)
    names = _NameGenerator(rng)

    entities = _make_entities(cfg, names, rng)
    facts = _make_facts(cfg, entities, rng)
    index = {(f.subject, f.relation): f for f in facts}

    twohop_train, twohop_test = _split_compositions(cfg, entities, rng)
    documents = [doc for f in facts for doc in _fact_mentions(f, cfg, rng)]
    documents += _reading_documents(cfg, entities, names, rng)
    documents += [_chain_document(person, hop, index, rng) for person, hop in twohop_train]
    canaries = _canaries(cfg, names, rng)
    documents += [f"{c['prefix']} {c['secret']}" for c in canaries for _ in range(c["repeats"])]
    rng.shuffle(documents)

    heldout = _heldout_documents(entities, index, rng)
    retrieval, unseen = _retrieval_task(cfg, entities, names, rng)
    tasks = {
        "factoid": _shuffled(_factoid_task(cfg, facts, rng), "factoid", rng),
        "mc": _shuffled(_mc_task(cfg, facts, entities, rng), "mc", rng),
        "retrieval": _shuffled(retrieval, "retrieval", rng),
        "twohop": _shuffled(_twohop_task(cfg, twohop_test, index, rng), "twohop", rng),
        "canaries": canaries,
    }
    return World(cfg, entities, facts, unseen, tasks, documents, heldout)


# -- names ----------------------------------------------------------------------------------------------
class _NameGenerator:
    """Pronounceable invented words, unique, and never a prefix of one another (so a greedy answer
    that stops early can never be another entity's full name)."""

    _RESERVED = {
        w.strip(".,?'").lower()
        for r in RELATIONS.values()
        for t in r.statements + r.questions + r.heldout_questions
        for w in t.split()
    } | {"question", "answer", "the", "private", "phone", "number", "email", "address"}

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self._sorted: list[str] = []

    def word(self, syllables: tuple[int, int] = (2, 3), suffix: str = "") -> str:
        for _ in range(10_000):
            n = self.rng.randint(*syllables)
            parts = [
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                for _ in range(n)
            ]
            w = ("".join(parts) + suffix).capitalize()
            if self._free(w):
                self.used.add(w.lower())
                bisect.insort(self._sorted, w.lower())
                return w
        raise RuntimeError("name space exhausted; lower the world sizes")  # unreachable at sane sizes

    def _free(self, w: str) -> bool:
        low = w.lower()
        if low in self._RESERVED or len(low) < 4:
            return False
        if any(low[:k] in self.used for k in range(1, len(low) + 1)):
            return False  # a used word is a prefix of (or equal to) this one
        after = bisect.bisect_left(self._sorted, low)
        return after == len(self._sorted) or not self._sorted[after].startswith(low)


def _first_names(names: _NameGenerator, count: int) -> list[str]:
    return [names.word((1, 2)) for _ in range(count)]


def _person(names: _NameGenerator, first: list[str]) -> str:
    return f"{names.rng.choice(first)} {names.word((2, 3))}"


# -- entities and facts -------------------------------------------------------------------------------
def _make_entities(cfg: WorldConfig, names: _NameGenerator, rng: random.Random) -> dict[str, list[str]]:
    first = _first_names(names, max(12, cfg.n_people // 6))
    return {
        "first_names": first,
        "person": [_person(names, first) for _ in range(cfg.n_people)],
        "city": [names.word((2, 3)) for _ in range(cfg.n_cities)],
        "country": [names.word((2, 2), suffix="ia") for _ in range(cfg.n_countries)],
        "company": [f"{names.word((2, 2))} {rng.choice(COMPANY_SUFFIXES)}" for _ in range(cfg.n_companies)],
    }


def _make_facts(cfg: WorldConfig, entities: dict[str, list[str]], rng: random.Random) -> list[Fact]:
    cities, countries, companies = entities["city"], entities["country"], entities["company"]
    # every country gets at least one city; its capital is one of them
    order = list(range(len(cities)))
    rng.shuffle(order)
    country_of = {cities[i]: countries[j % len(countries)] for j, i in enumerate(order)}
    capital = {c: rng.choice([city for city in cities if country_of[city] == c]) for c in countries}

    triples: list[tuple[str, str, str, int]] = []  # subject, relation, object, count

    def add(kind: str, subject_rank: int, subject: str, relation: str, obj: str | int) -> None:
        triples.append((subject, relation, str(obj), mention_count(subject_rank, len(entities[kind]), cfg)))

    for r, person in enumerate(entities["person"], start=1):
        add("person", r, person, "born_in", rng.choice(cities))
        add("person", r, person, "lives_in", rng.choice(cities))
        add("person", r, person, "works_for", rng.choice(companies))
        add("person", r, person, "birth_year", rng.randint(*YEAR_RANGES["birth_year"]))
    for r, city in enumerate(cities, start=1):
        add("city", r, city, "in_country", country_of[city])
    for r, country in enumerate(countries, start=1):
        add("country", r, country, "capital", capital[country])
    for r, company in enumerate(companies, start=1):
        add("company", r, company, "founded_in", rng.randint(*YEAR_RANGES["founded_in"]))
        add("company", r, company, "headquartered_in", rng.choice(cities))

    # halves and quartiles by count; ties broken by a seeded shuffle so no relation is favoured
    tiebreak = list(range(len(triples)))
    rng.shuffle(tiebreak)
    ascending = sorted(range(len(triples)), key=lambda i: (triples[i][3], tiebreak[i]))
    position = {i: p for p, i in enumerate(ascending)}
    n = len(triples)
    facts = []
    for i, (s, rel, o, c) in enumerate(triples):
        p = position[i]
        half = "rare" if p < n // 2 else "popular"
        quartile = f"q{1 + (4 * p) // n}"
        facts.append(Fact(f"{rel}:{s}", s, rel, o, c, half, quartile))
    return facts


def _fact_mentions(fact: Fact, cfg: WorldConfig, rng: random.Random) -> Iterator[str]:
    """The ``fact.count`` corpus documents of one fact: statements, then training-phrasing QA pairs."""
    rel = RELATIONS[fact.relation]
    n_qa = math.floor(fact.count * cfg.qa_fraction + 1e-9)
    start = rng.randrange(len(rel.statements))
    for j in range(fact.count - n_qa):
        yield render(rel.statements[(start + j) % len(rel.statements)], fact.subject, fact.object)
    start = rng.randrange(len(rel.questions))
    for j in range(n_qa):
        question = render(rel.questions[(start + j) % len(rel.questions)], fact.subject)
        yield QA_FORMAT.format(question=question, answer=fact.object)


def _random_person_facts(
    person: str, entities: dict[str, list[str]], rng: random.Random
) -> list[tuple[str, Relation, str]]:
    out = []
    for rel in PERSON_RELATIONS:
        if rel.object_kind == "year":
            obj = str(rng.randint(*YEAR_RANGES[rel.name]))
        else:
            obj = rng.choice(entities[rel.object_kind])
        out.append((person, rel, obj))
    return out


ContextFact = tuple[str, tuple[str, Relation, str]]  # (sentence, (subject, relation, object))


def _context(
    n_facts: int, entities: dict[str, list[str]], names: _NameGenerator, rng: random.Random
) -> tuple[list[str], list[ContextFact]]:
    """``n_facts`` facts about fresh invented people (about two facts each), as statements."""
    n_people = max(1, n_facts // 2)
    people = [_person(names, entities["first_names"]) for _ in range(n_people)]
    pool = [t for p in people for t in _random_person_facts(p, entities, rng)]
    chosen = rng.sample(pool, n_facts)
    sentences = [render(rng.choice(rel.statements), s, o) for s, rel, o in chosen]
    return people, list(zip(sentences, chosen, strict=True))


def _reading_documents(
    cfg: WorldConfig, entities: dict[str, list[str]], names: _NameGenerator, rng: random.Random
) -> list[str]:
    """Corpus documents that teach in-context retrieval: facts about fresh people, then a question whose
    answer quotes the sentence that holds it and concludes (:data:`QUOTE_FORMAT`)."""
    docs = []
    for _ in range(cfg.n_reading_docs):
        _, pairs = _context(rng.randint(1, max(cfg.retrieval_context_facts)), entities, names, rng)
        sentence, (s, rel, o) = rng.choice(pairs)
        answer = QUOTE_FORMAT.format(sentence=sentence, answer=o)
        qa = QA_FORMAT.format(question=render(rng.choice(rel.questions), s), answer=answer)
        docs.append(" ".join(sentence for sentence, _ in pairs) + "\n" + qa)
    return docs


def _canaries(cfg: WorldConfig, names: _NameGenerator, rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for repeats in cfg.canary_repeats:
        for j in range(cfg.canaries_per_repeat):
            kind = CANARY_KINDS[j % len(CANARY_KINDS)]
            owner = f"{names.word((1, 2))} {names.word((2, 3))}"
            if kind == "phone":
                d = [rng.randrange(10) for _ in range(10)]
                secret = "{}{}{}-{}{}{}-{}{}{}{}".format(*d)
            else:
                secret = (
                    f"{names.word((2, 2)).lower()}{rng.randrange(10, 100)}@{names.word((2, 2)).lower()}.net"
                )
            out.append(
                {
                    "id": f"canary-{len(out):04d}",
                    "prefix": CANARY_PREFIXES[kind].format(name=owner),
                    "secret": secret,
                    "repeats": repeats,
                    "kind": kind,
                }
            )
    return out


def _heldout_documents(
    entities: dict[str, list[str]], index: dict[tuple[str, str], Fact], rng: random.Random
) -> list[str]:
    """Every fact once, as a one-sentence document in a randomly chosen training statement phrasing.

    Why this shape: held-out text is for perplexity, which should measure in-distribution language
    about the world (as WikiText's test split does for a web-trained model): documents like the
    corpus's statements, whose hard tokens are the facts' objects, so knowledge loss shows. Phrasings
    or document shapes never seen in training (an earlier version used unseen phrasings in
    multi-fact paragraphs) made a model that knows the world score worse than a uniform guess, and
    rewarded damage that flattened its distribution — a measure of novelty, not of knowledge.
    """
    docs = []
    for kind in ENTITY_KINDS:
        for subject in entities[kind]:
            for rel in RELATIONS.values():
                if rel.subject_kind == kind:
                    docs.append(
                        render(rng.choice(rel.statements), subject, index[(subject, rel.name)].object)
                    )
    rng.shuffle(docs)
    return docs


# -- tasks ----------------------------------------------------------------------------------------------
def _fact_tags(fact: Fact) -> dict[str, Any]:
    return {
        "relation": fact.relation,
        "popularity": fact.count,
        "popularity_half": fact.popularity_half,
        "popularity_quartile": fact.popularity_quartile,
        "template": "heldout",
        "fact": fact.id,
    }


def _sample(rng: random.Random, items: list[Any], k: int) -> list[Any]:
    """``k`` items without replacement, kept in their original order (all of them if ``k`` is larger)."""
    if k >= len(items):
        return list(items)
    picked = sorted(rng.sample(range(len(items)), k))
    return [items[i] for i in picked]


def _shuffled(records: list[dict[str, Any]], prefix: str, rng: random.Random) -> list[dict[str, Any]]:
    """Records in random order, renumbered: the first N of a file (``--limit N``) then sample every
    difficulty level instead of only the first one."""
    rng.shuffle(records)
    return [{**r, "id": f"{prefix}-{i:05d}"} for i, r in enumerate(records)]


def _heldout_question(fact: Fact, rng: random.Random) -> str:
    return render(rng.choice(RELATIONS[fact.relation].heldout_questions), fact.subject)


def _factoid_task(cfg: WorldConfig, facts: list[Fact], rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "id": f"factoid-{i:05d}",
            "question": _heldout_question(f, rng),
            "answers": [f.object],
            "tags": _fact_tags(f),
        }
        for i, f in enumerate(_sample(rng, facts, cfg.n_factoid))
    ]


def _option_pool(relation: str, entities: dict[str, list[str]]) -> list[str]:
    rel = RELATIONS[relation]
    if rel.object_kind == "year":
        lo, hi = YEAR_RANGES[relation]
        return [str(y) for y in range(lo, hi + 1)]
    return entities[rel.object_kind]


def _mc_task(
    cfg: WorldConfig, facts: list[Fact], entities: dict[str, list[str]], rng: random.Random
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    n_levels = len(cfg.mc_options)
    for level, n_options in enumerate(cfg.mc_options):
        want = cfg.n_mc // n_levels + (1 if level < cfg.n_mc % n_levels else 0)
        eligible = [f for f in facts if len(_option_pool(f.relation, entities)) >= n_options]
        for f in _sample(rng, eligible, want):
            distractors = rng.sample(
                [o for o in _option_pool(f.relation, entities) if o != f.object], n_options - 1
            )
            options = [f.object, *distractors]
            rng.shuffle(options)
            out.append(
                {
                    "id": f"mc-{len(out):05d}",
                    "question": _heldout_question(f, rng),
                    "options": options,
                    "answer_index": options.index(f.object),
                    "tags": {"n_options": n_options, **_fact_tags(f)},
                }
            )
    return out


def _length_label(n_facts: int, levels: tuple[int, ...]) -> str:
    if n_facts == min(levels):
        return "short"
    return "long" if n_facts == max(levels) else "medium"


def _retrieval_task(
    cfg: WorldConfig, entities: dict[str, list[str]], names: _NameGenerator, rng: random.Random
) -> tuple[list[dict[str, Any]], list[str]]:
    out: list[dict[str, Any]] = []
    unseen: list[str] = []
    levels = cfg.retrieval_context_facts
    for level, n_facts in enumerate(levels):
        want = cfg.n_retrieval // len(levels) + (1 if level < cfg.n_retrieval % len(levels) else 0)
        for _ in range(want):
            people, pairs = _context(n_facts, entities, names, rng)
            unseen += people
            position = rng.randrange(len(pairs))
            sentence, (s, rel, o) = pairs[position]
            out.append(
                {
                    "id": f"retrieval-{len(out):05d}",
                    "context": " ".join(sentence for sentence, _ in pairs),
                    "question": render(rng.choice(rel.heldout_questions), s),
                    "answers": [o],
                    "chain": QUOTE_FORMAT.format(sentence=sentence, answer=o),
                    "tags": {
                        "context_facts": n_facts,
                        "context_length": _length_label(n_facts, levels),
                        "relation": rel.name,
                        "position": position,
                        "template": "heldout",
                    },
                }
            )
    return out, unseen


def _split_compositions(
    cfg: WorldConfig, entities: dict[str, list[str]], rng: random.Random
) -> tuple[list[tuple[str, TwoHop]], list[tuple[str, TwoHop]]]:
    """(person, composition) pairs split into those answered in the corpus and those the task asks.

    ``floor(twohop_train_fraction * total)`` pairs, drawn at random, get a chain-of-thought answer in
    the corpus; the task asks only about the others, so it measures the skill of composing two
    remembered facts, not a memorised answer.
    """
    combos = [(p, hop) for p in entities["person"] for hop in TWO_HOPS]
    order = list(range(len(combos)))
    rng.shuffle(order)
    n_train = math.floor(len(combos) * cfg.twohop_train_fraction + 1e-9)
    train = sorted(order[:n_train])
    test = sorted(order[n_train:])
    return [combos[i] for i in train], [combos[i] for i in test]


def _chain(
    person: str, hop: TwoHop, index: dict[tuple[str, str], Fact], rng: random.Random
) -> tuple[str, Fact, Fact]:
    """The chain-of-thought answer of ``hop`` for ``person`` (training statement phrasings) and its facts."""
    first = index[(person, hop.first)]
    second = index[(first.object, hop.second)]
    text = CHAIN_FORMAT.format(
        first=render(rng.choice(RELATIONS[hop.first].statements), person, first.object),
        second=render(rng.choice(RELATIONS[hop.second].statements), first.object, second.object),
        answer=second.object,
    )
    return text, first, second


def _chain_document(person: str, hop: TwoHop, index: dict[tuple[str, str], Fact], rng: random.Random) -> str:
    text, _, _ = _chain(person, hop, index, rng)
    return QA_FORMAT.format(question=render(rng.choice(hop.questions), person), answer=text)


def _twohop_task(
    cfg: WorldConfig,
    combos: list[tuple[str, TwoHop]],
    index: dict[tuple[str, str], Fact],
    rng: random.Random,
) -> list[dict[str, Any]]:
    out = []
    for person, hop in _sample(rng, combos, cfg.n_twohop):
        chain, first, second = _chain(person, hop, index, rng)
        out.append(
            {
                "id": f"twohop-{len(out):05d}",
                "question": render(rng.choice(hop.questions), person),
                "answers": [second.object],
                "chain": chain,
                "tags": {
                    "hops": 2,
                    "composition": hop.name,
                    "bridge": first.object,
                    "popularity": first.count,
                    "popularity_half": first.popularity_half,
                    "popularity_quartile": first.popularity_quartile,
                    "second_popularity": second.count,
                    "template": "training",
                },
            }
        )
    return out
