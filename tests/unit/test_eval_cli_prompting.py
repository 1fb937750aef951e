"""slimkit eval's prompting flags: recorded in provenance, bad combinations refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from slimkit.models import save_model, tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    return save_model(
        tiny_model("llama", vocab_size=len(tok)), tok, tmp_path_factory.mktemp("tiny") / "model"
    )


@pytest.fixture(scope="module")
def kick_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("kick")
    rows = [
        {"id": f"f{i}", "question": f"Where was person {i} born?", "answers": [f"Town{i}"]} for i in range(4)
    ]
    (d / "factoid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_prompting_flags_reach_the_tasks_and_the_provenance(tmp_path, tiny_dir, kick_dir, capsys):
    out, examples = tmp_path / "r.json", tmp_path / "ex.json"
    args = ["eval", tiny_dir, "--suite", "kick", "--data", kick_dir, "--num-fewshot", "2", "--chat-template", "off",
            "--system-prompt", "Answer with a name.", "--out", out, "--save-examples", examples]  # fmt: skip
    code, _, err = run(args, capsys)
    assert code == 0, err
    config = json.loads(out.read_text())["provenance"]["config"]
    assert config["num_fewshot"] == 2 and config["chat_template"] == "off"
    factoid = config["task_configs"]["factoid"]
    assert factoid["num_fewshot"] == 2 and factoid["system_prompt"] == "Answer with a name."
    assert factoid["prompting"] == {
        "chat_template_applied": False,
        "tokenizer_adds_bos": False,
        "chat_template_sha": None,
    }
    prompt = json.loads(examples.read_text())["examples"]["factoid"][0]["prompt"]
    assert prompt.startswith("Answer with a name.\n\n") and prompt.count("\nAnswer: Town") == 2


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--chat-template", "on"], ["no chat template"]),
        (["--chat-template", "maybe"], ["chat_template", "auto"]),
        (["--num-fewshot", "-1"], ["num_fewshot"]),
    ],
)
def test_bad_prompting_flags_are_one_line_errors(tmp_path, tiny_dir, kick_dir, capsys, extra, needles):
    code, _, err = run(
        ["eval", tiny_dir, "--suite", "kick", "--data", kick_dir, *extra, "--out", tmp_path / "r.json"],
        capsys,
    )
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "r.json").exists()


def test_prompting_flags_are_not_for_perplexity(tmp_path, tiny_dir, capsys):
    code, _, err = run(
        ["eval", tiny_dir, "--suite", "ppl", "--data", "world:heldout", "--num-fewshot", "1"], capsys
    )
    assert_one_line_error(code, err, "not ppl")
