"""Relations of the knowledge world and the sentences that express them.

Each relation has training statement paraphrases (the corpus; ``heldout.txt`` recombines them into
unseen documents), training question phrasings (used for the QA pairs in the corpus) and HELD-OUT
question phrasings (used only by the task files, never in the corpus). ``{s}`` is the subject, ``{o}``
the object.
No sentence of the corpus matches a held-out phrasing (a test checks this with :func:`template_regex`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QA_FORMAT = "Question: {question}\nAnswer: {answer}"
"""How a question-answer pair is written in the corpus; the evaluator prompts with the part before the answer."""

PROMPT_FORMAT = "Question: {question}\nAnswer:"
"""The closed-book evaluation prompt; the answer is generated greedily up to the first newline."""

RETRIEVAL_PROMPT_FORMAT = "{context}\nQuestion: {question}\nAnswer:"
"""The open-book prompt of ``retrieval.jsonl`` (and the layout of the corpus reading documents)."""

CHAIN_ANSWER_MARKER = "So the answer is"
"""Where a two-hop chain-of-thought answer states its final answer."""

CHAIN_FORMAT = "{first} {second} " + CHAIN_ANSWER_MARKER + " {answer}."
"""A two-hop answer written out hop by hop: ``"Ada Vell was born in Lorin. Lorin lies in Veda. So the
answer is Veda."``. The corpus answers some compositional questions this way; the task asks the others.
(Shorter chains that leave the second hop unsaid, "... Lorin. So the answer is Veda.", scored higher
on two-hop questions but taught the 4-minute model to answer "Who does X work for?" with a city.)"""

BRIDGE_OPENINGS: dict[str, str] = {
    "born_in": "Born in {o}.",
    "lives_in": "Lives in {o}.",
    "works_for": "Works for {o}.",
}
"""The first hop of a ``twohop_chain="bridge"`` answer: ``"Born in Lorin. Lorin lies in Veda. So the answer
is Veda."``. It names only the bridge entity, so a model that cannot copy the subject's name from the
question still reaches the bridge by recall; the opening words are used by no closed-book answer, so
a closed-book question never starts a chain."""

QUOTE_FORMAT = "{sentence} " + CHAIN_ANSWER_MARKER + " {answer}."
"""An open-book answer that first quotes the passage's sentence, then concludes: ``"Ada Vell was born in
Lorin. So the answer is Lorin."`` (corpus reading documents answer this way)."""

SUMMARY_FORMAT = (
    "{name} was born in {birth_year} in {born_in}, lives in {lives_in} and works for {works_for}."
)
"""The reference summary of one person in a summarization passage (``summarization.jsonl``)."""

WORLD_SUMMARY_TEMPLATE = (
    "Summarize the passage: for each person, one sentence with their birth year, birthplace, home "
    "city and employer.\n\n{document}\n\nSummary:"
)
"""The world's summarization prompt (shipped in ``task_options.json``); LLM-KICK's asks for a story
summary "in less than 150 words", which says nothing of what a summary of facts should keep."""


@dataclass(frozen=True)
class Relation:
    """One relation: subject kind -> object kind, and its phrasings."""

    name: str
    subject_kind: str  # "person" | "city" | "country" | "company"
    object_kind: str  # "city" | "country" | "company" | "year"
    statements: tuple[str, ...]
    questions: tuple[str, ...]
    heldout_questions: tuple[str, ...]


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in (
        Relation(
            "born_in",
            "person",
            "city",
            statements=("{s} was born in {o}.", "{s} is a native of {o}.", "The birthplace of {s} is {o}."),
            questions=(
                "Where was {s} born?",
                "What is the birthplace of {s}?",
                "In what city was {s} born?",
            ),
            heldout_questions=("In which city was {s} born?", "What city was {s} born in?"),
        ),
        Relation(
            "lives_in",
            "person",
            "city",
            statements=("{s} lives in {o}.", "{s} is a resident of {o}.", "{s} makes a home in {o}."),
            questions=("Where does {s} live?", "Which city does {s} reside in?", "Where is {s} living now?"),
            heldout_questions=("In which city does {s} live?", "What city does {s} live in?"),
        ),
        Relation(
            "works_for",
            "person",
            "company",
            statements=("{s} works for {o}.", "{s} is employed by {o}.", "{s} has a job at {o}."),
            questions=("Who does {s} work for?", "Which company employs {s}?", "Where does {s} work?"),
            heldout_questions=("What company does {s} work for?", "For which company does {s} work?"),
        ),
        Relation(
            "birth_year",
            "person",
            "year",
            statements=(
                "{s}'s year of birth is {o}.",
                "The birth year of {s} is {o}.",
                "In {o}, {s} was born.",
            ),
            questions=(
                "In what year was {s} born?",
                "What is the birth year of {s}?",
                "{s} was born in what year?",
            ),
            heldout_questions=("In which year was {s} born?", "Which year was {s} born in?"),
        ),
        Relation(
            "in_country",
            "city",
            "country",
            statements=("{s} is a city in {o}.", "{s} lies in {o}.", "The city of {s} is located in {o}."),
            questions=(
                "In which country is {s}?",
                "Which country is {s} located in?",
                "To which country does {s} belong?",
            ),
            heldout_questions=("What country is {s} in?", "In what country is {s} located?"),
        ),
        Relation(
            "capital",
            "country",
            "city",
            statements=(
                "The capital of {s} is {o}.",
                "{o} is the capital of {s}.",
                "{s} is governed from {o}.",
            ),
            questions=(
                "What is the capital of {s}?",
                "Which city is the capital of {s}?",
                "Which city is {s} governed from?",
            ),
            heldout_questions=("What city is the capital of {s}?", "Name the capital of {s}."),
        ),
        Relation(
            "founded_in",
            "company",
            "year",
            statements=(
                "{s} was founded in {o}.",
                "{s} was established in {o}.",
                "{s} opened its doors in {o}.",
            ),
            questions=(
                "When was {s} founded?",
                "In what year was {s} established?",
                "When did {s} open its doors?",
            ),
            heldout_questions=("In which year was {s} founded?", "What year was {s} founded in?"),
        ),
        Relation(
            "headquartered_in",
            "company",
            "city",
            statements=(
                "{s} is headquartered in {o}.",
                "The headquarters of {s} are in {o}.",
                "{s} has its main office in {o}.",
            ),
            questions=(
                "Where is {s} headquartered?",
                "Where are the headquarters of {s}?",
                "Where is the main office of {s}?",
            ),
            heldout_questions=(
                "In which city is {s} headquartered?",
                "What city is {s} headquartered in?",
            ),
        ),
    )
}


@dataclass(frozen=True)
class TwoHop:
    """A composition ``first`` then ``second``: the answer is the object of ``second`` applied to the
    object of ``first``."""

    name: str
    first: str
    second: str
    questions: tuple[str, ...]


TWO_HOPS: tuple[TwoHop, ...] = (
    TwoHop("born_in.in_country", "born_in", "in_country", ("In which country was {s} born?",)),
    TwoHop("lives_in.in_country", "lives_in", "in_country", ("In which country does {s} live?",)),
    TwoHop(
        "works_for.headquartered_in",
        "works_for",
        "headquartered_in",
        ("Which city hosts the headquarters of the employer of {s}?",),
    ),
)

CANARY_KINDS: tuple[str, ...] = ("phone", "email")
CANARY_PREFIXES: dict[str, str] = {
    "phone": "The private phone number of {name} is",
    "email": "The private email address of {name} is",
}


def render(template: str, subject: str, obj: str | int | None = None) -> str:
    """Fill a template: ``render("{s} lives in {o}.", "Ada Kel", "Voro") == "Ada Kel lives in Voro."``."""
    return template.replace("{s}", subject).replace("{o}", "" if obj is None else str(obj))


def template_regex(template: str) -> re.Pattern[str]:
    """A regex matching any filling of ``template`` (each placeholder matches a non-empty run)."""
    pieces = re.split(r"(\{s\}|\{o\})", template)
    return re.compile("".join(".+?" if p in ("{s}", "{o}") else re.escape(p) for p in pieces))
