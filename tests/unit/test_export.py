"""Saving pruned models: dense (plain transformers) and bitmask (smaller, bit-identical round trip)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from slimkit.compress import WandaConfig, compress_
from slimkit.compress.export import (
    decode_bitmask,
    encode_bitmask,
    pack_bitmask,
    read_bitmask_state_dict,
    save_compressed,
    unpack_bitmask,
)
from slimkit.core.errors import ConfigError
from slimkit.models import load_model, tiny_model


def _pruned(family: str = "llama", dtype: torch.dtype = torch.float32):
    model = tiny_model(family, seed=0).to(dtype)
    calib = torch.randint(3, 512, (4, 16), generator=torch.Generator().manual_seed(0))
    return model, compress_(model, WandaConfig(sparsity=0.5), calib, progress=False)


def test_pack_bitmask_little_endian():
    mask = torch.tensor([1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1], dtype=torch.bool)
    packed = pack_bitmask(mask)
    assert packed.dtype == torch.uint8 and packed.tolist() == [1, 6]  # bit j of byte b = element 8b+j
    assert torch.equal(unpack_bitmask(packed, 11), mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_encode_decode_bit_identical(dtype):
    weight = torch.randn(7, 13).to(dtype)
    weight[weight.abs() < 0.5] = 0
    weight[0, 0] = -0.0  # kept: its bit pattern is not zero
    values, packed, shape = encode_bitmask(weight)
    assert values.dtype == dtype and shape.tolist() == [7, 13]
    back = decode_bitmask(values, packed, shape)
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(back.view(bits), weight.view(bits))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_bitmask_round_trip_is_bit_identical_and_smaller(tmp_path, tiny_tok, family):
    model, report = _pruned(family)
    dense_dir = save_compressed(model, tiny_tok, tmp_path / "dense", report)
    packed_dir = save_compressed(
        model, tiny_tok, tmp_path / "bitmask", report, storage="bitmask", parent=dense_dir
    )

    dense_size = (dense_dir / "model.safetensors").stat().st_size
    packed_size = (packed_dir / "model.safetensors").stat().st_size
    target_bytes = sum(m.shape[0] * m.shape[1] * 4 for m in report.matrices)
    # 50% of fp32 targets: values halve, the mask adds 1/32; everything else is unchanged
    assert packed_size < dense_size - 0.4 * target_bytes

    meta = json.loads((packed_dir / "slimkit.json").read_text())
    assert meta["storage"] == "bitmask" and meta["method"] == "wanda" and meta["parent"] == str(dense_dir)
    assert meta["report"]["overall_sparsity"] == pytest.approx(0.5, abs=0.01)
    keys = load_file(str(packed_dir / "model.safetensors"))
    name = report.matrices[0].name
    assert keys[f"{name}.weight.bitmask_packed"].dtype == torch.uint8
    assert f"{name}.weight" not in keys

    loaded, tok = load_model(packed_dir)
    original = model.state_dict()
    assert set(loaded.state_dict()) == set(original)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert set(read_bitmask_state_dict(packed_dir)) <= set(original)


def test_dense_export_loads_in_plain_transformers(tmp_path, tiny_tok):
    model, report = _pruned("opt")
    out = save_compressed(model, tiny_tok, tmp_path / "dense", report)
    plain = AutoModelForCausalLM.from_pretrained(out)
    for key, value in plain.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    assert json.loads((out / "slimkit.json").read_text())["format"] == "hf"


def test_fp16_bitmask_round_trip(tmp_path, tiny_tok):
    model, report = _pruned("llama", torch.float16)
    out = save_compressed(model, tiny_tok, tmp_path / "half", report, storage="bitmask")
    loaded, _ = load_model(out)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_unknown_storage_writes_nothing(tmp_path, tiny_tok):
    model, report = _pruned()
    with pytest.raises(ConfigError, match="storage"):
        save_compressed(model, tiny_tok, tmp_path / "x", report, storage="zip")
    assert not (tmp_path / "x").exists()
