"""The built-in knowledge world: determinism, popularity bookkeeping, held-out phrasings, task files."""

from __future__ import annotations

import collections
import hashlib
import json
import re
from pathlib import Path

import pytest

from slimkit.core.errors import ConfigError
from slimkit.data.factworld import (
    QA_FORMAT,
    RELATIONS,
    TASK_FILES,
    World,
    WorldConfig,
    build_world,
    generate_world,
    mention_count,
    read_documents,
)
from slimkit.data.factworld.templates import render, template_regex

SMALL = WorldConfig(
    n_people=40,
    n_cities=10,
    n_countries=3,
    n_companies=8,
    n_reading_docs=20,
    n_factoid=100,
    n_mc=30,
    n_retrieval=20,
    n_twohop=20,
    canaries_per_repeat=2,
)

FIELDS = {
    "factoid": {"id": str, "question": str, "answers": list, "tags": dict},
    "mc": {"id": str, "question": str, "options": list, "answer_index": int, "tags": dict},
    "retrieval": {"id": str, "context": str, "question": str, "answers": list, "tags": dict},
    "twohop": {"id": str, "question": str, "answers": list, "tags": dict},
    "canaries": {"id": str, "prefix": str, "secret": str, "repeats": int},
    "summarization": {"id": str, "document": str, "summary": str, "key_facts": list, "tags": dict},
}
TAGS = {
    "factoid": {"relation", "popularity", "popularity_half", "popularity_quartile", "template", "fact"},
    "mc": {
        "n_options",
        "relation",
        "popularity",
        "popularity_half",
        "popularity_quartile",
        "template",
        "fact",
    },
    "retrieval": {"context_facts", "context_length", "relation", "position", "template"},
    "twohop": {"hops", "composition", "bridge", "popularity", "popularity_half", "popularity_quartile"},
}


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(SMALL)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_world(tmp_path_factory.mktemp("fw") / "world", SMALL)


def _mentions(world: World) -> collections.Counter[str]:
    """Corpus documents that are exactly one rendering of a fact, counted per fact id."""
    rendering_to_fact = {}
    for f in world.facts:
        rel = RELATIONS[f.relation]
        for t in rel.statements:
            rendering_to_fact[render(t, f.subject, f.object)] = f.id
        for t in rel.questions:
            rendering_to_fact[QA_FORMAT.format(question=render(t, f.subject), answer=f.object)] = f.id
    return collections.Counter(
        rendering_to_fact[d] for d in world.corpus_documents() if d in rendering_to_fact
    )


def test_same_seed_gives_byte_identical_files_and_other_seed_differs(built: Path, tmp_path: Path) -> None:
    again = build_world(tmp_path / "again", SMALL)
    names = sorted(p.name for p in built.iterdir() if p.name != ".slimkit-output")  # the output marker
    expected = [
        "world.json",
        "corpus.txt",
        "heldout.txt",
        "heldout.answers.jsonl",
        "task_options.json",
        *(f"{t}.jsonl" for t in TASK_FILES),
    ]
    assert names == sorted(expected)
    for name in names:
        assert (built / name).read_bytes() == (again / name).read_bytes(), name
    other = build_world(tmp_path / "other", SMALL.replace(seed=1))
    assert (other / "corpus.txt").read_bytes() != (built / "corpus.txt").read_bytes()
    assert (other / "factoid.jsonl").read_bytes() != (built / "factoid.jsonl").read_bytes()


def test_corpus_counts_match_popularity_tags(world: World) -> None:
    counts = _mentions(world)
    for f in world.facts:
        assert counts[f.id] == f.count, f.id
    by_id = {f.id: f for f in world.facts}
    for record in world.tasks["factoid"] + world.tasks["mc"]:
        fact = by_id[record["tags"]["fact"]]
        assert record["tags"]["popularity"] == fact.count
        assert record["tags"]["popularity_half"] == fact.popularity_half


def test_rare_facts_appear_exactly_min_mentions_and_only_as_statements(world: World) -> None:
    rarest = [f for f in world.facts if f.count == SMALL.min_mentions]
    assert len(rarest) >= len(world.facts) // 10  # the long tail is real
    qa_docs = set(world.corpus_documents())
    for f in rarest:
        for t in RELATIONS[f.relation].questions:
            assert QA_FORMAT.format(question=render(t, f.subject), answer=f.object) not in qa_docs
    assert max(f.count for f in world.facts) == SMALL.max_mentions
    assert mention_count(SMALL.n_people, SMALL.n_people, SMALL) == SMALL.min_mentions


def test_halves_and_quartiles_order_by_popularity(world: World) -> None:
    halves = collections.Counter(f.popularity_half for f in world.facts)
    assert abs(halves["popular"] - halves["rare"]) <= 1
    rare_max = max(f.count for f in world.facts if f.popularity_half == "rare")
    popular_min = min(f.count for f in world.facts if f.popularity_half == "popular")
    assert rare_max <= popular_min
    quartile_means = [
        sum(f.count for f in world.facts if f.popularity_quartile == q)
        / sum(f.popularity_quartile == q for f in world.facts)
        for q in ("q1", "q2", "q3", "q4")
    ]
    assert quartile_means == sorted(quartile_means)


def test_heldout_phrasings_never_appear_in_corpus(world: World) -> None:
    lines = [line for d in world.corpus_documents() for line in d.split("\n")]
    corpus = "\n".join(lines)
    for rel in RELATIONS.values():
        for template in rel.heldout_questions:
            pattern = template_regex(template)
            assert not any(pattern.search(line) for line in lines), template
    for record in world.tasks["factoid"]:
        assert record["question"] not in corpus


def test_task_files_parse_with_documented_fields(built: Path) -> None:
    for name in TASK_FILES:
        records = [json.loads(line) for line in (built / f"{name}.jsonl").read_text().splitlines()]
        assert records, name
        assert len({r["id"] for r in records}) == len(records)
        for r in records:
            for key, kind in FIELDS[name].items():
                assert isinstance(r[key], kind), (name, key)
            if name in TAGS:
                assert TAGS[name] <= set(r["tags"]), name
            if "answers" in r:
                assert r["answers"] and all(isinstance(a, str) and a for a in r["answers"])
    world_json = json.loads((built / "world.json").read_text())
    assert WorldConfig.from_dict(world_json["config"]) == SMALL
    assert set(world_json) >= {"config", "entities", "facts"}
    assert len(read_documents(built / "corpus.txt")) == len(generate_world(SMALL).corpus_documents())
    assert read_documents(built / "heldout.txt")


def test_factoid_tags_and_qa_framing(world: World) -> None:
    quartiles = {r["tags"]["popularity_quartile"] for r in world.tasks["factoid"]}
    assert quartiles == {"q1", "q2", "q3", "q4"}
    assert all(r["tags"]["template"] == "heldout" for r in world.tasks["factoid"])
    qa = [d for d in world.corpus_documents() if d.startswith("Question: ")]
    assert qa and all(re.fullmatch(r"Question: [^\n]+\nAnswer: [^\n]+", d) for d in qa)


def test_mc_answer_index_valid_and_options_unique(world: World) -> None:
    counts = collections.Counter(r["tags"]["n_options"] for r in world.tasks["mc"])
    assert set(counts) == set(SMALL.mc_options)
    by_id = {f.id: f for f in world.facts}
    for r in world.tasks["mc"]:
        assert len(r["options"]) == r["tags"]["n_options"] == len(set(r["options"]))
        assert 0 <= r["answer_index"] < len(r["options"])
        assert r["options"][r["answer_index"]] == by_id[r["tags"]["fact"]].object


def test_retrieval_people_never_in_training_corpus(world: World) -> None:
    corpus_words = set(re.findall(r"\w+", "\n".join(world.corpus_documents())))
    surnames = {p.split()[-1] for p in world.unseen_people}
    assert surnames and not surnames & corpus_words
    lengths = collections.Counter(r["tags"]["context_facts"] for r in world.tasks["retrieval"])
    assert set(lengths) == set(SMALL.retrieval_context_facts)
    for r in world.tasks["retrieval"]:
        assert r["answers"][0] in r["context"]
        assert r["context"].count(". ") + 1 == r["tags"]["context_facts"]


def test_twohop_answers_compose_two_facts(world: World) -> None:
    for r in world.tasks["twohop"]:
        first, second = r["tags"]["composition"].split(".")
        subject = next(p for p in world.entities["person"] if r["question"].find(p) >= 0)
        bridge = world.fact(subject, first).object
        assert bridge == r["tags"]["bridge"]
        assert r["answers"] == [world.fact(bridge, second).object]


def test_canary_repeat_counts_exact(world: World) -> None:
    corpus = "\n\n".join(world.corpus_documents())
    canaries = world.tasks["canaries"]
    assert collections.Counter(c["repeats"] for c in canaries) == {
        k: SMALL.canaries_per_repeat for k in SMALL.canary_repeats
    }
    for c in canaries:
        assert corpus.count(c["secret"]) == c["repeats"]
        assert corpus.count(f"{c['prefix']} {c['secret']}") == c["repeats"]


def test_names_unique_and_not_prefixes(world: World) -> None:
    words = sorted(
        {w.lower() for kind in ("city", "country") for w in world.entities[kind]}
        | {p.split()[-1].lower() for p in world.entities["person"] + world.unseen_people}
        | {c.split()[0].lower() for c in world.entities["company"]}
    )
    assert len(set(world.entities["person"])) == len(world.entities["person"])
    for a, b in zip(words, words[1:], strict=False):
        assert not b.startswith(a), (a, b)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_people", 0),
        ("n_cities", -1),
        ("n_companies", 0),
        ("n_factoid", 0),
        ("n_mc", -3),
        ("max_mentions", 0),
        ("canaries_per_repeat", 0),
        ("n_countries", 99),
        ("popularity_exponent", 0.0),
        ("qa_fraction", 1.5),
        ("mc_options", (1, 4)),
        ("canary_repeats", ()),
        ("n_reading_docs", -1),
    ],
)
def test_bad_sizes_raise_config_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        WorldConfig(**{field: value})


def test_config_round_trips_through_json() -> None:
    assert WorldConfig.from_json(SMALL.to_json()) == SMALL


# -- held-out text that is held out (issue 13 item 4) ------------------------------------------------------
# sha256 of the default world's corpus.txt and factoid.jsonl as generator version 4 first wrote them
CORPUS_V4_DIGEST = "249d6fa17bdc9733"
FACTOID_V4_DIGEST = "eb97a582101813bc"


def test_no_heldout_document_is_or_is_inside_a_corpus_document(world: World) -> None:
    corpus = world.corpus_documents()
    as_set = set(corpus)
    heldout = world.heldout_documents()
    assert len(heldout) == len(world.facts)
    for doc in heldout:
        assert doc not in as_set
        assert not any(doc in d for d in corpus if len(d) >= len(doc)), doc
    # and the default world too (the v3 text had 269 of its 398 documents in corpus.txt)
    default = generate_world(WorldConfig())
    assert not set(default.heldout_documents()) & set(default.corpus_documents())


def test_heldout_subjects_follow_the_training_distribution(world: World) -> None:
    """Fact shares in the held-out text match the corpus's (count / total), not a uniform draw."""
    spans = world.heldout_answer_spans()
    seen = collections.Counter(s["fact"] for s in spans)
    total_count = sum(f.count for f in world.facts)
    n = len(spans)
    by_count: dict[int, list[str]] = collections.defaultdict(list)
    for f in world.facts:
        by_count[f.count].append(f.id)
    # per count level: observed share of mentions vs the training share (levels with >= 20 expected)
    checked = 0
    for count, ids in by_count.items():
        expected = n * count * len(ids) / total_count
        if expected < 20:
            continue
        observed = sum(seen[i] for i in ids)
        assert abs(observed - expected) < 4 * expected**0.5 + 2, (count, observed, expected)
        checked += 1
    assert checked >= 2
    # a uniform draw would give the rarest facts about n / len(facts) mentions each: far more
    rare = [f.id for f in world.facts if f.count == SMALL.min_mentions]
    popular = [f.id for f in world.facts if f.count == SMALL.max_mentions]
    rare_rate = sum(seen[i] for i in rare) / len(rare)
    popular_rate = sum(seen[i] for i in popular) / len(popular)
    assert popular_rate > 5 * rare_rate


def test_heldout_answer_spans_point_at_each_facts_object(world: World, built: Path) -> None:
    text = "\n\n".join(world.heldout_documents())
    by_id = {f.id: f for f in world.facts}
    spans = world.heldout_answer_spans()
    assert len(spans) == 3 * len(world.heldout_documents())
    for s in spans:
        assert text[s["start"] : s["end"]] == by_id[s["fact"]].object
    on_disk = [json.loads(line) for line in (built / "heldout.answers.jsonl").read_text().splitlines()]
    assert on_disk == spans
    file_text = (built / "heldout.txt").read_text()
    assert all(file_text[s["start"] : s["end"]] == by_id[s["fact"]].object for s in on_disk)


def test_new_files_leave_corpus_and_other_tasks_unchanged() -> None:
    """Held-out text and summarization use their own RNG streams: the corpus (and so the default
    model) and every other task file are what generator version 4 always wrote."""
    world = generate_world(WorldConfig())

    corpus_txt = "\n\n".join(world.corpus_documents()) + "\n"  # corpus.txt's bytes
    assert hashlib.sha256(corpus_txt.encode()).hexdigest()[:16] == CORPUS_V4_DIGEST
    factoid = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in world.tasks["factoid"])
    assert hashlib.sha256(factoid.encode()).hexdigest()[:16] == FACTOID_V4_DIGEST


def test_summarization_passages_are_about_fresh_people(world: World) -> None:
    corpus = "\n".join(world.corpus_documents())
    people = set(world.entities["person"]) | set(world.unseen_people)
    records = world.tasks["summarization"]
    assert {r["tags"]["people"] for r in records} == {1, 2}
    for r in records:
        names = r["key_facts"][:1]
        assert names[0] not in corpus and names[0] not in people
        assert all(k in r["document"] for k in r["key_facts"])
        assert all(k in r["summary"] for k in r["key_facts"])
        assert len(r["summary"]) < len(r["document"])
