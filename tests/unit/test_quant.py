"""Weight-only quantization (RTN, GPTQ, AWQ) on tiny models: the math, QuantizedLinear, save/load,
the compressed-tensors export, the CLI and bad input."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from safetensors.torch import load_file
from tests.unit.cli_helpers import run
from torch import nn

from slimkit.compress import (
    COMPRESSORS,
    AWQConfig,
    GPTQConfig,
    RTNConfig,
    build_config,
    compress_,
    save_compressed,
)
from slimkit.compress.quant import awq_search, gptq_quantize, layer_output_error
from slimkit.compress.quant.export import pack_int32, quantization_config, save_compressed_tensors
from slimkit.core.errors import ConfigError, DataError, TargetError
from slimkit.models import load_model, tiny_model, tiny_tokenizer
from slimkit.models.adapters import linear_weight
from slimkit.nn.quant_primitives import dequantize, fake_quantize, max_rounding_error, quantize_groupwise
from slimkit.nn.quantized import QuantizedLinear


def _ids(n: int = 4, seqlen: int = 16) -> torch.Tensor:
    return torch.randint(3, 512, (n, seqlen), generator=torch.Generator().manual_seed(0))


def _quantized(model: nn.Module) -> dict[str, QuantizedLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantizedLinear)}


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def test_cli_names_map_to_configs():
    assert COMPRESSORS.config_for("rtn") is RTNConfig
    assert COMPRESSORS.config_for("gptq") is GPTQConfig
    assert COMPRESSORS.config_for("awq") is AWQConfig
    assert build_config("gptq", bits=3, group_size=32, act_order=True) == GPTQConfig(
        bits=3, group_size=32, act_order=True
    )


@pytest.mark.parametrize("bits", [1, 9, 0, True, 4.0])
def test_bits_outside_2_to_8_are_refused(bits):
    with pytest.raises(ConfigError, match="bits"):
        RTNConfig(bits=bits)


def test_bad_group_and_blocksize_are_refused():
    with pytest.raises(ConfigError, match="group_size"):
        RTNConfig(group_size=0)
    with pytest.raises(ConfigError, match="blocksize"):
        GPTQConfig(group_size=128, blocksize=96)
    GPTQConfig(group_size=32, blocksize=128)  # a multiple
    GPTQConfig(group_size=128, blocksize=32)  # a divisor


def test_group_size_not_dividing_a_width_fails_before_any_work():
    model = tiny_model("llama", seed=0)  # hidden 64, intermediate 128
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigError, match=r"group_size=48 does not divide.*widths \[64, 128\]"):
        compress_(model, RTNConfig(group_size=48), progress=False)
    with pytest.raises(ConfigError, match="group_size=48"):
        compress_(model, GPTQConfig(group_size=48), _ids(), progress=False)
    assert not _quantized(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_calibrated_methods_need_calibration_and_targets_must_match():
    model = tiny_model("llama", seed=0)
    with pytest.raises(DataError, match="calib"):
        compress_(model, GPTQConfig(group_size=32), None, progress=False)
    with pytest.raises(TargetError, match="matches no candidate"):
        compress_(model, RTNConfig(group_size=32, targets=("re:nothing",)), progress=False)
    with pytest.raises(TargetError, match="no linear layer left"):
        compress_(model, RTNConfig(group_size=32, ignore=("re:.",)), progress=False)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_rtn_error_is_within_half_a_step_of_its_group(bits, symmetric):
    model = tiny_model("llama", seed=0)
    dense = {
        n: linear_weight(m).detach().clone() for n, m in model.named_modules() if isinstance(m, nn.Linear)
    }
    report = compress_(model, RTNConfig(bits=bits, group_size=32, symmetric=symmetric), progress=False)
    layers = _quantized(model)
    assert len(layers) == len(report.matrices) == 14  # 7 linears x 2 blocks; lm_head untouched
    assert isinstance(model.lm_head, nn.Linear)
    for name, layer in layers.items():
        w = dense[name]
        bound = max_rounding_error(layer.weight_scale, 32, w.shape[1])
        err = (layer.dense_weight(torch.float32) - w).abs()
        assert bool((err <= bound * (1 + 1e-5) + 1e-7).all()), name
        expected_bits = bits + 32 / 32 + (0 if symmetric else 8 / 32)
        assert layer.bits_per_weight == pytest.approx(expected_bits)
    assert report.bits_per_weight == pytest.approx(bits + 1 + (0 if symmetric else 0.25))
    assert report.size_reduction == pytest.approx(1 - report.bits_per_weight / 32)


def _correlated_inputs(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(dim, dim, generator=g) / dim**0.5
    mix += 0.9 * torch.eye(dim)
    return torch.randn(n, dim // 4, generator=g) @ torch.randn(dim // 4, dim, generator=g) + 0.1 * (
        torch.randn(n, dim, generator=g) @ mix
    )


@pytest.mark.parametrize(("act_order", "static_groups"), [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_output_error_below_rtn_on_correlated_inputs(bits, act_order, static_groups):
    x = _correlated_inputs(512, 128)
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
    H = 2 * x.T @ x / x.shape[0]
    q, scale, zero = gptq_quantize(w, H, bits, 32, act_order=act_order, static_groups=static_groups)
    gptq = dequantize(q, scale, zero, 32)
    rtn = fake_quantize(w, bits, 32)
    err_gptq, err_rtn = layer_output_error(w, gptq, x), layer_output_error(w, rtn, x)
    assert err_gptq < 0.7 * err_rtn, (err_gptq, err_rtn)
    assert int(q.min()) >= -(2 ** (bits - 1)) and int(q.max()) <= 2 ** (bits - 1) - 1


@pytest.mark.parametrize("symmetric", [True, False])
def test_static_groups_take_their_scales_from_the_unquantized_weight(symmetric):
    """``static_groups`` (llm-compressor's rule): every group's scale and zero are RTN's on the
    unquantized ``W``; by default (dynamic groups) a later group's come from its error-updated columns."""
    x = _correlated_inputs(512, 128)
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
    H = 2 * x.T @ x / x.shape[0]
    _, s_rtn, z_rtn = quantize_groupwise(w, 4, 32, symmetric=symmetric)
    _, s_static, z_static = gptq_quantize(w, H, 4, 32, symmetric=symmetric, static_groups=True)
    _, s_dynamic, z_dynamic = gptq_quantize(w, H, 4, 32, symmetric=symmetric)
    assert torch.equal(s_static, s_rtn) and torch.equal(z_static, z_rtn)
    # group 0 is entered before any update reaches it; every later group has moved
    assert torch.equal(s_dynamic[:, 0], s_rtn[:, 0])
    assert not torch.allclose(s_dynamic[:, 1:], s_rtn[:, 1:])


def test_static_groups_reach_the_model_through_compress():
    """``GPTQConfig(static_groups=True)`` on a model: each layer's stored scales are RTN's of its dense
    weight; the default's are not (the option is passed down, not dropped)."""
    base = tiny_model("llama", seed=0)
    dense = {
        n: linear_weight(m).detach().clone() for n, m in base.named_modules() if isinstance(m, nn.Linear)
    }
    static, dynamic = copy.deepcopy(base), copy.deepcopy(base)
    compress_(static, build_config("gptq", bits=4, group_size=16, static_groups=True), _ids(), progress=False)
    compress_(dynamic, GPTQConfig(bits=4, group_size=16), _ids(), progress=False)
    moved = 0
    for name, layer in _quantized(static).items():
        _, s_rtn, _ = quantize_groupwise(dense[name], 4, 16)
        assert torch.equal(layer.weight_scale, s_rtn), name
        moved += not torch.equal(_quantized(dynamic)[name].weight_scale, s_rtn)
    assert moved == len(_quantized(dynamic)) == 14


def test_gptq_on_uncorrelated_identity_hessian_is_rtn():
    """With ``H = I`` no column can absorb another's error: GPTQ's codes are RTN's."""
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(2))
    q, scale, zero = gptq_quantize(w, torch.eye(64), 4, 16, percdamp=0.0)
    q_rtn, s_rtn, z_rtn = quantize_groupwise(w, 4, 16)
    assert torch.equal(q, q_rtn) and torch.allclose(scale, s_rtn)


@pytest.mark.parametrize("config_cls", [GPTQConfig, AWQConfig])
def test_sequential_false_calibrates_on_dense_activations(config_cls):
    """``sequential=False`` (llm-compressor's basic pipeline): block 1 is calibrated on the dense block
    0's outputs, so it equals quantizing block 1 alone; the default propagates the quantized block 0."""
    calib = _ids()
    fake = dict(bits=4, group_size=16, fake=True)
    only_block1 = tiny_model("llama", seed=0)
    compress_(only_block1, config_cls(targets=("re:layers\\.1\\.",), **fake), calib, progress=False)
    dense_stats, propagated = tiny_model("llama", seed=0), tiny_model("llama", seed=0)
    compress_(dense_stats, config_cls(sequential=False, **fake), calib, progress=False)
    compress_(propagated, config_cls(**fake), calib, progress=False)
    key = "model.layers.1.mlp.down_proj.weight"
    assert torch.equal(dense_stats.state_dict()[key], only_block1.state_dict()[key])
    assert not torch.equal(propagated.state_dict()[key], only_block1.state_dict()[key])
    first = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(dense_stats.state_dict()[first], propagated.state_dict()[first])


def test_awq_output_error_below_rtn_with_salient_channels():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1024, 128, generator=g)
    salient = torch.tensor([5, 17, 64, 100])
    x[:, salient] *= 30.0  # a few input channels carry large activations
    weights = [torch.randn(96, 128, generator=g) * 0.05, torch.randn(64, 128, generator=g) * 0.05]
    s, alpha, losses = awq_search(weights, x, x.abs().mean(0), 3, 32, grid=20)
    assert alpha > 0 and losses.index(min(losses)) == round(alpha * 20)
    for w in weights:
        awq = fake_quantize(w * s, 3, 32) / s
        rtn = fake_quantize(w, 3, 32)
        assert layer_output_error(w, awq, x) < 0.8 * layer_output_error(w, rtn, x)
    rtn_loss = sum(float((x @ fake_quantize(w, 3, 32).T - x @ w.T).square().mean()) for w in weights)
    assert losses[0] == pytest.approx(rtn_loss, rel=1e-4)  # α = 0 is plain RTN


@pytest.mark.parametrize(
    "config",
    [
        RTNConfig(bits=4, group_size=32),
        GPTQConfig(bits=4, group_size=32),
        GPTQConfig(bits=3, group_size=None, symmetric=False, act_order=True),
        AWQConfig(bits=4, group_size=16, symmetric=False),
    ],
    ids=["rtn", "gptq", "gptq-act-order-channel", "awq"],
)
def test_fake_and_packed_compute_the_same_and_save_load_round_trips(config, tmp_path):
    base = tiny_model("llama", seed=0)
    ids = _ids()
    packed, fake = copy.deepcopy(base), copy.deepcopy(base)
    report = compress_(packed, config, ids, progress=False)
    compress_(fake, dataclasses.replace(config, fake=True), ids, progress=False)
    assert not _quantized(fake) and len(_quantized(packed)) == 14
    out_packed, out_fake = _logits(packed, ids), _logits(fake, ids)
    assert torch.allclose(out_packed, out_fake, atol=1e-5)
    assert not torch.allclose(out_packed, _logits(base, ids), atol=1e-3)  # it did quantize
    directory = save_compressed(packed, tiny_tokenizer(), tmp_path / "q", report)
    meta = json.loads((directory / "slimkit.json").read_text())
    assert meta["restore"] == ["quantized"] and len(meta["quantized"]["modules"]) == 14
    assert meta["quantized"]["bits_per_weight"] == pytest.approx(report.bits_per_weight)
    loaded, _ = load_model(directory)
    assert len(_quantized(loaded)) == 14
    assert torch.equal(_logits(loaded, ids), out_packed)
    # the packed directory is smaller than the dense model's weights
    dense = save_compressed(base, None, tmp_path / "dense", report)
    assert (directory / "model.safetensors").stat().st_size < (dense / "model.safetensors").stat().st_size


def test_quantized_storage_refuses_bitmask(tmp_path):
    model = tiny_model("llama", seed=0)
    report = compress_(model, RTNConfig(group_size=32), progress=False)
    with pytest.raises(ConfigError, match="quantized model is saved with storage='dense'"):
        save_compressed(model, None, tmp_path / "q", report, storage="bitmask")


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("dim", [0, 1])
def test_int32_packing_is_compressed_tensors_packing(bits, dim):
    g = torch.Generator().manual_seed(bits)
    q = torch.randint(-(2 ** (bits - 1)), 2 ** (bits - 1), (37, 45), generator=g).to(torch.int8)
    assert torch.equal(pack_int32(q, bits, dim), pack_to_int32(q, bits, packed_dim=dim))


@pytest.mark.parametrize(
    ("config", "strategy"),
    [
        (GPTQConfig(bits=4, group_size=32), "group"),
        (GPTQConfig(bits=3, group_size=None, symmetric=False), "channel"),
        (RTNConfig(bits=5, group_size=16, symmetric=False), "group"),
        (RTNConfig(bits=8, group_size=64), "group"),
    ],
    ids=["gptq-w4-g32", "gptq-w3-channel-asym", "rtn-w5-g16-asym", "rtn-w8"],
)
def test_compressed_tensors_export_decompresses_to_slimkits_weights_exactly(config, strategy, tmp_path):
    model = tiny_model("llama", seed=0)
    report = compress_(model, config, _ids(), progress=False)
    directory = save_compressed(
        model, tiny_tokenizer(), tmp_path / "ct", report, storage="compressed-tensors"
    )
    qconfig = json.loads((directory / "config.json").read_text())["quantization_config"]
    assert qconfig["format"] == "pack-quantized" and qconfig["quant_method"] == "compressed-tensors"
    assert qconfig["ignore"] == ["lm_head"]
    args = qconfig["config_groups"]["group_0"]["weights"]
    assert args["strategy"] == strategy and args["num_bits"] == config.bits
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(**args))
    stored = load_file(directory / "model.safetensors")
    layers = _quantized(model)
    assert layers
    for name, layer in layers.items():
        local = {k[len(name) + 1 :]: v for k, v in stored.items() if k.startswith(name + ".")}
        assert local["weight_packed"].dtype == torch.int32
        weight = PackedQuantizationCompressor.decompress(local, scheme)["weight"]
        assert torch.equal(weight.float(), layer.dequantize(torch.float32)), name


def test_symmetric_export_loads_in_transformers_with_the_same_logits(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_model("llama", seed=0)
    report = compress_(model, GPTQConfig(bits=4, group_size=32), _ids(), progress=False)
    directory = save_compressed(
        model, tiny_tokenizer(), tmp_path / "ct", report, storage="compressed-tensors"
    )
    hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    assert torch.allclose(_logits(hf, _ids()), _logits(model, _ids()), atol=1e-5)


def test_export_refuses_awq_and_unquantized_models(tmp_path):
    model = tiny_model("llama", seed=0)
    with pytest.raises(ConfigError, match="no QuantizedLinear"):
        quantization_config(model)
    compress_(model, AWQConfig(group_size=32), _ids(), progress=False)
    with pytest.raises(ConfigError, match="AWQ's per-input-channel scale"):
        save_compressed_tensors(model, None, tmp_path / "ct")
    assert not (tmp_path / "ct").exists()


def test_gpt2_conv1d_layers_quantize_and_keep_their_orientation():
    model = tiny_model("gpt2", seed=0)
    ids = _ids()
    before = _logits(model, ids)
    report = compress_(model, RTNConfig(bits=8, group_size=None), progress=False)
    assert len(_quantized(model)) == len(report.matrices) > 0
    after = _logits(model, ids)
    assert (
        float((after - before).norm() / before.norm()) < 0.02
    )  # 8-bit: a small change, not a transposed weight


def test_models_made_from_the_world_model_default_to_world_data(
    private_model_cache, tiny_model_dir, tmp_path
):
    from slimkit.cli.common import derives_from_world_model
    from slimkit.models import save_model

    world = save_model(
        tiny_model("llama", seed=0), tiny_tokenizer(), private_model_cache / "default-model-abc"
    )
    child = save_model(tiny_model("llama", seed=0), None, tmp_path / "child", parent=world)
    grandchild = save_model(tiny_model("llama", seed=0), None, tmp_path / "grandchild", parent=child)
    other = save_model(tiny_model("llama", seed=0), None, tmp_path / "other", parent=tiny_model_dir)
    assert derives_from_world_model("default") and derives_from_world_model(str(world))
    assert derives_from_world_model(str(child)) and derives_from_world_model(str(grandchild))
    assert not derives_from_world_model(str(other)) and not derives_from_world_model(str(tiny_model_dir))
    assert not derives_from_world_model("smollm2-135m")


def test_cli_static_groups_flag_reaches_gptq(tiny_model_dir, tmp_path, capsys):
    """``slimkit compress --method gptq --static-groups``: the saved layers carry RTN's scales of the
    dense weights (``--dynamic-groups``, the default, does not)."""
    dense, _ = load_model(tiny_model_dir)
    weights = {n: linear_weight(m).detach() for n, m in dense.named_modules() if isinstance(m, nn.Linear)}
    for flag, expect_rtn in (("--static-groups", True), ("--dynamic-groups", False)):
        out = tmp_path / flag.strip("-")
        args = ["compress", tiny_model_dir, "--method", "gptq", "--bits", "4", "--group-size", "16", flag]
        code, _, err = run([*args, "--nsamples", "4", "--seqlen", "16", "--out", out], capsys)
        assert code == 0, err
        loaded, _ = load_model(out)
        layers = _quantized(loaded)
        assert len(layers) == 14
        same = [
            torch.equal(layer.weight_scale, quantize_groupwise(weights[n], 4, 16)[1])
            for n, layer in layers.items()
        ]
        assert all(same) if expect_rtn else not any(same), flag
