"""Architecture discovery: blocks from ``_no_split_modules``, roles from one traced forward, the pure
grouping and role rules, errors, hand adapters, and load_model accepting any discoverable family."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM
from transformers.pytorch_utils import Conv1D

from slimkit.compress import WeLoreConfig, compress_
from slimkit.core.errors import UnsupportedArchitectureError
from slimkit.models import load_model, save_model, tiny_model
from slimkit.models.adapters import (
    GPT2,
    LLAMA,
    OPT,
    OVERRIDES,
    adapter_for_model_type,
    get_adapter,
    is_linear,
    register_adapter,
)
from slimkit.models.discovery import (
    LinearCall,
    assign_roles,
    discover,
    find_blocks,
    group_linears,
    role_modules,
)
from slimkit.nn.lowrank import LowRankLinear

# the hand tables slimkit shipped before discovery: discovery must reproduce them exactly
HAND_TABLES = [("llama", LLAMA), ("mistral", LLAMA), ("qwen2", LLAMA), ("opt", OPT), ("gpt2", GPT2)]

LLAMA_ROLES = dict(LLAMA.roles)
# family -> (blocks path, roles, groups, final norm, embeddings, block output length)
EXPECTED = {
    "qwen3": ("model.layers", LLAMA_ROLES, LLAMA.groups, "model.norm", ("model.embed_tokens",), 0),
    "gemma2": ("model.layers", LLAMA_ROLES, LLAMA.groups, "model.norm", ("model.embed_tokens",), 0),
    "gemma3": ("model.layers", LLAMA_ROLES, LLAMA.groups, "model.norm", ("model.embed_tokens",), 0),
    "phi3": (
        "model.layers",
        {
            "qkv": "self_attn.qkv_proj",
            "o": "self_attn.o_proj",
            "gate_up": "mlp.gate_up_proj",
            "down": "mlp.down_proj",
        },
        (("qkv",), ("o",), ("gate_up",), ("down",)),
        "model.norm",
        ("model.embed_tokens",),
        0,
    ),
    "gpt_neox": (
        "gpt_neox.layers",
        {
            "qkv": "attention.query_key_value",
            "o": "attention.dense",
            "fc1": "mlp.dense_h_to_4h",
            "fc2": "mlp.dense_4h_to_h",
        },
        (("qkv",), ("o",), ("fc1",), ("fc2",)),
        "gpt_neox.final_layer_norm",
        ("gpt_neox.embed_in",),
        0,
    ),
    "falcon": (  # parallel attention: qkv and dense_h_to_4h read the same layer-norm output
        "transformer.h",
        {
            "qkv": "self_attention.query_key_value",
            "o": "self_attention.dense",
            "fc1": "mlp.dense_h_to_4h",
            "fc2": "mlp.dense_4h_to_h",
        },
        (("qkv",), ("o",), ("fc1",), ("fc2",)),
        "transformer.ln_f",
        ("transformer.word_embeddings",),
        2,  # FalconDecoderLayer returns a tuple
    ),
}


def _one_line(exc_info: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# -- discovery reproduces the hand tables ---------------------------------------------------------------------
@pytest.mark.parametrize(("family", "table"), HAND_TABLES)
def test_discovery_reproduces_the_hand_tables(family, table):
    model = tiny_model(family, seed=0)
    found = discover(model)
    assert found.discovered and not table.discovered
    assert found.blocks_path == table.blocks_path
    assert list(found.roles.items()) == list(table.roles.items())  # same roles, same paths, same order
    assert found.attention_roles == table.attention_roles
    assert found.mlp_roles == table.mlp_roles
    assert found.embeddings == table.embeddings
    assert found.final_norm == table.final_norm
    assert found.lm_head == table.lm_head
    assert found.role_groups() == table.role_groups()
    assert replace(table, groups=()).role_groups() == table.role_groups()  # derived without "o" in code
    for block in table.blocks(model):  # the very same modules, in every block
        hand, discovered = table.block_linears(block), found.block_linears(block)
        assert all(discovered[r] is hand[r] for r in hand)
    assert found.lm_head_module(model) is model.lm_head
    assert found.final_norm_module(model) is table.final_norm_module(model)


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_discovery_on_families_without_a_hand_table(family):
    model = tiny_model(family, seed=0)
    path, roles, groups, final_norm, embeddings, out_len = EXPECTED[family]
    adapter = get_adapter(model)
    assert adapter.blocks_path == path and len(adapter.blocks(model)) == 2
    assert list(adapter.roles.items()) == list(roles.items())
    assert adapter.groups == groups
    assert adapter.final_norm == final_norm and adapter.embeddings == embeddings
    assert adapter.block_output_len == out_len
    assert set(adapter.attention_roles) | set(adapter.mlp_roles) == set(roles)
    assert adapter.lm_head_module(model) is model.get_output_embeddings()
    # every linear of every block has a role
    for block in adapter.blocks(model):
        assert set(role_modules(block)) == set(roles.values())


def test_adapter_is_cached_per_model_object():
    model = tiny_model("qwen3", seed=0)
    assert get_adapter(model) is get_adapter(model)
    assert get_adapter(copy.deepcopy(model)) == get_adapter(model)  # a copy is discovered anew, alike


def test_low_rank_modules_are_discovered_as_the_linears_they_replace():
    model = tiny_model("phi3", seed=0)
    before = get_adapter(model)
    compress_(model, WeLoreConfig(target_params=0.3, min_ratio=0.0), progress=False)
    assert any(isinstance(m, LowRankLinear) for m in model.modules())
    again = discover(copy.deepcopy(model))
    assert again.roles == before.roles and again.groups == before.groups


# -- the pure part -----------------------------------------------------------------------------------------------
def _call(path: str, source: int, ins: int, outs: int, attention: bool) -> LinearCall:
    return LinearCall(path, source, ins, outs, attention)


def test_group_linears_splits_attention_from_mlp_even_on_one_input():
    calls = [
        _call("attn.qkv", 0, 64, 96, True),
        _call("attn.dense", 1, 64, 64, True),
        _call("mlp.up", 0, 64, 256, False),  # parallel block: the same input as qkv
        _call("mlp.down", 2, 256, 64, False),
        _call("mlp.up", 0, 64, 256, False),  # a second call of a linear counts once
    ]
    groups = group_linears(calls)
    assert [[c.path for c in g] for g in groups] == [["attn.qkv"], ["attn.dense"], ["mlp.up"], ["mlp.down"]]
    roles = assign_roles(groups)
    assert roles.roles == {"qkv": "attn.qkv", "o": "attn.dense", "fc1": "mlp.up", "fc2": "mlp.down"}
    assert roles.groups == (("qkv",), ("o",), ("fc1",), ("fc2",))


def test_roles_follow_names_when_unambiguous_and_call_order_otherwise():
    shuffled = [  # k and v run before q; up before gate
        _call("a.key", 0, 8, 8, True),
        _call("a.value", 0, 8, 8, True),
        _call("a.query", 0, 8, 8, True),
        _call("a.out", 1, 8, 8, True),
        _call("m.up_proj", 2, 8, 16, False),
        _call("m.gate_proj", 2, 8, 16, False),
        _call("m.down_proj", 3, 16, 8, False),
    ]
    roles = assign_roles(group_linears(shuffled))
    assert roles.roles["q"] == "a.query" and roles.roles["k"] == "a.key" and roles.roles["v"] == "a.value"
    assert roles.roles["gate"] == "m.gate_proj" and roles.roles["up"] == "m.up_proj"
    assert roles.groups == (("k", "v", "q"), ("o",), ("up", "gate"), ("down",))
    anonymous = [
        _call("a.x", 0, 8, 8, True),
        _call("a.y", 0, 8, 8, True),
        _call("a.z", 0, 8, 8, True),
        _call("a.w", 1, 8, 8, True),
        _call("m.p", 2, 8, 16, False),
        _call("m.r", 2, 8, 16, False),
        _call("m.s", 3, 16, 8, False),
    ]
    roles = assign_roles(group_linears(anonymous))
    assert list(roles.roles) == ["q", "k", "v", "o", "gate", "up", "down"]


def test_fused_gate_up_is_told_from_fc1_by_its_width():
    fused = [
        _call("a.qkv", 0, 8, 24, True),
        _call("a.o", 1, 8, 8, True),
        _call("m.gu", 2, 8, 32, False),
        _call("m.d", 3, 16, 8, False),
    ]
    assert assign_roles(group_linears(fused)).roles == {
        "qkv": "a.qkv",
        "o": "a.o",
        "gate_up": "m.gu",
        "down": "m.d",
    }


def test_other_layouts_keep_their_own_names():
    mla = [  # DeepSeek-style latent attention: no q/k/v triple
        _call("attn.q_a_proj", 0, 8, 4, True),
        _call("attn.kv_a_proj", 0, 8, 4, True),
        _call("attn.q_b_proj", 1, 4, 8, True),
        _call("attn.kv_b_proj", 2, 4, 16, True),
        _call("attn.o_proj", 3, 8, 8, True),
        _call("mlp.fc1", 4, 8, 16, False),
        _call("mlp.fc2", 5, 16, 8, False),
    ]
    roles = assign_roles(group_linears(mla))
    assert roles.attention_roles == ("q_a_proj", "kv_a_proj", "q_b_proj", "kv_b_proj", "o_proj")
    assert roles.mlp_roles == ("fc1", "fc2")
    assert roles.groups[0] == ("q_a_proj", "kv_a_proj") and len(roles.groups) == 6


# -- linears: Conv1D by isinstance --------------------------------------------------------------------------------
def test_conv1d_is_recognised_by_type_not_by_name():
    class MyConv(Conv1D):
        pass

    class Conv1DLookalike(nn.Module):  # same name as transformers' class, but not a linear
        pass

    Conv1DLookalike.__name__ = "Conv1D"
    assert is_linear(Conv1D(8, 4)) and is_linear(MyConv(8, 4)) and is_linear(nn.Linear(2, 2))
    assert not is_linear(Conv1DLookalike())


# -- errors ------------------------------------------------------------------------------------------------------
class _NoDeclaration(nn.Module):
    config = None

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))


class _DeclaresOther(_NoDeclaration):
    _no_split_modules = ["MyDecoderLayer"]


def test_no_blocks_is_a_one_line_error_naming_what_was_looked_for():
    with pytest.raises(UnsupportedArchitectureError) as err:
        find_blocks(_NoDeclaration())
    _one_line(err, "_NoDeclaration", "_no_split_modules", "declares none", "register_adapter")
    with pytest.raises(UnsupportedArchitectureError) as err:
        find_blocks(_DeclaresOther())
    _one_line(err, "MyDecoderLayer", "_no_split_modules", "found none")
    with pytest.raises(UnsupportedArchitectureError) as err:
        find_blocks(_NoDeclaration(), "model.layers")
    _one_line(err, "'model.layers'")
    with pytest.raises(UnsupportedArchitectureError) as err:
        get_adapter(_NoDeclaration())
    _one_line(err, "no Hugging Face config")


def test_blocks_of_different_layouts_are_refused():
    model = tiny_model("llama", seed=0)
    model.model.layers[1].mlp.up_proj = nn.Sequential(nn.Linear(64, 128))  # the same map, another layout
    with pytest.raises(UnsupportedArchitectureError) as err:
        discover(model)
    _one_line(err, "block 1", "mlp.up_proj", "hand adapter")


def test_a_model_on_the_meta_device_cannot_be_traced():
    config = tiny_model("llama").config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(UnsupportedArchitectureError) as err:
        discover(model)
    _one_line(err, "meta device")


# -- hand adapters ---------------------------------------------------------------------------------------------
def test_a_registered_hand_adapter_wins_and_gets_its_groups_from_the_trace():
    hand = replace(LLAMA, family="hand", model_types=("llama",), groups=())
    previous = OVERRIDES.pop("llama", None)
    try:
        register_adapter(hand)
        assert adapter_for_model_type("llama") is hand
        adapter = get_adapter(tiny_model("llama", seed=0))
        assert adapter.family == "hand" and not adapter.discovered
        assert adapter.groups == LLAMA.groups  # filled in from who shares an input
    finally:
        OVERRIDES.pop("llama", None)
        if previous is not None:
            OVERRIDES["llama"] = previous
    assert adapter_for_model_type("llama") is None  # discovery serves it


# -- load_model accepts any discoverable causal LM, refuses the rest in one line -----------------------------
@pytest.mark.parametrize("family", ["qwen3", "gemma3", "falcon"])
def test_load_model_accepts_discovered_families(family, tmp_path, tiny_tok):
    model = tiny_model(family, seed=0)
    out = save_model(model, tiny_tok, tmp_path / family)
    loaded, _ = load_model(out)
    ids = torch.tensor([tiny_tok("The river runs past the old mill.").input_ids])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert get_adapter(loaded).roles == get_adapter(model).roles


def test_load_model_refuses_an_unknown_model_type(tmp_path, tiny_model_dir):
    d = shutil.copytree(tiny_model_dir, tmp_path / "m")
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "model_type": "no_such_family"}))
    with pytest.raises(UnsupportedArchitectureError) as err:
        load_model(d)
    _one_line(err, "'no_such_family'", "does not know", "llama")


def test_load_model_refuses_an_encoder_naming_the_no_split_classes(tmp_path, tiny_model_dir):
    d = shutil.copytree(tiny_model_dir, tmp_path / "m")
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(UnsupportedArchitectureError) as err:
        load_model(d)
    _one_line(err, "'bert'", "BertLMHeadModel", "_no_split_modules", "declares none")
