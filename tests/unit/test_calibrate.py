"""The sequential calibration runner and calibration sampling."""

from __future__ import annotations

import pytest
import torch

from slimkit.compress import SparseGPTConfig, WandaConfig, compress_
from slimkit.compress.calibrate import (
    capture_block_inputs,
    check_calibration,
    run_block,
    run_sequential_,
    true_sequential_groups,
)
from slimkit.compress.prune import select_prune_targets
from slimkit.core.errors import ConfigError, DataError
from slimkit.data.calibration import sample_calibration
from slimkit.models import tiny_model
from slimkit.models.adapters import GPT2, LLAMA, OPT, get_adapter

FAMILIES = ["llama", "mistral", "qwen2", "opt", "gpt2"]


def _calib(n: int = 4, seqlen: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, 512, (n, seqlen), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", FAMILIES)
def test_captured_inputs_reproduce_hidden_states(family):
    model = tiny_model(family, seed=0)
    calib = _calib(5)
    with torch.no_grad():
        reference = model(calib, output_hidden_states=True).hidden_states
    inputs = capture_block_inputs(model, calib, chunk_size=2)
    assert [h.shape[0] for h in inputs.hidden] == [2, 2, 1]
    blocks = get_adapter(model).blocks(model)
    cpu = torch.device("cpu")
    for index, block in enumerate(blocks):
        torch.testing.assert_close(torch.cat(inputs.hidden), reference[index], rtol=1e-5, atol=1e-5)
        inputs = inputs.with_hidden(run_block(block, inputs, cpu, cpu))


@pytest.mark.parametrize(
    "config", [WandaConfig(sparsity=0.5), SparseGPTConfig(sparsity=0.5, true_sequential=True)]
)
def test_chunk_size_does_not_change_the_result(config):
    calib = _calib(4)
    results = []
    for chunk_size in (1, 4):
        model = tiny_model("llama", seed=0)
        compress_(model, config, calib, chunk_size=chunk_size, progress=False)
        results.append(model.state_dict())
    for key, value in results[0].items():
        torch.testing.assert_close(value, results[1][key], rtol=1e-4, atol=1e-5)
        assert torch.equal(value == 0, results[1][key] == 0), key


def test_onload_offload_path_equals_plain_path():
    calib = _calib(4)
    plain, moved = tiny_model("opt", seed=0), tiny_model("opt", seed=0)
    compress_(plain, SparseGPTConfig(sparsity=0.5), calib, device=None, progress=False)
    compress_(moved, SparseGPTConfig(sparsity=0.5), calib, device="cpu", progress=False)
    for key, value in plain.state_dict().items():
        assert torch.equal(value, moved.state_dict()[key]), key


class _Recorder:
    """A CalibratedMethod that records what the runner asks of it."""

    modifies_weights = True

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.tokens: dict[str, int] = {}

    def observe(self, name, inputs):
        assert inputs.dtype == torch.float32 and inputs.dim() == 2
        self.tokens[name] = self.tokens.get(name, 0) + inputs.shape[0]

    def compress(self, name, module):
        self.events.append(("compress", name.rsplit(".", 1)[-1]))

    def reset(self):
        self.events.append(("reset", ""))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_sequential_groups_order(family):
    model = tiny_model(family, seed=0)
    adapter = get_adapter(model)
    targets = select_prune_targets(model, WandaConfig())
    recorder = _Recorder()
    run_sequential_(
        model, recorder, _calib(3), targets, sequential_groups=true_sequential_groups(adapter), progress=False
    )
    resets = [i for i, e in enumerate(recorder.events) if e[0] == "reset"]
    assert len(resets) == 4 * len(adapter.blocks(model))  # one per group per block
    assert all(t == 3 * 16 for t in recorder.tokens.values())  # every target saw every token once
    first_block = [e[1] for e in recorder.events[: resets[3] + 1] if e[0] == "compress"]
    if family == "llama":
        assert first_block == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    else:
        assert first_block == ["c_attn", "c_proj", "c_fc", "c_proj"]


def test_true_sequential_groups_per_family():
    assert true_sequential_groups(LLAMA) == [("q", "k", "v"), ("o",), ("gate", "up"), ("down",)]
    assert true_sequential_groups(OPT) == [("q", "k", "v"), ("o",), ("fc1",), ("fc2",)]
    assert true_sequential_groups(GPT2) == [("qkv",), ("o",), ("fc1",), ("fc2",)]


def test_bad_calibration_tensors():
    with pytest.raises(DataError, match="needs calibration data"):
        check_calibration(None, "wanda")
    with pytest.raises(DataError, match="integer tensor"):
        check_calibration(torch.rand(2, 4), "wanda")
    with pytest.raises(DataError, match="shape"):
        check_calibration(torch.zeros(0, 4, dtype=torch.long), "wanda")
    with pytest.raises(DataError, match="wanda needs calibration"):
        compress_(tiny_model("llama"), WandaConfig(), None, progress=False)


# -- sample_calibration -----------------------------------------------------------------------------------------
DOCS = [
    "The river runs past the old mill and under the stone bridge before it reaches the sea. " * 6,
    "In the morning the baker opens the shop at six.",
    "A short one.",
]


def test_sample_from_long_documents(tiny_tok):
    calib = sample_calibration(tiny_tok, DOCS, nsamples=6, seqlen=32, seed=0)
    assert calib.shape == (6, 32) and calib.dtype == torch.long
    long_doc = tiny_tok(DOCS[0])["input_ids"]
    for row in calib.tolist():  # every window comes from the only document longer than seqlen
        assert any(long_doc[i : i + 32] == row for i in range(len(long_doc) - 31))
    assert torch.equal(calib, sample_calibration(tiny_tok, DOCS, nsamples=6, seqlen=32, seed=0))
    assert not torch.equal(calib, sample_calibration(tiny_tok, DOCS, nsamples=6, seqlen=32, seed=1))


def test_sample_falls_back_to_concatenated_stream(tiny_tok):
    short = ["One short line.", "Another short line here.", "And a third short line of text."] * 4
    calib = sample_calibration(tiny_tok, short, nsamples=3, seqlen=20, seed=0)
    assert calib.shape == (3, 20)
    assert (calib == tiny_tok.eos_token_id).any()  # windows cross document boundaries


def test_sample_errors(tiny_tok):
    with pytest.raises(DataError, match="no text"):
        sample_calibration(tiny_tok, ["", "  "], nsamples=2, seqlen=8)
    with pytest.raises(DataError, match=r"has \d+ tokens .* need at least seqlen=4096"):
        sample_calibration(tiny_tok, ["tiny text"], nsamples=2, seqlen=4096)
    with pytest.raises(ConfigError, match="nsamples"):
        sample_calibration(tiny_tok, DOCS, nsamples=0, seqlen=8)
