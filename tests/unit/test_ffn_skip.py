"""FFN-SkipLLM on tiny models: never-skip is dense, skipped FFNs leave the residual, warm-up and cold
layers run, rows decide alone, the KV cache stays full, save/load keeps τ, calibration hits its target;
the baselines (layer-drop, early-exit); bad input gives one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from tests.unit.cli_helpers import assert_one_line_error, run

from slimkit.compress import EarlyExitConfig, FFNSkipConfig, LayerDropConfig, compress_, save_compressed
from slimkit.compress.skip.gate import NEVER, closest_threshold, next_skip_left, saturation
from slimkit.compress.skip.sites import block_flops
from slimkit.core.errors import ConfigError, DataError
from slimkit.models import load_model, save_model, tiny_model
from slimkit.models.tiny import FAMILIES
from slimkit.nn.ffn_skip import FFNSkip, get_skip_state, remove_skip_, skip_session, skip_stats
from slimkit.nn.layer_skip import BlockBypass, remove_layer_skip_

LAYERS = 4
PROMPTS = torch.randint(3, 512, (3, 6), generator=torch.Generator().manual_seed(0))
CALIB = torch.randint(3, 512, (4, 16), generator=torch.Generator().manual_seed(1))
SMALL = {"prompts": 4, "prompt_len": 8, "new_tokens": 8, "warmup_tokens": 1}


def _model(family="llama", layers=LAYERS):
    return tiny_model(family, seed=0, num_hidden_layers=layers)


def _generate(model, ids=PROMPTS, new=6, **kwargs):
    with torch.no_grad():
        return model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
            **kwargs,
        )


def _decisions(model):
    """Per forward pass, per eligible layer: the rows that skipped (filled in while generating)."""
    state = get_skip_state(model)
    log: list[dict[int, list[bool]]] = []
    blocks = model.get_submodule(state.blocks_path)

    def begin(mod, args, kwargs):
        log.append({})

    def after_pre(layer):
        def hook(mod, args):
            skipping = state.skipping()
            log[-1][layer] = [] if skipping is None else skipping

        return hook

    handles = [model.register_forward_pre_hook(begin, with_kwargs=True)]
    for site in state.sites:
        # registered after the state's own pre-hook, so state.run is already decided
        handles.append(blocks[site.layer].register_forward_pre_hook(after_pre(site.layer)))
    return log, handles


# -- pure math ------------------------------------------------------------------------------------------
def test_saturation_and_countdown():
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert saturation(h, h).tolist() == pytest.approx([1.0, 1.0, 0.0])  # zero rows never trigger
    assert saturation(h[:1], torch.tensor([[0.0, 1.0]])).item() == pytest.approx(0.0)
    left = torch.tensor([0, 2, 0])
    ran = left == 0
    cos = torch.tensor([0.99, 0.5, 0.5])
    assert next_skip_left(left, ran, cos, 0.9, 3).tolist() == [3, 1, 0]
    assert next_skip_left(left, ran, None, 0.9, 3).tolist() == [0, 1, 0]  # the last layer never triggers


def test_closest_threshold_bisects_a_falling_measure():
    candidates = [i / 10 for i in range(11)]
    tau, got, trace = closest_threshold(candidates, lambda t: 1 - t, 0.25)
    assert tau == pytest.approx(0.8) and got == pytest.approx(0.2) or tau == pytest.approx(0.7)
    assert len(trace) <= 5


# -- correctness ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_never_skip_is_dense_and_removal_restores(family):
    model = _model(family)
    dense_out = _generate(model)
    dense_logits = model(PROMPTS).logits
    compress_(model, FFNSkipConfig(threshold=NEVER), progress=False)
    assert any(isinstance(m, FFNSkip) for m in model.modules())
    assert torch.equal(_generate(model), dense_out)
    assert skip_stats(model)["ffn_skipped"] == 0 and skip_stats(model)["tokens"] == 3 * 6
    remove_skip_(model)
    assert not any(isinstance(m, FFNSkip) for m in model.modules()) and get_skip_state(model) is None
    assert not model._forward_pre_hooks
    assert torch.equal(model(PROMPTS).logits, dense_logits)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_always_skip_runs_every_family_with_full_cache(family):
    model = _model(family)
    compress_(model, FFNSkipConfig(threshold=-1.0, cold_end=0, warmup_tokens=1), progress=False)
    out = _generate(model, new=5, return_dict_in_generate=True)
    stats = skip_stats(model)
    # eligible 1..3: layer 1 always triggers, layers 2 and 3 skip for every token past the warm-up
    assert stats["layer_skip_ratio"] == pytest.approx([0, 0, 4 / 5, 4 / 5])
    assert stats["skip_ratio"] == pytest.approx(2 * 4 / (4 * 5))
    cache = out.past_key_values
    full = PROMPTS.shape[1] + 5 - 1
    assert [cache.get_seq_length(i) for i in range(LAYERS)] == [full] * LAYERS


def test_skipped_ffn_leaves_the_residual_unchanged():
    model = _model("llama")
    compress_(model, FFNSkipConfig(threshold=-1.0, cold_end=0, warmup_tokens=1), progress=False)
    seen = []
    block = model.model.layers[3]
    mid = {}
    h1 = block.post_attention_layernorm.register_forward_pre_hook(lambda m, a: mid.update(h=a[0]))
    h2 = block.register_forward_hook(
        lambda m, a, out: seen.append((mid["h"].shape[1], torch.equal(out, mid["h"])))
    )
    _generate(model, new=4)
    h1.remove(), h2.remove()
    # the prompt pass and the warm-up token compute the FFN; every later token passes the residual through
    assert [s for s in seen] == [(6, False), (1, True), (1, True), (1, True)]


def test_warmup_tokens_and_cold_layers_never_skip():
    model = _model("llama", layers=5)
    compress_(model, FFNSkipConfig(threshold=-1.0, cold_start=1, cold_end=1, warmup_tokens=3), progress=False)
    log, handles = _decisions(model)
    ran = {i: 0 for i in range(5)}
    for i in (0, 4):  # the cold layers are not wrapped at all: their MLPs run on every pass
        handles.append(
            model.model.layers[i].mlp.register_forward_hook(
                lambda m, a, o, i=i: ran.__setitem__(i, ran[i] + 1)
            )
        )
    _generate(model, new=6)
    for h in handles:
        h.remove()
    assert ran == {0: 6, 1: 0, 2: 0, 3: 0, 4: 6}
    assert [any(any(r) for r in step.values()) for step in log] == [False, False, False, True, True, True]
    assert skip_stats(model)["layer_skip_ratio"][0] == 0 and skip_stats(model)["layer_skip_ratio"][4] == 0
    assert set(get_skip_state(model).position) == {1, 2, 3}


def _gap_threshold(model):
    """A τ in the widest gap between recorded saturations: no decision sits near it."""
    state = get_skip_state(model)
    state.recorded = []
    _generate(model, new=6)
    values = sorted(torch.cat(state.recorded).tolist())
    state.recorded = None
    mid = len(values) // 2
    window = values[max(mid - 8, 0) : mid + 8]
    gaps = [(b - a, (a + b) / 2) for a, b in zip(window, window[1:], strict=False)]
    return max(gaps)[1]


def test_batched_and_single_sequence_make_the_same_decisions():
    model = _model("llama", layers=6)
    compress_(model, FFNSkipConfig(threshold=NEVER, cold_end=0, warmup_tokens=1, extent=2), progress=False)
    get_skip_state(model).threshold = _gap_threshold(model)
    log, handles = _decisions(model)
    batched = _generate(model)
    batch_log = list(log)
    singles = []
    for row in range(PROMPTS.shape[0]):
        log.clear()
        singles.append((_generate(model, ids=PROMPTS[row : row + 1]), [dict(step) for step in log]))
    for h in handles:
        h.remove()
    skipped_any = False
    for row, (out, single_log) in enumerate(singles):
        assert torch.equal(out[0], batched[row])
        for step_b, step_s in zip(batch_log, single_log, strict=True):
            for layer, rows in step_b.items():
                mine = rows[row] if rows else False
                assert mine == (step_s[layer][0] if step_s[layer] else False)
                skipped_any |= mine
    assert skipped_any  # the test means something: some rows skipped, some did not
    assert 0 < skip_stats(model)["skip_ratio"] < 1


def test_gathering_runs_the_ffn_on_running_rows_only():
    model = _model("llama")
    compress_(model, FFNSkipConfig(threshold=NEVER, cold_end=0, warmup_tokens=1), progress=False)
    state = get_skip_state(model)
    state.threshold = _gap_threshold(model)
    rows_seen = []
    inner = model.model.layers[2].mlp.inner
    handle = inner.register_forward_pre_hook(lambda m, a: rows_seen.append(a[0].shape[0]))
    _generate(model)
    handle.remove()
    skipped = round(skip_stats(model)["layer_skip_ratio"][2] * skip_stats(model)["tokens"])
    assert skipped > 0
    # every decode pass past the warm-up ran the FFN on the rows that did not skip, and only on them
    assert sum(rows_seen[1:]) == 3 * 5 - skipped


def test_session_and_saved_model_keep_tau(tmp_path, tiny_tok):
    model = _model("llama")
    report = compress_(model, FFNSkipConfig(threshold=0.5, cold_end=0), progress=False)
    assert report.threshold == 0.5 and report.achieved is None
    expected = _generate(model)
    out = save_compressed(model, tiny_tok, tmp_path / "skip", report)
    meta = json.loads((out / "slimkit.json").read_text())
    assert meta["restore"] == ["ffn-skip"] and meta["ffn-skip"]["threshold"] == 0.5
    loaded, _ = load_model(out)
    assert get_skip_state(loaded).threshold == 0.5
    assert torch.equal(_generate(loaded), expected)
    with skip_session(loaded, max_new_tokens=6) as state:
        assert state.clock.force_new
    remove_skip_(loaded)
    assert torch.equal(loaded(PROMPTS).logits, remove_skip_(model)(PROMPTS).logits)


def test_calibration_reaches_the_target_ratio():
    model = _model("llama", layers=6)
    report = compress_(model, FFNSkipConfig(target_ratio=0.25, cold_end=0, **SMALL), CALIB, progress=False)
    assert abs(report.achieved - 0.25) <= 0.02
    assert -1 <= report.threshold <= 1 and report.trace
    assert 0 < report.compute_fraction_saved < report.achieved  # the FFN is only part of a block
    assert skip_stats(model)["tokens"] == 0  # calibration decodes are not counted afterwards
    zero = compress_(
        _model("llama", layers=6), FFNSkipConfig(target_ratio=0.0, cold_end=0, **SMALL), CALIB, progress=False
    )
    assert zero.achieved == 0.0


def test_block_flops_split():
    flops = block_flops(_model("llama"))
    # tiny llama: q,o 64x64, k,v 64x32 (2 kv heads of 4); gate, up, down 64x128
    assert flops[0].attention == 2 * (2 * 64 * 64 + 2 * 64 * 32) and flops[0].kv == 2 * 2 * 64 * 32
    assert flops[0].ffn == 2 * 3 * 64 * 128


# -- baselines ------------------------------------------------------------------------------------------------
def test_layer_drop_removes_lowest_influence_blocks_not_the_first():
    model = _model("llama", layers=6)
    dense = model(PROMPTS).logits
    report = compress_(model, LayerDropConfig(compute_ratio=0.34), CALIB, progress=False)
    removed = report.stats["removed_layers"]
    bi = report.stats["block_influence"]
    assert len(removed) == 2 and 0 not in removed and report.achieved == pytest.approx(2 / 6)
    assert all(bi[i] <= min(bi[j] for j in range(1, 6) if j not in removed) for i in removed)
    assert sum(isinstance(b, BlockBypass) for b in model.model.layers) == 2
    out = _generate(model, return_dict_in_generate=True)
    lengths = [out.past_key_values.get_seq_length(i) for i in range(6)]
    assert [lengths[i] == 0 for i in range(6)] == [
        i in removed for i in range(6)
    ]  # no KV for a removed block
    remove_layer_skip_(model)
    assert torch.equal(model(PROMPTS).logits, dense)


def test_early_exit_copies_state_and_fills_the_cache():
    model = _model("llama", layers=6)
    dense = _generate(model)
    compress_(model, EarlyExitConfig(threshold=NEVER, warmup_tokens=1), progress=False)
    assert torch.equal(_generate(model), dense)
    remove_layer_skip_(model)
    compress_(model, EarlyExitConfig(threshold=-1.0, warmup_tokens=1, min_layer=1), progress=False)
    out = _generate(model, return_dict_in_generate=True)
    assert [out.past_key_values.get_seq_length(i) for i in range(6)] == [6 + 6 - 1] * 6
    from slimkit.nn.layer_skip import get_early_exit_state

    stats = get_early_exit_state(model).stats()
    assert stats["layer_exit_ratio"] == pytest.approx([0, 0] + [5 / 6] * 4)  # exit after block 1, every token
    remove_layer_skip_(model)
    assert torch.equal(_generate(model), dense)


def _row_counter(model, names):
    """Rows entering the wrapped inner modules named ``names`` (block-relative), per block."""
    from slimkit.nn.layer_skip import get_early_exit_state

    state = get_early_exit_state(model)
    blocks = model.get_submodule(state.blocks_path)
    seen = {}
    handles = []
    for site in state.sites:
        for name in names:
            inner = blocks[site.layer].get_submodule(name).inner

            def hook(mod, args, key=(site.layer, name)):
                seen[key] = seen.get(key, 0) + args[0].shape[0]

            handles.append(inner.register_forward_pre_hook(hook))
    return seen, handles


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma3", "phi3", "opt", "gpt2"])
def test_early_exit_later_blocks_compute_only_kv(family):
    """An exited row skips the query/output projections and MLP of every later block (its K/V still
    come from the copied state): the same tokens and KV cache as running those blocks whole."""
    from slimkit.nn.layer_skip import get_early_exit_state

    model = _model(family, layers=6)
    compress_(model, EarlyExitConfig(threshold=-1.0, warmup_tokens=1, min_layer=1), progress=False)
    state = get_early_exit_state(model)
    assert [s.layer for s in state.sites] == [2, 3, 4, 5]
    mlp = state.sites[0].modules[-1]
    names = [mlp, state.sites[0].modules[0]]
    prompt_only, handles = _row_counter(model, names)
    with torch.no_grad():
        model(PROMPTS)
    for h in handles:
        h.remove()
    seen, handles = _row_counter(model, names)
    fast = _generate(model, return_dict_in_generate=True)
    for h in handles:
        h.remove()
    # every row exits after block 1 at every decode step: later blocks run these on the prompt only
    assert seen == prompt_only
    state.kv_only = False  # the reference: later blocks run whole on the copied state
    ref = _generate(model, return_dict_in_generate=True)
    assert torch.equal(fast.sequences, ref.sequences)
    for i in range(6):
        for a, b in zip(_kv(fast.past_key_values, i), _kv(ref.past_key_values, i), strict=True):
            torch.testing.assert_close(a, b)


def test_early_exit_mixed_batch_gathers_rows_in_flight():
    from slimkit.nn.layer_skip import get_early_exit_state

    model = _model("llama", layers=6)
    state_probe = compress_(model, EarlyExitConfig(threshold=NEVER, warmup_tokens=1), progress=False)
    del state_probe
    state = get_early_exit_state(model)
    state.recorded = []
    _generate(model)
    median = float(torch.cat(state.recorded).median())
    state.recorded = None
    state.threshold = median  # some rows exit, some do not, at each step
    seen, handles = _row_counter(model, ["mlp"])
    fast = _generate(model, return_dict_in_generate=True)
    for h in handles:
        h.remove()
    stats = state.stats()
    decode_rows = PROMPTS.shape[0] * 5
    ran = sum(seen.values()) - PROMPTS.shape[0] * len(state.sites)  # decode-step rows entering the MLPs
    copied = sum(stats["layer_exit_ratio"][2:]) * stats["tokens"]
    assert 0 < copied < decode_rows * len(state.sites)
    assert ran == pytest.approx(decode_rows * len(state.sites) - copied)
    state.kv_only = False
    ref = _generate(model, return_dict_in_generate=True)
    assert torch.equal(fast.sequences, ref.sequences)
    for i in range(6):
        for a, b in zip(_kv(fast.past_key_values, i), _kv(ref.past_key_values, i), strict=True):
            torch.testing.assert_close(a, b)
    remove_layer_skip_(model)
    assert not any(isinstance(m, FFNSkip) for m in model.modules())


def test_early_exit_flops_count_the_fused_qkv_as_kept():
    flops = block_flops(_model("phi3"))
    assert flops[0].exit_kept == pytest.approx(flops[0].attention - _o_flops("phi3"))  # the whole qkv_proj
    llama = block_flops(_model("llama"))
    assert llama[0].exit_kept == pytest.approx(llama[0].kv)


def _o_flops(family):
    from slimkit.models.adapters import get_adapter, linear_in_features, linear_out_features

    model = _model(family)
    adapter = get_adapter(model)
    o = adapter.blocks(model)[0].get_submodule(adapter.roles["o"])
    return 2.0 * linear_in_features(o) * linear_out_features(o)


def _kv(cache, layer):
    layer_cache = cache.layers[layer]
    return layer_cache.keys, layer_cache.values


def test_eager_gate_reads_the_host_once_per_layer_and_not_when_the_batch_agrees(monkeypatch):
    """The eager gate: no nonzero/item syncs; one ``tolist`` per eligible layer where a row ran and could
    trigger; none at all once every row skips (extent up to the cold region)."""
    model = _model("llama", layers=6)
    compress_(model, FFNSkipConfig(threshold=-1.0, warmup_tokens=1), progress=False)
    calls = {"tolist": 0, "nonzero": 0}
    real_tolist, real_nonzero = torch.Tensor.tolist, torch.Tensor.nonzero

    def tolist(self):
        calls["tolist"] += 1
        return real_tolist(self)

    def nonzero(self, *a, **k):
        calls["nonzero"] += 1
        return real_nonzero(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    monkeypatch.setattr(torch.Tensor, "nonzero", nonzero)
    _generate(model, ids=PROMPTS[:1], new=6)
    monkeypatch.undo()
    # 5 decode steps; every row triggers at the first eligible layer (τ = -1): one read per step
    assert calls == {"tolist": 5, "nonzero": 0}, calls


@pytest.mark.parametrize("extent", [None, 1, 2])
def test_graph_safe_gate_makes_the_eager_decisions(extent):
    model = _model("llama", layers=6)
    compress_(model, FFNSkipConfig(threshold=NEVER, warmup_tokens=1, extent=extent), progress=False)
    state = get_skip_state(model)
    state.recorded = []
    _generate(model)
    state.threshold = float(torch.cat(state.recorded).median())
    state.recorded = None
    state.reset_stats()
    eager = _generate(model)
    eager_stats = skip_stats(model)
    state.set_graph_safe(True)
    state.reset_stats()
    graph = _generate(model)
    assert torch.equal(graph, eager)
    assert skip_stats(model)["layer_skip_ratio"] == eager_stats["layer_skip_ratio"]
    state.set_graph_safe(False)  # switching back keeps the counts
    assert skip_stats(model)["layer_skip_ratio"] == eager_stats["layer_skip_ratio"]
    assert eager_stats["skip_ratio"] > 0


def _graph_breaks(model):
    from transformers import StaticCache

    cache = StaticCache(config=model.config, max_cache_len=16)
    with torch.no_grad():
        out = model(PROMPTS, past_key_values=cache)  # prompt pass: eager, fills the cache
        ids = out.logits[:, -1:].argmax(-1)
        model(ids, past_key_values=cache, cache_position=torch.tensor([6]))  # sets the gate's tensors up
        explained = torch._dynamo.explain(model.forward)(
            ids, past_key_values=cache, cache_position=torch.tensor([7])
        )
    torch._dynamo.reset()
    return explained.graph_break_count


def test_graph_safe_gate_compiles_without_graph_breaks():
    model = _model("llama", layers=6)
    dense_breaks = _graph_breaks(model)
    compress_(model, FFNSkipConfig(threshold=-1.0, warmup_tokens=1), progress=False)
    state = get_skip_state(model)
    assert _graph_breaks(model) > dense_breaks  # the eager gate branches on row decisions
    state.set_graph_safe(True)
    assert _graph_breaks(model) == dense_breaks == 0


def test_early_exit_calibrates_compute():
    model = _model("llama", layers=6)
    report = compress_(model, EarlyExitConfig(compute_ratio=0.2, **SMALL), CALIB, progress=False)
    assert abs(report.compute_fraction_saved - 0.2) <= 0.05


# -- bad input -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_target_ratio_outside_range(ratio):
    with pytest.raises(ConfigError, match="target_ratio"):
        FFNSkipConfig(target_ratio=ratio)


def test_bad_configs():
    with pytest.raises(ConfigError, match="not shorter than the calibration generation"):
        FFNSkipConfig(warmup_tokens=8, new_tokens=8)
    with pytest.raises(ConfigError, match="not both"):
        FFNSkipConfig(threshold=0.9, target_ratio=0.2)
    with pytest.raises(ConfigError, match="threshold"):
        FFNSkipConfig(threshold=float("nan"))
    with pytest.raises(ConfigError, match="extent"):
        FFNSkipConfig(extent=0)
    with pytest.raises(ConfigError, match="eligible layer"):
        compress_(_model("llama"), FFNSkipConfig(threshold=0.9, cold_start=2, cold_end=2), progress=False)
    with pytest.raises(DataError, match="calib"):
        compress_(_model("llama"), FFNSkipConfig(target_ratio=0.2), progress=False)
    model = _model("llama")
    compress_(model, FFNSkipConfig(threshold=0.9), progress=False)
    too_short = pytest.raises(ConfigError, match="warmup_tokens=2 is not shorter than the generation")
    with too_short, skip_session(model, max_new_tokens=2):
        pass
    with pytest.raises(ConfigError, match="already"):
        compress_(model, FFNSkipConfig(threshold=0.9), progress=False)


@pytest.fixture(scope="module")
def tiny4_dir(tmp_path_factory):
    from slimkit.models.tiny import tiny_tokenizer

    return save_model(_model("llama"), tiny_tokenizer(), tmp_path_factory.mktemp("m") / "tiny4")


def test_cli_bad_input(tiny4_dir, tiny_model_dir, tmp_path, capsys):
    code, _, err = run(
        ["compress", tiny4_dir, "--method", "ffn-skip", "--target-ratio", "1.2", "--out", tmp_path / "o"],
        capsys,
    )
    assert_one_line_error(code, err, "target_ratio")
    code, _, err = run(
        ["compress", tiny_model_dir, "--method", "ffn-skip", "--threshold", "0.9", "--out", tmp_path / "o"],
        capsys,
    )
    assert_one_line_error(code, err, "eligible layer")
    code, _, err = run(
        ["generate", tiny4_dir, "--prompt", "The river", "--ffn-skip", "0.2", "--max-new-tokens", "2"], capsys
    )
    assert_one_line_error(code, err, "warmup_tokens")


def test_cli_compress_records_tau_and_generate_uses_it(tiny4_dir, tmp_path, capsys):
    out = tmp_path / "skip"
    code, stdout, err = run(
        [
            "compress",
            tiny4_dir,
            "--method",
            "ffn-skip",
            "--threshold",
            "0.5",
            "--cold-end",
            "0",
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads((out / "slimkit.json").read_text())["ffn-skip"]["threshold"] == 0.5
    code, stdout, err = run(["generate", out, "--prompt", "The river", "--max-new-tokens", "6"], capsys)
    assert code == 0, err
    assert "ffn-skip: τ=0.500000" in stdout


def test_cli_compress_takes_the_extent(tiny4_dir, tmp_path, capsys):
    out = tmp_path / "skip-extent"
    code, _, err = run(
        ["compress", str(tiny4_dir), "--method", "ffn-skip", "--threshold", "0.9", "--extent", "1",
         "--cold-end", "0", "--out", str(out)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((out / "slimkit.json").read_text())["ffn-skip"]["extent"] == 1
    code, _, err = run(
        ["compress", str(tiny4_dir), "--method", "ffn-skip", "--extent", "0", "--out", str(tmp_path / "x")],
        capsys,
    )
    assert_one_line_error(code, err, "extent")


def test_real_model_sweep_prompts_the_instruct_model_and_compares_the_extent():
    from slimkit.pipelines.study import load_sweep

    sweep = load_sweep("ffn-skip-real")
    assert sweep.kick.chat_template == "on" and sweep.kick.num_fewshot == 0
    extents = {v.name: getattr(v.config, "extent", "n/a") for v in sweep.variants if v.config is not None}
    assert extents["ffn-skip 25% extent 4"] == 4 and extents["ffn-skip 25%"] is None
