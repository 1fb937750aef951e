"""``slimkit graph llaga train|eval``: a run end to end on a tiny LLM, zero-shot eval, bad input."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch_geometric")

import typer  # noqa: E402

from slimkit.cli.errors import run_cli  # noqa: E402
from slimkit.cli.main import app  # noqa: E402
from slimkit.evaluate.results import validate_results  # noqa: E402
from slimkit.models.tiny import tiny_model, tiny_tokenizer  # noqa: E402

COMMAND = typer.main.get_command(app)
BASE = ["--template", "ho", "--ho-hops", "2", "--epochs", "1", "--encoder", "hash", "--feature-dim", "32"]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-llm")
    tiny_model("llama", seed=0).save_pretrained(d)
    tiny_tokenizer().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def trained(tiny_llm, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    args = ["graph", "llaga", "train", *BASE, "--tasks", "nc,lp", "--llm", str(tiny_llm), "--out", str(out)]
    assert run_cli(COMMAND, args) == 0
    return out


def cli(*args) -> int:
    return run_cli(COMMAND, [str(a) for a in args])


def test_train_writes_a_run(trained):
    info = json.loads((trained / "llaga.json").read_text())
    assert info["config"]["tasks"] == ["nc", "lp"] and "hashed bag-of-words" in info["feature_source"]
    assert info["train"]["trainable_params"] > 0 and (trained / "projector.safetensors").is_file()
    results = json.loads((trained / "results.json").read_text())
    validate_results(results)
    assert set(results["metrics"]) == {"nc", "lp"} and "scored_accuracy" in results["metrics"]["nc"]


def test_eval_same_and_zero_shot(trained, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert cli("graph", "llaga", "eval", trained, "--tasks", "nc", "--limit", "5", "--out", out) == 0
    res = json.loads(out.read_text())
    validate_results(res)
    assert res["metrics"]["nc"]["n"] == 5
    # zero-shot: another world (same feature width), the type labels
    out2 = tmp_path / "zero.json"
    code = cli(
        "graph", "llaga", "eval", trained, "--graph", "world:world_seed=1", "--limit", "4", "--out", out2
    )
    assert code == 0
    assert json.loads(out2.read_text())["provenance"]["config"]["eval_graph"] == "world:world_seed=1"


def test_help_has_examples(capsys):
    assert cli("graph", "llaga", "train", "--help") == 0
    assert "slimkit graph llaga train --graph" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--tasks", "nc,qa"], "tasks"),
        (["--template", "xx"], "template"),
        (["--graph", "csbm:nodes=60,feature_dim=4"], "no node text"),
    ],
)
def test_train_bad_input(tiny_llm, tmp_path, capsys, extra, message):
    args = ["graph", "llaga", "train", *BASE, "--llm", tiny_llm, *extra, "--out", tmp_path / "o"]
    assert cli(*args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "llaga.json").exists()


def test_train_llm_that_does_not_load(tmp_path, capsys):
    bad = tmp_path / "bad-llm"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    assert cli("graph", "llaga", "train", *BASE, "--llm", bad, "--out", tmp_path / "o") == 2
    assert "error" in capsys.readouterr().err


def test_train_class_count_mismatch(tiny_llm, tmp_path, capsys):
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\nc\n")
    args = [
        "graph",
        "llaga",
        "train",
        *BASE,
        "--llm",
        tiny_llm,
        "--classes",
        classes,
        "--out",
        tmp_path / "o",
    ]
    assert cli(*args) == 2
    assert "3 class names given" in capsys.readouterr().err


def test_eval_bad_input(trained, tmp_path, capsys):
    assert cli("graph", "llaga", "eval", tmp_path) == 2
    assert "not a LLaGA run" in capsys.readouterr().err
    assert (
        cli(
            "graph",
            "llaga",
            "eval",
            trained,
            "--graph",
            "world:feature_dim=8",
            "--out",
            trained / "llaga.json",
        )
        == 2
    )
    assert cli("graph", "llaga", "eval", trained, "--tasks", "zz") == 2
