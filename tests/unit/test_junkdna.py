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
    assert (out / "junkdna_magnitude.png").is_file() and (out / "junkdna_wanda.png").is_file()
