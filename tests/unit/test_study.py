"""The study pipeline on a tiny model: sweep, results schema, report and plots, bad input."""

from __future__ import annotations

import json

import pytest

from slimkit.core.errors import ConfigError, RegistryError
from slimkit.evaluate import validate_results
from slimkit.pipelines.study import StudyConfig, plan_variants, run_study


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    from slimkit.models import save_model, tiny_model, tiny_tokenizer

    root = tmp_path_factory.mktemp("study")
    tok = tiny_tokenizer()
    save_model(tiny_model("llama", vocab_size=len(tok)), tok, root / "model")
    sentences = [f"Person {i} was born in city {i % 7} and works for company {i % 5}." for i in range(200)]
    (root / "text.txt").write_text("\n\n".join(" ".join(sentences[i : i + 10]) for i in range(0, 200, 10)))
    (root / "kick").mkdir()
    mc = {
        "id": "m",
        "question": "Where was person 1 born?",
        "options": ["city 1", "city 2"],
        "answer_index": 0,
    }
    (root / "kick" / "mc.jsonl").write_text(json.dumps(mc) + "\n")
    with open(root / "kick" / "factoid.jsonl", "w") as f:
        for i in range(12):
            tags = {"popularity_half": "popular" if i % 2 else "rare"}
            f.write(
                json.dumps(
                    {"id": str(i), "question": f"Where was person {i} born?", "answers": ["x"], "tags": tags}
                )
            )
            f.write("\n")
    return root


def test_plan_variants_default_sweep():
    names = [v.name for v in plan_variants(StudyConfig())]
    assert names[0] == "dense"
    for method in ("magnitude", "wanda", "sparsegpt"):
        for setting in ("30%", "50%", "70%", "2:4"):
            assert f"{method} {setting}" in names
    assert "wanda+OWL 70%" in names and "sparsegpt+OWL 70%" in names
    assert "magnitude+OWL 70%" not in names  # OWL needs activations: calibrated methods only
    assert "welore 50% params" in names and "svd-uniform 30% params" in names
    assert len(names) == 1 + 3 * 4 + 2 + 4


def test_study_sweep_on_tiny_model(tiny_setup, tmp_path):
    cfg = StudyConfig(
        model=str(tiny_setup / "model"),
        ppl_data=str(tiny_setup / "text.txt"),
        kick_data=str(tiny_setup / "kick"),
        methods=("magnitude", "wanda"),
        sparsities=(0.5,),
        patterns=("2:4",),
        owl_sparsities=(0.5,),
        owl_lambda=0.02,
        lowrank_reductions=(),
        nsamples=4,
        calib_seqlen=32,
        seqlen=32,
        batch_size=8,
    )
    out = tmp_path / "study"
    assert cfg.kick_limit == 200
    results = run_study(cfg, out)
    names = [v["variant"]["name"] for v in results["variants"]]
    assert names == ["dense", "magnitude 50%", "magnitude 2:4", "wanda 50%", "wanda 2:4", "wanda+OWL 50%"]
    on_disk = json.loads((out / "results.json").read_text())
    validate_results(on_disk)
    for v in on_disk["variants"]:
        validate_results(v)
        if v["variant"]["method"] != "dense":
            # OWL's per-block targets are floored to whole weights per row, so allow a little slack there
            tol = 0.01 if v["variant"]["allocation"] else 1e-3
            assert v["variant"]["achieved_sparsity"] == pytest.approx(0.5, abs=tol)
    assert (out / "perplexity_vs_sparsity.png").stat().st_size > 1000
    assert (out / "accuracy_vs_sparsity.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "wanda+OWL 50%" in report and "perplexity_vs_sparsity.png" in report
    assert set(on_disk["metrics"]) == {"ppl", "factoid", "mc"}
    assert "mc accuracy" in report


def test_unknown_method_fails_before_any_work(tmp_path):
    with pytest.raises(RegistryError, match="known"):
        run_study(StudyConfig(methods=("nope",)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", [{"sparsities": (1.0,)}, {"nsamples": 0}, {"methods": "wanda"}])
def test_bad_study_config(bad):
    with pytest.raises(ConfigError):
        StudyConfig(**bad)
