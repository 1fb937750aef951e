"""The default model knows the world: popular facts well, rare facts clearly worse."""

from __future__ import annotations

import json
import math

from slimkit.evaluate import evaluate, make_results, run_suite, validate_results


def test_default_model_knows_popular_facts_better_than_rare(default_pair, world_dir):
    model, tok = default_pair
    metrics = evaluate(model, tok, suite="factoid", data=str(world_dir / "factoid.jsonl"), batch_size=64)[
        "factoid"
    ]
    popular = metrics["exact_match@popularity_half=popular"]
    rare = metrics["exact_match@popularity_half=rare"]
    assert popular >= 0.90, metrics
    assert popular - rare >= 0.15, metrics


def test_default_model_on_the_kick_suite(default_pair):
    """Well above chance on factoid and mc, above chance on two-hop; retrieval is measured, not asserted.

    Chance: mc's ``chance`` (1 / options); a uniform guess over the answer's kind for two-hop (one of 8
    countries for two compositions, one of 30 cities for the third: 9.4%).
    """
    model, tok = default_pair
    run = run_suite(model, tok, "kick")
    m = run.metrics
    assert set(m) == {"factoid", "mc", "retrieval", "twohop", "summarization"}, m
    factoid, mc, twohop = m["factoid"], m["mc"], m["twohop"]
    assert factoid["exact_match@popularity_half=popular"] > factoid["exact_match@popularity_half=rare"] + 0.15
    assert mc["accuracy"] >= mc["chance"] + 0.3, mc
    for k in (2, 4, 8):
        assert mc[f"accuracy@n_options={k}"] >= 1 / k + 0.25, (k, mc)
    # measured 15% (18/120): above chance, not far above — see docs/evaluation.md
    assert twohop["exact_match"] >= 0.12, twohop
    # every retrieval answer is scored; the model does not copy from context yet (docs/evaluation.md:
    # 2.5% exact match), so this pins the number rather than asserting a range that cannot fail
    assert m["retrieval"]["n"] == 400 and m["retrieval"]["exact_match"] < 0.1, m["retrieval"]
    validate_results(make_results("default", m, config=run.config, seed=0))


def test_default_model_perplexity_is_finite_and_low(default_pair, world_dir):
    model, tok = default_pair
    ppl = evaluate(model, tok, suite="ppl", data=str(world_dir / "heldout.txt"), seqlen=128)["ppl"]
    assert math.isfinite(ppl["perplexity"])
    # measured 10.66 on the held-out text, 2.46 on its answer tokens (docs/factworld.md); a uniform
    # guess over the 2048-token vocabulary is 2048, a model that forgot the facts far above 2.46
    assert ppl["perplexity"] < 13.0, ppl
    assert ppl["n_answer_tokens"] > 1000 and ppl["answer_perplexity"] < 3.5, ppl
    # the answer spans come from heldout.answers.jsonl beside the file, and world:heldout has the same
    same = evaluate(model, tok, suite="ppl", data="world:heldout", seqlen=128)["ppl"]
    assert same["answer_perplexity"] == ppl["answer_perplexity"]


def test_default_model_summarization_end_to_end(default_pair):
    """The world's summarization passages run through the KICK suite with the world's prompt."""
    from slimkit.data.factworld.templates import WORLD_SUMMARY_TEMPLATE

    model, tok = default_pair
    run = run_suite(model, tok, "kick", tasks=("summarization",), limit=16)
    m = run.metrics["summarization"]
    assert m["n"] == 16 and m["n@length=short"] == m["n@length=long"] == 8, m
    assert run.task_configs["summarization"]["prompt_template"] == WORLD_SUMMARY_TEMPLATE
    assert run.task_configs["summarization"]["max_new_tokens"] == 64
    for name in ("rouge1", "rouge2", "rougeL", "key_fact_recall"):
        assert 0.0 <= m[name] <= 1.0, (name, m)
    # the model never learnt to summarise: it writes corpus-like statements that share words with the
    # reference (ROUGE-L measured 0.13 on these 16) but rarely the passage's own facts
    assert m["rougeL"] > 0.05 and m["key_fact_recall"] < 0.5, m
    examples = run.examples["summarization"]
    assert len(examples) == 16 and all(ex["prediction"].strip() for ex in examples)


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
    # a small sweep: `make demo` runs the full one; this checks the pipeline end to end on the real model
    wanda = {"name": "wanda 50%", "method": "wanda", "options": {"sparsity": 0.5}}
    cfg = StudyConfig(variants=(wanda,), limit=64, kick_limit=100)  # default.yaml's evaluation, one variant
    results = run_study(cfg, out)
    assert (out / "results.json").is_file() and (out / "report.md").is_file()
    validate_results(json.loads((out / "results.json").read_text()))
    assert [v["variant"]["name"] for v in results["variants"]] == ["dense", "wanda 50%"]
    assert results["sweep"]["source"].startswith("<shipped>/default.yaml")  # its evaluation, our variant
    assert (out / "perplexity_vs_size.png").is_file() and (out / "accuracy_vs_size.png").is_file()
    report = (out / "report.md").read_text()
    assert "perplexity" in report and "factoid EM" in report and "mc accuracy" in report
    dense = results["variants"][0]["metrics"]
    assert {"ppl", "factoid", "mc", "retrieval", "twohop"} <= set(dense)
