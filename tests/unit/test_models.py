"""slimkit.models: adapters on every family, save/load round trips, refusal of bad directories,
slimkit.json, and the restorer / storage-reader contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from slimkit.core.errors import ConfigError, ModelLoadError, SlimkitError, UnsupportedArchitectureError
from slimkit.models import (
    get_adapter,
    is_linear,
    linear_weight,
    load_model,
    model_hash,
    read_slimkit_json,
    register_restorer,
    register_storage_reader,
    save_model,
    set_linear_weight,
    tiny_config,
    tiny_model,
)
from slimkit.models.loading import resolve_dtype

FAMILIES = ("llama", "mistral", "qwen2", "opt", "gpt2")

# role -> [out, in] of the tiny configs (hidden 64, MLP 128, 4 heads of 16, 2 kv heads)
SHAPES = {
    "llama": {
        "q": (64, 64),
        "k": (32, 64),
        "v": (32, 64),
        "o": (64, 64),
        "gate": (128, 64),
        "up": (128, 64),
        "down": (64, 128),
    },
    "opt": {"q": (64, 64), "k": (64, 64), "v": (64, 64), "o": (64, 64), "fc1": (128, 64), "fc2": (64, 128)},
    "gpt2": {"qkv": (192, 64), "o": (64, 64), "fc1": (128, 64), "fc2": (64, 128)},
}
SHAPES["mistral"] = SHAPES["qwen2"] = SHAPES["llama"]


def _ids(tok, text: str = "The river runs past the old mill.") -> torch.Tensor:
    return torch.tensor([tok(text).input_ids])


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def _one_line_error(exc_info: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# -- adapters --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_finds_blocks_and_every_role(family):
    model = tiny_model(family)
    adapter = get_adapter(model)
    blocks = adapter.blocks(model)
    assert len(blocks) == model.config.num_hidden_layers == 2
    names = dict(model.named_modules())
    for i, block in enumerate(blocks):
        assert names[adapter.block_prefix(i)] is block
        linears = adapter.block_linears(block)
        assert list(linears) == list(SHAPES[family])
        assert set(adapter.attention_roles) | set(adapter.mlp_roles) == set(linears)
        for role, module in linears.items():
            assert is_linear(module)
            assert tuple(linear_weight(module).shape) == SHAPES[family][role], (family, role)
    assert all(name in names for name in adapter.linear_names(model))
    assert adapter.lm_head_module(model) is model.lm_head


@pytest.mark.parametrize("family", FAMILIES)
def test_linear_weight_is_out_in_and_set_round_trips(family):
    model = tiny_model(family)
    adapter = get_adapter(model)
    gen = torch.Generator().manual_seed(0)
    for module in adapter.block_linears(adapter.blocks(model)[0]).values():
        x_in = torch.randn(3, linear_weight(module).shape[1], generator=gen)
        bias = module.bias if module.bias is not None else 0.0
        with torch.no_grad():
            # y = x W^T + b holds for nn.Linear and for GPT-2's transposed Conv1D alike
            torch.testing.assert_close(module(x_in), x_in @ linear_weight(module).T + bias)
            new = torch.randn(linear_weight(module).shape, generator=gen)
            set_linear_weight(module, new)
            assert torch.equal(linear_weight(module), new)
            torch.testing.assert_close(module(x_in), x_in @ new.T + bias)


def test_conv1d_weight_is_a_view_not_a_copy():
    model = tiny_model("gpt2")
    conv = model.transformer.h[0].attn.c_attn
    assert type(conv).__name__ == "Conv1D"
    assert linear_weight(conv).data_ptr() == conv.weight.data_ptr()
    assert tuple(conv.weight.shape) == (64, 192)


def test_tiny_config_rejects_unknown_family():
    with pytest.raises(ConfigError, match="family='bert'.*llama"):
        tiny_config("bert")


def test_tiny_model_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = tiny_model("llama", seed=1), tiny_model("llama", seed=1), tiny_model("llama", seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    assert not a.training


def test_tiny_tokenizer_copies_are_independent(tiny_tok):
    from slimkit.models import tiny_tokenizer

    tiny_tok.padding_side = "right"
    fresh = tiny_tokenizer()
    assert fresh.padding_side == "left"
    assert (fresh.pad_token_id, fresh.bos_token_id, fresh.eos_token_id) == (0, 1, 2)
    assert len(fresh) <= 512


# -- save / load round trips --------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip_gives_identical_logits(family, tmp_path, tiny_tok):
    model = tiny_model(family)
    out = save_model(model, tiny_tok, tmp_path / family)
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "slimkit.json", "tokenizer.json"} <= files
    assert not any(name.endswith((".bin", ".pt")) for name in files)
    ids = _ids(tiny_tok)

    loaded, tok = load_model(out)
    assert not loaded.training
    assert tok(["The river"]).input_ids == tiny_tok(["The river"]).input_ids
    assert torch.equal(_logits(loaded, ids), _logits(model, ids))

    # a slimkit directory is a plain Hugging Face directory
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    plain_tok = AutoTokenizer.from_pretrained(out)
    assert plain_tok("The river").input_ids == tiny_tok("The river").input_ids
    assert plain_tok.pad_token_id == 0
    assert torch.equal(_logits(plain, ids), _logits(model, ids))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_tied_embeddings_round_trip(family, tmp_path, tiny_tok):
    model = tiny_model(family, tie_word_embeddings=True)
    assert model.lm_head.weight is model.get_input_embeddings().weight
    out = save_model(model, tiny_tok, tmp_path / "tied")
    assert "lm_head.weight" not in load_file(out / "model.safetensors")  # saved once
    loaded, _ = load_model(out)
    assert loaded.lm_head.weight is loaded.get_input_embeddings().weight
    ids = _ids(tiny_tok)
    assert torch.equal(_logits(loaded, ids), _logits(model, ids))


def test_sharded_safetensors_load(tmp_path, tiny_tok, tiny_llama):
    out = tmp_path / "sharded"
    tiny_llama.save_pretrained(out, max_shard_size="60KB")
    tiny_tok.save_pretrained(out)
    assert (out / "model.safetensors.index.json").is_file()
    assert len(list(out.glob("model-*.safetensors"))) > 1
    loaded, _ = load_model(out)
    ids = _ids(tiny_tok)
    assert torch.equal(_logits(loaded, ids), _logits(tiny_llama, ids))

    shard = sorted(out.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(ModelLoadError) as err:
        load_model(out)
    _one_line_error(err, shard.name, "missing")


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("bfloat16", torch.bfloat16),
        ("float16", torch.float16),
        (torch.bfloat16, torch.bfloat16),
        ("auto", torch.float32),
    ],
)
def test_dtype_option(dtype, expected, tiny_model_dir):
    model, _ = load_model(tiny_model_dir, dtype=dtype, with_tokenizer=False)
    assert model.dtype == expected
    assert all(p.dtype == expected for p in model.parameters())


def test_default_dtype_keeps_the_stored_one(tmp_path, tiny_tok):
    out = save_model(tiny_model("llama").to(torch.bfloat16), tiny_tok, tmp_path / "bf16")
    assert load_model(out, with_tokenizer=False)[0].dtype == torch.bfloat16
    assert load_model(out, dtype="float32", with_tokenizer=False)[0].dtype == torch.float32


@pytest.mark.parametrize("bad", ["float8", "int8", "", torch.int8, 3])
def test_bad_dtype_is_a_config_error(bad, tiny_model_dir):
    with pytest.raises(ConfigError) as err:
        load_model(tiny_model_dir, dtype=bad)
    _one_line_error(err, "dtype")
    assert resolve_dtype(None) == "auto"


@pytest.mark.parametrize("bad", ["gpu", "cuda:99" if torch.cuda.is_available() else "cuda"])
def test_bad_device_is_a_config_error(bad, tiny_model_dir):
    with pytest.raises(ConfigError) as err:
        load_model(tiny_model_dir, device=bad)
    _one_line_error(err, repr(bad))


def test_with_tokenizer_false_returns_none(tiny_model_dir):
    model, tok = load_model(tiny_model_dir, with_tokenizer=False)
    assert tok is None and model is not None


# -- slimkit.json and hashes ----------------------------------------------------------------------------------------
def test_slimkit_json_records_metadata_and_parent(tmp_path, tiny_tok, tiny_model_dir):
    from slimkit.core.config import Config

    model, _ = load_model(tiny_model_dir, with_tokenizer=False)
    out = save_model(
        model,
        tiny_tok,
        tmp_path / "child",
        metadata={
            "method": "none",
            "config": _NoteConfig(note="x"),
            "report": {"sparsity": torch.tensor(0.25)},
        },
        parent=tiny_model_dir,
    )
    meta = read_slimkit_json(out)
    assert meta["schema"] == 1 and meta["format"] == "hf"
    assert meta["slimkit_version"] and meta["created"]
    assert meta["parent_hash"] == model_hash(tiny_model_dir)
    assert meta["parent"] == str(tiny_model_dir)
    assert meta["model_hash"] == model_hash(out)
    assert meta["method"] == "none" and meta["report"] == {"sparsity": 0.25}
    assert Config.from_dict(meta["config"]) == _NoteConfig(note="x")
    # identical weights hash alike, the parent may be given as its hash
    assert model_hash(out) == model_hash(tiny_model_dir)
    again = save_model(model, None, tmp_path / "again", parent=meta["parent_hash"])
    assert read_slimkit_json(again)["parent_hash"] == meta["parent_hash"]


def test_model_hash_changes_with_weights(tmp_path, tiny_tok, tiny_model_dir):
    model, _ = load_model(tiny_model_dir, with_tokenizer=False)
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0
    assert model_hash(save_model(model, tiny_tok, tmp_path / "changed")) != model_hash(tiny_model_dir)
    with pytest.raises(ModelLoadError, match="no \\*.safetensors"):
        model_hash(tmp_path)


def test_read_slimkit_json_absent_and_newer_schema(tmp_path):
    assert read_slimkit_json(tmp_path) == {}
    (tmp_path / "slimkit.json").write_text(json.dumps({"schema": 99}))
    with pytest.raises(ModelLoadError) as err:
        read_slimkit_json(tmp_path)
    _one_line_error(err, "schema 99")


@pytest.mark.parametrize(
    ("metadata", "needle"),
    [({"model_hash": "x"}, "model_hash"), ({"restore": "lowrank"}, "restore"), ({"blob": object()}, "JSON")],
)
def test_bad_metadata_is_a_config_error_and_writes_nothing(metadata, needle, tmp_path, tiny_tok, tiny_llama):
    with pytest.raises(ConfigError) as err:
        save_model(tiny_llama, tiny_tok, tmp_path / "out", metadata=metadata)
    _one_line_error(err, needle)
    assert list(tmp_path.iterdir()) == []


def test_bad_parent_is_refused(tmp_path, tiny_llama):
    with pytest.raises(ModelLoadError) as err:
        save_model(tiny_llama, None, tmp_path / "out", parent=tmp_path / "nope")
    _one_line_error(err, "parent")


# -- atomic saving ------------------------------------------------------------------------------------------------
class _BrokenTokenizer:
    def save_pretrained(self, path):
        (Path(path) / "tokenizer.json").write_text("{")  # something partial, then the failure
        raise OSError("disk full")


def test_failed_save_leaves_no_output_dir(tmp_path, tiny_llama):
    with pytest.raises(OSError, match="disk full"):
        save_model(tiny_llama, _BrokenTokenizer(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_previous_dir_and_success_replaces_it(tmp_path, tiny_llama, tiny_tok):
    out = tmp_path / "out"
    out.mkdir()
    (out / "marker.txt").write_text("old")
    with pytest.raises(OSError):
        save_model(tiny_llama, _BrokenTokenizer(), out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "marker.txt").read_text() == "old"
    save_model(tiny_llama, tiny_tok, out, overwrite=True)
    assert not (out / "marker.txt").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    # a directory slimkit wrote is replaced without being asked
    save_model(tiny_llama, tiny_tok, out)
    assert (out / "model.safetensors").is_file()


def test_save_refuses_a_user_directory_and_the_parent(tmp_path, tiny_llama, tiny_tok):
    users = tmp_path / "users"
    users.mkdir()
    (users / "thesis.tex").write_text("precious")
    with pytest.raises(SlimkitError, match="did not write"):
        save_model(tiny_llama, tiny_tok, users)
    assert (users / "thesis.tex").read_text() == "precious"
    parent = save_model(tiny_llama, tiny_tok, tmp_path / "models" / "base")
    for out in (parent, parent.parent):  # the input itself, and the folder holding it
        with pytest.raises(SlimkitError, match="input"):
            save_model(tiny_llama, tiny_tok, out, parent=parent, overwrite=True)
    assert (parent / "model.safetensors").is_file()


# -- bad directories ----------------------------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_path(tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_model(tmp_path / "nowhere")
    _one_line_error(err, "does not exist", "nowhere")


def test_path_is_a_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelLoadError) as err:
        load_model(tmp_path / "model.safetensors")
    _one_line_error(err, "not a directory")


def test_no_config(tmp_path, tiny_model_dir):
    d = _copy(tiny_model_dir, tmp_path / "m")
    (d / "config.json").unlink()
    with pytest.raises(ModelLoadError) as err:
        load_model(d)
    _one_line_error(err, "no config.json")


def test_malformed_config(tmp_path, tiny_model_dir):
    d = _copy(tiny_model_dir, tmp_path / "m")
    (d / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError) as err:
        load_model(d)
    _one_line_error(err, "config.json", "not valid JSON")


def test_no_weights(tmp_path, tiny_model_dir):
    d = _copy(tiny_model_dir, tmp_path / "m")
    (d / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as err:
        load_model(d)
    _one_line_error(err, "no weights", "model.safetensors")


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "last.ckpt"])
def test_pickle_only_weights_are_refused(name, tmp_path, tiny_model_dir):
    d = _copy(tiny_model_dir, tmp_path / "m")
    (d / "model.safetensors").unlink()
    (d / name).write_bytes(b"\x80\x04 not really a pickle, never opened")
    with pytest.raises(ModelLoadError) as err:
        load_model(d)
    _one_line_error(err, name, "pickle", "arbitrary code", "save_pretrained", "safetensors")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_safetensors(damage, tmp_path, tiny_model_dir):
    d = _copy(tiny_model_dir, tmp_path / "m")
    weights = d / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x00garbage" * 64, "empty": b""}[damage]
    )
    with pytest.raises(ModelLoadError) as err:
        load_model(d)
    _one_line_error(err, "model.safetensors", "truncated or corrupt")


def test_weights_missing_a_tensor(tmp_path, tiny_model_dir):
    d = _copy(tiny_model_dir, tmp_path / "m")
    tensors = load_file(d / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError) as err:
        load_model(d)
    _one_line_error(err, "model.layers.1.mlp.up_proj.weight")


def test_config_that_does_not_match_the_weights(tmp_path, tiny_model_dir):
    d = _copy(tiny_model_dir, tmp_path / "m")
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "intermediate_size": 96}))
    with pytest.raises(ModelLoadError) as err:
        load_model(d)
    # found from the safetensors header and a meta-device skeleton, before any weights are allocated
    _one_line_error(err, "model.layers.0.mlp.gate_proj.weight", "(128, 64)", "(96, 64)", "config.json")
    (d / "config.json").write_text(json.dumps({**config, "hidden_act": "no-such-activation"}))
    with pytest.raises(ModelLoadError) as err:
        load_model(d)
    _one_line_error(err, "transformers could not", "no-such-activation")


def test_unsupported_architecture_lists_the_supported(tmp_path, tiny_model_dir):
    d = _copy(tiny_model_dir, tmp_path / "m")
    config = json.loads((d / "config.json").read_text())
    config["model_type"] = "bert"
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitectureError) as err:
        load_model(d)
    _one_line_error(err, "'bert'", "llama", "gpt2", "opt")


def test_missing_tokenizer_files(tmp_path, tiny_model_dir):
    d = _copy(tiny_model_dir, tmp_path / "m")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (d / name).unlink()
    with pytest.raises(ModelLoadError) as err:
        load_model(d)
    _one_line_error(err, "no tokenizer files", "with_tokenizer=False")
    model, tok = load_model(d, with_tokenizer=False)
    assert tok is None


def test_all_errors_are_slimkit_errors():
    assert issubclass(UnsupportedArchitectureError, ModelLoadError)
    assert issubclass(ModelLoadError, SlimkitError) and issubclass(ConfigError, SlimkitError)


# -- restorers and storage readers ------------------------------------------------------------------------------
class _Factorized(nn.Module):
    """A stand-in for a low-rank linear: W ~= B @ A, A: [rank, in], B: [out, rank]."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        self.A = nn.Linear(in_features, rank, bias=False)
        self.B = nn.Linear(rank, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.B(self.A(x))


@register_restorer("test-factorized")
def _restore_factorized(model: nn.Module, model_dir: Path, meta: dict) -> None:
    rank = meta["test-factorized"]["rank"]
    for block in get_adapter(model).blocks(model):
        block.mlp.up_proj = _Factorized(block.mlp.up_proj.in_features, block.mlp.up_proj.out_features, rank)


@register_storage_reader("test-bitmask")
def _read_bitmask(model_dir: Path) -> dict[str, torch.Tensor]:
    stored = load_file(model_dir / "model.safetensors")
    state = {}
    for key in stored:
        if key.endswith(".mask"):
            name = key.removesuffix(".mask")
            dense = torch.zeros(stored[key].shape, dtype=stored[f"{name}.values"].dtype)
            dense[stored[key]] = stored[f"{name}.values"]
            state[name] = dense
        elif not key.endswith(".values"):
            state[key] = stored[key]
    return state


def test_restorer_rebuilds_modules_before_weights_load(tmp_path, tiny_tok, tiny_llama):
    rank = 8
    for block in get_adapter(tiny_llama).blocks(tiny_llama):
        dense = block.mlp.up_proj.weight.detach()
        factor = _Factorized(64, 128, rank)
        u, s, vh = torch.linalg.svd(dense, full_matrices=False)
        with torch.no_grad():
            factor.A.weight.copy_(vh[:rank] * s[:rank, None])
            factor.B.weight.copy_(u[:, :rank])
        block.mlp.up_proj = factor
    meta = {"method": "test", "restore": ["test-factorized"], "test-factorized": {"rank": rank}}
    out = save_model(tiny_llama, tiny_tok, tmp_path / "lowrank", metadata=meta)
    assert read_slimkit_json(out)["format"] == "slimkit"

    loaded, _ = load_model(out)
    assert isinstance(loaded.model.layers[0].mlp.up_proj, _Factorized)
    ids = _ids(tiny_tok)
    assert torch.equal(_logits(loaded, ids), _logits(tiny_llama, ids))

    # without its slimkit.json the directory no longer loads silently with random weights
    (out / "slimkit.json").unlink()
    with pytest.raises(ModelLoadError) as err:
        load_model(out)
    _one_line_error(err, "lack", "up_proj")


def test_storage_reader_builds_the_state_dict(tmp_path, tiny_tok, tiny_llama):
    with torch.no_grad():
        for block in tiny_llama.model.layers:
            weight = block.mlp.down_proj.weight
            weight[weight.abs() <= weight.abs().median()] = 0.0  # 50% unstructured sparsity
    compact = {}
    for key, tensor in tiny_llama.state_dict().items():
        if key.endswith("down_proj.weight"):
            compact[f"{key}.mask"] = tensor != 0
            compact[f"{key}.values"] = tensor[tensor != 0]
        else:
            compact[key] = tensor
    out = save_model(
        tiny_llama, tiny_tok, tmp_path / "bitmask", state_dict=compact, metadata={"storage": "test-bitmask"}
    )
    assert "model.layers.0.mlp.down_proj.weight.mask" in load_file(out / "model.safetensors")

    loaded, _ = load_model(out)
    ids = _ids(tiny_tok)
    assert torch.equal(_logits(loaded, ids), _logits(tiny_llama, ids))
    assert (loaded.model.layers[0].mlp.down_proj.weight == 0).float().mean() >= 0.5


def test_unknown_restorer_and_storage_are_refused(tmp_path, tiny_model_dir):
    d = _copy(tiny_model_dir, tmp_path / "m")
    meta = read_slimkit_json(d)
    for field, value, needle in [
        ("restore", ["no-such-restorer"], "restorer"),
        ("storage", "zip9", "storage reader"),
    ]:
        (d / "slimkit.json").write_text(json.dumps({**meta, field: value}))
        with pytest.raises(ModelLoadError) as err:
            load_model(d)
        _one_line_error(err, repr(value[0] if isinstance(value, list) else value), needle, "known")


def test_restored_load_rejects_leftover_tensors(tmp_path, tiny_tok, tiny_llama):
    # a restore list that does not rebuild what the weights need: the saved factors have no place
    for block in tiny_llama.model.layers:
        block.mlp.up_proj = _Factorized(64, 128, 4)
    out = save_model(tiny_llama, tiny_tok, tmp_path / "m", metadata={"restore": ["test-noop"]})
    with pytest.raises(ModelLoadError) as err:
        load_model(out)
    _one_line_error(err, "no place", "up_proj")


@register_restorer("test-noop")
def _restore_nothing(model: nn.Module, model_dir: Path, meta: dict) -> None:
    pass


# a config type for the metadata test (Config subclasses register themselves by class name)
def _make_note_config():
    from dataclasses import dataclass

    from slimkit.core.config import Config

    @dataclass(frozen=True)
    class _NoteConfig(Config):
        note: str = ""

    return _NoteConfig


_NoteConfig = _make_note_config()
