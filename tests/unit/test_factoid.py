"""Factoid QA: answer normalisation, matching, records, batched greedy generation, the suite."""

from __future__ import annotations

import copy
import json

import pytest
from eval_helpers import reference_greedy

from slimkit.core.errors import ConfigError, DataError
from slimkit.data.tokenizer import train_bpe_tokenizer
from slimkit.evaluate import (
    FactoidTaskConfig,
    TwoHopTaskConfig,
    contains_match,
    evaluate,
    exact_match,
    greedy_generate,
    normalize_answer,
    run_suite,
    validate_results,
)
from slimkit.evaluate.generation import left_pad
from slimkit.evaluate.tasks import factoid as factoid_module
from slimkit.evaluate.tasks.factoid import evaluate_factoid
from slimkit.models import tiny_model

TEXTS = [
    "Question: Where was Ada Vell born?\nAnswer: Lorin",
    "Question: Who founded Kestrel Mills?\nAnswer: Bo Tarn",
    "The quick brown fox jumps over the lazy dog in the city of Quell.",
] * 4
PROMPTS = [
    "Question: Where was Ada Vell born?\nAnswer:",
    "Bo",
    "Question: Who founded Kestrel Mills, and in which year did the mills first open?\nAnswer:",
    "The quick brown",
    "Lorin",
    "Question: Who?\nAnswer:",
]
RECORDS = [
    {
        "id": "q1",
        "question": "Where was Ada Vell born?",
        "answers": ["Lorin"],
        "tags": {"popularity_half": "popular"},
    },
    {
        "id": "q2",
        "question": "Who founded Kestrel Mills?",
        "answers": ["Bo Tarn", "B. Tarn"],
        "tags": {"popularity_half": "rare"},
    },
    {"id": "q3", "question": "When?", "answers": ["1907"], "tags": {"popularity_half": "rare"}},
    {"id": "q4", "question": "Which city?", "answers": ["The Quell"]},
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(TEXTS, vocab_size=320, min_frequency=1)


def _llama(tokenizer):
    # peaked logits (initializer_range 0.2), so argmax never rests on a float-noise tie
    return tiny_model("llama", vocab_size=len(tokenizer), max_position_embeddings=128, initializer_range=0.2)


def _gpt2(tokenizer):
    return tiny_model("gpt2", vocab_size=len(tokenizer), n_positions=128, initializer_range=0.2)


# -- normalisation and matching ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("The  Eiffel Tower!", "eiffel tower"),
        ("  an apple, a pear ", "apple pear"),
        ("Theater", "theater"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("", ""),
    ],
)
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_exact_and_contains_match():
    assert exact_match(" lorin.", ["Lorin"])
    assert not exact_match("Lorin, a city", ["Lorin"])
    assert contains_match("Lorin, a city", ["Lorin"])
    assert exact_match("b tarn", ["Bo Tarn", "B. Tarn"])
    assert not contains_match("Quell", ["Lorin", "Varn"])
    # an answer that normalises to nothing must not be "contained" in everything
    assert not contains_match("Lorin", ["The"])
    assert contains_match("the", ["The"])


# -- records -------------------------------------------------------------------------------------------
def _factoid(records, **options):
    return evaluate_factoid(None, None, FactoidTaskConfig(data=records, **options))


def test_jsonl_missing_fields_are_named(tmp_path):
    p = tmp_path / "factoid.jsonl"
    p.write_text(json.dumps(RECORDS[0]) + "\n" + json.dumps({"id": "x", "question": "q"}) + "\n")
    with pytest.raises(DataError, match=r"factoid.jsonl:2: missing field\(s\) \['answers'\].*layout"):
        _factoid(str(p))
    with pytest.raises(DataError, match="not found"):
        _factoid(str(tmp_path / "none.jsonl"))


def test_bad_and_empty_tasks(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="empty"):
        _factoid(str(empty))
    with pytest.raises(DataError, match="empty"):
        _factoid([])
    with pytest.raises(DataError, match="'answers' must be a non-empty list"):
        _factoid([{"id": "a", "question": "q", "answers": "Lorin"}])
    with pytest.raises(DataError, match="needs data"):
        _factoid(None)


def test_config_validation():
    with pytest.raises(ConfigError, match="must contain {question}"):
        FactoidTaskConfig(prompt_template="Q: ")
    with pytest.raises(ConfigError, match="may only use the fields"):
        FactoidTaskConfig(prompt_template="{context} {question}")
    with pytest.raises(ConfigError, match="max_new_tokens"):
        FactoidTaskConfig(max_new_tokens=0)
    cfg = FactoidTaskConfig(data=[dict(r) for r in RECORDS], group_by_tags=["popularity_half"])
    assert isinstance(cfg.data, tuple) and cfg.group_by_tags == ("popularity_half",)
    assert FactoidTaskConfig.from_json(cfg.to_json()) == cfg


# -- metrics -------------------------------------------------------------------------------------------
def test_metrics_and_groups(monkeypatch):
    canned = {
        "Where was Ada Vell born?": "Lorin",
        "Who founded Kestrel Mills?": "it was B. Tarn",
        "When?": "1906",
    }

    def fake_generate(model, tokenizer, prompts, **kwargs):
        return [canned.get(p.split("Question: ")[1].split("\n")[0], "Quell") for p in prompts]

    monkeypatch.setattr(factoid_module, "greedy_generate", fake_generate)
    records = copy.deepcopy(RECORDS)
    result = _factoid(records)
    out = result.metrics
    assert out["n"] == 4
    assert out["exact_match"] == pytest.approx(2 / 4)  # q1 and q4 ("Quell" vs "The Quell")
    assert out["contains"] == pytest.approx(3 / 4)
    assert out["exact_match@popularity_half=popular"] == 1.0
    assert out["n@popularity_half=rare"] == 2
    assert out["exact_match@popularity_half=rare"] == 0.0 and out["contains@popularity_half=rare"] == 0.5
    assert [e["prediction"] for e in result.examples] == ["Lorin", "it was B. Tarn", "1906", "Quell"]
    assert records == RECORDS  # inputs untouched
    assert _factoid(records, limit=1).metrics["n"] == 1


def test_twohop_scores_only_the_concluded_answer(monkeypatch):
    chains = {
        "In which country was Ada born?": "Ada was born in Lorin. Lorin lies in Veda. So the answer is Veda.",
        "In which country does Ada live?": "Ada lives in Voro. Voro lies in Kesh.",  # never concludes
        "Where is the employer of Ada?": "Ada works for Kel. So the answer is Lorin Media",
    }
    monkeypatch.setattr(
        factoid_module,
        "greedy_generate",
        lambda m, t, prompts, **kw: [chains[p.split("Question: ")[1].split("\n")[0]] for p in prompts],
    )
    records = [
        {"id": c, "question": q, "answers": [a], "tags": {"composition": c}}
        for q, a, c in zip(chains, ["Veda", "Kesh", "Lorin Media"], ["born", "lives", "works"], strict=True)
    ]
    result = evaluate_factoid(None, None, TwoHopTaskConfig(data=records), task="twohop")
    assert [e["prediction"] for e in result.examples] == ["Veda", "", "Lorin Media"]
    assert result.metrics["exact_match"] == pytest.approx(2 / 3)
    assert result.metrics["exact_match@composition=lives"] == 0.0  # the bridge answer "Kesh" is in the
    assert result.metrics["contains@composition=lives"] == 0.0  # chain but was never concluded


def test_twohop_chance_is_the_majority_answer_of_each_composition(monkeypatch):
    from slimkit.evaluate.tasks.factoid import majority_baseline

    records = [
        {"id": "a", "question": "q", "answers": ["Veda"], "tags": {"composition": "born"}},
        {"id": "b", "question": "q", "answers": ["the Veda"], "tags": {"composition": "born"}},
        {"id": "c", "question": "q", "answers": ["Kesh"], "tags": {"composition": "born"}},
        {"id": "d", "question": "q", "answers": ["Lorin", "Kesh"], "tags": {"composition": "lives"}},
        {"id": "e", "question": "q", "answers": ["Voro"], "tags": {"composition": "lives"}},
        {"id": "f", "question": "q", "answers": ["Voro"]},
    ]
    # born: "veda" twice -> a, b; lives: kesh/lorin/voro once each -> the first alphabetically, "kesh" -> d
    assert majority_baseline(records, "composition") == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert majority_baseline(records, None) == [
        0.0,
        0.0,
        1.0,
        1.0,
        0.0,
        0.0,
    ]  # "kesh" (2) ties "veda", "voro"
    monkeypatch.setattr(factoid_module, "greedy_generate", lambda m, t, prompts, **kw: ["x"] * len(prompts))
    out = evaluate_factoid(None, None, TwoHopTaskConfig(data=records), task="twohop").metrics
    assert out["chance"] == pytest.approx(4 / 6)
    assert out["chance@composition=born"] == pytest.approx(2 / 3) and out["chance@composition=lives"] == 0.5


# -- generation ----------------------------------------------------------------------------------------
def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


@pytest.mark.parametrize("build", [_llama, _gpt2], ids=["llama-rope", "gpt2-absolute-positions"])
def test_batched_generation_equals_one_by_one(tokenizer, build):
    # llama's RoPE only sees relative positions, so a wrong offset from padding would go unnoticed
    # there; GPT-2's learned absolute positions make the check catch position ids not taken from the mask
    model = build(tokenizer)
    batched = greedy_generate(
        model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=4, stop_at_newline=False
    )
    single = [
        greedy_generate(model, tokenizer, [p], max_new_tokens=8, stop_at_newline=False)[0] for p in PROMPTS
    ]
    assert batched == single
    assert any(batched)  # something was generated
    again = greedy_generate(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3, stop_at_newline=False)
    assert again == batched


def test_generation_ignores_tokenizer_padding_side_and_missing_pad(tokenizer):
    model = _llama(tokenizer)
    expected = greedy_generate(
        model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=1, stop_at_newline=False
    )
    right = copy.deepcopy(tokenizer)
    right.padding_side = "right"
    assert greedy_generate(model, right, PROMPTS, max_new_tokens=6, stop_at_newline=False) == expected
    assert right.padding_side == "right"
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    assert greedy_generate(model, no_pad, PROMPTS, max_new_tokens=6, stop_at_newline=False) == expected


def _first_line(text):
    # leading whitespace (an instruct model's opening newline) does not end the answer
    body = text.lstrip()
    return text[: len(text) - len(body)] + body.split("\n", 1)[0]


def test_stop_at_newline_cuts_the_first_line(tokenizer):
    model = _llama(tokenizer)
    full = greedy_generate(model, tokenizer, PROMPTS, max_new_tokens=12, stop_at_newline=False)
    cut = greedy_generate(model, tokenizer, PROMPTS, max_new_tokens=12)
    assert cut == [_first_line(t) for t in full]
    assert _first_line("\n\nLorin\nQuestion") == "\n\nLorin"


def test_factoid_suite_end_to_end(tokenizer, tmp_path):
    p = tmp_path / "factoid.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    model = _llama(tokenizer)
    metrics = evaluate(model, tokenizer, suite="factoid", data=p, max_new_tokens=4)
    assert metrics["factoid"]["n"] == 4 and metrics["factoid"]["n@popularity_half=rare"] == 2
    # the answers are greedy's (by hand, one full forward per token), scored by the metric functions
    predictions = []
    for r in RECORDS:
        ids = tokenizer(f"Question: {r['question']}\nAnswer:")["input_ids"]
        text = tokenizer.decode(
            reference_greedy(model, ids, 4, eos=tokenizer.eos_token_id), skip_special_tokens=True
        )
        predictions.append(_first_line(text))
    em = [exact_match(a, r["answers"]) for a, r in zip(predictions, RECORDS, strict=True)]
    contains = [contains_match(a, r["answers"]) for a, r in zip(predictions, RECORDS, strict=True)]
    assert metrics["factoid"]["exact_match"] == pytest.approx(sum(em) / 4)
    assert metrics["factoid"]["contains"] == pytest.approx(sum(contains) / 4)
    run = run_suite(model, tokenizer, "factoid", data=p, max_new_tokens=4)
    assert [e["prediction"] for e in run.examples["factoid"]] == predictions
    from slimkit.evaluate import make_results

    validate_results(make_results("tiny", metrics, config=FactoidTaskConfig(data=str(p)), seed=1))
