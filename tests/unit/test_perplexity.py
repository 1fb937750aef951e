"""Perplexity: the WikiText protocol against transformers' own loss, batching, limits, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import slimkit
from slimkit.core.errors import ConfigError, DataError
from slimkit.data.tokenizer import train_bpe_tokenizer
from slimkit.evaluate import evaluate, make_results, perplexity, validate_results
from slimkit.evaluate.perplexity import token_windows
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


def test_matches_transformers_loss(model, tokenizer):
    res = perplexity(model, tokenizer, DOCS, seqlen=16)
    ids = tokenizer("\n\n".join(DOCS), add_special_tokens=False)["input_ids"]
    windows = torch.tensor(ids[: len(ids) // 16 * 16]).view(-1, 16)
    with torch.no_grad():
        losses = [model(input_ids=w[None], labels=w[None]).loss.item() for w in windows]
    assert res.n_windows == len(ids) // 16 == len(losses)
    assert res.n_tokens == res.n_windows * 15 and res.seqlen == 16
    assert res.mean_nll == pytest.approx(sum(losses) / len(losses), abs=1e-5)
    assert res.ppl == pytest.approx(math.exp(sum(losses) / len(losses)), rel=1e-5)
    assert res.ppl > 2  # a random model is far from perfect; guards against a trivially-zero loss


def test_batch_size_invariance(model, tokenizer):
    results = [perplexity(model, tokenizer, DOCS, seqlen=16, batch_size=b).ppl for b in (1, 3, 64)]
    assert results[1] == pytest.approx(results[0], rel=1e-6)
    assert results[2] == pytest.approx(results[0], rel=1e-6)


def test_default_seqlen_and_limit(model, tokenizer):
    res = perplexity(model, tokenizer, DOCS)
    assert res.seqlen == 64  # min(max_position_embeddings, 2048)
    assert perplexity(model, tokenizer, DOCS, seqlen=16, limit=2).n_windows == 2


def test_windows_drop_the_remainder(tokenizer):
    n = len(tokenizer("\n\n".join(DOCS), add_special_tokens=False)["input_ids"])
    w = token_windows(tokenizer, DOCS, 50)
    assert w.shape == (n // 50, 50)


def test_spec_equals_documents(model, tokenizer, tmp_path):
    p = tmp_path / "docs.txt"
    p.write_text("\n\n".join(DOCS))
    assert perplexity(model, tokenizer, p, seqlen=16) == perplexity(model, tokenizer, DOCS, seqlen=16)


def test_too_short_text(model, tokenizer):
    with pytest.raises(DataError, match=r"\d+ tokens is shorter than one window of seqlen=64"):
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
