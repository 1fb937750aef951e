"""slimkit.train: configs, optimizer registry, schedule, sampler, grad accumulation, checkpoints, exact
resume, and the YAML recipe — on a 2-layer LLaMA with hidden size 32 (milliseconds per step)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from slimkit.core.errors import CheckpointError, ConfigError, DataError
from slimkit.core.io import OUTPUT_MARKER
from slimkit.train import (
    AdamWConfig,
    PackedSampler,
    TrainConfig,
    accumulate_gradients_,
    build_optimizer,
    cosine_schedule,
    cosine_with_warmup,
    tokenize_documents,
    train,
    weight_decay_groups,
)
from slimkit.train.checkpoint import flatten_optimizer_state, list_checkpoints, unflatten_optimizer_state
from slimkit.train.data import DataPosition
from slimkit.train.recipe import load_recipe, train_from_yaml

REPO = Path(__file__).resolve().parents[2]
VOCAB = 64


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)


def corpus(n: int = 3000, seed: int = 1) -> torch.Tensor:
    # a learnable stream (a noisy counter) so losses actually move
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n) % VOCAB
    noise = torch.randint(0, VOCAB, (n,), generator=g)
    return torch.where(torch.rand(n, generator=g) < 0.2, noise, base)


def small_cfg(**changes) -> TrainConfig:
    base = dict(steps=6, batch_size=2, seqlen=16, warmup_steps=2, log_every=2, optimizer=AdamWConfig(lr=3e-3))
    return TrainConfig(**{**base, **changes})


# -- configs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"steps": 0}, "steps"),
        ({"batch_size": -1}, "batch_size"),
        ({"grad_accum": 0}, "grad_accum"),
        ({"seqlen": 0}, "seqlen"),
        ({"steps": 10, "warmup_steps": 11}, "warmup_steps"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
        ({"grad_clip": -1.0}, "grad_clip"),
        ({"checkpoint_every": -5}, "checkpoint_every"),
        ({"log_every": 0}, "log_every"),
        ({"device": "not-a-device"}, "device"),
        ({"steps": "100"}, "steps"),
        ({"optimizer": {"name": "sgd-of-dreams"}}, "optimizer"),
    ],
)
def test_bad_train_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lr": 0.0}, "lr"),
        ({"betas": (1.0, 0.9)}, r"betas\[0\]"),
        ({"eps": 0}, "eps"),
        ({"weight_decay": -1}, "weight_decay"),
    ],
)
def test_bad_adamw_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        AdamWConfig(**kwargs)


def test_train_config_round_trips_and_accepts_an_optimizer_mapping():
    cfg = TrainConfig(optimizer={"lr": 1e-3, "betas": [0.8, 0.9]}, steps=10, grad_clip=None)
    assert cfg.optimizer == AdamWConfig(lr=1e-3, betas=(0.8, 0.9))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.from_dict({"stepz": 3})
    assert TrainConfig(grad_clip=0).clip_norm is None


# -- schedule ----------------------------------------------------------------------------------------------
def test_cosine_with_warmup_key_values():
    f = cosine_with_warmup
    assert f(0, 100, 10, 0.1) == pytest.approx(0.1)  # first step already moves: lr / warmup
    assert f(9, 100, 10, 0.1) == pytest.approx(1.0)  # end of warmup
    assert f(10, 100, 10, 0.1) == pytest.approx(1.0)  # cosine starts at the peak
    assert f(55, 100, 10, 0.1) == pytest.approx(0.55)  # halfway: mean of peak and floor
    assert f(100, 100, 10, 0.1) == pytest.approx(0.1)  # rests at the floor
    assert f(0, 100, 0, 0.0) == pytest.approx(1.0)
    assert f(200, 100, 0, 0.2) == pytest.approx(0.2)  # clipped past the end
    values = [f(s, 100, 10, 0.1) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_cosine_schedule_drives_the_optimizer_lr():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=2.0)
    sched = cosine_schedule(opt, total=20, warmup=4, min_ratio=0.25)
    for step in range(20):
        assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * cosine_with_warmup(step, 20, 4, 0.25))
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    json.dumps(sched.state_dict())  # plain data: checkpoints need no pickle


# -- optimizer ---------------------------------------------------------------------------------------------
def test_no_weight_decay_on_norms_biases_and_embeddings():
    model = tiny_llama()
    groups = weight_decay_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    plain = {names[id(p)] for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert "model.layers.0.self_attn.q_proj.weight" in decayed
    assert "model.embed_tokens.weight" in plain and "model.norm.weight" in plain
    assert not any("norm" in n or "embed" in n for n in decayed)


def test_frozen_parameters_get_no_optimizer_state():
    model = tiny_llama()
    for name, p in model.named_parameters():
        if name.startswith("model.layers.0.") or "embed" in name:
            p.requires_grad_(False)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    opt = build_optimizer(model, AdamWConfig(weight_decay=0.01))
    assert {id(p) for g in opt.param_groups for p in g["params"]} == trainable
    accumulate_gradients_(model, [corpus(34)[:34].view(2, 17)])
    opt.step()
    assert set(map(id, opt.state)) == trainable


def test_frozen_parameters_stay_put_through_train(tmp_path):
    model = tiny_llama()
    frozen = model.model.layers[0].mlp.up_proj.weight
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    train(model, corpus(), small_cfg(steps=2), tmp_path)
    assert torch.equal(frozen, before)
    state = json.loads(next((tmp_path / "checkpoints").iterdir()).joinpath("state.json").read_text())
    assert "model.layers.0.mlp.up_proj.weight" not in state["param_names"]


# -- data --------------------------------------------------------------------------------------------------
def test_sampler_visits_every_window_once_per_epoch_and_restores_its_position():
    ids = torch.arange(1 + 10 * 8)  # exactly 10 windows of seqlen 8
    sampler = PackedSampler(ids, seqlen=8, seed=3, random_offset=False)
    assert sampler.n_windows == 10
    epoch0 = torch.cat([sampler.next_batch(5) for _ in range(2)])
    assert sorted(epoch0[:, 0].tolist()) == list(range(0, 80, 8))
    assert torch.equal(epoch0[:, 1:], epoch0[:, :-1] + 1)  # contiguous windows of seqlen+1
    assert sampler.position == DataPosition(1, 0)

    state = sampler.state_dict()
    ahead = sampler.next_batch(7)  # crosses into epoch 2
    again = PackedSampler(ids, seqlen=8, seed=3, random_offset=False)
    again.load_state_dict(state)
    assert torch.equal(again.next_batch(7), ahead)
    assert not torch.equal(PackedSampler(ids, 8, seed=4, random_offset=False).next_batch(10), epoch0)


def test_sampler_random_offset_shifts_the_grid_per_epoch_and_resumes_exactly():
    ids = torch.arange(1 + 10 * 8 + 7)  # 10 windows of seqlen 8 fit at every offset in [0, 8)
    sampler = PackedSampler(ids, seqlen=8, seed=0)
    assert sampler.n_windows == 10
    offsets = []
    for _ in range(6):  # six epochs
        epoch = torch.cat([sampler.next_batch(5) for _ in range(2)])
        starts = sorted(epoch[:, 0].tolist())
        offset = starts[0] % 8
        assert starts == list(range(offset, offset + 80, 8))  # the whole grid, shifted
        assert torch.equal(epoch[:, 1:], epoch[:, :-1] + 1)
        offsets.append(offset)
    assert len(set(offsets)) > 1  # the grid moves between epochs
    state = sampler.state_dict()
    ahead = sampler.next_batch(13)
    again = PackedSampler(ids, seqlen=8, seed=0)
    again.load_state_dict(state)
    assert torch.equal(again.next_batch(13), ahead)


def test_sampler_refuses_too_little_text():
    with pytest.raises(DataError, match="seqlen"):
        PackedSampler(torch.arange(8), seqlen=8)
    with pytest.raises(DataError, match="1-D"):
        PackedSampler(torch.zeros(2, 50, dtype=torch.long), seqlen=8)
    with pytest.raises(DataError, match="too little|fewer"):
        train(tiny_llama(), torch.arange(10), small_cfg(seqlen=16))


def test_tokenize_documents_appends_eos_after_each_document():
    from slimkit.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    ids = tokenize_documents(tok, ["hello world", "", "second doc"])
    assert ids.dtype == torch.long and ids.ndim == 1
    assert (ids == tok.eos_token_id).sum() == 2 and ids[-1] == tok.eos_token_id
    with pytest.raises(DataError):
        tokenize_documents(tok, ["  ", ""])


# -- gradient accumulation ---------------------------------------------------------------------------------
def test_grad_accumulation_matches_one_big_batch():
    ids = corpus()
    big = PackedSampler(ids, seqlen=16, seed=0).next_batch(4)
    small = PackedSampler(ids, seqlen=16, seed=0)
    micro = [small.next_batch(2), small.next_batch(2)]
    assert torch.equal(torch.cat(micro), big)  # batch 2 x accum 2 reads the same windows

    model_a, model_b = tiny_llama(), tiny_llama()
    loss_a = accumulate_gradients_(model_a, [big])
    loss_b = accumulate_gradients_(model_b, micro)
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    for (name, pa), pb in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-7, msg=name)


# -- checkpoints and exact resume --------------------------------------------------------------------------
class StopAt:
    """Simulates Ctrl-C / a kill right after step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, step: int, loss: float, model: torch.nn.Module) -> None:
        if step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("how", ["max_steps", "interrupt"])
def test_resume_reproduces_the_uninterrupted_run_bitwise(tmp_path, how):
    ids = corpus()
    cfg = small_cfg(steps=6, grad_accum=2, checkpoint_every=3, bf16=(how == "interrupt"))
    straight = tiny_llama()
    full = train(straight, ids, cfg)

    first = tiny_llama()
    if how == "max_steps":
        part = train(first, ids, cfg, tmp_path, max_steps_this_run=3)
        assert part.steps == 3 and part.losses == full.losses[:3]
    else:
        with pytest.raises(KeyboardInterrupt):
            train(first, ids, cfg, tmp_path, callbacks=[StopAt(2)])  # saved on the way out
        assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000002"]

    resumed_model = tiny_llama(seed=123)  # different init: everything must come from the checkpoint
    resumed = train(resumed_model, ids, cfg, tmp_path, resume=True)
    assert resumed.losses == full.losses
    assert resumed.tokens_seen == full.tokens_seen == 6 * 2 * 2 * 16
    assert resumed.final_lr == full.final_lr == pytest.approx(3e-4)
    for (name, a), b in zip(straight.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_interrupt_in_the_middle_of_a_step_checkpoints_the_last_completed_one(tmp_path):
    ids = corpus()
    cfg = small_cfg(steps=5, grad_accum=2)
    full = train(tiny_llama(), ids, cfg)

    model = tiny_llama()
    calls = {"n": 0}

    def interrupt_in_step_3(module, args, kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # step 3, second micro-batch: data already drawn, no update yet
            raise KeyboardInterrupt

    handle = model.model.register_forward_pre_hook(interrupt_in_step_3, with_kwargs=True)
    with pytest.raises(KeyboardInterrupt):
        train(model, ids, cfg, tmp_path)
    handle.remove()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000002"]
    assert train(tiny_llama(), ids, cfg, tmp_path, resume=True).losses == full.losses


def test_checkpoints_are_safetensors_and_json_only(tmp_path):
    train(tiny_llama(), corpus(), small_cfg(steps=4, checkpoint_every=1), tmp_path)
    ckpts = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in ckpts] == ["step-00000003", "step-00000004"]  # the newest two are kept
    names = sorted(p.name for p in ckpts[-1].iterdir() if p.name != OUTPUT_MARKER)  # the empty marker file
    assert names == ["model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
    for name in names:  # each file parses as what it claims to be: nothing is pickle / torch.save
        if name.endswith(".safetensors"):
            load_file(ckpts[-1] / name)
        else:
            json.loads((ckpts[-1] / name).read_text())
    opt = load_file(ckpts[-1] / "optimizer.safetensors")
    assert "state.0.exp_avg" in opt and "state.0.step" in opt


def test_optimizer_state_flattening_round_trips():
    model = tiny_llama()
    opt = build_optimizer(model, AdamWConfig(weight_decay=0.1))
    accumulate_gradients_(model, [corpus(34).view(2, 17)])
    opt.step()
    tensors, meta = flatten_optimizer_state(opt.state_dict())
    json.dumps(meta)
    back = unflatten_optimizer_state(tensors, json.loads(json.dumps(meta)))
    original = opt.state_dict()
    assert back["param_groups"] == original["param_groups"]
    for idx, state in original["state"].items():
        for name, value in state.items():
            assert torch.equal(back["state"][idx][name], value)


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_state", "bad_json"])
def test_corrupt_checkpoint_is_refused(tmp_path, damage):
    ids, cfg = corpus(), small_cfg(steps=4)
    train(tiny_llama(), ids, cfg, tmp_path, max_steps_this_run=2)
    ckpt = list_checkpoints(tmp_path / "checkpoints")[-1]
    weights = ckpt / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "no_state":
        (ckpt / "state.json").unlink()
    else:
        (ckpt / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=str(ckpt.name)):
        train(tiny_llama(), ids, cfg, tmp_path, resume=True)


def test_mismatched_or_missing_checkpoint_is_refused(tmp_path):
    ids, cfg = corpus(), small_cfg(steps=4)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_llama(), ids, cfg, tmp_path, resume=True)
    train(tiny_llama(), ids, cfg, tmp_path, max_steps_this_run=2)
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        train(tiny_llama(), ids, cfg, tmp_path)
    with pytest.raises(CheckpointError, match="batch_size"):
        train(tiny_llama(), ids, cfg.replace(batch_size=3), tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="different data"):
        train(tiny_llama(), corpus(seed=9), cfg, tmp_path, resume=True)
    frozen = tiny_llama()
    frozen.lm_head.weight.requires_grad_(False)
    frozen.model.norm.weight.requires_grad_(False)
    with pytest.raises(CheckpointError, match="parameters"):
        train(frozen, ids, cfg, tmp_path, resume=True)
    # fields that do not change the trajectory may differ
    done = train(tiny_llama(), ids, cfg.replace(log_every=1, checkpoint_every=1), tmp_path, resume=True)
    assert done.steps == 4


def test_train_result_fields_and_learning():
    ids = corpus(6000)
    result = train(tiny_llama(), ids, small_cfg(steps=30, batch_size=4, warmup_steps=3, min_lr_ratio=0.5))
    assert len(result.losses) == result.steps == 30
    assert result.tokens_seen == 30 * 4 * 16
    assert result.tokens_per_s > 0 and result.wall_time_s > 0
    assert result.final_lr == pytest.approx(3e-3 * 0.5)
    assert sum(result.losses[-5:]) / 5 < result.losses[0] - 0.3
    assert all(math.isfinite(x) for x in result.losses)


# -- YAML recipe -------------------------------------------------------------------------------------------
TEXT = "\n\n".join(
    f"The {c} fox number {i} jumps over the {d} dog and runs to the {c} river."
    for i, (c, d) in enumerate(
        zip(["red", "blue", "green", "brown"] * 10, ["lazy", "quick", "old"] * 14, strict=False)
    )
)


def test_shipped_tiny_config_loads():
    recipe = load_recipe(REPO / "configs" / "train_tiny.yaml")
    assert recipe.train.steps > 0 and "init" in recipe.model


def test_yaml_recipe_runs_end_to_end_and_resumes(tmp_path):
    pytest.importorskip(
        "slimkit.models.loading", reason="slimkit.models.loading (load_model/save_model) not present"
    )
    from slimkit.models.loading import load_model

    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    config = REPO / "configs" / "train_tiny.yaml"
    result, out_dir = train_from_yaml(config, data=data, out=tmp_path / "run")
    assert result.steps == load_recipe(config).train.steps
    model, tok = load_model(out_dir / "model")
    meta = json.loads((out_dir / "model" / "slimkit.json").read_text())
    assert meta["train_result"]["steps"] == result.steps
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape[-1] >= len(tok)

    again, _ = train_from_yaml(config, resume=True, data=data, out=tmp_path / "run")
    assert again.losses == result.losses  # already finished: nothing more to do
    with pytest.raises(CheckpointError):
        train_from_yaml(config, data=data, out=tmp_path / "run")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("model: [unclosed", "malformed YAML"),
        (
            "model: {init: {family: llama}}\ntokenizer: {train: {vocab_size: 300}}\ndata: x\nout: o\nextra: 1",
            "unknown key",
        ),
        ("model: {init: {family: llama}, path: m}\ndata: x\nout: o", "exactly one"),
        ("model: {init: {family: llama}}\ndata: x\nout: o", "tokenizer is required"),
        ("model: {path: m}\ndata: x\nout: o\ntrain: {steps: 0}", "steps"),
        ("model: {path: m}\ndata: x\nout: o\ntrain: {optimizer: {lr: -1.0}}", "lr"),
    ],
)
def test_bad_yaml_recipe_is_a_config_error(tmp_path, text, match):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_recipe(path)


def test_unknown_model_init_field_is_a_config_error(tmp_path):
    (tmp_path / "text.txt").write_text(TEXT)
    path = tmp_path / "run.yaml"
    path.write_text(
        "model: {init: {family: llama, hidden_szie: 32}}\ntokenizer: {train: {vocab_size: 300}}\n"
        f"data: text.txt\nout: {tmp_path / 'o'}\ntrain: {{steps: 1, seqlen: 8, batch_size: 1}}\n"
    )
    with pytest.raises(ConfigError, match="hidden_szie"):
        train_from_yaml(path)


def test_yaml_reads_scientific_notation_as_float(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {path: m}\ndata: x\nout: o\ntrain: {optimizer: {lr: 3e-4}}")
    assert load_recipe(path).train.optimizer.lr == pytest.approx(3e-4)


def test_tokenize_documents_with_a_separator_tokenizes_the_joined_text():
    from slimkit.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    docs = ["The cat sat.", "", "A dog ran."]
    ids = tokenize_documents(tok, docs, separator="\n\n")
    assert ids.tolist() == tok("The cat sat.\n\nA dog ran.", add_special_tokens=False)["input_ids"]
    assert tok.eos_token_id not in ids.tolist()
