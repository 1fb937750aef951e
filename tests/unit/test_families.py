"""Every tiny family x {Wanda 50%, SparseGPT 2:4, WeLore 30%}: compress, save, reload, same logits;
and the sequential runner gives every block its own attention inputs (sliding-window layers)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from slimkit.compress import SparseGPTConfig, WandaConfig, WeLoreConfig, compress_, save_compressed
from slimkit.compress.calibrate import capture_block_inputs, run_sequential_
from slimkit.models import load_model, tiny_model
from slimkit.models.adapters import get_adapter, linear_weight
from slimkit.models.tiny import FAMILIES
from slimkit.nn.lowrank import LowRankLinear

METHODS = {
    "wanda-50%": WandaConfig(sparsity=0.5),
    "sparsegpt-2:4": SparseGPTConfig(pattern="2:4", true_sequential=True),  # true_sequential: role groups
    "welore-30%": WeLoreConfig(target_params=0.3, min_ratio=0.0),
}
CALIB = torch.randint(3, 512, (4, 16), generator=torch.Generator().manual_seed(0))
IDS = torch.randint(3, 512, (2, 12), generator=torch.Generator().manual_seed(1))


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


def _cases():
    for family in sorted(FAMILIES):
        for method in sorted(METHODS):
            yield pytest.param(family, method, id=f"{family}-{method}")


@pytest.mark.parametrize(("family", "method"), list(_cases()))
def test_family_matrix(family, method, tmp_path, tiny_tok):
    model = tiny_model(family, seed=0)
    adapter = get_adapter(model)
    n_roles = len(adapter.roles) * len(adapter.blocks(model))
    config = METHODS[method]
    report = compress_(model, config, None if method.startswith("welore") else CALIB, progress=False)
    out = save_compressed(model, tiny_tok, tmp_path / method, report)
    expected = _logits(model)
    assert torch.isfinite(expected).all()

    if method.startswith("welore"):
        assert abs(report.param_reduction - 0.3) <= config.tolerance
        assert report.lrc + report.nlrc == n_roles and report.lrc > 0
        loaded, _ = load_model(out)  # low-rank modules need slimkit's restorer
        assert {n for n, m in loaded.named_modules() if isinstance(m, LowRankLinear)} == {
            n for n, m in model.named_modules() if isinstance(m, LowRankLinear)
        }
        assert get_adapter(loaded).roles == adapter.roles  # rediscovered through the LowRankLinears
    else:
        assert len(report.matrices) == n_roles
        assert report.overall_sparsity == pytest.approx(0.5, abs=0.01)
        if method.startswith("sparsegpt"):
            for block in adapter.blocks(model):
                for weight in map(linear_weight, adapter.block_linears(block).values()):
                    assert ((weight == 0).reshape(weight.shape[0], -1, 4).sum(-1) == 2).all()
        loaded = AutoModelForCausalLM.from_pretrained(out).eval()  # pruned: plain transformers
    assert torch.equal(_logits(loaded), expected)


class _Nothing:
    """A calibrated method that observes and changes nothing: the runner's activations stay dense."""

    modifies_weights = True

    def observe(self, name, inputs):
        pass

    def compress(self, name, module):
        pass

    def reset(self):
        pass


# sliding windows (4) shorter than the calibration sequence (16), three blocks so that a wrong mask in
# block 1 shows in block 2's inputs; qwen2/gemma2/gemma3 mix window and full layers (and gemma3 two
# rotary tables), mistral and falcon/gpt2/phi3 have one kind of layer
RUNNER_CASES = {
    "mistral": {"sliding_window": 4},
    "qwen2": {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1},
    "gemma2": {"sliding_window": 4},
    "gemma3": {"sliding_window": 4},
    "falcon": {},
    "gpt2": {},
    "phi3": {},
}


@pytest.mark.parametrize("family", sorted(RUNNER_CASES))
def test_runner_block_inputs_equal_the_full_forward(family):
    model = tiny_model(family, seed=0, num_hidden_layers=3, **RUNNER_CASES[family])
    adapter = get_adapter(model)
    blocks = adapter.blocks(model)
    with torch.no_grad():
        reference = model(CALIB, output_hidden_states=True).hidden_states
    calls: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(blocks))}

    def recorder(index):
        def hook(module, args, kwargs):
            calls[index].append((args[0] if args else kwargs["hidden_states"]).clone())

        return hook

    handles = [b.register_forward_pre_hook(recorder(i), with_kwargs=True) for i, b in enumerate(blocks)]
    targets = dict(model.named_modules())
    targets = {name: targets[name] for name in adapter.linear_names(model)}
    try:
        run_sequential_(model, _Nothing(), CALIB, targets, chunk_size=len(CALIB), progress=False)
    finally:
        for h in handles:
            h.remove()
    for index in range(len(blocks)):
        # the last call of each block is the runner's own (earlier ones: the capture's stand-in)
        torch.testing.assert_close(calls[index][-1], reference[index], rtol=0, atol=1e-5)


def test_every_block_gets_its_own_mask_and_rotary_table():
    model = tiny_model("gemma3", seed=0, num_hidden_layers=3, sliding_window=4)
    assert model.config.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    inputs = capture_block_inputs(model, CALIB, chunk_size=3)  # two chunks: 3 + 1
    assert len(inputs.calls) == 3 and len(inputs) == 2
    local, full, local2 = (inputs.for_block(i, inputs.hidden).kwargs[0] for i in range(3))  # chunk 0
    assert local["attention_mask"] is local2["attention_mask"]  # stored once
    assert local["attention_mask"] is not full["attention_mask"]
    assert not torch.equal(local["position_embeddings"][0], full["position_embeddings"][0])
    # equal tensors of different chunks are stored once too
    assert inputs.calls[0][1][0]["position_embeddings"][0] is inputs.calls[0][1][1]["position_embeddings"][0]
    with pytest.raises(IndexError, match="block 3"):
        inputs.for_block(3, inputs.hidden)
