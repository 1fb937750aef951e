"""Hostile and careless input: no code runs, no user data is lost, every bad input is one line and exit 2.

One test per way a user (careless or malicious) can hurt themselves through slimkit, grouped by the
cause that broke the promise before it was fixed. Each asserts the exit code, a single stderr line
naming the bad value, no traceback, nothing left behind, and where code could run, that a payload's
marker file was never created. The CLI-contract cases run the installed ``slimkit`` console script in
a subprocess, exactly as a user does, so nothing in the test runner can catch an exception for it.
Graph and debias data (Planetoid pickles, CSV paths, image bombs) are in ``test_hostile_graph_debias.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error as one_line
from cli_helpers import read_only_dir
from cli_helpers import run as cli

from slimkit.core.errors import ConfigError, DataError, ModelLoadError, SlimkitError

SCRIPT = Path(sys.executable).with_name("slimkit")


# -- helpers ---------------------------------------------------------------------------------------------------


def script(args: list, *, cwd: Path | None = None, timeout: float = 120) -> tuple[int, str, str]:
    """The installed console script, in a subprocess."""
    assert SCRIPT.is_file(), f"the slimkit console script is not installed at {SCRIPT}"
    proc = subprocess.run(
        [str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    return proc.returncode, proc.stdout, proc.stderr


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from slimkit.models import save_model, tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hostile") / "model"
    save_model(tiny_model("llama", vocab_size=len(tok)), tok, out)
    return out


def copy_model(src: Path, dst: Path, **config_changes) -> Path:
    import shutil

    shutil.copytree(src, dst)
    if config_changes:
        config = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps({**config, **config_changes}))
    return dst


# == 1. code execution through data ==============================================================================
def test_lm_eval_include_path_runs_no_code_without_opt_in(tmp_path, tiny_dir, capsys):
    marker = tmp_path / "PWNED"
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "utils.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\ndef f(x):\n    return x\n")
    (tasks / "evil.yaml").write_text(
        "task: evil\ndataset_path: json\noutput_type: loglikelihood\nprocess_docs: !function utils.f\n"
        "doc_to_text: q\ndoc_to_target: a\n"
    )
    code, _, err = cli(
        ["eval", tiny_dir, "--suite", "lm-eval", "--tasks", "evil", "--include-path", tasks], capsys
    )
    one_line(code, err, "--allow-task-code", str(tasks))
    assert not marker.exists()


def test_yaml_python_tags_are_refused(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    code, _, err = cli(["train", cfg], capsys)
    one_line(code, err, "yaml")
    assert not marker.exists()


def test_pickle_weights_in_a_model_dir_are_not_loaded(tmp_path, tiny_dir, capsys):
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text((tiny_dir / "config.json").read_text())
    torch.save({"w": Payload()}, d / "pytorch_model.bin")
    code, _, err = cli(["eval", d, "--suite", "ppl"], capsys)
    one_line(code, err, "pickle")
    assert not marker.exists()


# == 2. user data deleted ========================================================================================
def test_compress_never_replaces_a_directory_of_user_files(tmp_path, tiny_dir, capsys):
    users = tmp_path / "thesis"
    users.mkdir()
    (users / "chapter1.tex").write_text("precious")
    code, _, err = cli(["compress", tiny_dir, "--method", "magnitude", "--out", users], capsys)
    one_line(code, err, str(users), "--overwrite")
    assert listing(users) == ["chapter1.tex"]


@pytest.mark.parametrize("where", ["the input", "the folder holding the input"])
def test_compress_never_replaces_the_input_model(tmp_path, tiny_dir, capsys, where):
    parent = tmp_path / "models"
    model = copy_model(tiny_dir, parent / "base")
    before = listing(parent)
    out = model if where == "the input" else parent
    code, _, err = cli(["compress", model, "--method", "magnitude", "--out", out, "--overwrite"], capsys)
    one_line(code, err, "input", str(out))
    assert listing(parent) == before


def test_overwrite_replaces_user_files_and_a_slimkit_dir_is_replaced_freely(tmp_path, tiny_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    code, _, err = cli(["compress", tiny_dir, "--method", "magnitude", "--out", out, "--overwrite"], capsys)
    assert code == 0, err
    assert not (out / "old.txt").exists() and (out / "slimkit.json").is_file()
    code, _, err = cli(
        ["compress", tiny_dir, "--method", "magnitude", "--sparsity", "0.3", "--out", out], capsys
    )
    assert code == 0, err  # slimkit wrote it: replaced without --overwrite
    assert json.loads((out / "slimkit.json").read_text())["config"]["sparsity"] == 0.3


def test_symlinked_out_is_written_through_the_link_leaving_nothing_stray(tmp_path, tiny_dir, capsys):
    real = tmp_path / "store" / "pruned"
    real.parent.mkdir()
    link = tmp_path / "pruned"
    link.symlink_to(real, target_is_directory=True)  # dangling until the first write
    code, _, err = cli(["compress", tiny_dir, "--method", "magnitude", "--out", link], capsys)
    one_line(code, err, "does not exist")
    real.mkdir()
    code, _, err = cli(["compress", tiny_dir, "--method", "magnitude", "--out", link], capsys)
    assert code == 0, err
    assert link.is_symlink() and (real / "slimkit.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned", "store"]
    assert sorted(p.name for p in real.parent.iterdir()) == ["pruned"]


def test_report_never_replaces_the_directory_holding_its_inputs(tmp_path, capsys):
    from slimkit.evaluate import make_results

    study = tmp_path / "study"
    study.mkdir()
    (study / "results.json").write_text(json.dumps(make_results("m", {"ppl": {"perplexity": 3.0, "n": 1}})))
    code, _, err = cli(["report", study / "results.json", "--out", study, "--overwrite"], capsys)
    one_line(code, err, "input")
    assert listing(study) == ["results.json"]


# == 3. tracebacks on the most common mistakes (the installed console script) ===================================
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["compress", "default", "--method", "wanda", "--sparsty", "0.5", "--out", "x"], "--sparsty"),
        (["compress", "default", "--method", "wanda"], "--out"),
        (["compress", "default", "--method", "wanda", "--sparsity", "abc", "--out", "x"], "abc"),
        (["frobnicate"], "frobnicate"),
        (["eval"], "model"),
    ],
    ids=["misspelt-flag", "missing-out", "not-a-number", "unknown-command", "missing-argument"],
)
def test_usage_errors_through_the_console_script(tmp_path, args, needle):
    code, _, err = script(args, cwd=tmp_path)
    one_line(code, err, needle)
    assert listing(tmp_path) == []


def test_bare_slimkit_prints_help_and_exits_0(tmp_path):
    code, out, err = script([], cwd=tmp_path)
    assert code == 0 and "Traceback" not in err and "Usage" in out and "compress" in out


def test_ctrl_c_exits_130_with_one_line_and_leaves_no_model(tmp_path, tiny_dir):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"sentence number {i} about things." for i in range(400)))
    run = tmp_path / "run"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"model: {{path: {tiny_dir}}}\ndata: {corpus}\nout: {run}\n"
        "train: {steps: 1000000, batch_size: 2, seqlen: 16, checkpoint_every: 1000000}\n"
    )
    proc = subprocess.Popen(
        [str(SCRIPT), "train", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        # the run is under way once the loop has taken a step and written nothing yet
        while time.monotonic() < deadline and proc.poll() is None and not _has_stepped(proc.pid):
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    one_line(proc.returncode, err, "interrupted", exit_code=130)
    assert not (run / "model").exists()


def _has_stepped(pid: int) -> bool:
    # user CPU time past the imports: cheap and needs no output from the child
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK") > 6.0


# == 4. file-system errors on outputs, found before any work =====================================================
def test_output_under_a_file(tmp_path, tiny_dir, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = cli(
        ["compress", tiny_dir, "--method", "magnitude", "--out", tmp_path / "file" / "o"], capsys
    )
    one_line(code, err, "is a file")
    code, _, err = cli(["eval", tiny_dir, "--suite", "ppl", "--out", tmp_path / "file" / "r.json"], capsys)
    one_line(code, err, "is a file")


def test_output_in_a_read_only_directory(tmp_path, tiny_dir, capsys):
    with read_only_dir(tmp_path / "locked") as locked:
        code, _, err = cli(["compress", tiny_dir, "--method", "magnitude", "--out", locked / "o"], capsys)
        one_line(code, err, "not writable")
        code, _, err = cli(["eval", tiny_dir, "--suite", "ppl", "--out", locked / "r.json"], capsys)
        one_line(code, err, "not writable")
    assert listing(tmp_path / "locked") == []


def test_empty_out_and_the_current_directory(tmp_path, tiny_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    for out in ("", ".", ".."):
        code, _, err = cli(
            ["compress", tiny_dir, "--method", "magnitude", "--out", out, "--overwrite"], capsys
        )
        one_line(code, err, "current directory")
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_file_output_that_is_an_existing_directory(tmp_path, tiny_dir, capsys):
    code, _, err = cli(["eval", tiny_dir, "--suite", "ppl", "--out", tmp_path], capsys)
    one_line(code, err, "directory")


# == 5. unbounded work before validation =========================================================================
def test_huge_nsamples_is_refused_before_sampling(tmp_path, tiny_dir, capsys):
    code, _, err = cli(
        ["compress", tiny_dir, "--method", "wanda", "--nsamples", 10**9, "--out", tmp_path / "o"], capsys
    )
    one_line(code, err, "nsamples=1000000000")
    assert listing(tmp_path) == []


def test_config_claiming_a_million_layers_fails_fast(tmp_path, tiny_dir, capsys):
    d = copy_model(tiny_dir, tmp_path / "m", num_hidden_layers=10**6)
    t0 = time.perf_counter()
    code, _, err = cli(["eval", d, "--suite", "ppl"], capsys)
    one_line(code, err, "num_hidden_layers=1000000", "2 blocks")
    assert time.perf_counter() - t0 < 30


def test_config_claiming_a_larger_model_than_the_weights_allocates_nothing(tmp_path, tiny_dir, capsys):
    d = copy_model(tiny_dir, tmp_path / "m", hidden_size=6144, intermediate_size=16384)
    code, _, err = cli(["eval", d, "--suite", "ppl"], capsys)
    one_line(code, err, "6144", "does not match the weights")


def test_a_task_line_too_long_to_read(tmp_path, tiny_dir, capsys):
    from slimkit.core.io import MAX_LINE_CHARS

    data = tmp_path / "factoid.jsonl"
    data.write_text(json.dumps({"id": "a", "question": "x" * MAX_LINE_CHARS, "answers": ["y"]}) + "\n")
    code, _, err = cli(["eval", tiny_dir, "--suite", "factoid", "--data", data], capsys)
    one_line(code, err, f"{data}:1", "characters")


def test_billion_laughs_yaml(tmp_path, capsys):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    cfg = tmp_path / "laughs.yaml"
    cfg.write_text("\n".join(levels) + "\nmodel: *i\n")
    t0 = time.perf_counter()
    code, _, err = cli(["train", cfg], capsys)
    one_line(code, err, "aliases", str(cfg))
    assert time.perf_counter() - t0 < 10


def test_text_source_that_links_to_an_endless_device(tmp_path, tiny_dir, capsys):
    link = tmp_path / "wiki.txt"
    link.symlink_to("/dev/zero")
    code, _, err = cli(["eval", tiny_dir, "--suite", "ppl", "--data", link], capsys)
    one_line(code, err, "not a regular file", str(link))


def test_world_of_a_billion_people(tmp_path, capsys):
    code, _, err = cli(["world", "build", "--out", tmp_path / "w", "--people", 10**9], capsys)
    one_line(code, err, "n_people=1000000000")
    assert listing(tmp_path) == []


# == 6. other tracebacks ========================================================================================
def test_device_meta(tmp_path, tiny_dir, capsys):
    code, _, err = cli(
        ["compress", tiny_dir, "--method", "magnitude", "--device", "meta", "--out", tmp_path / "o"], capsys
    )
    one_line(code, err, "meta")
    code, _, err = cli(["eval", tiny_dir, "--suite", "ppl", "--device", "meta"], capsys)
    one_line(code, err, "meta")


def test_negative_num_hidden_layers(tmp_path, tiny_dir, capsys):
    d = copy_model(tiny_dir, tmp_path / "m", num_hidden_layers=-3)
    code, _, err = cli(["eval", d, "--suite", "ppl"], capsys)
    one_line(code, err, "num_hidden_layers")


@pytest.mark.parametrize(
    ("line", "needle"),
    [("[" * 100_000 + "]" * 100_000, "nested too deeply"), ('{"id": ' + "7" * 5000 + "}", "4300")],
    ids=["deeply-nested", "5000-digit-integer"],
)
def test_json_a_parser_cannot_take(tmp_path, tiny_dir, capsys, line, needle):
    data = tmp_path / "factoid.jsonl"
    data.write_text(line + "\n")
    code, _, err = cli(["eval", tiny_dir, "--suite", "factoid", "--data", data], capsys)
    one_line(code, err, needle, f"{data}:1")
    config = copy_model(tiny_dir, tmp_path / "m") / "config.json"
    config.write_text(line)
    code, _, err = cli(["eval", config.parent, "--suite", "ppl"], capsys)
    one_line(code, err, "config.json", needle)


# == 7. partial or silent results ===============================================================================
def test_rejected_train_run_writes_nothing(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"sentence {i} about a thing." for i in range(50)))
    run = tmp_path / "run"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "model: {init: {family: llama, hidden_size: 30, num_attention_heads: 4, num_hidden_layers: 1}}\n"
        f"tokenizer: {{train: {{vocab_size: 300}}}}\ndata: {corpus}\nout: {run}\ntrain: {{steps: 2}}\n"
    )
    code, _, err = cli(["train", cfg], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not run.exists()  # no tokenizer/ left behind


def test_compress_seqlen_beyond_the_models_positions(tmp_path, tiny_dir, capsys):
    positions = json.loads((tiny_dir / "config.json").read_text())["max_position_embeddings"]
    code, _, err = cli(
        ["compress", tiny_dir, "--method", "wanda", "--seqlen", positions * 4, "--out", tmp_path / "o"],
        capsys,
    )
    one_line(code, err, f"seqlen={positions * 4}", str(positions))
    assert listing(tmp_path) == []


def test_config_with_fewer_layers_than_the_weights(tmp_path, tiny_dir, capsys):
    d = copy_model(tiny_dir, tmp_path / "m", num_hidden_layers=1)
    code, _, err = cli(["eval", d, "--suite", "ppl"], capsys)
    one_line(code, err, "num_hidden_layers=1", "2 blocks")


def test_nan_weights_are_named_and_results_json_stays_valid(tmp_path, tiny_dir, capsys):
    from safetensors.torch import load_file, save_file

    from slimkit.core.io import write_json

    d = copy_model(tiny_dir, tmp_path / "m")
    state = load_file(d / "model.safetensors")
    key = next(k for k in state if k.endswith("mlp.down_proj.weight"))
    state[key][0, 0] = float("nan")
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})
    code, _, err = cli(["eval", d, "--suite", "ppl", "--out", tmp_path / "r.json"], capsys)
    one_line(code, err, key, "NaN")
    assert not (tmp_path / "r.json").exists()
    write_json(tmp_path / "nan.json", {"ppl": float("nan"), "x": [float("inf"), 1.0]})
    text = (tmp_path / "nan.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"ppl": None, "x": [None, 1.0]}


# == 8. Python API ==============================================================================================
def test_calibration_ids_outside_the_vocabulary(tiny_dir):
    from slimkit import compress_, load_model
    from slimkit.compress import WandaConfig

    model, _ = load_model(tiny_dir)
    vocab = model.get_input_embeddings().num_embeddings
    with pytest.raises(DataError, match=f"token id {vocab + 5}"):
        compress_(model, WandaConfig(sparsity=0.5), calib=torch.full((2, 8), vocab + 5))
    with pytest.raises(DataError, match="token id -1"):
        compress_(model, WandaConfig(sparsity=0.5), calib=torch.full((2, 8), -1))


def test_save_model_under_a_file(tmp_path, tiny_dir):
    from slimkit import load_model, save_model

    model, tok = load_model(tiny_dir)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SlimkitError, match="is a file"):
        save_model(model, tok, tmp_path / "file" / "out")


@pytest.mark.parametrize("field", ["targets", "ignore"])
def test_invalid_regex_target_fails_when_the_config_is_built(field):
    from slimkit.compress import WandaConfig, WeLoreConfig

    for cls in (WandaConfig, WeLoreConfig):
        with pytest.raises(ConfigError, match=r"invalid regex.*re:mlp\.\(up"):
            cls(**{field: ("re:mlp.(up",)})


# == 9. hardening ===============================================================================================
@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/model.safetensors"])
def test_index_shards_outside_the_model_directory(tmp_path, tiny_dir, capsys, shard):
    d = copy_model(tiny_dir, tmp_path / "m")
    (d / "model.safetensors").rename(tmp_path / "outside.safetensors")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"lm_head.weight": shard}}))
    with pytest.raises(ModelLoadError, match="not a file name inside"):
        from slimkit import load_model

        load_model(d)
    code, _, err = cli(["eval", d, "--suite", "ppl"], capsys)
    one_line(code, err, shard)


def test_shard_that_is_a_link_leading_outside(tmp_path, tiny_dir, capsys):
    d = copy_model(tiny_dir, tmp_path / "m")
    (d / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    (d / "model.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "model.safetensors"}})
    )
    code, _, err = cli(["eval", d, "--suite", "ppl"], capsys)
    one_line(code, err, "leads outside")


def test_model_name_in_results_is_escaped_in_the_report(tmp_path, capsys):
    from slimkit.evaluate import make_results

    evil = "m\n\n![x](http://attacker.example/t.png) <script>alert(1)</script> | a | b |"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(make_results(evil, {"ppl": {"perplexity": 3.0, "n": 1}})))
    code, _, err = cli(["report", path, "--out", tmp_path / "rep"], capsys)
    assert code == 0, err
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "![x]" not in text and "<script>" not in text and "\\<script\\>" in text
    assert "\n\n![" not in text
