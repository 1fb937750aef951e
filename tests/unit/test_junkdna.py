"""Junk DNA: difficulty axes, normalisation and thresholds by hand; the pipeline on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from slimkit.core.errors import ConfigError
from slimkit.data.factworld import WorldConfig, build_world
from slimkit.evaluate import validate_results
from slimkit.pipelines.junkdna import (
    HOPS_AXIS,
    JunkDNAConfig,
    KeepPruned,
    difficulty_levels,
    first_below,
    normalised_scores,
    run_junkdna,
)

DENSE = {
    "ppl": {"perplexity": 5.0, "n": 10},
    "factoid": {"exact_match": 0.8, "contains": 0.9, "n": 10, "exact_match@popularity_half=popular": 1.0,
                "n@popularity_half=popular": 5, "exact_match@popularity_half=rare": 0.6, "contains@popularity_half=rare": 0.7},
    "mc": {"accuracy": 0.75, "n": 8, "accuracy@n_options=2": 1.0, "accuracy@n_options=8": 0.5, "chance@n_options=2": 0.5},
    "twohop": {"exact_match": 0.4, "n": 4},
}  # fmt: skip


def test_difficulty_levels_use_primary_metrics_and_add_hops():
    axes = difficulty_levels(DENSE)
    assert axes["factoid: popularity_half"] == [
        ("popular", "factoid", "exact_match@popularity_half=popular"),
        ("rare", "factoid", "exact_match@popularity_half=rare"),
    ]
    assert [lv for lv, _, _ in axes["mc: n_options"]] == ["2", "8"]  # chance@ is not a level
    assert axes[HOPS_AXIS] == [("one-hop", "factoid", "exact_match"), ("two-hop", "twohop", "exact_match")]
    assert not any(a.startswith("ppl") for a in axes)


def test_normalised_scores_by_hand():
    axes = difficulty_levels(DENSE)
    pruned = {
        "factoid": {"exact_match": 0.4, "exact_match@popularity_half=popular": 0.9, "exact_match@popularity_half=rare": 0.15},
        "mc": {"accuracy@n_options=2": 0.5, "accuracy@n_options=8": 0.5},
        "twohop": {"exact_match": 0.0},
    }  # fmt: skip
    norm = normalised_scores(DENSE, pruned, axes)
    assert norm["factoid: popularity_half"] == {"popular": pytest.approx(0.9), "rare": pytest.approx(0.25)}
    assert norm["mc: n_options"] == {"2": 0.5, "8": 1.0}
    assert norm[HOPS_AXIS] == {"one-hop": pytest.approx(0.5), "two-hop": 0.0}
    zero_dense = {"factoid": {"exact_match": 0.0}, "twohop": {"exact_match": 0.0}}
    assert normalised_scores(zero_dense, pruned, difficulty_levels(zero_dense))[HOPS_AXIS]["one-hop"] is None


def test_first_below():
    curve = [(0.0, 1.0), (0.3, 0.95), (0.1, 1.0), (0.5, 0.4), (0.4, 0.85)]
    assert first_below(curve, 0.9) == 0.4 and first_below(curve, 0.5) == 0.5
    assert first_below(curve, 0.1) is None
    assert first_below([(0.1, None), (0.2, 0.3)], 0.5) == 0.2


def test_config_validation():
    with pytest.raises(ConfigError, match="sparsity"):
        JunkDNAConfig(sparsities=(0.0, 1.0))
    with pytest.raises(ConfigError, match="finetune_methods"):
        JunkDNAConfig(methods=("wanda",), finetune_methods=("magnitude",))
    with pytest.raises(ConfigError, match="at least one method"):
        JunkDNAConfig(methods=())
    assert JunkDNAConfig.from_json(JunkDNAConfig().to_json()) == JunkDNAConfig()
    assert JunkDNAConfig().kick_config().task_options["factoid"]["group_by_tags"][1] == "popularity_quartile"


def test_keep_pruned_holds_zeros_through_updates(tiny_llama):
    layer = tiny_llama.model.layers[0].mlp.up_proj
    with torch.no_grad():
        layer.weight[:, ::2] = 0
    keeper = KeepPruned(tiny_llama)
    assert len(keeper.masks) == 1
    with torch.no_grad():
        layer.weight.add_(1.0)  # an optimizer step that moved every weight
    keeper.on_step_end(1, 0.0, tiny_llama)
    assert bool((layer.weight[:, ::2] == 0).all()) and bool((layer.weight[:, 1::2] != 0).all())


def test_pipeline_on_a_tiny_model(tiny_model_dir, tmp_path):
    world = build_world(tmp_path / "world", WorldConfig(n_people=10, n_cities=8, n_companies=4, n_factoid=12,
                                                         n_mc=9, n_retrieval=4, n_twohop=6))  # fmt: skip
    corpus = tmp_path / "corpus.txt"
    corpus.write_text((world / "corpus.txt").read_text())
    cfg = JunkDNAConfig(
        model=str(tiny_model_dir),
        methods=("magnitude", "wanda"),
        sparsities=(0.0, 0.5),
        data=str(world),
        limit=6,
        calib=str(corpus),
        nsamples=4,
        calib_seqlen=32,
        finetune_steps=2,
        finetune_data=str(corpus),
        task_options={"factoid": {"max_new_tokens": 2}, "twohop": {"max_new_tokens": 2},
                      "retrieval": {"max_new_tokens": 2}},
    )  # fmt: skip
    results = run_junkdna(cfg, tmp_path / "out")
    validate_results(results)
    assert [v["variant"]["name"] for v in results["variants"]] == ["magnitude 50%", "wanda 50%"]
    analysis = results["junkdna"]
    assert HOPS_AXIS in analysis["axes"] and "mc: n_options" in analysis["axes"]
    assert {r["mode"] for r in analysis["finetune"]} == {"none", "frozen", "regrow", "dense"}
    frozen = next(r for r in analysis["finetune"] if r["mode"] == "frozen")
    regrow = next(r for r in analysis["finetune"] if r["mode"] == "regrow")
    assert frozen["sparsity_after"] == pytest.approx(0.5, abs=0.01)  # pruned weights stayed zero
    assert regrow["sparsity_after"] < 0.1  # and here they trained
    out = tmp_path / "out"
    saved = json.loads((out / "results.json").read_text())
    validate_results(saved)
    report = (out / "report.md").read_text()
    assert "first drops" not in report and "<90% / <50%" in report and "frozen" in report
    assert "Chance-corrected" in report and "| chance | n |" in report
    corrected = analysis["corrected"]["wanda"]["mc: n_options"]
    assert all(s in dict(c) for c in corrected.values() for s in (0.0, 0.5))
    assert set(analysis["dense_significance"]) == set(analysis["axes"])
    assert saved["provenance"]["config"]["task_configs"]["mc"]["headline"] == "accuracy"
    assert (out / "junkdna_magnitude.png").is_file() and (out / "junkdna_wanda.png").is_file()


# -- honest baselines -----------------------------------------------------------------------------------
def test_binomial_tail_by_hand():
    from slimkit.pipelines.junkdna import binomial_tail

    assert binomial_tail(2, 3, 0.5) == pytest.approx(0.5)  # P(2) + P(3) = 3/8 + 1/8
    assert binomial_tail(0, 5, 0.3) == 1.0 and binomial_tail(6, 5, 0.3) == 0.0
    assert binomial_tail(1, 4, 0.0) == 0.0  # any correct answer beats a zero baseline
    assert binomial_tail(10, 10, 0.25) == pytest.approx(0.25**10)


CHANCE_DENSE = {
    "mc": {"accuracy": 0.6, "n": 40, "chance": 0.25, "accuracy@n_options=2": 0.55, "chance@n_options=2": 0.5,
           "n@n_options=2": 20, "accuracy@n_options=4": 0.65, "chance@n_options=4": 0.25, "n@n_options=4": 20},
    "twohop": {"exact_match": 0.15, "chance": 0.19, "n": 120, "exact_match@composition=a": 0.5,
               "chance@composition=a": 0.2, "n@composition=a": 40},
    "factoid": {"exact_match": 0.0, "chance": 0.0, "n": 10},
}  # fmt: skip


def test_chance_corrected_ratio_and_na():
    from slimkit.pipelines.junkdna import chance_corrected

    axes = difficulty_levels(CHANCE_DENSE)
    pruned = {
        "mc": {"accuracy@n_options=2": 0.5, "accuracy@n_options=4": 0.45},
        "twohop": {"exact_match": 0.1, "exact_match@composition=a": 0.35},
        "factoid": {"exact_match": 0.0},
    }
    corr = chance_corrected(CHANCE_DENSE, pruned, axes)
    assert corr["mc: n_options"]["2"] == pytest.approx(0.0)  # (0.5 - 0.5) / (0.55 - 0.5)
    assert corr["mc: n_options"]["4"] == pytest.approx(0.5)  # (0.45 - 0.25) / (0.65 - 0.25)
    assert corr["twohop: composition"]["a"] == pytest.approx(0.5)  # (0.35 - 0.2) / (0.5 - 0.2)
    assert corr[HOPS_AXIS] == {"one-hop": None, "two-hop": None}  # dense 0; dense 0.15 below chance 0.19
    # the plain ratio would call the two-hop level 67% kept; below-chance dense carries no signal
    assert normalised_scores(CHANCE_DENSE, pruned, axes)[HOPS_AXIS]["two-hop"] == pytest.approx(0.1 / 0.15)


def test_significance_marks_levels_not_above_chance():
    from slimkit.pipelines.junkdna import significance

    sig = significance(CHANCE_DENSE, difficulty_levels(CHANCE_DENSE))
    two, four = sig["mc: n_options"]["2"], sig["mc: n_options"]["4"]
    assert two["significant"] is False and two["n"] == 20  # 11 / 20 against 0.5: p = 0.41
    assert two["p_value"] == pytest.approx(0.4119, abs=1e-4)
    assert four["significant"] is True  # 13 / 20 against 0.25: p < 1e-4
    assert sig[HOPS_AXIS]["two-hop"]["significant"] is False  # 18 / 120 against 0.19
    assert sig[HOPS_AXIS]["one-hop"]["significant"] is False  # nothing right at all
    assert sig["twohop: composition"]["a"]["significant"] is True  # 20 / 40 against 0.2


def test_headline_metric_picks_the_axis_metric():
    metrics = {"factoid": {"exact_match": 0.1, "contains": 0.3, "n": 4, "exact_match@parses=1": 0.1,
                           "contains@parses=1": 0.3, "n@parses=1": 4}}  # fmt: skip
    assert difficulty_levels(metrics)["factoid: parses"][0][2] == "exact_match@parses=1"
    axes = difficulty_levels(metrics, {"factoid": "contains"})
    assert axes["factoid: parses"] == [("1", "factoid", "contains@parses=1")]


def test_real_data_axes_come_from_the_readers_tags(tmp_path):
    """MMLU + TriviaQA give difficulty axes: subject, context length, answer type (none before)."""
    import csv

    from slimkit.evaluate import run_suite
    from slimkit.models import tiny_tokenizer

    mmlu = tmp_path / "mmlu"
    for split, rows in (("dev", [["What is g?", "9.8", "1", "0", "3", "A"]]),
                        ("test", [["Speed?", "3e8", "3e5", "1", "0", "A"], ["Mass?", "m", "s", "kg", "K", "C"]])):  # fmt: skip
        (mmlu / split).mkdir(parents=True)
        with (mmlu / split / f"physics_{split}.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)
    rows = [
        {"question": f"Capital {i}?", "question_id": f"t{i}", "answer": {"value": "Paris", "aliases": [], "type": t},
         "entity_pages": {"wiki_context": ["Paris is the capital. " * (60 if i % 2 else 1)]},
         "search_results": {"search_context": []}}
        for i, t in enumerate(["WikipediaEntity", "Numerical", "WikipediaEntity", "FreeForm"])
    ]  # fmt: skip
    trivia = tmp_path / "tqa.jsonl"
    trivia.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = tiny_tokenizer()
    from slimkit.models import tiny_model

    model = tiny_model("llama", vocab_size=len(tok), max_position_embeddings=2048)
    run = run_suite(model, tok, "kick", data=(f"mmlu:{mmlu}", f"triviaqa:{trivia}"), task_options={
        "factoid": {"max_new_tokens": 2}, "retrieval": {"max_new_tokens": 2}})  # fmt: skip
    headlines = {t: c["headline"] for t, c in run.task_configs.items()}
    assert headlines == {"mc": "accuracy", "retrieval": "lenient", "factoid": "lenient"}
    axes = difficulty_levels(run.metrics, headlines)
    assert {
        "mc: subject",
        "retrieval: context_chars",
        "retrieval: answer_type",
        "factoid: answer_type",
    } <= set(axes)
    assert [lv for lv, _, _ in axes["retrieval: context_chars"]] == ["long", "short"]
    assert HOPS_AXIS not in axes
