"""Structured FFN-neuron pruning: pure scores and schedule, masks vs physical removal on the three MLP
layouts (LLaMA gated, OPT fc1/fc2 on the block, GPT-2 Conv1D), optimizer-state carry-over, the one-shot
``ffn-structured`` method, the iterative training callback with exact resume, and bad input."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from slimkit.compress import COMPRESSORS, compress_, save_compressed
from slimkit.compress.structured import (
    FFNStructuredConfig,
    IterativeFFNPrune,
    NeuronMasks,
    activation_importance,
    ema_,
    ffn_sites,
    ffn_width,
    keep_top,
    neuron_sensitivity,
    scheduled_width,
    shrink_ffn_,
)
from slimkit.core.errors import ConfigError, DataError, UnsupportedArchitectureError
from slimkit.models import tiny_model
from slimkit.train import AdamWConfig, TrainConfig, train
from slimkit.train.schedules import cosine_with_warmup

FAMILIES = ("llama", "opt", "gpt2")


def random_keep(width: int, n: int, blocks: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.sort(torch.randperm(width, generator=g)[:n]).values for _ in range(blocks)]


def corpus(n: int = 4000, vocab: int = 512, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n) % 97
    return torch.where(torch.rand(n, generator=g) < 0.2, torch.randint(0, vocab, (n,), generator=g), base)


# -- pure math ----------------------------------------------------------------------------------------------
def test_neuron_sensitivity_sums_each_neurons_rows_and_column():
    w_in = [torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]])]  # [I=3, H=2]
    g_in = [torch.tensor([[2.0, 1.0], [4.0, 9.0], [-1.0, 0.0]])]
    w_out = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0]])  # [H=2, I=3]
    g_out = torch.tensor([[1.0, 1.0, 5.0], [3.0, 2.0, -2.0]])
    b, gb = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([-1.0, 0.5, 7.0])
    got = neuron_sensitivity(w_in, g_in, w_out, g_out, [b], [gb])
    # by hand: row |w*g| sums (2+2, 2+0, 3+0) + column sums (1+0, 2+2, 0+2) + bias (1, 1, 0)
    assert got.tolist() == [4 + 1 + 1, 2 + 4 + 1, 3 + 2 + 0]


def test_ema_and_activation_importance():
    avg = torch.tensor([1.0, 0.0])
    ema_(avg, torch.tensor([3.0, 2.0]), beta=0.75)
    assert torch.allclose(avg, torch.tensor([1.5, 0.5]))
    per_seq = torch.tensor([[3.0, 0.0], [4.0, 1.0]])
    assert activation_importance(per_seq).tolist() == [5.0, 1.0]


@pytest.mark.parametrize("shape", ["cubic", "linear", "cosine"])
def test_schedule_starts_wide_is_monotone_and_hits_the_target_exactly(shape):
    widths = [scheduled_width(s, 10, 40, 666, 256, shape) for s in range(0, 51)]
    assert widths[:11] == [666] * 11
    assert all(a >= b for a, b in zip(widths, widths[1:], strict=False))
    assert widths[40] == 256 and widths[50] == 256 and widths[39] > 256


def test_cubic_schedule_prunes_fast_early():
    # (1 - p)^3 at p = 1/2 leaves 1/8 of the removable neurons
    assert scheduled_width(20, 0, 40, 264, 200, "cubic") == 200 + 8


def test_keep_top_is_deterministic_and_respects_alive():
    scores = torch.tensor([0.5, 2.0, 2.0, 1.0, 3.0])
    assert keep_top(scores, 3).tolist() == [1, 2, 4]
    alive = torch.tensor([True, False, True, True, True])
    assert keep_top(scores, 3, alive).tolist() == [2, 3, 4]
    with pytest.raises(ConfigError, match="cannot keep 5 neurons of 4 alive"):
        keep_top(scores, 5, alive)


# -- masks and removal --------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_removing_masked_neurons_gives_the_masked_models_outputs(family):
    model = tiny_model(family, seed=0).double()
    sites = ffn_sites(model)
    keep = random_keep(sites[0].width, 45, len(sites))
    masks = NeuronMasks(sites).attach()
    for i, k in enumerate(keep):
        masks.masks[i] = torch.zeros(sites[0].width, dtype=torch.bool).index_fill_(0, k, True)
    ids = torch.randint(3, 512, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        masked = model(input_ids=ids).logits
    masks.detach()
    params_before = sum(p.numel() for p in model.parameters())
    assert shrink_ffn_(model, keep) == 45
    with torch.no_grad():
        shrunk = model(input_ids=ids).logits
    assert torch.allclose(masked, shrunk, rtol=0, atol=1e-12)  # float64: only summation order differs
    assert ffn_width(model) == 45
    assert sum(p.numel() for p in model.parameters()) < params_before


@pytest.mark.parametrize("family", FAMILIES)
def test_shrunk_model_saves_and_loads_in_plain_transformers(family, tmp_path, tiny_tok):
    model = tiny_model(family, seed=0)
    shrink_ffn_(model, random_keep(128, 40, 2))
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert ffn_width(loaded) == 40
    ids = torch.randint(3, 512, (1, 8))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model.eval()(input_ids=ids).logits)


def test_shrink_slices_the_optimizer_state_of_the_survivors():
    model = tiny_model("llama", seed=0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = corpus()[:65].view(1, -1)
    from slimkit.train.loop import causal_lm_loss

    causal_lm_loss(model, ids).backward()
    opt.step()
    site = ffn_sites(model)[0]
    up_before = opt.state[site.inputs[1].weight]["exp_avg"].clone()
    down_before = opt.state[site.output.weight]["exp_avg_sq"].clone()
    keep = random_keep(128, 30, 2)
    shrink_ffn_(model, keep, optimizer=opt)
    assert torch.equal(opt.state[site.inputs[1].weight]["exp_avg"], up_before[keep[0]])
    assert torch.equal(opt.state[site.output.weight]["exp_avg_sq"], down_before[:, keep[0]])
    opt.zero_grad()
    causal_lm_loss(model, ids).backward()
    opt.step()  # the optimizer keeps working on the smaller parameters


def test_shrink_refuses_uneven_or_out_of_range_keeps():
    model = tiny_model("llama", seed=0)
    with pytest.raises(ConfigError, match="same number of neurons"):
        shrink_ffn_(model, [torch.arange(10), torch.arange(11)])
    with pytest.raises(ConfigError, match="outside"):
        shrink_ffn_(model, [torch.tensor([0, 500]), torch.tensor([0, 1])])
    with pytest.raises(ConfigError, match="index sets for 2 FFN blocks"):
        shrink_ffn_(model, [torch.arange(10)])


def test_fused_gate_up_is_refused_with_the_reason():
    with pytest.raises(UnsupportedArchitectureError, match="gate_up"):
        ffn_sites(tiny_model("phi3", seed=0))


# -- one-shot ffn-structured -----------------------------------------------------------------------------
@pytest.mark.parametrize("importance", ["sensitivity", "activation"])
@pytest.mark.parametrize("family", FAMILIES)
def test_one_shot_ffn_structured_gives_a_smaller_dense_model(family, importance, tmp_path, tiny_tok):
    assert COMPRESSORS.config_for("ffn-structured") is FFNStructuredConfig
    model = tiny_model(family, seed=0)
    calib = corpus()[: 4 * 32].view(4, 32)
    report = compress_(
        model, FFNStructuredConfig(prune_ratio=0.25, importance=importance), calib, progress=False
    )
    assert (report.width_before, report.width_after) == (128, 96)
    assert report.params_after < report.params_before
    assert ffn_width(model) == 96
    assert all(p.requires_grad for p in model.parameters()) and all(
        p.grad is None for p in model.parameters()
    )
    save_compressed(model, tiny_tok, tmp_path / "m", report)
    assert ffn_width(AutoModelForCausalLM.from_pretrained(tmp_path / "m")) == 96


def test_one_shot_sensitivity_keeps_the_neurons_that_matter():
    # a neuron whose down-projection column is zero contributes nothing: its sensitivity is 0
    model = tiny_model("llama", seed=0)
    sites = ffn_sites(model)
    dead = torch.arange(0, 128, 2)
    with torch.no_grad():
        for s in sites:
            s.output.weight[:, dead] = 0.0
    compress_(model, FFNStructuredConfig(target_width=64), corpus()[:128].view(4, 32), progress=False)
    with torch.no_grad():
        assert all(bool((s.output.weight.abs().sum(0) > 0).all()) for s in ffn_sites(model))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of target_width"),
        ({"target_width": 10, "prune_ratio": 0.5}, "exactly one of target_width"),
        ({"target_width": 0}, "target_width"),
        ({"prune_ratio": 1.0}, "prune_ratio"),
        ({"prune_ratio": 0.5, "importance": "random"}, "importance"),
    ],
)
def test_bad_ffn_structured_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FFNStructuredConfig(**kwargs)


def test_target_width_larger_than_the_model_is_refused():
    model = tiny_model("llama", seed=0)
    with pytest.raises(ConfigError, match="target_width=500 is larger than the model's FFN width 128"):
        compress_(model, FFNStructuredConfig(target_width=500), corpus()[:64].view(2, 32), progress=False)


def test_one_shot_without_calibration_is_refused():
    with pytest.raises(DataError, match="calibration"):
        compress_(tiny_model("llama"), FFNStructuredConfig(target_width=64), None, progress=False)


# -- iterative pruning inside train() -------------------------------------------------------------------------
def run(tmp_path, *, steps=24, start=6, end=16, max_steps=None, resume=False, every=1):
    model = tiny_model("llama", seed=0)
    pruner = IterativeFFNPrune(model, target_width=40, start_step=start, end_step=end, every=every)
    cfg = TrainConfig(
        steps=steps, batch_size=2, seqlen=16, warmup_steps=3, checkpoint_every=5, log_every=5,
        optimizer=AdamWConfig(lr=3e-3),
    )  # fmt: skip
    result = train(
        model, corpus(), cfg, tmp_path, resume=resume, callbacks=[pruner], max_steps_this_run=max_steps
    )
    return model, pruner, result


def test_iterative_pruning_reaches_the_target_at_the_end_of_the_phase(tmp_path):
    model, pruner, result = run(tmp_path)
    assert pruner.removed and ffn_width(model) == 40 and model.config.intermediate_size == 40
    widths = dict(pruner.widths)
    assert widths[16] == 40 and min(widths) == 7 and max(widths) == 16
    assert widths[7] == scheduled_width(7, 6, 16, 128, 40)
    assert result.steps == 24 and all(torch.isfinite(torch.tensor(result.losses)))


@pytest.mark.parametrize("stop", [9, 20])  # mid-pruning (masks) and after the removal
def test_resume_mid_pruning_continues_identically(tmp_path, stop):
    whole, _, whole_result = run(tmp_path / "whole")
    run(tmp_path / "cut", max_steps=stop)
    resumed, pruner, resumed_result = run(tmp_path / "cut", resume=True)
    assert resumed_result.losses == whole_result.losses
    assert pruner.removed and ffn_width(resumed) == 40
    for (n, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_lr_follows_one_warmup_and_cosine_through_pruning(tmp_path):
    lrs = []

    class Recorder:
        def on_update(self, step, model, optimizer):
            lrs.append(optimizer.param_groups[0]["lr"])

        def on_step_end(self, step, loss, model):
            pass

    model = tiny_model("llama", seed=0)
    pruner = IterativeFFNPrune(model, target_width=40, start_step=4, end_step=10)
    cfg = TrainConfig(steps=16, batch_size=2, seqlen=16, warmup_steps=3, optimizer=AdamWConfig(lr=1e-3))
    train(model, corpus(), cfg, callbacks=[pruner, Recorder()])
    expected = [1e-3 * cosine_with_warmup(s, 16, 3, cfg.min_lr_ratio) for s in range(1, 17)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_bad_iterative_settings():
    model = tiny_model("llama", seed=0)
    with pytest.raises(ConfigError, match="target width 500"):
        IterativeFFNPrune(model, target_width=500, start_step=0, end_step=5)
    with pytest.raises(ConfigError, match="start < end"):
        IterativeFFNPrune(model, target_width=50, start_step=5, end_step=5)
    with pytest.raises(ConfigError, match="width schedule"):
        IterativeFFNPrune(model, target_width=50, start_step=0, end_step=5, schedule="step")
