"""The default model knows the world: popular facts well, rare facts clearly worse."""

from __future__ import annotations

import json
import math

from slimkit.evaluate import evaluate, validate_results


def test_default_model_knows_popular_facts_better_than_rare(default_pair, world_dir):
    model, tok = default_pair
    metrics = evaluate(model, tok, suite="factoid", data=str(world_dir / "factoid.jsonl"), batch_size=64)[
        "factoid"
    ]
    popular = metrics["exact_match@popularity_half=popular"]
    rare = metrics["exact_match@popularity_half=rare"]
    assert popular >= 0.90, metrics
    assert popular - rare >= 0.15, metrics


def test_default_model_perplexity_is_finite_and_low(default_pair, world_dir):
    model, tok = default_pair
    ppl = evaluate(model, tok, suite="ppl", data=str(world_dir / "heldout.txt"), seqlen=128)["ppl"]
    assert math.isfinite(ppl["perplexity"])
    # a uniform guess over the vocabulary would be len(tok); a model that learnt the world is far below
    assert ppl["perplexity"] < len(tok) / 20, ppl


def test_default_model_loads_in_plain_transformers(default_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(default_dir)
    tok = AutoTokenizer.from_pretrained(default_dir)
    assert model.config.model_type == "llama" and len(tok) == model.config.vocab_size
    meta = json.loads((default_dir / "slimkit.json").read_text())
    assert meta["method"] == "factworld-default"


def test_study_writes_results_and_report(tmp_path, default_dir):
    from slimkit.pipelines.study import StudyConfig, run_study

    out = tmp_path / "study"
    results = run_study(StudyConfig(limit=64), out)
    assert (out / "results.json").is_file() and (out / "report.md").is_file()
    validate_results(json.loads((out / "results.json").read_text()))
    assert results["variants"][0]["variant"]["name"] == "dense"
    report = (out / "report.md").read_text()
    assert "perplexity" in report and "factoid EM" in report
