"""The CLI contract: --help everywhere, exit 2 with one line on bad input, nothing partial written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from slimkit.models import save_model, tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    out = tmp_path_factory.mktemp("tiny") / "model"
    save_model(tiny_model("llama", vocab_size=len(tok)), tok, out)
    return out


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["world"],
        ["world", "build"],
        ["train"],
        ["eval"],
        ["study"],
        ["generate"],
        ["world", "model"],
        ["world", "probe"],
        ["junkdna"],
        ["report"],
        ["graph", "ladling"],
        ["debias", "sebra"],
        ["debias", "baseline"],
    ],
)
def test_help_has_examples(args, capsys):
    code, out, _ = run([*args, "--help"], capsys)
    assert code == 0
    assert "Usage" in out
    if args and args != ["world"]:
        assert "Example" in out


def test_missing_model_path(tmp_path, capsys):
    code, _, err = run(["eval", tmp_path / "nope", "--suite", "ppl", "--out", tmp_path / "r.json"], capsys)
    assert_one_line_error(code, err, "nope")
    assert not (tmp_path / "r.json").exists()


def test_directory_without_weights(tmp_path, tiny_dir, capsys):
    d = tmp_path / "noweights"
    d.mkdir()
    (d / "config.json").write_text((tiny_dir / "config.json").read_text())
    code, _, err = run(["eval", d, "--suite", "ppl"], capsys)
    assert_one_line_error(code, err, "weights")


def test_truncated_safetensors(tmp_path, tiny_dir, capsys):
    d = tmp_path / "trunc"
    d.mkdir()
    for f in tiny_dir.iterdir():
        data = f.read_bytes()
        (d / f.name).write_bytes(data[: len(data) // 2] if f.suffix == ".safetensors" else data)
    code, _, err = run(["eval", d, "--suite", "ppl"], capsys)
    assert_one_line_error(code, err, "safetensors")


def test_pickle_only_checkpoint_refused(tmp_path, tiny_dir, capsys):
    d = tmp_path / "pickle"
    d.mkdir()
    (d / "config.json").write_text((tiny_dir / "config.json").read_text())
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    code, _, err = run(["eval", d, "--suite", "ppl"], capsys)
    assert_one_line_error(code, err, "pickle")


def test_unsupported_architecture(tmp_path, tiny_dir, capsys):
    d = tmp_path / "bert"
    d.mkdir()
    cfg = json.loads((tiny_dir / "config.json").read_text())
    cfg["model_type"] = "bert"
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "model.safetensors").write_bytes((tiny_dir / "model.safetensors").read_bytes())
    code, _, err = run(["eval", d, "--suite", "ppl"], capsys)
    assert_one_line_error(code, err, "bert", "llama")


def test_malformed_yaml(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train: {steps: 3\nout: [unclosed\n")
    code, _, err = run(["train", cfg], capsys)
    assert_one_line_error(code, err, "yaml")


def test_unknown_config_key(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train:\n  steps: 3\n  stepz: 4\n")
    code, _, err = run(["train", cfg], capsys)
    assert_one_line_error(code, err, "stepz")


@pytest.mark.parametrize("people", ["0", "-3"])
def test_zero_or_negative_world_size(tmp_path, people, capsys):
    out = tmp_path / "world"
    code, _, err = run(["world", "build", "--out", out, "--people", people], capsys)
    assert_one_line_error(code, err, "n_people")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_zero_seqlen(tmp_path, tiny_dir, capsys):
    text = tmp_path / "t.txt"
    text.write_text("word " * 500)
    code, _, err = run(["eval", tiny_dir, "--suite", "ppl", "--data", text, "--seqlen", "0"], capsys)
    assert_one_line_error(code, err, "seqlen")


def test_text_shorter_than_one_window(tmp_path, tiny_dir, capsys):
    text = tmp_path / "short.txt"
    text.write_text("Only a few words here.")
    out = tmp_path / "r.json"
    code, _, err = run(
        ["eval", tiny_dir, "--suite", "ppl", "--data", text, "--seqlen", "128", "--out", out], capsys
    )
    assert_one_line_error(code, err, "seqlen")
    assert not out.exists()


def test_unknown_suite(tmp_path, tiny_dir, capsys):
    code, _, err = run(["eval", tiny_dir, "--suite", "nonsense"], capsys)
    assert_one_line_error(code, err, "nonsense")


def test_eval_ppl_writes_results(tmp_path, tiny_dir, capsys):
    text = tmp_path / "t.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 80)
    out = tmp_path / "r.json"
    code, stdout, err = run(
        ["eval", tiny_dir, "--suite", "ppl", "--data", text, "--seqlen", "32", "--out", out], capsys
    )
    assert code == 0, err
    results = json.loads(out.read_text())
    assert set(results) >= {"model", "provenance", "metrics"}
    assert results["metrics"]["ppl"]["n"] > 0
    assert "perplexity" in stdout


def test_eval_ppl_answer_spans_from_the_cli(tmp_path, tiny_dir, capsys):
    text = tmp_path / "t.txt"
    body = "The quick brown fox jumps over the lazy dog. " * 80
    text.write_text(body)
    spans = tmp_path / "spans.jsonl"
    spans.write_text("".join(json.dumps({"start": i + 4, "end": i + 9}) + "\n" for i in range(0, 3000, 45)))
    out = tmp_path / "r.json"
    code, _, err = run(
        [
            "eval",
            tiny_dir,
            "--suite",
            "ppl",
            "--data",
            text,
            "--seqlen",
            "32",
            "--answers",
            spans,
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    ppl = json.loads(out.read_text())["metrics"]["ppl"]
    assert ppl["n_answer_tokens"] > 0 and ppl["answer_perplexity"] > 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"start": 5, "end": 2}\n')
    code, _, err = run(
        ["eval", tiny_dir, "--suite", "ppl", "--data", text, "--seqlen", "32", "--answers", bad], capsys
    )
    assert_one_line_error(code, err, "bad.jsonl:1")
    code, _, err = run(["eval", tiny_dir, "--suite", "factoid", "--answers", spans], capsys)
    assert_one_line_error(code, err, "--answers")


def test_world_build_cli(tmp_path, capsys):
    out = tmp_path / "world"
    code, _, err = run(["world", "build", "--out", out, "--seed", "1", "--people", "40"], capsys)
    assert code == 0, err
    assert (out / "factoid.jsonl").is_file() and (out / "corpus.txt").is_file()


# -- the KICK suite ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kick_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("kick")
    mc = [
        {"id": f"m{i}", "question": f"Where was person {i} born?", "options": ["Lorin", "Voro"], "answer_index": i % 2,
         "tags": {"n_options": 2}}
        for i in range(6)
    ]  # fmt: skip
    (d / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mc))
    factoid = [
        {
            "id": "f",
            "question": "Where was Ada born?",
            "answers": ["Lorin"],
            "tags": {"popularity_half": "rare"},
        }
    ]
    (d / "factoid.jsonl").write_text(json.dumps(factoid[0]) + "\n")
    return d


def test_eval_kick_writes_results_and_examples(tmp_path, tiny_dir, kick_dir, capsys):
    out, examples = tmp_path / "r.json", tmp_path / "ex.json"
    args = ["eval", tiny_dir, "--suite", "kick", "--data", kick_dir, "--limit", "4", "--out", out]
    code, stdout, err = run([*args, "--save-examples", examples], capsys)
    assert code == 0, err
    results = json.loads(out.read_text())
    assert results["metrics"]["mc"]["n"] == 4 and results["metrics"]["factoid"]["n"] == 1
    assert results["provenance"]["config"]["suite"] == "kick"
    saved = json.loads(examples.read_text())["examples"]
    assert len(saved["mc"]) == 4 and "prediction" in saved["mc"][0]
    assert "accuracy" in stdout


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--tasks", "trivia"], ["unknown KICK task 'trivia'", "factoid"]),
        (["--tasks", "retrieval"], ["no 'retrieval' data", "factoid"]),
    ],
)
def test_eval_kick_bad_task_names(tmp_path, tiny_dir, kick_dir, capsys, extra, needles):
    code, _, err = run(
        ["eval", tiny_dir, "--suite", "kick", "--data", kick_dir, *extra, "--out", tmp_path / "r"], capsys
    )
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "r").exists()


def test_eval_kick_wrong_layout_names_the_fields(tmp_path, tiny_dir, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mc.jsonl").write_text(json.dumps({"id": "m", "question": "q", "choices": ["a", "b"]}) + "\n")
    code, _, err = run(["eval", tiny_dir, "--suite", "kick", "--data", bad], capsys)
    assert_one_line_error(code, err, "options", "answer_index")


def test_eval_kick_empty_task(tmp_path, tiny_dir, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, _, err = run(["eval", tiny_dir, "--suite", "factoid", "--data", empty], capsys)
    assert_one_line_error(code, err, "empty")


def test_eval_model_without_tokenizer(tmp_path, tiny_dir, kick_dir, capsys):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_dir, bare)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bare / name).unlink(missing_ok=True)
    code, _, err = run(["eval", bare, "--suite", "kick", "--data", kick_dir], capsys)
    assert_one_line_error(code, err, "tokenizer")


def test_report_combines_results_files(tmp_path, tiny_dir, kick_dir, capsys):
    files = []
    for limit in ("2", "4"):
        out = tmp_path / f"r{limit}.json"
        assert (
            run(
                ["eval", tiny_dir, "--suite", "kick", "--data", kick_dir, "--limit", limit, "--out", out],
                capsys,
            )[0]
            == 0
        )
        files.append(out)
    code, _, err = run(["report", *files, "--out", tmp_path / "rep"], capsys)
    assert code == 0, err
    assert "mc accuracy" in (tmp_path / "rep" / "report.md").read_text()
    (tmp_path / "junk.json").write_text("{}")
    code, _, err = run(["report", tmp_path / "junk.json", "--out", tmp_path / "rep2"], capsys)
    assert_one_line_error(code, err, "junk.json", "missing key")


def test_world_recipe_and_probe_bad_input(tmp_path, capsys):
    code, _, err = run(["world", "build", "--out", tmp_path / "w", "--recipe", "nope"], capsys)
    assert_one_line_error(code, err, "nope")
    code, _, err = run(["world", "model", "--recipe", "nope"], capsys)
    assert_one_line_error(code, err, "nope")
    code, _, err = run(["world", "probe", "--steps", "0"], capsys)
    assert_one_line_error(code, err, "steps")
