"""FFN-SkipLLM on the default factworld model through the CLI: compress records τ, eval skips with it
and records the statistics; and on SmolLM2-135M (slow): calibration reaches 25% and greedy decoding
with τ = +∞ matches the dense model token for token."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import typer

from slimkit.cli.errors import run_cli
from slimkit.cli.main import app
from slimkit.compress import FFNSkipConfig, calibration_for, compress_
from slimkit.compress.skip.gate import NEVER
from slimkit.nn.ffn_skip import remove_skip_, skip_stats

COMMAND = typer.main.get_command(app)


def _cli(args, capsys):
    code = run_cli(COMMAND, [str(a) for a in args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_compress_records_tau_and_eval_honours_it(default_dir, tmp_path, capsys):
    out = tmp_path / "skip25"
    _cli(
        ["compress", "default", "--method", "ffn-skip", "--target-ratio", "0.25", "--cold-end", "0",
         "--nsamples", "16", "--seqlen", "64", "--out", out],
        capsys,
    )  # fmt: skip
    meta = json.loads((out / "slimkit.json").read_text())
    tau = meta["ffn-skip"]["threshold"]
    assert -1 <= tau <= 1 and meta["report"]["threshold"] == tau
    assert abs(meta["report"]["achieved"] - 0.25) <= 0.02
    results = tmp_path / "r.json"
    _cli(["eval", out, "--suite", "retrieval", "--limit", "20", "--out", results], capsys)
    data = json.loads(results.read_text())
    assert data["provenance"]["config"]["ffn_skip"]["threshold"] == tau
    assert data["metrics"]["ffn_skip"]["n"] > 0
    assert 0 < data["metrics"]["ffn_skip"]["skip_ratio"] < 0.5


@pytest.mark.slow
@pytest.mark.real_model
def test_smollm2_never_skip_is_dense_and_calibrates():
    from slimkit.models import load_model

    dense, tok = load_model("smollm2-135m")
    config = FFNSkipConfig(target_ratio=0.25, cold_start=3, cold_end=3, prompts=8, new_tokens=16)
    calib = calibration_for(config, tok, "python-docs:calib", nsamples=8, seqlen=32)
    ids = calib.ids[:2, :16]
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        expected = dense.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    model = copy.deepcopy(dense)
    compress_(model, FFNSkipConfig(threshold=NEVER, cold_start=3, cold_end=3), progress=False)
    with torch.no_grad():
        assert torch.equal(model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs), expected)
    remove_skip_(model)
    report = compress_(model, config, calib, progress=False)
    assert abs(report.achieved - 0.25) <= 0.02
    assert skip_stats(model)["layers"] == 30


def _benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "ffn_skip.py"
    spec = importlib.util.spec_from_file_location("ffn_skip_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_headline_is_containment_by_popularity_for_the_instruct_model():
    bench = _benchmark()
    setup = bench.SETUPS["smollm2-135m"]
    assert setup["kick"]["chat_template"] == "on" and setup["headline"] == "contains"
    metrics = {
        "factoid": {"exact_match": 0.0, "contains": 0.3, "contains@popularity_quartile=q1": 0.1, "n": 10},
        "retrieval": {"exact_match": 0.2, "f1": 0.3, "n": 10},
    }
    assert bench.headline(metrics, "contains") == {
        "factoid contains": 0.3,
        "factoid contains q1": 0.1,
        "retrieval exact_match": 0.2,
    }
    assert bench.extents_for("smollm2-135m", "default:none,1;smollm2-135m:none,4") == [None, 4]


@pytest.mark.slow
@pytest.mark.real_model
def test_benchmark_prompts_smollm2_as_the_evaluator_does():
    """The benchmark's KICK setup for SmolLM2-135M-Instruct (chat template) finds knowledge in the dense
    model by containment, above chance, where its exact match (the table's old headline) is 0."""
    from slimkit.models import load_model

    bench = _benchmark()
    model, tok = load_model("smollm2-135m")
    metrics = bench.kick(model, tok, bench.SETUPS["smollm2-135m"]["kick"], 40)
    assert metrics["factoid"]["contains"] > metrics["factoid"]["chance"]
    assert bench.headline(metrics, "contains")["factoid contains"] == metrics["factoid"]["contains"]


@pytest.mark.slow
@pytest.mark.real_model
def test_smollm2_early_exit_computes_only_kv_after_the_exit():
    """SmolLM2-135M: with rows exiting, the K/V-only later blocks give the tokens of running them whole."""
    from slimkit.compress import EarlyExitConfig
    from slimkit.models import load_model
    from slimkit.nn.layer_skip import get_early_exit_state

    model, tok = load_model("smollm2-135m")
    compress_(model, EarlyExitConfig(threshold=0.98, warmup_tokens=1), progress=False)
    texts = ("The capital of France is the city of", "Water boils at a temperature of one hundred")
    ids = torch.tensor([tok(t)["input_ids"][:5] for t in texts])
    kwargs = {"max_new_tokens": 10, "min_new_tokens": 10, "do_sample": False, "pad_token_id": 0}
    state = get_early_exit_state(model)
    with torch.no_grad():
        fast = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        exited = state.stats()["exit_ratio"]
        state.kv_only = False
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    assert exited > 0
    assert torch.equal(fast, ref)
