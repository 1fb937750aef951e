"""Junk DNA on the default model: a short sweep runs end to end and rare facts are no better kept."""

from __future__ import annotations

from slimkit.evaluate import validate_results
from slimkit.pipelines.junkdna import HOPS_AXIS, JunkDNAConfig, run_junkdna


def test_junkdna_short_sweep_on_the_default_model(tmp_path, default_dir):
    cfg = JunkDNAConfig(
        methods=("magnitude",),
        sparsities=(0.0, 0.8),
        tasks=("factoid", "mc", "twohop"),
        limit=120,
        finetune_sparsities=(0.8,),
        finetune_steps=5,
    )
    results = run_junkdna(cfg, tmp_path / "junkdna")
    validate_results(results)
    analysis = results["junkdna"]
    assert {"factoid: popularity_half", "mc: n_options", HOPS_AXIS} <= set(analysis["axes"])
    curve = dict(analysis["curves"]["magnitude"]["factoid: popularity_half"]["popular"])
    # measured on the full task files: popular facts keep ~0.75 of dense at 80% magnitude sparsity,
    # rare ones ~0.46 — at least the ordering must hold on this subset
    rare = dict(analysis["curves"]["magnitude"]["factoid: popularity_half"]["rare"])
    assert rare[0.8] < curve[0.8] < 1.0
    modes = {r["mode"] for r in analysis["finetune"]}
    assert modes == {"none", "frozen", "regrow", "dense"}
    assert (tmp_path / "junkdna" / "junkdna_magnitude.png").is_file()
