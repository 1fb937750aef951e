"""The study pipeline on a tiny model: declared sweeps, results schema, report and plots, bad input."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import typer
import yaml

from slimkit.cli.errors import run_cli
from slimkit.cli.main import app
from slimkit.core.errors import ConfigError, RegistryError, SlimkitError
from slimkit.evaluate import validate_results
from slimkit.pipelines.study import StudyConfig, load_sweep, parse_sweep, plan_variants, run_study

COMMAND = typer.main.get_command(app)


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


TINY_SWEEP = {
    "description": "a tiny sweep for the tests",
    "calibration": {"data": "text.txt", "nsamples": 4, "seqlen": 32},
    "evaluation": {
        "ppl": {"data": "text.txt", "seqlen": 32, "batch_size": 8},  # relative: resolved beside the file
        "kick": {"data": "kick", "limit": 200, "task_defaults": {"max_new_tokens": 4}},
    },
    "variants": [
        {"name": "magnitude {sparsity:.0%}", "method": "magnitude", "grid": {"sparsity": [0.5]}},
        {"name": "magnitude 2:4", "method": "magnitude", "options": {"pattern": "2:4"}},
        {"name": "wanda {sparsity:.0%}", "method": "wanda", "grid": {"sparsity": [0.3, 0.5]}},
        {"name": "wanda 2:4", "method": "wanda", "options": {"pattern": "2:4"}},
        {
            "name": "wanda+OWL 50%",
            "method": "wanda",
            "options": {"sparsity": 0.5, "allocation": "owl", "owl_lambda": 0.02},
        },
        {"name": "svd-uniform 30% params", "method": "svd-uniform", "options": {"target_params": 0.3}},
    ],
}


def _write(path, data) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _today_variants() -> list[tuple[str, dict]]:
    """The sweep ``plan_variants`` built before sweeps were declared (StudyConfig's defaults then)."""
    from slimkit.compress import build_config, needs_calibration

    out = []
    for method in ("magnitude", "wanda", "sparsegpt"):
        for s in (0.3, 0.5, 0.7):
            out.append((f"{method} {s:.0%}", build_config(method, sparsity=s)))
        out.append((f"{method} 2:4", build_config(method, pattern="2:4")))
        if needs_calibration(build_config(method)):
            owl = build_config(method, sparsity=0.7, allocation="owl", owl_m=5.0, owl_lambda=0.08)
            out.append((f"{method}+OWL 70%", owl))
    for r in (0.3, 0.5):
        for method in ("welore", "svd-uniform"):
            out.append((f"{method} {r:.0%} params", build_config(method, target_params=r)))
    return [(name, cfg.to_dict()) for name, cfg in out]


def test_default_sweep_is_todays_variant_list():
    variants = plan_variants(StudyConfig())
    assert variants[0].name == "dense" and variants[0].config is None
    got = [(v.name, v.config.to_dict()) for v in variants[1:]]
    assert got == _today_variants()
    assert len(variants) == 19
    # the evaluation settings the study used before: KICK at 200 items, perplexity windows of 128
    sweep = load_sweep("default")
    assert (sweep.kick.limit, sweep.kick.data, sweep.kick.tasks, sweep.kick.batch_size) == (
        200,
        None,
        (),
        None,
    )
    assert (sweep.ppl.seqlen, sweep.ppl.batch_size, sweep.ppl.limit, sweep.ppl.data) == (128, 64, None, None)
    assert sweep.calibration.to_dict() == {
        "type": "CalibrationSettings",
        "version": 1,
        "data": None,
        "nsamples": 64,
        "seqlen": 128,
        "seed": 0,
    }
    families = {v.name: v.family for v in variants}
    assert families["wanda 2:4"] == "prune" and families["welore 50% params"] == "lowrank"
    series = {v.name: v.series for v in variants}
    assert series["sparsegpt 70%"] == "sparsegpt" and series["svd-uniform 50% params"] == "svd-uniform"


def test_grid_flags_build_the_same_sweep():
    from slimkit.cli.study_cmd import FLAG_DEFAULTS, flag_variants

    assert set(FLAG_DEFAULTS) == {"methods", "sparsities", "patterns", "owl_sparsities", "lowrank_reductions"}
    entries = flag_variants(
        ("magnitude", "wanda", "sparsegpt"), (0.3, 0.5, 0.7), ("2:4",), (0.7,), (0.3, 0.5)
    )
    from_flags = plan_variants(StudyConfig(variants=tuple(entries)))
    from_file = plan_variants(StudyConfig())
    assert [(v.name, v.config, v.family) for v in from_flags] == [
        (v.name, v.config, v.family) for v in from_file
    ]
    assert {v.series for v in from_flags} >= {"magnitude", "wanda", "sparsegpt+OWL", "welore", "svd-uniform"}


def test_overrides_replace_the_sweeps_settings():
    sweep = load_sweep("default")
    cfg = StudyConfig(kick_limit=0, kick_tasks=("mc",), seqlen=64, limit=3, nsamples=8, seed=4, variants=())
    from slimkit.pipelines.study import resolve_sweep

    resolved = resolve_sweep(cfg)
    assert [v.name for v in resolved.variants] == ["dense"]
    assert resolved.kick.limit is None and resolved.kick.tasks == ("mc",)  # 0 = every item
    assert (resolved.ppl.seqlen, resolved.ppl.limit, resolved.ppl.batch_size) == (64, 3, sweep.ppl.batch_size)
    assert (resolved.calibration.nsamples, resolved.calibration.seed) == (8, 4)
    quick = resolve_sweep(StudyConfig(sweep="real-quick"))
    assert (
        quick.model == "smollm2-135m"
        and quick.kick.data == "countries:"
        and quick.kick.chat_template == "auto"
    )
    assert resolve_sweep(StudyConfig(sweep="real-quick", model="default")).model is None
    assert resolve_sweep(StudyConfig(sweep="real-quick", kick_data="mmlu:x")).kick.data == "mmlu:x"


def test_task_defaults_reach_every_task_that_takes_them():
    from slimkit.evaluate import TASKS

    sweep = parse_sweep(
        {
            "evaluation": {
                "kick": {
                    "task_defaults": {"max_new_tokens": 3},
                    "task_options": {"factoid": {"max_new_tokens": 9}},
                }
            }
        }
    )
    options = sweep.kick.task_options
    assert options["factoid"] == {"max_new_tokens": 9}  # a task's own option wins
    assert options["twohop"] == {"max_new_tokens": 3} and "mc" not in options  # mc generates nothing
    for task, opts in options.items():
        TASKS.config_for(task).from_dict({**opts})  # every merged option is a real field
    with pytest.raises(
        ConfigError, match=r"task_defaults: no KICK task .* takes option\(s\) \['num_shots'\]"
    ):
        parse_sweep({"evaluation": {"kick": {"task_defaults": {"num_shots": 5}}}})


def test_variant_entries_names_series_and_nested_configs():
    from slimkit.compress import build_config

    variants = parse_sweep(
        {
            "variants": [
                {"method": "wanda", "options": {"targets": ["re:layers\\.{0,1}\\."]}},
                {"method": "magnitude", "options": {"pattern": "unstructured"}, "grid": {"sparsity": [0.2, 0.4]}},
                {"name": "{method} {sparsity:.0%} OWL", "method": "sparsegpt", "grid": {"sparsity": [0.6]},
                 "options": {"allocation": {"type": "OWLConfig", "lam": 0.05}}},
                {"name": "w", "method": "wanda", "options": {"sparsity": 0.7, "allocation": "owl", "owl_lambda": 0.05},
                 "family": "mine"},
            ]
        }
    ).variants[1:]  # fmt: skip
    names = [v.name for v in variants]
    assert names == [
        "wanda targets=['re:layers\\\\.{0,1}\\\\.']",
        "magnitude pattern=unstructured sparsity=0.2",
        "magnitude pattern=unstructured sparsity=0.4",
        "sparsegpt 60% OWL",
        "w",
    ]
    series = [v.series for v in variants]
    assert series == [
        names[0],
        "magnitude pattern=unstructured",
        "magnitude pattern=unstructured",
        "sparsegpt OWL",
        "w",
    ]
    assert variants[0].config.targets == ("re:layers\\.{0,1}\\.",)
    assert variants[3].config == build_config("sparsegpt", sparsity=0.6, allocation="owl", owl_lambda=0.05)
    assert variants[4].family == "mine" and variants[3].family == "prune"
    with pytest.raises(ConfigError, match=r"has no option\(s\) \['alloc'\]"):
        parse_sweep({"variants": [{"method": "wanda", "options": {"alloc": {"type": "OWLConfig"}}}]})


@pytest.mark.parametrize(
    ("sweep", "error", "needle"),
    [
        (
            {"variants": [{"method": "nope"}]},
            RegistryError,
            "variants[0]: unknown compression method 'nope'; known",
        ),
        (
            {"variants": [{"method": "wanda", "options": {"sparsty": 0.5}}]},
            ConfigError,
            "has no option(s) ['sparsty']",
        ),
        ({"variants": [{"method": "wanda", "options": {"sparsity": 1.5}}]}, ConfigError, "sparsity=1.5"),
        ({"variants": [{"method": "wanda", "option": {}}]}, ConfigError, "unknown key(s) ['option']"),
        (
            {"variants": [{"method": "wanda", "grid": {"sparsity": [0.3, 0.5]}, "name": "w"}]},
            ConfigError,
            "grid option",
        ),
        ({"variants": [{"method": "wanda"}, {"method": "wanda"}]}, ConfigError, "is used twice"),
        ({"variants": [{"method": "wanda", "name": "{sparsty}"}]}, ConfigError, "refers to ['sparsty']"),
        ({"variants": [{"method": "dense"}]}, ConfigError, "always evaluated first"),
        ({"evaluation": {"ppl": {"seqlen": 1}}}, ConfigError, "evaluation.ppl: seqlen=1"),
        ({"evaluation": {"kick": {"limt": 3}}}, ConfigError, "unknown key(s) ['limt']"),
        ({"evaluation": {"kick": {"tasks": ["factoidz"]}}}, ConfigError, "unknown KICK task 'factoidz'"),
        ({"evaluation": {"trust": {}}}, ConfigError, "unknown key(s) ['trust']"),
        ({"calibration": {"nsamples": 0}}, ConfigError, "calibration.nsamples=0"),
        ({"variant": []}, ConfigError, "unknown key(s) ['variant']"),
        ({"variants": {"method": "wanda"}}, ConfigError, "must be a list"),
        ([1, 2], ConfigError, "must be a mapping"),
    ],
)
def test_bad_sweep_fails_naming_the_problem(sweep, error, needle):
    with pytest.raises(error) as info:
        parse_sweep(sweep, "s.yaml")
    message = str(info.value)
    assert needle in message and message.startswith("s.yaml") and "\n" not in message


def test_bad_sweep_fails_before_any_work(tmp_path, monkeypatch, capsys):
    import slimkit.pipelines._sweep as sweep_module

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the sweep was checked")

    monkeypatch.setattr(sweep_module, "load_subject", no_model)
    cases = {
        "method": {"variants": [{"method": "nope"}]},
        "option": {"variants": [{"method": "wanda", "options": {"nope": 1}}]},
        "yaml": "variants: [unclosed\n",
        "alias bomb": "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6)
        ),
    }
    for name, content in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.yaml"
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        code = run_cli(COMMAND, ["study", "--sweep", str(path), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, (name, err)
        assert not (tmp_path / "out").exists()
    with pytest.raises(
        ConfigError,
        match=r"shipped: \['default', 'ffn-skip', 'ffn-skip-real', 'ffn-structured', 'quant', 'real-quick', 'world-knowledge'\]",
    ):
        run_study(StudyConfig(sweep="no-such-sweep"), tmp_path / "out")
    with pytest.raises(RegistryError, match="known"):
        run_study(StudyConfig(variants=({"method": "nope"},)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_study_sweep_file_on_tiny_model(tiny_setup, tmp_path, capsys):
    sweep = _write(tiny_setup / "tiny.yaml", TINY_SWEEP)
    out = tmp_path / "study"
    code = run_cli(COMMAND, ["study", str(tiny_setup / "model"), "--sweep", sweep, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    on_disk = json.loads((out / "results.json").read_text())
    validate_results(on_disk)
    names = [v["variant"]["name"] for v in on_disk["variants"]]
    assert names == [
        "dense",
        "magnitude 50%",
        "magnitude 2:4",
        "wanda 30%",
        "wanda 50%",
        "wanda 2:4",
        "wanda+OWL 50%",
        "svd-uniform 30% params",
    ]
    assert on_disk["sweep"]["source"] == sweep and on_disk["sweep"]["calibration"]["nsamples"] == 4
    assert on_disk["sweep"]["evaluation"]["kick"]["task_options"]["factoid"] == {"max_new_tokens": 4}
    assert on_disk["higher_is_better"]["ppl"] == {"perplexity": False, "mean_nll": False}
    assert on_disk["higher_is_better"]["factoid"]["exact_match"] is True
    by_name = {v["variant"]["name"]: v["variant"] for v in on_disk["variants"]}
    for v in on_disk["variants"]:
        validate_results(v)
        info = v["variant"]
        if info["method"] == "dense":
            assert info["size_fraction"] == 1.0
            continue
        assert 0.0 < info["size_fraction"] < 1.0 and info["stored_bits"] < info["dense_bits"]
        if info["family"] == "prune":
            target = info["options"].get("sparsity", 0.5)
            # per-row counts are floored to whole weights (rows of 64 here; OWL per block), hence the slack
            assert info["achieved_sparsity"] == pytest.approx(target, abs=0.01)
            assert info["size_basis"] == "bitmask"
            # float32 bitmask storage: the kept values plus one bit per weight (and each shape)
            assert info["size_fraction"] == pytest.approx(1 - info["achieved_sparsity"] + 1 / 32, abs=2e-3)
    lowrank = by_name["svd-uniform 30% params"]
    assert lowrank["family"] == "lowrank" and lowrank["size_basis"] == "factors"
    assert lowrank["size_fraction"] == pytest.approx(1 - lowrank["achieved_sparsity"])
    assert by_name["wanda 30%"]["series"] == "wanda" and by_name["wanda 2:4"]["series"] == "wanda 2:4"
    for png in ("perplexity_vs_size.png", "accuracy_vs_size.png"):
        assert (out / png).stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "wanda+OWL 50%" in report and "perplexity_vs_size.png" in report and "mc accuracy ↑" in report
    assert "| variant | size | sparsity | perplexity ↓ |" in report
    assert set(on_disk["metrics"]) == {"ppl", "factoid", "mc"}


def test_study_config_on_tiny_model_without_a_file(tiny_setup, tmp_path):
    cfg = StudyConfig(
        model=str(tiny_setup / "model"),
        variants=({"name": "magnitude 50%", "method": "magnitude", "options": {"sparsity": 0.5}},),
        ppl_data=str(tiny_setup / "text.txt"),
        seqlen=32,
        batch_size=8,
        limit=2,
    )
    results = run_study(cfg, tmp_path / "study")
    assert [v["variant"]["name"] for v in results["variants"]] == ["dense", "magnitude 50%"]
    assert set(results["metrics"]) == {"ppl"}  # default.yaml's KICK is the world's: not for this model
    assert results["metrics"]["ppl"]["n_windows"] == 2
    assert (tmp_path / "study" / "perplexity_vs_size.png").is_file()
    with pytest.raises(SlimkitError, match="needs a perplexity text source"):
        run_study(StudyConfig(model=str(tiny_setup / "model"), variants=()), tmp_path / "again")


def test_storage_size_from_reports():
    from slimkit.pipelines._sweep import storage_size

    pruned = SimpleNamespace(
        matrices=[
            SimpleNamespace(shape=(64, 128), sparsity=0.5),
            SimpleNamespace(shape=(8, 8), sparsity=0.01),
        ]
    )
    size = storage_size(pruned, 16)
    big = 4096 * 16 + 64 * 128 + 128  # kept values, one mask bit per weight, the int64 shape
    small = 64 * 16  # barely pruned: stored dense
    assert size["stored_bits"] == big + small and size["dense_bits"] == (8192 + 64) * 16
    assert size["size_basis"] == "bitmask"
    factored = SimpleNamespace(
        matrices=[SimpleNamespace(shape=(64, 64), sparsity=0.5, params_stored=2048, params_dense=4096)]
    )
    assert storage_size(factored, 32)["size_fraction"] == 0.5
    reported = SimpleNamespace(stored_bits=10, dense_bits=40, matrices=[])
    assert storage_size(reported, 32) == {
        "stored_bits": 10,
        "dense_bits": 40,
        "size_fraction": 0.25,
        "size_basis": "reported",
    }
    assert storage_size(SimpleNamespace(matrices=[]), 32)["size_fraction"] == 1.0


def _results(variants: list[tuple[str, str, str, float, dict]], directions=None) -> dict:
    from slimkit.evaluate import make_results

    out = []
    for name, method, family, size, metrics in variants:
        res = make_results(name, metrics)
        res["variant"] = {
            "name": name,
            "method": method,
            "family": family,
            "series": name.split()[0],
            "size_fraction": size,
        }
        out.append(res)
    results = dict(out[0])
    results["variants"] = out
    if directions is not None:
        results["higher_is_better"] = directions
    return results


def test_flags_follow_metric_direction():
    from slimkit.evaluate.report import flagged_variants, higher_is_better

    assert higher_is_better("ppl", "perplexity") is False and higher_is_better("mc", "accuracy") is True
    assert higher_is_better("ppl", "n_windows") is None and higher_is_better("mc", "chance") is None
    assert higher_is_better("factoid", "exact_match@popularity_half=rare") is True
    ppl = {"perplexity": 5.0, "n": 10}
    results = _results(
        [
            ("dense", "dense", "dense", 1.0, {"ppl": ppl, "factoid": {"exact_match": 0.8, "n": 10}}),
            ("a 50%", "a", "prune", 0.5, {"ppl": ppl, "factoid": {"exact_match": 0.6, "n": 10}}),
            ("b 50%", "b", "prune", 0.5, {"ppl": ppl, "factoid": {"exact_match": 0.95, "n": 10}}),
        ]
    )
    assert flagged_variants(results) == [("a 50%", ["factoid"])]
    # a results file may declare a metric lower-is-better: then an increase is the loss
    flipped = {**results, "higher_is_better": {"factoid": {"exact_match": False}}}
    assert flagged_variants(flipped) == [("b 50%", ["factoid"])]


def test_flag_rests_on_answer_token_perplexity_when_the_text_has_it():
    from slimkit.evaluate.report import flag_metric, flagged_variants, summary_rows

    def ppl(whole, answer=None):
        out = {"perplexity": whole, "n": 10}
        return out if answer is None else {**out, "answer_perplexity": answer, "n_answer_tokens": 3}

    knows, forgot = {"exact_match": 0.8, "n": 10}, {"exact_match": 0.5, "n": 10}
    # the artefact: whole-text perplexity falls under pruning while the answers get much harder
    results = _results(
        [
            ("dense", "dense", "dense", 1.0, {"ppl": ppl(4.89, 2.0), "factoid": knows}),
            ("a 70%", "a", "prune", 0.3, {"ppl": ppl(4.51, 2.6), "factoid": forgot}),
            ("b 50%", "b", "prune", 0.5, {"ppl": ppl(4.95, 2.1), "factoid": forgot}),
        ]
    )
    assert flag_metric(results) == "answer_perplexity"
    # a 70% has answer ppl 30% worse: perplexity did not hide the loss; b 50% (within 10%) did
    assert flagged_variants(results) == [("b 50%", ["factoid"])]
    header, rows = summary_rows(results)
    column = header.index("answer ppl ↓")  # beside perplexity in the study table
    assert column == header.index("perplexity ↓") + 1 and rows[1][column] == "2.60"
    # without answer spans the flag falls back to whole-text perplexity
    plain = _results(
        [
            ("dense", "dense", "dense", 1.0, {"ppl": ppl(4.89), "factoid": knows}),
            ("a 70%", "a", "prune", 0.3, {"ppl": ppl(4.51), "factoid": forgot}),
        ]
    )
    assert flag_metric(plain) == "perplexity" and flagged_variants(plain) == [("a 70%", ["factoid"])]


def test_plots_stay_readable_as_the_sweep_grows(tmp_path):
    from slimkit.evaluate.report import write_plots, write_report

    variants = [("dense", "dense", "dense", 1.0, {"ppl": {"perplexity": 5.0, "n": 1}})]
    for i, method in enumerate(["m0", "m1", "m2", "m3"]):
        for s in (0.3, 0.5, 0.7, 0.9):
            variants.append(
                (f"{method} {s:.0%}", method, "prune", 1 - s, {"ppl": {"perplexity": 5 + i + 10 * s, "n": 1}})
            )
        variants.append((f"{method}-2:4", method, "prune", 0.53, {"ppl": {"perplexity": 6.0 + i, "n": 1}}))
    for method in ("r0", "r1"):
        for s in (0.3, 0.5):
            variants.append(
                (f"{method} {s:.0%}", method, "lowrank", 1 - s, {"ppl": {"perplexity": 7.0, "n": 1}})
            )
    variants.append(("q4", "q", "quant", 0.14, {"ppl": {"perplexity": 5.5, "n": 1}}))
    written = write_plots(_results(variants), tmp_path)
    assert written == ["perplexity_vs_size.png"]
    import matplotlib.image

    image = matplotlib.image.imread(tmp_path / "perplexity_vs_size.png")
    height, width = image.shape[:2]
    assert width > 2 * height * 0.9  # three panels side by side, not one crowded axis
    report = write_report(_results(variants), tmp_path)
    assert "| q4 | 0.140 |" in report
    assert not math.isnan(image.mean())
