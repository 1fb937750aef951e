"""GGUF import: round trip of a tiny llama written with gguf.GGUFWriter, the cache, and bad files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, run

# the gguf package is in the dev extra: without it these tests fail (slimkit says what to install)
from gguf_files import CHAT_TEMPLATE, quantize_like_q8_0, tiny_source, write_llama_gguf

from slimkit.core.errors import ConfigError, ModelLoadError, SlimkitError, UnsupportedArchitectureError
from slimkit.models import gguf as G
from slimkit.models import load_model, read_slimkit_json, tiny_model, tiny_tokenizer

TEXT = "The river runs past the old mill and under the stone bridge before it reaches the sea."


# conversions go to a per-test cache, never the user's
pytestmark = pytest.mark.usefixtures("private_model_cache")


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def source(tok):
    return tiny_source(tok, seed=0)


@pytest.fixture(scope="module")
def f32_file(tmp_path_factory, source, tok) -> Path:
    return write_llama_gguf(source, tok, tmp_path_factory.mktemp("gguf") / "tiny.F32.gguf")


def _logits(model, tok, text: str = TEXT) -> torch.Tensor:
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(input_ids=ids).logits


# -- round trip ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tied", [False, True])
def test_f32_round_trip_reproduces_the_logits(tmp_path, tok, tied):
    model = tiny_model("llama", seed=1, vocab_size=len(tok), tie_word_embeddings=tied)
    gguf_file = write_llama_gguf(model, tok, tmp_path / "m.gguf")
    out = G.convert_gguf(gguf_file, tmp_path / "out")
    loaded, loaded_tok = load_model(out)
    assert loaded.config.tie_word_embeddings is tied
    assert loaded.config.num_key_value_heads == model.config.num_key_value_heads == 2
    # F32 tensors and the q/k row permutation undone exactly: the same function, bit for bit
    torch.testing.assert_close(_logits(loaded, loaded_tok), _logits(model, tok), rtol=0, atol=1e-6)
    assert loaded_tok(TEXT).input_ids == tok(TEXT).input_ids
    assert (loaded_tok.bos_token_id, loaded_tok.eos_token_id, loaded_tok.pad_token_id) == (1, 2, 0)


def test_chat_template_and_metadata_are_kept(tmp_path, f32_file):
    out = G.convert_gguf(f32_file, tmp_path / "out")
    _, tok = load_model(out)
    assert tok.chat_template == CHAT_TEMPLATE
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|bos|>user\nhi<|eos|>\n<|bos|>assistant\n"
    meta = read_slimkit_json(out)
    src = meta["source"]
    assert src["sha256"] == hashlib.sha256(f32_file.read_bytes()).hexdigest()
    assert (src["quantization"], src["file_type"], src["architecture"]) == ("F32", "ALL_F32", "llama")
    assert src["tensor_types"] == {"F32": 21} and src["size_bytes"] == f32_file.stat().st_size
    assert meta["method"] == "gguf-import" and meta["dtype"] == "float32" and meta["format"] == "hf"
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    assert tok.model_max_length == 256  # from the config's positions, not transformers' 1e30


def test_converted_directory_loads_in_plain_transformers(tmp_path, f32_file, source, tok):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = G.convert_gguf(f32_file, tmp_path / "out")
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    plain_tok = AutoTokenizer.from_pretrained(out)
    assert type(plain).__name__ == "LlamaForCausalLM"
    assert getattr(plain.config, "quantization_config", None) is None  # not marked GGUF-quantized
    torch.testing.assert_close(_logits(plain, plain_tok), _logits(source, tok), rtol=0, atol=1e-6)


def test_q8_0_file_dequantizes_to_its_blocks(tmp_path, source, tok):
    gguf_file = write_llama_gguf(source, tok, tmp_path / "m.Q8_0.gguf", quant="Q8_0")
    out = G.convert_gguf(gguf_file, tmp_path / "out")
    loaded, _ = load_model(out)
    expected = quantize_like_q8_0(source)
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=key)
    src = read_slimkit_json(out)["source"]
    assert src["quantization"] == "Q8_0" and src["tensor_types"] == {"F32": 5, "Q8_0": 16}
    # the dequantized model is close to, not equal to, the float one
    diff = (_logits(loaded, tok) - _logits(source, tok)).abs().max().item()
    assert 0 < diff < 0.05


def test_bf16_output(tmp_path, f32_file, source, tok):
    from safetensors import safe_open

    out = G.convert_gguf(f32_file, tmp_path / "out", dtype="bf16")
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118
    assert dtypes == {torch.bfloat16}
    assert read_slimkit_json(out)["dtype"] == "bfloat16"
    loaded, _ = load_model(out)
    assert loaded.dtype == torch.bfloat16
    torch.testing.assert_close(_logits(loaded, tok).float(), _logits(source, tok), rtol=0, atol=0.1)


# -- load_model on a .gguf path: converted once into the cache -------------------------------------------------
def test_load_model_on_a_gguf_path_converts_once_into_the_cache(tmp_path, f32_file, source, tok, monkeypatch):
    model, loaded_tok = load_model(f32_file)
    digest = hashlib.sha256(f32_file.read_bytes()).hexdigest()
    cache_dir = tmp_path / "cache" / f"gguf-{digest[:16]}-v{G.CONVERTER_VERSION}"
    assert (cache_dir / "model.safetensors").is_file()
    torch.testing.assert_close(_logits(model, loaded_tok), _logits(source, tok), rtol=0, atol=1e-6)

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(G, "convert_gguf", no_conversion)
    again, _ = load_model(str(f32_file), dtype="bfloat16")  # a str path too; dtype applies on load
    assert again.dtype == torch.bfloat16


def test_an_edited_file_is_never_served_stale(tmp_path, tok):
    path = tmp_path / "m.gguf"
    first = tiny_model("llama", seed=0, vocab_size=len(tok))
    write_llama_gguf(first, tok, path)
    a, _ = load_model(path)
    second = tiny_model("llama", seed=5, vocab_size=len(tok))
    write_llama_gguf(second, tok, path)  # same name, new bytes
    b, _ = load_model(path)
    torch.testing.assert_close(_logits(b, tok), _logits(second, tok), rtol=0, atol=1e-6)
    assert not torch.allclose(_logits(a, tok), _logits(b, tok))
    assert len(list((tmp_path / "cache").glob("gguf-*"))) == 2


# -- bad input -------------------------------------------------------------------------------------------------
def _one_line(err: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(err.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle.lower() in message.lower(), (needle, message)


def test_truncated_file(tmp_path, f32_file):
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(f32_file.read_bytes()[: f32_file.stat().st_size // 2])
    with pytest.raises(ModelLoadError) as err:
        G.convert_gguf(bad, tmp_path / "out")
    _one_line(err, "cut.gguf", "truncated")
    assert not (tmp_path / "out").exists()


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "notes.gguf"
    bad.write_text("just some text, no magic bytes")
    with pytest.raises(ModelLoadError) as err:
        G.convert_gguf(bad, tmp_path / "out")
    _one_line(err, "not a GGUF file", "notes.gguf")
    with pytest.raises(ModelLoadError):
        load_model(bad)  # the same check on the load path


def test_architecture_transformers_cannot_read(tmp_path, source, tok):
    assert not G.gguf_architecture_supported("rwkv6")
    bad = write_llama_gguf(source, tok, tmp_path / "rwkv.gguf", architecture="rwkv6")
    with pytest.raises(UnsupportedArchitectureError) as err:
        G.convert_gguf(bad, tmp_path / "out")
    _one_line(err, "rwkv6", "llama", "qwen2", "mistral")
    assert not (tmp_path / "out").exists()


def test_supported_architectures_come_from_transformers():
    names = G.supported_gguf_architectures()
    assert {"llama", "mistral", "qwen2", "gpt2", "phi3"} <= set(names)
    assert "general" not in names and "tokenizer" not in names
    assert G.gguf_architecture_supported("qwen2moe")  # llama.cpp's spelling of qwen2_moe


def test_file_without_tokenizer(tmp_path, source, tok):
    bad = write_llama_gguf(source, tok, tmp_path / "notok.gguf", with_tokenizer=False)
    with pytest.raises(ModelLoadError) as err:
        G.convert_gguf(bad, tmp_path / "out")
    _one_line(err, "no tokenizer")


def test_bad_dtype_and_missing_file(tmp_path, f32_file):
    with pytest.raises(ConfigError) as err:
        G.convert_gguf(f32_file, tmp_path / "out", dtype="int8")
    _one_line(err, "int8", "bfloat16")
    with pytest.raises(ModelLoadError) as err:
        G.convert_gguf(tmp_path / "absent.gguf", tmp_path / "out")
    _one_line(err, "does not exist")
    with pytest.raises(ModelLoadError) as err:
        load_model(tmp_path / "absent.gguf")
    _one_line(err, "does not exist", "absent.gguf")


def test_a_failure_inside_transformers_leaves_nothing(tmp_path, f32_file, monkeypatch):
    def broken(*args, **kwargs):
        raise ModelLoadError("boom")

    monkeypatch.setattr(G, "_rebuild_plain", broken)
    with pytest.raises(SlimkitError):
        G.convert_gguf(f32_file, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


# -- the CLI ---------------------------------------------------------------------------------------------------
def test_cli_import(tmp_path, f32_file, source, tok, capsys):
    code, out, err = run(["import", f32_file, "--out", tmp_path / "m"], capsys)
    assert code == 0, err
    assert hashlib.sha256(f32_file.read_bytes()).hexdigest() in out
    assert "F32" in out
    model, loaded_tok = load_model(tmp_path / "m")
    torch.testing.assert_close(_logits(model, loaded_tok), _logits(source, tok), rtol=0, atol=1e-6)
    code, _, err = run(["import", f32_file, "--out", tmp_path / "m16", "--dtype", "bf16"], capsys)
    assert code == 0, err
    assert read_slimkit_json(tmp_path / "m16")["dtype"] == "bfloat16"


def test_cli_import_help(capsys):
    code, out, _ = run(["import", "--help"], capsys)
    assert code == 0 and "Example" in out


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (lambda d, f, s, t: _truncated(d, f), ("truncated",)),
        (lambda d, f, s, t: _text_file(d), ("not a GGUF file",)),
        (lambda d, f, s, t: write_llama_gguf(s, t, d / "r.gguf", architecture="rwkv6"), ("rwkv6", "llama")),
        (lambda d, f, s, t: d / "absent.gguf", ("does not exist",)),
        (lambda d, f, s, t: d, ("directory",)),
    ],
    ids=["truncated", "not-gguf", "unsupported-arch", "missing", "directory"],
)
def test_cli_import_bad_input(tmp_path, f32_file, source, tok, capsys, make, needles):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    bad = make(src_dir, f32_file, source, tok)
    code, _, err = run(["import", bad, "--out", tmp_path / "out"], capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "out").exists()


def test_cli_import_bad_dtype(tmp_path, f32_file, capsys):
    code, _, err = run(["import", f32_file, "--out", tmp_path / "out", "--dtype", "int4"], capsys)
    assert_one_line_error(code, err, "int4")
    assert not (tmp_path / "out").exists()


def test_cli_eval_takes_a_gguf_file(tmp_path, f32_file, capsys):
    text = tmp_path / "t.txt"
    text.write_text((TEXT + "\n") * 20)
    code, _, err = run(
        ["eval", f32_file, "--suite", "ppl", "--data", text, "--seqlen", "16", "--out", tmp_path / "r.json"],
        capsys,
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert metrics["ppl"]["perplexity"] > 1


def _truncated(d: Path, f: Path) -> Path:
    bad = d / "cut.gguf"
    bad.write_bytes(f.read_bytes()[:1000])
    return bad


def _text_file(d: Path) -> Path:
    bad = d / "text.gguf"
    bad.write_text("not a model")
    return bad
