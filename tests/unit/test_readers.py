"""Dataset readers: every format on a tiny file written here, exact records, and every bad input."""

from __future__ import annotations

import csv
import json

import pytest

from slimkit.core.errors import ConfigError, DataError
from slimkit.evaluate import readers
from slimkit.evaluate.readers import (
    length_tertiles,
    load_task_data,
    read_cnndm,
    read_freebaseqa,
    read_mmlu,
    read_triviaqa,
    register_reader,
    validate_records,
)


def _write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_csv(path, rows, header=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


# -- FreebaseQA ---------------------------------------------------------------------------------------------
def _freebase_question(qid, raw, *parses):
    return {
        "Question-ID": qid,
        "RawQuestion": raw,
        "ProcessedQuestion": raw.lower(),
        "Parses": [
            {
                "Parse-Id": f"{qid}.P{i}",
                "Answers": [{"AnswersMid": "m.0", "AnswersName": names} for names in p],
            }
            for i, p in enumerate(parses)
        ],
    }


def test_freebaseqa_answers_are_the_union_of_all_parses(tmp_path):
    path = _write_json(
        tmp_path / "FreebaseQA-train.json",
        {
            "Dataset": "FreebaseQA-train",
            "Questions": [
                _freebase_question("FreebaseQA-train-0", "Who wrote Hamlet?", [["William Shakespeare"]]),
                _freebase_question(
                    "FreebaseQA-train-1",
                    "Which planet is red?",
                    [["Mars", "Red Planet"]],
                    [["mars"], ["Mars"]],  # second parse: a new spelling and a repeat
                ),
            ],
        },
    )
    assert read_freebaseqa(path) == {
        "factoid": [
            {
                "id": "FreebaseQA-train-0",
                "question": "Who wrote Hamlet?",
                "answers": ["William Shakespeare"],
                "tags": {"parses": 1},
            },
            {
                "id": "FreebaseQA-train-1",
                "question": "Which planet is red?",
                "answers": ["Mars", "Red Planet", "mars"],
                "tags": {"parses": 2},
            },
        ]
    }
    assert load_task_data(f"freebaseqa:{path}", limit=1)["factoid"][0]["id"] == "FreebaseQA-train-0"


def test_freebaseqa_wrong_layout_names_file_record_and_field(tmp_path):
    bad = _freebase_question("q1", "x?", [["y"]])
    del bad["RawQuestion"]
    path = _write_json(tmp_path / "fb.json", {"Questions": [_freebase_question("q0", "a?", [["b"]]), bad]})
    with pytest.raises(
        DataError, match=r"fb\.json: Questions\[1\]: missing field\(s\) \['RawQuestion'\].*AnswersName"
    ):
        read_freebaseqa(path)
    with pytest.raises(DataError, match=r"no 'Questions' list.*RawQuestion"):
        read_freebaseqa(_write_json(tmp_path / "rows.json", [{"question": "x"}]))
    with pytest.raises(DataError, match="no questions in .*empty.json"):
        read_freebaseqa(_write_json(tmp_path / "empty.json", {"Questions": []}))
    no_answer = _write_json(tmp_path / "na.json", {"Questions": [_freebase_question("q", "a?", [[]])]})
    with pytest.raises(DataError, match=r"Questions\[0\]: no AnswersName"):
        read_freebaseqa(no_answer)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match="broken.json: not valid JSON"):
        read_freebaseqa(tmp_path / "broken.json")


# -- MMLU ---------------------------------------------------------------------------------------------------
def _mmlu_dir(tmp_path):
    root = tmp_path / "data"
    _write_csv(
        root / "dev" / "high_school_physics_dev.csv",
        [["What is g?", "9.8", "1", "0", "3", "A"], ["Unit of force?", "J", "N", "W", "Pa", "B"]],
    )
    _write_csv(
        root / "test" / "high_school_physics_test.csv",
        [["Speed of light, in m/s?", "3e8", "3e5", "1", "0", "A"], ["Mass unit?", "m", "s", "kg", "K", "C"]],
    )
    _write_csv(
        root / "dev" / "virology_dev.csv", [["A virus is?", "alive", "a particle", "a cell", "a plant", "B"]]
    )
    _write_csv(
        root / "test" / "virology_test.csv",
        [["Has DNA, or RNA\nor both?", "DNA", "RNA", "either", "both", "C"]],
    )
    _write_csv(root / "val" / "virology_val.csv", [["Val question?", "w", "x", "y", "z", "D"]])
    return root


def test_mmlu_one_shot_prompt_is_the_hendrycks_format(tmp_path):
    mc = read_mmlu(_mmlu_dir(tmp_path), shots=1)["mc"]
    assert [r["id"] for r in mc] == [
        "mmlu-high_school_physics-test-0000",
        "mmlu-high_school_physics-test-0001",
        "mmlu-virology-test-0000",
    ]
    assert mc[1] == {
        "id": "mmlu-high_school_physics-test-0001",
        "question": "Mass unit?",
        "options": ["A", "B", "C", "D"],
        "answer_index": 2,
        "prompt": (
            "The following are multiple choice questions (with answers) about high school physics.\n\n"
            "What is g?\nA. 9.8\nB. 1\nC. 0\nD. 3\nAnswer: A\n\n"
            "Mass unit?\nA. m\nB. s\nC. kg\nD. K\nAnswer:"
        ),
        "tags": {"subject": "high_school_physics"},
    }
    # a quoted newline inside a CSV field stays in the question
    assert mc[2]["prompt"].endswith("Has DNA, or RNA\nor both?\nA. DNA\nB. RNA\nC. either\nD. both\nAnswer:")


def test_mmlu_shots_subjects_split_and_limit(tmp_path):
    root = _mmlu_dir(tmp_path)
    zero = read_mmlu(root, shots=0, subjects="virology")["mc"]
    assert zero[0]["prompt"] == (
        "The following are multiple choice questions (with answers) about virology.\n\n"
        "Has DNA, or RNA\nor both?\nA. DNA\nB. RNA\nC. either\nD. both\nAnswer:"
    )
    # 5 shots asked, 2 dev rows exist: both are used
    five = load_task_data(f"mmlu:{root}", subjects=["high_school_physics"], limit=1)["mc"]
    assert len(five) == 1
    assert five[0]["prompt"].count("\nAnswer: ") == 2 and five[0]["prompt"].endswith("Answer:")
    val = read_mmlu(root, split="val", shots=1)["mc"]
    assert [(r["id"], r["answer_index"]) for r in val] == [("mmlu-virology-val-0000", 3)]


def test_mmlu_bad_input(tmp_path):
    root = _mmlu_dir(tmp_path)
    with pytest.raises(
        DataError,
        match=r"no MMLU subject\(s\) \['anatomy'\].*available: \['high_school_physics', 'virology'\]",
    ):
        read_mmlu(root, subjects="anatomy")
    with pytest.raises(ConfigError, match="shots must be an integer >= 0"):
        read_mmlu(root, shots=-1)
    with pytest.raises(ConfigError, match="split must be one of"):
        read_mmlu(root, split="train")
    with pytest.raises(DataError, match="MMLU directory not found"):
        read_mmlu(tmp_path / "nowhere")
    with pytest.raises(
        DataError, match=r"no .*/test/<subject>_test.csv files.*question,A,B,C,D,answer_letter"
    ):
        read_mmlu(tmp_path)
    (root / "dev" / "virology_dev.csv").unlink()
    with pytest.raises(DataError, match=r"virology_dev.csv: not found; 5-shot prompts need the dev examples"):
        read_mmlu(root, subjects="virology")
    assert len(read_mmlu(root, subjects="virology", shots=0)["mc"]) == 1
    _write_csv(
        root / "test" / "virology_test.csv", [["q", "a", "b", "c", "d", "A"], ["q", "a", "b", "c", "A"]]
    )
    with pytest.raises(DataError, match=r"virology_test.csv: row 2 has 5 field\(s\).*expected 6 fields"):
        read_mmlu(root, subjects="virology", shots=0)
    _write_csv(root / "test" / "virology_test.csv", [["q", "a", "b", "c", "d", "E"]])
    with pytest.raises(DataError, match=r"row 1 has 6 field\(s\) ending 'E'.*\['A', 'B', 'C', 'D'\]"):
        read_mmlu(root, subjects="virology", shots=0)
    (root / "test" / "virology_test.csv").write_text("")
    with pytest.raises(DataError, match="no questions in"):
        read_mmlu(root, subjects="virology", shots=0)


# -- TriviaQA -----------------------------------------------------------------------------------------------
def _triviaqa_rc(tmp_path, wiki_text="Paris is the capital of France. ", web_text="France's capital: Paris."):
    root = tmp_path / "triviaqa-rc"
    (root / "evidence" / "wikipedia").mkdir(parents=True)
    (root / "evidence" / "web" / "12").mkdir(parents=True)
    (root / "evidence" / "wikipedia" / "France.txt").write_text(wiki_text)
    (root / "evidence" / "wikipedia" / "Other.txt").write_text("IGNORED second page")
    (root / "evidence" / "web" / "12" / "12_3.txt").write_text(web_text)
    data = {
        "Data": [
            {
                "QuestionId": "tc_1",
                "Question": "What is the capital of France?",
                "Answer": {
                    "Value": "Paris",
                    "Aliases": ["Paris", "Paris, France"],
                    "NormalizedAliases": ["paris"],
                    "Type": "WikipediaEntity",
                },
                "EntityPages": [
                    {"Filename": "France.txt", "Title": "France"},
                    {"Filename": "Other.txt", "Title": "Other"},
                ],
                "SearchResults": [{"Filename": "12/12_3.txt", "Rank": 0}],
            },
            {
                "QuestionId": "tc_2",
                "Question": "Who painted the Mona Lisa?",
                "Answer": {"Value": "Leonardo da Vinci", "Aliases": ["Leonardo"], "Type": "WikipediaEntity"},
                "EntityPages": [],
            },
        ],
        "Domain": "Web",
        "Split": "dev",
    }
    return _write_json(root / "qa" / "web-dev.json", data)


def test_triviaqa_original_layout_context_is_wiki_then_web_cut(tmp_path):
    path = _triviaqa_rc(tmp_path)
    data = read_triviaqa(path)
    context = "Paris is the capital of France. France's capital: Paris."
    assert data["retrieval"][0] == {
        "id": "tc_1",
        "context": context,
        "question": "What is the capital of France?",
        "answers": ["Paris", "Paris, France"],
        "tags": {"answer_type": "WikipediaEntity", "context_chars": "short", "answer_in_context": "yes"},
    }
    # a question without evidence keeps an empty context, as LLM-KICK's prompt does
    assert data["retrieval"][1]["context"] == ""
    assert data["retrieval"][1]["tags"] == {
        "answer_type": "WikipediaEntity",
        "context_chars": "none",
        "answer_in_context": "no",
    }
    assert data["factoid"] == [
        {
            "id": "tc_1",
            "question": "What is the capital of France?",
            "answers": ["Paris", "Paris, France"],
            "tags": {"answer_type": "WikipediaEntity"},
        },
        {
            "id": "tc_2",
            "question": "Who painted the Mona Lisa?",
            "answers": ["Leonardo", "Leonardo da Vinci"],
            "tags": {"answer_type": "WikipediaEntity"},
        },
    ]
    cut = read_triviaqa(path, max_context_chars=40)["retrieval"][0]["context"]
    assert cut == context[:40] == "Paris is the capital of France. France's"
    assert load_task_data(f"triviaqa:{path}", limit=1)["retrieval"][0]["context"] == context


def test_triviaqa_default_cut_is_3072_chars_and_long_contexts_are_tagged(tmp_path):
    path = _triviaqa_rc(tmp_path, wiki_text="w" * 3000, web_text="Paris " * 100)
    first = read_triviaqa(path)["retrieval"][0]
    assert first["context"] == ("w" * 3000 + "Paris " * 100)[:3072]
    assert first["tags"]["context_chars"] == "long"
    assert first["tags"]["answer_in_context"] == "yes"


def test_triviaqa_evidence_dir_option_and_missing_evidence(tmp_path):
    path = _triviaqa_rc(tmp_path)
    moved = tmp_path / "elsewhere"
    (path.parent.parent / "evidence").rename(moved)
    with pytest.raises(DataError, match=r"Data\[0\]: evidence file .*France.txt not found; .*evidence_dir="):
        read_triviaqa(path)
    assert read_triviaqa(path, evidence_dir=moved)["retrieval"][0]["context"].startswith("Paris is")


def test_triviaqa_hugging_face_rows_as_jsonl_and_json(tmp_path):
    rows = [
        {
            "question": "Capital of France?",
            "question_id": "tc_1",
            "answer": {
                "value": "Paris",
                "aliases": ["Paris", "City of Light"],
                "normalized_aliases": ["paris"],
                "type": "WikipediaEntity",
            },
            "entity_pages": {"filename": ["France.txt"], "wiki_context": ["WIKI ", "second page"]},
            "search_results": {"filename": ["1.txt"], "search_context": ["WEB", "second result"]},
        },
        {
            "question": "Capital of France?",
            "question_id": "tc_1",  # the web and wikipedia domains repeat questions
            "answer": {"value": "Paris", "aliases": []},
            "entity_pages": {"filename": [], "wiki_context": []},
            "search_results": {"filename": ["2.txt"], "search_context": ["only web"]},
        },
    ]
    jsonl = read_triviaqa(_write_jsonl(tmp_path / "validation.jsonl", rows))
    assert [(r["id"], r["context"], r["answers"]) for r in jsonl["retrieval"]] == [
        ("tc_1", "WIKI WEB", ["Paris", "City of Light"]),
        ("tc_1#2", "only web", ["Paris"]),
    ]
    # Dataset.to_json writes JSON lines even to a ".json" file; a JSON list works too
    assert read_triviaqa(_write_jsonl(tmp_path / "lines.json", rows)) == jsonl
    assert read_triviaqa(_write_json(tmp_path / "list.json", rows)) == jsonl
    with pytest.raises(ConfigError, match="evidence_dir only applies"):
        read_triviaqa(tmp_path / "list.json", evidence_dir=tmp_path)


def test_triviaqa_wrong_layout(tmp_path):
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "q?", "answers": ["a"]}])
    with pytest.raises(DataError, match=r"bad.jsonl: row 0: missing field\(s\) \['answer'\].*search_context"):
        read_triviaqa(bad)
    with pytest.raises(DataError, match=r"neither a \{'Data': \[...\]\} object nor a list"):
        read_triviaqa(_write_json(tmp_path / "obj.json", {"data": []}))
    path = _write_json(
        tmp_path / "qa" / "wikipedia-dev.json", {"Data": [{"QuestionId": "x", "Answer": {"Value": "v"}}]}
    )
    with pytest.raises(DataError, match=r"Data\[0\]: missing field\(s\) \['Question'\]"):
        read_triviaqa(path)
    escape = _write_json(
        tmp_path / "qa" / "escape.json",
        {
            "Data": [
                {
                    "QuestionId": "x",
                    "Question": "q",
                    "Answer": {"Value": "v"},
                    "EntityPages": [{"Filename": "../../secret.txt"}],
                }
            ]
        },
    )
    with pytest.raises(DataError, match="points outside"):
        read_triviaqa(escape)
    with pytest.raises(DataError, match="no questions in"):
        read_triviaqa(_write_json(tmp_path / "qa" / "none.json", {"Data": []}))


# -- CNN / DailyMail ----------------------------------------------------------------------------------------
_CNN_ROWS = [  # word counts 3, 9, 1, 6, 12, 6
    {"id": "a", "article": "one two three", "highlights": "s1"},
    {"id": "b", "article": " ".join(["w"] * 9), "highlights": "s2"},
    {"id": "c", "article": "single", "highlights": "s3"},
    {"id": "d", "article": "x " * 6, "highlights": "s4"},
    {"id": "e", "article": " ".join(["long"] * 12), "highlights": "s5\ns5b"},
    {"id": "f", "article": "y " * 6, "highlights": "s6"},
]
_CNN_LENGTHS = {"a": "small", "b": "large", "c": "small", "d": "mid", "e": "large", "f": "mid"}


def _cnn_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = _write_jsonl(tmp_path / "cnn.jsonl", _CNN_ROWS)
    header = ["id", "article", "highlights"]
    csv_path = _write_csv(tmp_path / "cnn.csv", [[r[k] for k in header] for r in _CNN_ROWS], header=header)
    parquet = tmp_path / "cnn.parquet"
    pq.write_table(pa.Table.from_pylist(_CNN_ROWS), parquet)
    return jsonl, csv_path, parquet


def test_cnndm_tertile_tags_are_the_same_for_every_file_type(tmp_path):
    outputs = [read_cnndm(path)["summarization"] for path in _cnn_files(tmp_path)]
    assert outputs[0] == outputs[1] == outputs[2]
    records = outputs[0]
    assert {r["id"]: r["tags"]["length"] for r in records} == _CNN_LENGTHS
    assert [r["tags"]["words"] for r in records] == [3, 9, 1, 6, 12, 6]
    assert records[4] == {
        "id": "e",
        "document": " ".join(["long"] * 12),
        "summary": "s5\ns5b",
        "tags": {"length": "large", "words": 12},
    }


def test_length_tertiles_cut_points():
    assert length_tertiles([10, 20, 30]) == ["small", "mid", "large"]
    assert length_tertiles(list(range(9))) == ["small"] * 3 + ["mid"] * 3 + ["large"] * 3
    assert length_tertiles([5, 5, 5, 5]) == ["small"] * 4  # equal lengths share a bucket
    assert length_tertiles([7]) == ["small"]


def test_cnndm_per_length_limit_and_generated_ids(tmp_path):
    jsonl = tmp_path / "cnn.jsonl"
    _write_jsonl(jsonl, _CNN_ROWS)
    picked = load_task_data(f"cnndm:{jsonl}", per_length=1)["summarization"]
    assert [(r["id"], r["tags"]["length"]) for r in picked] == [("a", "small"), ("b", "large"), ("d", "mid")]
    # limit reads only the first rows, and the tertiles are those of the rows read
    first3 = read_cnndm(jsonl, limit=3)["summarization"]
    assert [r["tags"]["length"] for r in first3] == ["mid", "large", "small"]
    no_ids = _write_jsonl(
        tmp_path / "noid.jsonl", [{k: v for k, v in r.items() if k != "id"} for r in _CNN_ROWS[:2]]
    )
    assert [r["id"] for r in read_cnndm(no_ids)["summarization"]] == ["cnndm-00000", "cnndm-00001"]


def test_cnndm_story_directories(tmp_path):
    story = "Story {n} text here.\n\n@highlight\n\nFirst point\n\n@highlight\n\nSecond point\n"
    for n, bucket in enumerate(["small", "mid", "large"]):
        (tmp_path / "selected" / bucket).mkdir(parents=True)
        (tmp_path / "selected" / bucket / f"{n}abc.story").write_text(story.format(n=n))
    records = read_cnndm(tmp_path / "selected")["summarization"]
    # the sub-directory names LLM-KICK's length bucket (here against the word counts)
    assert [(r["id"], r["tags"]["length"]) for r in records] == [
        ("2abc", "large"),
        ("1abc", "mid"),
        ("0abc", "small"),
    ]
    assert (
        records[0]["document"] == "Story 2 text here."
        and records[0]["summary"] == "First point\nSecond point"
    )
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "x.story").write_text(story.format(n=0))
    assert read_cnndm(flat)["summarization"][0]["tags"] == {"length": "small", "words": 4}


def test_cnndm_bad_input(tmp_path):
    bad = _write_jsonl(
        tmp_path / "bad.jsonl", [{"article": "a b", "highlights": "h"}, {"story": "a", "summary": "h"}]
    )
    with pytest.raises(
        DataError, match=r"bad.jsonl:2: missing field\(s\) \['article', 'highlights'\].*columns article"
    ):
        read_cnndm(bad)
    _write_csv(tmp_path / "noheader.csv", [["a", "b", "c"]])
    with pytest.raises(
        DataError,
        match=r"noheader.csv: header \['a', 'b', 'c'\] lacks column\(s\) \['article', 'highlights'\]",
    ):
        read_cnndm(tmp_path / "noheader.csv")
    (tmp_path / "cnn.txt").write_text("x")
    with pytest.raises(DataError, match=r"unknown extension '.txt'.*\.jsonl, \.parquet or \.csv"):
        read_cnndm(tmp_path / "cnn.txt")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="no questions in .*empty.jsonl"):
        read_cnndm(tmp_path / "empty.jsonl")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_cnndm(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="not found"):
        read_cnndm(tmp_path / "missing.jsonl")
    (tmp_path / "nostories").mkdir()
    with pytest.raises(DataError, match=r"no \.story files"):
        read_cnndm(tmp_path / "nostories")
    with pytest.raises(ConfigError, match="per_length must be an integer >= 1"):
        read_cnndm(tmp_path / "bad.jsonl", per_length=0)


# -- Vicuna bench -------------------------------------------------------------------------------------------
def test_vicuna_bench_and_mt_bench_questions(tmp_path):
    path = _write_jsonl(
        tmp_path / "question.jsonl",
        [
            {"question_id": 1, "text": "How can I improve my time management skills?", "category": "generic"},
            {
                "question_id": 81,
                "category": "writing",
                "turns": ["Write a blog post.", "Rewrite it."],
                "reference": ["Ref."],
            },
        ],
    )
    assert load_task_data(f"vicuna:{path}") == {
        "instruct": [
            {
                "id": "1",
                "instruction": "How can I improve my time management skills?",
                "tags": {"category": "generic"},
            },
            {
                "id": "81",
                "instruction": "Write a blog post.",
                "tags": {"category": "writing"},
                "reference": "Ref.",
            },
        ]
    }
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question_id": 1, "category": "generic"}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: missing field\(s\) \['text'\]"):
        load_task_data(f"vicuna:{bad}")


# -- slimkit JSONL ------------------------------------------------------------------------------------------
_FACTOID = {
    "id": "factoid-0",
    "question": "Where was A born?",
    "answers": ["B"],
    "tags": {"popularity": 3, "popularity_half": "rare"},
}
_MC = {
    "id": "mc-0",
    "question": "Year?",
    "options": ["1990", "1991"],
    "answer_index": 1,
    "tags": {"n_options": 2},
}
_RETRIEVAL = {
    "id": "r-0",
    "context": "A lives in B.",
    "question": "Where does A live?",
    "answers": ["B"],
    "tags": {},
}
_TWOHOP = {"id": "t-0", "question": "Country of A's birth?", "answers": ["C"], "tags": {"hops": 2}}


def _world_dir(tmp_path):
    world = tmp_path / "world"
    _write_jsonl(world / "factoid.jsonl", [_FACTOID])
    _write_jsonl(world / "mc.jsonl", [_MC])
    _write_jsonl(world / "retrieval.jsonl", [_RETRIEVAL])
    _write_jsonl(world / "twohop.jsonl", [_TWOHOP])
    _write_jsonl(world / "canaries.jsonl", [{"id": "c", "prefix": "p", "secret": "s", "repeats": 1}])
    _write_json(world / "world.json", {})
    return world


def test_slimkit_directory_reads_every_task_file(tmp_path):
    world = _world_dir(tmp_path)
    expected = {"factoid": [_FACTOID], "mc": [_MC], "retrieval": [_RETRIEVAL], "twohop": [_TWOHOP]}
    assert load_task_data(world) == expected
    assert load_task_data(f"slimkit:{world}") == expected
    assert load_task_data(str(world), tasks="mc,twohop") == {"mc": [_MC], "twohop": [_TWOHOP]}
    assert load_task_data(f"jsonl:twohop:{world / 'twohop.jsonl'}") == {"twohop": [_TWOHOP]}
    assert load_task_data(world / "mc.jsonl") == {"mc": [_MC]}


def test_slimkit_jsonl_bad_records_name_the_line(tmp_path):
    path = tmp_path / "mc.jsonl"
    cases = [
        (
            {k: v for k, v in _MC.items() if k != "options"},
            r"mc.jsonl:2: missing field\(s\) \['options'\].*answer_index",
        ),
        (_MC | {"answer_index": 2}, r"mc.jsonl:2: answer_index 2 is out of range for 2 options"),
        (_MC | {"answer_index": True}, r"field 'answer_index' must be int, got bool"),
        (_MC | {"options": []}, r"'options' must be a non-empty list of strings"),
        (_MC | {"options": ["a", 3]}, r"'options' must be a non-empty list of strings"),
        (_MC | {"prompt": "Q: x\nA: "}, r"'prompt' must not end with a space"),
        (_MC | {"tags": {"fact": {"nested": 1}}}, r"tag 'fact' must be a string or an integer"),
        (_MC | {"tags": {"score": 0.5}}, r"tag 'score' must be a string or an integer"),
    ]
    for bad, message in cases:
        _write_jsonl(path, [_MC | {"id": "ok"}, bad])
        with pytest.raises(DataError, match=message):
            load_task_data(path)
    _write_jsonl(path, [_MC, _MC])
    with pytest.raises(DataError, match=r"id 'mc-0' repeats"):
        load_task_data(path)
    path.write_text("")
    with pytest.raises(DataError, match="no mc questions in .*mc.jsonl"):
        load_task_data(path)
    path.write_text('{"id": "x"\n')
    with pytest.raises(DataError, match=r"mc.jsonl:1: not valid JSON"):
        load_task_data(path)
    _write_jsonl(tmp_path / "r.jsonl", [_FACTOID])
    with pytest.raises(DataError, match=r"r.jsonl:1: missing field\(s\) \['context'\]"):
        load_task_data(f"jsonl:retrieval:{tmp_path / 'r.jsonl'}")


def test_slimkit_directory_bad_input(tmp_path):
    world = _world_dir(tmp_path)
    with pytest.raises(DataError, match=r"no task file\(s\) \['summarization.jsonl'\]"):
        load_task_data(world, tasks=["summarization"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no task files; expected one or more of \['factoid.jsonl'"):
        load_task_data(tmp_path / "empty")
    with pytest.raises(DataError, match="evaluation data not found"):
        load_task_data(tmp_path / "missing")
    with pytest.raises(DataError, match=r"unknown task 'canaries'"):
        load_task_data(world / "canaries.jsonl")
    with pytest.raises(DataError, match="expected jsonl:TASK:PATH"):
        load_task_data("jsonl:factoid.jsonl")


# -- the registry -------------------------------------------------------------------------------------------
def test_unknown_scheme_and_options(tmp_path):
    with pytest.raises(
        DataError, match=r"unknown dataset scheme 'squad'; known: \[.*'cnndm:PATH'.*'mmlu:PATH'"
    ):
        load_task_data("squad:/data/squad.json")
    with pytest.raises(
        ConfigError, match=r"mmlu: unknown option\(s\) \['shot'\]; this reader takes \['shots'"
    ):
        load_task_data(f"mmlu:{tmp_path}", shot=1)
    with pytest.raises(ConfigError, match="limit must be an integer >= 1"):
        load_task_data(_world_dir(tmp_path), limit=0)


def test_register_reader_adds_a_scheme_and_output_is_validated(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_READERS", dict(readers._READERS))

    @register_reader("toy")
    def read_toy(rest, *, n=1):
        return {
            "factoid": [
                {"id": f"{rest}-{i}", "question": "q", "answers": ["a"], "tags": {}} for i in range(n)
            ]
        }

    assert "toy" in readers.reader_names()
    assert [r["id"] for r in load_task_data("toy:x", n=2)["factoid"]] == ["x-0", "x-1"]
    with pytest.raises(DataError, match="no factoid questions in toy:x"):
        load_task_data("toy:x", n=0)
    with pytest.raises(ValueError, match="already registered"):
        register_reader("toy")(read_toy)
    with pytest.raises(DataError, match="unknown task 'qa'"):
        validate_records("qa", [], source="s")


def test_a_built_factworld_directory_loads_whole(tmp_path):
    from slimkit.data.factworld.build import build_world

    build_world(tmp_path / "world")
    data = load_task_data(tmp_path / "world")
    assert sorted(data) == ["factoid", "mc", "retrieval", "summarization", "twohop"]  # canaries: no task
    assert all(data[task] for task in data)


# -- what the readers ship: LLM-KICK's settings per dataset, dev splits --------------------------------------
def test_readers_ship_llm_kicks_templates_lengths_and_headline_metrics():
    from slimkit.evaluate.kick import dataset_task_options
    from slimkit.evaluate.tasks import FactoidTaskConfig, RetrievalTaskConfig
    from slimkit.evaluate.tasks.retrieval import KICK_RETRIEVAL_TEMPLATE

    freebase = dataset_task_options("freebaseqa:FreebaseQA-train.json")["factoid"]
    assert freebase["prompt_template"] == "Please give answer to this question: {question}\nThe answer is "
    assert (
        freebase["max_new_tokens_ratio"] == 2.0 and freebase["stop_at_newline"] is False
    )  # max_length = 3 x prompt
    assert freebase["headline_metric"] == "contains" and freebase["group_by_tags"] == ["parses"]
    trivia = dataset_task_options("triviaqa:qa/wikipedia-dev.json")
    assert trivia["retrieval"]["prompt_template"] == KICK_RETRIEVAL_TEMPLATE
    assert trivia["retrieval"]["max_new_tokens"] == 32 and trivia["retrieval"]["headline_metric"] == "lenient"
    assert trivia["factoid"]["prompt_template"] == "Answer these questions:\n\nQ: {question}\nA:"
    assert "context_chars" in trivia["retrieval"]["group_by_tags"]
    assert dataset_task_options("mmlu:data")["mc"]["group_by_tags"] == ["subject"]
    # every shipped option is a valid option of its task
    FactoidTaskConfig(**{k: v for k, v in freebase.items()})
    RetrievalTaskConfig(**trivia["retrieval"])
    FactoidTaskConfig(**trivia["factoid"])


def test_a_fewshot_file_beside_a_task_file_is_its_dev_split(tmp_path):
    rows = [{"id": f"f{i}", "question": f"Q{i}?", "answers": ["a"]} for i in range(3)]
    _write_jsonl(tmp_path / "factoid.jsonl", rows)
    _write_jsonl(tmp_path / "factoid.fewshot.jsonl", [{"id": "d", "question": "Dev?", "answers": ["b"]}])
    data = load_task_data(tmp_path)
    assert [r["id"] for r in data["factoid:fewshot"]] == ["d"] and len(data["factoid"]) == 3
    _write_jsonl(tmp_path / "factoid.fewshot.jsonl", [{"id": "d", "question": "Dev?"}])
    with pytest.raises(DataError, match="answers"):
        load_task_data(tmp_path)
