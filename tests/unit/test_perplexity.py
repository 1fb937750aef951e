"""Perplexity: the text as written against a plain transformers loop, batching, limits, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import slimkit
from slimkit.core.errors import ConfigError, DataError
from slimkit.data.tokenizer import train_bpe_tokenizer
from slimkit.evaluate import evaluate, make_results, perplexity, validate_results
from slimkit.evaluate.perplexity import text_token_ids, token_windows
from slimkit.models import tiny_model

DOCS = [
    f"{name} was born in {city} in {1900 + 7 * i}. {name} works for {company} and lives near the river."
    for i, (name, city, company) in enumerate(
        [
            ("Ada Vell", "Lorin", "Kestrel Mills"),
            ("Bo Tarn", "Quell", "Ardent Works"),
            ("Cy Moss", "Varn", "Oaklane"),
        ]
        * 4
    )
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(DOCS, vocab_size=320, min_frequency=1)


@pytest.fixture(scope="module")
def model(tokenizer):
    # peaked logits (initializer_range 0.2): a perplexity far from uniform exercises the math
    return tiny_model("llama", vocab_size=len(tokenizer), max_position_embeddings=64, initializer_range=0.2)


def _plain_loop_ppl(model, tokenizer, text: str, seqlen: int) -> tuple[float, int]:
    """What a user writes with transformers alone: tokenize the whole text once, put the BOS token in
    front (lm-eval's prefix token for rolling log-likelihood; the literature's LLaMA ``tokenizer(text)``),
    non-overlapping windows of ``seqlen`` (remainder dropped), mean of the HF losses, exp."""
    ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    windows = torch.tensor(ids[: len(ids) // seqlen * seqlen]).view(-1, seqlen)
    with torch.no_grad():
        losses = [model(input_ids=w[None], labels=w[None]).loss.item() for w in windows]
    return math.exp(sum(losses) / len(losses)), len(losses)


def test_matches_transformers_loss(model, tokenizer):
    res = perplexity(model, tokenizer, DOCS, seqlen=16)
    ppl, n_windows = _plain_loop_ppl(model, tokenizer, "\n\n".join(DOCS), 16)
    ids = tokenizer("\n\n".join(DOCS), add_special_tokens=False)["input_ids"]
    assert res.n_windows == (len(ids) + 1) // 16 == n_windows
    assert res.n_tokens == res.n_windows * 15 and res.seqlen == 16
    assert res.mean_nll == pytest.approx(math.log(ppl), abs=1e-5)
    assert res.ppl == pytest.approx(ppl, rel=1e-5)
    assert res.ppl > 2  # a random model is far from perfect; guards against a trivially-zero loss


# a text file as people write them: a title, indented lines, runs of blank lines, trailing spaces
WRITTEN = (
    "  The River Book  \n\n\n"
    + "\n\n".join(f"   {d}\n{d.upper()}  " for d in DOCS[:6])
    + "\n \n\t\n"
    + " ".join(DOCS[6:])
    + "\n"
)


def test_text_file_is_scored_as_written(model, tokenizer, tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(WRITTEN.encode("utf-8"))
    res = perplexity(model, tokenizer, path, seqlen=16)
    ppl, n_windows = _plain_loop_ppl(model, tokenizer, WRITTEN, 16)
    assert res.n_windows == n_windows and res.ppl == pytest.approx(ppl, rel=1e-5)
    # not the text re-split at blank lines, stripped and re-joined (what calibration sees as documents)
    from slimkit.data.sources import read_documents

    rejoined = "\n\n".join(read_documents(path))
    assert rejoined != WRITTEN
    assert res.ppl != pytest.approx(_plain_loop_ppl(model, tokenizer, rejoined, 16)[0], rel=1e-6)
    # the eval suite reads the file the same way
    metrics = evaluate(model, tokenizer, suite="ppl", data=path, seqlen=16)
    assert metrics["ppl"]["perplexity"] == pytest.approx(res.ppl, rel=1e-9)


def test_prefix_is_bos_else_eos(tokenizer):
    import copy

    w = token_windows(tokenizer, DOCS, 16)
    assert w[0, 0].item() == tokenizer.bos_token_id
    no_bos = copy.deepcopy(tokenizer)
    no_bos.bos_token = None
    assert no_bos.bos_token_id is None and no_bos.eos_token_id is not None
    assert token_windows(no_bos, DOCS, 16)[0, 0].item() == no_bos.eos_token_id
    assert (
        text_token_ids(no_bos, "Ada Vell")[1:] == tokenizer("Ada Vell", add_special_tokens=False)["input_ids"]
    )


def test_batch_size_invariance(model, tokenizer):
    results = [perplexity(model, tokenizer, DOCS, seqlen=16, batch_size=b).ppl for b in (1, 3, 64)]
    assert results[1] == pytest.approx(results[0], rel=1e-6)
    assert results[2] == pytest.approx(results[0], rel=1e-6)


def test_default_seqlen_and_limit(model, tokenizer):
    res = perplexity(model, tokenizer, DOCS)
    assert res.seqlen == 64  # min(max_position_embeddings, 2048)
    assert perplexity(model, tokenizer, DOCS, seqlen=16, limit=2).n_windows == 2


def test_windows_drop_the_remainder(tokenizer):
    n = 1 + len(tokenizer("\n\n".join(DOCS), add_special_tokens=False)["input_ids"])  # + the prefix token
    w = token_windows(tokenizer, DOCS, 50)
    assert w.shape == (n // 50, 50)


def test_spec_equals_documents(model, tokenizer, tmp_path):
    p = tmp_path / "docs.txt"
    p.write_text("\n\n".join(DOCS))
    assert perplexity(model, tokenizer, p, seqlen=16) == perplexity(model, tokenizer, DOCS, seqlen=16)


def test_too_short_text(model, tokenizer):
    with pytest.raises(
        DataError, match=r"\d+ tokens \(prefix token included\) is shorter than one window of seqlen=64"
    ):
        perplexity(model, tokenizer, ["Ada Vell"], seqlen=64)


def test_bad_numbers(model, tokenizer):
    with pytest.raises(ConfigError, match="seqlen=65 exceeds the model's maximum of 64"):
        perplexity(model, tokenizer, DOCS, seqlen=65)
    with pytest.raises(ConfigError, match="seqlen"):
        perplexity(model, tokenizer, DOCS, seqlen=1)
    with pytest.raises(ConfigError, match="batch_size"):
        perplexity(model, tokenizer, DOCS, batch_size=0)


def test_train_mode_is_restored(model, tokenizer):
    model.train()
    try:
        perplexity(model, tokenizer, DOCS, seqlen=16, limit=1)
        assert model.training
    finally:
        model.eval()


def test_evaluate_suite_and_results_schema(model, tokenizer, tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text("".join(f'{{"text": "{d}"}}\n' for d in DOCS))
    metrics = evaluate(model, tokenizer, suite="ppl", data=p, seqlen=16)
    direct = perplexity(model, tokenizer, DOCS, seqlen=16)
    assert metrics["ppl"]["perplexity"] == pytest.approx(direct.ppl, rel=1e-9)
    assert metrics["ppl"]["n"] == direct.n_tokens
    validate_results(make_results("tiny-llama", metrics, seed=0))
    # the top-level name works even though importing the subpackage bound slimkit.evaluate to the module
    assert slimkit.evaluate(model, tokenizer, suite="ppl", data=p, seqlen=16) == metrics


# -- answer-token perplexity (issue 13 item 4) ----------------------------------------------------------------
def _answer_spans(text: str, answers: tuple[str, ...]) -> list[tuple[int, int]]:
    """Every occurrence of each answer string in ``text``, as character spans."""
    import re

    return sorted((m.start(), m.end()) for a in answers for m in re.finditer(re.escape(a), text))


def test_answer_token_perplexity_is_the_nll_of_the_object_tokens(model, tokenizer):
    text = "\n\n".join(DOCS)
    spans = _answer_spans(text, ("Lorin", "Kestrel Mills", "1907"))
    res = perplexity(model, tokenizer, DOCS, seqlen=16, answer_spans=spans)
    # by hand: tokenize with offsets, mark every token that overlaps an answer span, score the
    # windows with a plain loop and average -log p over the marked targets only
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = [tokenizer.bos_token_id, *enc["input_ids"]]
    marked = [False] + [any(s < b and a < e for s, e in spans) for a, b in enc["offset_mapping"]]
    n = len(ids) // 16
    total, count, every = 0.0, 0, 0.0
    with torch.no_grad():
        for w in range(n):
            window = torch.tensor(ids[w * 16 : (w + 1) * 16])
            logp = torch.log_softmax(model(input_ids=window[None]).logits[0].float(), -1)
            for i in range(1, 16):
                nll = -logp[i - 1, window[i]].item()
                every += nll
                if marked[w * 16 + i]:
                    total += nll
                    count += 1
    assert count > 5 and res.n_answer_tokens == count
    assert res.answer_mean_nll == pytest.approx(total / count, rel=1e-5)
    assert res.answer_ppl == pytest.approx(math.exp(total / count), rel=1e-5)
    assert res.mean_nll == pytest.approx(every / (n * 15), rel=1e-5)  # the whole-text number is unchanged
    # each run of marked tokens spells one answer (byte-level BPE carries the leading space)
    runs, current = [], []
    for t, k in zip(ids, marked, strict=True):
        if k:
            current.append(t)
        elif current:
            runs, current = [*runs, tokenizer.decode(current).strip()], []
    assert runs and set(runs) <= {"Lorin", "Kestrel Mills", "1907"}, runs


def test_ppl_suite_reads_answer_spans_beside_a_text_file(model, tokenizer, tmp_path):
    import json

    text = "\n\n".join(DOCS) + "\n"
    (tmp_path / "held.txt").write_text(text)
    spans = _answer_spans(text, ("Quell", "Varn"))
    (tmp_path / "held.answers.jsonl").write_text(
        "".join(json.dumps({"start": a, "end": b}) + "\n" for a, b in spans)
    )
    m = evaluate(model, tokenizer, suite="ppl", data=str(tmp_path / "held.txt"), seqlen=16)["ppl"]
    direct = perplexity(model, tokenizer, [text], seqlen=16, answer_spans=spans)
    assert m["answer_perplexity"] == pytest.approx(direct.answer_ppl) and m["n_answer_tokens"] > 0
    assert m["perplexity"] == pytest.approx(direct.ppl)
    # an explicit answers file wins; a text without one reports no answer-token numbers
    (tmp_path / "other.txt").write_text(text)
    assert (
        "answer_perplexity"
        not in evaluate(model, tokenizer, suite="ppl", data=str(tmp_path / "other.txt"), seqlen=16)["ppl"]
    )
    m2 = evaluate(
        model, tokenizer, suite="ppl", data=str(tmp_path / "other.txt"), seqlen=16,
        answers=str(tmp_path / "held.answers.jsonl"),
    )["ppl"]  # fmt: skip
    assert m2["answer_perplexity"] == pytest.approx(m["answer_perplexity"])


def test_bad_answer_spans_fail_with_one_line(model, tokenizer, tmp_path):
    text = "\n\n".join(DOCS)
    with pytest.raises(DataError, match="outside the text"):
        perplexity(model, tokenizer, DOCS, seqlen=16, answer_spans=[(0, len(text) + 5)])
    with pytest.raises(DataError, match="outside the text"):
        perplexity(model, tokenizer, DOCS, seqlen=16, answer_spans=[(4, 4)])
    bad = tmp_path / "a.jsonl"
    bad.write_text('{"start": 3}\n')
    with pytest.raises(DataError, match=r"a.jsonl:1: expected"):
        evaluate(model, tokenizer, suite="ppl", data=_docs_file(tmp_path), seqlen=16, answers=str(bad))
    # spans that only touch the dropped remainder: nothing to score is an error, not a silent NaN
    ids = text_token_ids(tokenizer, text)
    assert len(ids) % 16
    with pytest.raises(DataError, match="none of the 1 answer spans"):
        perplexity(model, tokenizer, DOCS, seqlen=16, answer_spans=[(len(text) - 2, len(text))])


def _docs_file(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("\n\n".join(DOCS))
    return str(path)
