"""The world's opt-in reader options (issue 13 item 5), the reader recipe and the copy probe."""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import pytest

from slimkit.core.errors import ConfigError
from slimkit.data.factworld import DOCUMENT_SEPARATOR, QA_FORMAT, RELATIONS, WorldConfig, generate_world
from slimkit.data.factworld.build import build_world, task_options
from slimkit.data.factworld.config import READER_DEFAULTS
from slimkit.data.factworld.templates import BRIDGE_OPENINGS, CHAIN_ANSWER_MARKER, render, template_regex

SMALL = dict(
    n_people=40,
    n_cities=10,
    n_countries=3,
    n_companies=8,
    n_factoid=100,
    n_mc=30,
    n_retrieval=20,
    n_twohop=20,
    canaries_per_repeat=2,
)

# sha256 of every file the default world wrote before the reader options existed (commit 7719a8b)
DEFAULT_FILES_SHA256 = {
    "canaries.jsonl": "a15cc9b895e5d7405bf70ad4582febc0c2d5622aae6c90a483e36fe2db01efdf",
    "corpus.txt": "249d6fa17bdc973371764dac2ebb93959bf387eff1b35475605706172937c37d",
    "factoid.jsonl": "eb97a582101813bc72168b5e2fa8ecf53b30bff2875497c0d34000126910201e",
    "heldout.answers.jsonl": "26e7923c5421bb232ef4d76c7c0c9bcb787e6d0b078e5bb622ad695b1c9ebb45",
    "heldout.txt": "1232c9df581da261ab3d4339ab947260fd2a121a7a75b07a69d8a360cacfe9da",
    "mc.jsonl": "c1735b0d71689fc58fb0b907b832147b692965a0063c87bd89c9c4faa86ff6cc",
    "retrieval.jsonl": "d32cb1dd93ff363d8217472d648ea404832ee24da2d3ffa56af977acaada96c6",
    "summarization.jsonl": "bc675dc19da8a0a786398ec0d262a03d82e648735538af83118e6109d7fcf116",
    "task_options.json": "2adf9a6da1e9a27e2384d3b3e8e44050ad83766aef6c95de00745f7b37baec73",
    "twohop.jsonl": "2d46103f4f06c924400a7037cff9cbc18600cfa62ede96b271f8071a20387844",
    "world.json": "736aa19317447b8b8be3a22225c6dc5f8d39dd92572b3999f804a2b9afc7770b",
}
# a small world with (quoting) reading documents, as it was generated before the reader options
READING_CORPUS_DIGEST = "f7842f3d1bb57765"
READING_TASKS_DIGEST = "be2dfb21dede4280"
DEFAULT_MODEL_FINGERPRINT = "8335970425"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_default_world_files_are_byte_identical(tmp_path: Path) -> None:
    path = build_world(tmp_path / "w", WorldConfig())
    got = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in path.iterdir() if f.name[0] != "."}
    assert got == DEFAULT_FILES_SHA256


def test_default_config_serialises_without_reader_options() -> None:
    d = WorldConfig().to_dict()
    assert not set(READER_DEFAULTS) & set(d)
    on = WorldConfig(twohop_chain="bridge", corpus_repeats=2).to_dict()
    assert on["twohop_chain"] == "bridge" and on["corpus_repeats"] == 2 and "qa_per_fact" not in on
    assert WorldConfig.from_dict(on) == WorldConfig(twohop_chain="bridge", corpus_repeats=2)


def test_worlds_with_quoting_reading_documents_are_unchanged() -> None:
    world = generate_world(WorldConfig(**SMALL, n_reading_docs=20))
    assert _digest(DOCUMENT_SEPARATOR.join(world.corpus_documents())) == READING_CORPUS_DIGEST
    assert _digest(json.dumps(world.tasks, sort_keys=True)) == READING_TASKS_DIGEST


def test_default_model_fingerprint_is_unchanged() -> None:
    from slimkit.models.default import DEFAULT_RECIPE

    assert DEFAULT_RECIPE.fingerprint() == DEFAULT_MODEL_FINGERPRINT


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reading_answer", "copy"),
        ("reading_questions", 0),
        ("reading_questions", 9),
        ("reading_max_facts", -1),
        ("reading_max_facts", 65),
        ("n_copy_docs", -1),
        ("copy_words", 1),
        ("copy_words", 65),
        ("twohop_chain", "short"),
        ("qa_per_fact", -1),
        ("qa_per_fact", 17),
        ("corpus_repeats", 0),
        ("corpus_repeats", 101),
    ],
)
def test_bad_reader_options_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        WorldConfig(**{field: value})


READER = dict(
    SMALL,
    n_reading_docs=30,
    reading_answer="bare",
    reading_questions=3,
    reading_max_facts=6,
    n_copy_docs=12,
    copy_words=5,
    twohop_chain="bridge",
    qa_per_fact=1,
    corpus_repeats=3,
)


@pytest.fixture(scope="module")
def reader_world():
    return generate_world(WorldConfig(**READER))


def test_reader_world_is_deterministic(reader_world) -> None:
    again = generate_world(WorldConfig(**READER))
    assert again.corpus_documents() == reader_world.corpus_documents()
    assert again.tasks == reader_world.tasks
    other = generate_world(WorldConfig(**{**READER, "seed": 1}))
    assert other.corpus_documents() != reader_world.corpus_documents()


def _reading_docs(world) -> list[str]:
    return [d for d in world.corpus_documents() if not d.startswith("Question:") and "\nQuestion:" in d]


def test_bare_reading_documents_ask_facts_of_their_passage(reader_world) -> None:
    docs = _reading_docs(reader_world)
    assert len(docs) == READER["n_reading_docs"]  # each written once despite corpus_repeats
    asked = []
    for doc in docs:
        passage, *qas = doc.split("\nQuestion: ")
        assert 1 <= passage.count(". ") + 1 <= READER["reading_max_facts"]
        assert len(qas) == min(READER["reading_questions"], passage.count(". ") + 1)
        asked.append(len(qas))
        for qa in qas:
            question, answer = qa.split("\nAnswer: ")
            assert CHAIN_ANSWER_MARKER not in answer and answer in passage
            # a training phrasing (never a held-out one) about a person of the passage
            assert any(template_regex(q).fullmatch(question) for r in RELATIONS.values() for q in r.questions)
    assert max(asked) == READER["reading_questions"]  # passages long enough get every question
    options = task_options(WorldConfig(**READER))["retrieval"]
    assert "answer_marker" not in options  # the retrieval task then scores the bare first line


def test_copy_documents_repeat_their_first_half(reader_world) -> None:
    words = {*reader_world.entities["city"], *reader_world.entities["country"]}
    copies = [d for d in reader_world.corpus_documents() if d.count(". ") == 1 and "Question" not in d]
    copies = [d for d in copies if d.split(". ")[0] + "." == d.split(". ")[1]]
    assert len(copies) == READER["n_copy_docs"]
    assert any(w in c for c in copies for w in words)


def test_bridge_chains_do_not_copy_the_subject(reader_world) -> None:
    chains = [d for d in reader_world.corpus_documents() if CHAIN_ANSWER_MARKER in d]
    assert chains
    for doc in chains:
        question, answer = doc.split("\nAnswer: ")
        assert any(answer.startswith(b.split("{o}")[0]) for b in BRIDGE_OPENINGS.values())
        surname = question.rstrip("?").split()[-1]
        assert surname not in answer  # the subject is never written out
    for record in reader_world.tasks["twohop"]:  # the task's chains (few-shot answers) are bridges too
        bridge = record["tags"]["bridge"]
        assert record["chain"].split(". ")[0] in {
            b.replace("{o}", bridge)[:-1] for b in BRIDGE_OPENINGS.values()
        }
        assert record["chain"].endswith(f"{CHAIN_ANSWER_MARKER} {record['answers'][0]}.")


def test_qa_per_fact_gives_every_fact_the_same_question_exposure(reader_world) -> None:
    counts = collections.Counter(reader_world.corpus_documents())
    repeats = READER["corpus_repeats"]
    for fact in reader_world.facts:
        rel = RELATIONS[fact.relation]
        qa = sum(
            counts[QA_FORMAT.format(question=render(q, fact.subject), answer=fact.object)]
            for q in rel.questions
        )
        statements = sum(counts[render(t, fact.subject, fact.object)] for t in rel.statements)
        assert qa == READER["qa_per_fact"] * repeats
        assert statements == fact.count * repeats
    assert {f.popularity_half for f in reader_world.facts} == {"popular", "rare"}


def test_corpus_repeats_repeats_the_world_documents_only() -> None:
    once = generate_world(
        WorldConfig(**{**READER, "corpus_repeats": 1, "n_reading_docs": 0, "n_copy_docs": 0})
    )
    thrice = generate_world(WorldConfig(**{**READER, "n_reading_docs": 0, "n_copy_docs": 0}))
    a, b = collections.Counter(once.corpus_documents()), collections.Counter(thrice.corpus_documents())
    assert b == collections.Counter({d: 3 * c for d, c in a.items()})


def test_recipe_world_options_are_validated_and_hashed() -> None:
    from slimkit.models.default import DEFAULT_RECIPE, DefaultModelRecipe
    from slimkit.models.reader import READER_RECIPE

    with pytest.raises(ConfigError, match="seed"):
        DefaultModelRecipe(world={"seed": 3})
    with pytest.raises(ConfigError, match="corpus_repeats"):
        DefaultModelRecipe(world={"corpus_repeats": 0})
    assert READER_RECIPE.fingerprint() != DEFAULT_RECIPE.fingerprint()
    assert READER_RECIPE.world_config().reading_answer == "bare"
    assert DefaultModelRecipe.from_dict(READER_RECIPE.to_dict()) == READER_RECIPE


def test_induction_accuracy_separates_a_copier_from_its_floor() -> None:
    import torch

    from slimkit.models.reader import induction_accuracy

    class Tok:
        vocab = {w: i for i, w in enumerate(["a", "b", "c", "d", "e", "f", "."])}

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [self.vocab[w] for w in text.replace(".", " .").split()]}

    class Copier(torch.nn.Module):
        """Predicts, at each position, the token that followed the previous occurrence of the current one."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, ids):
            seq = ids[0].tolist()
            logits = torch.zeros(1, len(seq), 7)
            for p, t in enumerate(seq):
                prev = [q for q in range(p) if seq[q] == t]
                logits[0, p, seq[prev[-1] + 1] if prev else 0] = 1.0
            return type("Out", (), {"logits": logits})

    copy, floor = induction_accuracy(Copier(), Tok(), ["a", "b", "c", "d", "e", "f"], n=16, length=6)
    assert copy > floor + 0.3


def test_copy_probe_trains_and_scores_a_tiny_recipe() -> None:
    from slimkit.models.default import DefaultModelRecipe
    from slimkit.models.reader import PROBE_GATE, copy_probe

    world = {k: v for k, v in READER.items() if k not in ("corpus_repeats",)}
    recipe = DefaultModelRecipe(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=2,
        num_kv_heads=2,
        seqlen=64,
        world=world,
        train={"steps": 20, "batch_size": 2, "seqlen": 64, "warmup_steps": 4, "log_every": 10},
    )
    result = copy_probe(recipe, steps=3, n_passages=5)
    assert result.steps == 3 and result.n_passages == 5
    assert 0.0 <= result.induction <= 1.0 and 0.0 <= result.induction_floor <= 1.0
    assert 0.0 <= result.retrieval_short <= 1.0 and result.corpus_tokens > 0
    gate = (
        result.induction >= PROBE_GATE["induction"]
        and result.retrieval_short >= PROBE_GATE["retrieval_short"]
    )
    assert result.passed == gate
    with pytest.raises(ConfigError, match="steps"):
        copy_probe(recipe, steps=0)
