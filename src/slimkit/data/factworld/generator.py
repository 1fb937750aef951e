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
    BRIDGE_OPENINGS,
    CANARY_KINDS,
    CANARY_PREFIXES,
    CHAIN_FORMAT,
    QA_FORMAT,
    QUOTE_FORMAT,
    RELATIONS,
    SUMMARY_FORMAT,
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
"""Bumped whenever the same config would produce a different *corpus* (the default model's cache keys
on it; files that change while the corpus does not bump ``build.FILES_VERSION`` instead).
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
    heldout_answers: list[list[tuple[int, int, str]]] = field(repr=False)

    def corpus_documents(self) -> list[str]:
        """Training documents in corpus order; none contains a blank line."""
        return list(self.documents)

    def heldout_documents(self) -> list[str]:
        """Held-out documents for perplexity: a few facts each, none a corpus document (see
        :func:`_heldout_documents`)."""
        return list(self.heldout)

    def heldout_answer_spans(self) -> list[dict[str, Any]]:
        """Where the facts' objects sit in the held-out text as perplexity scores it (documents joined
        by ``"\\n\\n"``): ``[{"start": int, "end": int, "fact": id}, ...]``, character offsets, in order.
        """
        spans, offset = [], 0
        for doc, answers in zip(self.heldout, self.heldout_answers, strict=True):
            spans += [{"start": offset + a, "end": offset + b, "fact": fact} for a, b, fact in answers]
            offset += len(doc) + len(DOCUMENT_SEPARATOR)
        return spans

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
    reading = _reading_documents(cfg, entities, names, rng)
    if cfg.corpus_repeats == 1:
        documents += reading  # where it always was, so worlds with reading documents stay the same
    documents += [_chain_document(person, hop, index, rng, cfg) for person, hop in twohop_train]
    reading += _copy_documents(cfg, entities, rng)  # no draws (and no documents) when off
    canaries = _canaries(cfg, names, rng)
    documents += [f"{c['prefix']} {c['secret']}" for c in canaries for _ in range(c["repeats"])]
    if cfg.corpus_repeats > 1:
        # the world's own documents repeat; each reading passage and copy sequence is seen once
        documents = documents * cfg.corpus_repeats + reading[: cfg.n_reading_docs]
    documents += reading[cfg.n_reading_docs :]
    rng.shuffle(documents)

    _skip_v3_heldout_draws(facts, rng)
    retrieval, unseen = _retrieval_task(cfg, entities, names, rng)
    tasks = {
        "factoid": _shuffled(_factoid_task(cfg, facts, rng), "factoid", rng),
        "mc": _shuffled(_mc_task(cfg, facts, entities, rng), "mc", rng),
        "retrieval": _shuffled(retrieval, "retrieval", rng),
        "twohop": _shuffled(_twohop_task(cfg, twohop_test, index, rng), "twohop", rng),
        "canaries": canaries,
    }
    # Held-out text and summarization passages draw from RNG streams of their own, after every
    # other draw: changing them never changes the corpus (or the default model trained on it).
    heldout, heldout_answers = _heldout_documents(cfg, facts, documents, _stream(cfg, "heldout"))
    tasks["summarization"] = _summarization_task(entities, index, names, _stream(cfg, "summarization"))
    return World(cfg, entities, facts, unseen, tasks, documents, heldout, heldout_answers)


def _stream(cfg: WorldConfig, purpose: str) -> random.Random:
    """An RNG independent of the main one (a string seed is hashed with SHA-512, so it is stable)."""
    return random.Random(f"factworld:{cfg.seed}:{purpose}")


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

    def __init__(self, rng: random.Random, *, taken: _NameGenerator | None = None) -> None:
        self.rng = rng
        # a second generator (its own RNG stream) must still avoid every name the first one made
        self.used: set[str] = set(taken.used) if taken else set()
        self._sorted: list[str] = list(taken._sorted) if taken else []

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
    """The corpus documents of one fact: statements, then training-phrasing QA pairs.

    ``fact.count`` documents in all, ``floor(count * qa_fraction)`` of them QA pairs; with
    ``cfg.qa_per_fact = k >= 1`` instead ``count`` statements and exactly ``k`` QA pairs."""
    rel = RELATIONS[fact.relation]
    if cfg.qa_per_fact:
        n_qa, n_statements = cfg.qa_per_fact, fact.count
    else:
        n_qa = math.floor(fact.count * cfg.qa_fraction + 1e-9)
        n_statements = fact.count - n_qa
    start = rng.randrange(len(rel.statements))
    for j in range(n_statements):
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
    answer quotes the sentence that holds it and concludes (:data:`QUOTE_FORMAT`), or, with
    ``reading_answer="bare"``, the object alone (the retrieval task's own format).

    A passage of ``n`` facts (``n`` uniform in 1..``cfg.reading_facts()``) is followed by
    ``min(reading_questions, n)`` questions on distinct facts of it, each on its own line::

        Ada Vell was born in Lorin. Ada Vell works for Zuma Labs.
        Question: Where does Ada Vell work?
        Answer: Zuma Labs
    """
    docs = []
    for _ in range(cfg.n_reading_docs):
        _, pairs = _context(rng.randint(1, cfg.reading_facts()), entities, names, rng)
        if cfg.reading_questions == 1:
            asked = [rng.choice(pairs)]  # the draw the single-question documents always made
        else:
            asked = rng.sample(pairs, min(cfg.reading_questions, len(pairs)))
        qas = []
        for sentence, (s, rel, o) in asked:
            answer = o if cfg.reading_answer == "bare" else QUOTE_FORMAT.format(sentence=sentence, answer=o)
            qas.append(QA_FORMAT.format(question=render(rng.choice(rel.questions), s), answer=answer))
        docs.append(" ".join(sentence for sentence, _ in pairs) + "\n" + "\n".join(qas))
    return docs


def _copy_documents(cfg: WorldConfig, entities: dict[str, list[str]], rng: random.Random) -> list[str]:
    """Induction documents: ``copy_words`` world words drawn at random, then the same words again.

    ``"Lorin 1943 Zuma Labs Veda. Lorin 1943 Zuma Labs Veda."`` Nothing but the first half predicts the
    second, so the loss on it rewards attention that finds the previous occurrence of the current
    token and copies its successor (an induction head), the mechanism reading a passage needs. The
    words are names the corpus uses elsewhere, so the copied tokens are tokens the model knows.
    """
    vocab = [
        *entities["person"],
        *entities["city"],
        *entities["country"],
        *entities["company"],
        *(str(y) for y in range(*YEAR_RANGES["birth_year"])),
    ]
    docs = []
    for _ in range(cfg.n_copy_docs):
        seq = " ".join(rng.choice(vocab) for _ in range(cfg.copy_words))
        docs.append(f"{seq}. {seq}.")
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


DOCUMENT_SEPARATOR = "\n\n"
"""``corpus.txt`` and ``heldout.txt`` hold documents separated by one blank line (no document has one);
perplexity joins documents the same way."""
HELDOUT_FACTS_PER_DOC = 3


def _skip_v3_heldout_draws(facts: list[Fact], rng: random.Random) -> None:
    """Make the main RNG's draws that the version-3 held-out text made (one phrasing per fact, then a
    shuffle), so every task file drawn after it stays byte-identical. Each draw depends only on the
    length of what it picks from, so nothing needs to be built."""
    for fact in facts:
        rng.choice(RELATIONS[fact.relation].statements)
    rng.shuffle(list(range(len(facts))))


def _heldout_documents(
    cfg: WorldConfig, facts: list[Fact], corpus: list[str], rng: random.Random
) -> tuple[list[str], list[list[tuple[int, int, str]]]]:
    """Held-out text for perplexity: ``len(facts)`` documents of ``HELDOUT_FACTS_PER_DOC`` facts each.

    Each document states distinct facts, each in a training statement phrasing, joined by spaces:
    ``"Ada Vell lives in Voro. Zuma Labs was founded in 1931. The capital of Kelia is Voro."``. Facts
    are drawn with probability proportional to ``fact.count``, the training corpus's own fact
    distribution, so popular subjects are as frequent here as in training (uniform subjects made
    perplexity reward a flattened name prior). No document is, or is part of, a corpus document (a
    draw that would be is drawn again): the text is held out as a whole, though its sentences are
    phrased as training sentences are, so it measures knowledge of the world rather than novelty of
    wording (unseen phrasings made a model that knows the world score worse than a uniform guess).

    Returns the documents and, per document, ``(start, end, fact id)`` character spans of each fact's
    object: the answer tokens that answer-token perplexity scores.
    """
    weights = [f.count for f in facts]
    k = min(HELDOUT_FACTS_PER_DOC, len(facts))
    docs: list[str] = []
    answers: list[list[tuple[int, int, str]]] = []
    seen = set(corpus)
    # only these could contain a whole document (deduplicated: a repeated corpus repeats its documents)
    multi_sentence = list(dict.fromkeys(d for d in corpus if ". " in d))
    for _ in range(100 * len(facts)):  # a tiny world may have fewer distinct documents than facts
        if len(docs) == len(facts):
            break
        chosen: list[Fact] = []
        while len(chosen) < k:
            f = rng.choices(facts, weights=weights)[0]
            if f not in chosen:
                chosen.append(f)
        sentences, spans, offset = [], [], 0
        for f in chosen:
            template = rng.choice(RELATIONS[f.relation].statements)
            start = offset + len(render(template.split("{o}", 1)[0], f.subject))
            spans.append((start, start + len(f.object), f.id))
            sentence = render(template, f.subject, f.object)
            sentences.append(sentence)
            offset += len(sentence) + 1
        doc = " ".join(sentences)
        if doc in seen or any(doc in d for d in multi_sentence):
            continue
        seen.add(doc)
        docs.append(doc)
        answers.append(spans)
    return docs, answers


# -- summarization --------------------------------------------------------------------------------------
N_SUMMARIZATION = 120
"""Summarization passages in the world's ``summarization.jsonl`` (half about one person, half two)."""


def _summarization_task(
    entities: dict[str, list[str]],
    index: dict[tuple[str, str], Fact],
    names: _NameGenerator,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Passages about fresh people (never in the corpus), each with a reference summary and key facts.

    A passage states every fact of one or two invented people (training statement phrasings, in a
    random order) plus, per person, one true world fact about a city of theirs that a summary leaves
    out. The reference summary is one :data:`SUMMARY_FORMAT` sentence per person; the key facts are
    each person's name and the four objects (deduplicated), which a summary should all mention.
    """
    fresh = _NameGenerator(rng, taken=names)
    out = []
    for i in range(N_SUMMARIZATION):
        n_people = 1 + i % 2
        sentences: list[str] = []
        summary: list[str] = []
        key_facts: list[str] = []
        for _ in range(n_people):
            person = _person(fresh, entities["first_names"])
            facts = {rel.name: o for _, rel, o in _random_person_facts(person, entities, rng)}
            block = [render(rng.choice(RELATIONS[r].statements), person, o) for r, o in facts.items()]
            city = rng.choice([facts["born_in"], facts["lives_in"]])
            country = index[(city, "in_country")].object
            block.append(render(rng.choice(RELATIONS["in_country"].statements), city, country))
            rng.shuffle(block)
            sentences += block
            summary.append(SUMMARY_FORMAT.format(name=person, **facts))
            key_facts += [person, *facts.values()]
        out.append(
            {
                "id": f"summarization-{i:05d}",
                "document": " ".join(sentences),
                "summary": " ".join(summary),
                "key_facts": list(dict.fromkeys(key_facts)),
                "tags": {"people": n_people, "length": "short" if n_people == 1 else "long"},
            }
        )
    return out


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
    person: str,
    hop: TwoHop,
    index: dict[tuple[str, str], Fact],
    rng: random.Random,
    cfg: WorldConfig | None = None,
) -> tuple[str, Fact, Fact]:
    """The chain-of-thought answer of ``hop`` for ``person`` (training statement phrasings) and its facts.

    With ``cfg.twohop_chain == "bridge"`` the first hop is :data:`BRIDGE_OPENINGS` (no subject)."""
    first = index[(person, hop.first)]
    second = index[(first.object, hop.second)]
    if cfg is not None and cfg.twohop_chain == "bridge":
        opening = render(BRIDGE_OPENINGS[hop.first], person, first.object)
    else:
        opening = render(rng.choice(RELATIONS[hop.first].statements), person, first.object)
    text = CHAIN_FORMAT.format(
        first=opening,
        second=render(rng.choice(RELATIONS[hop.second].statements), first.object, second.object),
        answer=second.object,
    )
    return text, first, second


def _chain_document(
    person: str, hop: TwoHop, index: dict[tuple[str, str], Fact], rng: random.Random, cfg: WorldConfig
) -> str:
    text, _, _ = _chain(person, hop, index, rng, cfg)
    return QA_FORMAT.format(question=render(rng.choice(hop.questions), person), answer=text)


def _twohop_task(
    cfg: WorldConfig,
    combos: list[tuple[str, TwoHop]],
    index: dict[tuple[str, str], Fact],
    rng: random.Random,
) -> list[dict[str, Any]]:
    out = []
    for person, hop in _sample(rng, combos, cfg.n_twohop):
        chain, first, second = _chain(person, hop, index, rng, cfg)
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
