"""Prompts and decoding that hold on real models: chat templates, few-shot, BOS, greedy, stop strings."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import bos_tokenizer, reference_greedy

from slimkit.core.errors import ConfigError, DataError
from slimkit.evaluate import FactoidTaskConfig, MultipleChoiceTaskConfig, evaluate, greedy_generate, run_suite
from slimkit.evaluate.generation import cut_at_stops
from slimkit.evaluate.prompting import encode, render_prompts, resolve_chat, sample_shots
from slimkit.models import load_model, save_model, tiny_model, tiny_tokenizer

CHAT_TEMPLATE = (
    "{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
)
RECORDS = [
    {"id": f"q{i}", "question": f"What is the name of thing {i}?", "answers": [f"answer{i}x"],
     "tags": {"relation": "r" + str(i % 2)}}
    for i in range(12)
]  # fmt: skip


def chat_tokenizer():
    tok = tiny_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    return tok


class Scripted:
    """Makes a model emit ``script`` token by token whatever it is given (a hook on its output head)."""

    def __init__(self, model, script):
        self.script, self.step = list(script), 0
        self.handle = model.lm_head.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        forced = torch.full_like(output, -1e4)
        forced[:, -1, self.script[min(self.step, len(self.script) - 1)]] = 1e4
        self.step += 1
        return forced


# -- chat templates ---------------------------------------------------------------------------------------
def test_chat_template_prompts_equal_apply_chat_template(monkeypatch):
    tok = chat_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok))
    seen = {}

    def fake_generate(model, tokenizer, prompts, **kwargs):
        seen["prompts"] = list(prompts)
        return ["answer0x"] * len(prompts)

    monkeypatch.setattr("slimkit.evaluate.tasks.factoid.greedy_generate", fake_generate)
    cfg = FactoidTaskConfig(data=RECORDS[:3], system_prompt="Answer briefly.")
    evaluate(model, tok, cfg)
    for record, prompt in zip(RECORDS[:3], seen["prompts"], strict=True):
        expected = tok.apply_chat_template(
            [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": f"Question: {record['question']}\nAnswer:"},
            ],
            tokenize=False,
            add_generation_prompt=True,
        )
        assert prompt == expected
    # off: the plain template, the system prompt as a first paragraph
    evaluate(model, tok, cfg.replace(chat_template="off"))
    assert seen["prompts"][0] == f"Answer briefly.\n\nQuestion: {RECORDS[0]['question']}\nAnswer:"


def test_chat_template_modes():
    plain, chat = tiny_tokenizer(), chat_tokenizer()
    assert resolve_chat(chat, "auto") and not resolve_chat(plain, "auto") and not resolve_chat(chat, "off")
    with pytest.raises(ConfigError, match="no chat template"):
        resolve_chat(plain, "on")
    with pytest.raises(ConfigError, match="chat_template"):
        FactoidTaskConfig(chat_template="yes")


def test_mc_under_a_chat_template_scores_options_as_the_reply(monkeypatch):
    tok = chat_tokenizer()
    seen = {}

    def fake_score(model, tokenizer, requests, **kwargs):
        seen["requests"] = requests
        return [[type("S", (), {"logprob": -float(j), "n_tokens": 1, "is_greedy": False})() for j in range(2)]
                for _ in requests]  # fmt: skip

    monkeypatch.setattr("slimkit.evaluate.tasks.multiple_choice.score_continuations", fake_score)
    records = [{"id": "m", "question": "Which?", "options": ["Lorin", "Voro"], "answer_index": 0}]
    evaluate(None, tok, MultipleChoiceTaskConfig(data=records))
    prompt, options = seen["requests"][0]
    assert prompt == tok.apply_chat_template(
        [{"role": "user", "content": "Question: Which?\nAnswer:"}], tokenize=False, add_generation_prompt=True
    )
    assert options == ["Lorin", "Voro"]  # lm-eval's target_delimiter "" under a chat template


# -- few-shot ---------------------------------------------------------------------------------------------
def test_fewshot_prompts_never_contain_the_item_and_do_not_depend_on_limit(monkeypatch):
    seen = {}

    def fake_generate(model, tokenizer, prompts, **kwargs):
        seen["prompts"] = list(prompts)
        return [""] * len(prompts)

    monkeypatch.setattr("slimkit.evaluate.tasks.factoid.greedy_generate", fake_generate)
    tok = tiny_tokenizer()
    # a pool record that repeats an item's question under another id must not serve as its shot
    duplicate = {**RECORDS[0], "id": "dup", "answers": ["leaked"]}
    evaluate(None, tok, FactoidTaskConfig(data=RECORDS + [duplicate], num_fewshot=3))
    full = seen["prompts"]
    for record, prompt in zip(RECORDS, full[: len(RECORDS)], strict=True):
        assert prompt.count(record["question"]) == 1 and prompt.endswith(f"{record['question']}\nAnswer:")
        assert record["answers"][0] not in prompt  # every answer is unique: a shot of the item would show it
        assert prompt.count("\nAnswer: ") == 3  # three solved examples, then the item
    assert "leaked" not in full[0]
    evaluate(None, tok, FactoidTaskConfig(data=RECORDS + [duplicate], num_fewshot=3, limit=4))
    assert seen["prompts"] == full[:4]
    evaluate(None, tok, FactoidTaskConfig(data=RECORDS, num_fewshot=3, fewshot_seed=7))
    assert seen["prompts"] != full[: len(RECORDS)]


def test_shots_come_from_the_pool_and_too_few_shots_are_an_error():
    prompts = render_prompts(
        tiny_tokenizer(), RECORDS[2:3], lambda r: r["question"], lambda r: r["answers"][0], num_fewshot=1,
        pool=RECORDS[:2],
    )  # fmt: skip
    assert prompts[0].startswith(RECORDS[0]["question"]) or prompts[0].startswith(RECORDS[1]["question"])
    with pytest.raises(DataError, match="num_fewshot=2"):
        sample_shots(RECORDS[0], RECORDS[:2], 2, seed=0)
    with pytest.raises(ConfigError, match="few-shot"):
        evaluate(None, tiny_tokenizer(), "summarization", data=[], num_fewshot=1)


def test_fewshot_file_option_feeds_the_shots(monkeypatch, tmp_path):
    import json

    seen = {}
    monkeypatch.setattr(
        "slimkit.evaluate.tasks.factoid.greedy_generate",
        lambda model, tok, prompts, **kw: seen.setdefault("p", list(prompts)) and [""] * len(prompts),
    )
    dev = tmp_path / "dev.jsonl"
    dev.write_text(json.dumps({"id": "d", "question": "Dev question?", "answers": ["devans"]}) + "\n")
    evaluate(
        None, tiny_tokenizer(), FactoidTaskConfig(data=RECORDS[:2], num_fewshot=1, fewshot_data=str(dev))
    )
    assert all(p.startswith("Question: Dev question?\nAnswer: devans\n\n") for p in seen["p"])


# -- BOS --------------------------------------------------------------------------------------------------
def test_encode_adds_bos_once_as_lm_eval_does():
    tok = bos_tokenizer()
    assert encode(tok, "hello")[0] == tok.bos_token_id
    ids = encode(tok, "<|bos|>user\nhello")
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    assert encode(tok, "hello", add_bos_token=False)[0] != tok.bos_token_id


def test_generation_conditions_on_the_tokenizers_bos():
    tok = bos_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), initializer_range=0.2).eval()
    prompt = "The river runs past the old mill"
    ids = tok(prompt)["input_ids"]  # with BOS
    assert ids[0] == tok.bos_token_id
    expected = reference_greedy(model, ids, 6)
    out = greedy_generate(model, tok, [prompt, "<|bos|>" + prompt], max_new_tokens=6, stop_at_newline=False)
    assert out == [tok.decode(expected, skip_special_tokens=True)] * 2  # never a doubled BOS


# -- greedy whatever the checkpoint says -------------------------------------------------------------------
def test_checkpoint_generation_config_cannot_change_greedy_decoding(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), seed=0, initializer_range=0.2)
    model.generation_config.repetition_penalty = 1.8
    model.generation_config.no_repeat_ngram_size = 2
    saved = save_model(model, tok, tmp_path / "m")
    loaded, tok = load_model(saved)
    assert loaded.generation_config.repetition_penalty == 1.8  # the checkpoint's settings came back
    prompt = "The river runs past the old mill"
    ids = tok(prompt)["input_ids"]
    expected = reference_greedy(loaded, ids, 16, eos=tok.eos_token_id)
    # precondition: transformers applies those settings when asked to generate with the model's config
    with torch.no_grad():
        theirs = loaded.generate(input_ids=torch.tensor([ids]), max_new_tokens=16, do_sample=False)
    assert theirs[0, len(ids) :].tolist() != expected
    out = greedy_generate(loaded, tok, [prompt], max_new_tokens=16, stop_at_newline=False)
    assert out == [tok.decode(expected, skip_special_tokens=True)]
    assert loaded.generation_config.repetition_penalty == 1.8  # and they are put back afterwards


# -- stop strings -----------------------------------------------------------------------------------------
def test_cut_at_stops_after_text():
    assert cut_at_stops("\nParis\nQuestion", ["\n"], after_text=True) == "\nParis"
    assert cut_at_stops("\nParis\nQuestion", ["\n"]) == ""
    assert cut_at_stops("  \n\n", ["\n"], after_text=True) == "  \n\n"
    assert cut_at_stops("Paris. Q: next", ["Q:", "\n"], after_text=True) == "Paris. "


def test_an_answer_that_opens_with_a_newline_is_scored():
    tok = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok)).eval()
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    answer = tok(" Lorin", add_special_tokens=False)["input_ids"]
    Scripted(model, newline + answer + newline + answer)
    records = [{"id": "f", "question": "Where was Ada born?", "answers": ["Lorin"]}]
    run = run_suite(model, tok, FactoidTaskConfig(data=records, max_new_tokens=8))
    assert run.examples["factoid"][0]["generation"] == "\n Lorin"
    assert run.metrics["factoid"]["exact_match"] == 1.0


def test_per_prompt_token_budgets():
    tok = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), initializer_range=0.2).eval()
    prompts = ["The river runs past the old mill", "Hello there"]
    long = greedy_generate(model, tok, prompts, max_new_tokens=8, stop_at_newline=False)
    short = greedy_generate(model, tok, prompts, max_new_tokens=[3, 8], stop_at_newline=False)
    ref = reference_greedy(model, tok(prompts[0])["input_ids"], 3)
    assert short == [tok.decode(ref, skip_special_tokens=True), long[1]]


# -- provenance -------------------------------------------------------------------------------------------
def test_prompting_is_recorded_for_the_results(monkeypatch):
    monkeypatch.setattr(
        "slimkit.evaluate.tasks.factoid.greedy_generate",
        lambda model, tok, prompts, **kw: [""] * len(prompts),
    )
    run = run_suite(None, chat_tokenizer(), FactoidTaskConfig(data=RECORDS, num_fewshot=2, system_prompt="S"))
    cfg = run.task_configs["factoid"]
    assert (
        cfg["num_fewshot"] == 2 and cfg["system_prompt"] == "S" and cfg["data"] == f"<{len(RECORDS)} records>"
    )
    assert cfg["prompting"]["chat_template_applied"] is True and cfg["headline"] == "exact_match"
    assert cfg["chat_template"] == "auto" and cfg["fewshot_seed"] == 1234
