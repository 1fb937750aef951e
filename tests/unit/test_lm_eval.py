"""The lm-eval adapter: its three request types against slimkit's engine and lm-eval's own HF model."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F
from eval_helpers import bos_tokenizer

pytest.importorskip("lm_eval", reason="the `eval` extra (lm-eval) is part of the dev install")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from slimkit.core.errors import SlimkitError  # noqa: E402
from slimkit.evaluate import MultipleChoiceTaskConfig, evaluate  # noqa: E402
from slimkit.evaluate.lm_eval import SlimkitLM, run_lm_eval  # noqa: E402
from slimkit.models import tiny_model  # noqa: E402

RECORDS = [
    {
        "id": f"m{i}",
        "question": f"Where was person {i} born?",
        "options": ["Lorin", "Voro of the hills", "Kesh", "Tam"],
        "answer_index": i % 4,
    }
    for i in range(12)
]


class _Req:
    def __init__(self, *args):
        self.args = args


@pytest.fixture(scope="module")
def model_and_tok():
    from slimkit.models import tiny_tokenizer

    tok = tiny_tokenizer()
    return tiny_model("llama", vocab_size=len(tok), initializer_range=0.2, max_position_embeddings=32), tok


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm_eval_task")
    (d / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    (d / "toy.yaml").write_text(
        "task: slimkit_toy_mc\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {d / 'mc.jsonl'}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        'doc_to_choice: "{{options}}"\n'
        "doc_to_target: answer_index\n"
        "metric_list:\n"
        "  - metric: acc\n"
    )
    return d


def test_local_task_yaml_gives_slimkits_accuracy_and_lm_evals_hf_number(model_and_tok, task_dir):
    model, tok = model_and_tok
    ours = run_lm_eval(
        SlimkitLM(model, tok),
        ["slimkit_toy_mc"],
        include_path=str(task_dir),
        allow_code=True,
        include_defaults=False,
    )
    acc = ours["results"]["slimkit_toy_mc"]["acc,none"]
    native = evaluate(model, tok, MultipleChoiceTaskConfig(data=RECORDS))["mc"]["accuracy"]
    assert acc == pytest.approx(native)

    pytest.importorskip("accelerate", reason="lm-eval's HF model needs accelerate")
    from lm_eval.models.huggingface import HFLM

    theirs = run_lm_eval(
        HFLM(pretrained=model, tokenizer=tok, batch_size=4),
        ["slimkit_toy_mc"],
        include_path=str(task_dir),
        allow_code=True,
        include_defaults=False,
    )
    assert theirs["results"]["slimkit_toy_mc"]["acc,none"] == pytest.approx(acc)


def test_loglikelihood_equals_lm_evals_hf_model(model_and_tok):
    pytest.importorskip("accelerate")
    from lm_eval.models.huggingface import HFLM

    model, tok = model_and_tok
    requests = [_Req("Question: where?\nAnswer:", " Lorin"), _Req("Question: where?\nAnswer:", " Voro hills"),
                _Req("Hi ", "there"), _Req("", "start of text")]  # fmt: skip
    ours = SlimkitLM(model, tok, batch_size=2).loglikelihood(requests)
    theirs = HFLM(pretrained=model, tokenizer=tok, batch_size=1).loglikelihood(requests)
    for (lp, greedy), (lp2, greedy2) in zip(ours, theirs, strict=True):
        assert lp == pytest.approx(lp2, abs=1e-4) and greedy == greedy2


def test_loglikelihood_rolling_sums_every_token_once(model_and_tok):
    model, tok = model_and_tok
    text = "the quick brown fox jumps over the lazy dog " * 6  # longer than the 32 positions
    (total,) = SlimkitLM(model, tok).loglikelihood_rolling([_Req(text)])
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > 32
    # brute force: every token scored once, with the windows lm-eval defines (context length 1)
    from lm_eval import utils

    expected = 0.0
    for ctx, pred in map(
        utils.make_disjoint_window, utils.get_rolling_token_windows(ids, tok.bos_token_id, 32, 1)
    ):
        with torch.no_grad():
            logprobs = F.log_softmax(model(input_ids=torch.tensor([ctx + pred])).logits[0].float(), dim=-1)
        expected += sum(float(logprobs[len(ctx) - 1 + j, t]) for j, t in enumerate(pred))
    assert total == pytest.approx(expected, abs=1e-3)


def test_generate_until_equals_lm_evals_hf_model(model_and_tok):
    pytest.importorskip("accelerate")
    from lm_eval.models.huggingface import HFLM

    model, tok = model_and_tok
    free = HFLM(pretrained=model, tokenizer=tok, batch_size=1).generate_until(
        [_Req("Question: where?\nAnswer:", {"until": [], "max_gen_toks": 6})]
    )[0]
    stop = free[2:4] or "zz"  # a string the continuation surely contains
    requests = [
        _Req("Question: where?\nAnswer:", {"until": [stop], "max_gen_toks": 6}),
        _Req("Hello", {"until": "zzzz", "max_gen_toks": 6}),
        _Req("Hello", {"until": ["zzzz"], "max_gen_toks": 3, "do_sample": False}),
        _Req("the quick brown fox jumps over the lazy dog " * 3, {"until": ["zzzz"], "max_gen_toks": 4}),
    ]
    ours = SlimkitLM(model, tok, batch_size=2).generate_until(requests)
    theirs = HFLM(pretrained=model, tokenizer=tok, batch_size=1).generate_until(requests)
    assert ours == theirs
    assert ours[0] == free[: free.find(stop)]


@pytest.fixture(scope="module")
def bos_model_and_tok():
    tok = bos_tokenizer()
    assert tok("a")["input_ids"][0] == tok.bos_token_id
    return tiny_model("llama", vocab_size=len(tok), initializer_range=0.2, max_position_embeddings=32), tok


def test_a_bos_tokenizer_scores_as_in_lm_evals_hf_model(bos_model_and_tok):
    """BOS as the tokenizer adds it, never doubled, over-long requests cut from the left: all three calls."""
    pytest.importorskip("accelerate")
    from lm_eval.models.huggingface import HFLM

    model, tok = bos_model_and_tok
    long = "the quick brown fox jumps over the lazy dog " * 5  # longer than the 32 positions
    requests = [_Req("Question: where?\nAnswer:", " Lorin"), _Req("<|bos|>Question: where?", " Kesh"),
                _Req("", "start of text"), _Req(long, " Voro hills")]  # fmt: skip
    ours = SlimkitLM(model, tok, batch_size=2).loglikelihood(requests)
    theirs = HFLM(pretrained=model, tokenizer=tok, batch_size=1).loglikelihood(requests)
    for (lp, greedy), (lp2, greedy2) in zip(ours, theirs, strict=True):
        assert lp == pytest.approx(lp2, abs=1e-4) and greedy == greedy2

    texts = [_Req(long), _Req("short text")]
    rolling = SlimkitLM(model, tok).loglikelihood_rolling(texts)
    assert rolling == pytest.approx(
        HFLM(pretrained=model, tokenizer=tok, batch_size=1).loglikelihood_rolling(texts), abs=1e-3
    )

    gens = [_Req("Question: where?\nAnswer:", {"until": ["zzzz"], "max_gen_toks": 5}),
            _Req("<|bos|>Hello", {"until": ["zzzz"], "max_gen_toks": 5}),
            _Req(long, {"until": ["zzzz"], "max_gen_toks": 5})]  # fmt: skip
    assert SlimkitLM(model, tok).generate_until(gens) == HFLM(
        pretrained=model, tokenizer=tok, batch_size=1
    ).generate_until(gens)


def test_batch_size_auto_and_dropped_sampling_arguments_warn(model_and_tok):
    model, tok = model_and_tok
    lm = SlimkitLM(model, tok, batch_size="auto", max_batch_size=8)
    assert lm.batch_size == 8 and lm.auto_batch
    requests = [_Req("Question: where?\nAnswer:", " Lorin"), _Req("Hi ", "there")]
    auto = [lp for lp, _ in lm.loglikelihood(requests)]
    assert auto == pytest.approx(
        [lp for lp, _ in SlimkitLM(model, tok, batch_size=1).loglikelihood(requests)]
    )
    with pytest.warns(UserWarning, match="temperature"):
        lm.generate_until(
            [_Req("Hello", {"until": ["\n"], "max_gen_toks": 2, "do_sample": True, "temperature": 0.7})]
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # greedy-equivalent arguments are not "dropped"
        lm.generate_until(
            [_Req("Hello", {"until": ["\n"], "max_gen_toks": 2, "do_sample": False, "temperature": 0.0})]
        )
    with pytest.raises(SlimkitError, match="auto"):
        SlimkitLM(model, tok, batch_size="big")


def test_auto_batch_size_halves_on_out_of_memory(model_and_tok, monkeypatch):
    import slimkit.evaluate.lm_eval as adapter

    model, tok = model_and_tok
    sizes = []
    real = adapter.score_token_requests

    def flaky(model, requests, *, pad_id, batch_size):
        sizes.append(batch_size)
        if batch_size > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, requests, pad_id=pad_id, batch_size=batch_size)

    monkeypatch.setattr(adapter, "score_token_requests", flaky)
    lm = SlimkitLM(model, tok, batch_size="auto", max_batch_size=8)
    lm.loglikelihood([_Req("Question: where?\nAnswer:", " Lorin")])
    assert sizes == [8, 4, 2] and lm.batch_size == 2
    fixed = SlimkitLM(model, tok, batch_size=8)
    with pytest.raises(RuntimeError, match="out of memory"):
        fixed.loglikelihood([_Req("Question: where?\nAnswer:", " Lorin")])


def test_needs_a_tokenizer_or_a_directory(model_and_tok):
    with pytest.raises(SlimkitError, match="without its tokenizer"):
        SlimkitLM(model_and_tok[0])
    with pytest.raises(SlimkitError, match="pretrained"):
        SlimkitLM()


def test_lm_eval_suite_gives_results_in_slimkits_schema(model_and_tok, task_dir):
    from slimkit.core.errors import ConfigError
    from slimkit.evaluate import make_results, validate_results

    model, tok = model_and_tok
    metrics = evaluate(
        model,
        tok,
        suite="lm-eval",
        tasks="slimkit_toy_mc",
        include_path=str(task_dir),
        allow_code=True,
        include_defaults=False,
    )
    native = evaluate(model, tok, MultipleChoiceTaskConfig(data=RECORDS))["mc"]
    assert metrics["slimkit_toy_mc"]["acc"] == pytest.approx(native["accuracy"])
    assert metrics["slimkit_toy_mc"]["n"] == len(RECORDS) and "acc_stderr" in metrics["slimkit_toy_mc"]
    validate_results(make_results("tiny", metrics, seed=0))
    with pytest.raises(ConfigError, match="needs tasks"):
        evaluate(model, tok, suite="lm-eval")
