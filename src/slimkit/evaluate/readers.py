"""Real evaluation datasets: local files -> the task records of the LLM-KICK suite.

LLM-KICK (Jaiswal et al., "Compressing LLMs: The Truth is Rarely Pure and Never Simple",
arXiv 2310.01382) evaluates compressed LLMs on five knowledge-intensive tasks. Each reader here turns
the files of one public dataset into the plain JSON-safe records the tasks consume:

==============================  ================================  ======================================
spec                            tasks                             dataset (as LLM-KICK used it)
==============================  ================================  ======================================
``freebaseqa:FILE.json``        ``factoid``                       FreebaseQA (closed-book factoid QA)
``mmlu:DIR``                    ``mc``                            MMLU, Hendrycks CSVs, k-shot prompts
``triviaqa:FILE.json[l]``       ``retrieval`` + ``factoid``       TriviaQA rc: open- and closed-book
``cnndm:FILE|DIR``              ``summarization``                 CNN/DailyMail (.jsonl/.parquet/.csv,
                                                                  or a directory of ``.story`` files)
``vicuna:FILE.jsonl``           ``instruct``                      Vicuna-bench / MT-Bench questions
``DIR`` or ``slimkit:DIR``      one per ``<task>.jsonl`` file     slimkit's own JSONL (factworld)
``jsonl:TASK:FILE``             ``TASK``                          one slimkit JSONL file
==============================  ================================  ======================================

Record formats (``tags`` is a flat ``{name: str | int}`` dict; scores are also reported per value)::

    factoid / twohop  {"id", "question", "answers": [str, ...], "tags"}
    mc                {"id", "question", "options": [str, ...], "answer_index": int, "tags",
                       "prompt"?: the complete prompt; the option follows after one space}
    retrieval         {"id", "context", "question", "answers": [str, ...], "tags"}
    summarization     {"id", "document", "summary", "tags"}
    instruct          {"id", "instruction", "reference"?, "tags": {"category": ...}}

What each reader reproduces of LLM-KICK's protocol:

* FreebaseQA: question = ``RawQuestion``; answers = every ``AnswersName`` of every parse, in order,
  without duplicates.
* MMLU: the Hendrycks prompt, ``"The following are multiple choice questions (with answers) about
  {subject}.\\n\\n"`` + ``shots`` (default 5) dev examples ``"{q}\\nA. {a}\\nB. ...\\nAnswer: {X}\\n\\n"``
  + the test question ending ``"Answer:"``; options ``["A", "B", "C", "D"]``. LLM-KICK also drops
  shots while the prompt exceeds 2048 tokens; that needs the tokenizer and is the task's business.
* TriviaQA: context = the first Wikipedia page + the first web search result, concatenated without a
  separator and cut to ``max_context_chars`` = 3072 characters; answers = ``Aliases`` + ``Value``.
* CNN/DailyMail: ``length`` tag = word-count tertile of the article within the file (LLM-KICK scored 30
  small, 30 mid and 30 large stories; ``per_length=30`` picks the first 30 of each).

Each reader also ships the task options LLM-KICK used for its dataset (:func:`reader_task_options`;
the ``kick`` suite applies them, and a user's ``task_options`` override them), and groups scores by
the dataset's own tags, so that difficulty axes exist on real data:

==============  ==========================================================  =====================
dataset         prompt, generation                                          headline / groups
==============  ==========================================================  =====================
FreebaseQA      ``"Please give answer to this question: {question}\nThe      ``contains`` /
                answer is "``, up to 2 new tokens per prompt token (its     ``parses``
                ``max_length`` = 3x the prompt), not cut at a newline
TriviaQA        retrieval: ``KICK_RETRIEVAL_TEMPLATE``, 32 new tokens,      ``lenient`` /
                first line; closed book: ``"Answer these questions:\n\nQ:   ``context_chars``,
                {question}\nA:"``, 32 new tokens                            ``answer_type``,
                                                                            ``answer_in_context``
MMLU            the k-shot Hendrycks prompt (in the records)                ``accuracy`` /
                                                                            ``subject``
==============  ==========================================================  =====================

LLM-KICK's FreebaseQA containment also searched the prompt it had echoed (an answer quoted in the
question counted); here only the generated text is searched.

Every wrong layout raises :class:`DataError` naming the file, the record or line, the missing fields
and the expected layout; a source that yields no records is a DataError too. A new dataset registers
its reader with :func:`register_reader`; nothing here dispatches with an ``if`` chain.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from slimkit.core.errors import ConfigError, DataError
from slimkit.core.io import parse_json, read_text_file
from slimkit.data.sources import jsonl_rows
from slimkit.evaluate.tasks import RECORD_FORMATS
from slimkit.evaluate.tasks.retrieval import KICK_RETRIEVAL_TEMPLATE

Record = dict[str, Any]
TaskData = dict[str, list[Record]]
Reader = Callable[..., TaskData]
"""``reader(rest, **options) -> {task: records}`` for a ``scheme:rest`` spec."""

MMLU_CHOICES = ("A", "B", "C", "D")
MMLU_SPLITS = ("test", "val")  # dev rows are the shots, never the questions
TRIVIAQA_MAX_CONTEXT_CHARS = 3072  # LLM-KICK's cut: context[:3072]
TRIVIAQA_SHORT_CONTEXT_CHARS = 1024
"""A TriviaQA context shorter than this (after the cut) is tagged ``context_chars="short"``."""
CNNDM_LENGTHS = ("small", "mid", "large")

# The record format each slimkit task file holds (twohop questions are factoid records); the formats
# and their checks live with the tasks, so a reader and a task never disagree on a layout.
TASK_RECORD_KINDS: dict[str, str] = {task: fmt.kind for task, fmt in RECORD_FORMATS.items()}
RECORD_LAYOUTS: dict[str, str] = {fmt.kind: fmt.layout for fmt in RECORD_FORMATS.values()}

FREEBASEQA_LAYOUT = (
    '{"Questions": [{"Question-ID": str, "RawQuestion": str, '
    '"Parses": [{"Answers": [{"AnswersName": [str, ...]}]}]}]}'
)
MMLU_LAYOUT = (
    "DIR/test/<subject>_test.csv (or val/<subject>_val.csv) and DIR/dev/<subject>_dev.csv, "
    "headerless CSV rows: question,A,B,C,D,answer_letter"
)
TRIVIAQA_LAYOUT = (
    'the TriviaQA rc file qa/<domain>-<split>.json = {"Data": [{"QuestionId": str, "Question": str, '
    '"Answer": {"Value": str, "Aliases": [str, ...]}, "EntityPages": [{"Filename": str}], '
    '"SearchResults": [{"Filename": str}] (optional)}]} with evidence/wikipedia/ and evidence/web/ '
    'beside qa/; or Hugging Face trivia_qa rc rows {"question": str, "answer": {"value": str, '
    '"aliases": [str, ...]}, "entity_pages": {"wiki_context": [str, ...]}, '
    '"search_results": {"search_context": [str, ...]}} as JSON or JSONL'
)
CNNDM_LAYOUT = (
    "rows with columns article (str), highlights (str) and optionally id, as .jsonl, .parquet or "
    ".csv with a header; or a directory of CNN .story files (article, then '@highlight' blocks)"
)
VICUNA_LAYOUT = (
    '{"question_id": int|str, "category": str, "text": str} per line (Vicuna bench), '
    'or "turns": [str, ...] instead of "text" (MT-Bench; the first turn is used)'
)

KICK_FREEBASEQA_TEMPLATE = "Please give answer to this question: {question}\nThe answer is "
KICK_CLOSED_BOOK_TEMPLATE = "Answer these questions:\n\nQ: {question}\nA:"
FEWSHOT_SPLIT = ":fewshot"
"""A reader's ``"<task>:fewshot"`` records: a dev split the task's few-shot examples are drawn from."""

_READERS: dict[str, Reader] = {}
_READER_OPTIONS: dict[str, dict[str, dict[str, Any]]] = {}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_+-]+):(.*)$")  # >= 2 letters, so "C:\\x" is a path


# -- the registry -----------------------------------------------------------------------------------------
def register_reader(
    scheme: str, *, task_options: dict[str, dict[str, Any]] | None = None
) -> Callable[[Reader], Reader]:
    """Decorator: make ``"{scheme}:{rest}"`` specs call ``reader(rest, **options)``.

    The reader returns ``{task name: [record, ...]}`` (and optionally ``"<task>:fewshot"`` records, a
    dev split for few-shot examples); its keyword-only parameters are the options
    :func:`load_task_data` accepts for that scheme. ``task_options`` (``{task: {option: value}}``)
    are the task settings the dataset is evaluated with by default (its prompt template, generation
    length, headline metric, tags to group by). Registering a taken scheme raises ``ValueError``.
    """
    if not _SCHEME.match(f"{scheme}:"):
        raise ValueError(f"reader scheme {scheme!r} must be letters, digits, '_', '+' or '-' (2+ chars)")

    def decorate(reader: Reader) -> Reader:
        if scheme in _READERS:
            raise ValueError(f"reader scheme {scheme!r} is already registered")
        _READERS[scheme] = reader
        _READER_OPTIONS[scheme] = {task: dict(o) for task, o in (task_options or {}).items()}
        return reader

    return decorate


def reader_task_options(spec: str | Path) -> dict[str, dict[str, Any]]:
    """The task options the reader of ``spec`` ships (``{}`` for a bare path or an unknown scheme)."""
    text = str(spec)
    match = _SCHEME.match(text) if not Path(text).exists() else None
    if match is None:
        return {}
    return {task: dict(o) for task, o in _READER_OPTIONS.get(match.group(1), {}).items()}


def reader_names() -> list[str]:
    """The registered ``scheme:`` prefixes of :func:`load_task_data` specs."""
    return sorted(_READERS)


def load_task_data(spec: str | Path, **options: Any) -> TaskData:
    """Read an evaluation dataset into ``{task name: records}`` (see the module docstring).

    Args:
        spec: ``scheme:PATH`` (``freebaseqa``, ``mmlu``, ``triviaqa``, ``cnndm``, ``vicuna``,
            ``slimkit``, ``jsonl:TASK:PATH``, or any registered scheme), or a bare path: a directory of
            ``<task>.jsonl`` files or one such file.
        **options: the reader's keyword options, e.g. ``shots=0`` for ``mmlu``; every reader takes
            ``limit`` (keep the first N questions; for ``mmlu``, per subject).

    Returns:
        Task name -> list of validated records, each task non-empty.

    Raises:
        DataError: unknown scheme (the message lists the known ones), missing file, wrong layout
            (naming the file, record and expected fields), or no records at all.
        ConfigError: an option the reader does not take, or a bad option value.
    """
    text = str(spec)
    match = _SCHEME.match(text) if not Path(text).exists() else None
    if match is None:
        scheme, rest = "slimkit", text
    else:
        scheme, rest = match.group(1), match.group(2)
        if scheme not in _READERS:
            raise DataError(
                f"{text}: unknown dataset scheme {scheme!r}; known: {[f'{n}:PATH' for n in reader_names()]} "
                "or a directory of <task>.jsonl files"
            )
    reader = _READERS[scheme]
    accepted = [p.name for p in inspect.signature(reader).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"{scheme}: unknown option(s) {unknown}; this reader takes {accepted}")
    data = reader(rest, **options)
    for task, records in data.items():
        validate_records(task.removesuffix(FEWSHOT_SPLIT), records, source=text)
    return data


# -- record validation -----------------------------------------------------------------------------------
def validate_records(task: str, records: Sequence[Record], *, source: str) -> None:
    """Check ``records`` against the format of ``task`` (:data:`slimkit.evaluate.tasks.RECORD_FORMATS`).

    Raises:
        DataError: unknown task, no records, a missing or mistyped field, an empty answer list,
            ``answer_index`` out of range, a prompt ending in a space, a non-flat tag, a repeated id.
    """
    fmt = RECORD_FORMATS.get(task)
    if fmt is None:
        raise DataError(f"{source}: unknown task {task!r}; slimkit tasks are {sorted(TASK_RECORD_KINDS)}")
    items = []
    for i, record in enumerate(records):
        named = isinstance(record, dict) and "id" in record
        items.append((f"{source}: {task} record {i}" + (f" (id {record['id']!r})" if named else ""), record))
    fmt.check_records(items, task=task, source=source)


# -- FreebaseQA -------------------------------------------------------------------------------------------
@register_reader(
    "freebaseqa",
    task_options={
        "factoid": {
            "prompt_template": KICK_FREEBASEQA_TEMPLATE,
            "max_new_tokens": 128,
            "max_new_tokens_ratio": 2.0,
            "stop_at_newline": False,
            "headline_metric": "contains",
            "group_by_tags": ["parses"],
        }
    },
)
def read_freebaseqa(path: str | Path, *, limit: int | None = None) -> TaskData:
    """FreebaseQA (Jiang et al., NAACL 2019) -> ``{"factoid": records}``.

    Layout: ``{"Dataset": ..., "Questions": [{"Question-ID", "RawQuestion", "ProcessedQuestion",
    "Parses": [{"Answers": [{"AnswersName": [str, ...]}]}]}]}`` (e.g. ``FreebaseQA-train.json``,
    which LLM-KICK reads). Question = ``RawQuestion``; answers = all ``AnswersName`` of all parses,
    de-duplicated in order; tags ``{"parses": number of parses}``.
    """
    path = Path(path)
    data = _load_json(path, FREEBASEQA_LAYOUT)
    questions = data.get("Questions") if isinstance(data, dict) else None
    if not isinstance(questions, list):
        raise DataError(
            f"{path}: no 'Questions' list at the top level; expected FreebaseQA layout {FREEBASEQA_LAYOUT}"
        )
    records = []
    for i, q in enumerate(_first(questions, limit)):
        where = f"{path}: Questions[{i}]"
        _require(q, ("Question-ID", "RawQuestion", "Parses"), where, FREEBASEQA_LAYOUT)
        answers: list[str] = []
        for j, parse in enumerate(_as_list(q["Parses"], f"{where}.Parses", FREEBASEQA_LAYOUT)):
            _require(parse, ("Answers",), f"{where}.Parses[{j}]", FREEBASEQA_LAYOUT)
            for k, answer in enumerate(
                _as_list(parse["Answers"], f"{where}.Parses[{j}].Answers", FREEBASEQA_LAYOUT)
            ):
                at = f"{where}.Parses[{j}].Answers[{k}]"
                _require(answer, ("AnswersName",), at, FREEBASEQA_LAYOUT)
                answers += _strings(answer["AnswersName"], f"{at}.AnswersName", FREEBASEQA_LAYOUT)
        if not answers:
            raise DataError(
                f"{where}: no AnswersName in any parse; expected FreebaseQA layout {FREEBASEQA_LAYOUT}"
            )
        records.append(
            {
                "id": str(q["Question-ID"]),
                "question": _string(q["RawQuestion"], f"{where}.RawQuestion", FREEBASEQA_LAYOUT),
                "answers": _unique(answers),
                "tags": {"parses": len(q["Parses"])},
            }
        )
    return {"factoid": _nonempty(records, path, FREEBASEQA_LAYOUT)}


# -- MMLU -------------------------------------------------------------------------------------------------
@register_reader("mmlu", task_options={"mc": {"headline_metric": "accuracy", "group_by_tags": ["subject"]}})
def read_mmlu(
    directory: str | Path,
    *,
    shots: int = 5,
    split: str = "test",
    subjects: str | Sequence[str] | None = None,
    limit: int | None = None,
) -> TaskData:
    """MMLU (Hendrycks et al., "Measuring Massive Multitask Language Understanding", arXiv 2009.03300)
    -> ``{"mc": records}`` with the complete k-shot prompt of the original evaluation.

    Layout: ``DIR/{split}/<subject>_{split}.csv`` and ``DIR/dev/<subject>_dev.csv``, headerless CSV rows
    ``question,A,B,C,D,answer_letter``. Each record's ``prompt`` is
    ``"The following are multiple choice questions (with answers) about {subject}.\\n\\n"``, then the
    first ``shots`` dev rows as ``"{q}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer: {X}\\n\\n"``, then
    the question in the same format ending ``"Answer:"``; ``options`` are ``["A", "B", "C", "D"]``.

    Args:
        directory: the ``data/`` directory of the Hendrycks release.
        shots: dev examples per prompt, >= 0 (fewer if the dev file has fewer rows). Default: 5.
        split: ``"test"`` (default) or ``"val"``: which questions are asked.
        subjects: only these subjects (a list, or a comma-separated string). Default: all.
        limit: at most this many questions per subject. Default: all.
    Tags: ``{"subject": subject}``.
    """
    directory = Path(directory)
    _check_count("shots", shots, minimum=0)
    if split not in MMLU_SPLITS:
        raise ConfigError(f"mmlu: split must be one of {list(MMLU_SPLITS)}, got {split!r}")
    if not directory.is_dir():
        raise DataError(f"MMLU directory not found: {directory}; expected {MMLU_LAYOUT}")
    split_dir = directory / split
    suffix = f"_{split}.csv"
    available = (
        sorted(p.name[: -len(suffix)] for p in split_dir.glob(f"*{suffix}")) if split_dir.is_dir() else []
    )
    if not available:
        raise DataError(f"{directory}: no {split_dir}/<subject>{suffix} files; expected {MMLU_LAYOUT}")
    chosen = available
    if subjects is not None:
        chosen = [s.strip() for s in subjects.split(",")] if isinstance(subjects, str) else list(subjects)
        unknown = sorted(set(chosen) - set(available))
        if unknown:
            raise DataError(
                f"{directory}: no MMLU subject(s) {unknown} in {split_dir}; available: {available}"
            )
    records = []
    for subject in chosen:
        header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        examples = ""
        if shots:
            dev_file = directory / "dev" / f"{subject}_dev.csv"
            if not dev_file.is_file():
                raise DataError(
                    f"{dev_file}: not found; {shots}-shot prompts need the dev examples "
                    f"(or pass shots=0); expected {MMLU_LAYOUT}"
                )
            examples = "".join(
                _mmlu_block(row) + f" {row[5]}\n\n" for _, row in _first(_mmlu_rows(dev_file), shots)
            )
        for n, row in _first(_mmlu_rows(split_dir / f"{subject}{suffix}"), limit):
            records.append(
                {
                    "id": f"mmlu-{subject}-{split}-{n:04d}",
                    "question": row[0],
                    "options": list(MMLU_CHOICES),
                    "answer_index": MMLU_CHOICES.index(row[5]),
                    "prompt": header + examples + _mmlu_block(row),
                    "tags": {"subject": subject},
                }
            )
    return {"mc": _nonempty(records, directory, MMLU_LAYOUT)}


def _mmlu_block(row: Sequence[str]) -> str:
    """``"{q}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer:"`` (Hendrycks' ``format_example``)."""
    lines = [row[0]] + [f"{letter}. {option}" for letter, option in zip(MMLU_CHOICES, row[1:5], strict=True)]
    return "\n".join(lines) + "\nAnswer:"


def _mmlu_rows(path: Path) -> list[tuple[int, list[str]]]:
    """``(row number, row)`` of a headerless Hendrycks CSV, checked for 6 fields and a letter answer."""
    rows = []
    for n, row in enumerate(csv.reader(io.StringIO(_read_text(path, MMLU_LAYOUT), newline=""))):
        if not row:
            continue
        if len(row) != 6 or row[5].strip() not in MMLU_CHOICES:
            raise DataError(
                f"{path}: row {n + 1} has {len(row)} field(s) ending {row[-1]!r}; expected 6 fields "
                f"question,A,B,C,D,answer_letter with the answer one of {list(MMLU_CHOICES)}"
            )
        rows.append((n, row[:5] + [row[5].strip()]))
    return rows


# -- TriviaQA ---------------------------------------------------------------------------------------------
@register_reader(
    "triviaqa",
    task_options={
        "retrieval": {
            "prompt_template": KICK_RETRIEVAL_TEMPLATE,
            "max_new_tokens": 32,
            "headline_metric": "lenient",
            "group_by_tags": ["context_chars", "answer_type", "answer_in_context"],
        },
        "factoid": {
            "prompt_template": KICK_CLOSED_BOOK_TEMPLATE,
            "max_new_tokens": 32,
            "headline_metric": "lenient",
            "baseline_tag": "answer_type",
            "group_by_tags": ["answer_type"],
        },
    },
)
def read_triviaqa(
    path: str | Path,
    *,
    evidence_dir: str | Path | None = None,
    max_context_chars: int = TRIVIAQA_MAX_CONTEXT_CHARS,
    limit: int | None = None,
) -> TaskData:
    """TriviaQA rc (Joshi et al., ACL 2017) -> ``{"retrieval": open-book, "factoid": closed-book}``.

    LLM-KICK asks every question twice: with evidence (in-context retrieval) and without (closed book).
    Context = text of the first Wikipedia entity page + text of the first web search result, joined
    without a separator and cut to ``max_context_chars``; answers = ``Aliases`` then ``Value``,
    de-duplicated. Questions without any evidence keep an empty context, as in LLM-KICK.

    Layouts: the original ``qa/<domain>-<split>.json`` (``{"Data": [...]}``), whose evidence files are
    read from ``evidence_dir/wikipedia/<Filename>`` and ``evidence_dir/web/<Filename>``; or Hugging Face
    ``trivia_qa`` ``rc`` rows exported with ``to_json`` (JSON lines or a JSON list), whose evidence is
    inline (``entity_pages.wiki_context``, ``search_results.search_context``).

    Args:
        path: the question file.
        evidence_dir: the ``evidence/`` directory. Default: ``<parent of qa/>/evidence``.
        max_context_chars: context cut, >= 1. Default: 3072 (LLM-KICK's).
        limit: only the first N questions (their evidence is the only one read). Default: all.
    Tags: ``answer_type`` (when given); on retrieval records also ``context_chars`` (``"none"``,
    ``"short"`` below 1024 characters, else ``"long"``) and ``answer_in_context`` (``"yes"`` when an
    answer occurs, case-insensitively, in the cut context).
    """
    path = Path(path)
    _check_count("max_context_chars", max_context_chars, minimum=1)
    data = _load_json_or_jsonl(path, TRIVIAQA_LAYOUT)
    if isinstance(data, dict) and "Data" in data:
        evidence = Path(evidence_dir) if evidence_dir is not None else path.parent.parent / "evidence"
        rows = _as_list(data["Data"], f"{path}: Data", TRIVIAQA_LAYOUT)
        questions = [
            _triviaqa_original(q, f"{path}: Data[{i}]", evidence) for i, q in enumerate(_first(rows, limit))
        ]
    elif isinstance(data, list):
        if evidence_dir is not None:
            raise ConfigError(
                f"{path}: evidence_dir only applies to the original TriviaQA layout (Hugging Face rows carry their evidence)"
            )
        questions = [_triviaqa_hf(q, f"{path}: row {i}", i) for i, q in enumerate(_first(data, limit))]
    else:
        raise DataError(
            f"{path}: neither a {{'Data': [...]}} object nor a list of rows; expected {TRIVIAQA_LAYOUT}"
        )
    retrieval, factoid = [], []
    ids: dict[str, int] = {}
    for qid, question, answers, answer_type, contexts in questions:
        # web and wikipedia domains share question ids; keep every occurrence, distinctly named
        ids[qid] = ids.get(qid, 0) + 1
        uid = qid if ids[qid] == 1 else f"{qid}#{ids[qid]}"
        tags = {"answer_type": answer_type} if answer_type else {}
        context = "".join(contexts)[:max_context_chars]
        factoid.append({"id": uid, "question": question, "answers": list(answers), "tags": dict(tags)})
        retrieval.append(
            {
                "id": uid,
                "context": context,
                "question": question,
                "answers": answers,
                "tags": tags
                | {
                    "context_chars": _context_bucket(context),
                    "answer_in_context": _mentions(context, answers),
                },
            }
        )
    return {"retrieval": _nonempty(retrieval, path, TRIVIAQA_LAYOUT), "factoid": factoid}


_TriviaQuestion = tuple[str, str, list[str], str, list[str]]  # id, question, answers, answer type, contexts


def _triviaqa_original(q: Any, where: str, evidence: Path) -> _TriviaQuestion:
    _require(q, ("QuestionId", "Question", "Answer"), where, TRIVIAQA_LAYOUT)
    answer = q["Answer"]
    _require(answer, ("Value",), f"{where}.Answer", TRIVIAQA_LAYOUT)
    aliases = _strings(answer.get("Aliases", []), f"{where}.Answer.Aliases", TRIVIAQA_LAYOUT)
    contexts = []
    for key, folder in (("EntityPages", "wikipedia"), ("SearchResults", "web")):
        pages = _as_list(q.get(key, []), f"{where}.{key}", TRIVIAQA_LAYOUT)
        if pages:
            _require(pages[0], ("Filename",), f"{where}.{key}[0]", TRIVIAQA_LAYOUT)
            contexts.append(_evidence_text(evidence / folder, pages[0]["Filename"], where))
    value = _string(answer["Value"], f"{where}.Answer.Value", TRIVIAQA_LAYOUT)
    question = _string(q["Question"], f"{where}.Question", TRIVIAQA_LAYOUT)
    return str(q["QuestionId"]), question, _unique(aliases + [value]), str(answer.get("Type", "")), contexts


def _triviaqa_hf(q: Any, where: str, row: int) -> _TriviaQuestion:
    _require(q, ("question", "answer"), where, TRIVIAQA_LAYOUT)
    answer = q["answer"]
    _require(answer, ("value", "aliases"), f"{where}.answer", TRIVIAQA_LAYOUT)
    aliases = _strings(answer["aliases"], f"{where}.answer.aliases", TRIVIAQA_LAYOUT)
    contexts = []
    for key, column in (("entity_pages", "wiki_context"), ("search_results", "search_context")):
        pages = q.get(key) or {}
        if not isinstance(pages, dict):
            raise DataError(
                f"{where}.{key}: expected an object of lists ({column}: [str, ...]); expected {TRIVIAQA_LAYOUT}"
            )
        texts = _strings(pages.get(column, []), f"{where}.{key}.{column}", TRIVIAQA_LAYOUT)
        contexts += texts[:1]
    value = _string(answer["value"], f"{where}.answer.value", TRIVIAQA_LAYOUT)
    question = _string(q["question"], f"{where}.question", TRIVIAQA_LAYOUT)
    qid = str(q.get("question_id") or f"triviaqa-{row:05d}")
    return qid, question, _unique(aliases + [value]), str(answer.get("type", "")), contexts


def _evidence_text(folder: Path, filename: Any, where: str) -> str:
    if not isinstance(filename, str) or not filename:
        raise DataError(f"{where}: evidence Filename must be a non-empty string, got {filename!r}")
    file = folder / filename
    # a Filename is data, not a licence to read outside the evidence directory
    if not file.resolve().is_relative_to(folder.resolve()):
        raise DataError(f"{where}: evidence Filename {filename!r} points outside {folder}")
    if not file.is_file():
        raise DataError(
            f"{where}: evidence file {file} not found; put the TriviaQA evidence/ directory beside qa/ "
            "or pass evidence_dir="
        )
    return _read_text(file, TRIVIAQA_LAYOUT)


def _context_bucket(context: str) -> str:
    if not context:
        return "none"
    return "short" if len(context) < TRIVIAQA_SHORT_CONTEXT_CHARS else "long"


def _mentions(context: str, answers: Iterable[str]) -> str:
    lowered = context.lower()
    return "yes" if any(a.lower() in lowered for a in answers if a) else "no"


# -- CNN / DailyMail --------------------------------------------------------------------------------------
@register_reader("cnndm")
def read_cnndm(path: str | Path, *, per_length: int | None = None, limit: int | None = None) -> TaskData:
    """CNN/DailyMail (Hermann et al. 2015; See et al. 2017) -> ``{"summarization": records}``.

    document = ``article``, summary = ``highlights``; ``id`` from the ``id`` column, the ``.story`` file
    name, or ``cnndm-<row>``. Tags: ``words`` = the article's whitespace word count and ``length`` =
    its tertile among the articles read: with ``w`` sorted ascending and ``n`` articles,
    ``small`` if words <= w[ceil(n/3) - 1], ``large`` if words > w[ceil(2n/3) - 1], else ``mid``
    (equal lengths always share a bucket). In a ``.story`` directory whose files all sit in
    ``small/``, ``mid/`` or ``large/`` sub-directories (LLM-KICK's ``selected_stories``), the
    sub-directory is the ``length`` instead.

    Args:
        path: a ``.jsonl``, ``.parquet`` (needs ``pyarrow``) or ``.csv`` file, or a directory of
            ``.story`` files (searched recursively, in path order).
        per_length: keep only the first N articles of each length bucket (LLM-KICK: 30). Default: all.
        limit: read only the first N articles (before bucketing). Default: all.
    """
    path = Path(path)
    if per_length is not None:
        _check_count("per_length", per_length, minimum=1)
    if not path.exists():
        raise DataError(f"CNN/DailyMail data not found: {path}; expected {CNNDM_LAYOUT}")
    reader = _CNNDM_FILES.get("dir" if path.is_dir() else path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown extension {path.suffix!r}; expected {CNNDM_LAYOUT}")
    rows = _first(reader(path), limit)
    records = []
    for n, (where, row, _) in enumerate(rows):
        _require(row, ("article", "highlights"), where, CNNDM_LAYOUT)
        document = _string(row["article"], f"{where} article", CNNDM_LAYOUT)
        rid = row.get("id")
        records.append(
            {
                "id": str(rid) if rid not in (None, "") else f"cnndm-{n:05d}",
                "document": document,
                "summary": _string(row["highlights"], f"{where} highlights", CNNDM_LAYOUT),
                "tags": {"length": "", "words": len(document.split())},
            }
        )
    _nonempty(records, path, CNNDM_LAYOUT)
    given = [bucket for _, _, bucket in rows]
    buckets = given if None not in given else length_tertiles([r["tags"]["words"] for r in records])
    for record, bucket in zip(records, buckets, strict=True):
        record["tags"]["length"] = bucket
    if per_length is not None:
        taken = dict.fromkeys(CNNDM_LENGTHS, 0)
        kept = []
        for record in records:
            bucket = record["tags"]["length"]
            if taken[bucket] < per_length:
                taken[bucket] += 1
                kept.append(record)
        records = kept
    return {"summarization": records}


def length_tertiles(words: Sequence[int]) -> list[str]:
    """``small`` / ``mid`` / ``large`` per count: split at the ceil(n/3)-th and ceil(2n/3)-th smallest."""
    ranked = sorted(words)
    n = len(ranked)
    low, high = ranked[-(-n // 3) - 1], ranked[-(-2 * n // 3) - 1]
    return ["small" if w <= low else "mid" if w <= high else "large" for w in words]


_Rows = list[tuple[str, Any, str | None]]  # (where, row, length bucket given by the layout)


def _cnndm_jsonl(path: Path) -> _Rows:
    return [(f"{path}:{lineno}", row, None) for lineno, row in jsonl_rows(path)]


def _cnndm_csv(path: Path) -> _Rows:
    # CNN articles can exceed csv's default 128 KiB field cap
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    text = _read_text(path, CNNDM_LAYOUT)
    try:
        table = csv.DictReader(io.StringIO(text, newline=""))
        header = table.fieldnames or []
        rows = list(table)
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV file ({e}); expected {CNNDM_LAYOUT}") from None
    missing = [c for c in ("article", "highlights") if c not in header]
    if missing:
        raise DataError(f"{path}: header {header} lacks column(s) {missing}; expected {CNNDM_LAYOUT}")
    return [(f"{path} data row {n + 1}", row, None) for n, row in enumerate(rows)]


def _cnndm_parquet(path: Path) -> _Rows:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading parquet needs pyarrow (pip install 'slimkit[data]')") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises its own hierarchy for corrupt files
        raise DataError(f"{path}: not a readable parquet file ({e})") from None
    return [(f"{path} row {n}", row, None) for n, row in enumerate(rows)]


def _cnndm_stories(directory: Path) -> _Rows:
    rows = []
    for file in sorted(directory.rglob("*.story")):
        article, *highlights = _read_text(file, CNNDM_LAYOUT).split("@highlight")
        row = {
            "id": file.stem,
            "article": article.strip(),
            "highlights": "\n".join(h.strip() for h in highlights if h.strip()),
        }
        in_bucket_dir = file.parent.name in CNNDM_LENGTHS and file.parent.parent == directory
        rows.append((str(file), row, file.parent.name if in_bucket_dir else None))
    if not rows:
        raise DataError(f"{directory}: no .story files; expected {CNNDM_LAYOUT}")
    return rows


_CNNDM_FILES: dict[str, Callable[[Path], _Rows]] = {
    ".jsonl": _cnndm_jsonl,
    ".csv": _cnndm_csv,
    ".parquet": _cnndm_parquet,
    "dir": _cnndm_stories,
}


# -- Vicuna bench (instruction following) -----------------------------------------------------------------
@register_reader("vicuna")
def read_vicuna_bench(path: str | Path, *, limit: int | None = None) -> TaskData:
    """Vicuna-bench questions (LLM-KICK's ``mt_conversation/table/question.jsonl``, 80 questions) or
    MT-Bench's ``question.jsonl`` (first turn only) -> ``{"instruct": records}``.

    Layout: ``{"question_id", "category", "text"}`` per line, or ``"turns": [str, ...]`` for ``text``.
    Tags: ``{"category": category}``; ``reference`` is taken from an optional ``reference`` field (a
    string, or MT-Bench's list of reference answers, first one).
    """
    path = Path(path)
    records = []
    for lineno, row in _first(jsonl_rows(path), limit):
        where = f"{path}:{lineno}"
        _require(row, ("question_id", "category"), where, VICUNA_LAYOUT)
        if "text" in row:
            instruction = _string(row["text"], f"{where} text", VICUNA_LAYOUT)
        elif "turns" in row:
            turns = _strings(row["turns"], f"{where} turns", VICUNA_LAYOUT)
            if not turns:
                raise DataError(f"{where}: 'turns' is empty; expected {VICUNA_LAYOUT}")
            instruction = turns[0]
        else:
            raise DataError(f"{where}: missing field(s) ['text'] (or 'turns'); expected {VICUNA_LAYOUT}")
        record = {
            "id": str(row["question_id"]),
            "instruction": instruction,
            "tags": {"category": str(row["category"])},
        }
        reference = row.get("reference")
        if isinstance(reference, list) and reference:
            reference = reference[0]
        if reference:
            record["reference"] = _string(reference, f"{where} reference", VICUNA_LAYOUT)
        records.append(record)
    return {"instruct": _nonempty(records, path, VICUNA_LAYOUT)}


# -- slimkit's own JSONL ----------------------------------------------------------------------------------
@register_reader("slimkit")
def read_slimkit_dir(
    path: str | Path, *, tasks: str | Sequence[str] | None = None, limit: int | None = None
) -> TaskData:
    """A directory of slimkit task files ``<task>.jsonl`` (e.g. ``slimkit world build``'s output), or
    one such file -> ``{task: records}``, records as they are (see the record formats above).

    A ``<task>.fewshot.jsonl`` beside a task file is its dev split (``"<task>:fewshot"``: few-shot
    examples come from it). Files whose stem is not a task (``canaries.jsonl``, ``world.json``, ...)
    are ignored.

    Args:
        path: the directory, or one ``<task>.jsonl`` file.
        tasks: read only these tasks (a list, or a comma-separated string). Default: every task file.
        limit: only the first N records of each file. Default: all.
    """
    path = Path(path)
    if path.is_file():
        return read_jsonl(path, task=path.stem, limit=limit)
    if not path.is_dir():
        raise DataError(
            f"evaluation data not found: {path}; expected a directory of <task>.jsonl files or a scheme:PATH spec"
        )
    found = {p.stem: p for p in sorted(path.glob("*.jsonl")) if p.stem in TASK_RECORD_KINDS}
    dev = {
        p.stem.removesuffix(".fewshot"): p
        for p in sorted(path.glob("*.fewshot.jsonl"))
        if p.stem.removesuffix(".fewshot") in TASK_RECORD_KINDS
    }
    if tasks is not None:
        wanted = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise DataError(
                f"{path}: no task file(s) {[f'{t}.jsonl' for t in missing]}; found {sorted(found)}"
            )
        found = {t: found[t] for t in wanted}
    if not found:
        raise DataError(
            f"{path}: no task files; expected one or more of {[f'{t}.jsonl' for t in TASK_RECORD_KINDS]}"
        )
    data: TaskData = {}
    for task, file in found.items():
        data |= read_jsonl(file, task=task, limit=limit)
        if task in dev:
            data[task + FEWSHOT_SPLIT] = read_jsonl(dev[task], task=task)[task]
    return data


def read_jsonl(path: str | Path, *, task: str, limit: int | None = None) -> TaskData:
    """One slimkit task file -> ``{task: records}``, each line validated against the task's format."""
    path = Path(path)
    if task not in RECORD_FORMATS:
        raise DataError(f"{path}: unknown task {task!r}; slimkit tasks are {sorted(TASK_RECORD_KINDS)}")
    # checked here, so that a message names the line rather than the record index
    items = [(f"{path}:{lineno}", row) for lineno, row in _first(jsonl_rows(path), limit)]
    return {task: RECORD_FORMATS[task].check_records(items, task=task, source=str(path))}


@register_reader("jsonl")
def _read_jsonl_spec(rest: str, *, limit: int | None = None) -> TaskData:
    """``jsonl:TASK:PATH``."""
    task, sep, path = rest.partition(":")
    if not sep or not path:
        raise DataError(
            f"jsonl:{rest}: expected jsonl:TASK:PATH with TASK one of {sorted(TASK_RECORD_KINDS)}"
        )
    return read_jsonl(path, task=task, limit=limit)


# -- helpers ----------------------------------------------------------------------------------------------
def _read_text(path: Path, layout: str) -> str:
    if not path.exists():
        raise DataError(f"file not found: {path}; expected {layout}")
    return read_text_file(path, error=DataError)


def _load_json(path: Path, layout: str) -> Any:
    return parse_json(_read_text(path, layout), str(path), error=DataError, expected=layout)


def _load_json_or_jsonl(path: Path, layout: str) -> Any:
    """A JSON document, or (``.jsonl``, or ``Dataset.to_json``'s default lines) a list of line objects."""
    if path.suffix.lower() != ".jsonl":
        text = _read_text(path, layout)
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":  # several objects, one per line: JSON lines
                raise DataError(
                    f"{path}: not valid JSON ({e.msg} at line {e.lineno}); expected {layout}"
                ) from None
        except (RecursionError, ValueError):
            parse_json(text, str(path), error=DataError, expected=layout)  # raises, with the reason
    return [row for _, row in jsonl_rows(path)]


def _require(obj: Any, fields: Sequence[str], where: str, layout: str) -> None:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected an object, got {type(obj).__name__}; expected layout {layout}")
    missing = [f for f in fields if f not in obj]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}; expected layout {layout}")


def _as_list(value: Any, where: str, layout: str) -> list[Any]:
    if not isinstance(value, list):
        raise DataError(f"{where}: expected a list, got {type(value).__name__}; expected layout {layout}")
    return value


def _string(value: Any, where: str, layout: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: expected a string, got {type(value).__name__}; expected layout {layout}")
    return value


def _strings(value: Any, where: str, layout: str) -> list[str]:
    values = _as_list(value, where, layout)
    if not all(isinstance(v, str) for v in values):
        raise DataError(f"{where}: expected a list of strings; expected layout {layout}")
    return values


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v.strip()))


def _first(items: Sequence[Any], limit: int | None) -> Sequence[Any]:
    if limit is None:
        return items
    _check_count("limit", limit, minimum=1)
    return items[:limit]


def _check_count(name: str, value: Any, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _nonempty(records: list[Record], source: Path, layout: str) -> list[Record]:
    if not records:
        raise DataError(f"no questions in {source}; expected {layout}")
    return records


__all__ = [
    "CNNDM_LENGTHS",
    "MMLU_CHOICES",
    "RECORD_LAYOUTS",
    "TASK_RECORD_KINDS",
    "TRIVIAQA_MAX_CONTEXT_CHARS",
    "length_tertiles",
    "load_task_data",
    "read_cnndm",
    "read_freebaseqa",
    "read_jsonl",
    "read_mmlu",
    "read_slimkit_dir",
    "read_triviaqa",
    "read_vicuna_bench",
    "reader_names",
    "reader_task_options",
    "register_reader",
    "validate_records",
]

# readers defined in their own modules register themselves on import
from slimkit.evaluate import realqa as _realqa  # noqa: E402, F401  (countries:)
