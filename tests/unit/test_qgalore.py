"""GaLore / Q-GaLore optimizers, INT8 training linears, layer-wise stepping, resume, DDP."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from slimkit.core.errors import ConfigError, TargetError
from slimkit.nn import quant_primitives as qp
from slimkit.nn.int8 import Int8TrainingLinear, prepare_int8_training_, restore_linears_
from slimkit.optim import GaLoreAdamW, GaLoreConfig, LayerwiseStepper, QGaLoreAdamW, QGaLoreConfig
from slimkit.optim.galore import galore_param_groups
from slimkit.train import AdamWConfig, TrainConfig, train

VOCAB = 64


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg)


def corpus(n: int = 4000, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n) % VOCAB
    noise = torch.randint(0, VOCAB, (n,), generator=g)
    return torch.where(torch.rand(n, generator=g) < 0.2, noise, base)


QG = dict(rank=8, update_proj_gap=3, proj_group_size=64, weight_group_size=32, scale=1.0)


def cfg(opt, **kw) -> TrainConfig:
    base = dict(steps=6, batch_size=4, seqlen=16, warmup_steps=1, log_every=2, grad_clip=1.0, optimizer=opt)
    return TrainConfig(**{**base, **kw})


# -- GaLore ------------------------------------------------------------------------------------------------
def test_galore_at_full_rank_matches_adamw():
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16))
    mine = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16))
    mine.load_state_dict(ref.state_dict())
    groups = galore_param_groups(mine, rank=16, targets=["re:^[02]$"], scale=1.0, weight_decay=0.1)
    opt_a = torch.optim.AdamW(
        [
            {"params": [ref[0].weight, ref[2].weight], "weight_decay": 0.1},
            {"params": [ref[0].bias, ref[2].bias], "weight_decay": 0.0},
        ],
        lr=1e-2,
        betas=(0.9, 0.999),
        eps=1e-6,
    )
    opt_g = GaLoreAdamW(groups, lr=1e-2)
    x = torch.randn(32, 16)
    for _ in range(5):
        for model, opt in ((ref, opt_a), (mine, opt_g)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(ref.parameters(), mine.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_galore_low_rank_state_is_small_and_svd_counted():
    model = tiny_llama()
    opt = GaLoreAdamW(galore_param_groups(model, rank=4, update_proj_gap=2), lr=1e-3)
    x = torch.randint(0, VOCAB, (2, 9))
    for _ in range(5):
        opt.zero_grad()
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
    counts = opt.svd_counts(model)
    assert set(counts) == {n for n, _ in model.named_parameters() if ("attn." in n or "mlp." in n)}
    assert all(c == 3 for c in counts.values())  # steps 0, 2, 4
    st = opt.state[model.model.layers[0].mlp.up_proj.weight]  # [64, 32]: right side, moments [64, 4]
    assert st["exp_avg"].shape == (64, 4) and st["proj"].shape == (32, 4)


def test_refresh_stagger_spreads_the_svds_and_holds_weights_until_their_first():
    """With refresh_stagger S the n projected weights' first SVDs are spread over S steps (about n / S
    per step, not n at step 0); a weight is unchanged until its first SVD; later refreshes stay spread."""
    model = tiny_llama()
    groups = galore_param_groups(model, rank=4, update_proj_gap=4, refresh_stagger=4)
    projected = next(g for g in groups if g["rank"] is not None)["params"]
    n = len(projected)  # 2 layers x 7 linears
    opt = GaLoreAdamW(groups, lr=1e-3)
    x = torch.randint(0, VOCAB, (2, 9))
    totals = []
    for step in range(8):
        before = [p.detach().clone() for p in projected]
        opt.zero_grad()
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        totals.append(sum(opt.svd_counts().values()))
        for k, (p, b) in enumerate(zip(projected, before, strict=True)):
            first = k * 4 // n
            assert torch.equal(p, b) == (step < first), (step, k)
    per_step = [b - a for a, b in zip([0, *totals], totals, strict=False)]
    assert per_step[:4] == [len([k for k in range(n) if k * 4 // n == s]) for s in range(4)]
    assert max(per_step) <= -(-n // 4) and sum(per_step[:4]) == n
    assert per_step[4:] == per_step[:4]  # the refreshes, update_proj_gap later, keep the spread
    # without stagger every SVD runs at step 0
    plain = GaLoreAdamW(galore_param_groups(tiny_llama(), rank=4, update_proj_gap=4), lr=1e-3)
    assert plain.param_groups[-1]["refresh_stagger"] == 0


def test_refresh_stagger_rejects_bad_values():
    with pytest.raises(ConfigError, match="refresh_stagger"):
        GaLoreConfig(rank=4, refresh_stagger=-1)
    with pytest.raises(ConfigError, match="refresh_stagger"):
        GaLoreConfig(rank=4, refresh_stagger=1.5)
    with pytest.raises(ConfigError, match="refresh_stagger"):
        GaLoreAdamW(galore_param_groups(tiny_llama(), rank=4, refresh_stagger=-2), lr=1e-3)


def test_bad_param_groups_rejected():
    with pytest.raises(ConfigError, match="2-D"):
        GaLoreAdamW([{"params": [nn.Parameter(torch.randn(8))], "rank": 2}])
    with pytest.raises(ConfigError, match="rank"):
        GaLoreAdamW([{"params": [nn.Parameter(torch.randn(8, 4))], "rank": 5}])
    with pytest.raises(ConfigError, match="rank"):
        GaLoreAdamW([{"params": [nn.Parameter(torch.randn(8, 4))], "rank": 0}])
    with pytest.raises(ConfigError, match="does not divide"):
        QGaLoreAdamW([{"params": [nn.Parameter(torch.randn(30, 30))], "rank": 3}])  # 30 x 3 not / 256
    with pytest.raises(ConfigError, match="unknown options"):
        GaLoreAdamW([nn.Parameter(torch.randn(2, 2))], rnak=3)
    with pytest.raises(ConfigError, match="rank"):
        GaLoreConfig(rank=0)
    with pytest.raises(ConfigError, match="proj_type"):
        GaLoreConfig(proj_type="full")
    with pytest.raises(ConfigError, match="cos_threshold"):
        QGaLoreConfig(cos_threshold=1.5)
    assert QGaLoreConfig(weight_group_size=None).weight_group_size is None  # one group per row
    with pytest.raises(ConfigError, match="weight_group_size"):
        QGaLoreConfig(weight_group_size=0)


# -- INT8 training linears -----------------------------------------------------------------------------------
def test_int8_linear_forward_backward_match_dequantized_float():
    torch.manual_seed(0)
    lin = nn.Linear(64, 8)
    q = Int8TrainingLinear.from_linear(lin, group_size=32)
    assert q.weight.dtype == torch.int8 and q.weight_scale.shape == (8, 2)
    w_hat = q.dequantized_weight()
    bound = qp.max_rounding_error(q.weight_scale, 32, 64)
    assert torch.all((w_hat - lin.weight).abs() <= bound + 1e-7)
    ref = nn.Linear(64, 8)
    ref.weight.data.copy_(w_hat)
    ref.bias.data.copy_(lin.bias)
    x = torch.randn(3, 5, 64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y, y_ref = q(x), ref(x2)
    assert torch.allclose(y, y_ref, atol=1e-5)
    y.sum().backward()
    y_ref.sum().backward()
    assert q.weight.grad.dtype == torch.float32
    assert torch.allclose(q.weight.grad, ref.weight.grad, atol=1e-4)
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)
    assert torch.allclose(q.bias.grad, ref.bias.grad, atol=1e-5)


def test_int8_update_stochastic_rounding_unbiased_nearest_biased():
    torch.manual_seed(0)
    q = Int8TrainingLinear(32, 4, bias=False, group_size=32)
    q.set_weight_(torch.linspace(-1, 1, 128).reshape(4, 32))
    step = float(q.weight_scale[0, 0])
    delta = torch.full((4, 32), 0.1 * step)  # a tenth of a quantisation step
    delta[:, 0] = delta[:, -1] = 0  # keep every group's range (and so its scale) fixed
    start = q.dequantized_weight()
    nearest = Int8TrainingLinear(32, 4, bias=False, group_size=32)
    nearest.load_state_dict(q.state_dict())
    for _ in range(50):
        q.add_(delta)
        nearest.add_(delta, stochastic=False)
    moved = (q.dequantized_weight() - start)[:, 1:-1].mean() / step
    assert moved == pytest.approx(5.0, abs=0.6)  # 50 x 0.1 steps, in expectation
    assert torch.equal(nearest.dequantized_weight(), start)  # nearest rounds every nudge away


def test_prepare_int8_training_targets_and_bad_input():
    model = tiny_llama()
    names = prepare_int8_training_(model, group_size=32)
    assert len(names) == 14 and all("attn." in n or "mlp." in n for n in names)
    assert not isinstance(model.lm_head, Int8TrainingLinear)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, VOCAB)
    assert restore_linears_(model) == names
    with pytest.raises(ConfigError, match="does not divide"):
        prepare_int8_training_(tiny_llama(), group_size=24)
    with pytest.raises(TargetError):
        prepare_int8_training_(tiny_llama(), targets=["re:nothing_here"])


# -- training through slimkit.train ------------------------------------------------------------------------------
def test_qgalore_tiny_llama_trains_to_within_10_percent_of_adamw():
    ids = corpus()
    losses = {}
    for name, opt in {
        "adamw": AdamWConfig(lr=3e-3),
        "q-galore": QGaLoreConfig(lr=3e-3, **QG),
    }.items():
        model = tiny_llama()
        result = train(model, ids, cfg(opt, steps=40))
        losses[name] = sum(result.losses[-5:]) / 5
        if name == "q-galore":
            assert any(isinstance(m, Int8TrainingLinear) for m in model.modules())
            assert losses[name] < result.losses[0] - 0.5  # it learned (from ln 64 = 4.16 nats)
    assert losses["q-galore"] <= 1.10 * losses["adamw"], losses


@pytest.mark.slow
@pytest.mark.integration
def test_qgalore_trains_the_default_world_model_to_within_10_percent_of_adamw():
    # the default world's architecture (4 x 256 LLaMA, 2048-token BPE), freshly initialised, on the
    # world corpus: 60 steps of 8 x 128 tokens each (about 45 s for both runs on 2 CPU cores)
    from slimkit.data.factworld import DOCUMENT_SEPARATOR
    from slimkit.models.default import (
        DEFAULT_RECIPE,
        build_default_architecture,
        default_model,
        default_world_dir,
    )
    from slimkit.train import tokenize_documents

    _, tok = default_model()
    text = (default_world_dir() / "corpus.txt").read_text()
    ids = tokenize_documents(tok, text.split(DOCUMENT_SEPARATOR), separator=DOCUMENT_SEPARATOR)
    base = dict(steps=60, batch_size=8, seqlen=128, warmup_steps=6, log_every=10, min_lr_ratio=0.1)
    opts = {
        "adamw": AdamWConfig(lr=1.5e-3, betas=(0.9, 0.95)),
        "q-galore": QGaLoreConfig(
            lr=1.5e-3, betas=(0.9, 0.95), rank=64, update_proj_gap=20, scale=1.0, weight_group_size=16
        ),
    }
    losses = {}
    for name, opt in opts.items():
        model = build_default_architecture(DEFAULT_RECIPE, len(tok), tok)
        result = train(model, ids, TrainConfig(optimizer=opt, **base))
        losses[name] = sum(result.losses[-5:]) / 5
    assert losses["q-galore"] <= 1.10 * losses["adamw"], losses
    assert losses["adamw"] < 4.0  # both learned (ln 2048 = 7.6 nats at the start)


def test_state_dict_loads_weights_only_and_resume_is_exact(tmp_path):
    ids = corpus()
    opt_cfg = QGaLoreConfig(lr=3e-3, **QG)
    full_model = tiny_llama()
    full = train(full_model, ids, cfg(opt_cfg))
    part_model = tiny_llama()
    train(part_model, ids, cfg(opt_cfg, checkpoint_every=3), tmp_path, max_steps_this_run=3)
    resumed_model = tiny_llama()
    resumed = train(resumed_model, ids, cfg(opt_cfg, checkpoint_every=3), tmp_path, resume=True)
    assert resumed.losses == full.losses
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    model = tiny_llama()
    prepare_int8_training_(model, group_size=32)
    opt = QGaLoreAdamW(galore_param_groups(model, rank=8, proj_group_size=64), lr=1e-3)
    x = torch.randint(0, VOCAB, (2, 9))
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    st = loaded["state"][len(loaded["state"]) - 1]
    assert st["proj_codes"].dtype == torch.uint8 and st["exp_avg"].dtype == torch.float32
    opt2 = QGaLoreAdamW(galore_param_groups(model, rank=8, proj_group_size=64), lr=1e-3)
    opt2.load_state_dict(loaded)
    p = model.model.layers[1].mlp.down_proj.weight
    assert p.dtype == torch.int8 and opt2.state[p]["exp_avg"].dtype == torch.float32


# -- layer-wise stepping ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("int8", [False, True])
def test_layerwise_matches_global_step_with_grad_accum(int8):
    ids = corpus()
    opt_cfg = (QGaLoreConfig if int8 else GaLoreConfig)(
        lr=3e-3,
        rank=8,
        update_proj_gap=2,
        **({"proj_group_size": 64, "weight_group_size": 32} if int8 else {}),
    )
    runs = {}
    for layerwise in (False, True):
        model = tiny_llama()
        result = train(
            model, ids, cfg(opt_cfg.replace(layerwise=layerwise), steps=4, grad_accum=2, grad_clip=0.0)
        )
        runs[layerwise] = (result.losses, model.state_dict())
    if not int8:  # stochastic rounding draws in a different order layer-wise, so only float is exact
        assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-5)
        for a, b in zip(runs[True][1].values(), runs[False][1].values(), strict=True):
            assert torch.allclose(a, b, atol=1e-5)
    init_model = tiny_llama()
    if int8:
        prepare_int8_training_(init_model, group_size=32)
    init = init_model.state_dict()
    params = {n for n, _ in init_model.named_parameters()}
    changed = {k for k in params if not torch.equal(runs[True][1][k], init[k])}
    assert changed == params  # embeddings, norms, head and projected weights all stepped


def test_layerwise_refuses_global_clipping_and_plain_adamw():
    with pytest.raises(ConfigError, match="grad_clip=1.0 cannot be combined"):
        cfg(GaLoreConfig(rank=8, layerwise=True), grad_clip=1.0)  # refused when the config is made
    with pytest.raises(ConfigError, match="grad_clip"):
        TrainConfig.from_dict(
            {"optimizer": {"name": "q-galore", "rank": 8, "layerwise": True}, "grad_clip": 0.5}
        )
    opt = GaLoreAdamW(galore_param_groups(tiny_llama(), rank=8), lr=1e-3)
    stepper = LayerwiseStepper(opt)
    with pytest.raises(ConfigError, match="global gradient clipping"):  # and by the optimizer itself
        opt.configure_for_loop(grad_accum=1, clip_norm=1.0)
    stepper.remove()
    with pytest.raises(ConfigError, match="step_param"):
        LayerwiseStepper(torch.optim.AdamW(tiny_llama().parameters()))


# -- DDP ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["galore", "q-galore"])
def test_ddp_two_gloo_ranks_stay_identical(tmp_path, kind):
    worker = Path(__file__).with_name("qgalore_ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    # a session of its own, so a hang kills torchrun *and* its workers
    proc = subprocess.Popen(
        [*launch, str(worker), str(tmp_path), kind],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["svd"] == r1["svd"] and set(r0["svd"].values()) == {3}  # SVDs at steps 0, 2, 4
    init = tiny_llama().state_dict()
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k  # the ranks computed the same subspaces and updates
    moved = [k for k in init if k in r0["state"] and not torch.equal(init[k], r0["state"][k])]
    assert len(moved) >= len(init) // 2


# -- YAML / slimkit train --------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("name", "cls"), [("galore", GaLoreConfig), ("qgalore", QGaLoreConfig)])
def test_shipped_60m_configs_load(name, cls):
    from slimkit.train.recipe import load_recipe

    recipe = load_recipe(REPO / "configs" / f"{name}_60m_world.yaml")
    assert type(recipe.train.optimizer) is cls and recipe.train.optimizer.rank == 128
    init = recipe.model["init"]
    assert (init["hidden_size"], init["intermediate_size"], init["num_hidden_layers"]) == (512, 1376, 8)


def test_yaml_q_galore_runs_through_slimkit_train(tmp_path, capsys):
    from slimkit.cli.main import main
    from slimkit.models.loading import load_model

    text = (REPO / "configs" / "qgalore_60m_world.yaml").read_text()
    for old, new in [
        ("hidden_size: 512", "hidden_size: 64"),
        ("intermediate_size: 1376", "intermediate_size: 128"),
        ("num_hidden_layers: 8", "num_hidden_layers: 2"),
        ("vocab_size: 2048", "vocab_size: 300"),
        ("steps: 600", "steps: 4"),
        ("warmup_steps: 60", "warmup_steps: 1"),
        ("batch_size: 16", "batch_size: 2"),
        ("seqlen: 256", "seqlen: 32"),
        ("rank: 128", "rank: 8"),
        ("update_proj_gap: 200", "update_proj_gap: 2"),
        ("proj_group_size: 256", "proj_group_size: 64"),
        ("checkpoint_every: 250", "checkpoint_every: 2"),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    data = tmp_path / "text.txt"
    data.write_text("The quick brown fox jumps over the lazy dog. " * 400)
    config = tmp_path / "run.yaml"
    text = text.replace("data: world:corpus", f"data: {data}")
    config.write_text(text.replace("out: runs/qgalore_60m_world", f"out: {tmp_path / 'run'}"))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(config)])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    model, _ = load_model(tmp_path / "run" / "model")  # saved as plain nn.Linear (dequantised INT8)
    assert isinstance(model.model.layers[0].mlp.up_proj, nn.Linear)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape[:2] == (1, 3)


def test_layerwise_steps_on_the_last_micro_batch_and_frees_every_gradient():
    from slimkit.core.errors import SlimkitError

    model = tiny_llama()
    prepare_int8_training_(model, group_size=32)
    opt = QGaLoreAdamW(galore_param_groups(model, rank=8, proj_group_size=64), lr=1e-2)
    stepper = LayerwiseStepper(opt, grad_accum=2)
    params = dict(model.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    x = torch.randint(0, VOCAB, (2, 9))
    model(input_ids=x, labels=x).loss.backward()  # micro-batch 1 of 2: accumulate only
    assert all(p.grad is not None for p in params.values())
    assert all(torch.equal(p, before[n]) for n, p in params.items())
    with pytest.raises(SlimkitError, match="fewer micro-batches"):
        opt.step()
    model(input_ids=x, labels=x).loss.backward()  # micro-batch 2: every parameter stepped, grad freed
    assert all(p.grad is None for p in params.values())
    assert all(not torch.equal(p, before[n]) for n, p in params.items())
    opt.step()  # a no-op that finds nothing half-way
    assert len(opt.state) == len(params)  # embeddings, norms and lm_head have state too
    stepper.remove()


@pytest.mark.parametrize("layerwise", [False, True])
def test_torch_save_load_weights_only_resumes_exactly(layerwise):
    def fresh():
        model = tiny_llama()
        prepare_int8_training_(model, group_size=32)
        groups = galore_param_groups(model, rank=8, update_proj_gap=2, proj_group_size=64)
        opt = QGaLoreAdamW(groups, lr=1e-2, queue_size=2)
        if layerwise:
            LayerwiseStepper(opt)
        return model, opt

    def step(model, opt, i):
        torch.manual_seed(1000 + i)  # the same stochastic-rounding draws in both runs
        x = torch.randint(0, VOCAB, (2, 9))
        opt.zero_grad()
        model(input_ids=x, labels=x).loss.backward()
        opt.step()

    model_a, opt_a = fresh()
    for i in range(5):
        step(model_a, opt_a, i)
    buf = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # plain tensors, numbers, strings and lists only
    model_b, opt_b = fresh()
    model_b.load_state_dict(saved["model"])
    opt_b.load_state_dict(saved["opt"])
    assert opt_b.svd_counts() == opt_a.svd_counts() and sum(opt_a.svd_counts().values()) > 0
    for i in range(5, 10):  # crosses SVD refreshes (steps 6, 8) and grows the adaptive gap
        step(model_a, opt_a, i)
        step(model_b, opt_b, i)
    for (k, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    gaps = {st["gap"] for st in opt_a.state.values() if "gap" in st}
    assert gaps == {st["gap"] for st in opt_b.state.values() if "gap" in st}


@pytest.mark.parametrize("name", ["galore", "q-galore"])
def test_slimkit_finetune_full_with_galore_optimizers(tmp_path, name, capsys):
    from slimkit.cli.main import main
    from slimkit.data.tokenizer import train_bpe_tokenizer
    from slimkit.models.loading import load_model, save_model

    text = "The quick brown fox jumps over the lazy dog. A lazy dog sleeps. " * 200
    tok = train_bpe_tokenizer([text], vocab_size=300)
    torch.manual_seed(0)
    cfg_ = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    base = LlamaForCausalLM(cfg_)
    save_model(base, tok, tmp_path / "base")
    data = tmp_path / "text.txt"
    data.write_text(text)
    extra = "proj_group_size: 64, weight_group_size: 32" if name == "q-galore" else "svd: randomized"
    (tmp_path / "ft.yaml").write_text(
        f"data: {data}\n"
        "train:\n  steps: 4\n  batch_size: 2\n  seqlen: 32\n  warmup_steps: 1\n  grad_clip: 1.0\n"
        f"  optimizer: {{name: {name}, lr: 0.003, rank: 8, update_proj_gap: 2, {extra}}}\n"
        f"out: {tmp_path / 'run'}\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", str(tmp_path / "base"), "--full", str(tmp_path / "ft.yaml")])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    tuned, _ = load_model(tmp_path / "run" / "model")
    up = tuned.model.layers[0].mlp.up_proj
    assert isinstance(up, nn.Linear)
    assert not torch.equal(up.weight, base.model.layers[0].mlp.up_proj.weight)  # it was trained
