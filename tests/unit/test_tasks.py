"""The KICK tasks: metrics by hand, option scoring against brute force, batching, records, the suite."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from eval_helpers import reference_greedy

from slimkit.core.errors import ConfigError, DataError, RegistryError
from slimkit.evaluate import (
    TASKS,
    InstructTaskConfig,
    KickSuiteConfig,
    LocalJudge,
    MultipleChoiceTaskConfig,
    RetrievalTaskConfig,
    SummarizationTaskConfig,
    evaluate,
    lenient_match,
    make_results,
    rouge_scores,
    run_suite,
    score_continuations,
    token_f1,
    validate_results,
)
from slimkit.evaluate.metrics import after_marker
from slimkit.evaluate.scoring import split_context
from slimkit.evaluate.tasks import multiple_choice as mc_module
from slimkit.evaluate.tasks import retrieval as retrieval_module
from slimkit.evaluate.tasks.base import aggregate
from slimkit.evaluate.tasks.multiple_choice import evaluate_multiple_choice
from slimkit.evaluate.tasks.summarization import KICK_SUMMARY_TEMPLATE
from slimkit.models import tiny_model

MC = [
    {"id": "m1", "question": "Where was Ada born?", "options": ["Lorin", "Voro"], "answer_index": 0,
     "tags": {"n_options": 2}},
    {"id": "m2", "question": "Which year?", "options": ["1907", "1911", "1950", "1870"], "answer_index": 2,
     "tags": {"n_options": 4}},
    {"id": "m3", "question": "Who?", "options": ["Bo Tarn", "Ada", "Kel Varn Sol", "Mo"], "answer_index": 1,
     "tags": {"n_options": 4}},
]  # fmt: skip


def _llama(tok):
    return tiny_model("llama", vocab_size=len(tok), initializer_range=0.2)


# -- metrics by hand -----------------------------------------------------------------------------------
def test_token_f1_by_hand():
    # pred tokens {lorin, city}, gold {lorin}: P = 1/2, R = 1, F1 = 2/3
    assert token_f1("Lorin city", ["Lorin"]) == pytest.approx(2 / 3)
    # best alias wins; articles and punctuation never count
    assert token_f1("the Lorin!", ["Voro", "Lorin"]) == 1.0
    # repeated tokens count with multiplicity: pred {a:2? no}, common = min counts
    assert token_f1("kel kel varn", ["kel varn varn"]) == pytest.approx(2 / 3)
    assert token_f1("", ["Lorin"]) == 0.0 and token_f1("", ["The"]) == 1.0  # both empty after norm
    assert token_f1("voro", ["Lorin"]) == 0.0


def test_lenient_match_by_hand():
    assert lenient_match("Lorin, a big city", ["Lorin"])  # gold inside prediction
    assert lenient_match("Lorin", ["Lorin Valley"])  # prediction inside gold
    assert not lenient_match("", ["Lorin"]) and not lenient_match("The", ["Lorin"])  # empty never matches
    assert not lenient_match("Voro", ["Lorin"])


def test_after_marker():
    assert after_marker("A. B. So the answer is Veda.", "So the answer is") == "Veda"
    assert after_marker("So the answer is X. So the answer is Y.\nmore", "So the answer is") == "Y"
    assert after_marker("no conclusion", "So the answer is") == ""
    assert after_marker("as is", None) == "as is"


def test_rouge_by_hand():
    # reference "the cat sat", prediction "the cat ran": unigram P = R = 2/3; bigram "the cat" 1 of 2
    scores = rouge_scores("the cat ran", "the cat sat")
    assert scores["rouge1"] == pytest.approx(2 / 3)
    assert scores["rouge2"] == pytest.approx(1 / 2)
    assert scores["rougeL"] == pytest.approx(2 / 3)
    assert rouge_scores("", "the cat")["rouge1"] == 0.0


def test_aggregate_groups_by_tag():
    records = [{"tags": {"k": 2}}, {"tags": {"k": 16}}, {"tags": {"k": 2}}, {}]
    m = aggregate(records, {"acc": [1, 0, 0, 1]}, ["k"])
    assert m["acc"] == 0.5 and m["n"] == 4
    assert m["acc@k=2"] == 0.5 and m["n@k=2"] == 2 and m["acc@k=16"] == 0.0
    assert list(m) == ["acc", "n", "acc@k=2", "n@k=2", "acc@k=16", "n@k=16"]  # numeric order


# -- option scoring ------------------------------------------------------------------------------------
def _brute_force(model, ctx_ids, cont_ids):
    ids = torch.tensor([ctx_ids + cont_ids])
    with torch.no_grad():
        logprobs = F.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(float(logprobs[len(ctx_ids) - 1 + j, t]) for j, t in enumerate(cont_ids))


@pytest.mark.parametrize("family", ["llama", "opt", "gpt2"])
def test_option_scores_equal_brute_force_and_do_not_depend_on_batching(family, tiny_tok):
    model = tiny_model(family, vocab_size=len(tiny_tok)).eval()
    requests = [
        ("Question: Where was Ada born?\nAnswer:", [" Lorin", " Voro of the north", " x"]),
        ("Hi", [" there", " you"]),
        ("A much longer context about many things that go on and on.", [" yes", " no way at all"]),
        ("Trailing space ", ["moves", "too"]),
    ]
    batched = score_continuations(model, tiny_tok, requests, batch_size=3)
    single = score_continuations(model, tiny_tok, requests, batch_size=1)
    for (context, options), got, got1 in zip(requests, batched, single, strict=True):
        for option, score, score1 in zip(options, got, got1, strict=True):
            ctx_ids, cont_ids = split_context(tiny_tok, context, option)
            assert score.n_tokens == len(cont_ids)
            assert score.logprob == pytest.approx(_brute_force(model, ctx_ids, cont_ids), abs=1e-4)
            assert score1.logprob == pytest.approx(score.logprob, abs=1e-4)


def test_split_context_moves_trailing_space(tiny_tok):
    ctx, cont = split_context(tiny_tok, "Answer: ", "Lorin")
    ctx2, cont2 = split_context(tiny_tok, "Answer:", " Lorin")
    assert (ctx, cont) == (ctx2, cont2)
    with pytest.raises(DataError, match="no tokens"):
        split_context(tiny_tok, "Answer:", "")


def test_scoring_cuts_long_contexts_from_the_left_and_rejects_empty_requests(tiny_tok):
    model = tiny_model("llama", vocab_size=len(tiny_tok), max_position_embeddings=16).eval()
    with pytest.raises(DataError, match="no continuations"):
        score_continuations(model, tiny_tok, [("ctx", [])])
    context, options = "word " * 40, [" a", " Voro of the north"]
    (scores,) = score_continuations(model, tiny_tok, [(context, options)])
    for option, score in zip(options, scores, strict=True):
        ctx_ids, cont_ids = split_context(tiny_tok, context, option)
        # lm-eval: (context + continuation)[-(max_length + 1):], each continuation on its own cut
        kept = ctx_ids[-(16 + 1 - len(cont_ids)) :]
        assert score.logprob == pytest.approx(_brute_force(model, kept, cont_ids), abs=1e-4)
    with pytest.raises(DataError, match="does not fit"):
        score_continuations(model, tiny_tok, [("ctx", [" word" * 20])])


# -- multiple choice -----------------------------------------------------------------------------------
def test_mc_accuracy_by_hand(monkeypatch):
    from slimkit.evaluate.scoring import ContinuationScore

    def fake_scores(model, tok, requests, **kw):
        # m1: option 0 best (correct); m2: option 1 best by sum but option 2 best per character;
        # m3: option 2 best (wrong), per character also wrong
        table = {
            "Where was Ada born?": [-1.0, -2.0],
            "Which year?": [-4.0, -3.0, -3.5, -9.0],
            "Who?": [-5.0, -6.0, -2.0, -7.0],
        }
        return [
            [ContinuationScore(v, 1, False) for v in table[p.split("Question: ")[1].split("\n")[0]]]
            for p, _ in requests
        ]

    monkeypatch.setattr(mc_module, "score_continuations", fake_scores)
    out = evaluate_multiple_choice(None, None, MultipleChoiceTaskConfig(data=MC))
    m = out.metrics
    assert m["accuracy"] == pytest.approx(1 / 3)
    # per character (option text without the delimiter): m2 "1950" -3.5/4 = -0.875 vs "1911" -0.75 → still 1911
    assert m["accuracy_norm"] == pytest.approx(1 / 3)
    assert m["chance"] == pytest.approx((1 / 2 + 1 / 4 + 1 / 4) / 3)
    assert m["accuracy@n_options=2"] == 1.0 and m["n@n_options=4"] == 2
    assert [e["prediction"] for e in out.examples] == [0, 1, 2]


def test_mc_length_normalisation_changes_the_pick(monkeypatch):
    from slimkit.evaluate.scoring import ContinuationScore

    monkeypatch.setattr(
        mc_module,
        "score_continuations",
        lambda m, t, reqs, **kw: [[ContinuationScore(-4.0, 3, False), ContinuationScore(-3.0, 1, False)]],
    )
    record = {"id": "x", "question": "q", "options": ["longer answer", "ab"], "answer_index": 0}
    m = evaluate_multiple_choice(None, None, MultipleChoiceTaskConfig(data=[record])).metrics
    # sums: -4 vs -3 picks "ab"; per char: -4/13 vs -3/2 picks "longer answer"
    assert m["accuracy"] == 0.0 and m["accuracy_norm"] == 1.0


def test_mc_on_a_model_matches_brute_force_argmax(tiny_tok):
    model = _llama(tiny_tok)
    out = evaluate_multiple_choice(model, tiny_tok, MultipleChoiceTaskConfig(data=MC, batch_size=2))
    for record, example in zip(MC, out.examples, strict=True):
        brute = []
        for option in record["options"]:
            ctx, cont = split_context(tiny_tok, f"Question: {record['question']}\nAnswer:", " " + option)
            brute.append(_brute_force(model, ctx, cont))
        assert example["logprobs"] == pytest.approx(brute, abs=1e-4)
        assert example["prediction"] == max(range(len(brute)), key=lambda i: brute[i])
    again = evaluate_multiple_choice(model, tiny_tok, MultipleChoiceTaskConfig(data=MC, batch_size=1))
    assert again.metrics == out.metrics


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "a", "question": "q", "options": ["x"], "answer_index": 0}, "at least 2"),
        ({"id": "a", "question": "q", "options": ["x", "y"], "answer_index": 2}, r"answer_index.*\[0, 1\]"),
        ({"id": "a", "question": "q", "options": ["x", "y"]}, r"missing field\(s\) \['answer_index'\]"),
        ({"id": "a", "question": 3, "options": ["x", "y"], "answer_index": 0}, "'question' must be a string"),
    ],
)
def test_mc_bad_records(record, message):
    with pytest.raises(DataError, match=message):
        evaluate_multiple_choice(None, None, MultipleChoiceTaskConfig(data=[record]))


def test_mc_record_prompt_overrides_template(monkeypatch):
    seen = []

    def fake_scores(model, tok, requests, **kw):
        seen.extend(requests)
        from slimkit.evaluate.scoring import ContinuationScore

        return [[ContinuationScore(0.0, 1, True) for _ in opts] for _, opts in requests]

    monkeypatch.setattr(mc_module, "score_continuations", fake_scores)
    record = {
        "id": "a",
        "question": "q",
        "options": ["A", "B"],
        "answer_index": 0,
        "prompt": "Q?\nA. x\nB. y\nAnswer:",
    }
    evaluate_multiple_choice(None, None, MultipleChoiceTaskConfig(data=[record]))
    assert seen == [("Q?\nA. x\nB. y\nAnswer:", [" A", " B"])]


# -- retrieval, summarization, instruct ----------------------------------------------------------------
def test_retrieval_metrics_by_hand(monkeypatch):
    monkeypatch.setattr(
        retrieval_module,
        "greedy_generate",
        lambda m, t, prompts, **kw: ["Lorin", "in Lorin town", "", "Voro"],
    )
    records = [
        {"id": str(i), "context": "ctx " * (i + 1), "question": "Where?", "answers": ["Lorin"],
         "tags": {"context_length": "short" if i < 2 else "long"}}
        for i in range(4)
    ]  # fmt: skip
    out = retrieval_module.evaluate_retrieval(None, None, RetrievalTaskConfig(data=records))
    m = out.metrics
    assert m["exact_match"] == 0.25 and m["lenient"] == 0.5
    assert m["f1"] == pytest.approx((1 + 2 / 4 + 0 + 0) / 4)  # "in lorin town": P 1/3, R 1 → 0.5
    assert m["exact_match@context_length=short"] == 0.5 and m["lenient@context_length=long"] == 0.0


def test_retrieval_context_cut_and_template(monkeypatch):
    seen = []
    monkeypatch.setattr(
        retrieval_module, "greedy_generate", lambda m, t, prompts, **kw: seen.extend(prompts) or ["x"]
    )
    cfg = RetrievalTaskConfig(
        data=[{"id": "a", "context": "abcdef", "question": "Q", "answers": ["x"]}],
        max_context_chars=3,
        prompt_template=retrieval_module.KICK_RETRIEVAL_TEMPLATE,
    )
    retrieval_module.evaluate_retrieval(None, None, cfg)
    assert seen == ["abc\n\nBased on these texts, answer these questions:\n\nQ: Q\nA:"]
    with pytest.raises(ConfigError, match="must contain {context}"):
        RetrievalTaskConfig(prompt_template="{question}")


def test_summarization_end_to_end(tiny_tok):
    records = [
        {"id": "s1", "document": "Ada was born in Lorin. She works for Kel.", "summary": "Ada, born in Lorin.",
         "tags": {"length": "small"}},
        {"id": "s2", "document": "Voro is a city.", "summary": "Voro is a city.", "tags": {"length": "small"}},
    ]  # fmt: skip
    m = evaluate(_llama(tiny_tok), tiny_tok, suite="summarization", data=records, max_new_tokens=6)[
        "summarization"
    ]
    assert m["n"] == 2 and m["n@length=small"] == 2
    # the summaries are what greedy decoding gives, scored by rouge-score against the references
    run = run_suite(_llama(tiny_tok), tiny_tok, "summarization", data=records, max_new_tokens=6)
    for ex, r in zip(run.examples["summarization"], records, strict=True):
        ids = tiny_tok(KICK_SUMMARY_TEMPLATE.format(document=r["document"]))["input_ids"]
        assert ex["prediction"] == tiny_tok.decode(
            reference_greedy(_llama(tiny_tok), ids, 6, eos=2), skip_special_tokens=True
        )
        assert ex["rougeL"] == pytest.approx(rouge_scores(ex["prediction"].strip(), r["summary"])["rougeL"])
    assert m["rougeL"] == pytest.approx(sum(ex["rougeL"] for ex in run.examples["summarization"]) / 2)


def test_rouge_l_and_key_fact_recall_by_hand():
    from slimkit.evaluate.metrics import key_fact_recall

    reference = "Ther Zamrer was born in 1968 in Lamkiso, lives in Borfar and works for Krobri Systems."
    summary = "Ther Zamrer lives in Borfar. He was born in Lamkiso."
    # rouge-score lowercases and keeps [a-z0-9] runs: the reference has 16 tokens, the summary 10.
    # Longest common subsequence: "ther zamrer was born in lamkiso" (6); "ther zamrer lives in
    # borfar" is only 5, and nothing of the reference after "borfar" is in the summary.
    p, r = 6 / 10, 6 / 16
    assert rouge_scores(summary, reference)["rougeL"] == pytest.approx(2 * p * r / (p + r))
    facts = ["Ther Zamrer", "Lamkiso", "Borfar", "Krobri Systems", "1968"]
    assert key_fact_recall(summary, facts) == pytest.approx(3 / 5)
    assert key_fact_recall(reference, facts) == 1.0
    # whole words only, after SQuAD normalisation (case, punctuation, articles)
    assert key_fact_recall("born in LAMKISO!", ["Lamkiso"]) == 1.0
    assert key_fact_recall("born in Lamkisoto", ["Lamkiso"]) == 0.0
    assert key_fact_recall("works for Krobri", ["Krobri Systems"]) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        key_fact_recall("x", [])
    with pytest.raises(ValueError, match="empty after normalisation"):
        key_fact_recall("x", ["The"])


def test_summarization_key_fact_recall_end_to_end(tiny_tok):
    records = [
        {"id": "s1", "document": "Ada was born in Lorin. Ada works for Kel.", "summary": "Ada, born in Lorin.",
         "key_facts": ["Ada", "Lorin", "Kel"], "tags": {"length": "short"}},
        {"id": "s2", "document": "Voro lives in Sel.", "summary": "Voro lives in Sel.",
         "key_facts": ["Voro", "Sel"], "tags": {"length": "long"}},
    ]  # fmt: skip
    run = run_suite(_llama(tiny_tok), tiny_tok, "summarization", data=records, max_new_tokens=6)
    from slimkit.evaluate.metrics import key_fact_recall

    examples = run.examples["summarization"]
    for ex, r in zip(examples, records, strict=True):
        assert ex["key_fact_recall"] == key_fact_recall(ex["prediction"], r["key_facts"])
    m = run.metrics["summarization"]
    assert m["key_fact_recall"] == pytest.approx(sum(ex["key_fact_recall"] for ex in examples) / 2)
    assert m["key_fact_recall@length=short"] == examples[0]["key_fact_recall"]
    # a model that copies the document keeps every fact: score such "summaries" directly
    assert key_fact_recall(records[0]["document"], records[0]["key_facts"]) == 1.0
    # key facts on some records only is a data error, named
    with pytest.raises(DataError, match="1 of 2 records list key_facts"):
        evaluate(_llama(tiny_tok), tiny_tok, suite="summarization",
                 data=[records[0], {k: v for k, v in records[1].items() if k != "key_facts"}], max_new_tokens=2)  # fmt: skip
    with pytest.raises(DataError, match="key_facts"):
        evaluate(_llama(tiny_tok), tiny_tok, suite="summarization",
                 data=[{**records[0], "key_facts": "Ada"}], max_new_tokens=2)  # fmt: skip


def test_instruct_without_judge_is_skipped_not_faked(tiny_tok):
    records = [{"id": "i1", "instruction": "Say hi.", "tags": {"category": "generic"}}]
    run = run_suite(_llama(tiny_tok), tiny_tok, "kick", data=f"jsonl:instruct:{_write(records)}")
    assert run.metrics == {} and "needs a judge" in run.skipped["instruct"]


def test_instruct_with_callable_and_local_judges(tiny_tok, tmp_path):
    records = [
        {"id": "i1", "instruction": "Say hi.", "tags": {"category": "generic"}},
        {"id": "i2", "instruction": "Name a city.", "reference": "Lorin", "tags": {"category": "knowledge"}},
    ]
    calls = []

    def judge(instruction, response, reference):
        calls.append((instruction, reference))
        return None if reference else 7.0  # cannot rate the second

    m = evaluate(_llama(tiny_tok), tiny_tok, suite="instruct", data=records, max_new_tokens=4, judge=judge)
    m = m["instruct"]
    assert calls == [("Say hi.", None), ("Name a city.", "Lorin")]
    assert m["score"] == 7.0 and m["n"] == 1 and m["rated"] == 0.5 and m["n_responses"] == 2
    local = LocalJudge(_llama(tiny_tok), tiny_tok)
    assert local.parse("I give it 11, no: 8/10") == 8.0 and local.parse("great") is None
    with pytest.raises(ConfigError, match="low < high"):
        LocalJudge(None, None, low=5, high=5)


# -- the suite and bad input ---------------------------------------------------------------------------
def _write(records, name="task.jsonl"):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_kick_suite_runs_the_tasks_of_a_directory(tiny_tok, tmp_path):
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MC))
    factoid = [
        {
            "id": "f",
            "question": "Where was Ada born?",
            "answers": ["Lorin"],
            "tags": {"popularity_half": "rare"},
        }
    ]
    (tmp_path / "factoid.jsonl").write_text(json.dumps(factoid[0]) + "\n")
    model = _llama(tiny_tok)
    metrics = evaluate(
        model, tiny_tok, suite="kick", data=str(tmp_path), task_options={"factoid": {"max_new_tokens": 3}}
    )
    assert set(metrics) == {"factoid", "mc"} and metrics["mc"]["n"] == 3
    only = evaluate(model, tiny_tok, suite="kick", data=str(tmp_path), tasks="mc", limit=2)
    assert set(only) == {"mc"} and only["mc"]["n"] == 2
    validate_results(make_results("tiny", metrics, config=KickSuiteConfig(data=str(tmp_path)), seed=0))
    with pytest.raises(DataError, match=r"no 'retrieval' data .* it provides \['factoid', 'mc'\]"):
        evaluate(model, tiny_tok, suite="kick", data=str(tmp_path), tasks=("retrieval",))


def test_unknown_task_names_list_the_known_ones():
    with pytest.raises(RegistryError, match="known.*factoid.*kick.*mc"):
        TASKS.config_for("trivia")
    with pytest.raises(ConfigError, match="unknown KICK task 'trivia'; known: factoid, mc"):
        KickSuiteConfig(tasks=("trivia",))
    with pytest.raises(ConfigError, match="unknown KICK task"):
        KickSuiteConfig(task_options={"bogus": {}})


def test_option_typos_are_named():
    with pytest.raises(ConfigError, match="max_new_token"):
        SummarizationTaskConfig.from_dict({"max_new_token": 3})
    with pytest.raises(ConfigError, match="instruction"):
        InstructTaskConfig(prompt_template="{question}")


def test_retrieval_answer_marker(monkeypatch):
    monkeypatch.setattr(
        retrieval_module,
        "greedy_generate",
        lambda m, t, prompts, **kw: ["Ada lives in Voro. So the answer is Voro.", "Ada lives in Voro."],
    )
    records = [{"id": str(i), "context": "c", "question": "q", "answers": ["Voro"]} for i in range(2)]
    out = retrieval_module.evaluate_retrieval(
        None, None, RetrievalTaskConfig(data=records, answer_marker="So the answer is")
    )
    assert [e["prediction"] for e in out.examples] == ["Voro", ""]  # no conclusion, no credit
    assert out.metrics["exact_match"] == 0.5 and out.metrics["lenient"] == 0.5


def test_dataset_directory_ships_task_options(tiny_tok, tmp_path, monkeypatch):
    (tmp_path / "retrieval.jsonl").write_text(
        json.dumps({"id": "r", "context": "Ada lives in Voro.", "question": "q", "answers": ["Voro"]}) + "\n"
    )
    (tmp_path / "task_options.json").write_text(
        json.dumps({"retrieval": {"answer_marker": "So", "max_new_tokens": 3}})
    )
    budgets = []

    def fake_generate(model, tok, prompts, max_new_tokens, **kw):
        budgets.append(max_new_tokens)
        return ["Ada lives in Voro. So Voro"]

    monkeypatch.setattr(retrieval_module, "greedy_generate", fake_generate)
    run = run_suite(None, tiny_tok, "kick", data=str(tmp_path))
    assert run.examples["retrieval"][0]["prediction"] == "Voro"  # the shipped marker was used
    run_suite(None, tiny_tok, "kick", data=str(tmp_path), task_options={"retrieval": {"max_new_tokens": 9}})
    assert budgets == [3, 9]  # the caller's choice wins over the shipped one
    (tmp_path / "task_options.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="task_options.json"):
        evaluate(None, tiny_tok, suite="kick", data=str(tmp_path))
